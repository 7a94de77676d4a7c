"""CloudWatch metrics (EMF) and structured log lines for one sync run.

Each run prints separate EMF blobs, each with its own dimension set:

- run totals, dimensioned by ``service`` only (alarms), with ``RunsCompleted`` = 1: the heartbeat alarm
  fires when no run completed in two schedule intervals;
- one blob per rule prefix, dimensioned by ``RulePrefix`` and ``service`` (dashboards split by rule);
- one blob per upstream host that reported a pull budget, dimensioned by ``UpstreamHost`` and ``service``.

Blobs are built with ``EphemeralMetrics`` (no state shared with the handler's ``Metrics``) and
stamped with the run's finish time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from ptc_sync.models import (
    DIFFERED_OUTCOMES,
    FAILED_OUTCOMES,
    MAY_SERVE_OLD_OUTCOMES,
    WARNING_OUTCOMES,
    Outcome,
    RunReport,
    TagResult,
)

DEFAULT_NAMESPACE: Final = "PtcSync"
RULE_DIMENSION: Final = "RulePrefix"
HOST_DIMENSION: Final = "UpstreamHost"
NO_RULE: Final = "(no rule)"
RUNS_COMPLETED: Final = "RunsCompleted"  # once per completed run, in the run totals only (heartbeat)
OLDEST_STALE: Final = "OldestStaleSeconds"  # the staleness alarm's metric

_COUNTED_OUTCOMES: Final[Mapping[str, Outcome]] = {
    "TagsRefreshed": Outcome.REFRESHED,
    "RefreshFailed": Outcome.REFRESH_FAILED,
    "UpstreamErrors": Outcome.UPSTREAM_ERROR,
    "UpstreamMissing": Outcome.UPSTREAM_MISSING,
    "RateLimited": Outcome.RATE_LIMITED,
    "Immutable": Outcome.IMMUTABLE,
    # cached, but not every blob is ECR's own yet (a refresh whose blobs still warm says so in its reason)
    "ImagesWarming": Outcome.WARMING,
}


def tag_counts(results: Iterable[TagResult], finished_at: datetime) -> dict[str, float]:
    """Metric name → value (all counts except OldestStaleSeconds) for a group of results."""
    listed = list(results)
    counts: dict[str, float] = {
        "TagsChecked": len(listed),
        "TagsStale": sum(1 for result in listed if result.outcome in DIFFERED_OUTCOMES),
    }
    for name, outcome in _COUNTED_OUTCOMES.items():
        counts[name] = sum(1 for result in listed if result.outcome is outcome)
    counts[OLDEST_STALE] = oldest_staleness_seconds(listed, finished_at)
    return counts


def oldest_staleness_seconds(results: Iterable[TagResult], finished_at: datetime) -> float:
    """How long the longest-stale tag still not fresh has differed from upstream (0 when none)."""
    ages = [
        _seconds_between(result.stale_since, finished_at)
        for result in results
        if result.stale_since is not None and result.outcome in MAY_SERVE_OLD_OUTCOMES
    ]
    return max(ages, default=0.0)


def _seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def emit_run_metrics(
    report: RunReport, *, namespace: str = DEFAULT_NAMESPACE, service: str | None = None
) -> None:
    """Print the run's EMF blobs to stdout (``service`` defaults to POWERTOOLS_SERVICE_NAME)."""
    totals = tag_counts(report.results, report.finished_at)
    totals["RunErrors"] = len(report.errors)
    totals[RUNS_COMPLETED] = 1
    _flush(report, namespace, service, totals, dimensions={})

    for prefix in sorted({result.rule_prefix for result in report.results}):
        in_rule = (result for result in report.results if result.rule_prefix == prefix)
        # a tag under no rule (its repository left the rules' scope) still needs a dimension value:
        # an empty one is dropped by EMF, and the blob would count again as run totals
        label = prefix or NO_RULE
        _flush(report, namespace, service, tag_counts(in_rule, report.finished_at), {RULE_DIMENSION: label})

    for status in sorted(report.rate_limits, key=lambda status: status.host):
        if status.remaining is not None:
            values = {"RateLimitRemaining": float(status.remaining)}
            _flush(report, namespace, service, values, {HOST_DIMENSION: status.host})


def _flush(
    report: RunReport,
    namespace: str,
    service: str | None,
    values: Mapping[str, float],
    dimensions: Mapping[str, str],
) -> None:
    blob = EphemeralMetrics(namespace=namespace, service=service)
    for dimension, label in dimensions.items():
        blob.add_dimension(name=dimension, value=label)
    for metric, value in values.items():
        unit = MetricUnit.Seconds if metric.endswith("Seconds") else MetricUnit.Count
        blob.add_metric(name=metric, unit=unit, value=value)
    blob.set_timestamp(report.finished_at)
    blob.flush_metrics()


def log_tag_outcomes(report: RunReport, logger: Logger) -> int:
    """One structured log line per tag that is not fresh; returns how many were logged."""
    logged = 0
    for result in report.results:
        if result.outcome is Outcome.FRESH:
            continue
        fields = tag_log_fields(result, report)
        message = f"{result.image}: {result.outcome.value}"
        if result.outcome in FAILED_OUTCOMES:
            logger.error(message, extra=fields)
        elif result.outcome in WARNING_OUTCOMES:
            logger.warning(message, extra=fields)
        else:
            logger.info(message, extra=fields)
        logged += 1
    return logged


def tag_log_fields(result: TagResult, report: RunReport) -> dict[str, object]:
    fields: dict[str, object] = {
        "run_id": report.run_id,
        "dry_run": report.dry_run,
        "rule": result.rule_prefix,
        "repository": result.repository,
        "tag": result.tag,
        "outcome": result.outcome.value,
        "cached_digest": result.cached_digest,
        "upstream_digest": result.upstream_digest,
        "reason": result.reason,
    }
    if result.stale_since is not None:
        fields["stale_for_seconds"] = round(_seconds_between(result.stale_since, report.finished_at))
    return fields
