"""No secret leaves through what people read: known credential values (the rule's Secrets Manager
secret, an ECR authorization token, the chat webhook URLs) are used for real in the least-privilege
scenarios plus the failure paths most likely to quote them (upstream refusing the credentials, a chat
webhook failing, the operator CLI), and every log line (with its structured fields), report, SNS
message, tag reason, dead letter, exception message and CLI output is searched for them, raw, base64
and inside Basic headers.
"""

from __future__ import annotations

import base64
import json
import logging

import pytest

from ptc_sync import cli
from ptc_sync.chat import wiring as chat_wiring
from ptc_sync.chat.settings import ChatSettings
from ptc_sync.report import build_notification
from testbed.fault_server import Recorded, Reply
from testbed.registry import RegistryServer
from testbed.runtime import FakeContext
from testbed.sandbox import HUB_HOST, HUB_USER, PUBLIC_HOST
from tests.chat.conftest import SECRET_TOKENS, WEBHOOK_URLS, WebhookServer, overrides
from tests.chat.conftest import Reply as HookReply
from tests.chat.sample import sample_report, sns_event
from tests.reliability import harness, test_iam

ECR_TOKEN_PASSWORD = "210987654321-auth-token"  # what moto's GetAuthorizationToken hands out


def forms(secret: str, user: str | None = None) -> set[str]:
    found = {secret, base64.b64encode(secret.encode()).decode()}
    if user is not None:
        found.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return found


PAIR = base64.b64encode(f"{HUB_USER[0]}:{HUB_USER[1]}".encode()).decode()
SECRETS = (
    forms(HUB_USER[1], HUB_USER[0])
    | forms(ECR_TOKEN_PASSWORD, "AWS")
    | {token for token in SECRET_TOKENS.values()}
    | {str(url) for url in WEBHOOK_URLS.values()}
)


def render(record: logging.LogRecord) -> str:
    """A log record as a log line would carry it: the message, every structured field, the traceback."""
    fields = {k: v for k, v in record.__dict__.items() if k not in {"msg", "args", "exc_info"}}
    text = f"{record.getMessage()} {json.dumps(fields, default=str)}"
    if record.exc_info and record.exc_info[1] is not None:
        text += f" {record.exc_info[1]!r} {record.exc_info[1]}"
    return text


