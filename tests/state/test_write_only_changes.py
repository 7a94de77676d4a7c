"""A check that changes nothing writes nothing: the TTL is pushed on once a day, failures always land."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from ptc_sync.models import Outcome, TagResult
from ptc_sync.state import TTL_REFRESH, DynamoStateStore
from testbed.runtime import FakeClock

from .conftest import START, item

REPO = "docker-hub/library/node"
OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64


def result(outcome: Outcome, upstream: str = OLD) -> TagResult:
    return TagResult(REPO, "lts", "docker-hub", outcome, OLD, upstream, reason="x" if outcome.notable else "")


def calls(ddb: Any) -> Counter[str]:
    seen: Counter[str] = Counter()
    ddb.meta.events.register("after-call.dynamodb", lambda model, **_: seen.update([model.name]))
    return seen


def test_an_unchanged_fresh_tag_is_not_written(store: DynamoStateStore, ddb: Any, clock: FakeClock) -> None:
    first = store.record_tag(result(Outcome.FRESH), START)
    assert first.written
    seen = calls(ddb)
    again = store.record_tag(result(Outcome.FRESH), clock.advance(minutes=15), previous=first.current)
    assert not again.written
    assert again.applied
    assert not again.alert
    assert seen == Counter()  # the state the caller read was enough: no GetItem, no UpdateItem
    raw = item(ddb, f"TAG#{REPO}", "TAG#lts")
    assert raw is not None
    assert raw["version"]["N"] == "1"
    assert int(raw["expiresAt"]["N"]) == int((START + timedelta(days=90)).timestamp())


def test_the_ttl_is_pushed_on_once_the_stored_check_is_a_day_old(
    store: DynamoStateStore, ddb: Any, clock: FakeClock
) -> None:
    store.record_tag(result(Outcome.FRESH), START)
    store.record_tag(result(Outcome.FRESH), clock.advance(hours=23))
    assert store.tag_state(REPO, "lts").version == 1  # type: ignore[union-attr]
    later = clock.advance(seconds=TTL_REFRESH.total_seconds() - 23 * 3600)
    update = store.record_tag(result(Outcome.FRESH), later)
    assert update.written
    raw = item(ddb, f"TAG#{REPO}", "TAG#lts")
    assert raw is not None
    assert raw["version"]["N"] == "2"
    assert int(raw["expiresAt"]["N"]) == int((later + timedelta(days=90)).timestamp())


def test_failures_and_recoveries_are_always_written(store: DynamoStateStore, clock: FakeClock) -> None:
    store.record_tag(result(Outcome.FRESH), START)
    written = [
        store.record_tag(result(o), clock.advance(minutes=15)).written
        for o in (Outcome.UPSTREAM_ERROR, Outcome.UPSTREAM_ERROR, Outcome.FRESH, Outcome.FRESH)
    ]
    assert written == [True, True, True, False]
    final = store.tag_state(REPO, "lts")
    assert final is not None
    assert final.failure_streak == 0
    assert final.alerted_outcome is Outcome.FRESH


def test_a_new_upstream_digest_is_a_change(store: DynamoStateStore, clock: FakeClock) -> None:
    store.record_tag(result(Outcome.STALE), START)
    assert not store.record_tag(result(Outcome.STALE), clock.advance(minutes=15)).written
    moved = store.record_tag(result(Outcome.STALE, upstream=NEW), clock.advance(minutes=15))
    assert moved.written
    assert moved.current.upstream_digest == NEW
    assert moved.current.stale_since == START  # kept from the first stale check


def test_a_stale_previous_state_is_re_read_not_written_over(
    store: DynamoStateStore, clock: FakeClock
) -> None:
    """The caller's state is a version behind (another checker recorded a failure since): the
    update's condition fails, the state is re-read, and the failure is folded into the newer one."""
    seen = store.record_tag(result(Outcome.FRESH), START).current
    failed = store.record_tag(result(Outcome.UPSTREAM_ERROR), clock.advance(minutes=1))
    assert failed.alert
    again = store.record_tag(result(Outcome.UPSTREAM_ERROR), clock.advance(minutes=14), previous=seen)
    assert again.written
    assert not again.alert  # told once already: the racing checker's alert stands
    assert again.previous == failed.current
    assert again.current.failure_streak == 2
    assert again.current.version == 3


def test_an_unchanged_result_on_a_stale_state_leaves_the_newer_one_until_the_next_check(
    store: DynamoStateStore, clock: FakeClock
) -> None:
    """The documented limit of reading eventually consistent: a fresh result folded into a state
    older than a racing failure writes nothing; the failure stands and the next check ends it."""
    seen = store.record_tag(result(Outcome.FRESH), START).current
    store.record_tag(result(Outcome.UPSTREAM_ERROR), clock.advance(minutes=1))
    skipped = store.record_tag(result(Outcome.FRESH), clock.advance(minutes=1), previous=seen)
    assert not skipped.written
    assert not skipped.alert
    recovered = store.record_tag(result(Outcome.FRESH), clock.advance(minutes=15))
    assert recovered.written
    assert recovered.alert
    assert recovered.current.failure_streak == 0
