"""What a run tells people: the SNS message (as chat and filter policies see it) and the EMF metrics,
from one real run through the planner and checker with a refreshed, a failed, a missing and a fresh tag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ptc_sync import metrics
from ptc_sync.models import short_digest
from testbed.lambdas import Stack
from testbed.sandbox import ACCOUNT, REGION, Sandbox
from tests.faults import AwsFaults
from tests.sync.conftest import run_stack


def _run(box: Sandbox, stack: Stack, unique_repo: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    names = {}
    images = {}
    for role in ("multi", "broken", "gone", "same"):
        upstream = f"{unique_repo}-{role}"
        push = box.pusher.push_index if role == "multi" else box.pusher.push_image
        images[f"{role}-old"] = push(upstream, "1")
        names[role] = f"ecr-public/{upstream}"
        box.cache(names[role], "1")
    images["multi-new"] = box.pusher.push_index(f"{unique_repo}-multi", "1")
    images["broken-new"] = box.pusher.push_image(f"{unique_repo}-broken", "1")
    box.pusher.delete_tag(f"{unique_repo}-gone", "1")

    app = box.build_app()
    AwsFaults(app.ecr.client).fail(
        "GetDownloadUrlForLayer",
        "LayerInaccessibleException",
        when=lambda p: p["repositoryName"] == names["broken"],
    )
    capsys.readouterr()
    summary = run_stack(box, stack, app=app)
    out = capsys.readouterr().out
    emf = [
        json.loads(line)
        for line in out.splitlines()
        if line.startswith('{"_aws"') and "OldestStaleSeconds" in line
    ]
    (envelope,) = box.messages()
    return {"summary": summary, "envelope": envelope, "emf": emf, "names": names, "images": images}


@pytest.fixture
def outcome(
    box: Sandbox, stack: Stack, unique_repo: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    return _run(box, stack, unique_repo, capsys)


@pytest.fixture
def opted_in(
    box: Sandbox, stack: Stack, unique_repo: str, capsys: pytest.CaptureFixture[str]
) -> Iterator[dict[str, Any]]:
    """The same run with the settings document's metrics.run_counts, per_rule and per_outcome on."""
    before = metrics.configured()
    metrics.configure(metrics.MetricOptions(run_counts=True, per_rule=True, per_outcome=True))
    try:
        yield _run(box, stack, unique_repo, capsys)
    finally:
        metrics.configure(before)


def test_summary_counts_each_outcome_once(outcome: dict[str, Any]) -> None:
    assert outcome["summary"]["counts"] == {
        "fresh": 1,
        "refreshed": 1,
        "refresh_failed": 1,
        "upstream_missing": 1,
    }


def test_sns_message_is_a_chatbot_custom_notification(outcome: dict[str, Any]) -> None:
    body = json.loads(outcome["envelope"]["Message"])
    names, images = outcome["names"], outcome["images"]
    assert body["version"] == "1.0"
    assert body["source"] == "custom"
    content = body["content"]
    assert content["textType"] == "client-markdown"
    assert "1 tag refreshed" in content["title"]
    assert "1 failed" in content["title"]
    lines = content["description"].splitlines()
    refreshed = next(line for line in lines if f"`{names['multi']}:1`" in line)
    old, new = short_digest(images["multi-old"].digest), short_digest(images["multi-new"].digest)
    assert f"`{old}` → `{new}`" in refreshed
    assert "(linux/amd64, linux/arm64)" in refreshed
    failed = next(line for line in lines if f"`{names['broken']}:1`" in line)
    assert "warm:" in failed
    assert "LayerInaccessibleException" in failed
    assert any(f"`{names['gone']}:1`" in line for line in lines)
    assert not any(f"`{names['same']}:1`" in line for line in lines), "fresh tags are not listed"
    meta = body["metadata"]
    assert meta["threadId"].startswith(f"ptc-sync-{ACCOUNT}-{REGION}-"), "one thread per UTC day"
    assert len(meta["threadId"].rsplit("-", 3)[-3]) == 4, meta["threadId"]
    assert f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{names['multi']}" in meta["relatedResources"]
    assert meta["additionalContext"]["runId"] == outcome["summary"]["run_id"]


def test_sns_attributes_serve_filter_policies(outcome: dict[str, Any]) -> None:
    attrs = outcome["envelope"]["MessageAttributes"]
    assert attrs["outcomes"]["Type"] == "String.Array"
    assert json.loads(attrs["outcomes"]["Value"]) == ["refreshed", "refresh_failed", "upstream_missing"]
    assert json.loads(attrs["rulePrefixes"]["Value"]) == ["ecr-public"]
    assert attrs["dryRun"] == {"Type": "String", "Value": "false"}
    assert attrs["refreshed"] == {"Type": "Number", "Value": "1"}
    assert attrs["failed"] == {"Type": "Number", "Value": "1"}
    assert len(outcome["envelope"]["Subject"]) < 100


def test_emf_metrics_of_a_run_with_defaults_are_the_default_set(outcome: dict[str, Any]) -> None:
    """One blob per run, per stack: the three the alarms read; no RulePrefix or UpstreamHost
    breakdown, and no count the dashboard charts from the logs."""
    (totals,) = outcome["emf"]
    (directive,) = totals["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["service"]]
    assert sorted(m["Name"] for m in directive["Metrics"]) == sorted(metrics.DEFAULT_COUNTS)
    assert len(directive["Metrics"]) == 3
    assert "TagsChecked" not in totals
    assert totals["RefreshFailed"] == [1.0]
    assert "UpstreamMissing" not in totals


def test_emf_metrics_per_run_and_per_rule(opted_in: dict[str, Any]) -> None:
    outcome = opted_in
    blobs = {tuple(b["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]): b for b in outcome["emf"]}
    totals = blobs[("service",)]
    assert totals["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PtcSync"
    assert totals["service"] == "ptc-sync"
    assert totals["TagsChecked"] == [4.0]
    assert totals["TagsRefreshed"] == [1.0]
    assert totals["RefreshFailed"] == [1.0]
    assert totals["UpstreamMissing"] == [1.0]
    assert totals["TagsStale"] == [2.0]
    rule = blobs[("RulePrefix", "service")]
    assert rule["RulePrefix"] == "ecr-public"
    assert rule["TagsChecked"] == [4.0]
    units = {m["Name"]: m["Unit"] for m in totals["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["OldestStaleSeconds"] == "Seconds"
    assert units["TagsChecked"] == "Count"
