"""Checker decisions on the fakes: backoff, echo suppression, cooldown, news, the summary."""

from __future__ import annotations

from datetime import timedelta

from ptc_sync.models import Outcome, TagResult
from ptc_sync.state import TagState
from ptc_sync.work import WorkItem, WorkKind
from tests.fakes import Fakes

REPO = "docker-hub/library/node"


def item(*tags: str, source: str = "schedule", kind: WorkKind = WorkKind.CHECK) -> WorkItem:
    return WorkItem(run_id="run-1", kind=kind, repository=REPO, tags=tags, source=source)  # type: ignore[arg-type]


def one(fakes: Fakes, work: WorkItem) -> TagResult:
    (result,) = fakes.checker().process(work).results
    return result


def test_a_stale_tag_is_refreshed_and_is_news() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts", upstream_seed="new")
    fakes.state.start_run("run-1", 1, fakes.clock.now())
    outcome = fakes.checker().process(item("lts"))
    (result,) = outcome.results
    assert result.outcome is Outcome.REFRESHED
    assert result.news
    assert outcome.completed_run
    assert outcome.message_id == "message-1"
    decision = fakes.notifier.published[0][1]
    assert decision is not None
    assert decision.publish  # worth a message
    assert fakes.state.tag_state(REPO, "lts").refreshed_at == fakes.clock.now()  # type: ignore[union-attr]


def test_a_fresh_tag_again_is_no_news() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts")
    first = one(fakes, item("lts"))
    again = one(fakes, item("lts"))
    assert first.outcome is again.outcome is Outcome.FRESH
    assert not again.news


def test_a_tag_refreshed_within_the_cooldown_waits() -> None:
    fakes = Fakes(refresh_cooldown_minutes=30)
    fakes.cached(REPO, "lts", upstream_seed="new")
    refreshed = fakes.clock.now() - timedelta(minutes=5)
    fakes.state.tags[(REPO, "lts")] = TagState(REPO, "lts", Outcome.REFRESHED, refreshed_at=refreshed)
    result = one(fakes, item("lts"))
    assert result.outcome is Outcome.STALE
    assert "refresh cooldown" in result.reason
    assert fakes.ecr.writes() == []


def test_after_a_failed_refresh_the_same_digest_backs_off() -> None:
    fakes = Fakes(schedule_minutes=60)
    fakes.cached(REPO, "lts", upstream_seed="new")
    upstream = fakes.upstream_image(REPO, "lts")
    assert upstream is not None
    failed_at = fakes.clock.now() - timedelta(minutes=10)
    fakes.state.tags[(REPO, "lts")] = TagState(
        REPO,
        "lts",
        Outcome.REFRESH_FAILED,
        refresh_failures=1,
        failed_upstream=upstream.digest,
        failed_at=failed_at,
    )
    result = one(fakes, item("lts"))
    assert result.outcome is Outcome.STALE
    assert "backing off after 1 failed refresh" in result.reason
    assert fakes.ecr.writes() == []


def test_a_new_upstream_digest_ends_the_backoff() -> None:
    fakes = Fakes(schedule_minutes=60)
    fakes.cached(REPO, "lts", upstream_seed="new")
    failed_at = fakes.clock.now() - timedelta(minutes=10)
    fakes.state.tags[(REPO, "lts")] = TagState(
        REPO,
        "lts",
        Outcome.REFRESH_FAILED,
        refresh_failures=3,
        failed_upstream="sha256:" + "0" * 64,
        failed_at=failed_at,
    )
    assert one(fakes, item("lts")).outcome is Outcome.REFRESHED


def test_an_ecr_event_about_a_tag_ptc_sync_is_refreshing_is_not_checked() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts", upstream_seed="new")
    fakes.journal.acquire(REPO, "lts", "checker-2", fakes.clock.now())
    result = one(fakes, item("lts", source="ecr-event"))
    assert result.outcome is Outcome.SKIPPED
    assert "under way" in result.reason
    assert fakes.registry.resolved == []  # no upstream call at all


def test_an_ecr_event_right_after_ptc_syncs_refresh_is_not_checked() -> None:
    fakes = Fakes(refresh_cooldown_minutes=30)
    fakes.cached(REPO, "lts")
    refreshed = fakes.clock.now() - timedelta(minutes=1)
    fakes.state.tags[(REPO, "lts")] = TagState(REPO, "lts", Outcome.REFRESHED, refreshed_at=refreshed)
    result = one(fakes, item("lts", source="ecr-event"))
    assert result.outcome is Outcome.SKIPPED
    assert "just done" in result.reason
    assert fakes.registry.resolved == []


def test_a_scheduled_check_of_a_held_tag_is_in_progress_and_touches_nothing() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts", upstream_seed="new")
    fakes.journal.acquire(REPO, "lts", "checker-2", fakes.clock.now())
    result = one(fakes, item("lts"))
    assert result.outcome is Outcome.IN_PROGRESS
    assert fakes.ecr.writes() == []


