"""Event-started runs: ECR `Pull Through Cache Action` events and on-demand `Sync Request` events
(source `ptc-sync`) become work items for the checker."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ptc_sync.logs import service_logger
from ptc_sync.service import handle_request_event

logger = service_logger()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_request_event(event, context)
