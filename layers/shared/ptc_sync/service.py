"""Use cases the Lambda handlers call: one function per handler, event in, summary out.

Just over 400 lines: the four handlers' strict input parsing (bounded, logged rejections) and their
Powertools wiring (batch processor, idempotency, metrics) sit beside the use case each serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from ptc_sync.checker import RetryableError
from ptc_sync.ecr import EcrError
from ptc_sync.events import ScheduledSyncEvent
from ptc_sync.metrics import emit_plan_metrics, emit_run_metrics
from ptc_sync.models import RunReport
from ptc_sync.notify import NotifyError
from ptc_sync.ondemand import EcrPullThroughCacheEvent, parse_request_event
from ptc_sync.planner import Plan, Planner
from ptc_sync.queue import QueueError
from ptc_sync.refresh import is_backup_tag
from ptc_sync.state import StateError
from ptc_sync.wiring import App, get_app
from ptc_sync.work import WorkItem, WorkKind

logger = Logger(child=True)
tracer = Tracer()


MAX_PROBLEMS = 10  # a reason names this many problems at most (a huge array has one per element)
MAX_MESSAGE = 200  # characters of one problem's message
_NAMEABLE_KEY: Final = re.compile(r"[\x21-\x7e]{1,64}")  # visible ASCII, short: a key the input made up


def _loc_part(part: str | int) -> str:
    """One step of a problem's location: an index, a field name, or an unknown key the input chose,
    which is quoted only when it is short visible ASCII (never 300,000 characters, a NUL or a bidi
    override in a log line)."""
    text = str(part)
    return text if _NAMEABLE_KEY.fullmatch(text) else f"<a {len(text)}-character key>"


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem; input values are left out (they may hold anything)."""
    errors = exc.errors()
    parts = []
    for err in errors[:MAX_PROBLEMS]:
        loc = ".".join(_loc_part(p) for p in err["loc"]) or "event"
        parts.append(f"{loc}: {err['msg'][:MAX_MESSAGE]}")
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problems")
    return "; ".join(parts)


class RejectedInput(ValueError):
    """Input that no retry can make valid: ``reason`` says why (it never quotes the input)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- work items, parsed strictly ---------------------------------------------------------------------

# the kinds the checker acts on: Checker.process checks whatever is not WARM, so a kind added to
# WorkKind without a branch of its own would become a refreshing check; it is refused here instead
CHECKER_KINDS: Final = frozenset({WorkKind.CHECK, WorkKind.SCAN, WorkKind.WARM})
MAX_MESSAGE_ID: Final = 128  # SQS message ids are UUIDs; the id is what a batch item failure names
_KEY_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: an object naming a key twice is refused (JSON parsers disagree on
    which value wins; ``"dry_run": true, "dry_run": false`` must not mean a real refresh)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_work_item(body: object) -> WorkItem:
    """One SQS body as a WorkItem, strictly: JSON text, no key named twice at any depth, every field
    valid (``WorkItem``), a kind the checker handles. RejectedInput with the reason otherwise."""
    if not isinstance(body, str):
        raise RejectedInput(f"body: not a string ({type(body).__name__})")
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        key = repr(exc.key) if _KEY_NAME.fullmatch(exc.key) else "a key"
        raise RejectedInput(f"body: {key} appears twice in one object (each field is named once)") from None
    except json.JSONDecodeError as exc:
        raise RejectedInput(f"event: Invalid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        raise RejectedInput("event: Invalid JSON (nested too deeply)") from None
    except ValueError:  # e.g. an integer literal longer than Python converts
        raise RejectedInput("event: Invalid JSON (a value Python does not read)") from None
    try:
        # strict: ``"dry_run": "no"`` or ``"v": "1"`` is a wrong type, not a word pydantic may read
        item = WorkItem.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise RejectedInput(describe_validation_error(exc)) from None
    if item.kind not in CHECKER_KINDS:
        raise RejectedInput(f"kind: {item.kind.value!r} is not a kind of work the checker does")
    if item.discovery is not None:
        raise RejectedInput(
            "discovery: work items carry no discovery (the planner discovers, then queues tags)"
        )
    return item


class Rejection(BaseModel):
    """A body ``parse_work_item`` refused: logged and dropped, never retried (no retry can fix it)."""

    reason: str


def _parsed_body(body: object) -> WorkItem | Rejection:
    try:
        return parse_work_item(body)
    except RejectedInput as exc:
        return Rejection(reason=exc.reason)


class WorkRecord(BaseModel):
    """An SQS record as the batch processor hands it to the checker: its body parsed once, strictly
    (``parse_work_item``), into the WorkItem or the reason it was refused."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)

    messageId: str
    body: Annotated[WorkItem | Rejection, BeforeValidator(_parsed_body)]
    raw_body: str = ""

    @model_validator(mode="before")
    @classmethod
    def _keep_the_text(cls, data: Any) -> Any:
        """The body's text too: the idempotency key is its hash."""
        return {**data, "raw_body": data.get("body")} if isinstance(data, Mapping) else data


