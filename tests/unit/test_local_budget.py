"""The single-process pull budget: upstream's last ratelimit-remaining, less the reserve, less what
this run already spent; hosts reporting no limit are unlimited."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ptc_sync.models import RateLimitStatus
from ptc_sync.settings import SyncSettings
from ptc_sync.sync import LocalBudget


class FakeRegistry:
    def __init__(self, statuses: dict[str, RateLimitStatus]) -> None:
        self.statuses = statuses
        self.asked: list[str] = []

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        self.asked.append(host)
        return self.statuses.get(host)


def budget(registry: FakeRegistry, reserve: int) -> LocalBudget:
    engine: Any = SimpleNamespace(registry=registry, settings=SyncSettings(rate_limit_reserve=reserve))
    return LocalBudget(engine)


def test_spends_down_to_the_reserve_then_refuses() -> None:
    hub = "registry-1.docker.io"
    registry = FakeRegistry({hub: RateLimitStatus(hub, limit=100, remaining=15, window_seconds=21600)})
    b = budget(registry, reserve=10)
    assert b.try_spend(hub, 2) == ""  # 15 → 13
    assert b.try_spend(hub, 3) == ""  # 13 → 10, the reserve is kept
    refusal = b.try_spend(hub, 1)
    assert refusal == f"{hub}: 10 pulls left, reserve 10, refresh costs 1"
    assert registry.asked == [hub], "upstream's figure is read once, then spent locally"


def test_hosts_without_a_reported_limit_are_unlimited() -> None:
    b = budget(FakeRegistry({}), reserve=10)
    assert all(b.try_spend("quay.io", 50) == "" for _ in range(10))
