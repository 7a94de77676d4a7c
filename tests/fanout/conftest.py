"""Fixtures for the fan-out: the sandbox with the stack's wiring (schedule → planner → SQS → checker,
EventBridge rules → request handler), the sample events of events/ and a few ways to look inside."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ptc_sync import wiring
from ptc_sync.state import StateStore
from ptc_sync.work import WorkItem
from testbed.images import PushedImage
from testbed.lambdas import Stack
from testbed.registry import RegistryServer
from testbed.runtime import Delivery
from testbed.sandbox import Sandbox

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def box(registry: RegistryServer) -> Iterator[Sandbox]:
    with Sandbox(registry) as sandbox:
        yield sandbox
    wiring.set_app(None)


@pytest.fixture
def one_repository_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan items of one repository each (50 by default), so a test sees one item per repository."""
    monkeypatch.setattr("ptc_sync.planner.MAX_REPOSITORIES_PER_ITEM", 1)


@pytest.fixture
def stack(box: Sandbox) -> Stack:
    return Stack(box)


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def use(box: Sandbox, **settings: Any) -> wiring.App:
    """Build the app the handlers get from ``get_app()`` (a Lambda container's), with ``settings``."""
    app = box.build_app(**settings)
    wiring.set_app(app)
    return app


def state_of(app: wiring.App) -> StateStore:
    state, _queue = app.fanout()
    return state


@dataclass
class Spy:
    """Wraps the checker behind the work queue's event source: every SQS event it was given."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def items(self) -> list[WorkItem]:
        return [WorkItem.model_validate_json(r["body"]) for e in self.events for r in e["Records"]]


def spy_on_checker(stack: Stack) -> Spy:
    spy = Spy()
    handler = stack.work.handler

    def recorded(event: dict[str, Any], context: Any) -> Any:
        spy.events.append(event)
        return handler(event, context)

    stack.work.handler = recorded
    return spy


def schedule(stack: Stack) -> tuple[dict[str, Any], Delivery]:
    """One scheduled run, as the deployed stack does it: the planner, then the checker until the
    queue is empty. Returns the planner's answer and what the event source delivered."""
    planned = dict(stack.schedule(load_event("scheduled.json")))
    return planned, stack.drain()


def outcome_counts(app: wiring.App, run_id: str) -> dict[str, int]:
    progress = state_of(app).run_progress(run_id)
    assert progress is not None, f"run {run_id} was never started"
    return progress.totals()


def reports(box: Sandbox) -> list[dict[str, Any]]:
    """The chat notifications the report topic delivered since the last call (parsed Message)."""
    return [json.loads(envelope["Message"]) for envelope in box.messages()]


def run_id_of(report: dict[str, Any]) -> str:
    return str(report["metadata"]["additionalContext"]["runId"])


def queued(box: Sandbox, queue_url: str) -> int:
    """Messages in a queue, visible or in flight."""
    attrs = box.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def release(box: Sandbox, upstream_repo: str, tags: list[str], image: PushedImage) -> None:
    """Put ``image``'s exact manifest upstream under more tags (the same digest, no new blobs)."""
    for tag in tags:
        box.pusher.put_manifest(upstream_repo, tag, image.manifest, image.media_type)


def cache(box: Sandbox, upstream_repo: str, tag: str, prefix: str = "ecr-public") -> str:
    """Pull ``tag`` through the cache rule ``prefix``; returns the cached repository's name."""
    name = f"{prefix}/{upstream_repo}"
    box.cache(name, tag)
    return name


def forget_events(stack: Stack) -> None:
    """Drop the events the rules matched so far (the pulls that seeded the cache put them there)."""
    for tap in stack.taps:
        tap.sqs.purge_queue(QueueUrl=tap.queue_url)
