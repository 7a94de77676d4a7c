"""A local run's pull budget is the checker's own (``StateBudget``) on the in-memory store: upstream's
last ratelimit-remaining, less the reserve, less what this run already spent; hosts reporting no
limit are unlimited."""

from __future__ import annotations

from ptc_sync.models import RateLimitStatus
from ptc_sync.state import MemoryStateStore
from ptc_sync.state_budget import StateBudget
from tests.fakes import START

HUB = "registry-1.docker.io"


class Reported:
    """What upstream reported on the checker's own requests (the registry client's last figures)."""

    def __init__(self, statuses: dict[str, RateLimitStatus]) -> None:
        self.statuses = statuses

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        return self.statuses.get(host)


def budget(statuses: dict[str, RateLimitStatus], reserve: int) -> tuple[StateBudget, MemoryStateStore]:
    store = MemoryStateStore(lambda: START)
    return StateBudget(store, Reported(statuses), reserve, START), store  # type: ignore[arg-type]


def test_spends_down_to_the_reserve_then_refuses() -> None:
    b, store = budget({HUB: RateLimitStatus(HUB, limit=100, remaining=15, window_seconds=21600)}, 10)
    assert b.try_spend(HUB, 2) == ""  # 15 → 13
    assert b.try_spend(HUB, 3) == ""  # 13 → 10, the reserve is kept
    refusal = b.try_spend(HUB, 1)
    assert refusal == f"{HUB}: 15 pulls left, reserve 10, refresh costs 1 (shared budget)"
    assert store.spent == {HUB: 5}, "what was spent is counted against upstream's figure"


def test_upstreams_own_count_refuses_before_the_shared_budget_is_asked() -> None:
    b, store = budget({HUB: RateLimitStatus(HUB, limit=100, remaining=10, window_seconds=21600)}, 10)
    assert b.try_spend(HUB, 1) == f"{HUB}: 10 pulls left, reserve 10, refresh costs 1 (upstream's count)"
    assert store.spent == {}


def test_hosts_without_a_reported_limit_are_unlimited() -> None:
    b, _ = budget({}, reserve=10)
    assert all(b.try_spend("quay.io", 50) == "" for _ in range(10))
