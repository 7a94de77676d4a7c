"""The kill matrix: a checker killed at every AWS call of a refresh (and of a pre-warm), then the next run.

A Lambda that runs out of time, or a process that crashes, stops wherever it is: no ``except``, no
``finally`` that talks to AWS, no rollback. ``Killed`` is a BaseException raised from the checker's
own boto3 session at its n-th call (ECR and DynamoDB alike: the journal, the ledger, the state, the
idempotency layer), so nothing in the code can catch it, as nothing can catch a timeout. For every n
from the first call of a clean run to its last, the cell then runs the next scheduled run as it would
happen (a new planner and checker container, the lease run out) and holds:

- every tag cached before is present and shows its old digest or the new one, and the new one only
  where a ``refreshed`` or ``repaired`` result verified it;
- no refresh intent is left open, no lease held: the next run repaired what the kill left;
- for the pre-warm, the image is cached and warm after the next run, and no neighbour tag moved.

The number of cells is the number of calls a clean run makes, counted from the run itself (so a new
call in the protocol is a new cell, not a silent gap), and printed in the reliability summary.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from ptc_sync import wiring
from ptc_sync.journal import LEASE
from ptc_sync.models import Outcome, TagResult
from testbed.registry import RegistryServer
from tests.reliability import harness
from tests.reliability.conftest import MATRIX
from tests.reliability.harness import App, Cached, World

SCHEDULED = {"source": "ptc-sync.schedule", "mode": "scheduled"}


class Killed(BaseException):
    """The process died here."""


@dataclass
class Kill:
    """Counts the AWS calls a session makes and raises Killed at call number ``at`` (None: never)."""

    at: int | None = None
    calls: list[str] = field(default_factory=list)

    def hook(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        self.calls.append(f"{model.service_model.service_name}:{model.name}")
        if self.at is not None and len(self.calls) - 1 == self.at:
            raise Killed(f"killed at call {self.at} ({self.calls[-1]})")


@pytest.fixture(scope="module")
def world(registry: RegistryServer) -> Iterator[World]:
    yield from harness.world_of(registry)


def first_run(world: World, cached: Cached, kill: Kill, **settings: Any) -> str | None:
    """The scheduled run whose checker is killed: planner as usual, then the checker's batches until
    the kill (or the end). The killed invocation's messages are gone with the run (purged)."""
    planner = harness.build(world, **settings)
    checker = harness.build(world, **settings)
    checker.faults.observers.append(kill.hook)
    wiring.set_app(planner.app)
    world.stack.schedule(dict(SCHEDULED))
    wiring.set_app(checker.app)
    source = world.stack.work
    handler, received = source.handler, []

    def invoke(event: dict[str, Any], context: Any) -> Any:
        received.extend(r["receiptHandle"] for r in event["Records"])
        return handler(event, context)

    source.handler = invoke
    died = None
    try:
        source.drain(max_invocations=20)
    except Killed as exc:
        died = str(exc)
        for receipt in received:  # the dead invocation's batch: the next run plans its own
            world.client("sqs").delete_message(QueueUrl=world.box.work_queue_url, ReceiptHandle=receipt)
    finally:
        source.handler = handler
        wiring.set_app(None)
    return died


def next_run(world: World, caplog: pytest.LogCaptureFixture, **settings: Any) -> harness.Outcome:
    world.box.clock.advance(LEASE + timedelta(minutes=1))  # the next schedule, the lease run out
    planner, checker = harness.build(world, **settings), harness.build(world, **settings)
    return harness.run_fanout(world, planner, checker, lambda: caplog.records)


