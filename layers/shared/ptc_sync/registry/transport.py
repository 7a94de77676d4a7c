"""HTTP transport for the registry client: urllib3 connection pools, timeouts, bounded retries.

- One urllib3 connection pool per upstream origin, kept for the client's life: connections are
  reused across requests and workers.
- Explicit connect/read timeouts; each attempt's timeouts are cut to the time left in the budget.
- Retries on 408/429/5xx and on connection failures (refused, reset, timed out) with exponential
  backoff and jitter, ``Retry-After`` honoured (seconds or HTTP date); bounded by attempts and by
  total time. The clock and the sleep are injectable (tests never sleep through real backoff).
- Routing (``routing.py``, its names re-exported here): production talks HTTPS only; overrides go to
  loopback only.
- A per-host semaphore caps concurrent requests to one upstream host.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol
from urllib.parse import SplitResult, urlsplit

import urllib3
from aws_lambda_powertools import Logger
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ptc_sync.registry.ratelimit import parse_retry_after
from ptc_sync.registry.routing import (
    HOST_RE,
    HostRouter,
    InsecureURLError,
    _origin,
    is_loopback,
    normalize_host,
    safe_url,
    same_origin,
)

logger = Logger(child=True)

__all__ = [
    "HOST_RE",
    "RETRY_STATUSES",
    "Clock",
    "HostRouter",
    "InsecureURLError",
    "RequestCounters",
    "Response",
    "RetryPolicy",
    "SystemClock",
    "Transport",
    "TransportError",
    "is_loopback",
    "normalize_host",
    "safe_url",
    "same_origin",
]

RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK: Final = 64 * 1024


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime:
        """Timezone-aware wall-clock time (for HTTP dates and token ``issued_at``)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one logical request. All bounds apply together."""

    max_attempts: int = 4  # attempts in total, the first included
    base_delay: float = 0.25  # first backoff step, doubled each retry
    max_delay: float = 8.0  # cap of one backoff sleep
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for: the error carries the reset
    total_budget: float = 45.0  # seconds for all attempts and sleeps of one request
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.total_budget <= 0 or self.max_retry_after < 0:
            raise ValueError("retry delays and budgets must not be negative")

    def backoff(self, retry: int, rnd: float) -> float:
        """Delay before retry number ``retry`` (1-based): exponential with equal jitter, capped."""
        step = min(self.max_delay, self.base_delay * 2.0 ** max(0, retry - 1))
        return step / 2 + rnd * step / 2


class RequestCounters:
    """Thread-safe counters of requests actually sent (every attempt counts), per category."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: urllib3.HTTPHeaderDict
    body: bytes
    url: str  # logical URL this response answers
    attempts: int
    retry_after: float | None = None  # seconds upstream asked us to wait (last response)
    waited: float = 0.0  # seconds slept in backoff for this request
    physical_url: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    pool: urllib3.HTTPConnectionPool
    semaphore: threading.BoundedSemaphore
    origin: str  # scheme://host:port actually connected to


