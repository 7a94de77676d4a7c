"""Credentials from the rule: Secrets Manager (Powertools, cached) and ECR GetAuthorizationToken (+ STS)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ptc_sync.credentials import (
    Credentials,
    CredentialsError,
    EcrAuthorizationCredentials,
    RuleCredentialProvider,
    SecretsManagerCredentials,
    StaticCredentials,
)
from ptc_sync.models import UpstreamKind, UpstreamRef

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SECRET_VALUE = "dckr_pat_TOPSECRET-value-123"


class CallCounter:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(params)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def hub(arn: str | None) -> UpstreamRef:
    return UpstreamRef(
        "registry-1.docker.io", "library/alpine", UpstreamKind.DOCKER_HUB, "hub", credential_arn=arn
    )


def ecr_ref(role: str | None = None) -> UpstreamRef:
    return UpstreamRef(ECR_HOST, "team/app", UpstreamKind.ECR, "ecr", custom_role_arn=role)


@pytest.fixture
def secrets(aws: None) -> tuple[Any, CallCounter]:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    counter = CallCounter()
    client.meta.events.register("provide-client-params.secrets-manager.GetSecretValue", counter)
    return client, counter


def make_secret(client: Any, name: str, value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return str(client.create_secret(Name=name, SecretString=text)["ARN"])


def test_secret_read_once_then_cached_and_reread_after_invalidate(secrets: tuple[Any, CallCounter]) -> None:
    client, counter = secrets
    arn = make_secret(client, "ecr-pullthroughcache/hub", {"username": "bob", "accessToken": SECRET_VALUE})
    provider = SecretsManagerCredentials(client, max_age=300)
    first = provider.credentials_for(hub(arn))
    assert first == Credentials("bob", SECRET_VALUE)
    assert provider.credentials_for(hub(arn)) == first
    assert len(counter.calls) == 1, "second read must come from the Powertools cache"

    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "bob", "accessToken": "rotated"})
    )
    assert provider.credentials_for(hub(arn)).secret == SECRET_VALUE  # still cached
    provider.invalidate(hub(arn))
    assert provider.credentials_for(hub(arn)).secret == "rotated"
    assert len(counter.calls) == 2


def test_no_credential_arn_is_anonymous(secrets: tuple[Any, CallCounter]) -> None:
    client, counter = secrets
    assert SecretsManagerCredentials(client).credentials_for(hub(None)) is None
    assert counter.calls == []


def test_secret_never_in_repr_or_errors(secrets: tuple[Any, CallCounter]) -> None:
    client, _ = secrets
    creds = Credentials("bob", SECRET_VALUE)
    assert SECRET_VALUE not in repr(creds)
    assert SECRET_VALUE not in str(creds)
    assert "redacted" in repr(creds)
    assert creds.basic_header() == "Basic " + base64.b64encode(f"bob:{SECRET_VALUE}".encode()).decode()

    missing = make_secret(client, "ecr-pullthroughcache/missing", {"username": SECRET_VALUE})
    with pytest.raises(CredentialsError, match="lacks accessToken") as info:
        SecretsManagerCredentials(client).credentials_for(hub(missing))
    assert SECRET_VALUE not in str(info.value)
    assert info.value.__cause__ is None

    garbled = make_secret(client, "ecr-pullthroughcache/garbled", "{" + SECRET_VALUE)
    with pytest.raises(CredentialsError, match="is not JSON") as info:
        SecretsManagerCredentials(client).credentials_for(hub(garbled))
    assert SECRET_VALUE not in str(info.value)
    assert info.value.__suppress_context__  # the JSON error (which quotes the text) is not chained


def test_missing_secret_and_wrong_name_are_reported(secrets: tuple[Any, CallCounter]) -> None:
    client, counter = secrets
    gone = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/gone-AbCdEf"
    with pytest.raises(CredentialsError, match=r"cannot read secret .*ecr-pullthroughcache/gone"):
        SecretsManagerCredentials(client).credentials_for(hub(gone))
    other = make_secret(client, "team/db-password", {"username": "u", "accessToken": "p"})
    with pytest.raises(CredentialsError, match="is not named ecr-pullthroughcache/"):
        SecretsManagerCredentials(client).credentials_for(hub(other))
    assert len(counter.calls) == 1  # the wrongly named secret was never read


class FactoryRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str] | None]] = []
        self.token_calls = CallCounter()

    def __call__(self, region: str, creds: Any) -> Any:
        self.calls.append((region, dict(creds) if creds else None))
        kw = dict(creds) if creds else {}
        client = boto3.client("ecr", region_name=region, **kw)
        client.meta.events.register("provide-client-params.ecr.GetAuthorizationToken", self.token_calls)
        return client


def test_ecr_token_assumes_the_read_role_of_the_upstream_account_never_the_rules(aws: None) -> None:
    sts = boto3.client("sts", region_name="us-east-1")
    assumed = CallCounter()
    sts.meta.events.register("provide-client-params.sts.AssumeRole", assumed)
    factory = FactoryRecorder()
    # moto's tokens expire 2015-01-01: look at them from the hour before
    before_expiry = dt.datetime(2014, 12, 31, 23, 0, tzinfo=dt.UTC)
    role = "arn:aws:iam::123456789012:role/ptc-upstream-reader"
    provider = EcrAuthorizationCredentials(
        sts_client=sts, ecr_client_factory=factory, now=lambda: before_expiry, read_roles=[role]
    )
    rule_role = "arn:aws:iam::123456789012:role/ecr-pull-through-cache"  # ECR assumes it, not us

    creds = provider.credentials_for(ecr_ref(rule_role))
    assert creds is not None
    assert creds.username == "AWS"
    assert creds.secret
    assert creds.expires_at is not None
    assert creds.expires_at.tzinfo is not None
    assert [c["RoleArn"] for c in assumed.calls] == [role]
    region, used = factory.calls[0]
    assert region == "eu-west-1"
    assert used is not None
    assert used["aws_session_token"]
    assert factory.token_calls.calls[0]["registryIds"] == ["123456789012"]
    assert creds.secret not in repr(creds)

    assert provider.credentials_for(ecr_ref(rule_role)) == creds  # cached until near expiry
    assert len(factory.token_calls.calls) == 1
    provider.invalidate(ecr_ref(rule_role))
    provider.credentials_for(ecr_ref(rule_role))
    assert len(factory.token_calls.calls) == 2


def test_ecr_token_without_role_uses_own_identity_and_refreshes_near_expiry(aws: None) -> None:
    factory = FactoryRecorder()
    now = [dt.datetime(2014, 12, 31, 0, 0, tzinfo=dt.UTC)]  # moto's tokens expire 2015-01-01
    provider = EcrAuthorizationCredentials(ecr_client_factory=factory, now=lambda: now[0], refresh_before=600)
    first = provider.credentials_for(ecr_ref())
    assert first is not None
    assert first.expires_at is not None
    assert factory.calls == [("eu-west-1", None)]
    now[0] = first.expires_at - dt.timedelta(seconds=601)
    provider.credentials_for(ecr_ref())
    assert len(factory.token_calls.calls) == 1
    now[0] = first.expires_at - dt.timedelta(seconds=599)
    provider.credentials_for(ecr_ref())
    assert len(factory.token_calls.calls) == 2
    # a token that already looks expired (clock skew) is still reused for a minute
    now[0] = first.expires_at + dt.timedelta(hours=1)
    provider.credentials_for(ecr_ref())
    provider.credentials_for(ecr_ref())
    assert len(factory.token_calls.calls) == 3
    now[0] += dt.timedelta(seconds=61)
    provider.credentials_for(ecr_ref())
    assert len(factory.token_calls.calls) == 4
    assert provider.credentials_for(hub(None)) is None  # not an ECR upstream


def test_ecr_errors_name_the_step_not_secrets(aws: None) -> None:
    def broken(region: str, creds: Any) -> Any:
        client = boto3.client("ecr", region_name=region)

        def deny(**_: Any) -> None:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetAuthorizationToken"
            )

        client.meta.events.register("before-call.ecr.GetAuthorizationToken", deny)
        return client

    provider = EcrAuthorizationCredentials(ecr_client_factory=broken)
    with pytest.raises(
        CredentialsError, match=r"GetAuthorizationToken for 123456789012 in eu-west-1 failed: AccessDenied"
    ):
        provider.credentials_for(ecr_ref())


def test_rule_provider_dispatches_by_kind_and_secret() -> None:
    ecr_creds = Credentials("AWS", "ecr-token")
    hub_creds = Credentials("bob", "hub-token")
    provider = RuleCredentialProvider(
        secrets=StaticCredentials({"registry-1.docker.io": hub_creds}),
        ecr=StaticCredentials({ECR_HOST: ecr_creds}),
    )
    assert provider.credentials_for(ecr_ref()) is ecr_creds
    assert (
        provider.credentials_for(hub("arn:aws:secretsmanager:us-east-1:1:secret:ecr-pullthroughcache/x"))
        is hub_creds
    )
    assert provider.credentials_for(hub(None)) is None  # anonymous: no secret named
    with pytest.raises(CredentialsError, match="no secrets provider"):
        RuleCredentialProvider().credentials_for(
            hub("arn:aws:secretsmanager:us-east-1:1:secret:ecr-pullthroughcache/x")
        )
