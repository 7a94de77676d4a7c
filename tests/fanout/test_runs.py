"""Runs over time through the real handlers: the pre-warm list (settings and SSM), new-tag discovery,
alerts told once and again on recovery, the refresh cooldown and the upstream pull budget that every
checker container shares through the state table."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest

from ptc_sync import wiring
from ptc_sync.models import Outcome, TagResult
from ptc_sync.work import WorkKind
from testbed.lambdas import Stack
from testbed.runtime import Delivery, SqsEventSource
from testbed.sandbox import HUB_HOST, REGION, Sandbox
from tests.faults import AwsFaults

from .conftest import (
    cache,
    load_event,
    outcome_counts,
    release,
    reports,
    run_id_of,
    schedule,
    spy_on_checker,
    state_of,
    use,
)
from .ratelimit import RateLimitedUpstream


def result_for(app: wiring.App, run_id: str, repository: str, tag: str) -> TagResult:
    (found,) = [r for r in state_of(app).run_results(run_id) if (r.repository, r.tag) == (repository, tag)]
    return found


def test_prewarm_list_from_settings_and_ssm_is_warmed_then_checked(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    listed, stored = f"{unique_repo}-listed", f"{unique_repo}-stored"
    first = box.pusher.push_image(listed, "1.0", layers=1)
    second = box.pusher.push_index(stored, "2.0")
    parameter = f"/ptc-sync/{unique_repo}/prewarm"
    document = {"prewarm": [f"docker-hub/{stored}:2.0"], "discover": []}
    box.client("ssm").put_parameter(Name=parameter, Type="String", Value=json.dumps(document))
    app = use(box, prewarm_images=f"ecr-public/{listed}:1.0", prewarm_parameter=parameter)
    spy = spy_on_checker(stack)

    warmed, _ = schedule(stack)

    assert warmed["tags"] == 2, "nothing was cached: both images come from the pre-warm list"
    assert {(i.kind, i.source) for i in spy.items()} == {(WorkKind.WARM, "prewarm")}
    assert outcome_counts(app, warmed["run_id"]) == {"refreshed": 2}
    assert box.tag_digest(f"ecr-public/{listed}", "1.0") == first.digest
    assert box.tag_digest(f"docker-hub/{stored}", "2.0") == second.digest
    every_blob = {layer.digest for layer in second.all_layers}
    imported = {layer.digest for layer in box.emulator.imported_layers}
    assert every_blob <= imported, "every layer of every platform is warm"
    (report,) = reports(box)
    assert "pre-warmed (prewarm)" in report["content"]["description"]

    spy.events.clear()
    checked, _ = schedule(stack)

    assert {i.kind for i in spy.items()} == {WorkKind.SCAN}, "cached now: scanned like any tag"
    assert outcome_counts(app, checked["run_id"]) == {"fresh": 2}


def test_new_tag_discovery_precaches_the_newest_matching_tags_bounded_by_max_new(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    base = box.pusher.push_image(unique_repo, "1.0.0", layers=1)
    upstream = [
        "1.1.0",
        "1.2.0",
        "1.3.0",
        "2.0.0",
        "nightly-20260101",
        "nightly-20260102",
        "nightly-20260103",
    ]
    release(box, unique_repo, [*upstream, "latest"], base)
    name = cache(box, unique_repo, "1.0.0")
    specs = [
        {"repository": name, "semver": ">=1.1.0 <2.0.0", "max_new": 2},
        {"repository": name, "pattern": r"nightly-\d{8}", "max_new": 1},
    ]
    app = use(box, discover=json.dumps(specs))
    spy = spy_on_checker(stack)

    first, _ = schedule(stack)

    assert outcome_counts(app, first["run_id"]) == {"fresh": 1, "refreshed": 3}
    assert set(box.tags(name)) == {"1.0.0", "1.2.0", "1.3.0", "nightly-20260103"}
    warmed = sorted(t for i in spy.items() if i.kind is WorkKind.WARM for t in i.tags)
    assert warmed == ["1.2.0", "1.3.0", "nightly-20260103"]

    spy.events.clear()
    second, _ = schedule(stack)  # nothing new upstream

    assert [i.kind for i in spy.items()] == [WorkKind.SCAN], "no older tag is pulled in its place"
    assert outcome_counts(app, second["run_id"]) == {"fresh": 4}
    assert set(box.tags(name)) == {"1.0.0", "1.2.0", "1.3.0", "nightly-20260103"}

    release(box, unique_repo, ["1.4.0", "2.1.0", "nightly-20260104"], base)  # upstream releases
    spy.events.clear()
    third, _ = schedule(stack)

    warmed = sorted(t for i in spy.items() if i.kind is WorkKind.WARM for t in i.tags)
    assert warmed == ["1.4.0", "nightly-20260104"]
    assert outcome_counts(app, third["run_id"]) == {"fresh": 4, "refreshed": 2}


def test_a_failure_is_alerted_once_while_it_persists_then_on_recovery(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "lts", layers=1)
    name = cache(box, unique_repo, "lts")
    new = box.pusher.push_image(unique_repo, "lts", layers=1)
    app = use(box)
    ecr = AwsFaults(app.ecr.client)
    ecr.fail("PutImage", "AccessDeniedException", "not authorized to perform: ecr:PutImage", times=None)

    failed, _ = schedule(stack)
    (alert,) = reports(box)
    box.clock.advance(timedelta(minutes=91))  # past one failed refresh's backoff (1.5 intervals)
    persists, _ = schedule(stack)
    quiet = reports(box)
    ecr.faults.clear()
    box.clock.advance(timedelta(minutes=151))  # two failures: 2.5 intervals
    recovered, _ = schedule(stack)
    (recovery,) = reports(box)

    assert outcome_counts(app, failed["run_id"]) == {"refresh_failed": 1}
    assert run_id_of(alert) == failed["run_id"]
    assert "Refresh failed (1):" in alert["content"]["description"]
    assert f"`{name}:lts`" in alert["content"]["description"]
    assert outcome_counts(app, persists["run_id"]) == {"refresh_failed": 1}
    assert quiet == [], "the same failure is not told again"
    assert outcome_counts(app, recovered["run_id"]) == {"refreshed": 1}
    assert run_id_of(recovery) == recovered["run_id"]
    assert box.tag_digest(name, "lts") == new.digest
    tracked = state_of(app).tag_state(name, "lts")
    assert tracked is not None
    assert (tracked.alerted_outcome, tracked.failure_streak) == (Outcome.REFRESHED, 0)


def test_a_refreshed_tag_is_not_refreshed_again_within_the_cooldown(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "lts", layers=1)
    name = cache(box, unique_repo, "lts")
    second = box.pusher.push_image(unique_repo, "lts", layers=1)
    app = use(box, refresh_cooldown_minutes=30)

    refreshed, _ = schedule(stack)
    third = box.pusher.push_image(unique_repo, "lts", layers=1)  # upstream flaps
    box.clock.advance(timedelta(minutes=10))
    held, _ = schedule(stack)
    digest_while_held = box.tag_digest(name, "lts")
    box.clock.advance(timedelta(minutes=21))
    again, _ = schedule(stack)

    assert outcome_counts(app, refreshed["run_id"]) == {"refreshed": 1}
    assert outcome_counts(app, held["run_id"]) == {"stale": 1}
    assert result_for(app, held["run_id"], name, "lts").reason == (
        "refresh cooldown (30 min since the last refresh)"
    )
    assert digest_while_held == second.digest
    assert outcome_counts(app, again["run_id"]) == {"refreshed": 1}
    assert box.tag_digest(name, "lts") == third.digest


def test_checkers_share_the_upstream_pull_budget(
    box: Sandbox, stack: Stack, unique_repo: str, one_repository_per_item: None
) -> None:
    """Two checker containers, each with its own registry client, one budget in the state table:
    Docker Hub (here a proxy adding its headers) reports 11 pulls left and the reserve is 10."""
    names = []
    for suffix in ("a", "b", "c"):
        repo = f"{unique_repo}-{suffix}"
        box.pusher.push_image(repo, "1.0", layers=1)
        names.append(cache(box, repo, "1.0", prefix="docker-hub"))
        box.pusher.push_image(repo, "1.0", layers=1)
    before = {name: box.tag_digest(name, "1.0") for name in names}
    with RateLimitedUpstream(box.registry.url, limit=100, remaining=11) as hub:
        box.emulator.add_upstream(HUB_HOST, hub.url)  # ECR's imports are pulls upstream counts

        def container() -> wiring.App:
            return wiring.build_app(
                box.settings(rate_limit_reserve=10),
                session=boto3.Session(region_name=REGION),
                upstream_override={**box.upstreams, HUB_HOST: hub.url},
                sleep=lambda seconds: box.clock.advance(timedelta(seconds=seconds)),
                monotonic=lambda: box.clock.now().timestamp(),
                now=box.clock.now,
            )

        one, two = container(), container()
        wiring.set_app(one)
        planned: dict[str, Any] = stack.schedule(load_event("scheduled.json"))
        source = SqsEventSource(
            box.client("sqs"), box.work_queue_url, stack.checker, function_name="checker", batch_size=1
        )
        delivery = Delivery()
        for app in (one, two, one):  # the queue's items, one per invocation, over two containers
            wiring.set_app(app)
            assert source.poll_once(delivery)
        heads = [r for r in hub.requests if r.method == "HEAD" and "/manifests/" in r.path]

    assert planned["messages"] == 3
    assert len(heads) == 3, "every check went through the rate-limited host"
    # 11 left and a reserve of 10: one pull, decided on the numbers of the HEADs just made (before, the
    # first checker spent from a budget it had not recorded yet and the run went past the reserve)
    assert outcome_counts(one, planned["run_id"]) == {"refreshed": 1, "rate_limited": 2}
    limited = [r for r in state_of(one).run_results(planned["run_id"]) if r.outcome is Outcome.RATE_LIMITED]
    assert [r.reason for r in limited] == [
        f"{HUB_HOST}: 10 pulls left, reserve 10, refresh costs 1 (upstream's count)"
    ] * 2
    for held in limited:
        assert box.tag_digest(held.repository, "1.0") == before[held.repository], "held back, not refreshed"
    assert hub.remaining == 10, "upstream counted one pull: the reserve is kept"
    budget = state_of(one).rate_limit(HUB_HOST)
    assert budget is not None
    assert (budget.limit, budget.remaining, budget.window_seconds) == (100, 10, 21600), "the reserve is kept"


def test_a_failure_that_recovers_without_a_refresh_is_told(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    old = box.pusher.push_image(unique_repo, "lts", layers=1)
    name = cache(box, unique_repo, "lts")
    box.pusher.push_image(unique_repo, "lts", layers=1)
    app = use(box)
    AwsFaults(app.ecr.client).fail("PutImage", "AccessDeniedException", "denied", times=None)
    schedule(stack)
    assert len(reports(box)) == 1, "the failure is told"
    box.pusher.put_manifest(unique_repo, "lts", old.manifest, old.media_type)  # upstream reverted

    recovered, _ = schedule(stack)

    assert outcome_counts(app, recovered["run_id"]) == {"fresh": 1}
    tracked = state_of(app).tag_state(name, "lts")
    assert tracked is not None
    assert tracked.alerted_outcome is Outcome.FRESH, "the state decided to tell the recovery"
    (recovery,) = reports(box)
    assert run_id_of(recovery) == recovered["run_id"]
    assert "1 tag recovered" in recovery["content"]["title"]
    assert f"`{name}:lts`" in recovery["content"]["description"].split("Recovered (", 1)[1]


def test_the_first_scheduled_run_on_a_fresh_fleet_says_what_it_watches_once(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    """A new user must be able to tell it works: the first run after a deploy posts one "watching"
    message even though every tag is fresh; the next fresh run posts nothing."""
    box.pusher.push_image(unique_repo, "lts", layers=1)
    cache(box, unique_repo, "lts")
    use(box, repository_include=f"ecr-public/{unique_repo}")

    first, _ = schedule(stack)
    (message,) = reports(box)
    second, _ = schedule(stack)

    assert outcome_counts(use(box), first["run_id"]) == {"fresh": 1}
    assert run_id_of(message) == first["run_id"]
    assert "watches 1 tag" in message["content"]["description"]
    assert reports(box) == [], "a fresh run after the first says nothing"
    assert second["repositories"] == 1


def test_a_run_over_an_empty_scope_still_counts_as_completed(
    box: Sandbox, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """The heartbeat alarm counts OldestStaleSeconds samples (one per completed run): a run with
    nothing to check is completed by the planner (no checker will), so an empty fleet is not
    mistaken for a broken schedule."""
    use(box, repository_include="nothing-here/*")
    capsys.readouterr()

    planned, _ = schedule(stack)

    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    completed = [b for b in blobs if "OldestStaleSeconds" in b and "RulePrefix" not in b]
    assert planned["tags"] == 0
    assert [b["OldestStaleSeconds"] for b in completed] == [[0.0]]
    assert completed[0]["service"]
