"""Fixtures for the chat notifier: a loopback webhook server, a fake clock, the webhook secret in moto."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ptc_sync.chat import wiring
from ptc_sync.chat.notifier import ChatNotifier
from ptc_sync.chat.poster import RetryPolicy
from ptc_sync.chat.settings import ChatSettings
from ptc_sync.chat.webhooks import Channel
from testbed.runtime import FakeClock
from tests.chat.sample import DASHBOARD_URL, TOPIC_ARN

# Real-looking webhook URLs; the trailing tokens are what must never leak into logs or errors.
SECRET_TOKENS = {
    Channel.SLACK: "xoxSlackHookToken0123456789",
    Channel.TEAMS: "TeamsSigSeCrEt0123456789",
    Channel.DISCORD: "DiscordHookToken-0123456789",
    Channel.GOOGLE_CHAT: "GoogleChatToken0123456789",
}
TEAMS_HOST = "prod-42.westeurope.logic.azure.com"
WEBHOOK_URLS = {
    Channel.SLACK: f"https://hooks.slack.com/services/T0TEST/B0TEST/{SECRET_TOKENS[Channel.SLACK]}",
    Channel.TEAMS: (
        f"https://{TEAMS_HOST}:443/workflows/0a1b2c3d4e5f/triggers/manual/paths/invoke"
        f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SECRET_TOKENS[Channel.TEAMS]}"
    ),
    Channel.DISCORD: f"https://discord.com/api/webhooks/112233445566778899/{SECRET_TOKENS[Channel.DISCORD]}",
    Channel.GOOGLE_CHAT: (
        "https://chat.googleapis.com/v1/spaces/AAAATEST/messages"
        f"?key=AIzaTestKey&token={SECRET_TOKENS[Channel.GOOGLE_CHAT]}"
    ),
}
# What each channel's requests look like on the loopback server (the real path is kept).
PATHS = {
    Channel.SLACK: "/services/",
    Channel.TEAMS: "/workflows/",
    Channel.DISCORD: "/api/webhooks/",
    Channel.GOOGLE_CHAT: "/v1/spaces/",
}
SECRET_NAME = "ptc-sync/chat-webhooks"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the read-timeout test) is expected: no traceback on stderr."""


class WebhookServer:
    """An HTTP server on loopback answering each path prefix from its own script (then 200 ``ok``)."""

    def __init__(self) -> None:
        self._replies: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = server._record(Received(self.path, dict(self.headers), body))
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def script(self, prefix: str, *replies: Reply) -> None:
        with self._lock:
            self._replies[prefix].extend(replies)

    def to(self, prefix: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.path.startswith(prefix)]

    def _record(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            for prefix, replies in self._replies.items():
                if request.path.startswith(prefix) and replies:
                    return replies.popleft()
        return Reply()


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    server = WebhookServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def overrides(base: str) -> dict[str, str]:
    """Every webhook host of WEBHOOK_URLS → ``base`` (a loopback server)."""
    return {"hooks.slack.com": base, TEAMS_HOST: base, "discord.com": base, "chat.googleapis.com": base}


@dataclass
class ChatSandbox:
    session: boto3.Session
    secret_arn: str
    server: WebhookServer
    clock: FakeClock

    def put_webhooks(self, document: dict[str, Any]) -> None:
        self.session.client("secretsmanager").put_secret_value(
            SecretId=self.secret_arn, SecretString=json.dumps(document)
        )

    def install(self, *, secret_id: str | None = None, policy: RetryPolicy | None = None) -> ChatNotifier:
        """Build the notifier the handler will use (secret cache off, so put_webhooks takes effect)."""
        settings = ChatSettings(
            chat_secret_arn=secret_id or self.secret_arn,
            dashboard_url=DASHBOARD_URL,
            chat_secret_max_age=0,
            topic_arn=TOPIC_ARN,
        )
        notifier = wiring.build_notifier(
            settings,
            session=self.session,
            host_override=overrides(self.server.url),
            sleep=self.clock.sleep,
            monotonic=self.clock.monotonic,
            policy=policy,
        )
        wiring.set_notifier(notifier)
        return notifier


@pytest.fixture
def chat(webhook_server: WebhookServer, clock: FakeClock) -> Iterator[ChatSandbox]:
    """moto with the webhook secret holding all four URLs, the loopback server, and the notifier installed."""
    with mock_aws():
        session = boto3.Session(region_name="eu-west-1")
        arn = session.client("secretsmanager").create_secret(
            Name=SECRET_NAME, SecretString=json.dumps({str(k): v for k, v in WEBHOOK_URLS.items()})
        )["ARN"]
        sandbox = ChatSandbox(session, arn, webhook_server, clock)
        sandbox.install()
        try:
            yield sandbox
        finally:
            wiring.set_notifier(None)
