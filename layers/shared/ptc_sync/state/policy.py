"""The pure core of the run state: what the table remembers about a tag (``TagState``) and the decisions
made from it, with no I/O: when to alert (the first failure and the recovery, not every run), the
refresh cooldown and backoff, how a result folds into the next state, and a run's progress. The
outcome groupings these decisions use are the ones defined once in ``ptc_sync.models``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final

from ptc_sync.models import (
    FAILED_OUTCOMES,
    INCONCLUSIVE_OUTCOMES,
    MATCHES_OUTCOMES,
    STILL_DIFFERS_OUTCOMES,
    WARNING_OUTCOMES,
    Outcome,
    TagResult,
)
from ptc_sync.pull_times import latest, own_pull_times, people_pulled_at

MAX_BACKOFF: Final = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class TagState:
    """What the table remembers about one cached tag across runs."""

    repository: str
    tag: str
    outcome: Outcome | None = None  # of the last check
    upstream_digest: str | None = None  # last one upstream reported
    cached_digest: str | None = None  # what the cache held after the last check
    checked_at: datetime | None = None
    refreshed_at: datetime | None = None  # last successful refresh
    failure_streak: int = 0  # consecutive failing checks (inconclusive ones do not break it)
    stale_since: datetime | None = None  # first check that saw the cache differ from upstream
    alerted_outcome: Outcome | None = None  # the outcome of the last alert sent for this tag
    # failed refreshes in a row towards ``failed_upstream`` (a success or a new upstream digest ends
    # them) and when the last one failed: what the refresh backoff is computed from
    refresh_failures: int = 0
    failed_upstream: str | None = None
    failed_at: datetime | None = None
    # the last pull by a person (not ptc-sync) the checks saw: PTC_PULLED_WITHIN_DAYS (pull_times.py)
    pulled_at: datetime | None = None
    version: int = 0  # optimistic-concurrency counter of the stored item

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True, slots=True)
class TagUpdate:
    previous: TagState | None
    current: TagState
    alert: bool  # send a per-tag alert for this result (decided against the state it replaced)
    applied: bool = True  # False: the result was older than the stored check and was ignored
    written: bool = True  # False: nothing was written (ignored, or the state did not change)


def unchanged(previous: TagState, current: TagState) -> bool:
    """``current`` is ``previous`` but for ``checked_at`` and ``version``: nothing to write but the TTL."""
    return replace(current, checked_at=previous.checked_at, version=previous.version) == previous


def should_alert(previous: TagState | None, result: TagResult) -> bool:
    """Alert on the first failure and on recovery, not again while a failure persists.

    Refresh failures and upstream errors are one kind of failure: switching between them is the
    same failure persisting. Recovery is the tag matching upstream again (fresh or refreshed);
    stale, missing upstream, immutable, rate limited or skipped neither fail nor recover.
    """
    last_alert = previous.alerted_outcome if previous is not None else None
    failing_was_told = last_alert in FAILED_OUTCOMES
    if result.outcome in FAILED_OUTCOMES:
        return not failing_was_told
    if result.outcome in MATCHES_OUTCOMES:
        return failing_was_told
    return False


def judged(result: TagResult, update: TagUpdate, *, scheduled: bool) -> TagResult:
    """The result with what the run state makes of it: the one rule of a tag's news.

    News is an alert (the first failure, the recovery: ``should_alert``), a refresh, or a warning
    outcome (stale, missing upstream, immutable, rate limited) the tag did not show before.
    ``recovered``: a fresh result ending an alerted failure. ``first_seen``: a scheduled check of a
    tag the state did not know (a scheduled run of only such tags is the first after a deploy)."""
    previous = update.previous
    changed = result.outcome in WARNING_OUTCOMES and (
        previous is None or previous.outcome is not result.outcome
    )
    return replace(
        result,
        stale_since=update.current.stale_since or result.stale_since,
        news=update.alert or result.outcome is Outcome.REFRESHED or changed,
        recovered=update.alert and result.outcome is Outcome.FRESH,
        first_seen=previous is None and scheduled,
    )


def in_cooldown(state: TagState | None, now: datetime, cooldown: timedelta) -> bool:
    """Whether the tag was refreshed less than ``cooldown`` ago (a zero cooldown never holds back)."""
    if state is None or state.refreshed_at is None or cooldown <= timedelta(0):
        return False
    return now - state.refreshed_at < cooldown


def backoff_until(
    state: TagState | None, upstream_digest: str | None, now: datetime, base: timedelta
) -> datetime | None:
    """Until when a refresh of the tag waits after failing (None: it may refresh now).

    After the n-th failed refresh towards one upstream digest the next one waits ``base * 2**(n-1)``
    (at most MAX_BACKOFF) plus half an interval: ``failed_at`` is when the failing check began, and
    the next scheduled check begins about one interval later, so without the half the first backoff
    would end exactly at the next run, held back or not by jitter. So one failure skips one run, two
    skip two, three skip four: a refresh that keeps failing costs a few imports a day, not one a run.
    A different upstream digest is a new chance at once.
    """
    if state is None or state.refresh_failures < 1 or state.failed_at is None:
        return None
    if upstream_digest is not None and upstream_digest != state.failed_upstream:
        return None
    delay = min(base * 2 ** (state.refresh_failures - 1), MAX_BACKOFF) + base / 2
    until = state.failed_at + delay
    return until if now < until else None


def next_tag_state(previous: TagState | None, result: TagResult, checked_at: datetime) -> TagState:
    """The state after ``result`` (checked at ``checked_at``); ``version`` is the previous one + 1."""
    base = previous or TagState(result.repository, result.tag)
    outcome = result.outcome
    if outcome in FAILED_OUTCOMES:
        streak = base.failure_streak + 1
    elif outcome in INCONCLUSIVE_OUTCOMES:
        streak = base.failure_streak
    else:
        streak = 0
    if outcome in STILL_DIFFERS_OUTCOMES:
        stale_since = base.stale_since or checked_at
    elif outcome in MATCHES_OUTCOMES or outcome is Outcome.UPSTREAM_MISSING:
        stale_since = None
    else:
        stale_since = base.stale_since
    refreshed = outcome is Outcome.REFRESHED
    upstream = result.upstream_digest or base.upstream_digest
    failures, failed_upstream, failed_at = base.refresh_failures, base.failed_upstream, base.failed_at
    if outcome is Outcome.REFRESH_FAILED:
        same = failed_upstream is not None and failed_upstream == result.upstream_digest
        failures = failures + 1 if same else 1
        failed_upstream, failed_at = result.upstream_digest, checked_at
    elif outcome in MATCHES_OUTCOMES:
        failures, failed_upstream, failed_at = 0, None, None
    # a refreshed tag holds what upstream had; the result's cached digest is the one it replaced
    cached = (result.upstream_digest if refreshed else result.cached_digest) or base.cached_digest
    return replace(
        base,
        outcome=outcome,
        upstream_digest=upstream,
        cached_digest=cached,
        checked_at=checked_at,
        refreshed_at=checked_at if refreshed else base.refreshed_at,
        failure_streak=streak,
        stale_since=stale_since,
        alerted_outcome=outcome if should_alert(previous, result) else base.alerted_outcome,
        refresh_failures=failures,
        failed_upstream=failed_upstream,
        failed_at=failed_at,
        pulled_at=latest(
            base.pulled_at,
            people_pulled_at(result.image_pulled_at, result.image_pushed_at, own_pull_times(base)),
        ),
        version=base.version + 1,
    )


@dataclass(frozen=True, slots=True)
class RunProgress:
    run_id: str
    expected: int
    done: int
    started_at: datetime
    summarised: bool
    counts: Mapping[tuple[str, Outcome], int] = field(default_factory=dict)  # (rule prefix, outcome)

    @property
    def complete(self) -> bool:
        return self.done >= self.expected

    def count(self, outcome: Outcome) -> int:
        return sum(n for (_, o), n in self.counts.items() if o is outcome)

    def totals(self) -> dict[str, int]:
        """Outcome value → tags, over every rule (outcomes with none left out), sorted by outcome."""
        found = {outcome.value: self.count(outcome) for _, outcome in self.counts}
        return {name: n for name, n in sorted(found.items()) if n}


@dataclass(frozen=True, slots=True)
class Change:
    """A refresh or a failure, as "what changed" lists it."""

    at: datetime
    run_id: str
    result: TagResult