def sqs_record_problem(record: object) -> str | None:
    """Why a ``Records`` entry is not an SQS record the checker can process or retry (None: it is)."""
    if not isinstance(record, Mapping):
        return f"not an object ({type(record).__name__})"
    message_id = record.get("messageId")
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID:
        return "messageId: missing, not a string or longer than an SQS message id"
    if "body" not in record:
        return "body: missing"
    if not isinstance(record["body"], str):
        return f"body: not a string ({type(record['body']).__name__})"
    return None


def reject_non_object(raw_event: object) -> dict[str, Any]:
    """The rejection of an event that is not a JSON object (a manual invoke can send any JSON)."""
    reason = f"event: not a JSON object ({type(raw_event).__name__})"
    logger.error("event rejected", extra={"reason": reason})
    return {"status": "rejected", "reason": reason}


# -- the fan-out: planner, checker, event-started runs ---------------------------------------------


def _report_problems(app: App, run_id: str, errors: list[str], *, dry_run: bool) -> str | None:
    """Publish what went wrong while planning (a report with run errors and no tags)."""
    now = app.now()
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
        "repositories": plan.scanned,
        "tags": plan.named_tags,
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
    emit_plan_metrics(repositories=plan.scanned, work_items=len(plan.items), namespace=app.metrics_namespace)
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
    # a behaviour the refresh relies on failed this account's selftest: the run reports only, and says why
    held = "" if dry else app.report_only_reason()
    dry = dry or bool(held)
    plan = planner.plan(dry_run=dry)
    logger.append_keys(run_id=plan.run_id)  # removed by the handler's inject_lambda_context(clear_state)
    tracer.put_annotation(key="run_id", value=plan.run_id)
    if held:
        plan.errors.insert(0, held)
    summary = _send(app, planner, plan, dry_run=dry)
    if not plan.expected:
        # nothing to check: no checker will complete (and measure) this run, so the planner does,
        # or the heartbeat alarm would call a working stack over an empty fleet broken
        now = app.now()
        report = RunReport(plan.run_id, now, now, dry, (), errors=tuple(plan.errors))
        emit_run_metrics(report, namespace=app.metrics_namespace)
    return summary


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
    if isinstance(event, EcrPullThroughCacheEvent) and is_backup_tag(event.detail.image_tag):
        # ptc-sync's own backups are written with PutImage, never pulled through the cache: an event
        # naming one is not news of an upstream tag, and pre-warming the name would ask upstream for it
        reason = "detail.image-tag: a ptc-sync backup tag, never checked or pre-warmed"
        logger.error("event rejected", extra={"reason": reason, "repository": event.detail.repository_name})
        return {"status": "rejected", "reason": reason}
    app = get_app()
    planner = app.planner()
    requests = app.request_planner()
    if isinstance(event, EcrPullThroughCacheEvent):
        plan, dry = requests.from_ecr_event(event), False
    else:
        plan, dry = requests.from_request_event(event).plan, event.detail.dry_run

    logger.append_keys(run_id=plan.run_id)
    tracer.put_annotation(key="run_id", value=plan.run_id)
    try:
        # a redelivered event (same id) queues nothing twice; with the Lambda context, an invocation
        # that timed out leaves an in-progress record that expires with it, not after an hour
        if context is not None:
            _REQUEST_IDEMPOTENCY.register_lambda_context(context)
        once = _once(app, "request")
        return dict(
            once(event={"id": event.id, "source": event.source}, app=app, planner=planner, plan=plan, dry=dry)
        )
    finally:
        logger.remove_keys(["run_id"])


def _enqueue(event: dict[str, Any], *, app: App, planner: Planner, plan: Plan, dry: bool) -> dict[str, Any]:
    return _send(app, planner, plan, dry_run=dry)


def _check(
    record: dict[str, Any], *, item: WorkItem, app: App, time_left: Callable[[], float]
) -> dict[str, Any]:
    outcome = app.checker().process(item, batch_id=record["messageId"], time_left=time_left)
    return {"results": len(outcome.results), "completed_run": outcome.completed_run}


