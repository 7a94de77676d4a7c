"""The state every concern of the emulator reads: the clock, the default account and region, the one
lock around every emulated call, and when each cached tag was last checked upstream (written by
pulls and PutImage, cleared by BatchDeleteImage). Each mixin declares the rest of what it owns.
"""

from __future__ import annotations

import threading
from datetime import datetime

from testbed.ecr_ptc.clock import Clock


class EmulatorCore:
    """Attributes shared by the emulator's mixins; ``PullThroughCacheEmulator.__init__`` sets them."""

    clock: Clock
    account_id: str
    region: str
    _lock: threading.RLock
    _last_checked: dict[tuple[str, str, str, str], datetime]

    def _advance_background(self, account: str, region: str, repository: str | None) -> None:
        """Count one call on ``repository`` and finish the background imports that are due (``pulls``
        implements it; DescribeImages counts too)."""
        raise NotImplementedError
