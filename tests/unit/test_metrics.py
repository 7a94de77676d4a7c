"""EMF blobs per run (totals, per rule, per upstream host) and one log line per non-fresh tag."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from ptc_sync.metrics import (
    MetricOptions,
    configure,
    configured,
    emit_plan_metrics,
    emit_run_metrics,
    log_tag_outcomes,
    metric_count,
    oldest_staleness_seconds,
)
from ptc_sync.models import Outcome, RateLimitStatus, RunReport, TagResult
from tests.template.cfn import Evaluator, load_template

FINISHED = datetime.now(UTC).replace(microsecond=0)
FINISHED_MS = int(FINISHED.timestamp() * 1000)
COUNT_METRICS = [
    "TagsChecked",
    "TagsStale",
    "TagsRefreshed",
    "RefreshFailed",
    "UpstreamErrors",
    "UpstreamMissing",
    "RateLimited",
    "Immutable",
    "ImagesWarming",
]


def result(
    outcome: Outcome,
    rule: str = "docker-hub",
    tag: str = "lts",
    stale_for: timedelta | None = None,
    **fields: Any,
) -> TagResult:
    return TagResult(
        repository=f"{rule}/library/node",
        tag=tag,
        rule_prefix=rule,
        outcome=outcome,
        stale_since=FINISHED - stale_for if stale_for is not None else None,
        **fields,
    )


def run(*results: TagResult, **fields: Any) -> RunReport:
    values: dict[str, Any] = {
        "run_id": "run-7",
        "started_at": FINISHED - timedelta(minutes=1),
        "finished_at": FINISHED,
        "dry_run": False,
        "results": results,
    }
    values.update(fields)
    return RunReport(**values)


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]


def directive(blob: dict[str, Any]) -> dict[str, Any]:
    [only] = blob["_aws"]["CloudWatchMetrics"]
    return only  # type: ignore[no-any-return]


def units(blob: dict[str, Any]) -> dict[str, str]:
    return {metric["Name"]: metric["Unit"] for metric in directive(blob)["Metrics"]}


def blob_with(blobs: list[dict[str, Any]], dimension: str, value: str) -> dict[str, Any]:
    [match] = [blob for blob in blobs if blob.get(dimension) == value]
    return match


@pytest.fixture
def mixed_run() -> RunReport:
    return run(
        result(Outcome.REFRESHED, tag="lts", stale_for=timedelta(days=3)),
        result(Outcome.REFRESH_FAILED, tag="22", stale_for=timedelta(hours=5)),
        result(Outcome.STALE, tag="20", stale_for=timedelta(hours=2)),
        result(Outcome.FRESH, tag="18"),
        result(Outcome.UPSTREAM_ERROR, rule="quay", tag="1"),
        result(Outcome.UPSTREAM_MISSING, rule="quay", tag="2"),
        result(Outcome.RATE_LIMITED, rule="quay", tag="3"),
        result(Outcome.IMMUTABLE, rule="quay", tag="4", stale_for=timedelta(minutes=30)),
        rate_limits=(
            RateLimitStatus("registry-1.docker.io", limit=100, remaining=87, window_seconds=21600),
            RateLimitStatus("quay.io"),
        ),
        errors=("rule ghcr: AccessDeniedException",),
    )


DEFAULT_METRICS = {
    "RefreshFailed": "Count",
    "UpstreamErrors": "Count",
    "OldestStaleSeconds": "Seconds",
}
# with run_counts: the counts the dashboard otherwise charts from the run totals log line
RUN_COUNT_METRICS = {
    "TagsChecked": "Count",
    "TagsStale": "Count",
    "TagsRefreshed": "Count",
    "RunsCompleted": "Count",
    "RateLimitRemaining": "Count",
}
ALL_ON = MetricOptions(run_counts=True, per_rule=True, per_host=True, per_outcome=True)


def test_with_defaults_a_run_writes_only_the_default_metrics(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    """The alarms' metrics, per stack, and nothing else: one blob, 3 metrics; no RulePrefix or
    UpstreamHost blob, no count the dashboard reads from the logs."""
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions())

    [totals] = emitted(capsys)
    assert directive(totals)["Namespace"] == "PtcSync"
    assert directive(totals)["Dimensions"] == [["service"]]
    assert totals["service"] == "ptc-sync"
    assert "RulePrefix" not in totals
    assert totals["_aws"]["Timestamp"] == FINISHED_MS
    assert units(totals) == DEFAULT_METRICS
    assert totals["RefreshFailed"] == [1.0]
    assert totals["UpstreamErrors"] == [1.0]
    assert totals["OldestStaleSeconds"] == [5 * 3600.0]
    assert "TagsChecked" not in totals
    assert metric_count(MetricOptions(), rules=2, hosts=1) == 3


def test_opted_in_run_counts_are_metrics_too(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions(run_counts=True))

    [totals] = emitted(capsys)
    assert units(totals) == {**RUN_COUNT_METRICS, **DEFAULT_METRICS}
    assert totals["TagsChecked"] == [8.0]
    assert totals["TagsStale"] == [4.0]
    assert totals["TagsRefreshed"] == [1.0]
    assert totals["RunsCompleted"] == [1.0]
    assert totals["RateLimitRemaining"] == [87.0]  # the lowest budget of the run's hosts
    # the planner's two are counted as well
    assert metric_count(MetricOptions(run_counts=True), rules=2, hosts=1) == 8 + 2


def test_the_planner_writes_its_counts_only_with_run_counts(capsys: pytest.CaptureFixture[str]) -> None:
    emit_plan_metrics(repositories=400, work_items=8, options=MetricOptions())
    assert emitted(capsys) == []

    emit_plan_metrics(
        repositories=400, work_items=8, namespace="PtcSync", options=MetricOptions(run_counts=True)
    )
    [planned] = emitted(capsys)
    assert units(planned) == {"RepositoriesQueued": "Count", "WorkItemsQueued": "Count"}
    assert planned["RepositoriesQueued"] == [400.0]
    assert planned["WorkItemsQueued"] == [8.0]


def _dashboard_body(template: dict[str, Any]) -> str:
    return json.dumps(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]).replace('\\"', '"')


def test_the_default_set_is_what_the_alarms_read() -> None:
    """Every PtcSync metric template.yaml's alarms name is in the default set, and every PtcSync metric
    the dashboard charts is too (its SEARCH expressions over RulePrefix and UpstreamHost show the
    opt-in breakdowns when they exist); the heartbeat counts OldestStaleSeconds samples."""
    template = load_template()
    alarmed = {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"]["Namespace"] == "PtcSync"
    }
    body = _dashboard_body(template)
    charted = set(re.findall(r'\["PtcSync", "(\w+)"', body))
    charted |= set(re.findall(r'\["\.", "(\w+)", "\.", "\."', body))
    assert {p["MetricName"] for p in alarmed.values()} == set(DEFAULT_METRICS)
    assert alarmed["HeartbeatAlarm"]["Statistic"] == "SampleCount"
    assert alarmed["HeartbeatAlarm"]["MetricName"] == "OldestStaleSeconds"
    assert charted <= set(DEFAULT_METRICS), charted - set(DEFAULT_METRICS)


def test_the_dashboards_log_queries_read_fields_the_run_logs(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    """The count and pull-budget widgets are Logs Insights queries over the run's log lines: each
    field a query aggregates is a field of the line its filter selects."""
    stream = io.StringIO()
    logger = Logger(service=f"test-{uuid.uuid4().hex}", stream=stream)
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions(), logger=logger)
    capsys.readouterr()
    lines: dict[str, dict[str, Any]] = {}
    for line in stream.getvalue().splitlines():
        fields = json.loads(line)
        lines.setdefault(fields["message"], fields)
    template = load_template()
    widgets = json.loads(
        Evaluator(template).value(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    )
    log_queries = [w["properties"]["query"] for w in widgets["widgets"] if w["type"] == "log"]
    queries = [
        found.groups()
        for query in log_queries
        if (found := re.search(r'filter message = "([^"]+)" \| stats (.+?) by bin', query))
    ]
    assert {message for message, _ in queries} == {"run totals", "upstream budget"}
    for message, stats in queries:
        aggregated = re.findall(r"(?:sum|min|max|avg)\((\w+)\)", stats)
        assert aggregated, stats
        for field in aggregated:
            assert isinstance(lines[message][field], int | float), (message, field)
    assert lines["run totals"]["TagsChecked"] == 8


def test_without_opt_in_the_breakdowns_are_log_fields(mixed_run: RunReport) -> None:
    """Per rule and per host, the counts are log lines Logs Insights aggregates
    (``stats sum(TagsChecked) by rule``), not metrics."""
    stream = io.StringIO()
    logger = Logger(service=f"test-{uuid.uuid4().hex}", stream=stream)
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions(), logger=logger)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_message: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_message.setdefault(line["message"], []).append(line)
    [totals] = by_message["run totals"]
    assert totals["run_id"] == "run-7"
    assert totals["UpstreamMissing"] == 1
    assert totals["RunErrors"] == 1
    rules = {line["rule"]: line for line in by_message["rule totals"]}
    assert sorted(rules) == ["docker-hub", "quay"]
    assert rules["docker-hub"]["TagsChecked"] == 4
    assert rules["quay"]["RateLimited"] == 1
    [budget] = by_message["upstream budget"]
    assert budget["host"] == "registry-1.docker.io"
    assert budget["RateLimitRemaining"] == 87.0


def test_opted_in_one_blob_per_rule_prefix_with_the_rule_dimension(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    emit_run_metrics(mixed_run, service="ptc-sync", options=ALL_ON)

    rule_blobs = [blob for blob in emitted(capsys) if "RulePrefix" in blob]
    assert sorted(blob["RulePrefix"] for blob in rule_blobs) == ["docker-hub", "quay"]

    docker_hub = blob_with(rule_blobs, "RulePrefix", "docker-hub")
    assert directive(docker_hub)["Namespace"] == "PtcSync"
    assert directive(docker_hub)["Dimensions"] == [["RulePrefix", "service"]]
    assert docker_hub["service"] == "ptc-sync"
    assert docker_hub["_aws"]["Timestamp"] == FINISHED_MS
    assert "RunErrors" not in units(docker_hub)
    assert docker_hub["TagsChecked"] == [4.0]
    assert docker_hub["TagsStale"] == [3.0]
    assert docker_hub["TagsRefreshed"] == [1.0]
    assert docker_hub["RefreshFailed"] == [1.0]
    assert docker_hub["UpstreamErrors"] == [0.0]
    assert docker_hub["OldestStaleSeconds"] == [5 * 3600.0]

    quay = blob_with(rule_blobs, "RulePrefix", "quay")
    assert quay["TagsChecked"] == [4.0]
    assert quay["TagsStale"] == [1.0]
    assert quay["TagsRefreshed"] == [0.0]
    assert quay["UpstreamErrors"] == [1.0]
    assert quay["UpstreamMissing"] == [1.0]
    assert quay["RateLimited"] == [1.0]
    assert quay["Immutable"] == [1.0]
    assert quay["OldestStaleSeconds"] == [1800.0]


def test_per_rule_alone_breaks_down_the_default_set_only(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions(per_rule=True))

    blobs = emitted(capsys)
    assert len(blobs) == 1 + 2
    for blob in blobs[1:]:
        assert set(units(blob)) == set(DEFAULT_METRICS)


def test_opted_in_rate_limit_remaining_per_upstream_host_that_reported_one(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions(per_host=True))

    host_blobs = [blob for blob in emitted(capsys) if "UpstreamHost" in blob]
    [docker_hub] = host_blobs
    assert docker_hub["UpstreamHost"] == "registry-1.docker.io"
    assert directive(docker_hub)["Dimensions"] == [["UpstreamHost", "service"]]
    assert units(docker_hub) == {"RateLimitRemaining": "Count"}
    assert docker_hub["RateLimitRemaining"] == [87.0]


def test_opted_in_per_outcome_adds_the_rarer_counts_to_the_totals(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    emit_run_metrics(mixed_run, service="ptc-sync", options=MetricOptions(run_counts=True, per_outcome=True))

    [totals] = emitted(capsys)
    assert units(totals) == {
        **DEFAULT_METRICS,
        **RUN_COUNT_METRICS,
        **dict.fromkeys(COUNT_METRICS, "Count"),
        "RunErrors": "Count",
    }
    assert totals["UpstreamMissing"] == [1.0]
    assert totals["RateLimited"] == [1.0]
    assert totals["Immutable"] == [1.0]
    assert totals["RunErrors"] == [1.0]


def test_metric_count_with_every_opt_in_matches_the_emitted_blobs(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    """Blobs: totals, one per rule, one per host; metrics (what CloudWatch bills): 13 + 2 x 10 + 1,
    and the planner's two."""
    emit_run_metrics(mixed_run, service="ptc-sync", options=ALL_ON)

    blobs = emitted(capsys)
    assert len(blobs) == 1 + 2 + 1
    written = sum(len(units(blob)) for blob in blobs)
    assert written + 2 == metric_count(ALL_ON, rules=2, hosts=1) == 13 + 2 * 10 + 1 + 2


