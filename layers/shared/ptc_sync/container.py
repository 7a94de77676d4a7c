"""Objects kept for the life of a Lambda container (built on the first invocation, then reused)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class PerContainer[T]:
    """One object per Lambda container, built (and its settings validated) on first use."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._build()
            return self._value

    def set(self, value: T | None) -> None:
        """Install a prebuilt object (tests and the local demo), or clear the cache with None."""
        with self._lock:
            self._value = value
