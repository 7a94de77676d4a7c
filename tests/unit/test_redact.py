"""The one redactor: every form of a known credential, token-like strings, secret URLs, unsafe
characters and length, applied where results, errors and log lines are made."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import pickle
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from ptc_sync.chat.webhooks import parse_webhook_secret
from ptc_sync.credentials import (
    Credentials,
    CredentialsError,
    EcrAuthorizationCredentials,
    SecretsManagerCredentials,
    StaticCredentials,
)
from ptc_sync.logs import redact_package_loggers, service_logger
from ptc_sync.models import MAX_REASON_CHARS, Outcome, TagResult, UpstreamKind, UpstreamRef
from ptc_sync.redact import MASK, redact, redact_value, register_credentials, register_secret
from ptc_sync.registry.errors import UnauthorizedError

USER = "ci-robot"
PASSWORD = "Zq8rT2vLm9Nw4Kx7"  # no recognisable token format: only the registry knows it
ODD_PASSWORD = 'p@ss/w"rd+Secret=1'  # one that percent- and JSON-escaping change


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


PAIR = b64(f"{USER}:{PASSWORD}")
FORMS = {
    "raw": PASSWORD,
    "base64 of user:password": PAIR,
    "url-safe base64 of user:password": b64url(f"{USER}:{PASSWORD}"),
    "base64 of the password": b64(PASSWORD),
    "base64 without padding": PAIR.rstrip("="),
}


@pytest.fixture(autouse=True, scope="module")
def _known() -> None:
    register_credentials(USER, PASSWORD)
    register_credentials("odd-user", ODD_PASSWORD)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the rule's own credentials, in every form a server might echo
        (f"denied for {PASSWORD}", f"denied for {MASK}"),
        (f"Authorization: Basic {PAIR}", f"Authorization: Basic {MASK}"),
        (f"echoed {PAIR} back", f"echoed {MASK} back"),
        (f"echoed {b64url(f'{USER}:{PASSWORD}')}", f"echoed {MASK}"),
        (f"pw {b64(PASSWORD)}!", f"pw {MASK}!"),
        (f"cut off: {PAIR[:11]}", f"cut off: {MASK}"),  # an echo truncated by a bound upstream
        (f"cut off: {PASSWORD[:9]})", f"cut off: {MASK})"),
        (f"as json {json.dumps(ODD_PASSWORD)}", f'as json "{MASK}"'),
        (f"as query {quote(ODD_PASSWORD, safe='')}", f"as query {MASK}"),
        (f"{USER}:{PASSWORD}", f"{USER}:{MASK}"),
        # token-like strings nobody registered
        ("Authorization: Bearer abc.def-ghi_123", f"Authorization: Bearer {MASK}"),
        ("basic    dXNlcjpwYXNzd29yZA==", f"basic    {MASK}"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end", f"token {MASK} end"),
        ("pat ghp_" + "a1B2" * 9, f"pat {MASK}"),
        ("hub dckr_pat_" + "Xy9_" * 6, f"hub {MASK}"),
        ("key AKIAIOSFODNN7EXAMPLE used", f"key {MASK} used"),
        ("blob AbCdEfGh1234567890AbCdEfGh1234567890XyZ9 end", f"blob {MASK} end"),
        ("hex " + "0a1b2c3d" * 6, f"hex {MASK}"),
        # values of secret-named fields
        ("GET /token?scope=x&access_token=abc123&b=1", f"GET /token?scope=x&access_token={MASK}&b=1"),
        ("password=hunter22 next", f"password={MASK} next"),
        ("X-Amz-Security-Token=FQoGZXIvYXdzE", f"X-Amz-Security-Token={MASK}"),
        ('{"token":"abc\\"def","expires_in":300}', f'{{"token":"{MASK}","expires_in":300}}'),
        ('{"accessToken": "s3cr3t"}', f'{{"accessToken": "{MASK}"}}'),
        ("{'password': 'hunter2'}", f"{{'password': '{MASK}'}}"),
        # URLs that carry credentials, webhook URLs
        ("https://bob:pw@registry.example.com/v2/", f"https://{MASK}@registry.example.com/v2/"),
        ("git+https://tok@host/x", f"git+https://{MASK}@host/x"),
        ("see https://hooks.slack.com/services/T0/B0/XyZ123 now", f"see https://hooks.slack.com/{MASK} now"),
        (
            "https://prod-1.westeurope.logic.azure.com:443/workflows/a/triggers?sig=SeCrEt&sv=1",
            f"https://prod-1.westeurope.logic.azure.com/{MASK}",
        ),
        ("(https://discord.com/api/webhooks/1122/TokEn)", f"(https://discord.com/{MASK})"),
        (
            "https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t",
            f"https://chat.googleapis.com/{MASK}",
        ),
        # unsafe characters
        ("rtl \u202eevil\u202c and \u2066iso\u2069 \u200fmark", "rtl evil and iso mark"),
        ("ansi \x1b[31mred\x1b[0m\r\n next\tcol", "ansi [31mred[0m\n next\tcol"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent: state read back and redacted again is unchanged


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "ab" * 32,
        "docker-hub/library/python:3.13-slim",
        "ghcr/acme/api:" + "0123456789abcdef" * 3,  # a tag that is a commit id
        "ecr-public/docker/library/alpine-a-very-long-repository-name-without-capitals-1234",
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
        'Basic realm="registry"',
        "registry-1.docker.io/library/node:lts: GET manifest: HTTP 401 unauthorized (UNAUTHORIZED: denied)",
        "run 8c1f0e2a-9b7d-4c3e-8f6a-5b4c3d2e1f0a, trace 1-5759e988-bd862e3fe1be46a994272793",
        "monkey=banana, turkey=club",
        "`0123456789ab` → `fedcba987654` (linux/amd64, linux/arm64)",
        "line one\nline two",
    ],
)
def test_keeps_what_is_no_secret(text: str) -> None:
    assert redact(text) == text


def test_bounds_the_length_after_redacting() -> None:
    long = f"{'x' * 95}{PASSWORD}{'y' * 50}"
    out = redact(long, limit=100)
    assert len(out) == 100
    assert out.endswith("…")
    assert PASSWORD[:4] not in out  # redacted first, then cut: no half secret survives the cut
    assert redact("y" * 10_000) == "y" * 1999 + "…"
    assert redact("y" * 10_000, limit=None) == "y" * 10_000


def test_redact_value_masks_secret_named_fields_and_walks_containers() -> None:
    value = {
        "password": "anything-at-all",
        "authorization": "whatever",
        "message": f"failed with {PAIR}",
        "nested": [{"detail": PASSWORD}, (f"x {PASSWORD}",)],
        "count": 3,
        "credential_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ecr-pullthroughcache/x",
    }
    assert redact_value(value) == {
        "password": MASK,
        "authorization": MASK,
        "message": f"failed with {MASK}",
        "nested": [{"detail": MASK}, (f"x {MASK}",)],
        "count": 3,
        "credential_arn": value["credential_arn"],
    }


def test_tag_result_redacts_and_bounds_its_free_text() -> None:
    result = TagResult(
        "docker-hub/library/node",
        "lts",
        "docker-hub",
        Outcome.UPSTREAM_ERROR,
        reason=f"token: HTTP 401 (UNAUTHORIZED: got Basic {PAIR}) \u202e" + "z" * 5000,
        platforms=(f"linux/{PASSWORD}",),
        details={"note": f"pw={PASSWORD}"},
    )
    assert PAIR not in result.reason
    assert "Basic ***" in result.reason
    assert "\u202e" not in result.reason
    assert len(result.reason) == MAX_REASON_CHARS
    assert result.platforms == (f"linux/{MASK}",)
    assert result.details == {"note": f"pw={MASK}"}
    assert dataclasses.replace(result, stale_since=datetime.now(UTC)).reason == result.reason


def test_registry_errors_are_redacted_when_made_and_stay_so_when_pickled() -> None:
    err = UnauthorizedError(f"host/repo:1: token: HTTP 401 ({PASSWORD})", host="host", status=401)
    assert PASSWORD not in str(err)
    assert PASSWORD not in repr(err)
    again = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert str(again) == str(err)
    assert again.status == 401


def test_credentials_errors_are_redacted() -> None:
    assert PASSWORD not in str(CredentialsError(f"cannot read secret x: {PAIR}"))


def test_secrets_manager_credentials_are_registered_when_read() -> None:
    token = "Ru7wQp3xKd8sLm2N"  # seen nowhere before this test
    assert redact(f"echo {token}") == f"echo {token}"
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = client.create_secret(
            Name="ecr-pullthroughcache/docker-hub",
            SecretString=json.dumps({"username": "hub-user", "accessToken": token}),
        )["ARN"]
        provider = SecretsManagerCredentials(client, max_age=0)
        ref = UpstreamRef(
            "registry-1.docker.io", "library/x", UpstreamKind.DOCKER_HUB, "docker-hub", credential_arn=arn
        )
        creds = provider.credentials_for(ref)
    assert creds is not None
    assert redact(f"echo {token}") == f"echo {MASK}"
    assert redact(creds.basic_header()) == f"Basic {MASK}"
    assert redact(creds.basic_header().removeprefix("Basic ")) == MASK


class _FakeEcr:
    """GetAuthorizationToken's answer shape, nothing else."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_authorization_token(self, registryIds: list[str]) -> dict[str, Any]:
        return {"authorizationData": [{"authorizationToken": self.token, "expiresAt": datetime.now(UTC)}]}


