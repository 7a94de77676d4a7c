"""Webhook URLs: only https on each service's known hosts; the secret's JSON; URLs never shown."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from ptc_sync.chat.webhooks import (
    CONFIG_CHANNEL,
    Channel,
    Webhook,
    WebhookConfigError,
    WebhookSecret,
    parse_webhook_secret,
    validate_webhook,
)
from tests.chat.conftest import SECRET_TOKENS, WEBHOOK_URLS


@pytest.mark.parametrize(
    ("channel", "url"),
    [
        *WEBHOOK_URLS.items(),
        (
            Channel.TEAMS,
            "https://default0a1b.2c.environment.api.powerplatform.com/powerautomate/automations/x",
        ),
        (Channel.DISCORD, "https://discordapp.com/api/webhooks/1/token"),
        (Channel.SLACK, "https://HOOKS.SLACK.COM/services/T/B/x"),
    ],
)
def test_known_https_hosts_are_accepted(channel: Channel, url: str) -> None:
    assert validate_webhook(channel, url).url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456",
        "https://outlook.office.com/webhook/abc@def/IncomingWebhook/123/456",
        "https://outlook.office365.com/webhook/abc@def/IncomingWebhook/123/456",
    ],
)
def test_retired_office_365_connector_hosts_are_refused_with_what_to_do_instead(url: str) -> None:
    with pytest.raises(WebhookConfigError) as refused:
        validate_webhook(Channel.TEAMS, url)

    message = str(refused.value)
    assert "retired Office 365 connector" in message
    assert "When a Teams webhook request is received" in message
    assert "abc@def" not in message  # never the URL


def test_a_retired_connector_in_the_secret_rejects_teams_only() -> None:
    secret = {
        "slack": WEBHOOK_URLS[Channel.SLACK],
        "teams": "https://contoso.webhook.office.com/webhookb2/abc@def/IncomingWebhook/123/456",
    }

    config = parse_webhook_secret(json.dumps(secret))

    assert [hook.channel for hook in config.webhooks] == [Channel.SLACK]
    assert "retired Office 365 connector" in config.rejected[Channel.TEAMS]


@pytest.mark.parametrize(
    ("channel", "url", "rule"),
    [
        (Channel.SLACK, "http://hooks.slack.com/services/T/B/x", "must use https"),
        (Channel.SLACK, "https://hooks.slack.com.evil.example/services/T/B/x", "host is not hooks.slack.com"),
        (Channel.SLACK, "https://hooks.slack.com./services/T/B/x", "host is not hooks.slack.com"),
        (Channel.SLACK, "https://evil.example/hooks.slack.com/services/T/B/x", "host is not hooks.slack.com"),
        (Channel.SLACK, "https://user:pw@hooks.slack.com/services/T/B/x", "user information"),
        (Channel.SLACK, "https://hooks.slack.com:8443/services/T/B/x", "default https port"),
        (Channel.SLACK, "https://hooks.slack.com/triggers/T/B/x", "path must start with /services/"),
        (Channel.SLACK, "https://hooks.slack.com/services/T/B/x#frag", "fragment"),
        (Channel.SLACK, "https://hooks.slack.com/services/T/B/x y", "whitespace"),
        (Channel.TEAMS, "https://webhook.office.com/webhookb2/x", "retired Office 365 connector"),
        (Channel.TEAMS, "https://logic.azure.com.evil.example/workflows/x", "host is not"),
        (Channel.TEAMS, "https://hooks.slack.com/services/T/B/x", "host is not"),
        (Channel.DISCORD, "https://discord.com/channels/1/2", "path must start with /api/webhooks/"),
        (Channel.DISCORD, "https://cdn.discord.com/api/webhooks/1/t", "host is not"),
        (Channel.GOOGLE_CHAT, "https://chat.googleapis.com/v2/other", "path must start with /v1/spaces/"),
        (Channel.GOOGLE_CHAT, "https://chat.googleapis.com:99999/v1/spaces/x", "cannot be parsed"),
    ],
)
def test_other_urls_are_rejected_without_repeating_them(channel: Channel, url: str, rule: str) -> None:
    with pytest.raises(WebhookConfigError, match=rule) as error:
        validate_webhook(channel, url)

    assert "/B/x" not in str(error.value)
    assert "evil.example" not in str(error.value)
    assert str(channel) in str(error.value)


def test_webhook_repr_and_str_hide_the_url() -> None:
    webhook = validate_webhook(Channel.DISCORD, WEBHOOK_URLS[Channel.DISCORD])
    config = parse_webhook_secret(json.dumps({"discord": WEBHOOK_URLS[Channel.DISCORD]}))

    for shown in (repr(webhook), str(webhook), repr(config), f"{webhook}", str([webhook])):
        assert SECRET_TOKENS[Channel.DISCORD] not in shown
        assert "discord.com" not in shown
    assert repr(webhook) == "Webhook(channel='discord', url=<redacted>)"


def test_secret_may_name_any_subset_and_leave_channels_empty() -> None:
    config = parse_webhook_secret(
        json.dumps(
            {
                "googlechat": WEBHOOK_URLS[Channel.GOOGLE_CHAT],
                "slack": WEBHOOK_URLS[Channel.SLACK],
                "teams": "",
            }
        )
    )

    assert [webhook.channel for webhook in config.webhooks] == [Channel.SLACK, Channel.GOOGLE_CHAT]
    assert config.rejected == {}


def test_a_bad_entry_rejects_only_its_channel_and_unknown_keys_are_reported() -> None:
    config = parse_webhook_secret(
        json.dumps(
            {
                "slack": "http://hooks.slack.com/services/T/B/leaky",
                "discord": WEBHOOK_URLS[Channel.DISCORD],
                "teams": 42,
                "slak": "x",
                "https://hooks.slack.com/services/T/B/leaky": "oops",
            }
        )
    )

    assert [webhook.channel for webhook in config.webhooks] == [Channel.DISCORD]
    assert config.rejected == {
        "slack": "slack webhook URL must use https",
        "teams": "teams webhook URL is not a string",
        CONFIG_CHANNEL: "unknown keys in the webhook secret: slak, <unprintable key> "
        "(known: slack, teams, discord, googlechat)",
    }
    assert "leaky" not in repr(config)


@pytest.mark.parametrize(
    ("raw", "error"), [("{", "not JSON"), ("[]", "not a JSON object"), (b"\xff", "not JSON")]
)
def test_a_secret_that_is_not_a_json_object_is_an_error(raw: str | bytes, error: str) -> None:
    with pytest.raises(WebhookConfigError, match=error):
        parse_webhook_secret(raw)


@mock_aws
def test_secret_is_read_through_powertools_and_cached() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = client.create_secret(Name="chat", SecretString=json.dumps({"slack": WEBHOOK_URLS[Channel.SLACK]}))[
        "ARN"
    ]
    cached = WebhookSecret(arn, client=client, max_age=300)
    uncached = WebhookSecret(arn, client=client, max_age=0)
    assert [w.channel for w in cached.load().webhooks] == [Channel.SLACK]

    client.put_secret_value(SecretId=arn, SecretString=json.dumps({"discord": WEBHOOK_URLS[Channel.DISCORD]}))

    assert [w.channel for w in cached.load().webhooks] == [Channel.SLACK]
    assert [w.channel for w in uncached.load().webhooks] == [Channel.DISCORD]


@mock_aws
def test_an_unreadable_secret_names_the_error_not_a_value() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")

    with pytest.raises(
        WebhookConfigError, match=r"cannot read the webhook secret: .*ResourceNotFoundException"
    ):
        WebhookSecret("missing-secret", client=client).load()


def test_webhook_equality_still_uses_the_url() -> None:
    assert Webhook(Channel.SLACK, "a") != Webhook(Channel.SLACK, "b")