def problems_after(world: World, cached: Cached, results: list[TagResult], app: App) -> list[str]:
    """The invariant. What verifies a new digest: a ``refreshed`` or ``repaired`` result naming it, or
    the next run's comparison finding it ``fresh`` (upstream reports that digest: a kill after the
    refresh closed its intent, before its result was stored)."""
    after = world.tags(cached.name)
    verified = {
        r.tag: r.upstream_digest
        for r in results
        if r.repository == cached.name and r.outcome in {Outcome.REFRESHED, Outcome.REPAIRED}
    }
    assert app.app.state is not None
    for tag in cached.before:
        known = app.app.state.tag_state(cached.name, tag)  # fresh results are counted, not stored
        if known is not None and known.outcome is Outcome.FRESH and known.upstream_digest == after.get(tag):
            verified.setdefault(tag, known.upstream_digest)
    problems = harness.tag_problems(cached, after, verified)
    open_leases = app.app.journal.open_leases(cached.name)
    if open_leases:
        problems.append(f"left open: {[(lease.tag, lease.phase.value) for lease in open_leases]}")
    for record in app.app.ledger.backups(cached.name):
        if record.backup_tag not in after:
            problems.append(f"the ledger names {record.backup_tag}, which is not in the cache")
    return problems


def clean_calls(world: World, label: str, **cache: Any) -> list[str]:
    """The calls a checker makes in a clean run of the scenario (the matrix's rows)."""
    cached = harness.cache_repo(world, label, **cache)
    kill = Kill()
    assert first_run(world, cached, kill, repository_include=cached.name) is None
    assert world.tags(cached.name)["stable"] == cached.new["stable"], "the clean run refreshes"
    return kill.calls


@pytest.mark.parametrize("multi", [False, True], ids=["image", "index"])
def test_a_refresh_killed_at_every_call_is_repaired_by_the_next_run(
    world: World, multi: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls = clean_calls(world, f"kill-clean-{multi}", multi=multi)
    assert any(c == "ecr:BatchDeleteImage" for c in calls), calls
    failures: dict[str, list[str]] = {}
    for at, call in enumerate(calls):
        cell = f"kill/refresh-{'index' if multi else 'image'}/{at:02d}-{call}"
        MATRIX.kills.add(cell)
        cached = harness.cache_repo(world, f"kill-{at}", multi=multi)
        settings = {"repository_include": cached.name}
        died = first_run(world, cached, Kill(at=at), **settings)
        problems = [] if died else [f"call {at} was never made: the run took another path"]
        caplog.clear()
        out = next_run(world, caplog, **settings)
        problems += problems_after(world, cached, out.results, harness.build(world, **settings))
        if problems:
            failures[cell] = problems
    MATRIX.kill_failures.update(failures)
    assert not failures, "\n".join(f"{cell}: {p}" for cell, ps in failures.items() for p in ps)


def test_a_prewarm_killed_at_every_call_is_finished_by_the_next_run(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    def scenario(label: str) -> tuple[Cached, str, dict[str, Any]]:
        cached = harness.cache_repo(world, label, stale=(), fresh=("pinned",))
        world.box.pusher.push_image(cached.upstream_repo, "new", layers=2)
        return cached, "new", {"repository_include": cached.name, "prewarm_images": f"{cached.name}:new"}

    cached, tag, settings = scenario("prewarm-clean")
    kill = Kill()
    assert first_run(world, cached, kill, **settings) is None
    assert tag in world.tags(cached.name), "the clean run pre-warms"
    calls = kill.calls
    assert "ecr:GetDownloadUrlForLayer" in calls or "ecr:BatchCheckLayerAvailability" in calls, calls
    failures: dict[str, list[str]] = {}
    for at, call in enumerate(calls):
        cell = f"kill/prewarm/{at:02d}-{call}"
        MATRIX.kills.add(cell)
        cached, tag, settings = scenario(f"prewarm-kill-{at}")
        died = first_run(world, cached, Kill(at=at), **settings)
        problems = [] if died else [f"call {at} was never made: the run took another path"]
        caplog.clear()
        out = next_run(world, caplog, **settings)
        problems += problems_after(world, cached, out.results, harness.build(world, **settings))
        if tag not in world.tags(cached.name):
            problems.append(f"{cached.name}:{tag} is not cached after the next run: {out.text()[:500]}")
        if problems:
            failures[cell] = problems
    MATRIX.kill_failures.update(failures)
    assert not failures, "\n".join(f"{cell}: {p}" for cell, ps in failures.items() for p in ps)
