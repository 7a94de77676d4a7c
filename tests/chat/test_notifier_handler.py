"""The notifier function end to end: events/sns-report.json through the real handler, the webhook secret
in moto Secrets Manager, and every webhook host sent to one loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ptc_sync.chat import wiring
from ptc_sync.chat.notifier import ChatDeliveryError
from ptc_sync.chat.settings import load_chat_settings
from ptc_sync.chat.webhooks import Channel
from ptc_sync.settings import SettingsError
from testbed.runtime import FakeContext
from tests.chat.conftest import (
    DASHBOARD_URL,
    PATHS,
    SECRET_TOKENS,
    WEBHOOK_URLS,
    ChatSandbox,
    Reply,
)
from tests.chat.sample import EVENT_PATH, MESSAGE_ID, TOPIC_ARN, sample_event, sns_event
from tests.chat.schemas import violations
from tests.conftest import load_handler

handler = load_handler("notifier").lambda_handler


def replay(event: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(
        handler(event or json.loads(EVENT_PATH.read_text()), FakeContext("ptc-sync-ChatNotifierFunction"))
    )


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record with its structured fields, as one text to search."""
    return "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for token in SECRET_TOKENS.values():
            assert token not in text


def test_sample_event_is_the_sample_report() -> None:
    assert json.loads(EVENT_PATH.read_text()) == sample_event(), "regenerate: python -m tests.chat.sample"


def test_one_report_reaches_every_channel_once_in_its_own_format(chat: ChatSandbox) -> None:
    summary = replay()

    assert summary == {
        "status": "ok",
        "messages": [
            {
                "message_id": MESSAGE_ID,
                "run_id": "8c1f0e2a9b7d4c3e8f6a5b4c3d2e1f0a",
                "status": "delivered",
                "channels": {channel.value: "delivered" for channel in Channel},
            }
        ],
    }
    for channel in Channel:
        (request,) = chat.server.to(PATHS[channel])
        payload = request.json()
        assert violations(channel, payload) == []
        assert "3 tags refreshed, 1 failed" in json.dumps(payload)
        assert DASHBOARD_URL in json.dumps(payload)
    assert chat.clock.sleeps == []


