"""The pure decisions: when to alert, when a tag is in refresh cooldown, how a result folds into state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from ptc_sync.models import Outcome, TagResult
from ptc_sync.state import TagState, in_cooldown, next_tag_state, should_alert

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64

FAILURES = [Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR]
RECOVERIES = [Outcome.FRESH, Outcome.REFRESHED]
NEITHER = [
    Outcome.STALE,
    Outcome.UPSTREAM_MISSING,
    Outcome.IMMUTABLE,
    Outcome.RATE_LIMITED,
    Outcome.SKIPPED,
    Outcome.REPAIRED,
    Outcome.IN_PROGRESS,
    Outcome.NOT_A_CACHE,
    Outcome.NOT_COMPARABLE,
    Outcome.WARMING,
]


def result(outcome: Outcome, *, cached: str | None = OLD, upstream: str | None = NEW) -> TagResult:
    return TagResult("docker-hub/library/node", "lts", "docker-hub", outcome, cached, upstream)


def state(alerted: Outcome | None = None, *, refreshed_at: datetime | None = None) -> TagState:
    return TagState("docker-hub/library/node", "lts", alerted_outcome=alerted, refreshed_at=refreshed_at)


def test_every_outcome_is_classified() -> None:
    """A new Outcome must be placed in one of the three groups before the alert table covers it."""
    groups = [FAILURES, RECOVERIES, NEITHER]
    assert sorted(itertools.chain(*groups)) == sorted(Outcome)
    assert len(set(itertools.chain(*groups))) == len(Outcome)


# -- should_alert: every (last alerted outcome, new outcome) pair ------------------------------------

PREVIOUS = [None, state(None), *(state(o) for o in Outcome)]


@pytest.mark.parametrize("outcome", FAILURES)
@pytest.mark.parametrize("previous", PREVIOUS, ids=repr)
def test_a_failure_alerts_unless_a_failure_was_the_last_alert(
    previous: TagState | None, outcome: Outcome
) -> None:
    told_failing = previous is not None and previous.alerted_outcome in FAILURES
    assert should_alert(previous, result(outcome)) is (not told_failing)


@pytest.mark.parametrize("outcome", RECOVERIES)
@pytest.mark.parametrize("previous", PREVIOUS, ids=repr)
def test_recovery_alerts_only_after_a_failure_alert(previous: TagState | None, outcome: Outcome) -> None:
    told_failing = previous is not None and previous.alerted_outcome in FAILURES
    assert should_alert(previous, result(outcome)) is told_failing


@pytest.mark.parametrize("outcome", NEITHER)
@pytest.mark.parametrize("previous", PREVIOUS, ids=repr)
def test_outcomes_that_neither_fail_nor_recover_never_alert(
    previous: TagState | None, outcome: Outcome
) -> None:
    assert should_alert(previous, result(outcome)) is False


def test_alerts_over_a_history_of_runs() -> None:
    """Folding results one run after another: one alert when it breaks, one when it is fixed."""
    runs = [
        (Outcome.FRESH, False),
        (Outcome.REFRESH_FAILED, True),  # first failure
        (Outcome.REFRESH_FAILED, False),  # persists
        (Outcome.UPSTREAM_ERROR, False),  # still failing, another way
        (Outcome.RATE_LIMITED, False),  # nothing learned
        (Outcome.STALE, False),  # not fixed
        (Outcome.REFRESH_FAILED, False),  # the same failure, still told
        (Outcome.REFRESHED, True),  # recovery
        (Outcome.FRESH, False),
        (Outcome.UPSTREAM_ERROR, True),  # a new failure
        (Outcome.FRESH, True),  # recovery
    ]
    current: TagState | None = None
    alerts = []
    for i, (outcome, _) in enumerate(runs):
        r = result(outcome)
        alerts.append(should_alert(current, r))
        current = next_tag_state(current, r, T0 + timedelta(minutes=15 * i))
    assert alerts == [expected for _, expected in runs]


# -- next_tag_state --------------------------------------------------------------------------------


def fold(*outcomes: Outcome, start: TagState | None = None) -> TagState:
    current = start
    for i, outcome in enumerate(outcomes):
        current = next_tag_state(current, result(outcome), T0 + timedelta(minutes=15 * i))
    assert current is not None
    return current


def test_failure_streak_counts_consecutive_failures_of_either_kind() -> None:
    assert fold(Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR, Outcome.REFRESH_FAILED).failure_streak == 3


def test_inconclusive_checks_neither_grow_nor_end_a_streak() -> None:
    assert fold(Outcome.UPSTREAM_ERROR, Outcome.RATE_LIMITED, Outcome.SKIPPED).failure_streak == 1
    assert fold(Outcome.UPSTREAM_ERROR, Outcome.RATE_LIMITED, Outcome.UPSTREAM_ERROR).failure_streak == 2


@pytest.mark.parametrize("outcome", [*RECOVERIES, Outcome.STALE, Outcome.UPSTREAM_MISSING, Outcome.IMMUTABLE])
def test_a_conclusive_non_failure_ends_the_streak(outcome: Outcome) -> None:
    assert fold(Outcome.UPSTREAM_ERROR, Outcome.UPSTREAM_ERROR, outcome).failure_streak == 0


def test_stale_since_is_the_first_check_that_saw_the_difference() -> None:
    after = fold(Outcome.FRESH, Outcome.STALE, Outcome.UPSTREAM_ERROR, Outcome.REFRESH_FAILED, Outcome.STALE)
    assert after.stale_since == T0 + timedelta(minutes=15)


@pytest.mark.parametrize("outcome", [*RECOVERIES, Outcome.UPSTREAM_MISSING])
def test_stale_since_clears_when_nothing_differs_any_more(outcome: Outcome) -> None:
    assert fold(Outcome.STALE, outcome).stale_since is None


def test_a_refresh_records_when_and_what_the_cache_now_holds() -> None:
    refreshed = fold(Outcome.STALE, Outcome.REFRESHED)
    assert refreshed.refreshed_at == T0 + timedelta(minutes=15)
    assert refreshed.cached_digest == NEW  # the result's cached digest is the replaced one
    assert refreshed.upstream_digest == NEW
    later = fold(Outcome.FRESH, start=refreshed)
    assert later.refreshed_at == refreshed.refreshed_at
    assert later.checked_at == T0


def test_digests_unknown_to_a_result_are_kept() -> None:
    known = fold(Outcome.STALE)
    after = next_tag_state(known, result(Outcome.UPSTREAM_ERROR, cached=OLD, upstream=None), T0)
    assert after.upstream_digest == NEW
    assert after.cached_digest == OLD


def test_version_counts_writes_and_the_alert_is_remembered() -> None:
    after = fold(Outcome.FRESH, Outcome.REFRESH_FAILED, Outcome.REFRESH_FAILED)
    assert after.version == 3
    assert after.alerted_outcome is Outcome.REFRESH_FAILED
    assert after.outcome is Outcome.REFRESH_FAILED


# -- in_cooldown -----------------------------------------------------------------------------------

COOLDOWN = timedelta(minutes=30)


@pytest.mark.parametrize(
    ("tag_state", "now", "cooldown", "expected"),
    [
        (None, T0, COOLDOWN, False),
        (state(), T0, COOLDOWN, False),  # never refreshed
        (state(refreshed_at=T0), T0 + timedelta(minutes=29, seconds=59), COOLDOWN, True),
        (state(refreshed_at=T0), T0 + COOLDOWN, COOLDOWN, False),  # exactly N minutes later: allowed
        (state(refreshed_at=T0), T0 + timedelta(hours=5), COOLDOWN, False),
        (state(refreshed_at=T0), T0, timedelta(0), False),  # zero cooldown never holds back
        (state(refreshed_at=T0 + timedelta(minutes=5)), T0, COOLDOWN, True),  # clock skew: be careful
    ],
)
def test_in_cooldown(tag_state: TagState | None, now: datetime, cooldown: timedelta, expected: bool) -> None:
    assert in_cooldown(tag_state, now, cooldown) is expected
