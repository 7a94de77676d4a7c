"""One sync run in this process, the way the stack runs it: the CLI's ``status``, ``check`` and
``refresh``, the benches and the property tests use it, so there is one way to run a sync.

The planner plans the scan items (no pre-warm: a local run checks what is cached), an in-memory
queue holds them and the checker processes each in turn, with everything a scheduled run has: the
repairs of a killed refresh, the pull budget, the cooldown and the backoff read from the tag
states, alert-once, the scan split past ``MAX_SCAN_TARGETS`` tags. The state is the stack's table
for a run that may refresh (it is then one of the stack's runs, listed by ``ptc-sync runs``), and
``MemoryStateStore`` otherwise: a dry run must not fold "stale (dry run)" into a tag's state, or
the next scheduled run would not alert on it. The run's report is built here, not published: the
checker gets no notifier and emits no metrics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ptc_sync.models import RunReport, TagResult
from ptc_sync.state import MemoryStateStore, StateStore
from ptc_sync.state_budget import RetryableError
from ptc_sync.work import WorkItem

if TYPE_CHECKING:
    from ptc_sync.sync import UpstreamResolver
    from ptc_sync.wiring import App


class LocalQueue:
    """The work queue in memory (``WorkQueue``): what the planner and a splitting scan send."""

    def __init__(self) -> None:
        self.items: deque[WorkItem] = deque()

    def send(self, items: Sequence[WorkItem]) -> int:
        self.items.extend(items)
        return len(items)


def run_locally(
    app: App,
    *,
    dry_run: bool | None = None,
    resolver: UpstreamResolver | None = None,
    state: StateStore | None = None,
    run_id: str | None = None,
    time_left: Callable[[], float] | None = None,
) -> RunReport:
    """Plan, check every item, report: every tag's result (fresh ones too), in plan order.

    ``resolver`` wraps the app's (the CLI's progress line); ``state`` overrides the choice above.
    An item the stack would retry (``RetryableError``: ECR throttled, …) is an error of the report."""
    started = app.now()
    dry = app.settings.dry_run if dry_run is None else dry_run
    store: StateStore = state or (
        app.state if app.state is not None and not dry else MemoryStateStore(app.now)
    )
    queue = LocalQueue()
    planner = app.planner(state=store, queue=queue)
    checker = app.checker(state=store, queue=queue, resolver=resolver, local=True)
    plan = planner.plan(dry_run=dry, run_id=run_id, prewarm=False)
    results: list[TagResult] = list(plan.skipped)
    errors = list(plan.errors)
    planner.send(plan)
    while queue.items:
        item = queue.items.popleft()
        try:
            outcome = checker.process(item, time_left=time_left)
        except RetryableError as exc:
            errors.append(f"{item.repository}: {exc}")
            continue
        results.extend(outcome.results)
        results.extend(outcome.filtered)
    return RunReport(
        run_id=plan.run_id,
        started_at=started,
        finished_at=app.now(),
        dry_run=dry,
        results=tuple(results),
        rate_limits=(resolver or app.resolver).rate_limits(),
        errors=tuple(errors),
        region=app.settings.region,
        account_id=app.settings.account_id,
    )
