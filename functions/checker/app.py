"""Checker: SQS work items (a cached repository and tags each) → compare, refresh, pre-warm; the
batch reports partial failures so only failed records are retried (then dead-lettered)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ptc_sync.logs import service_logger
from ptc_sync.service import process_work_batch

logger = service_logger()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_work_batch(event, context)
