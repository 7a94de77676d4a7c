"""Scheduled sync: EventBridge Scheduler → one full check (and refresh) of every cached tag."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ptc_sync.service import run_scheduled_sync

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_scheduled_sync(
        event,
        invoked_function_arn=context.invoked_function_arn,
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
