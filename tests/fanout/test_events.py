"""Runs started by events, replayed from events/ and put on moto's buses (ECR's own pull-through cache
events on the default bus, on-demand Sync Requests on the stack's request bus): they reach the request
handler through the EventBridge rules of template.yaml, its work goes over SQS to the checker,
malformed events are refused with the reason."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from ptc_sync.models import Outcome
from ptc_sync.work import WorkKind
from testbed.lambdas import STACK_NAME, Stack
from testbed.runtime import FakeContext
from testbed.sandbox import Sandbox
from tests.faults import AwsFaults

from .conftest import (
    cache,
    forget_events,
    load_event,
    outcome_counts,
    queued,
    reports,
    run_id_of,
    spy_on_checker,
    state_of,
    use,
)

WRITES = ("PutImage", "BatchDeleteImage")
REQUEST_BUS = f"{STACK_NAME}-requests"  # template.yaml's RequestBus


def put_sync_request(box: Sandbox, detail: dict[str, Any]) -> None:
    """What CI does after an upstream release: PutEvents on the stack's request bus."""
    sample = load_event("sync-request.json")
    resp = box.client("events").put_events(
        Entries=[
            {
                "Source": sample["source"],
                "DetailType": sample["detail-type"],
                "Detail": json.dumps(detail),
                "EventBusName": REQUEST_BUS,
            }
        ]
    )
    assert resp["FailedEntryCount"] == 0


def sync_request(detail: dict[str, Any]) -> dict[str, Any]:
    """events/sync-request.json with the testbed's repositories and tags in its detail."""
    event = load_event("sync-request.json")
    event["detail"] = detail
    return event


# -- ECR's pull-through cache events -----------------------------------------------------------------


