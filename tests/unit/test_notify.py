"""SnsNotifier against moto SNS, read back through SQS subscriptions (SNS envelope, not raw)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from ptc_sync.models import Outcome, RunReport, TagResult
from ptc_sync.notify import Notifier, NotifyError, SnsNotifier
from tests.chat.reports import parse_report

REGION = "us-east-1"
FINISHED = datetime.now(UTC)


def result(outcome: Outcome, tag: str = "lts", reason: str = "", *, first_seen: bool = False) -> TagResult:
    """A result as the run state judges a tag's first check: notable outcomes are news."""
    return TagResult(
        repository="docker-hub/library/node",
        tag=tag,
        rule_prefix="docker-hub",
        outcome=outcome,
        news=outcome.notable,
        first_seen=first_seen,
        cached_digest="sha256:" + "a" * 64,
        upstream_digest="sha256:" + "b" * 64,
        reason=reason,
    )


def run(*results: TagResult, dry_run: bool = False) -> RunReport:
    return RunReport(
        run_id="run-42",
        started_at=FINISHED - timedelta(seconds=10),
        finished_at=FINISHED,
        dry_run=dry_run,
        results=results,
        region=REGION,
        account_id="123456789012",
    )


@dataclass
class Topic:
    sns: Any
    sqs: Any
    arn: str

    def subscribe_queue(self, name: str, filter_policy: dict[str, Any] | None = None) -> str:
        queue_url: str = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        attributes = {"RawMessageDelivery": "false"}
        if filter_policy is not None:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
            attributes["FilterPolicyScope"] = "MessageAttributes"
        self.sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        return queue_url

    def received(self, queue_url: str) -> list[dict[str, Any]]:
        """The SNS envelopes delivered to the queue so far."""
        messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]


@pytest.fixture
def topic() -> Iterator[Topic]:
    with mock_aws():
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        arn = sns.create_topic(Name="ptc-sync-reports")["TopicArn"]
        yield Topic(sns=sns, sqs=sqs, arn=arn)


def test_published_message_carries_the_chat_notification_subject_and_attributes(topic: Topic) -> None:
    queue = topic.subscribe_queue("everything")
    notifier: Notifier = SnsNotifier(topic.sns, topic.arn)

    message_id = notifier.publish(
        run(result(Outcome.REFRESHED), result(Outcome.REFRESH_FAILED, tag="22", reason="verify: mismatch"))
    )

    [envelope] = topic.received(queue)
    assert message_id is not None
    assert envelope["MessageId"] == message_id
    assert envelope["Subject"] == "ptc-sync: 1 tag refreshed, 1 failed"
    body = json.loads(envelope["Message"])
    assert body["version"] == "1.0"
    assert body["source"] == "custom"
    assert body["content"]["title"] == ":rotating_light: ptc-sync: 1 tag refreshed, 1 failed"
    assert "verify: mismatch" in body["content"]["description"]
    attributes = envelope["MessageAttributes"]
    assert attributes["outcomes"]["Type"] == "String.Array"
    assert json.loads(attributes["outcomes"]["Value"]) == ["refreshed", "refresh_failed"]
    assert attributes["rulePrefixes"]["Type"] == "String.Array"
    assert json.loads(attributes["rulePrefixes"]["Value"]) == ["docker-hub"]
    assert attributes["dryRun"] == {"Type": "String", "Value": "false"}
    assert attributes["refreshed"] == {"Type": "Number", "Value": "1"}
    assert attributes["failed"] == {"Type": "Number", "Value": "1"}


def test_filter_policy_on_outcomes_passes_only_runs_with_failures(topic: Topic) -> None:
    everything = topic.subscribe_queue("everything")
    failures = topic.subscribe_queue("failures-only", {"outcomes": ["refresh_failed"]})
    notifier = SnsNotifier(topic.sns, topic.arn)

    notifier.publish(run(result(Outcome.REFRESHED)))
    notifier.publish(run(result(Outcome.REFRESHED), result(Outcome.REFRESH_FAILED, tag="22", reason="boom")))

    assert len(topic.received(everything)) == 2
    [delivered] = topic.received(failures)
    assert json.loads(delivered["MessageAttributes"]["outcomes"]["Value"]) == ["refreshed", "refresh_failed"]


