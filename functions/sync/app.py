"""Scheduled sync (the planner): EventBridge Scheduler → every cached tag in scope becomes work
items on the queue; the checker function compares and refreshes them and reports the run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ptc_sync.logs import service_logger
from ptc_sync.service import plan_scheduled_run

logger = service_logger()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return plan_scheduled_run(event)
