"""The emulation's time: every timestamp the emulated ECR writes or compares (pushes, pulls, the 24-hour
re-check, background imports and layer caching, describe lag, the PutImage quota window) is read from a
``Clock``, so a test moves time by calling ``advance``; nothing reads the wall clock after start.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, delta: timedelta) -> None: ...


class FakeClock:
    """Time that moves only when told to; every emulated timestamp is read from it."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("time does not go backwards")
        self._now += delta
