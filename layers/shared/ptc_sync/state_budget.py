"""The upstream pull budget every checker shares (``StateBudget``, spent in the state table) and
``RetryableError``, what a checker raises for an item that cannot be processed now."""

from __future__ import annotations

from datetime import datetime

from ptc_sync.registry.ratelimit import within_budget
from ptc_sync.state import StateStore
from ptc_sync.sync import UpstreamResolver


class RetryableError(RuntimeError):
    """The item could not be processed now (ECR throttled, …): the message is retried by SQS."""


class StateBudget:
    """The upstream pull budget shared by all checkers, spent atomically in the state table.

    Before the first spend on a host, what upstream reported on this checker's own requests (the HEADs
    it just made) is recorded, so the shared budget starts from fresh numbers (a new window included);
    and a spend must fit both those numbers and the shared budget: the tighter decides."""

    def __init__(self, state: StateStore, registry: UpstreamResolver, reserve: int, now: datetime) -> None:
        self.state = state
        self.registry = registry
        self.reserve = reserve
        self.now = now
        self._observed: set[str] = set()

    def try_spend(self, host: str, pulls: int) -> str:
        fresh = self.registry.rate_limit(host)
        if host not in self._observed:
            self._observed.add(host)
            if fresh is not None:
                self.state.observe_rate_limit(fresh, self.now)
        if not within_budget(fresh, pulls, reserve=self.reserve):
            left = fresh.remaining if fresh else "?"
            return (
                f"{host}: {left} pulls left, reserve {self.reserve}, refresh costs {pulls} (upstream's count)"
            )
        if self.state.reserve_pulls(host, pulls, self.reserve, self.now):
            return ""
        status = self.state.rate_limit(host)
        left = status.remaining if status else "?"
        return f"{host}: {left} pulls left, reserve {self.reserve}, refresh costs {pulls} (shared budget)"
