"""Rate-limit headers: ``ratelimit-limit`` / ``ratelimit-remaining`` (Docker Hub) and ``Retry-After``.

Docker Hub reports ``ratelimit-limit: 100;w=21600`` and ``ratelimit-remaining: 76;w=21600`` on
manifest responses (HEAD included, and HEAD does not count). Only manifest GETs count, once per
platform for a multi-arch pull, so a caller that plans pulls keeps a budget from these numbers.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

from ptc_sync.models import RateLimitStatus

LIMIT_HEADER: Final = "ratelimit-limit"
REMAINING_HEADER: Final = "ratelimit-remaining"
SOURCE_HEADER: Final = "docker-ratelimit-source"

_QUOTA_RE: Final = re.compile(r"^\s*(\d{1,12})\s*(?:;(.*))?$")
_WINDOW_RE: Final = re.compile(r"(?:^|;)\s*w\s*=\s*(\d{1,12})\s*(?:;|$)")


def parse_quota(value: str | None) -> tuple[int | None, int | None]:
    """``"100;w=21600"`` → ``(100, 21600)``; ``"100, 100;w=21600"`` (draft-IETF form) → ``(100, 21600)``.

    Unparseable values give ``(None, None)``: a header we do not understand is no budget at all.
    """
    if not value:
        return None, None
    amount: int | None = None
    window: int | None = None
    for item in value.split(","):
        match = _QUOTA_RE.match(item)
        if match is None:
            continue
        if amount is None:
            amount = int(match.group(1))
        if window is None and match.group(2):
            w = _WINDOW_RE.search(";" + match.group(2))
            if w:
                window = int(w.group(1))
    return amount, window


def parse_rate_limit(host: str, headers: Mapping[str, str]) -> RateLimitStatus | None:
    """The status a response reports, or None when it carries no rate-limit headers (unlimited)."""
    limit_raw = headers.get(LIMIT_HEADER)
    remaining_raw = headers.get(REMAINING_HEADER)
    if limit_raw is None and remaining_raw is None:
        return None
    limit, limit_window = parse_quota(limit_raw)
    remaining, remaining_window = parse_quota(remaining_raw)
    if limit is None and remaining is None:
        return None
    source = headers.get(SOURCE_HEADER)
    return RateLimitStatus(
        host=host,
        limit=limit,
        remaining=remaining,
        window_seconds=limit_window if limit_window is not None else remaining_window,
        source=source.strip()[:200] if source else None,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    A date in the past gives 0; garbage gives None (the caller falls back to its own backoff).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        return None
    return max(0.0, (when - now).total_seconds())


def reset_time(retry_after_seconds: float | None, now: datetime) -> datetime | None:
    if retry_after_seconds is None:
        return None
    return now + timedelta(seconds=retry_after_seconds)


def within_budget(status: RateLimitStatus | None, pulls: int, *, reserve: int = 0) -> bool:
    """Whether ``pulls`` more manifest GETs fit the last reported budget, keeping ``reserve`` spare.

    No status (no headers seen) means upstream did not report a limit: allowed. Docker Hub counts a
    multi-arch pull once per platform, so pass the number of platforms, not 1.
    """
    if status is None or status.remaining is None:
        return True
    return status.remaining - reserve >= pulls


class RateLimitTracker:
    """The latest rate-limit status per upstream host, shared by all workers of a client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status: dict[str, RateLimitStatus] = {}

    def update(self, host: str, headers: Mapping[str, str]) -> RateLimitStatus | None:
        status = parse_rate_limit(host, headers)
        if status is None:
            return None
        with self._lock:
            previous = self._status.get(host)
            if previous is not None and status.source is None and previous.source is not None:
                status = replace(status, source=previous.source)
            self._status[host] = status
        return status

    def get(self, host: str) -> RateLimitStatus | None:
        with self._lock:
            return self._status.get(host)

    def all(self) -> tuple[RateLimitStatus, ...]:
        with self._lock:
            return tuple(self._status[h] for h in sorted(self._status))