def test_ecr_authorization_tokens_are_registered_when_fetched() -> None:
    password = "eyJwYXlsb2FkIjoiUnE5" + "Tz4Kw8Lp2Vx6Mb" * 4  # ECR's are long base64 JSON
    token = b64(f"AWS:{password}")
    provider = EcrAuthorizationCredentials(ecr_client_factory=lambda _region, _creds: _FakeEcr(token))  # type: ignore[arg-type,return-value]
    ref = UpstreamRef(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "team/app", UpstreamKind.ECR, "upstream-ecr"
    )
    creds = provider.credentials_for(ref)
    assert creds is not None
    assert creds.secret == password
    for form in (token, password, token[:20], b64(password)):
        assert redact(f"x {form} y") == f"x {MASK} y"


def test_static_credentials_are_registered() -> None:
    StaticCredentials({"quay.io": Credentials("q-user", "Hx4mVt8rYp2Lw6Qz")})
    assert redact("Hx4mVt8rYp2Lw6Qz") == MASK


def test_webhook_url_secrets_are_registered_when_the_secret_is_read() -> None:
    slack_token = "SlAcKsEcReT0123456789x"
    sig = "SiGnAtUrE0123456789abc"
    parse_webhook_secret(
        json.dumps(
            {
                "slack": f"https://hooks.slack.com/services/T01/B02/{slack_token}",
                "teams": f"https://x.logic.azure.com/workflows/1/triggers?api-version=2016-06-01&sig={sig}",
            }
        )
    )
    assert redact(f"echo {slack_token} and {sig}") == f"echo {MASK} and {MASK}"
    assert redact("https://hooks.example.com/services/") == "https://hooks.example.com/services/"


