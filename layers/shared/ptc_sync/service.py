"""Use cases the Lambda handlers call: one function per handler, event in, summary out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from ptc_sync.checker import RetryableError
from ptc_sync.ecr import EcrError
from ptc_sync.events import ScheduledSyncEvent
from ptc_sync.models import RunReport
from ptc_sync.notify import NotifyError
from ptc_sync.ondemand import EcrPullThroughCacheEvent, RequestPlanner, parse_request_event
from ptc_sync.planner import Plan, Planner
from ptc_sync.queue import QueueError
from ptc_sync.state import StateError
from ptc_sync.wiring import App, get_app
from ptc_sync.work import WorkItem

logger = Logger(child=True)


MAX_PROBLEMS = 10  # a reason names this many problems at most (a huge array has one per element)


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem; input values are left out (they may hold anything)."""
    errors = exc.errors()
    parts = []
    for err in errors[:MAX_PROBLEMS]:
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{loc}: {err['msg']}")
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problems")
    return "; ".join(parts)


def reject_non_object(raw_event: object) -> dict[str, Any]:
    """The rejection of an event that is not a JSON object (a manual invoke can send any JSON)."""
    reason = f"event: not a JSON object ({type(raw_event).__name__})"
    logger.error("event rejected", extra={"reason": reason})
    return {"status": "rejected", "reason": reason}


# -- the fan-out: planner, checker, event-started runs ---------------------------------------------


def _report_problems(app: App, run_id: str, errors: list[str], *, dry_run: bool) -> str | None:
    """Publish what went wrong while planning (a report with run errors and no tags)."""
    now = app.engine.now()
    report = RunReport(
        run_id,
        now,
        now,
        dry_run,
        (),
        errors=tuple(errors),
        region=app.settings.region,
        account_id=app.settings.account_id,
    )
    if app.notifier is None:
        return None
    try:
        return app.notifier.publish(report)
    except NotifyError as exc:
        logger.error("planning problems not published", extra={"run_id": run_id, "reason": str(exc)})
        return None


def _send(app: App, planner: Planner, plan: Plan, *, dry_run: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": "planned",
        "run_id": plan.run_id,
        "dry_run": dry_run,
        "messages": len(plan.items),
        "tags": plan.expected,
        "skipped": len(plan.skipped),
        "errors": list(plan.errors),
    }
    try:
        planner.send(plan)
    except (StateError, QueueError) as exc:
        summary["status"] = "failed"
        summary["errors"].append(str(exc))
        logger.error("run not queued", extra={"run_id": plan.run_id, "reason": str(exc)})
        _report_problems(app, plan.run_id, summary["errors"], dry_run=dry_run)
        raise
    if plan.errors:
        logger.warning("planning problems", extra={"run_id": plan.run_id, "errors": plan.errors})
        _report_problems(app, plan.run_id, plan.errors, dry_run=dry_run)
    planned = EphemeralMetrics(namespace=app.metrics_namespace)
    planned.add_metric(name="TagsQueued", unit=MetricUnit.Count, value=plan.expected)
    planned.add_metric(name="WorkItemsQueued", unit=MetricUnit.Count, value=len(plan.items))
    planned.flush_metrics()
    logger.info("run planned", extra={k: v for k, v in summary.items() if k != "errors"})
    return summary


def plan_scheduled_run(raw_event: object) -> dict[str, Any]:
    """The planner function: discover, queue work items, create the run (its summary comes later,
    from the checker that records the run's last result)."""
    if not isinstance(raw_event, Mapping):
        return reject_non_object(raw_event)
    try:
        request = parse(event=dict(raw_event), model=ScheduledSyncEvent)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason}
    app = get_app()
    planner = app.planner()
    dry = app.settings.dry_run if request.dry_run is None else request.dry_run
    plan = planner.plan(dry_run=dry)
    return _send(app, planner, plan, dry_run=dry)


def handle_request_event(raw_event: object, context: LambdaContext | None = None) -> dict[str, Any]:
    """ECR ``Pull Through Cache Action`` events and on-demand ``Sync Request`` events → a run."""
    if not isinstance(raw_event, Mapping):
        return reject_non_object(raw_event)
    try:
        event = parse_request_event(dict(raw_event))
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        logger.error("event rejected", extra={"reason": reason, "source": str(raw_event.get("source"))[:64]})
        return {"status": "rejected", "reason": reason}
    app = get_app()
    planner = app.planner()
    requests = RequestPlanner(planner)
    if isinstance(event, EcrPullThroughCacheEvent):
        plan, dry = requests.from_ecr_event(event), False
    else:
        plan, dry = requests.from_request_event(event).plan, event.detail.dry_run

    def enqueue(event: dict[str, Any]) -> dict[str, Any]:
        return _send(app, planner, plan, dry_run=dry)

    # a redelivered event (same id) queues nothing twice; with the Lambda context, an invocation
    # that timed out leaves an in-progress record that expires with it, not after an hour
    config = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=3600)
    if context is not None:
        config.register_lambda_context(context)
    once = idempotent_function(
        data_keyword_argument="event",
        persistence_store=app.idempotency(),
        config=config,
    )(enqueue)
    return dict(once(event={"id": event.id, "source": event.source}))


def process_work_batch(raw_event: object, context: LambdaContext) -> dict[str, Any]:
    """The checker function: each SQS record is one work item. A record that cannot be processed
    now (throttling, a state-table error) is reported as a batch item failure and retried, then
    dead-lettered; a malformed record is logged with the reason and dropped (retrying cannot fix it)."""
    if not isinstance(raw_event, Mapping) or not isinstance(raw_event.get("Records"), list):
        reason = "event: not an SQS event (no Records list)"
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason, "batchItemFailures": []}
    app = get_app()
    checker = app.checker()
    config = IdempotencyConfig(event_key_jmespath="body", expires_after_seconds=6 * 3600)
    config.register_lambda_context(context)
    time_left = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731

    def handle(record: dict[str, Any]) -> dict[str, Any]:
        item = WorkItem.model_validate_json(record["body"])
        outcome = checker.process(item, batch_id=record["messageId"], time_left=time_left)
        return {"results": len(outcome.results), "completed_run": outcome.completed_run}

    once = idempotent_function(
        data_keyword_argument="record", persistence_store=app.idempotency(), config=config
    )(handle)

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        try:
            WorkItem.model_validate_json(record.body)
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            logger.error("work item rejected", extra={"message_id": record.message_id, "reason": reason})
            return {"rejected": reason}
        try:
            return dict(once(record={"body": record.body, "messageId": record.message_id}))
        except (RetryableError, StateError, EcrError) as exc:
            logger.warning(
                "work item will be retried", extra={"message_id": record.message_id, "reason": str(exc)}
            )
            raise
        except Exception as exc:
            # anything else (the idempotency store refusing, a bug) is retried too: never silently
            logger.exception(
                "work item failed and will be retried",
                extra={"message_id": record.message_id, "reason": f"{type(exc).__name__}: {exc}"},
            )
            raise

    processor = BatchProcessor(event_type=EventType.SQS)
    return dict(
        process_partial_response(
            event=dict(raw_event), record_handler=record_handler, processor=processor, context=context
        )
    )
