"""RequestPlanner decisions on the fakes: what an ECR pull-through cache event or a Sync Request
becomes (work items of a run of their own), and what is refused. No moto, no registry, no socket."""

from __future__ import annotations

from typing import Any

from ptc_sync.ondemand import (
    ECR_PTC_DETAIL_TYPE,
    REQUEST_DETAIL_TYPE,
    EcrPullThroughCacheEvent,
    RequestPlanner,
    SyncRequestEvent,
)
from ptc_sync.refresh import BACKUP_PREFIX, backup_tag_for
from ptc_sync.request_window import LocalRequestWindow
from ptc_sync.work import WorkKind
from tests.fakes import ACCOUNT, Fakes

NODE = "docker-hub/library/node"
NGINX = "docker-hub/library/nginx"
EVENT_ID = "8d0a1c2e-1111-4222-8333-444444444444"


def requests(fakes: Fakes, window: LocalRequestWindow | None = None) -> RequestPlanner:
    return fakes.request_planner(window if window is not None else LocalRequestWindow())


def envelope(source: str, detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": EVENT_ID,
        "source": source,
        "detail-type": detail_type,
        "account": ACCOUNT,
        "time": "2026-12-01T12:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def sync_request(**detail: Any) -> SyncRequestEvent:
    return SyncRequestEvent.model_validate(envelope("ptc-sync.ptc-sync", REQUEST_DETAIL_TYPE, detail))


def ecr_event(repository: str, tag: str, status: str = "SUCCESS") -> EcrPullThroughCacheEvent:
    detail = {
        "sync-status": status,
        "ecr-repository-prefix": "docker-hub",
        "repository-name": repository,
        "image-tag": tag,
    }
    return EcrPullThroughCacheEvent.model_validate(envelope("aws.ecr", ECR_PTC_DETAIL_TYPE, detail))


def world() -> Fakes:
    fakes = Fakes(account_id=ACCOUNT)
    for repository, tag in [(NODE, "22"), (NODE, "lts"), (NGINX, "1.27")]:
        fakes.cached(repository, tag)
    return fakes


def test_a_name_selects_that_repository_and_a_pattern_every_match() -> None:
    fakes = world()
    named = requests(fakes).from_request_event(sync_request(repositories=[NODE]))
    assert [(i.kind, i.repository, i.tags) for i in named.plan.items] == [
        (WorkKind.CHECK, NODE, ("22", "lts"))
    ]
    matched = requests(fakes).from_request_event(sync_request(repositories=["docker-hub/library/n*"]))
    assert matched.matched_repositories == [NGINX, NODE]
    assert {i.repository for i in matched.plan.items} == {NGINX, NODE}
    assert not named.plan.errors
    assert not matched.plan.errors


def test_a_tag_pattern_narrows_the_tags() -> None:
    selection = requests(world()).from_request_event(sync_request(repositories=[NODE], tags=["l*"]))
    assert [i.tags for i in selection.plan.items] == [("lts",)]


def test_check_does_not_refresh_and_refresh_does() -> None:
    fakes = world()
    check = requests(fakes).from_request_event(sync_request(repositories=[NODE], action="check"))
    refresh = requests(fakes).from_request_event(sync_request(repositories=[NODE]))  # the default
    assert [i.refresh for i in check.plan.items] == [False]
    assert [i.refresh for i in refresh.plan.items] == [True]


def test_an_uncached_tag_named_literally_is_pre_cached() -> None:
    selection = requests(world()).from_request_event(sync_request(repositories=[NODE], tags=["lts", "23"]))
    kinds = [(i.kind, i.tags) for i in selection.plan.items]
    assert kinds == [(WorkKind.CHECK, ("lts",)), (WorkKind.WARM, ("23",))]


def test_an_uncached_tag_is_not_pre_cached_by_a_check_a_dry_run_or_a_pattern() -> None:
    fakes = world()
    for detail in (
        {"tags": ["23"], "action": "check"},
        {"tags": ["23"], "dry_run": True},
        {"tags": ["2?"]},
    ):
        selection = requests(fakes).from_request_event(sync_request(repositories=[NODE], **detail))
        assert WorkKind.WARM not in {i.kind for i in selection.plan.items}, detail


def test_a_backup_tag_is_never_planned() -> None:
    fakes = world()
    fakes.cached(NODE, backup_tag_for("lts", fakes.clock.now()))  # what a refresh leaves behind
    everything = requests(fakes).from_request_event(sync_request(repositories=[NODE]))
    assert [i.tags for i in everything.plan.items] == [("22", "lts")]
    fakes.cached(NODE, backup_tag_for("22", fakes.clock.now()))
    matching = requests(fakes).from_request_event(
        sync_request(repositories=[NODE], tags=[f"{BACKUP_PREFIX}*"])
    )
    assert matching.plan.items == []


def test_the_request_window_refuses_once_the_hour_is_full() -> None:
    fakes = Fakes(account_id=ACCOUNT, requests_per_hour=2)
    fakes.cached(NODE, "lts")
    window = LocalRequestWindow()
    planner = requests(fakes, window)
    answers = [planner.from_request_event(sync_request(repositories=[NODE])) for _ in range(3)]
    assert [len(a.plan.items) for a in answers] == [1, 1, 0]
    assert "more than 2 Sync Requests this hour" in answers[2].plan.errors[0]
    fakes.clock.advance(hours=1)  # a new hour, a new count
    assert requests(fakes, window).from_request_event(sync_request(repositories=[NODE])).plan.items


def test_a_repository_under_no_rule_is_refused() -> None:
    fakes = world()
    selection = requests(fakes).from_request_event(sync_request(repositories=["quay/coreos/etcd"]))
    assert selection.plan.items == []
    assert selection.plan.errors == [
        "quay/coreos/etcd: not a cached repository under a pull-through cache rule in scope"
    ]
    plan = requests(fakes).from_ecr_event(ecr_event("quay/coreos/etcd", "v3"))
    assert plan.items == []
    assert plan.errors == ["quay/coreos/etcd: not under any pull-through cache rule in scope"]


def test_an_ecr_event_checks_a_cached_tag_and_re_warms_a_failed_import() -> None:
    fakes = world()
    (cached,) = requests(fakes).from_ecr_event(ecr_event(NODE, "lts")).items
    assert (cached.kind, cached.repository, cached.tags, cached.source) == (
        WorkKind.CHECK,
        NODE,
        ("lts",),
        "ecr-event",
    )
    (failed,) = requests(fakes).from_ecr_event(ecr_event(NODE, "23", status="FAILED")).items
    assert (failed.kind, failed.tags) == (WorkKind.WARM, ("23",))


def test_an_event_of_another_account_is_refused() -> None:
    fakes = world()
    event = ecr_event(NODE, "lts").model_copy(update={"account": "210987654321"})
    plan = requests(fakes).from_ecr_event(event)
    assert plan.items == []
    assert "not this stack's" in plan.errors[0]
