"""Posting to a loopback webhook server: rate limits honoured, errors retried with bounded backoff,
the URL never in a reason. Sleeps are injected: nothing waits for real."""

from __future__ import annotations

import json
import socket

import pytest
from urllib3.exceptions import ConnectTimeoutError

from ptc_sync.chat.poster import RetryPolicy, WebhookPoster
from ptc_sync.chat.webhooks import Channel, Webhook, validate_webhook
from testbed.runtime import FakeClock
from tests.chat.conftest import PATHS, SECRET_TOKENS, WEBHOOK_URLS, Reply, WebhookServer, overrides

PAYLOAD = {"text": "ptc-sync: 1 tag refreshed"}


def poster(server: WebhookServer | str, clock: FakeClock, **policy: float) -> WebhookPoster:
    base = server if isinstance(server, str) else server.url
    return WebhookPoster(
        policy=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        host_override=overrides(base),
    )


def hook(channel: Channel) -> Webhook:
    return validate_webhook(channel, WEBHOOK_URLS[channel])


@pytest.mark.parametrize("channel", list(Channel))
def test_a_2xx_answer_is_delivered_once_with_the_json_body(
    webhook_server: WebhookServer, clock: FakeClock, channel: Channel
) -> None:
    status = {Channel.SLACK: 200, Channel.TEAMS: 202, Channel.DISCORD: 204, Channel.GOOGLE_CHAT: 200}[channel]
    webhook_server.script(PATHS[channel], Reply(status, b"" if status == 204 else b"ok"))

    delivery = poster(webhook_server, clock).post(hook(channel), PAYLOAD)

    assert (delivery.delivered, delivery.attempts, delivery.status) == (True, 1, status)
    (request,) = webhook_server.to(PATHS[channel])
    assert request.json() == PAYLOAD
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert SECRET_TOKENS[channel] in request.path + "?", "the real path and query reach the server"
    assert clock.sleeps == []


def test_429_waits_what_retry_after_asks(webhook_server: WebhookServer, clock: FakeClock) -> None:
    webhook_server.script("/services/", Reply(429, b"rate_limited", {"Retry-After": "2"}), Reply(200))

    delivery = poster(webhook_server, clock).post(hook(Channel.SLACK), PAYLOAD)

    assert (delivery.delivered, delivery.attempts) == (True, 2)
    assert clock.sleeps == [2.0]
    assert len(webhook_server.to("/services/")) == 2


def test_discord_429_without_header_waits_its_json_retry_after(
    webhook_server: WebhookServer, clock: FakeClock
) -> None:
    body = json.dumps(
        {"message": "You are being rate limited.", "retry_after": 0.75, "global": False}
    ).encode()
    webhook_server.script(
        "/api/webhooks/", Reply(429, body, {"Content-Type": "application/json"}), Reply(204, b"")
    )

    delivery = poster(webhook_server, clock).post(hook(Channel.DISCORD), PAYLOAD)

    assert delivery.delivered
    assert clock.sleeps == [0.75]


def test_the_retry_after_header_wins_over_the_json_body(
    webhook_server: WebhookServer, clock: FakeClock
) -> None:
    body = json.dumps({"retry_after": 0.5}).encode()
    webhook_server.script("/api/webhooks/", Reply(429, body, {"Retry-After": "3"}), Reply(204, b""))

    assert poster(webhook_server, clock).post(hook(Channel.DISCORD), PAYLOAD).delivered
    assert clock.sleeps == [3.0]


def test_429_without_a_hint_backs_off(webhook_server: WebhookServer, clock: FakeClock) -> None:
    webhook_server.script(
        "/v1/spaces/", Reply(429, b'{"error": {"status": "RESOURCE_EXHAUSTED"}}'), Reply(429), Reply(200)
    )

    assert poster(webhook_server, clock).post(hook(Channel.GOOGLE_CHAT), PAYLOAD).delivered
    assert clock.sleeps == [1.0, 2.0]


def test_5xx_is_retried_with_doubling_backoff_then_given_up(
    webhook_server: WebhookServer, clock: FakeClock
) -> None:
    webhook_server.script("/workflows/", *[Reply(500, b"internal error")] * 10)

    delivery = poster(webhook_server, clock).post(hook(Channel.TEAMS), PAYLOAD)

    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 4, 500)
    assert delivery.reason == "HTTP 500: internal error; gave up after 4 attempts"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert len(webhook_server.to("/workflows/")) == 4


