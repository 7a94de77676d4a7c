"""Lambda's event plumbing, run in-process against moto: what the deployed stack does between the
functions, so tests and the demo run the real handlers the way Lambda would call them.

- ``SqsEventSource`` is an SQS event source mapping with ``ReportBatchItemFailures``: it receives up
  to ``batch_size`` messages, calls the handler with an SQS event, deletes what succeeded and makes
  the reported failures visible again; a handler that raises (a function error, which Powertools'
  batch processor raises when every record failed) fails the whole batch, as Lambda does. moto's
  redrive policy moves a message to the DLQ once its receive count passes ``maxReceiveCount``, as
  SQS does.
- ``EventBridgeTap`` stands in for an EventBridge rule whose target is a Lambda function: moto cannot
  invoke functions, so the rule (same event pattern as template.yaml) targets an SQS queue and the tap
  calls the handler with each event exactly as EventBridge would pass it. moto's default input
  template for an SQS target leaves out ``account``; the tap puts it back (the queue's account, the
  bus's own), as a Lambda target receives the whole event.

``FakeClock`` and ``FakeContext`` are the one fake clock and the one fake Lambda context of the
testbed and of every test (``tests/fakes.py`` re-exports them; ``testbed.ecr_ptc`` uses this clock).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]


class FakeClock:
    """The one fake clock of the tests and the testbed: wall time (``now``) and monotonic time that
    move together, only when told to (``advance``) or when something sleeps (``sleep`` records the
    wait and returns at once)."""

    def __init__(self, start: datetime | None = None, *, monotonic: float = 1000.0) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start
        self.mono = monotonic
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, delta: timedelta | float = 0.0, **parts: float) -> datetime:
        """Move on by ``delta`` (a timedelta or seconds) and ``parts`` (``timedelta``'s keywords:
        ``advance(minutes=15)``); returns the new time."""
        step = (delta if isinstance(delta, timedelta) else timedelta(seconds=float(delta))) + timedelta(
            **parts
        )
        if step < timedelta(0):
            raise ValueError("time does not go backwards")
        self._now += step
        self.mono += step.total_seconds()
        return self._now


@dataclass
class FakeContext:
    """The one fake Lambda context: what Powertools and the handlers read of one. The remaining
    time is ``remaining_ms``, or what ``remaining`` answers at each call (a deadline on a clock)."""

    function_name: str = "ptc-sync-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 900_000
    region: str = "us-east-1"
    account: str = "123456789012"
    remaining: Callable[[], int] | None = None

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining() if self.remaining is not None else self.remaining_ms


@dataclass
class Delivery:
    invocations: int = 0
    records: int = 0
    failures: int = 0
    responses: list[Any] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)  # invocations that raised (function errors)


class SqsEventSource:
    def __init__(
        self, sqs: Any, queue_url: str, handler: Handler, *, function_name: str, batch_size: int = 10
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.function_name = function_name
        self.batch_size = batch_size
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def poll_once(self, delivery: Delivery) -> bool:
        """One receive and one invocation; False when the queue had nothing to deliver."""
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages = resp.get("Messages", [])
        if not messages:
            return False
        event = {"Records": [self._record(m) for m in messages]}
        delivery.invocations += 1
        delivery.records += len(messages)
        try:
            result = self.handler(event, FakeContext(self.function_name))
        except Exception as exc:  # a function error: Lambda retries the whole batch
            delivery.errors.append(exc)
            result = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
        else:
            delivery.responses.append(result)
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        delivery.failures += len(failed)
        for message in messages:
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return True

    def drain(self, *, max_invocations: int = 1000) -> Delivery:
        """Deliver until the queue is empty (bounded: a poison message ends in the DLQ)."""
        delivery = Delivery()
        while delivery.invocations < max_invocations and self.poll_once(delivery):
            pass
        return delivery

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.queue_arn.split(":")[3],
        }


class EventBridgeTap:
    """An EventBridge rule → Lambda target, through a moto rule → SQS queue."""

    def __init__(
        self,
        events: Any,
        sqs: Any,
        *,
        name: str,
        pattern: dict[str, Any],
        handler: Handler,
        function_name: str,
        event_bus_name: str = "default",
    ) -> None:
        self.sqs = sqs
        self.handler = handler
        self.function_name = function_name
        self.event_bus_name = event_bus_name
        self.queue_url = sqs.create_queue(QueueName=f"tap-{name}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.account = arn.split(":")[4]
        events.put_rule(
            Name=name, EventPattern=json.dumps(pattern), State="ENABLED", EventBusName=event_bus_name
        )
        events.put_targets(Rule=name, EventBusName=event_bus_name, Targets=[{"Id": "function", "Arn": arn}])

    def deliver(self) -> list[Any]:
        """Invoke the handler once per event the rule matched; returns the handler's answers."""
        answers = []
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = resp.get("Messages", [])
            if not messages:
                return answers
            for message in messages:
                event = json.loads(message["Body"])
                event.setdefault("account", self.account)  # dropped by moto's SQS delivery only
                answers.append(self.handler(event, FakeContext(self.function_name)))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
