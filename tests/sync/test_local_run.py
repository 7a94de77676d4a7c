"""One way to run a sync: a local run (the CLI, the benches) goes through the planner and the checker
as a scheduled run does, so the cooldown and the run ledger apply to it; a dry run writes no tag state."""

from __future__ import annotations

from ptc_sync.local_run import run_locally
from ptc_sync.models import Outcome, TagResult
from ptc_sync.state import MemoryStateStore
from testbed.sandbox import Sandbox


def outcome_of(results: tuple[TagResult, ...], image: str) -> tuple[Outcome, str]:
    (result,) = [r for r in results if r.image == image]
    return result.outcome, result.reason


def test_a_second_refresh_within_the_cooldown_is_held_back(box: Sandbox, unique_repo: str) -> None:
    box.pusher.push_image(unique_repo, "v")
    name = f"ecr-public/{unique_repo}"
    box.cache(name, "v")
    first = box.pusher.push_image(unique_repo, "v")
    app = box.build_app(repository_include=name, refresh_cooldown_minutes=60)
    report = run_locally(app)
    assert outcome_of(report.results, f"{name}:v")[0] is Outcome.REFRESHED
    assert box.tag_digest(name, "v") == first.digest

    box.pusher.push_image(unique_repo, "v")  # upstream moves again at once
    again = run_locally(box.build_app(repository_include=name, refresh_cooldown_minutes=60))
    outcome, reason = outcome_of(again.results, f"{name}:v")
    assert outcome is Outcome.STALE
    assert reason.startswith("refresh cooldown (60 min"), reason
    assert box.tag_digest(name, "v") == first.digest, "held back: the tag is not touched"

    # both are runs of the state table, as a checker records them
    state = app.state
    assert state is not None
    for run in (report, again):
        progress = state.run_progress(run.run_id)
        assert progress is not None, run.run_id
        assert progress.complete, run.run_id


def test_a_dry_run_folds_nothing_into_the_tag_states(box: Sandbox, unique_repo: str) -> None:
    box.pusher.push_image(unique_repo, "v")
    name = f"ecr-public/{unique_repo}"
    box.cache(name, "v")
    box.pusher.push_image(unique_repo, "v")
    app = box.build_app(repository_include=name)
    report = run_locally(app, dry_run=True)
    assert outcome_of(report.results, f"{name}:v") == (Outcome.STALE, "dry run")
    assert app.state is not None
    assert app.state.tag_state(name, "v") is None, "a dry run must not swallow the next run's alert"
    assert app.state.run_progress(report.run_id) is None


def test_a_state_of_its_own_keeps_the_table_untouched(box: Sandbox, unique_repo: str) -> None:
    box.pusher.push_image(unique_repo, "v")
    name = f"ecr-public/{unique_repo}"
    box.cache(name, "v")
    app = box.build_app(repository_include=name)
    own = MemoryStateStore(app.now)
    report = run_locally(app, state=own)
    assert outcome_of(report.results, f"{name}:v")[0] is Outcome.FRESH
    assert own.tag_state(name, "v") is not None
    assert app.state is not None
    assert app.state.tag_state(name, "v") is None