def test_the_configured_options_apply_when_none_are_passed(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str]
) -> None:
    before = configured()
    configure(MetricOptions(per_rule=True))
    try:
        emit_run_metrics(mixed_run, service="ptc-sync")
    finally:
        configure(before)
    assert len(emitted(capsys)) == 1 + 2


def test_namespace_and_service_are_configurable(capsys: pytest.CaptureFixture[str]) -> None:
    emit_run_metrics(
        run(result(Outcome.FRESH)), namespace="Platform/Ecr", service="ptc-sync-staging", options=ALL_ON
    )

    blobs = emitted(capsys)
    assert [directive(blob)["Namespace"] for blob in blobs] == ["Platform/Ecr", "Platform/Ecr"]
    assert [blob["service"] for blob in blobs] == ["ptc-sync-staging", "ptc-sync-staging"]


def test_service_defaults_to_the_powertools_service_name(capsys: pytest.CaptureFixture[str]) -> None:
    emit_run_metrics(run(result(Outcome.FRESH)), options=ALL_ON)

    assert [blob["service"] for blob in emitted(capsys)] == ["ptc-sync", "ptc-sync"]


def test_empty_run_still_reports_totals(capsys: pytest.CaptureFixture[str]) -> None:
    emit_run_metrics(run(errors=("rule quay: discovery failed",)), service="ptc-sync", options=ALL_ON)

    [totals] = emitted(capsys)
    assert totals["TagsChecked"] == [0.0]
    assert totals["OldestStaleSeconds"] == [0.0]
    assert totals["RunErrors"] == [1.0]


