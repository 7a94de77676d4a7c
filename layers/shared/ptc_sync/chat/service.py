"""The chat notifier function's use case: one SNS event from the report topic → every chat webhook.

An event that is not an SNS event is logged and rejected without raising (a retry cannot fix it).
When any channel fails, ``ChatDeliveryError`` is raised after every record and channel was tried,
so Lambda's asynchronous retries and on-failure destination take over (``notifier`` explains how a
retry avoids posting twice to channels that already took the message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import SnsModel
from pydantic import ValidationError

from ptc_sync.chat.notifier import ChatDeliveryError
from ptc_sync.chat.poster import Delivery
from ptc_sync.chat.wiring import get_notifier

logger = Logger(child=True)
MAX_PROBLEMS = 10  # a rejection names this many problems at most


def deliver_sns_event(raw_event: object) -> dict[str, Any]:
    """Deliver every record of an SNS → Lambda event; raise ChatDeliveryError after all of them if
    any channel failed."""
    if not isinstance(raw_event, Mapping):
        reason = f"event: not a JSON object ({type(raw_event).__name__})"
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason}
    try:
        event = parse(event=dict(raw_event), model=SnsModel)
    except ValidationError as exc:
        reason = _describe(exc)
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason}
    notifier = get_notifier()
    messages = []
    failures: list[Delivery] = []
    for record in event.Records:
        summary, failed = notifier.deliver(record.Sns.MessageId, str(record.Sns.Message))
        messages.append(summary)
        failures.extend(failed)
    if failures:
        raise ChatDeliveryError(failures)
    return {"status": "ok", "messages": messages}


def _describe(exc: ValidationError) -> str:
    """``field: message`` per problem, input values left out (as ``ptc_sync.service`` does for the sync,
    whose module is not imported here: it would load the whole sync at cold start)."""
    errors = exc.errors()
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}" for err in errors[:MAX_PROBLEMS]
    ]
    if len(errors) > MAX_PROBLEMS:  # a huge array has one problem per element
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more problems")
    return "; ".join(parts)
