"""Use cases the Lambda handlers call: one function per handler, event in, summary out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from pydantic import ValidationError

from ptc_sync.events import ScheduledSyncEvent
from ptc_sync.metrics import emit_run_metrics, log_tag_outcomes
from ptc_sync.models import Outcome, RunReport
from ptc_sync.notify import NotifyError
from ptc_sync.wiring import get_app

logger = Logger(child=True)


def describe_validation_error(exc: ValidationError) -> str:
    """``field: message`` for each problem; input values are left out (they may hold anything)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "event"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def account_from_arn(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[4].isdigit() else ""


def summarize(report: RunReport) -> dict[str, Any]:
    counts = {o.value: report.count(o) for o in Outcome if report.count(o)}
    return {
        "status": "ok" if not report.errors else "errors",
        "run_id": report.run_id,
        "dry_run": report.dry_run,
        "counts": counts,
        "errors": list(report.errors),
    }


def run_scheduled_sync(
    raw_event: Mapping[str, Any],
    *,
    invoked_function_arn: str = "",
    time_left: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Parse the scheduler's event, run one sync, log/measure/publish the result.

    A malformed event is rejected with a precise message and no work is done; it is not raised,
    so nothing retries it.
    """
    try:
        request = parse(event=dict(raw_event), model=ScheduledSyncEvent)
    except ValidationError as exc:
        reason = describe_validation_error(exc)
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason}

    app = get_app()
    report = app.engine.run(dry_run=request.dry_run, time_left=time_left)
    account = account_from_arn(invoked_function_arn)
    if account and not report.account_id:
        report = dataclasses.replace(report, account_id=account)
    log_tag_outcomes(report, logger)
    emit_run_metrics(report, namespace=app.metrics_namespace)
    summary = summarize(report)
    if app.notifier is not None:
        try:
            summary["message_id"] = app.notifier.publish(report)
        except NotifyError as exc:
            logger.error("run report not published", extra={"reason": str(exc)})
            summary["status"] = "notify_failed"
            summary["errors"].append(str(exc))
    logger.info("run finished", extra={k: v for k, v in summary.items() if k != "errors"})
    return summary
