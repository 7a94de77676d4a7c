"""CloudWatch metrics (EMF) and structured log lines for one sync run.

CloudWatch bills each metric name and dimension set ($0.30 a month each), so by default a run writes
only what the alarms read, per stack (dimension ``service`` = the stack name): one blob of run totals
with ``RefreshFailed``, ``UpstreamErrors`` and ``OldestStaleSeconds``. Every completed run writes that
blob once (``OldestStaleSeconds`` is 0 when nothing is stale), so the sample count of
``OldestStaleSeconds`` is the number of completed runs: the heartbeat alarm reads it, and needs no
metric of its own. The dashboard charts the other counts from the run's log lines (Logs Insights).

Opt-in (the settings document's ``metrics``; ``MetricOptions``):

- ``run_counts``: the run's counts as metrics too: ``TagsChecked``, ``TagsStale``, ``TagsRefreshed``,
  ``RunsCompleted`` (= 1) and, when an upstream reported a pull budget, ``RateLimitRemaining`` (the
  lowest of the run's hosts); the planner's ``RepositoriesQueued`` and ``WorkItemsQueued``;
- ``per_rule``: one blob per rule prefix, dimensioned by ``RulePrefix`` and ``service``;
- ``per_host``: ``RateLimitRemaining`` per upstream host, dimensioned by ``UpstreamHost`` and ``service``;
- ``per_outcome``: the rarer outcomes' counts too (``UpstreamMissing``, ``RateLimited``, ``Immutable``,
  ``ImagesWarming``; ``RunErrors`` in the totals), in the totals and in each rule's blob.

Every run also logs its counts whatever is opted in, as structured fields Logs Insights aggregates
(``filter message = "rule totals" | stats sum(TagsChecked) by rule``): one ``run totals`` line, one
``rule totals`` line per rule prefix and one ``upstream budget`` line per host that reported a budget.
The dashboard's count and pull-budget widgets are those queries.

Blobs are built with ``EphemeralMetrics`` (no state shared with the handler's ``Metrics``) and
stamped with the run's finish time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
RUNS_COMPLETED: Final = "RunsCompleted"  # once per completed run, in the run totals, with run_counts
OLDEST_STALE: Final = "OldestStaleSeconds"  # the staleness alarm's metric; its sample count, the heartbeat
RATE_LIMIT_REMAINING: Final = "RateLimitRemaining"
RUN_ERRORS: Final = "RunErrors"
# what the alarms read: the default set, per stack and, opted in, per rule
DEFAULT_COUNTS: Final = ("RefreshFailed", "UpstreamErrors", OLDEST_STALE)
# what the dashboard charts from the run totals log line; metrics too with run_counts
RUN_COUNTS: Final = ("TagsChecked", "TagsStale", "TagsRefreshed")
# the planner's, metrics with run_counts (logged in its "run planned" line either way)
PLANNER_COUNTS: Final = ("RepositoriesQueued", "WorkItemsQueued")
# read by nothing the stack creates: logged every run, metrics only with per_outcome
OUTCOME_COUNTS: Final = ("UpstreamMissing", "RateLimited", "Immutable", "ImagesWarming")

_log = Logger(child=True)


@dataclass(frozen=True, slots=True)
class MetricOptions:
    """The opt-in breakdowns (the settings document's ``metrics``)."""

    run_counts: bool = False
    per_rule: bool = False
    per_host: bool = False
    per_outcome: bool = False

    def counts(self) -> tuple[str, ...]:
        """The tag counts each blob (the totals, and each rule's) carries."""
        return (
            (RUN_COUNTS if self.run_counts else ())
            + DEFAULT_COUNTS
            + (OUTCOME_COUNTS if self.per_outcome else ())
        )


_configured = MetricOptions()


def configure(options: MetricOptions) -> None:
    """The options ``emit_run_metrics`` uses when its caller passes none (the composition root,
    ``wiring``, sets them from the settings it builds the container's objects with)."""
    global _configured  # noqa: PLW0603 - one setting per container, like Powertools' own Metrics
    _configured = options


def configured() -> MetricOptions:
    return _configured


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


def tag_counts(report: RunReport, rule_prefix: str | None = None) -> dict[str, float]:
    """Metric name → value for the run's tags (those of one rule with ``rule_prefix``): the counts
    come from the report's tallies (the run's counters), OldestStaleSeconds from its named results."""
    tallies = {
        (rule, outcome): n
        for (rule, outcome), n in report.tallies.items()
        if rule_prefix is None or rule == rule_prefix
    }

    def count(outcomes: Iterable[Outcome]) -> int:
        wanted = set(outcomes)
        return sum(n for (_, outcome), n in tallies.items() if outcome in wanted)

    counts: dict[str, float] = {
        "TagsChecked": sum(tallies.values()),
        "TagsStale": count(DIFFERED_OUTCOMES),
    }
    for name, outcome in _COUNTED_OUTCOMES.items():
        counts[name] = count([outcome])
    results = (r for r in report.results if rule_prefix is None or r.rule_prefix == rule_prefix)
    counts[OLDEST_STALE] = oldest_staleness_seconds(results, report.finished_at)
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
    report: RunReport,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    service: str | None = None,
    options: MetricOptions | None = None,
    logger: Logger | logging.Logger | None = None,
) -> None:
    """Print the run's EMF blobs to stdout (``service`` defaults to POWERTOOLS_SERVICE_NAME) and log
    its counts (totals, per rule, per upstream host) as structured fields."""
    opts = options or _configured
    log = logger or _log
    names = opts.counts()
    counts = tag_counts(report)
    budgets = {
        status.host: float(status.remaining)
        for status in sorted(report.rate_limits, key=lambda status: status.host)
        if status.remaining is not None
    }
    totals = {name: counts[name] for name in names}
    if opts.per_outcome:
        totals[RUN_ERRORS] = len(report.errors)
    if opts.run_counts:
        totals[RUNS_COMPLETED] = 1
        if budgets:
            totals[RATE_LIMIT_REMAINING] = min(budgets.values())
    _flush(report, namespace, service, totals, dimensions={})
    log.info(
        "run totals",
        extra={"run_id": report.run_id, **counts, RUN_ERRORS: len(report.errors), "metrics": list(totals)},
    )

    for prefix in sorted(report.rule_prefixes):
        in_rule = tag_counts(report, prefix)
        # a tag under no rule (its repository left the rules' scope) still needs a dimension value:
        # an empty one is dropped by EMF, and the blob would count again as run totals
        label = prefix or NO_RULE
        if opts.per_rule:
            values = {name: in_rule[name] for name in names}
            _flush(report, namespace, service, values, {RULE_DIMENSION: label})
        log.info("rule totals", extra={"run_id": report.run_id, "rule": label, **in_rule})

    for host, remaining in budgets.items():
        if opts.per_host:
            _flush(report, namespace, service, {RATE_LIMIT_REMAINING: remaining}, {HOST_DIMENSION: host})
        log.info(
            "upstream budget", extra={"run_id": report.run_id, "host": host, RATE_LIMIT_REMAINING: remaining}
        )


def emit_plan_metrics(
    *, repositories: int, work_items: int, namespace: str | None = None, options: MetricOptions | None = None
) -> None:
    """The planner's counts as metrics, with ``run_counts`` only (its "run planned" log line carries
    them either way). The planner lists repositories, not tags: it measures what it queued."""
    if not (options or _configured).run_counts:
        return
    planned = EphemeralMetrics(namespace=namespace)
    for name, value in zip(PLANNER_COUNTS, (repositories, work_items), strict=True):
        planned.add_metric(name=name, unit=MetricUnit.Count, value=value)
    planned.flush_metrics()


def metric_count(options: MetricOptions, *, rules: int, hosts: int) -> int:
    """Custom metrics (name and dimension set) a stack's runs write: what CloudWatch bills for, with
    ``rules`` rule prefixes and ``hosts`` upstream hosts reporting a budget, the planner's two
    (with ``run_counts``) included."""
    totals = len(options.counts()) + (1 if options.per_outcome else 0)
    if options.run_counts:
        totals += 1 + (1 if hosts else 0) + len(PLANNER_COUNTS)
    per_rule = len(options.counts()) * rules if options.per_rule else 0
    per_host = hosts if options.per_host else 0
    return totals + per_rule + per_host


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
