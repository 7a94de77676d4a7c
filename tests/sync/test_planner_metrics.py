"""The planner's own EMF blob, with the settings' metrics.run_counts: how much work one schedule
queued (its "run planned" log line says it either way)."""

from __future__ import annotations

import json

import pytest

from ptc_sync import metrics, wiring
from testbed.lambdas import Stack
from testbed.sandbox import Sandbox


def test_planner_reports_repositories_and_work_items_queued(
    box: Sandbox, stack: Stack, unique_repo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for tag in ("a", "b", "c"):
        box.pusher.push_image(unique_repo, tag, layers=1)
        box.cache(f"ecr-public/{unique_repo}", tag)
    wiring.set_app(box.build_app(tags_per_message=2))
    capsys.readouterr()
    before = metrics.configured()
    metrics.configure(metrics.MetricOptions(run_counts=True))
    try:
        planned = stack.schedule({"source": "ptc-sync.schedule"})
    finally:
        metrics.configure(before)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "WorkItemsQueued" in line]
    (blob,) = blobs
    names = [m["Name"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["RepositoriesQueued", "WorkItemsQueued"]
    assert blob["RepositoriesQueued"] == [float(planned["repositories"])] == [1.0]
    assert blob["WorkItemsQueued"] == [float(planned["messages"])]
    assert planned["messages"] == 1, "one scan item for the one repository: its checker lists the tags"


def test_by_default_the_planner_writes_no_metric(
    box: Sandbox, stack: Stack, unique_repo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    box.pusher.push_image(unique_repo, "a", layers=1)
    box.cache(f"ecr-public/{unique_repo}", "a")
    wiring.set_app(box.build_app())
    capsys.readouterr()
    planned = stack.schedule({"source": "ptc-sync.schedule"})
    assert planned["status"] == "planned"
    assert "WorkItemsQueued" not in capsys.readouterr().out