def test_no_secret_in_logs_reports_messages_errors_or_cli_output(
    registry: RegistryServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # the functions' own loggers at DEBUG (LogLevel allows it); libraries at INFO, as Lambda runs them
    # (botocore's DEBUG lines print whole responses, GetSecretValue's included, in any program)
    caplog.set_level(logging.INFO)
    for name in ("ptc-sync", "ptc_sync", "service_undefined"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[str] = []
    for world in harness.world_of(registry):
        box = world.box
        # 1. the least-privilege scenarios: Basic auth with the rule's secret, an assumed role's ECR
        #    token, the chat webhooks, refreshes, a rollback, requests, idempotency
        chat_arn = test_iam.run_scenarios(world, test_iam.Recorder())
        seen += [json.dumps(m) for m in box.messages()]
        # the scan means something only if the values went where they belong
        sent = [r.header("authorization") or "" for r in world.upstream.requests]
        assert any(base64.b64encode(f"{HUB_USER[0]}:{HUB_USER[1]}".encode()).decode() in h for h in sent)
        assert any(base64.b64encode(f"AWS:{ECR_TOKEN_PASSWORD}".encode()).decode() in h for h in sent)

        # 2. upstream refuses the credentials (401 to a request that carried them), on every host
        cached = harness.cache_repo(world, "secret-refused", stale=("stable",), prefix="docker-hub")
        world.upstream.inject(lambda p: p == "/v2/", Reply(401, {"WWW-Authenticate": 'Basic realm="u"'}))
        prefix = f"/v2/{cached.upstream_repo}/"
        world.upstream.inject(
            lambda p, prefix=prefix: p.startswith(prefix),
            Reply(401, {"WWW-Authenticate": 'Basic realm="u", error="invalid_token"'}),
        )
        app = harness.build(world, repository_include=cached.name)
        out = harness.run_fanout(world, app, app, lambda: caplog.records)
        seen += out.texts + [json.dumps(d) for d in out.dead_letters] + [json.dumps(out.planned)]
        seen += [json.dumps(m) for m in box.messages()]
        assert any("HTTP 401" in r.reason for r in out.results), out.text()

        # 2b. an upstream that echoes the credentials it was sent into its error body: the run's
        #     state items (tag state, results, the journal) and the CLI reading them back stay clean
        echo = harness.cache_repo(world, "secret-echoed", stale=("stable",), prefix="docker-hub")
        world.upstream.heal()
        world.upstream.inject(lambda p: p == "/v2/", Reply(401, {"WWW-Authenticate": 'Basic realm="u"'}))

        def echoed(rec: Recorded) -> Reply:
            auth = rec.header("authorization") or ""
            decoded = base64.b64decode(auth.removeprefix("Basic ") or "").decode(errors="replace")
            body = json.dumps({"errors": [{"code": "DENIED", "message": f"bad {auth} ({decoded})"}]})
            return Reply(
                401,
                {"Content-Type": "application/json", "WWW-Authenticate": 'Basic realm="u"'},
                body.encode(),
            )

        echo_prefix = f"/v2/{echo.upstream_repo}/"
        # HEAD answers 405, so the client falls back to GET, whose error body is read and quoted
        world.upstream.inject(lambda p, prefix=echo_prefix: p.startswith(prefix), Reply(405), method="HEAD")
        world.upstream.inject(lambda p, prefix=echo_prefix: p.startswith(prefix), echoed, method="GET")
        app = harness.build(world, repository_include=echo.name)
        out = harness.run_fanout(world, app, app, lambda: caplog.records)
        assert any("DENIED: bad Basic" in r.reason for r in out.results), out.text()
        echoed_back = [r for r in world.upstream.requests if r.path.startswith(echo_prefix)]
        assert any(PAIR in (r.header("authorization") or "") for r in echoed_back), "the echo got the secret"
        seen += out.texts + [json.dumps(out.planned)] + [json.dumps(m) for m in box.messages()]
        items = world.client("dynamodb").scan(TableName=box.table_name)["Items"]
        assert any("secret-echoed" in json.dumps(i) for i in items), "the run's items are in the scan"
        seen += [json.dumps(item) for item in items]
        for command in (["history", "--since", "2d"], ["runs", "--output", "json"]):
            code = cli.main([*command, "--region", "us-east-1", "--table", box.table_name])
            captured = capsys.readouterr()
            assert code in {0, 1}, captured.err
            seen += [captured.out, captured.err]
        world.upstream.heal()

        # 3. a chat webhook failing, retried and given up
        server = WebhookServer()
        server.start()
        try:
            server.script("/services/", *[HookReply(500, b"oops")] * 5)
            chat_wiring.set_notifier(
                chat_wiring.build_notifier(
                    ChatSettings(chat_secret_arn=chat_arn, chat_secret_max_age=0),
                    session=harness.new_session(),
                    host_override=overrides(server.url),
                    sleep=lambda _s: None,
                )
            )
            with pytest.raises(Exception) as failed:  # noqa: PT011 - ChatDeliveryError, for Lambda to retry
                harness.notifier_handler()(
                    sns_event(build_notification(sample_report()).message), FakeContext("notifier")
                )
            seen += [str(failed.value), repr(failed.value)]
        finally:
            server.stop()
            chat_wiring.set_notifier(None)

        # 4. the operator CLI over the same account (check and status, table and JSON)
        overrides_args = [f"--upstream-override={h}={world.upstream.url}" for h in (PUBLIC_HOST, HUB_HOST)]
        for command in (["check", "--output", "json"], ["status"], ["check", "--rule", "docker-hub"]):
            code = cli.main([*command, "--region", "us-east-1", *overrides_args])
            assert code in {0, 1, 2}
            captured = capsys.readouterr()
            seen += [captured.out, captured.err]
        world.upstream.heal()

    seen += [render(r) for r in caplog.records]
    seen += [capsys.readouterr().out]
    assert len(seen) > 50, "the transcript covers the scenarios"
    leaks = sorted({secret for secret in SECRETS for text in seen if secret in text})
    assert not leaks, f"secret values in logs, reports or output: {[s[:6] + '…' for s in leaks]}"
