"""The checker: one SQS work item at a time, results into the run state, the run's summary once.

A work item names a cached repository and tags. The checker first repairs what a killed refresh
left undone in that repository (``repair.Repairer``), then re-reads the tags from ECR, maps the
repository to its upstream through the account's rules, compares (and refreshes, pre-warms), records
every result in the state table and, when its batch completes the run, publishes the run's summary.

Refreshes respect the cooldown, the backoff after failed refreshes and the upstream pull budget
shared with every other checker, decided on the rate-limit numbers of the requests just made. A
check started by ECR's own event about a tag ptc-sync is refreshing, has just refreshed or is
backing off from is not made at all: a refresh's imports must not start refreshes.

``RetryableError`` and ``StateBudget`` (the shared pull budget) live in ``state_budget``, the warm
path (an ECR event or request naming tags to pre-warm) in ``warm``; the first two import from here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger

from ptc_sync.discovery import Discovery, Target
from ptc_sync.ecr import EcrAdapter
from ptc_sync.journal import BackupRecord, RefreshJournal
from ptc_sync.metrics import emit_run_metrics, log_tag_outcomes
from ptc_sync.models import Outcome, RunReport, TagResult
from ptc_sync.notify import Notifier, NotifyError
from ptc_sync.queue import QueueError, WorkQueue
from ptc_sync.refresh import Refresher
from ptc_sync.repair import Repairer
from ptc_sync.report import decide_publish
from ptc_sync.settings import SyncSettings
from ptc_sync.state import StateError, StateStore, TagState, backoff_until, in_cooldown, judged
from ptc_sync.state_budget import RetryableError, StateBudget
from ptc_sync.sync import Comparer, UpstreamResolver
from ptc_sync.upstream import rule_for_repository
from ptc_sync.warm import WarmPath
from ptc_sync.work import MAX_SCAN_TARGETS, WorkItem, WorkKind

logger = Logger(child=True)

__all__ = ["Checker", "ItemOutcome", "RetryableError", "StateBudget", "log_results"]


@dataclass(frozen=True)
class ItemOutcome:
    results: tuple[TagResult, ...]
    completed_run: bool
    message_id: str | None = None
    # a scan's tags outside the scope's filters (SKIPPED): neither recorded nor stored, only counted
    # in the log; a local run shows them ("N more not in scope")
    filtered: tuple[TagResult, ...] = ()


class Checker(WarmPath):
    """Each collaborator is a port the composition root (``wiring.App.checker``) injects."""

    def __init__(
        self,
        *,
        settings: SyncSettings,
        now: Callable[[], datetime],
        comparer: Comparer,
        ecr: EcrAdapter,
        state: StateStore,
        notifier: Notifier | None,
        discovery: Discovery,
        refresher: Refresher,
        repairer: Repairer,
        journal: RefreshJournal,
        registry: UpstreamResolver,
        queue: WorkQueue | None = None,
        metrics_namespace: str | None = "PtcSync",
    ) -> None:
        self.settings = settings
        self.now = now
        self.comparer = comparer
        self.ecr = ecr
        self.discovery = discovery
        self.refresher = refresher
        self.repairer = repairer
        self.journal = journal
        self.registry = registry
        self.queue = queue  # where a scan's rest goes on; None: a scan checks all its tags itself
        self.state = state
        self.notifier = notifier
        self.metrics_namespace = metrics_namespace  # None: no EMF (a local run prints its own report)

    def process(
        self, item: WorkItem, *, batch_id: str | None = None, time_left: Callable[[], float] | None = None
    ) -> ItemOutcome:
        now = self.now()
        filtered: list[TagResult] = []
        if item.kind is WorkKind.WARM:
            results = self._warm(item, now, time_left)
        elif item.kind is WorkKind.SCAN:
            results = self._scan(item, now, time_left, filtered)
        else:
            results = self._repair_then_check(item, now, time_left)
        for status in self.registry.rate_limits():
            self.state.observe_rate_limit(status, now)
        try:
            known = self._known_states(item, results)
            scheduled = item.source == "schedule"
            annotated = [self._record(result, now, known, scheduled=scheduled) for result in results]
        except StateError:
            # the refreshes happened: say so in the log even though their state is not stored
            log_results(results, item.run_id, item.dry_run)
            raise
        log_results(annotated, item.run_id, item.dry_run)
        completed = self.state.record_results(item.run_id, annotated, batch_id=batch_id)
        message_id = self.summarise(item.run_id, dry_run=item.dry_run) if completed else None
        return ItemOutcome(tuple(annotated), completed, message_id, tuple(filtered))

    def _known_states(self, item: WorkItem, results: list[TagResult]) -> dict[tuple[str, str], TagState]:
        """The states the results fold into, eventually consistent (a stale one fails the update's
        version condition and is re-read: ``state.dynamo``). A scan checks whole repositories: one
        range Query on the TagStatesByGroup index per first path segment, charged by the bytes it
        returns; a check or warm item names some tags of one repository: one BatchGetItem per 100."""
        keys = [(r.repository, r.tag) for r in results if r.repository and r.tag]
        if item.kind is WorkKind.SCAN:
            return self.state.repository_states(dict.fromkeys(repository for repository, _ in keys))
        return self.state.tag_states(keys, consistent=False)

    # -- work ----------------------------------------------------------------------------------------

    def _repair_then_check(
        self, item: WorkItem, now: datetime, time_left: Callable[[], float] | None
    ) -> list[TagResult]:
        """Repairs first (a repaired tag's result stands for it in this run); then the check."""
        rule = rule_for_repository(self.discovery.rules(), item.repository)
        repaired = self.repairer.sweep(item.repository, rule.prefix if rule else "")
        done = {r.tag for r in repaired}
        rest = [t for t in item.tags if t not in done]
        checked = self._check(item, rest, now, time_left) if rest or not item.tags else []
        return repaired + checked

    def _echoes(self, item: WorkItem, tags: list[str], now: datetime) -> tuple[list[str], list[TagResult]]:
        """For a check started by ECR's own event: the tags ptc-sync holds a lease on, refreshed
        within the cooldown or is backing off from are left out, with the reason; no upstream call."""
        if item.source != "ecr-event" or not tags:
            return tags, []
        held = {lease.tag for lease in self.journal.open_leases(item.repository)}
        states = self.state.tag_states((item.repository, tag) for tag in tags)
        keep, echoes = [], []
        for tag in tags:
            state = states.get((item.repository, tag))
            why = self._echo_reason(tag in held, state, now)
            if why:
                echoes.append(TagResult(item.repository, tag, "", Outcome.SKIPPED, reason=why))
            else:
                keep.append(tag)
        return keep, echoes

    def _echo_reason(self, held: bool, state: TagState | None, now: datetime) -> str:
        if held:
            return "ECR event from ptc-sync's own refresh (under way): not checked"
        if in_cooldown(state, now, timedelta(minutes=self.settings.refresh_cooldown_minutes)):
            return "ECR event from ptc-sync's own refresh (just done): not checked"
        if state is not None and backoff_until(state, state.failed_upstream, now, self._backoff_base):
            return "ECR event after ptc-sync's failed refresh (backing off): not checked"
        return ""

    @property
    def _backoff_base(self) -> timedelta:
        return timedelta(minutes=self.settings.schedule_minutes)

    def _check(
        self, item: WorkItem, tags: list[str], now: datetime, time_left: Callable[[], float] | None
    ) -> list[TagResult]:
        tags, echoes = self._echoes(item, tags, now)
        if item.tags and not tags:
            return echoes
        found = self.discovery.discover_repository(item.repository, tags)
        if found.gone is not None:  # permanent: retrying cannot help, report it
            reason = str(found.gone)
            return echoes + [
                TagResult(item.repository, tag, "", Outcome.SKIPPED, reason=reason) for tag in tags
            ]
        if found.errors and not (found.targets or found.skipped):
            raise RetryableError("; ".join(found.errors))
        return (
            echoes + list(found.skipped) + self._compare(item, found.targets, found.backups, now, time_left)
        )

    def _scan(
        self,
        item: WorkItem,
        now: datetime,
        time_left: Callable[[], float] | None,
        filtered: list[TagResult],
    ) -> list[TagResult]:
        """A scheduled scan: each named repository's tags in scope listed, what a killed refresh left
        undone repaired, the rest checked. Past MAX_SCAN_TARGETS tags the rest go on as check items
        of this run (the run expects them before they are sent), so no share is unbounded."""
        rules = self.discovery.rules()
        results: list[TagResult] = []
        targets: list[Target] = []
        backups: dict[tuple[str, str], list[BackupRecord]] = {}
        overflow: list[tuple[str, list[str]]] = []
        left_out = set(item.left_out)
        # one query for every refresh under way (the journal holds only those), not one per repository
        leases = self.journal.open_leases()
        for name in item.repositories:
            rule = rule_for_repository(rules, name)
            prefix = rule.prefix if rule else ""
            mine = [lease for lease in leases if lease.repository == name]
            found = self.discovery.discover_repository(name, scoped=True)
            if found.gone is not None:  # removed (or its rule) since the plan: nothing left to check
                results.extend(self.repairer.sweep(name, prefix, leases=mine) if mine else [])
                logger.info("scanned repository gone", extra={"repository": name, "reason": str(found.gone)})
                continue
            if found.errors and not found.targets:
                raise RetryableError("; ".join(found.errors))
            # discovery read the ledger if the repository holds any backup tag: an orphaned backup
            # image is one, and a pending record with no image behind it has nothing to settle
            records = [record for records in found.backups.values() for record in records]
            repaired = self.repairer.sweep(name, prefix, leases=mine, backups=None if mine else records)
            results.extend(repaired)
            filtered.extend(found.skipped)  # outside the scope's filters: counted in the log, not stored
            done = {r.tag for r in repaired} | left_out
            keep = [t for t in found.targets if t.cached.tag not in done]
            room = MAX_SCAN_TARGETS - len(targets)
            if self.queue is not None and len(keep) > room:
                overflow.append((name, [t.cached.tag for t in keep[room:]]))
                keep = keep[:room]
            targets.extend(keep)
            backups.update(found.backups)
        if filtered:
            logger.info(
                "tags outside the scope's filters", extra={"run_id": item.run_id, "tags": len(filtered)}
            )
        if overflow and self.queue is not None:
            self._split(item, overflow, self.queue)
        return results + self._compare(item, targets, backups, now, time_left)

    def _split(self, item: WorkItem, overflow: list[tuple[str, list[str]]], queue: WorkQueue) -> None:
        """Queue a scan's rest as check items. The run is told to expect them first (once per scan,
        however often the scan is retried), so it cannot complete before they are counted; a retry
        sends the same bodies, which idempotency processes once."""
        key = hashlib.sha256(item.model_dump_json().encode()).hexdigest()[:16]
        chunks = [
            (name, tuple(tags[start : start + self.settings.tags_per_message]))
            for name, tags in overflow
            for start in range(0, len(tags), self.settings.tags_per_message)
        ]
        parts = [
            WorkItem(
                run_id=item.run_id,
                kind=WorkKind.CHECK,
                repository=name,
                tags=tags,
                refresh=item.refresh,
                dry_run=item.dry_run,
                source=item.source,
                part=f"{key}:{index}",
            )
            for index, (name, tags) in enumerate(chunks)
        ]
        self.state.extend_run(item.run_id, len(parts), key)
        try:
            queue.send(parts)
        except QueueError as exc:
            raise RetryableError(str(exc)) from exc
        logger.info("scan split", extra={"run_id": item.run_id, "items": len(parts)})

    def _compare(
        self,
        item: WorkItem,
        targets: list[Target],
        backups: dict[tuple[str, str], list[BackupRecord]],
        now: datetime,
        time_left: Callable[[], float] | None,
    ) -> list[TagResult]:
        """Compare the targets; a stale one is refreshed unless its state holds it back. A tag's
        state is read (strongly) only when it is stale: an unchanged fleet reads none here."""
        cooldown = timedelta(minutes=self.settings.refresh_cooldown_minutes)

        def gate(target: Target, upstream: str) -> str:
            state = self.state.tag_state(target.cached.repository, target.cached.tag)
            if in_cooldown(state, now, cooldown):
                return (
                    f"refresh cooldown ({self.settings.refresh_cooldown_minutes} min since the last refresh)"
                )
            until = backoff_until(state, upstream, now, self._backoff_base)
            if until is not None and state is not None:
                return (
                    f"backing off after {state.refresh_failures} failed refresh"
                    f"{'es' if state.refresh_failures > 1 else ''} of this digest: next try after "
                    f"{until:%Y-%m-%d %H:%M}Z"
                )
            return ""

        if not targets:
            return []
        return self.comparer.check(
            targets,
            backups,
            dry_run=item.dry_run or not item.refresh or self.settings.dry_run,
            budget=StateBudget(self.state, self.registry, self.settings.rate_limit_reserve, now),
            time_left=time_left,
            refresh_gate=gate,
        )

    # -- state and summary ---------------------------------------------------------------------------

    def _record(
        self, result: TagResult, now: datetime, known: dict[tuple[str, str], TagState], *, scheduled: bool
    ) -> TagResult:
        """Fold the result into the tag's state (no write when it changes nothing) and return it as
        the state judges it (``state.judged``: news, recovered, first seen); ``known`` holds the
        states read for this item (a tag missing from it has none) and is kept current."""
        if not result.repository or not result.tag:
            return result
        key = (result.repository, result.tag)
        update = self.state.record_tag(result, now, previous=known.get(key))
        known[key] = update.current
        return judged(result, update, scheduled=scheduled)

    def summarise(self, run_id: str, *, dry_run: bool) -> str | None:
        """The run is complete: log, measure and publish it once (the caller won the race). Its
        counts are the run's counters; its results the stored ones (no plain fresh tag)."""
        progress = self.state.run_progress(run_id)
        report = RunReport(
            run_id=run_id,
            started_at=progress.started_at if progress else self.now(),
            finished_at=self.now(),
            dry_run=dry_run,
            results=tuple(self.state.run_results(run_id)),
            rate_limits=self.registry.rate_limits(),
            region=self.settings.region,
            account_id=self.settings.account_id,
            counts=dict(progress.counts) if progress else {},
        )
        if self.metrics_namespace is not None:
            emit_run_metrics(report, namespace=self.metrics_namespace)
        decision = decide_publish(report, notify_always=self.settings.notify_always)
        logger.info(
            "run complete",
            extra={
                "run_id": run_id,
                "tags": report.tags_checked,
                "publish": decision.publish,
                "kind": decision.kind.value,
                "why": decision.why,
            },
        )
        if self.notifier is None or not decision.publish:
            return None
        try:
            return self.notifier.publish(report, decision)
        except NotifyError as exc:
            logger.error("run report not published", extra={"run_id": run_id, "reason": str(exc)})
            return None


def log_results(results: Sequence[TagResult], run_id: str, dry_run: bool) -> None:
    """One structured line per non-fresh tag, as the checker records it."""
    moment = datetime.now(UTC)
    log_tag_outcomes(RunReport(run_id, moment, moment, dry_run, tuple(results)), logger)
