"""POSTing one payload to one webhook with urllib3: bounded retries that honour rate limits.

- 2xx: delivered (Slack answers 200 ``ok``, Discord 204, Teams Workflows 202, Google Chat 200).
- 429: wait what the service asks: the ``Retry-After`` header in seconds (Slack, Discord, Teams), else
  Discord's JSON ``retry_after`` in seconds, else the backoff (Google Chat asks for exponential backoff
  without a header). A wait longer than ``max_retry_after`` is not sat out: the channel fails now and
  Lambda's retry of the event comes back later.
- 408, 5xx, connection errors and timeouts: exponential backoff (``backoff_base`` doubling, at most
  ``backoff_cap``), honouring a ``Retry-After`` when a 503 sends one.
- Anything else (400 bad payload, 403/404/410 a revoked or deleted webhook, a redirect): fails at once.

Attempts are bounded by ``max_attempts`` and, waits and requests together, by ``deadline`` seconds
(request timeouts shrink to what is left). A read timeout after the request was sent may mean the
service did post it: the retry can then show the message twice, which is preferred to losing it.

Reasons name the status and the service's short error, never the URL; urllib3's own messages (which
hold the URL) are reduced to the exception's class name. Redirects are never followed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import urllib3
from aws_lambda_powertools import Logger
from urllib3.exceptions import HTTPError

from ptc_sync.chat.webhooks import Webhook

logger = Logger(child=True)

USER_AGENT: Final = "ptc-sync-chat-notifier"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_BODY_SNIPPET: Final = 160
_RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    deadline: float = 30.0  # seconds per channel, requests and waits together
    max_retry_after: float = 20.0  # the longest wait a 429/503 may ask for
    backoff_base: float = 1.0
    backoff_cap: float = 8.0
    connect_timeout: float = 3.0
    read_timeout: float = 10.0

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based): base, 2·base, 4·base, … up to the cap."""
        return min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))


@dataclass(frozen=True, slots=True)
class Delivery:
    """How posting to one channel ended."""

    channel: str
    delivered: bool
    attempts: int
    status: int | None = None  # the last HTTP status; None when there was no response
    reason: str = ""  # for failures: status or error, and why it stopped retrying

    @property
    def outcome(self) -> str:
        return "delivered" if self.delivered else "failed"


@dataclass(frozen=True, slots=True)
class _Attempt:
    status: int | None
    reason: str
    retryable: bool
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookPoster:
    """Posts JSON payloads to validated webhooks.

    ``host_override`` (tests only; a Python argument, never read from an event or the secret) sends a
    webhook host's requests to a loopback base URL such as ``http://127.0.0.1:8080``, keeping the path.
    """

    def __init__(
        self,
        *,
        policy: RetryPolicy | None = None,
        http: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        host_override: Mapping[str, str] | None = None,
    ) -> None:
        self._policy = policy or RetryPolicy()
        self._http = http or urllib3.PoolManager(retries=False, headers={"User-Agent": USER_AGENT})
        self._sleep = sleep
        self._monotonic = monotonic
        self._override = dict(host_override or {})
        for base in self._override.values():
            if urlsplit(base).hostname not in LOOPBACK_HOSTS:
                raise ValueError("host_override may only point at a loopback address")

    def post(self, webhook: Webhook, payload: Mapping[str, Any]) -> Delivery:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        url = self._target(webhook.url)
        policy = self._policy
        started = self._monotonic()
        attempt = 0
        while True:
            attempt += 1
            remaining = policy.deadline - (self._monotonic() - started)
            result = self._attempt(url, body, remaining)
            if result.ok:
                return Delivery(webhook.channel, True, attempt, result.status)
            stop = self._why_stop(result, attempt, started)
            if stop:
                return Delivery(webhook.channel, False, attempt, result.status, f"{result.reason}; {stop}")
            wait = result.retry_after if result.retry_after is not None else policy.backoff(attempt)
            logger.warning(
                "chat webhook retry",
                extra={
                    "channel": str(webhook.channel),
                    "attempt": attempt,
                    "reason": result.reason,
                    "wait": wait,
                },
            )
            self._sleep(wait)

    def _why_stop(self, result: _Attempt, attempt: int, started: float) -> str:
        """Why not to try again ("" to retry)."""
        policy = self._policy
        if not result.retryable:
            return "not retried"
        if attempt >= policy.max_attempts:
            return f"gave up after {attempt} attempts"
        if result.retry_after is not None and result.retry_after > policy.max_retry_after:
            return f"asked to wait {result.retry_after:g} s, more than {policy.max_retry_after:g} s"
        wait = result.retry_after if result.retry_after is not None else policy.backoff(attempt)
        if self._monotonic() - started + wait > policy.deadline:
            return f"gave up after {attempt} attempts, the {policy.deadline:g} s budget is spent"
        return ""

    def _target(self, url: str) -> str:
        parts = urlsplit(url)
        base = self._override.get(parts.hostname or "")
        if base is None:
            return url
        return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")

    def _attempt(self, url: str, body: bytes, remaining: float) -> _Attempt:
        policy = self._policy
        budget = max(0.1, remaining)
        timeout = urllib3.Timeout(
            connect=min(policy.connect_timeout, budget), read=min(policy.read_timeout, budget)
        )
        try:
            response = self._http.request(
                "POST",
                url,
                body=body,
                headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
                timeout=timeout,
                redirect=False,
                retries=False,
            )
        except HTTPError as exc:  # connection refused, TLS, timeouts: the message would hold the URL
            return _Attempt(None, type(exc).__name__, retryable=True)
        status = response.status
        if 200 <= status < 300:
            return _Attempt(status, "", retryable=False)
        snippet = _snippet(response.data, url)
        reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        retry_after = _retry_after(response.headers.get("Retry-After"), response.data, status)
        return _Attempt(
            status, reason, retryable=status in _RETRY_STATUSES or status >= 500, retry_after=retry_after
        )


def _retry_after(header: str | None, body: bytes, status: int) -> float | None:
    """Seconds the service asked to wait: the header, else (429 only) a JSON body's ``retry_after``."""
    for candidate in (header, _json_retry_after(body) if status == 429 else None):
        if candidate is None:
            continue
        try:
            seconds = float(candidate)
        except ValueError:
            continue  # an HTTP-date: the backoff is used instead
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _json_retry_after(body: bytes) -> str | None:
    try:
        document = json.loads(body[:4096])
    except ValueError:
        return None
    value = document.get("retry_after") if isinstance(document, dict) else None
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _snippet(data: bytes, url: str) -> str:
    """The first words of an error body (Slack's ``invalid_blocks``, Discord's message), one line,
    with anything that looks like the webhook's path removed."""
    text = " ".join(data[:2048].decode("utf-8", "replace").split())
    parts = urlsplit(url)
    for secret in (url, parts.path, parts.query):
        if secret and len(secret) > 1:
            text = text.replace(secret, "<webhook>")
    return text[:_MAX_BODY_SNIPPET]
