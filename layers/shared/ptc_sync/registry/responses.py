"""What an upstream answer means, as a typed error: ``Responses.raise_for`` maps a status to the
RegistryError the comparer maps to an outcome (404 not found, 401 unauthorized, 403 forbidden, 429 rate
limited with its reset time and budget, 408/5xx unavailable), with the distribution error body's code
and message; ``transport_error`` does the same for a request that got no answer. Used by the session
(challenges, tokens, redirects) and the client (manifests, tags) alike.
"""

from __future__ import annotations

import json
from typing import NoReturn

from ptc_sync.models import UpstreamRef
from ptc_sync.registry.errors import (
    BadResponseError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    UnauthorizedError,
    UpstreamUnavailableError,
    describe_target,
)
from ptc_sync.registry.ratelimit import RateLimitTracker, reset_time
from ptc_sync.registry.transport import (
    Clock,
    Response,
    TransportError,
)


def error_detail(body: bytes) -> str:
    """`` (MANIFEST_UNKNOWN: manifest unknown)`` from a distribution error body, or ''."""
    if not body or len(body) > 64 * 1024:
        return ""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    code = str(errors[0].get("code", ""))[:60]
    message = str(errors[0].get("message", ""))[:160]
    text = ": ".join(p for p in (code, message) if p)
    return f" ({text})" if text else ""


def transport_error(exc: TransportError, ref: UpstreamRef, reference: str, what: str) -> RegistryError:
    target = describe_target(ref.host, ref.repository, reference)
    cls: type[RegistryError] = (
        BadResponseError if exc.reason in {"too_large", "insecure"} else UpstreamUnavailableError
    )
    return cls(
        f"{target}: {what}: {exc}",
        host=ref.host,
        repository=ref.repository,
        reference=reference,
    )


class Responses:
    """Maps error answers to RegistryErrors, recording a 429's rate-limit headers on the way."""

    def __init__(self, clock: Clock, rate_limits: RateLimitTracker) -> None:
        self._clock = clock
        self._rate_limits = rate_limits

    def raise_for(
        self,
        resp: Response,
        ref: UpstreamRef,
        reference: str,
        what: str,
        *,
        hint: str = "",
    ) -> NoReturn:
        """Raise the RegistryError ``resp`` means (``hint`` is added to a 401's text)."""
        status = resp.status
        target = describe_target(ref.host, ref.repository, reference)
        detail = error_detail(resp.body)
        tries = f" after {resp.attempts} attempts" if resp.attempts > 1 else ""

        def err(cls: type[RegistryError], text: str) -> RegistryError:
            return cls(
                f"{target}: {what}: HTTP {status} {text}{detail}",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=status,
            )

        if status == 404:
            raise err(NotFoundError, "not found")
        if status == 401:
            raise err(UnauthorizedError, "unauthorized" + hint)
        if status == 403:
            raise err(ForbiddenError, "forbidden")
        if status == 429:
            reset_at = reset_time(resp.retry_after, self._clock.now())
            when = f", resets at {reset_at.isoformat(timespec='seconds')}" if reset_at else ""
            raise RateLimitedError(
                f"{target}: {what}: HTTP 429 rate limited{tries}{when}{detail}",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=429,
                reset_at=reset_at,
                rate_limit=self._rate_limits.update(ref.host, resp.headers)
                or self._rate_limits.get(ref.host),
            )
        if status == 408 or status >= 500:
            raise err(UpstreamUnavailableError, f"upstream unavailable{tries}")
        raise err(BadResponseError, "unexpected status")
