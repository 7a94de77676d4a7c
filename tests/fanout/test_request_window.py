"""Sync Requests per hour, through the request bus and the real request handler: past the stack's
limit a request queues nothing and says why; the next hour accepts again."""

from __future__ import annotations

from datetime import timedelta

from testbed.lambdas import Stack
from testbed.sandbox import Sandbox

from .conftest import cache, forget_events, use
from .test_events import put_sync_request


def test_requests_past_the_hourly_limit_are_refused_and_queue_nothing(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "lts", layers=1)
    name = cache(box, unique_repo, "lts")
    use(box, requests_per_hour=2)
    forget_events(stack)
    box.clock.advance(timedelta(hours=1))  # an hour of its own, whatever ran before in this sandbox

    answers = []
    for _ in range(3):
        put_sync_request(box, {"repositories": [name], "tags": ["lts"], "action": "check"})
        answers.extend(stack.deliver_events())
    box.clock.advance(timedelta(hours=1))
    put_sync_request(box, {"repositories": [name], "tags": ["lts"], "action": "check"})
    answers.extend(stack.deliver_events())

    assert [a["messages"] for a in answers] == [1, 1, 0, 1]
    refused = answers[2]
    assert any("more than 2 Sync Requests this hour" in e for e in refused["errors"]), refused
    assert not any(
        "Sync Requests this hour" in e for a in (answers[0], answers[1], answers[3]) for e in a["errors"]
    )
