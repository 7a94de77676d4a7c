"""Text from outside cannot steer a chat: no pings, no disguised links, no reordered text, and only the
stack's report topic, one record at a time, is posted."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from ptc_sync.chat import discord, googlechat, slack, teams
from ptc_sync.chat.settings import load_chat_settings
from ptc_sync.models import Outcome, TagResult
from ptc_sync.report import STRUCTURED_KEY, build_notification, chat_notification, structured_report
from ptc_sync.settings import SettingsError
from testbed.runtime import FakeContext
from tests.chat.conftest import ChatSandbox
from tests.chat.reports import chat_report, parse_report, run
from tests.chat.sample import TOPIC_ARN, sample_event, sns_event
from tests.conftest import load_handler

handler = load_handler("notifier").lambda_handler

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HOSTILE = (
    "HTTP 500 (<!channel> <!here> <@U024BE7LH> [click to fix](https://evil.example/steal) "
    "@everyone <users/all> <https://evil.example|docs> \u202eevil\u202c \x07 & done)"
)


def hostile_run() -> Any:
    failed = TagResult(
        "docker-hub/library/node", "lts", "docker-hub", Outcome.REFRESH_FAILED, reason=f"refresh: {HOSTILE}"
    )
    return run(failed, errors=(f"rule ghcr: discovery failed: {HOSTILE}",))


def dumped(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def strings(payload: Any) -> str:
    """Every string in a payload, as the service reads it (no JSON escaping), one per line."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        return "\n".join(strings(value) for value in payload.values())
    if isinstance(payload, list):
        return "\n".join(strings(value) for value in payload)
    return ""


def test_chatbot_markdown_escapes_outside_text_for_slack_and_breaks_links_for_teams() -> None:
    description = chat_notification(hostile_run())["content"]["description"]

    for ping in ("<!channel>", "<!here>", "<@U024BE7LH>", "<https://evil.example|docs>", "<users/all>"):
        assert ping not in description
    assert "&lt;!channel&gt;" in description
    assert "&amp; done" in description
    assert "](" not in description  # no markdown link Chatbot could render for Teams
    assert "[click to fix] (https://evil.example/steal)" in description
    assert not set(BIDI + "\x07") & set(description)


def test_the_structured_report_carries_plain_text_each_builder_escapes() -> None:
    """What the notifier reads is the description's text unescaped (and then made safe: no bidi or
    control characters, no links), never the Chatbot markdown's entities."""
    lines = [line for section in structured_report(hostile_run())["sections"] for line in section["lines"]]
    assert any("<!channel>" in line and "& done" in line for line in lines)
    assert not any("&lt;" in line or "&amp;" in line for line in lines)
    read = [line for section in chat_report(hostile_run()).sections for line in section.lines]
    assert any("<!channel>" in line and "& done" in line for line in read)  # each builder escapes it
    assert not set(BIDI + "\x07") & set("".join(read))
    assert not any("](" in line for line in read)


@pytest.mark.parametrize(
    ("build", "forbidden", "expected"),
    [
        (
            slack.payload,
            ["<!channel>", "<!here>", "<@U024BE7LH>", "<https://evil", "&amp;lt;"],
            ["&lt;!channel&gt;"],
        ),
        (
            discord.payload,
            ["@everyone", "<@U024BE7LH>", "[click to fix](", "[click to fix] ("],
            ["@\u200beveryone", "\\<@U024BE7LH\\>", "\\[click to fix\\]"],
        ),
        (googlechat.payload, ["<!channel>", "<users/all>", "<https://evil"], ["&lt;users/all&gt;"]),
    ],
)
def test_webhook_payloads_escape_for_their_dialect(
    build: Any, forbidden: list[str], expected: list[str]
) -> None:
    text = strings(build(chat_report(hostile_run())))
    for bad in forbidden:
        assert bad not in text
    for good in expected:
        assert good in text
    assert not set(BIDI + "\x07") & set(text)


