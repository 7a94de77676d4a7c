"""History: "what changed in the last day" is Queries on the ChangesByDay index, never a Scan."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ptc_sync.models import Outcome, TagResult
from ptc_sync.state import DynamoStateStore
from testbed.runtime import FakeClock
from tests.faults import AwsFaults

from .conftest import START

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64


def result(name: str, outcome: Outcome) -> TagResult:
    return TagResult(f"docker-hub/library/{name}", "latest", "docker-hub", outcome, OLD, NEW, reason=name)


def run(store: DynamoStateStore, run_id: str, *results: TagResult) -> None:
    store.start_run(run_id, len(results), START)
    store.record_results(run_id, results, batch_id=f"{run_id}-batch")


def test_refreshes_and_failures_of_the_last_day_oldest_first(
    store: DynamoStateStore, clock: FakeClock, ddb: Any
) -> None:
    # START is 23:30 UTC: the runs below straddle midnight, so two day partitions are read
    run(store, "too-old", result("ancient", Outcome.REFRESHED))
    clock.advance(hours=2)
    day_ago = clock.now()
    run(store, "r1", result("node", Outcome.REFRESHED), result("fresh", Outcome.FRESH))
    clock.advance(minutes=15)
    run(
        store,
        "r2",
        result("python", Outcome.REFRESH_FAILED),
        result("redis", Outcome.UPSTREAM_ERROR),
        result("stale", Outcome.STALE),
        result("missing", Outcome.UPSTREAM_MISSING),
        result("limited", Outcome.RATE_LIMITED),
    )
    clock.advance(hours=23, minutes=30)
    run(store, "r3", result("alpine", Outcome.REFRESHED))

    faults = AwsFaults(ddb)
    changes = store.changes_since(day_ago)
    assert [(c.result.repository.rsplit("/", 1)[1], c.result.outcome, c.run_id) for c in changes] == [
        ("node", Outcome.REFRESHED, "r1"),
        ("python", Outcome.REFRESH_FAILED, "r2"),
        ("redis", Outcome.UPSTREAM_ERROR, "r2"),
        ("alpine", Outcome.REFRESHED, "r3"),
    ]
    assert changes[0].at == day_ago
    assert changes[0].result == result("node", Outcome.REFRESHED)
    operations = {(op, params.get("IndexName")) for op, params in faults.calls}
    assert operations == {("Query", "ChangesByDay")}
    assert faults.count("Query") == 2  # one per UTC day touched


def test_a_window_in_the_past(store: DynamoStateStore, clock: FakeClock) -> None:
    run(store, "r1", result("node", Outcome.REFRESHED))
    clock.advance(hours=1)
    run(store, "r2", result("python", Outcome.REFRESHED))
    assert [c.run_id for c in store.changes_since(START - timedelta(hours=1), START)] == ["r1"]
    assert store.changes_since(clock.now() + timedelta(minutes=1)) == []
