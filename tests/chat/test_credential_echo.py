"""An upstream token endpoint that echoes the rule's credentials back (in its error body, in a
challenge header) leaves them in no error, tag result, log line, SNS report or chat message.

Real HTTP on loopback: the rule's secret lives in (moto's) Secrets Manager, the registry client reads
it and sends it to a token endpoint on a fault server, and the notifier posts the resulting report to
the loopback webhook server.
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable, Iterator

import pytest

from ptc_sync.credentials import SecretsManagerCredentials, registry_credentials
from ptc_sync.logs import service_logger
from ptc_sync.models import Outcome, TagResult, UpstreamKind, UpstreamRef
from ptc_sync.registry import RegistryClient, RetryPolicy
from ptc_sync.registry.errors import RegistryError
from ptc_sync.report import build_notification
from testbed.fault_server import FaultServer, Recorded, Reply, json_reply
from testbed.runtime import FakeClock, FakeContext
from tests.chat.conftest import ChatSandbox
from tests.chat.reports import run
from tests.chat.sample import sns_event
from tests.conftest import load_handler

HUB = "registry-1.docker.io"
HUB_AUTH = "auth.docker.io"
REPO = "library/app"
MANIFEST = f"/v2/{REPO}/manifests/1.0"
USER = "hub-ci-bot"
TOKEN = "Vw3nKq8ZpT6rLx2Hm9Jd"  # no recognisable format: only what the redactor was told masks it
PAIR = base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
FORMS = {
    "raw": TOKEN,
    "base64 of user:token": PAIR,
    "start of the base64": PAIR[:12],
    "base64 of the token": base64.b64encode(TOKEN.encode()).decode(),
    "url-safe base64": base64.urlsafe_b64encode(f"{USER}:{TOKEN}".encode()).decode(),
}
notifier_handler = load_handler("notifier").lambda_handler


def echoes(shape: Callable[[str], str]) -> Callable[[Recorded], Reply]:
    """A token endpoint refusing the request, with ``shape`` of the Authorization it got in the body."""

    def reply(rec: Recorded) -> Reply:
        message = shape(rec.header("Authorization") or "")
        return json_reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": message}]})

    return reply


def _decoded(header: str) -> str:
    return base64.b64decode(header.removeprefix("Basic ")).decode()


ECHOES: dict[str, Callable[[str], str]] = {
    "the header": lambda auth: f"bad credentials in {auth}",
    "the base64 alone": lambda auth: f"cannot verify {auth.removeprefix('Basic ')}",
    "the decoded pair": lambda auth: f"user:password {_decoded(auth)} refused",
    "the token alone": lambda auth: f"token {_decoded(auth).partition(':')[2]} revoked",
    "base64 cut by the client's bound": lambda auth: "x" * 150 + auth.removeprefix("Basic "),
    "as JSON": lambda auth: json.dumps({"password": _decoded(auth).partition(":")[2], "Authorization": auth}),
}


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def secret_ref(chat: ChatSandbox) -> UpstreamRef:
    arn = chat.session.client("secretsmanager").create_secret(
        Name="ecr-pullthroughcache/docker-hub",
        SecretString=json.dumps({"username": USER, "accessToken": TOKEN}),
    )["ARN"]
    return UpstreamRef(HUB, REPO, UpstreamKind.DOCKER_HUB, "docker-hub", credential_arn=arn)


def everything_seen(texts: list[str]) -> list[str]:
    return [f"{name} in {text[:80]!r}" for text in texts for name, form in FORMS.items() if form in text]


@pytest.mark.parametrize("echo", ECHOES, ids=list(ECHOES))
def test_an_echoing_token_endpoint_leaks_no_credential(
    echo: str,
    chat: ChatSandbox,
    fault: FaultServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ref = secret_ref(chat)
    credentials = SecretsManagerCredentials(chat.session.client("secretsmanager"), max_age=0)
    fault.script(
        MANIFEST, Reply(401, {"WWW-Authenticate": f'Bearer realm="https://{HUB_AUTH}/token",service="hub"'})
    )
    fault.script("/token", echoes(ECHOES[echo]))
    client = RegistryClient(
        registry_credentials(credentials),
        host_override={HUB: fault.url, HUB_AUTH: fault.url},
        retry=RetryPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2, total_budget=5.0),
        clock=FakeClock(),
        connect_timeout=2.0,
        read_timeout=2.0,
    )
    try:
        with pytest.raises(RegistryError) as raised:
            client.resolve_digest(ref, "1.0")
    finally:
        client.close()

    # the endpoint did get the credentials, and did echo them: otherwise this test proves nothing
    token_requests = fault.requests_for("/token")
    assert token_requests
    assert token_requests[0].header("Authorization") == f"Basic {PAIR}"
    error = raised.value
    assert "HTTP 401" in str(error)

    # the sync turns the error into the tag's reason (sync.py: reason=str(error)), and logs it
    result = TagResult(
        ref.rule_prefix + "/" + REPO, "1.0", ref.rule_prefix, Outcome.UPSTREAM_ERROR, reason=str(error)
    )
    logger = service_logger(service="echo-test")
    logger.error("upstream error", extra={"reason": error.message, "raw": repr(error)})
    report = run(result, errors=(f"rule docker-hub: {error}",))
    notification = build_notification(report)
    summary = notifier_handler(sns_event(notification.message), FakeContext("ptc-sync-ChatNotifierFunction"))
    assert summary["status"] == "ok"
    posted = [request.body.decode() for request in chat.server.received]
    assert len(posted) == 4

    seen: list[str] = [
        str(error),
        repr(error),
        pickle.loads(pickle.dumps(error)).message,  # noqa: S301 - our own bytes
        result.reason,
        notification.message,
        notification.subject,
        *posted,
        caplog.text,
        *(f"{record.getMessage()} {record.__dict__}" for record in caplog.records),
        capsys.readouterr().out,
    ]
    assert not everything_seen(seen)
    assert "***" in result.reason