def test_register_secret_ignores_empty_values() -> None:
    register_secret("")
    register_secret(None)
    assert redact("plain text") == "plain text"


def test_service_logger_redacts_message_extra_fields_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    logger = service_logger(service="redact-test", stream=stream)
    logger.info("token endpoint said %s", f"Basic {PAIR}", extra={"body": PASSWORD, "password": "x"})
    try:
        raise RuntimeError(f"boom {PASSWORD}")
    except RuntimeError:
        logger.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == f"token endpoint said Basic {MASK}"
    assert lines[0]["body"] == MASK
    assert lines[0]["password"] == MASK
    assert f"RuntimeError: boom {MASK}" in lines[1]["exception"]
    handled = "\n".join(caplog.text.splitlines())  # what a handler after the Logger's own sees
    assert f"Basic {MASK}" in handled
    for form in FORMS.values():
        assert form not in stream.getvalue()
        assert form not in handled


def test_package_loggers_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("ptc_sync.registry.client")  # exists once the client is imported
    redact_package_loggers()
    redact_package_loggers()  # idempotent: one filter per logger
    plain = logging.getLogger("ptc_sync.registry.client")
    assert len([f for f in plain.filters if type(f).__name__ == "RedactingFilter"]) == 1
    with caplog.at_level(logging.INFO, logger="ptc_sync"):
        plain.warning("prefetch failed: %s", f"Basic {PAIR}", extra={"detail": PASSWORD})
    record = caplog.records[-1]
    assert record.getMessage() == f"prefetch failed: Basic {MASK}"
    assert record.__dict__["detail"] == MASK