# Idempotency configured once per container (Powertools' idiom): the configs here, the wrapped
# functions built lazily for the container's App (``_once``); each invocation only registers its
# Lambda context, so an in-progress record expires with the invocation that wrote it.
_REQUEST_IDEMPOTENCY: Final = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=3600)
_CHECK_IDEMPOTENCY: Final = IdempotencyConfig(event_key_jmespath="body", expires_after_seconds=6 * 3600)
_wrapped: dict[str, tuple[App, Callable[..., Any]]] = {}


def _once(app: App, kind: str) -> Callable[..., Any]:
    """The idempotent request or check function of this container's App (built on first use)."""
    built = _wrapped.get(kind)
    if built is None or built[0] is not app:
        function, argument, config = (
            (_enqueue, "event", _REQUEST_IDEMPOTENCY)
            if kind == "request"
            else (_check, "record", _CHECK_IDEMPOTENCY)
        )
        wrapped = idempotent_function(
            data_keyword_argument=argument, persistence_store=app.idempotency(), config=config
        )(function)
        built = _wrapped[kind] = (app, wrapped)
    return built[1]


def process_work_batch(raw_event: object, context: LambdaContext) -> dict[str, Any]:
    """The checker function: each SQS record is one work item. A record that cannot be processed
    now (throttling, a state-table error) is reported as a batch item failure and retried, then
    dead-lettered; a malformed record is logged with the reason and dropped (retrying cannot fix it),
    and the batch's other records are processed. A work item is parsed strictly (``parse_work_item``)
    and its run must exist before anything is touched."""
    if not isinstance(raw_event, Mapping) or not isinstance(raw_event.get("Records"), list):
        reason = "event: not an SQS event (no Records list)"
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason, "batchItemFailures": []}
    records = _well_formed_records(raw_event["Records"])
    if not records:
        return {"batchItemFailures": []}
    app = get_app()
    state, _queue = app.fanout()
    _CHECK_IDEMPOTENCY.register_lambda_context(context)
    once = _once(app, "check")
    time_left = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731

    def reject(record: WorkRecord, reason: str) -> dict[str, Any]:
        logger.error("work item rejected", extra={"message_id": record.messageId, "reason": reason})
        return {"rejected": reason}

    def record_handler(record: WorkRecord) -> dict[str, Any]:
        item = record.body
        if isinstance(item, Rejection):
            return reject(record, item.reason)
        logger.append_keys(run_id=item.run_id)  # every line of this item's work names its run
        tracer.put_annotation(key="run_id", value=item.run_id)
        try:
            # the planner and the request function create the run before they queue its items: an
            # item of no run is forged or outlived its run, and nothing of it may happen
            if state.run_progress(item.run_id) is None:
                return reject(
                    record, f"run_id: no run {item.run_id} in the state table (never started or expired)"
                )
            body = {"body": record.raw_body, "messageId": record.messageId}
            return dict(once(record=body, item=item, app=app, time_left=time_left))
        except (RetryableError, StateError, EcrError) as exc:
            logger.warning(
                "work item will be retried", extra={"message_id": record.messageId, "reason": str(exc)}
            )
            raise
        except Exception as exc:
            # anything else (the idempotency store refusing, a bug) is retried too: never silently
            logger.exception(
                "work item failed and will be retried",
                extra={"message_id": record.messageId, "reason": f"{type(exc).__name__}: {exc}"},
            )
            raise
        finally:
            logger.remove_keys(["run_id"])  # a warm container's next item must not carry this run

    processor = BatchProcessor(event_type=EventType.SQS, model=WorkRecord)  # type: ignore[arg-type]
    return dict(
        process_partial_response(
            event={**raw_event, "Records": records},
            record_handler=record_handler,
            processor=processor,
            context=context,
        )
    )


def _well_formed_records(records: list[Any]) -> list[Mapping[str, Any]]:
    """The records the batch processor can process and retry; the others are logged and dropped (a
    record with no message id cannot be named in a batch item failure, so it could only fail the
    whole batch, every good record with it)."""
    good: list[Mapping[str, Any]] = []
    bad = 0
    for index, record in enumerate(records):
        problem = sqs_record_problem(record)
        if problem is None:
            good.append(record)
            continue
        bad += 1
        if bad <= MAX_PROBLEMS:
            reason = f"Records[{index}]: {problem}"
            logger.error("work item rejected", extra={"reason": reason})
    if bad > MAX_PROBLEMS:
        logger.error(
            "work items rejected", extra={"reason": f"and {bad - MAX_PROBLEMS} more malformed records"}
        )
    return good
