"""Per-tag state in DynamoDB: one conditional UpdateItem per result, alerts decided exactly once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from ptc_sync.models import Outcome, TagResult
from ptc_sync.state import DynamoStateStore
from testbed.runtime import FakeClock

from .conftest import START, item

REPO = "docker-hub/library/node"
OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64


def result(outcome: Outcome, tag: str = "lts", repository: str = REPO) -> TagResult:
    return TagResult(repository, tag, "docker-hub", outcome, OLD, NEW, reason="x" if outcome.notable else "")


def test_first_result_creates_the_state_with_a_ttl(store: DynamoStateStore, ddb: Any) -> None:
    update = store.record_tag(result(Outcome.STALE), START)
    assert update.previous is None
    assert update.applied
    stored = store.tag_state(REPO, "lts")
    assert stored == update.current
    assert stored.outcome is Outcome.STALE
    assert stored.stale_since == START
    assert stored.version == 1
    raw = item(ddb, f"TAG#{REPO}", "TAG#lts")
    assert raw is not None
    assert int(raw["expiresAt"]["N"]) == int((START + timedelta(days=90)).timestamp())


def test_alerts_once_per_failure_and_once_on_recovery(store: DynamoStateStore, clock: FakeClock) -> None:
    outcomes = [Outcome.REFRESH_FAILED, Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR, Outcome.REFRESHED]
    alerts = [store.record_tag(result(o), clock.advance(minutes=15)).alert for o in outcomes]
    assert alerts == [True, False, False, True]
    final = store.tag_state(REPO, "lts")
    assert final is not None
    assert final.failure_streak == 0
    assert final.alerted_outcome is Outcome.REFRESHED
    assert final.refreshed_at == clock.now()
    assert final.stale_since is None  # REMOVEd, not left behind


def test_stale_since_survives_across_runs(store: DynamoStateStore, clock: FakeClock) -> None:
    first = clock.advance(minutes=15)
    store.record_tag(result(Outcome.STALE), first)
    store.record_tag(result(Outcome.RATE_LIMITED), clock.advance(minutes=15))
    later = store.record_tag(result(Outcome.REFRESH_FAILED), clock.advance(minutes=15))
    assert later.current.stale_since == first


def test_a_result_older_than_the_stored_check_is_ignored(store: DynamoStateStore) -> None:
    store.record_tag(result(Outcome.FRESH), START)
    late = store.record_tag(result(Outcome.REFRESH_FAILED), START - timedelta(minutes=1))
    assert not late.applied
    assert not late.alert
    assert store.tag_state(REPO, "lts") == late.current
    assert late.current.outcome is Outcome.FRESH


def test_tag_states_reads_many_tags_in_batches(store: DynamoStateStore) -> None:
    for i in range(0, 150, 2):
        store.record_tag(result(Outcome.FRESH, tag=f"t{i}"), START)
    found = store.tag_states([(REPO, f"t{i}") for i in range(150)] + [(REPO, "t0")])
    assert sorted(found) == sorted((REPO, f"t{i}") for i in range(0, 150, 2))
    assert all(s.outcome is Outcome.FRESH for s in found.values())


def test_repository_states_reads_a_scans_repositories_in_one_range(store: DynamoStateStore, ddb: Any) -> None:
    names = [f"{REPO}-{c}" for c in "abc"]  # consecutive in name order, as a scan's are
    for name in names:
        for i in range(5):
            store.record_tag(result(Outcome.FRESH, tag=f"t{i}", repository=name), START)
    store.record_tag(result(Outcome.REFRESH_FAILED, tag="x", repository=f"{REPO}-b/nested"), START)
    store.record_tag(result(Outcome.FRESH, tag="y", repository=f"{REPO}-d"), START)  # past the range
    store.record_tag(result(Outcome.FRESH, tag="z", repository="quay/other"), START)
    calls: list[dict[str, Any]] = []
    ddb.meta.events.register("provide-client-params.dynamodb.Query", lambda params, **_: calls.append(params))
    found = store.repository_states([names[0], names[2], "quay/other", names[0]])
    assert sorted(found) == sorted(
        [(n, f"t{i}") for n in (names[0], names[2]) for i in range(5)] + [("quay/other", "z")]
    )
    assert [c["IndexName"] for c in calls] == ["TagStatesByGroup"] * 2, "one Query per first segment"
    assert store.repository_states(["never-seen"]) == {}


def test_a_state_the_index_lacks_is_written_into_it(store: DynamoStateStore, ddb: Any) -> None:
    """A state stored before the index existed (no index keys) reads as absent from a scan; its next
    result finds it, folds into it, and writes it with the keys, even when nothing else changed."""
    store.record_tag(result(Outcome.FRESH), START)
    ddb.update_item(
        TableName="ptc-sync-state",
        Key={"pk": {"S": f"TAG#{REPO}"}, "sk": {"S": "TAG#lts"}},
        UpdateExpression="REMOVE tagGroup, tagKey",
    )
    assert store.repository_states([REPO]) == {}
    update = store.record_tag(result(Outcome.FRESH), START + timedelta(minutes=15), previous=None)
    assert update.written
    assert update.previous is not None, "folded into the stored state, not a new one"
    assert update.current.version == update.previous.version + 1
    assert not update.alert
    assert list(store.repository_states([REPO])) == [(REPO, "lts")]
    again = store.record_tag(result(Outcome.FRESH), START + timedelta(minutes=30), previous=update.current)
    assert not again.written, "indexed now: an unchanged check writes nothing again"


def test_racing_checkers_count_every_result_and_alert_once(store: DynamoStateStore) -> None:
    """Eight checkers fold a failure into the same tag at once: none is lost, one alerts."""
    racers = 8
    barrier = threading.Barrier(racers)

    def check(_: int) -> bool:
        barrier.wait()
        return store.record_tag(result(Outcome.UPSTREAM_ERROR), START).alert

    with ThreadPoolExecutor(racers) as pool:
        alerts = list(pool.map(check, range(racers)))
    final = store.tag_state(REPO, "lts")
    assert final is not None
    assert final.failure_streak == racers
    assert final.version == racers
    assert sorted(alerts) == [False] * (racers - 1) + [True]
