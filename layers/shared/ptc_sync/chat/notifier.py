"""Delivering one run report to every configured chat channel, and what happens when one fails.

Failure handling, kept simple:

- Every channel is attempted (each with its own bounded retries, ``poster``) before anything is
  raised. Each failure is logged with the channel and the reason (status or error, never the URL) and
  counted in the ``ChatDeliveryFailed`` metric with dimension ``Channel`` (``config`` for an unreadable
  secret or unknown keys in it).
- Then, if any channel failed, ``ChatDeliveryError`` is raised (``service``): SNS invokes Lambda
  asynchronously, so Lambda retries the event (twice by default) and finally hands it to the
  on-failure destination. Nothing is lost silently.
- Channels that already took a message are remembered per container (SNS message id and channel), so
  a retry reaching the same warm container posts only to the channels that failed. A retry landing
  on a fresh container posts to all of them again: a duplicate, never a loss.
- A message that is not a ptc-sync run report (another publisher on the topic) is logged and
  skipped, not raised: retrying cannot make it one.
- Only the stack's report topic is accepted: a record whose ``TopicArn`` is another topic (another
  topic subscribed to the function, or a direct invoke with a forged event) is refused and logged,
  never posted (``refusal``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from ptc_sync.chat.model import ChatReport, NotAReport, ReportMessage, chat_report
from ptc_sync.chat.payloads import build_payload
from ptc_sync.chat.poster import Delivery
from ptc_sync.chat.text import PayloadTooLargeError
from ptc_sync.chat.webhooks import CONFIG_CHANNEL, Webhook, WebhookConfig, WebhookConfigError

logger = Logger(child=True)

FAILURE_METRIC: Final = "ChatDeliveryFailed"
CHANNEL_DIMENSION: Final = "Channel"


class ChatDeliveryError(RuntimeError):
    """At least one channel did not take the message; names each channel and reason (no URLs)."""

    def __init__(self, failures: Sequence[Delivery]) -> None:
        details = "; ".join(f"{failure.channel}: {failure.reason}" for failure in failures)
        super().__init__(f"chat delivery failed for {len(failures)} channel(s): {details}")
        self.failures = tuple(failures)


class WebhookSource(Protocol):
    def load(self) -> WebhookConfig: ...


class Poster(Protocol):
    def post(self, webhook: Webhook, payload: Mapping[str, Any]) -> Delivery: ...


class DeliveredLog:
    """The (SNS message id, channel) pairs delivered by this container, the most recent ``size``."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)


class ChatNotifier:
    def __init__(
        self,
        webhooks: WebhookSource,
        poster: Poster,
        *,
        dashboard_url: str | None = None,
        metrics_namespace: str | None = None,
        delivered: DeliveredLog | None = None,
        report_topic_arn: str | None = None,
    ) -> None:
        """``report_topic_arn``: the only topic whose messages are posted. None (only code can say
        so: ``load_chat_settings`` requires ``PTC_TOPIC_ARN``) leaves the topic unchecked."""
        self._report_topic_arn = report_topic_arn
        self._webhooks = webhooks
        self._poster = poster
        self._dashboard_url = dashboard_url
        self._namespace = metrics_namespace
        self._delivered = delivered or DeliveredLog()

    def refusal(self, topic_arn: str) -> str | None:
        """Why a message published to ``topic_arn`` is not posted (None: it is the report topic)."""
        if self._report_topic_arn is None or topic_arn == self._report_topic_arn:
            return None
        return f"TopicArn {topic_arn[:300]!r} is not the stack's report topic"

    def deliver(
        self, message_id: str, message: ReportMessage | NotAReport
    ) -> tuple[dict[str, Any], list[Delivery]]:
        """Post one SNS message (as ``model.ReportEventModel`` read it) to every configured channel: its
        summary, and the failed deliveries (already logged and counted)."""
        if isinstance(message, NotAReport):
            logger.warning(
                "not a ptc-sync run report, skipped",
                extra={"message_id": message_id, "reason": message.reason},
            )
            return {"message_id": message_id, "status": "skipped", "reason": message.reason}, []
        report = chat_report(message, dashboard_url=self._dashboard_url)
        deliveries = self._deliver(message_id, report)
        failures = [delivery for delivery in deliveries if not delivery.delivered]
        for delivery in deliveries:
            fields = {
                "message_id": message_id,
                "run_id": report.run_id,
                "channel": delivery.channel,
                "outcome": _outcome(delivery),
                "attempts": delivery.attempts,
                "status": delivery.status,
            }
            if delivery.delivered:
                logger.info("chat message delivered", extra=fields)
            else:
                logger.error("chat message not delivered", extra={**fields, "reason": delivery.reason})
                self._count_failure(delivery.channel)
        summary = {
            "message_id": message_id,
            "run_id": report.run_id,
            "status": "failed" if failures else "delivered",
            "channels": {delivery.channel: _outcome(delivery) for delivery in deliveries},
        }
        return summary, failures

    def _deliver(self, message_id: str, report: ChatReport) -> list[Delivery]:
        try:
            config = self._webhooks.load()
        except WebhookConfigError as exc:
            return [Delivery(CONFIG_CHANNEL, False, 0, None, str(exc))]
        deliveries = [
            Delivery(channel, False, 0, None, reason) for channel, reason in config.rejected.items()
        ]
        if not config.webhooks and not config.rejected:
            logger.warning("the webhook secret names no chat webhook", extra={"message_id": message_id})
        for webhook in config.webhooks:
            key = (message_id, webhook.channel.value)
            if key in self._delivered:
                deliveries.append(Delivery(webhook.channel, True, 0, None, "already delivered"))
                continue
            try:
                payload = build_payload(webhook.channel, report)
            except PayloadTooLargeError as exc:
                deliveries.append(Delivery(webhook.channel, False, 0, None, str(exc)))
                continue
            delivery = self._poster.post(webhook, payload)
            if delivery.delivered:
                self._delivered.add(key)
            deliveries.append(delivery)
        return deliveries

    def _count_failure(self, channel: str) -> None:
        blob = EphemeralMetrics(namespace=self._namespace)
        blob.add_dimension(name=CHANNEL_DIMENSION, value=channel)
        blob.add_metric(name=FAILURE_METRIC, unit=MetricUnit.Count, value=1)
        blob.flush_metrics()


def _outcome(delivery: Delivery) -> str:
    if delivery.delivered and delivery.attempts == 0:
        return "already_delivered"
    return delivery.outcome
