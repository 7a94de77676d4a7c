"""The emulation's time: every timestamp the emulated ECR writes or compares (pushes, pulls, the 24-hour
re-check, background imports and layer caching, describe lag, the PutImage quota window) is read from a
``Clock``, so a test moves time by calling ``advance``; nothing reads the wall clock after start.

``FakeClock`` is the testbed's one fake clock (``testbed.runtime``), re-exported here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from testbed.runtime import FakeClock

__all__ = ["Clock", "FakeClock"]


class Clock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, delta: timedelta) -> object: ...
