"""Chat notifier: each report-topic message → Slack, Microsoft Teams, Discord and Google Chat webhooks."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ptc_sync.chat.service import deliver_sns_event
from ptc_sync.logs import service_logger

logger = service_logger()
tracer = Tracer()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return deliver_sns_event(event)