def test_staleness_ignores_refreshed_and_fresh_tags() -> None:
    results = [
        result(Outcome.REFRESHED, stale_for=timedelta(days=9)),
        result(Outcome.FRESH, stale_for=timedelta(days=8)),
        result(Outcome.RATE_LIMITED, stale_for=timedelta(hours=7)),
        result(Outcome.STALE, stale_for=None),
    ]

    assert oldest_staleness_seconds(results, FINISHED) == 7 * 3600.0


def test_staleness_never_goes_negative() -> None:
    assert (
        oldest_staleness_seconds([result(Outcome.STALE, stale_for=timedelta(seconds=-30))], FINISHED) == 0.0
    )


def test_metrics_disabled_prints_nothing(
    mixed_run: RunReport, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    emit_run_metrics(mixed_run, service="ptc-sync")

    assert emitted(capsys) == []


# --- structured log lines ---------------------------------------------------------------------


def log_lines(report: RunReport) -> tuple[int, list[dict[str, Any]]]:
    stream = io.StringIO()
    logger = Logger(service=f"test-{uuid.uuid4().hex}", stream=stream)
    logged = log_tag_outcomes(report, logger)
    return logged, [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_log_line_per_tag_that_is_not_fresh(mixed_run: RunReport) -> None:
    logged, lines = log_lines(mixed_run)

    assert logged == 7
    assert len(lines) == 7
    assert [line["tag"] for line in lines] == ["lts", "22", "20", "1", "2", "3", "4"]


def test_log_line_carries_the_tag_fields() -> None:
    failed = result(
        Outcome.REFRESH_FAILED,
        tag="22",
        stale_for=timedelta(hours=5),
        cached_digest="sha256:" + "a" * 64,
        upstream_digest="sha256:" + "b" * 64,
        reason="verify: digest mismatch",
    )

    _, [line] = log_lines(run(failed))

    assert line["level"] == "ERROR"
    assert line["message"] == "docker-hub/library/node:22: refresh_failed"
    assert line["repository"] == "docker-hub/library/node"
    assert line["tag"] == "22"
    assert line["outcome"] == "refresh_failed"
    assert line["cached_digest"] == "sha256:" + "a" * 64
    assert line["upstream_digest"] == "sha256:" + "b" * 64
    assert line["reason"] == "verify: digest mismatch"
    assert line["rule"] == "docker-hub"
    assert line["run_id"] == "run-7"
    assert line["dry_run"] is False
    assert line["stale_for_seconds"] == 5 * 3600


@pytest.mark.parametrize(
    ("outcome", "level"),
    [
        (Outcome.REFRESH_FAILED, "ERROR"),
        (Outcome.UPSTREAM_ERROR, "ERROR"),
        (Outcome.STALE, "WARNING"),
        (Outcome.UPSTREAM_MISSING, "WARNING"),
        (Outcome.RATE_LIMITED, "WARNING"),
        (Outcome.IMMUTABLE, "WARNING"),
        (Outcome.REFRESHED, "INFO"),
        (Outcome.SKIPPED, "INFO"),
    ],
)
def test_log_level_follows_the_outcome(outcome: Outcome, level: str) -> None:
    _, [line] = log_lines(run(result(outcome)))

    assert line["level"] == level
    assert line["outcome"] == outcome.value
    assert "stale_for_seconds" not in line


def test_results_under_no_rule_get_their_own_rule_dimension(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty RulePrefix would be dropped by EMF, turning the blob into a second set of totals."""
    now = datetime.now(UTC)
    orphan = TagResult("gone/repo", "1", "", Outcome.SKIPPED, reason="not under any pull-through cache rule")
    emit_run_metrics(
        RunReport("r", now, now, False, (orphan,)), namespace="PtcSync", service="ptc-sync", options=ALL_ON
    )
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    dimension_sets = [tuple(b["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for b in blobs]
    assert dimension_sets.count(("service",)) == 1, "exactly one blob of run totals"
    (per_rule,) = [b for b in blobs if "RulePrefix" in b]
    assert per_rule["RulePrefix"] == "(no rule)"
