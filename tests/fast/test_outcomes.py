"""The named outcome groupings (models.py), each pinned: a new Outcome must be placed on purpose."""

from __future__ import annotations

from ptc_sync.cli_output import EXIT_OK, EXIT_STALE, exit_code
from ptc_sync.models import (
    CHANGED_OUTCOMES,
    DIFFERED_OUTCOMES,
    DIGEST_CHANGE_OUTCOMES,
    FAILED_OUTCOMES,
    HISTORY_OUTCOMES,
    INCONCLUSIVE_OUTCOMES,
    MATCHES_OUTCOMES,
    MAY_SERVE_OLD_OUTCOMES,
    NEW_IMAGE_OUTCOMES,
    NOT_FRESH_OUTCOMES,
    STILL_DIFFERS_OUTCOMES,
    WARNING_OUTCOMES,
    Outcome,
    TagResult,
)

o = Outcome


def test_failed() -> None:
    assert {o.REFRESH_FAILED, o.UPSTREAM_ERROR} == FAILED_OUTCOMES


def test_warning_is_not_fresh_without_a_failure() -> None:
    assert {o.STALE, o.UPSTREAM_MISSING, o.RATE_LIMITED, o.IMMUTABLE} == WARNING_OUTCOMES
    assert not WARNING_OUTCOMES & FAILED_OUTCOMES


def test_not_fresh_is_failed_or_warning() -> None:
    assert NOT_FRESH_OUTCOMES == FAILED_OUTCOMES | WARNING_OUTCOMES
    # neither fresh nor unknown-but-harmless: what matches, was left alone or only repaired
    assert not NOT_FRESH_OUTCOMES & {
        o.FRESH,
        o.REFRESHED,
        o.SKIPPED,
        o.IN_PROGRESS,
        o.NOT_A_CACHE,
        o.REPAIRED,
    }


def test_differed_and_still_differs() -> None:
    assert {o.STALE, o.REFRESHED, o.REFRESH_FAILED, o.IMMUTABLE} == DIFFERED_OUTCOMES
    assert DIFFERED_OUTCOMES - {o.REFRESHED} == STILL_DIFFERS_OUTCOMES
    assert not STILL_DIFFERS_OUTCOMES & MATCHES_OUTCOMES


def test_matches_and_new_image() -> None:
    assert {o.FRESH, o.REFRESHED} == MATCHES_OUTCOMES
    assert {o.STALE, o.REFRESHED} == NEW_IMAGE_OUTCOMES
    assert NEW_IMAGE_OUTCOMES <= DIFFERED_OUTCOMES


def test_digest_change_and_changed() -> None:
    assert DIFFERED_OUTCOMES | {o.REPAIRED, o.NOT_COMPARABLE} == DIGEST_CHANGE_OUTCOMES
    assert {o.STALE, o.REFRESHED, o.REPAIRED} == CHANGED_OUTCOMES


def test_history_lists_refreshes_repairs_and_failures() -> None:
    assert {o.REFRESHED, o.REPAIRED, o.REFRESH_FAILED, o.UPSTREAM_ERROR} == HISTORY_OUTCOMES


def test_inconclusive_neither_fails_nor_matches() -> None:
    assert {
        o.RATE_LIMITED,
        o.SKIPPED,
        o.IN_PROGRESS,
        o.NOT_A_CACHE,
        o.NOT_COMPARABLE,
        o.REPAIRED,
        o.WARMING,
    } == INCONCLUSIVE_OUTCOMES
    assert not INCONCLUSIVE_OUTCOMES & (FAILED_OUTCOMES | MATCHES_OUTCOMES)


def test_may_serve_old_is_every_notable_outcome_but_refreshed() -> None:
    assert {
        o.STALE,
        o.REFRESH_FAILED,
        o.UPSTREAM_MISSING,
        o.UPSTREAM_ERROR,
        o.RATE_LIMITED,
        o.IMMUTABLE,
        o.REPAIRED,
        o.NOT_COMPARABLE,
        o.WARMING,
    } == MAY_SERVE_OLD_OUTCOMES


def test_the_cli_exit_code_follows_not_fresh() -> None:
    for outcome in Outcome:
        code = exit_code([TagResult("a/b", "t", "a", outcome)])
        assert code == (EXIT_STALE if outcome in NOT_FRESH_OUTCOMES else EXIT_OK), outcome
