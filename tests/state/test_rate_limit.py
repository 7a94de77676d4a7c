"""Shared upstream pull budgets: newest observation wins, reservations never overspend."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from ptc_sync.models import RateLimitStatus
from ptc_sync.state import DynamoStateStore

from .conftest import START, item

HUB = "registry-1.docker.io"
SIX_HOURS = 21600


def observe(
    store: DynamoStateStore, remaining: int | None, *, at_minutes: float = 0, limit: int = 100
) -> bool:
    status = RateLimitStatus(
        HUB, limit=limit, remaining=remaining, window_seconds=SIX_HOURS, source="1.2.3.4"
    )
    return store.observe_rate_limit(status, START + timedelta(minutes=at_minutes))


def test_a_host_never_observed_has_no_known_budget(store: DynamoStateStore, ddb: Any) -> None:
    assert store.rate_limit(HUB) is None
    assert store.reserve_pulls(HUB, 5, 10, START)
    assert item(ddb, f"HOST#{HUB}", "RATELIMIT") is None  # nothing invented


def test_the_newest_observation_wins(store: DynamoStateStore) -> None:
    assert observe(store, 76, at_minutes=10)
    assert not observe(store, 90, at_minutes=5)  # older, arrived late
    assert not observe(store, 91, at_minutes=10)  # same instant: the first one stays
    status = store.rate_limit(HUB)
    assert status == RateLimitStatus(HUB, limit=100, remaining=76, window_seconds=SIX_HOURS, source="1.2.3.4")
    assert observe(store, 70, at_minutes=11)
    assert store.rate_limit(HUB) == RateLimitStatus(HUB, 100, 70, SIX_HOURS, "1.2.3.4")


def test_an_observation_without_numbers_removes_the_old_ones(store: DynamoStateStore) -> None:
    observe(store, 3)
    assert store.observe_rate_limit(RateLimitStatus(HUB), START + timedelta(minutes=1))
    assert store.rate_limit(HUB) == RateLimitStatus(HUB)
    assert store.reserve_pulls(HUB, 50, 10, START + timedelta(minutes=2))  # upstream stopped limiting


def test_reservations_stop_at_the_reserve(store: DynamoStateStore) -> None:
    observe(store, 20)
    now = START + timedelta(minutes=1)
    assert store.reserve_pulls(HUB, 4, 10, now)  # 16 left
    assert store.reserve_pulls(HUB, 6, 10, now)  # exactly the reserve left: allowed
    assert not store.reserve_pulls(HUB, 1, 10, now)
    assert store.reserve_pulls(HUB, 0, 10, now)  # costs nothing
    status = store.rate_limit(HUB)
    assert status is not None
    assert status.remaining == 10


def test_a_passed_window_starts_again_from_the_limit(store: DynamoStateStore) -> None:
    observe(store, 10, limit=40)
    after = START + timedelta(seconds=SIX_HOURS + 1)
    assert not store.reserve_pulls(HUB, 31, 10, after)  # 40 - 31 would dip into the reserve
    assert store.reserve_pulls(HUB, 5, 10, after)
    status = store.rate_limit(HUB)
    assert status is not None
    assert status.remaining == 35
    assert store.reserve_pulls(HUB, 25, 10, after)  # the new window counts down as usual
    assert not store.reserve_pulls(HUB, 1, 10, after)


def test_negative_numbers_are_refused(store: DynamoStateStore) -> None:
    with pytest.raises(ValueError, match="negative"):
        store.reserve_pulls(HUB, -1, 10, START)
    with pytest.raises(ValueError, match="negative"):
        store.reserve_pulls(HUB, 1, -10, START)


def test_racing_checkers_never_overspend(store: DynamoStateStore) -> None:
    """16 checkers grab pulls from one budget at once; exactly remaining - reserve are granted."""
    observe(store, 60, limit=100)
    racers, reserve = 16, 10
    barrier = threading.Barrier(racers)
    now = START + timedelta(minutes=1)

    def grab(cost: int) -> int:
        barrier.wait()
        return sum(cost for _ in range(8) if store.reserve_pulls(HUB, cost, reserve, now))

    with ThreadPoolExecutor(racers) as pool:
        granted = sum(pool.map(grab, [1, 2] * (racers // 2)))
    status = store.rate_limit(HUB)
    assert status is not None
    assert granted + status.remaining == 60
    assert status.remaining in {reserve, reserve + 1}  # a 2-pull request cannot take the last one
    assert granted >= 60 - reserve - 1


def test_racing_checkers_restart_a_passed_window_once(store: DynamoStateStore) -> None:
    observe(store, 0, limit=30)
    racers = 12
    barrier = threading.Barrier(racers)
    after = START + timedelta(seconds=SIX_HOURS + 1)

    def grab(_: int) -> int:
        barrier.wait()
        return sum(1 for _ in range(4) if store.reserve_pulls(HUB, 1, 10, after))

    with ThreadPoolExecutor(racers) as pool:
        granted = sum(pool.map(grab, range(racers)))
    assert granted == 20  # one fresh window of 30, 10 kept back, however many raced to restart it