class TransportError(Exception):
    """No usable HTTP response: ``reason`` is one of timeout, connection, tls, too_large, insecure."""

    def __init__(self, message: str, *, reason: str, attempts: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts


def _read_body(resp: urllib3.BaseHTTPResponse, max_body: int, ends: float) -> bytes:
    """The body, at most ``max_body`` bytes, read before ``ends`` (time.monotonic); else TransportError."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > ends:
            resp.close()
            raise TransportError("response body not read within the request's deadline", reason="timeout")
        chunk = resp.read1(min(_CHUNK, max_body + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_body:
            resp.close()
            raise TransportError(f"response body larger than {max_body} bytes", reason="too_large")


def _describe_failure(exc: BaseException) -> tuple[str, str]:
    """(reason, short description) for a urllib3 or socket failure."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, ProtocolError) and len(exc.args) > 1 and isinstance(exc.args[1], BaseException):
        exc = exc.args[1]  # ("Connection aborted.", ConnectionResetError(...))
    if isinstance(exc, SSLError):
        return "tls", f"TLS failure ({exc})"[:200]
    reason, what = "connection", f"connection failed ({exc.__class__.__name__})"
    if isinstance(exc, NewConnectionError):
        pass
    elif isinstance(exc, ConnectTimeoutError):
        reason, what = "timeout", "connect timed out"
    elif isinstance(exc, ReadTimeoutError):
        reason, what = "timeout", "read timed out"
    elif isinstance(exc, ConnectionResetError):
        what = "connection reset by peer"
    elif isinstance(exc, TimeoutError):
        reason, what = "timeout", "timed out"
    elif isinstance(exc, ProtocolError | OSError):
        what = f"connection broken ({exc.__class__.__name__})"
    return reason, what


class Transport:
    def __init__(
        self,
        *,
        router: HostRouter,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        max_per_host: int = 8,
        user_agent: str = "ptc-sync",
        rng: Callable[[], float] = random.random,
    ) -> None:
        if max_per_host < 1:
            raise ValueError("max_per_host must be at least 1")
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.router = router
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or RetryPolicy()
        self.clock: Clock = clock or SystemClock()
        self.max_per_host = max_per_host
        self.user_agent = user_agent
        self.counters = RequestCounters()
        self._rng = rng
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, str], urllib3.HTTPConnectionPool] = {}
        self._endpoints: dict[tuple[str, str], _Endpoint] = {}
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self._endpoints.clear()
        for pool in pools:
            pool.close()

    def _endpoint(self, parts: SplitResult) -> _Endpoint:
        """Connection pool and host semaphore for a logical URL, cached per logical origin."""
        key = (parts.scheme, parts.netloc.lower())
        with self._lock:
            endpoint = self._endpoints.get(key)
        if endpoint is not None:
            return endpoint
        try:
            scheme, netloc = self.router.target(parts)
        except InsecureURLError as exc:
            raise TransportError(str(exc), reason="insecure") from None
        with self._lock:
            host_key = _origin(parts)[1]
            sem = self._semaphores.get(host_key)
            if sem is None:
                sem = self._semaphores[host_key] = threading.BoundedSemaphore(self.max_per_host)
            pool = self._pools.get((scheme, netloc))
            if pool is None:
                pool = self._pools[(scheme, netloc)] = urllib3.connection_from_url(
                    f"{scheme}://{netloc}",
                    maxsize=self.max_per_host,
                    block=False,
                    retries=False,
                    timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout),
                )
            endpoint = self._endpoints[key] = _Endpoint(pool, sem, f"{scheme}://{netloc}")
        return endpoint

    def _attempt(
        self,
        method: str,
        endpoint: _Endpoint,
        target: str,
        *,
        headers: dict[str, str],
        max_body: int,
        remaining: float,
    ) -> tuple[int, urllib3.HTTPHeaderDict, bytes]:
        timeout = urllib3.Timeout(
            connect=max(0.001, min(self.connect_timeout, remaining)),
            read=max(0.001, min(self.read_timeout, remaining)),
        )
        # one deadline over the whole exchange (real seconds, as sockets count them): a body dripped a
        # byte at a time, each within the read timeout, must not stretch the attempt past it
        ends = time.monotonic() + max(0.001, min(remaining, self.connect_timeout + self.read_timeout))
        resp = endpoint.pool.urlopen(
            method,
            target,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            timeout=timeout,
            assert_same_host=False,
            release_conn=False,
        )
        try:
            body = b"" if method == "HEAD" else _read_body(resp, max_body, ends)
            resp.drain_conn()
            return resp.status, resp.headers, body
        finally:
            resp.release_conn()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        category: str = "other",
        max_body: int = 4 * 1024 * 1024,
    ) -> Response:
        """Send one logical request with retries. Returns the last response, whatever its status.

        Raises TransportError when no response came (after retries) or the URL is refused.
        """
        parts = urlsplit(url)
        endpoint = self._endpoint(parts)
        target = f"{parts.path or '/'}?{parts.query}" if parts.query else (parts.path or "/")
        physical = endpoint.origin + target
        hdrs = {"User-Agent": self.user_agent, **(headers or {})}
        policy = self.retry
        start = self.clock.monotonic()
        deadline = start + policy.total_budget
        sem = endpoint.semaphore
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self.clock.monotonic()
            failure: tuple[str, str] | None = None
            status = 0
            resp_headers = urllib3.HTTPHeaderDict()
            body = b""
            with sem:
                self.counters.add("requests")
                self.counters.add(category)
                if attempt > 1:
                    self.counters.add("retries")
                try:
                    status, resp_headers, body = self._attempt(
                        method, endpoint, target, headers=hdrs, max_body=max_body, remaining=remaining
                    )
                except TransportError as exc:
                    exc.attempts = attempt
                    raise
                except (HTTPError, OSError) as exc:
                    failure = _describe_failure(exc)
            retry_after: float | None = None
            if failure is None:
                retry_after = parse_retry_after(resp_headers.get("Retry-After"), self.clock.now())
                if status not in policy.retry_statuses:
                    return Response(status, resp_headers, body, url, attempt, retry_after, waited, physical)
            # decide whether to try again, and after how long
            delay = policy.backoff(attempt, self._rng())
            if retry_after is not None:
                # a Retry-After longer than we wait for: give upstream's answer back now (-1)
                delay = -1.0 if retry_after > policy.max_retry_after else max(retry_after, 0.0)
            left = deadline - self.clock.monotonic()
            if attempt >= policy.max_attempts or delay < 0 or delay >= left:
                if failure is not None:
                    reason, what = failure
                    raise TransportError(
                        f"{what} after {attempt} attempt(s)", reason=reason, attempts=attempt
                    )
                return Response(status, resp_headers, body, url, attempt, retry_after, waited, physical)
            logger.debug(
                "retrying",
                extra={
                    "method": method,
                    "url": safe_url(url),
                    "after": failure[1] if failure else f"HTTP {status}",
                    "attempt": attempt,
                    "sleep_seconds": round(delay, 3),
                },
            )
            self.clock.sleep(delay)
            waited += delay
