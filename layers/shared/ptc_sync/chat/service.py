"""The chat notifier function's use case: one SNS event from the report topic → every chat webhook.

An event that is not an SNS event is logged and rejected without raising (a retry cannot fix it).
The event is validated in one pass, each record's message read as a run report with it
(``model.ReportEventModel``); a message that is not one is skipped and logged, not rejected. SNS
invokes the function with exactly one record: only the first record is delivered, and only when it
comes from the stack's report topic; any other record is refused and logged, never posted.
When any channel fails, ``ChatDeliveryError`` is raised after every record and channel was tried,
so Lambda's asynchronous retries and on-failure destination take over (``notifier`` explains how a
retry avoids posting twice to channels that already took the message).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import parse
from pydantic import ValidationError

from ptc_sync.chat.model import ReportEventModel
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
        event = parse(event=dict(raw_event), model=ReportEventModel)
    except ValidationError as exc:
        reason = _describe(exc)
        logger.error("event rejected", extra={"reason": reason})
        return {"status": "rejected", "reason": reason}
    notifier = get_notifier()
    messages: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    failures: list[Delivery] = []
    for index, record in enumerate(event.Records):
        sns = record.Sns
        refusal: str | None = (
            f"record {index + 1} of {len(event.Records)}: SNS delivers one record per invocation"
            if index
            else notifier.refusal(sns.TopicArn)
        )
        message_id = sns.MessageId[:100]
        if refusal is not None:
            logger.error("record refused", extra={"message_id": message_id, "reason": refusal})
            refused.append({"message_id": message_id, "status": "refused", "reason": refusal})
            continue
        summary, failed = notifier.deliver(message_id, sns.Message)
        messages.append(summary)
        failures.extend(failed)
    if failures:
        raise ChatDeliveryError(failures)
    if refused and not messages:
        return {"status": "rejected", "reason": refused[0]["reason"], "refused": refused}
    result: dict[str, Any] = {"status": "ok", "messages": messages}
    if refused:
        result["refused"] = refused
    return result


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
