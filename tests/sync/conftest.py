"""Fixtures for the sync engine: the sandbox (moto + emulated pull-through cache + real registry)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptc_sync import wiring
from testbed.lambdas import Stack
from testbed.registry import RegistryServer
from testbed.runtime import FakeContext
from testbed.sandbox import ACCOUNT, REGION, Sandbox

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def box(registry: RegistryServer) -> Iterator[Sandbox]:
    with Sandbox(registry) as sandbox:
        yield sandbox
    wiring.set_app(None)


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext("ptc-sync-SyncFunction", region=REGION, account=ACCOUNT)


@pytest.fixture
def stack(box: Sandbox) -> Stack:
    return Stack(box)


def run_stack(
    box: Sandbox, stack: Stack, event: str = "scheduled.json", app: wiring.App | None = None, **settings: Any
) -> dict[str, Any]:
    """What one schedule does in the deployed stack: the planner queues work, the checker (through
    the SQS event source) compares, refreshes and reports. Returns the planner's answer, the run's
    outcome counts from the state table and the SNS messages delivered."""
    app = app or box.build_app(**settings)
    wiring.set_app(app)
    planned = dict(stack.schedule(load_event(event)))
    delivery = stack.drain()
    counts: dict[str, int] = {}
    if planned.get("status") == "planned" and planned["messages"]:
        state, _queue = app.fanout()
        progress = state.run_progress(planned["run_id"])
        assert progress is not None
        assert progress.summarised, "the run's last batch summarised it"
        counts = progress.totals()
    return {**planned, "counts": counts, "delivery": delivery, "app": app}


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))