def test_teams_shows_no_link_but_its_own_console_links() -> None:
    card = teams.payload(chat_report(hostile_run()))
    text = dumped(card)
    assert "[click to fix](" not in text
    assert "[click to fix] (https://evil.example/steal)" in text  # visible for what it is
    blocks = [block["text"] for block in card["attachments"][0]["content"]["body"] if "text" in block]
    links = [block for block in blocks if "](" in block]
    assert links  # the console links are still links
    assert all("](https://eu-west-1.console.aws.amazon.com/" in line for b in links for line in b.split("\n"))
    assert not set(BIDI + "\x07") & set(text)


def test_slack_fallback_text_and_google_chat_text_are_escaped_too() -> None:
    """A forged title and headline (the message's own fields) cannot ping in the notification text."""
    message = json.loads(build_notification(hostile_run()).message)
    context = message["metadata"]["additionalContext"]
    structured = json.loads(context[STRUCTURED_KEY])
    structured["title"] = ":warning: <!channel> ptc-sync"
    structured["headline"] = "ptc-sync: <users/all> [x](https://evil.example) \u202eok"
    context[STRUCTURED_KEY] = json.dumps(structured)
    report = parse_report(json.dumps(message))

    assert slack.payload(report)["text"] == ":warning: &lt;!channel&gt; ptc-sync"
    text = googlechat.payload(report)["text"]
    assert "<users/all>" not in text
    assert "](" not in text
    assert "\u202e" not in text


def replay(event: dict[str, Any]) -> dict[str, Any]:
    return dict(handler(event, FakeContext("ptc-sync-ChatNotifierFunction")))


def test_a_message_from_another_topic_is_refused_and_logged(
    chat: ChatSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    event = sample_event()
    foreign = "arn:aws:sns:eu-west-1:210987654321:someone-elses-topic"
    event["Records"][0]["Sns"]["TopicArn"] = foreign

    summary = replay(event)

    assert summary["status"] == "rejected"
    assert "is not the stack's report topic" in summary["reason"]
    assert chat.server.received == []
    refused = [r for r in caplog.records if r.getMessage() == "record refused"]
    assert refused
    assert foreign in refused[0].__dict__["reason"]


def test_a_second_record_in_one_event_is_refused_not_posted(
    chat: ChatSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    event = sample_event()
    second = copy.deepcopy(event["Records"][0])
    second["Sns"]["MessageId"] = "second-message"
    event["Records"].append(second)

    summary = replay(event)

    assert summary["status"] == "ok"
    assert [m["message_id"] for m in summary["messages"]] == [event["Records"][0]["Sns"]["MessageId"]]
    assert summary["refused"][0]["message_id"] == "second-message"
    assert len(chat.server.to("/services/")) == 1
    assert len(chat.server.to("/api/webhooks/")) == 1
    assert any(r.getMessage() == "record refused" for r in caplog.records)


def test_the_report_topic_is_posted(chat: ChatSandbox) -> None:
    summary = replay(sns_event(build_notification(hostile_run()).message))
    assert summary["status"] == "ok"
    assert len(chat.server.received) == 4
    for request in chat.server.received:
        assert not set(BIDI) & set(strings(request.json()))
    slack_text = strings(chat.server.to("/services/")[0].json())
    assert "<!channel>" not in slack_text
    assert "&lt;!channel&gt;" in slack_text


def test_the_notifier_will_not_start_without_its_report_topic() -> None:
    with pytest.raises(SettingsError, match="PTC_TOPIC_ARN"):
        load_chat_settings({"PTC_CHAT_SECRET_ARN": "ptc-sync/chat-webhooks"})
    with pytest.raises(SettingsError, match="PTC_TOPIC_ARN"):
        load_chat_settings({"PTC_CHAT_SECRET_ARN": "ptc-sync/chat-webhooks", "PTC_TOPIC_ARN": "https://x"})
    env = {"PTC_CHAT_SECRET_ARN": "ptc-sync/chat-webhooks", "PTC_TOPIC_ARN": TOPIC_ARN}
    settings = load_chat_settings(env)
    assert settings.topic_arn == TOPIC_ARN