def test_503_with_retry_after_is_honoured(webhook_server: WebhookServer, clock: FakeClock) -> None:
    webhook_server.script("/services/", Reply(503, b"", {"Retry-After": "5"}), Reply(200))

    assert poster(webhook_server, clock).post(hook(Channel.SLACK), PAYLOAD).delivered
    assert clock.sleeps == [5.0]


def test_a_longer_wait_than_allowed_fails_now_instead_of_sleeping(
    webhook_server: WebhookServer, clock: FakeClock
) -> None:
    webhook_server.script("/services/", Reply(429, b"rate_limited", {"Retry-After": "120"}))

    delivery = poster(webhook_server, clock, max_retry_after=20).post(hook(Channel.SLACK), PAYLOAD)

    assert not delivery.delivered
    assert delivery.reason == "HTTP 429: rate_limited; asked to wait 120 s, more than 20 s"
    assert clock.sleeps == []


def test_waits_stop_when_the_time_budget_is_spent(webhook_server: WebhookServer, clock: FakeClock) -> None:
    webhook_server.script("/services/", *[Reply(502)] * 10)

    delivery = poster(webhook_server, clock, deadline=5, max_attempts=10).post(hook(Channel.SLACK), PAYLOAD)

    assert not delivery.delivered
    assert delivery.attempts == 3
    assert delivery.reason.endswith("gave up after 3 attempts, the 5 s budget is spent")
    assert clock.sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(400, b"invalid_blocks"), "HTTP 400: invalid_blocks; not retried"),
        (
            Reply(404, b'{"message": "Unknown Webhook", "code": 10015}'),
            'HTTP 404: {"message": "Unknown Webhook", "code": 10015}; not retried',
        ),
        (Reply(410, b"channel_is_archived"), "HTTP 410: channel_is_archived; not retried"),
        (Reply(302, b"", {"Location": "https://elsewhere.example/"}), "HTTP 302; not retried"),
    ],
)
def test_other_answers_fail_at_once(
    webhook_server: WebhookServer, clock: FakeClock, reply: Reply, reason: str
) -> None:
    webhook_server.script("/api/webhooks/", reply)

    delivery = poster(webhook_server, clock).post(hook(Channel.DISCORD), PAYLOAD)

    assert (delivery.delivered, delivery.attempts, delivery.reason) == (False, 1, reason)
    assert clock.sleeps == []


def test_an_error_body_echoing_the_webhook_path_is_scrubbed(
    webhook_server: WebhookServer, clock: FakeClock
) -> None:
    path = WEBHOOK_URLS[Channel.SLACK].removeprefix("https://hooks.slack.com")
    webhook_server.script("/services/", Reply(403, f"invalid_token for {path}".encode()))

    delivery = poster(webhook_server, clock).post(hook(Channel.SLACK), PAYLOAD)

    assert delivery.reason == "HTTP 403: invalid_token for <webhook>; not retried"
    assert SECRET_TOKENS[Channel.SLACK] not in delivery.reason


def test_connection_errors_are_retried_and_named_by_class_only(clock: FakeClock) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"

    delivery = poster(closed, clock, max_attempts=3).post(hook(Channel.GOOGLE_CHAT), PAYLOAD)

    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 3, None)
    assert delivery.reason == "NewConnectionError; gave up after 3 attempts"
    assert clock.sleeps == [1.0, 2.0]


def test_a_read_timeout_is_retried(webhook_server: WebhookServer, clock: FakeClock) -> None:
    webhook_server.script("/services/", Reply(200, delay=0.5), Reply(200))

    delivery = poster(webhook_server, clock, read_timeout=0.1).post(hook(Channel.SLACK), PAYLOAD)

    assert (delivery.delivered, delivery.attempts) == (True, 2)
    assert clock.sleeps == [1.0]


def test_the_override_only_points_at_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        WebhookPoster(host_override={"hooks.slack.com": "http://collector.example:8080"})


def test_without_override_the_request_goes_to_the_webhook_itself() -> None:
    sent = []

    class Recorder:
        def request(self, method: str, url: str, **kwargs: object) -> object:
            sent.append((method, url, kwargs["redirect"]))
            raise ConnectTimeoutError("timed out")

    WebhookPoster(http=Recorder(), policy=RetryPolicy(max_attempts=1)).post(hook(Channel.SLACK), PAYLOAD)  # type: ignore[arg-type]

    assert sent == [("POST", WEBHOOK_URLS[Channel.SLACK], False)]