def test_a_failing_channel_is_logged_counted_and_raised_after_the_others_were_served(
    chat: ChatSandbox, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    chat.server.script("/workflows/", *[Reply(500, b"BadGateway")] * 4)
    capsys.readouterr()

    with pytest.raises(ChatDeliveryError) as raised:
        replay()

    out = capsys.readouterr().out
    assert str(raised.value) == (
        "chat delivery failed for 1 channel(s): teams: HTTP 500: BadGateway; gave up after 4 attempts"
    )
    assert [len(chat.server.to(PATHS[channel])) for channel in Channel] == [1, 4, 1, 1]
    assert chat.clock.sleeps == [1.0, 2.0, 4.0]
    (blob,) = emf(out)
    assert blob["ChatDeliveryFailed"] == [1.0]
    assert blob["Channel"] == "teams"
    assert blob["service"] == "ptc-sync"
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "PtcSync"
    assert ["Channel", "service"] in blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    failure = next(record for record in caplog.records if record.getMessage() == "chat message not delivered")
    assert (failure.levelname, failure.channel, failure.status) == ("ERROR", "teams", 500)  # type: ignore[attr-defined]
    assert failure.reason == "HTTP 500: BadGateway; gave up after 4 attempts"  # type: ignore[attr-defined]
    assert_no_secret(out, log_text(caplog), str(raised.value), repr(raised.value))


def test_lambdas_retry_posts_only_to_the_channels_that_failed(chat: ChatSandbox) -> None:
    chat.server.script("/api/webhooks/", Reply(404, b'{"message": "Unknown Webhook"}'))
    with pytest.raises(ChatDeliveryError, match="discord: HTTP 404"):
        replay()

    summary = replay()  # Lambda's asynchronous retry of the same event

    assert summary["messages"][0]["channels"] == {
        "slack": "already_delivered",
        "teams": "already_delivered",
        "discord": "delivered",
        "googlechat": "already_delivered",
    }
    assert [len(chat.server.to(PATHS[channel])) for channel in Channel] == [1, 1, 2, 1]


def test_a_rate_limited_channel_is_delivered_after_the_wait_it_asked_for(chat: ChatSandbox) -> None:
    chat.server.script("/services/", Reply(429, b"rate_limited", {"Retry-After": "3"}))

    assert replay()["messages"][0]["status"] == "delivered"
    assert chat.clock.sleeps == [3.0]
    assert len(chat.server.to("/services/")) == 2


def test_only_the_channels_in_the_secret_are_posted_to(chat: ChatSandbox) -> None:
    chat.put_webhooks({"discord": WEBHOOK_URLS[Channel.DISCORD], "slack": None})

    summary = replay()

    assert summary["messages"][0]["channels"] == {"discord": "delivered"}
    assert [request.path.split("/")[1] for request in chat.server.received] == ["api"]


def test_a_rejected_url_and_an_unknown_key_fail_without_stopping_the_rest(
    chat: ChatSandbox, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bad_slack = WEBHOOK_URLS[Channel.SLACK].replace("hooks.slack.com", "hooks.slack.com.evil.example")
    chat.put_webhooks({"slack": bad_slack, "teams": WEBHOOK_URLS[Channel.TEAMS], "msteams": "x"})
    capsys.readouterr()

    with pytest.raises(ChatDeliveryError) as raised:
        replay()

    out = capsys.readouterr().out
    assert [failure.channel for failure in raised.value.failures] == ["slack", "config"]
    assert "slack: slack webhook URL host is not hooks.slack.com" in str(raised.value)
    assert "config: unknown keys in the webhook secret: msteams" in str(raised.value)
    assert len(chat.server.to("/workflows/")) == 1
    assert sorted(blob["Channel"] for blob in emf(out)) == ["config", "slack"]
    assert_no_secret(out, log_text(caplog), str(raised.value))
    assert "evil.example" not in out + log_text(caplog)


def test_an_unreadable_secret_fails_the_event_as_config(
    chat: ChatSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    chat.install(secret_id="ptc-sync/no-such-secret")
    capsys.readouterr()

    with pytest.raises(ChatDeliveryError, match="config: cannot read the webhook secret"):
        replay()

    assert [blob["Channel"] for blob in emf(capsys.readouterr().out)] == ["config"]
    assert chat.server.received == []


def test_a_message_that_is_not_a_run_report_is_skipped(chat: ChatSandbox) -> None:
    alarm = json.dumps({"AlarmName": "ptc-sync-errors", "NewStateValue": "ALARM"})

    summary = replay(sns_event(alarm, message_id="alarm-1"))

    assert summary["messages"][0]["status"] == "skipped"
    assert "not an AWS Chatbot custom notification" in summary["messages"][0]["reason"]
    assert chat.server.received == []


def test_an_event_that_is_not_from_sns_is_rejected_without_posting(chat: ChatSandbox) -> None:
    summary = replay({"source": "ptc-sync.schedule", "mode": "scheduled"})

    assert summary["status"] == "rejected"
    assert "Records" in summary["reason"]
    assert chat.server.received == []


def test_settings_name_the_bad_variable_but_never_its_value() -> None:
    with pytest.raises(SettingsError) as raised:
        load_chat_settings(
            {
                "PTC_CHAT_SECRET_ARN": "s",
                "PTC_DASHBOARD_URL": "http://grafana.internal/?token=abc",
                "PTC_CHAT_SECRT": "x",
            }
        )

    assert "PTC_DASHBOARD_URL: Value error, must be an https URL" in str(raised.value)
    assert "PTC_CHAT_SECRT" in str(raised.value)
    assert "token=abc" not in str(raised.value)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_chat_settings(
        {
            "PTC_CHAT_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            "PTC_DASHBOARD_URL": "",
            "PTC_TOPIC_ARN": TOPIC_ARN,
        }
    )

    assert settings.dashboard_url is None
    assert settings.chat_secret_max_age == 300
    assert settings.topic_arn == TOPIC_ARN
    monkeypatch.setenv("PTC_CHAT_SECRET_ARN", "ptc-sync/chat-webhooks")
    monkeypatch.setenv("PTC_TOPIC_ARN", TOPIC_ARN)
    wiring.set_notifier(None)
    try:
        assert wiring.get_notifier() is wiring.get_notifier()
    finally:
        wiring.set_notifier(None)


def test_the_notifier_function_ships_no_dependencies_of_its_own() -> None:
    requirements = Path(__file__).resolve().parents[2] / "functions" / "notifier" / "requirements.txt"

    assert requirements.read_text().strip() == ""
