"""What one event may ask for: the EventBridge envelope bounded (id, account, region), a Sync Request's
source per stack, its patterns, the repositories and tags it selects, what it may pre-warm and its
free text; and events of another account refused before anything is selected."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ptc_sync import ondemand
from ptc_sync.ondemand import (
    EcrPullThroughCacheEvent,
    SyncRequestEvent,
    parse_request_event,
    request_source,
)
from testbed.lambdas import STACK_NAME, Stack
from testbed.runtime import FakeContext
from testbed.sandbox import Sandbox

from .conftest import cache, load_event, queued, reports, use

FOREIGN = "210987654321"


def request(detail: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    event = load_event("sync-request.json")
    event["detail"] = detail
    event.update(envelope)
    return event


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_request_event(raw)
    return str(caught.value)


# -- the envelope and the detail, parsed -----------------------------------------------------------


def test_the_sample_parses_as_this_stacks_request() -> None:
    event = parse_request_event(load_event("sync-request.json"))
    assert isinstance(event, SyncRequestEvent)
    assert event.source == request_source(STACK_NAME)
    assert event.detail.reason == "CI: node lts released"


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"source": "ptc-sync"}, "source"),  # the old, account-wide source
        ({"source": "ptc-sync.bad_name"}, "source"),
        ({"id": "x" * 300_000}, "id"),
        ({"id": "../../etc"}, "id"),
        ({"account": "12345678901"}, "account"),
        ({"account": "123456789012\n"}, "account"),
        ({"region": "us-east-1 " * 10}, "region"),
        ({"resources": ["arn:aws:ecr:x"] * 21}, "resources"),
    ],
)
def test_an_unbounded_envelope_is_refused(envelope: dict[str, Any], field: str) -> None:
    assert field in problems(request({"repositories": ["ecr-public/a"]}, **envelope))


def test_an_ecr_event_has_the_same_envelope_bounds() -> None:
    event = load_event("ecr-ptc-action-success.json")
    assert isinstance(parse_request_event(event), EcrPullThroughCacheEvent)
    assert "id" in problems({**event, "id": "y" * 300_000})
    assert "account" in problems({**event, "account": "not-an-account"})


@pytest.mark.parametrize(
    ("detail", "field"),
    [
        ({"repositories": ["ecr-public/a"] * (ondemand.MAX_REQUEST_PATTERNS + 1)}, "repositories"),
        ({"repositories": ["ecr-public/a"], "tags": ["t"] * (ondemand.MAX_REQUEST_TAG_PATTERNS + 1)}, "tags"),
        ({"repositories": ["ecr-public/a"], "reason": "r" * (ondemand.MAX_REASON_LENGTH + 1)}, "reason"),
        ({"repositories": ["ecr-public/a"], "reason": ""}, "reason"),
        ({"repositories": ["ecr-public/a"], "reason": "release \u202egnp.exe"}, "reason"),  # bidi override
        ({"repositories": ["ecr-public/a"], "reason": "line\nbreak"}, "reason"),
        ({"repositories": ["ecr-public/a"], "reason": "zero\u200bwidth"}, "reason"),
        ({"repositories": ["ecr-public/a"], "reason": "bell\x07"}, "reason"),
    ],
)
def test_an_unbounded_detail_is_refused(detail: dict[str, Any], field: str) -> None:
    assert f"detail.{field}" in problems(request(detail))


def test_plain_text_reasons_are_accepted() -> None:
    for reason in ("CI: node 22.12.0 released (#4711)", "Grüße — 版本 1.2", "a" * ondemand.MAX_REASON_LENGTH):
        event = parse_request_event(request({"repositories": ["ecr-public/a"], "reason": reason}))
        assert isinstance(event, SyncRequestEvent)
        assert event.detail.reason == reason


# -- through the request handler --------------------------------------------------------------------


def test_a_request_over_the_tag_bound_queues_nothing(
    box: Sandbox, stack: Stack, unique_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tag in ("1", "2", "3"):
        box.pusher.push_image(unique_repo, tag, layers=1)
        name = cache(box, unique_repo, tag)
    use(box)
    monkeypatch.setattr(ondemand, "MAX_REQUEST_TAGS", 2)

    answer = stack.requests(request({"repositories": [name], "action": "check"}), FakeContext("requests"))

    assert (answer["status"], answer["messages"], answer["tags"]) == ("planned", 0, 0)
    assert answer["errors"] == ["request refused: 3 tags to check, more than 2 (narrow it)"]
    assert queued(box, box.work_queue_url) == 0
    assert len(reports(box)) == 1, "the refusal is reported like any planning problem"


def test_a_request_over_the_prewarm_bound_prewarms_nothing(
    box: Sandbox, stack: Stack, unique_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.pusher.push_image(unique_repo, "1", layers=1)
    name = cache(box, unique_repo, "1")
    use(box)
    monkeypatch.setattr(ondemand, "MAX_REQUEST_PREWARM", 1)

    answer = stack.requests(
        request({"repositories": [name], "tags": ["1", "2", "3"]}), FakeContext("requests")
    )

    assert answer["messages"] == 0
    assert answer["errors"] == ["request refused: 2 uncached tags to pre-warm, more than 1 (narrow it)"]
    assert queued(box, box.work_queue_url) == 0


def test_a_pattern_matching_too_many_repositories_is_refused(
    box: Sandbox, stack: Stack, unique_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for repo in (f"{unique_repo}-a", f"{unique_repo}-b"):
        box.pusher.push_image(repo, "1", layers=1)
        cache(box, repo, "1")
    use(box)
    monkeypatch.setattr(ondemand, "MAX_MATCHED_REPOSITORIES", 1)

    answer = stack.requests(
        request({"repositories": [f"ecr-public/{unique_repo}-*"]}), FakeContext("requests")
    )

    assert answer["messages"] == 0
    assert answer["errors"][0].startswith("the request matches 2 repositories, more than 1")
    assert queued(box, box.work_queue_url) == 0


def test_an_ecr_event_of_another_account_selects_nothing(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "3.20", layers=1)
    name = cache(box, unique_repo, "3.20")
    app = use(box)
    event = load_event("ecr-ptc-action-success.json")
    event["account"] = FOREIGN
    event["detail"].update({"ecr-repository-prefix": "ecr-public", "repository-name": name})

    answer = stack.requests(event, FakeContext("requests"))

    assert (answer["status"], answer["messages"]) == ("planned", 0)
    assert answer["errors"] == [f"event of account {FOREIGN}, not this stack's ({app.settings.account_id})"]
    assert queued(box, box.work_queue_url) == 0


def test_a_sync_request_of_another_account_selects_nothing(box: Sandbox, unique_repo: str) -> None:
    """``from_request_event`` checks the account before anything is read from ECR."""
    box.pusher.push_image(unique_repo, "1", layers=1)
    name = cache(box, unique_repo, "1")
    app = use(box)
    planner = app.request_planner()
    foreign = SyncRequestEvent.model_validate(request({"repositories": [name]}, account=FOREIGN))
    own = SyncRequestEvent.model_validate(request({"repositories": [name]}, account=app.settings.account_id))

    refused = planner.from_request_event(foreign)
    accepted = planner.from_request_event(own)

    assert (refused.plan.items, refused.matched_repositories) == ([], [])
    assert refused.plan.errors == [
        f"event of account {FOREIGN}, not this stack's ({app.settings.account_id})"
    ]
    assert accepted.matched_repositories == [name]
    assert accepted.plan.items