def test_a_repository_under_no_rule_is_skipped_not_retried() -> None:
    fakes = Fakes()
    work = WorkItem(run_id="run-1", kind=WorkKind.CHECK, repository="quay/x/y", tags=("1",))
    (result,) = fakes.checker().process(work).results
    assert result.outcome is Outcome.SKIPPED
    assert "not under any pull-through cache rule" in result.reason


def test_a_repair_stands_for_the_tag_in_the_run() -> None:
    fakes = Fakes()
    old = fakes.cached(REPO, "lts")
    lease = fakes.journal.acquire(REPO, "lts", "killed", fakes.clock.now())
    fakes.ecr.put_manifest(REPO, "ptc-sync-prev--lts--x", old)
    fakes.journal.mark_removing(
        lease,
        old_digest=old.digest,
        backup_tag="ptc-sync-prev--lts--x",
        expected_digest=old.digest,
        now=fakes.clock.now(),
    )
    fakes.ecr.delete_tags(REPO, ["lts"])
    fakes.clock.advance(timedelta(hours=1))
    result = one(fakes, item("lts"))
    assert result.outcome is Outcome.REPAIRED
    assert fakes.ecr.digest(REPO, "lts") == old.digest


def test_warm_imports_an_absent_tag_from_upstream() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts")
    fakes.upstream.push("library/node", "23", fakes.upstream_image(REPO, "lts"))  # type: ignore[arg-type]
    result = one(fakes, item("23", kind=WorkKind.WARM, source="prewarm"))
    assert result.outcome is Outcome.REFRESHED
    assert "pre-warmed" in result.reason
    assert fakes.ecr.digest(REPO, "23") is not None


def scan(*repositories: str, left_out: tuple[str, ...] = ()) -> WorkItem:
    first, *more = repositories
    return WorkItem(
        run_id="run-1", kind=WorkKind.SCAN, repository=first, more_repositories=tuple(more), left_out=left_out
    )


def test_a_scan_lists_its_repositories_and_checks_every_tag_in_scope() -> None:
    fakes = Fakes(tag_exclude=("*-rc",))
    other = "docker-hub/library/redis"
    fakes.cached(REPO, "lts", upstream_seed="new")
    fakes.cached(REPO, "23-rc")  # outside the filters: not checked, not stored
    fakes.cached(other, "7")
    fakes.state.start_run("run-1", 1, fakes.clock.now())
    outcome = fakes.checker().process(scan(REPO, other))
    assert {(r.repository, r.tag, r.outcome) for r in outcome.results} == {
        (REPO, "lts", Outcome.REFRESHED),
        (other, "7", Outcome.FRESH),
    }
    assert outcome.completed_run  # one scan item, one count: the run had one item
    assert fakes.queue.sent == []


def test_a_fresh_scan_reads_no_tag_state_before_comparing() -> None:
    """The gate reads a tag's state only once the tag is stale: an unchanged fleet reads none."""
    fakes = Fakes()
    fakes.cached(REPO, "lts")
    reads: list[object] = []
    single = fakes.state.tag_state
    fakes.state.tag_state = lambda *a, **k: reads.append(a) or single(*a, **k)  # type: ignore[method-assign]
    fakes.checker().process(scan(REPO))
    assert reads == []


def test_a_scan_leaves_out_the_tags_its_run_warms_again() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts")
    fakes.cached(REPO, "22")
    results = fakes.checker().process(scan(REPO, left_out=("22",))).results
    assert [r.tag for r in results] == ["lts"]


def test_a_big_repository_is_split_into_bounded_check_items_the_run_waits_for() -> None:
    from ptc_sync.work import MAX_SCAN_TARGETS

    fakes = Fakes(tags_per_message=100)
    tags = [f"t{i:04}" for i in range(MAX_SCAN_TARGETS + 150)]
    for tag in tags:
        fakes.cached(REPO, tag)
    fakes.state.start_run("run-1", 1, fakes.clock.now())
    work = scan(REPO)
    first = fakes.checker().process(work, batch_id="message-1")
    assert len(first.results) == MAX_SCAN_TARGETS
    assert not first.completed_run  # the run now waits for the two shares split off
    parts = list(fakes.queue.sent)
    assert [len(p.tags) for p in parts] == [100, 50]
    assert all(p.kind is WorkKind.CHECK and p.part for p in parts)
    checked = {r.tag for r in first.results} | {t for p in parts for t in p.tags}
    assert checked == set(tags)  # every tag once: none lost, none twice
    # a retried scan (the same message) sends the same bodies and extends the run no further
    fakes.checker().process(work, batch_id="message-1")
    assert [p.model_dump_json() for p in fakes.queue.sent[2:]] == [p.model_dump_json() for p in parts]
    assert fakes.state.run_progress("run-1").expected == 3  # type: ignore[union-attr]
    completed = [fakes.checker().process(p).completed_run for p in parts]
    assert completed == [False, True]