def test_ecr_success_event_checks_the_tag_and_records_it(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    image = box.pusher.push_image(unique_repo, "3.20", layers=1)
    app = use(box)
    name = cache(box, unique_repo, "3.20")  # the first pull: ECR puts a SUCCESS event on the bus

    (answer,) = stack.deliver_events()
    delivery = stack.drain()

    assert (answer["status"], answer["tags"], answer["messages"]) == ("planned", 1, 1)
    assert (delivery.records, delivery.failures) == (1, 0)
    assert outcome_counts(app, answer["run_id"]) == {"fresh": 1}
    tracked = state_of(app).tag_state(name, "3.20")
    assert tracked is not None, "the newly cached tag is tracked from now on"
    assert (tracked.outcome, tracked.cached_digest, tracked.upstream_digest) == (
        Outcome.FRESH,
        image.digest,
        image.digest,
    )
    assert tracked.checked_at == box.clock.now()
    assert reports(box) == [], "a fresh tag is no news"


def test_ecr_event_sample_is_planned_as_a_check(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    image = box.pusher.push_image(unique_repo, "3.20", layers=1)
    name = cache(box, unique_repo, "3.20")
    use(box)
    event = load_event("ecr-ptc-action-success.json")
    event["detail"].update(
        {
            "ecr-repository-prefix": "ecr-public",
            "repository-name": name,
            "upstream-registry-url": "public.ecr.aws",
            "image-digest": image.digest,
        }
    )
    spy = spy_on_checker(stack)

    answer = stack.requests(event, FakeContext("requests"))
    again = stack.requests(event, FakeContext("requests"))  # EventBridge retried the same event id
    stack.drain()

    assert answer["status"] == "planned"
    assert again == answer, "the retried event queues nothing twice"
    (item,) = spy.items()
    assert (item.kind, item.repository, item.tags, item.source) == (
        WorkKind.CHECK,
        name,
        ("3.20",),
        "ecr-event",
    )


def test_ecr_failure_event_retries_through_a_warm_item_and_reports_it(
    box: Sandbox, stack: Stack, unique_repo: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"ecr-public/{unique_repo}"
    image = box.pusher.push_image(unique_repo, "3.13-slim", layers=1)
    box.emulator.fail_next_import(
        "UpstreamUnavailable", "Timed out while importing", repository=name, tag="3.13-slim"
    )
    with pytest.raises(RuntimeError, match="UpstreamUnavailable"):
        box.cache(name, "3.13-slim")  # a pull that failed: ECR puts a FAILED event on the bus
    app = use(box)
    spy = spy_on_checker(stack)

    (answer,) = stack.deliver_events()
    stack.drain()

    (item,) = spy.items()
    assert (item.kind, item.repository, item.tags, item.source) == (
        WorkKind.WARM,
        name,
        ("3.13-slim",),
        "ecr-event",
    )
    (logged,) = [r for r in caplog.records if r.getMessage() == "ECR pull-through cache sync failed"]
    assert logged.__dict__["failure_code"] == "UpstreamUnavailable"
    assert box.tag_digest(name, "3.13-slim") == image.digest, "the retried import cached it"
    assert outcome_counts(app, answer["run_id"]) == {"refreshed": 1}
    (report,) = reports(box)
    assert run_id_of(report) == answer["run_id"]
    assert f"`{name}:3.13-slim`" in report["content"]["description"]


def test_ecr_failure_event_sample_is_planned_as_a_warm_item(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    name = f"docker-hub/{unique_repo}"
    use(box)
    event = load_event("ecr-ptc-action-failure.json")
    event["detail"]["repository-name"] = name
    spy = spy_on_checker(stack)
    box.pusher.push_image(unique_repo, "3.13-slim", layers=1)

    answer = stack.requests(event, FakeContext("requests"))
    delivery = stack.drain()

    assert answer["status"] == "planned"
    (item,) = spy.items()
    assert (item.kind, item.repository, item.tags) == (WorkKind.WARM, name, ("3.13-slim",))
    assert (delivery.failures, delivery.errors) == (0, [])
    assert box.tag_digest(name, "3.13-slim") is not None


# -- on-demand sync requests -------------------------------------------------------------------------


def test_sync_request_by_name_with_check_compares_and_writes_nothing(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    old = box.pusher.push_image(unique_repo, "lts", layers=1)
    name = cache(box, unique_repo, "lts")
    box.pusher.push_image(unique_repo, "lts", layers=1)
    app = use(box)
    ecr = AwsFaults(app.ecr.client)
    forget_events(stack)

    put_sync_request(box, {"repositories": [name], "tags": ["lts"], "action": "check"})
    (answer,) = stack.deliver_events()
    stack.drain()

    assert outcome_counts(app, answer["run_id"]) == {"stale": 1}
    assert box.tag_digest(name, "lts") == old.digest
    assert not any(ecr.count(op) for op in WRITES)
    (report,) = reports(box)
    assert "Stale (not refreshed)" in report["content"]["description"]


def test_sync_request_by_pattern_refreshes_and_precaches_a_literal_tag(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    repos = [f"{unique_repo}-x", f"{unique_repo}-y", f"{unique_repo}-z"]
    names = []
    for repo in repos:
        box.pusher.push_image(repo, "1.0", layers=1)
        names.append(cache(box, repo, "1.0"))
    new = {repo: box.pusher.push_image(repo, "1.0", layers=1) for repo in repos[:2]}
    latest = {repo: box.pusher.push_image(repo, "2.0", layers=1) for repo in repos[:2]}
    app = use(box)
    spy = spy_on_checker(stack)
    detail = {"repositories": [f"ecr-public/{unique_repo}-[xy]"], "tags": ["1.*", "2.0"], "action": "refresh"}

    answer = stack.requests(sync_request(detail), FakeContext("requests"))
    stack.drain()

    assert answer["status"] == "planned"
    kinds = sorted((i.repository, i.kind.value, i.tags) for i in spy.items())
    assert kinds == [
        (names[0], "check", ("1.0",)),
        (names[0], "warm", ("2.0",)),
        (names[1], "check", ("1.0",)),
        (names[1], "warm", ("2.0",)),
    ], "z is not matched; 2.0 is asked for by name and not cached yet: pre-cached"
    for repo, name in zip(repos[:2], names, strict=False):
        assert box.tag_digest(name, "1.0") == new[repo].digest
        assert box.tag_digest(name, "2.0") == latest[repo].digest
    assert box.tag_digest(names[2], "2.0") is None
    assert outcome_counts(app, answer["run_id"]) == {"refreshed": 4}


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        pytest.param(
            None,  # events/sync-request-malformed.json as it is
            [
                "detail.repositories.0: String should match pattern",
                "detail.repositories.1: Value error, '..' is not a repository path segment",
                "detail.tags.0: String should match pattern",
                "detail.action: Input should be 'check' or 'refresh'",
                "detail.upstream: Extra inputs are not permitted",
            ],
            id="sample",
        ),
        pytest.param(
            {"repositories": ["registry-1.docker.io:443/library/node"]},
            ["detail.repositories.0: String should match pattern"],
            id="host-and-port",
        ),
        pytest.param(
            {"repositories": ["docker-hub/library/node"], "registry": "evil.example.com"},
            ["detail.registry: Extra inputs are not permitted"],
            id="host-field",
        ),
        pytest.param(
            {"repositories": ["/docker-hub/library//node"]},
            ["detail.repositories.0: Value error"],
            id="empty-segments",
        ),
        pytest.param(
            {"repositories": []}, ["detail.repositories: Tuple should have at least 1 item"], id="none"
        ),
        pytest.param(
            {"repositories": ["docker-hub/library/node"], "dry_run": "sometimes"},
            ["detail.dry_run: Input should be a valid boolean"],
            id="not-a-flag",
        ),
    ],
)
def test_malformed_sync_request_is_rejected_with_the_reason(
    box: Sandbox, stack: Stack, detail: dict[str, Any] | None, expected: list[str]
) -> None:
    app = use(box)
    ecr = AwsFaults(app.ecr.client)
    event = load_event("sync-request-malformed.json") if detail is None else sync_request(detail)

    answer = stack.requests(event, FakeContext("requests"))

    assert answer["status"] == "rejected"
    for part in expected:
        assert part in answer["reason"]
    assert "evil.example.com" not in answer["reason"], "input values are never echoed"
    assert ecr.calls == []
    assert queued(box, box.work_queue_url) == 0
    assert reports(box) == []


def test_a_host_looking_name_selects_nothing_and_reaches_no_host(box: Sandbox, stack: Stack) -> None:
    """ECR names may contain dots, so a name shaped like a host is a valid pattern: it only ever
    selects cached repositories under the account's rules, and none has that name."""
    app = use(box)
    name = "registry-1.docker.io/library/node"

    answer = stack.requests(sync_request({"repositories": [name]}), FakeContext("requests"))

    assert (answer["status"], answer["messages"]) == ("planned", 0)
    assert answer["errors"] == [f"{name}: not a cached repository under a pull-through cache rule in scope"]
    assert app.registry.counts().get("requests", 0) == 0
    assert queued(box, box.work_queue_url) == 0


# -- the 60-second figure ----------------------------------------------------------------------------


def test_put_events_to_refreshed_tag_within_60_seconds(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    box.pusher.push_index(unique_repo, "lts")
    name = cache(box, unique_repo, "lts")
    new = box.pusher.push_index(unique_repo, "lts")  # an upstream release; CI asks for a refresh
    app = use(box)
    forget_events(stack)
    emulated = box.clock.now()

    started = time.perf_counter()
    put_sync_request(box, {"repositories": [name], "tags": ["lts"], "action": "refresh"})
    (answer,) = stack.deliver_events()
    delivery = stack.drain()
    elapsed = time.perf_counter() - started

    assert box.tag_digest(name, "lts") == new.digest
    assert outcome_counts(app, answer["run_id"]) == {"refreshed": 1}
    assert (delivery.failures, delivery.errors) == (0, [])
    waited = box.clock.now() - emulated
    print(
        f"\nPutEvents -> refreshed tag: {elapsed:.2f} s wall on the testbed "
        f"(+{waited / timedelta(seconds=1):g} s of emulated waits for ECR; the deployed SQS event source "
        "adds up to MaximumBatchingWindowInSeconds)"
    )
    assert elapsed < 60