def test_quiet_run_is_not_published_unless_always(topic: Topic) -> None:
    queue = topic.subscribe_queue("everything")
    quiet = run(result(Outcome.FRESH))

    assert SnsNotifier(topic.sns, topic.arn).publish(quiet) is None
    assert topic.received(queue) == []

    message_id = SnsNotifier(topic.sns, topic.arn, always=True).publish(quiet)

    [envelope] = topic.received(queue)
    assert envelope["MessageId"] == message_id
    assert envelope["Subject"] == "ptc-sync: 1 tag checked, nothing to refresh"
    assert json.loads(envelope["MessageAttributes"]["outcomes"]["Value"]) == []


def test_max_lines_per_section_reaches_the_message(topic: Topic) -> None:
    queue = topic.subscribe_queue("everything")
    notifier = SnsNotifier(topic.sns, topic.arn, max_lines_per_section=1)

    notifier.publish(run(result(Outcome.REFRESHED, tag="a"), result(Outcome.REFRESHED, tag="b")))

    [envelope] = topic.received(queue)
    assert "… and 1 more" in json.loads(envelope["Message"])["content"]["description"]


def test_missing_topic_raises_notify_error_naming_topic_and_code(topic: Topic) -> None:
    missing = topic.arn + "-gone"
    notifier = SnsNotifier(topic.sns, missing)

    with pytest.raises(NotifyError) as raised:
        notifier.publish(run(result(Outcome.REFRESHED)))

    assert raised.value.topic_arn == missing
    assert raised.value.error_code == "NotFound"
    assert str(raised.value).startswith(f"publishing the run report to {missing} failed: NotFound: ")


class UnreachableSns:
    """An SNS client whose endpoint cannot be reached."""

    def publish(self, **_: Any) -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com/")


def test_connection_failure_raises_notify_error() -> None:
    notifier = SnsNotifier(UnreachableSns(), "arn:aws:sns:us-east-1:123456789012:t")  # type: ignore[arg-type]

    with pytest.raises(NotifyError, match=r"t failed: EndpointConnectionError: Could not connect") as raised:
        notifier.publish(run(result(Outcome.REFRESH_FAILED, reason="boom")))

    assert raised.value.error_code == "EndpointConnectionError"
    assert isinstance(raised.value.__cause__, EndpointConnectionError)


class RecordingSns:
    """An SNS client that keeps each Publish call's arguments."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"MessageId": f"m-{len(self.calls)}"}


def test_publish_gives_email_plain_text_and_everyone_else_the_chatbot_json() -> None:
    client = RecordingSns()
    report = run(
        result(Outcome.REFRESHED), result(Outcome.REFRESH_FAILED, tag="22", reason="verify: mismatch")
    )

    SnsNotifier(client, "arn:aws:sns:us-east-1:123456789012:t").publish(report)  # type: ignore[arg-type]

    [call] = client.calls
    assert call["MessageStructure"] == "json"
    structure = json.loads(call["Message"])
    assert set(structure) == {"default", "email"}
    assert json.loads(structure["default"])["source"] == "custom"
    assert structure["email"].startswith("ptc-sync: 1 tag refreshed, 1 failed\n\n")
    assert "{" not in structure["email"]


def test_subscribers_other_than_email_still_receive_the_chatbot_json(topic: Topic) -> None:
    """SNS delivers ``default`` to every protocol without its own key: Chatbot (https), queues and the
    chat notifier's Lambda subscription, which reads it back as a run report."""
    queue = topic.subscribe_queue("everything")
    SnsNotifier(topic.sns, topic.arn).publish(run(result(Outcome.REFRESH_FAILED, reason="verify: mismatch")))

    [envelope] = topic.received(queue)
    body = json.loads(envelope["Message"])
    assert body["version"] == "1.0"
    assert "email" not in body
    chat = parse_report(envelope["Message"])
    assert chat.headline == "ptc-sync: 1 tag failed"
    assert [section.heading for section in chat.sections] == ["Refresh failed"]


def test_first_run_is_published_even_when_nothing_is_news(topic: Topic) -> None:
    queue = topic.subscribe_queue("everything")
    notifier = SnsNotifier(topic.sns, topic.arn)
    quiet = run(result(Outcome.FRESH), result(Outcome.FRESH, tag="22", first_seen=True))
    first = run(result(Outcome.FRESH, first_seen=True), result(Outcome.FRESH, tag="22", first_seen=True))

    assert notifier.publish(quiet) is None  # one tag known already: not the first run
    message_id = notifier.publish(first)

    [envelope] = topic.received(queue)
    assert envelope["MessageId"] == message_id
    assert envelope["Subject"] == "ptc-sync: watching 2 tags under 1 rule, all fresh"
    assert json.loads(envelope["Message"])["metadata"]["additionalContext"]["kind"] == "first_run"
