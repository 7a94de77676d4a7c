"""Publishing the per-run report to SNS (chat via AWS Chatbot, email, queues, webhooks).

One publish with ``MessageStructure=json``: the ``default`` entry is the Chatbot custom notification,
which Chatbot, the chat notifier's Lambda subscription, queues and HTTPS endpoints receive; the
``email`` entry is its plain-text rendering, so email subscribers read text instead of raw JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.models import RunReport
from ptc_sync.report import (
    MAX_LINES_PER_SECTION,
    MessageAttribute,
    PublishDecision,
    build_notification,
    decide_publish,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef


class Notifier(Protocol):
    def publish(self, report: RunReport, decision: PublishDecision | None = None) -> str | None:
        """Publish the run's report; the message id, or None when ``decision`` (``report.decide_publish``,
        asked here when the caller did not) says the run is not worth a message."""
        ...


class NotifyError(RuntimeError):
    """Publishing failed; names the topic and the error code so the operator can act on it."""

    def __init__(self, topic_arn: str, error_code: str, detail: str) -> None:
        super().__init__(f"publishing the run report to {topic_arn} failed: {error_code}: {detail}")
        self.topic_arn = topic_arn
        self.error_code = error_code


class SnsNotifier:
    def __init__(
        self,
        client: SNSClient,
        topic_arn: str,
        *,
        always: bool = False,
        max_lines_per_section: int = MAX_LINES_PER_SECTION,
    ) -> None:
        self._client = client
        self._topic_arn = topic_arn
        self._always = always
        self._max_lines_per_section = max_lines_per_section

    def publish(self, report: RunReport, decision: PublishDecision | None = None) -> str | None:
        decision = decision or decide_publish(report, notify_always=self._always)
        if not decision.publish:
            return None
        notification = build_notification(
            report, max_lines_per_section=self._max_lines_per_section, kind=decision.kind
        )
        try:
            response = self._client.publish(
                TopicArn=self._topic_arn,
                Message=notification.sns_message(),
                MessageStructure="json",
                Subject=notification.subject,
                MessageAttributes=_sns_attributes(notification.attributes),
            )
        except ClientError as error:
            details = error.response.get("Error", {})
            raise NotifyError(
                self._topic_arn, details.get("Code", "Unknown"), details.get("Message", str(error))
            ) from error
        except BotoCoreError as error:  # no response at all: endpoint, credentials, timeouts
            raise NotifyError(self._topic_arn, type(error).__name__, str(error)) from error
        return response["MessageId"]


def _sns_attributes(attributes: Mapping[str, MessageAttribute]) -> dict[str, MessageAttributeValueTypeDef]:
    return {
        name: {"DataType": attribute.data_type, "StringValue": attribute.value}
        for name, attribute in attributes.items()
    }
