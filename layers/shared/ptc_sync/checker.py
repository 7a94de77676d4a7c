"""The checker: one SQS work item at a time, results into the run state, the run's summary once.

A work item names a cached repository and tags. The checker re-reads them from ECR, maps the
repository to its upstream through the account's rules, compares (and refreshes, pre-warms), records
every result in the state table and, when its batch completes the run, publishes the run's summary.
Refreshes respect the cooldown and the upstream pull budget shared with every other checker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger

from ptc_sync.ecr import EcrError, match_rule
from ptc_sync.metrics import emit_run_metrics, log_tag_outcomes
from ptc_sync.models import Outcome, RunReport, TagResult
from ptc_sync.notify import Notifier, NotifyError
from ptc_sync.refresh import Refresher
from ptc_sync.report import RECOVERED
from ptc_sync.state import StateError, StateStore, TagState, in_cooldown
from ptc_sync.sync import SyncEngine, Target
from ptc_sync.work import WorkItem, WorkKind

logger = Logger(child=True)

NOTIFY = "notify"  # TagResult.details key: "true" when this result is news for chat
# A notable outcome is news the first time a tag shows it; failures follow should_alert.
NEWS_ON_CHANGE = frozenset({Outcome.STALE, Outcome.UPSTREAM_MISSING, Outcome.IMMUTABLE, Outcome.RATE_LIMITED})


class RetryableError(RuntimeError):
    """The item could not be processed now (ECR throttled, …): the message is retried by SQS."""


class StateBudget:
    """The upstream pull budget shared by all checkers, spent atomically in the state table."""

    def __init__(self, state: StateStore, engine: SyncEngine, now: datetime) -> None:
        self.state = state
        self.reserve = engine.settings.rate_limit_reserve
        self.now = now

    def try_spend(self, host: str, pulls: int) -> str:
        if self.state.reserve_pulls(host, pulls, self.reserve, self.now):
            return ""
        status = self.state.rate_limit(host)
        left = status.remaining if status else "?"
        return f"{host}: {left} pulls left, reserve {self.reserve}, refresh costs {pulls} (shared budget)"


@dataclass(frozen=True)
class ItemOutcome:
    results: tuple[TagResult, ...]
    completed_run: bool
    message_id: str | None = None


class Checker:
    def __init__(
        self,
        engine: SyncEngine,
        state: StateStore,
        notifier: Notifier | None,
        *,
        metrics_namespace: str = "PtcSync",
    ) -> None:
        self.engine = engine
        self.refresher: Refresher = engine.refresher
        self.state = state
        self.notifier = notifier
        self.metrics_namespace = metrics_namespace
        self.settings = engine.settings

    def process(
        self, item: WorkItem, *, batch_id: str | None = None, time_left: Callable[[], float] | None = None
    ) -> ItemOutcome:
        now = self.engine.now()
        results = self._warm(item) if item.kind is WorkKind.WARM else self._check(item, now, time_left)
        for status in self.engine.registry.rate_limits():
            self.state.observe_rate_limit(status, now)
        try:
            annotated = [self._record(result, now) for result in results]
        except StateError:
            # the refreshes happened: say so in the log even though their state is not stored
            log_results(results, item.run_id, item.dry_run)
            raise
        log_results(annotated, item.run_id, item.dry_run)
        completed = self.state.record_results(item.run_id, annotated, batch_id=batch_id)
        message_id = self.summarise(item.run_id, dry_run=item.dry_run) if completed else None
        return ItemOutcome(tuple(annotated), completed, message_id)

    # -- work ----------------------------------------------------------------------------------------

    def _check(self, item: WorkItem, now: datetime, time_left: Callable[[], float] | None) -> list[TagResult]:
        found = self.engine.discover_repository(item.repository, item.tags)
        if found.errors and not (found.targets or found.skipped):
            reason = "; ".join(found.errors)
            if "not under any pull-through cache rule" in reason or "no such repository" in reason:
                return [  # permanent: retrying cannot help, report it
                    TagResult(item.repository, tag, "", Outcome.SKIPPED, reason=reason) for tag in item.tags
                ]
            raise RetryableError(reason)
        states = self.state.tag_states((t.cached.repository, t.cached.tag) for t in found.targets)
        cooldown = timedelta(minutes=self.settings.refresh_cooldown_minutes)

        def gate(target: Target) -> str:
            state = states.get((target.cached.repository, target.cached.tag))
            if in_cooldown(state, now, cooldown):
                return (
                    f"refresh cooldown ({self.settings.refresh_cooldown_minutes} min since the last refresh)"
                )
            return ""

        results = list(found.skipped)
        results += self.engine.check(
            found.targets,
            found.backups,
            dry_run=item.dry_run or not item.refresh or self.settings.dry_run,
            budget=StateBudget(self.state, self.engine, now),
            time_left=time_left,
            refresh_gate=gate,
        )
        return results

    def _warm(self, item: WorkItem) -> list[TagResult]:
        matched = match_rule(self.engine.rules(), item.repository)
        prefix = matched.prefix if matched else ""
        results = []
        for tag in item.tags:
            if matched is None:
                results.append(
                    TagResult(
                        item.repository,
                        tag,
                        "",
                        Outcome.SKIPPED,
                        reason="not under any pull-through cache rule",
                    )
                )
                continue
            try:
                before = self.engine.ecr.tag_digest(item.repository, tag)
            except EcrError as exc:
                if exc.code != "RepositoryNotFoundException":
                    raise RetryableError(str(exc)) from exc
                before = None  # nothing cached under this name yet: the pull creates the repository
            warmed = self.refresher.prewarm(item.repository, tag)
            if not warmed.ok:
                results.append(
                    TagResult(
                        item.repository,
                        tag,
                        prefix,
                        Outcome.REFRESH_FAILED,
                        cached_digest=before,
                        upstream_digest=warmed.new_digest,
                        reason=f"{warmed.failed_step}: {warmed.reason}",
                    )
                )
            elif before is None:
                results.append(
                    TagResult(
                        item.repository,
                        tag,
                        prefix,
                        Outcome.REFRESHED,
                        upstream_digest=warmed.new_digest,
                        platforms=warmed.platforms,
                        reason=f"pre-warmed ({item.source})",
                    )
                )
            else:
                results.append(
                    TagResult(
                        item.repository,
                        tag,
                        prefix,
                        Outcome.FRESH,
                        cached_digest=before,
                        upstream_digest=warmed.new_digest,
                        reason="already cached; layers warmed",
                    )
                )
        return results

    # -- state and summary ---------------------------------------------------------------------------

    def _record(self, result: TagResult, now: datetime) -> TagResult:
        if not result.repository or not result.tag:
            return result
        update = self.state.record_tag(result, now)
        news = update.alert or result.outcome is Outcome.REFRESHED or _changed(update.previous, result)
        stale_since = update.current.stale_since or result.stale_since
        details = {**result.details, NOTIFY: "true" if news else "false"}
        if update.alert and result.outcome is Outcome.FRESH:
            details[RECOVERED] = "true"  # the alerted failure ended: tell it
        return dataclasses.replace(result, stale_since=stale_since, details=details)

    def summarise(self, run_id: str, *, dry_run: bool) -> str | None:
        """The run is complete: log, measure and publish it once (the caller won the race)."""
        progress = self.state.run_progress(run_id)
        results = self.state.run_results(run_id)
        report = RunReport(
            run_id=run_id,
            started_at=progress.started_at if progress else self.engine.now(),
            finished_at=self.engine.now(),
            dry_run=dry_run,
            results=tuple(results),
            rate_limits=self.engine.registry.rate_limits(),
            region=self.settings.region,
            account_id=self.settings.account_id,
        )
        emit_run_metrics(report, namespace=self.metrics_namespace)
        news = any(r.details.get(NOTIFY) == "true" for r in results)
        logger.info("run complete", extra={"run_id": run_id, "tags": len(results), "news": news})
        if self.notifier is None:
            return None
        try:
            return self.notifier.publish(report, worth_it=news)
        except NotifyError as exc:
            logger.error("run report not published", extra={"run_id": run_id, "reason": str(exc)})
            return None


def _changed(previous: TagState | None, result: TagResult) -> bool:
    return result.outcome in NEWS_ON_CHANGE and (previous is None or previous.outcome is not result.outcome)


def log_results(results: Sequence[TagResult], run_id: str, dry_run: bool) -> None:
    """One structured line per non-fresh tag, as the checker records it."""
    moment = datetime.now(UTC)
    log_tag_outcomes(RunReport(run_id, moment, moment, dry_run, tuple(results)), logger)
