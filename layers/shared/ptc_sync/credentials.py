"""Credentials for upstream registries, as the pull-through cache rule names them.

Over 400 lines: the two credential sources below share one redaction and caching discipline, and
the ECR read path's typed trust errors; the registry itself only sees a plain callable.

- A rule's ``credentialArn``: a Secrets Manager secret (name under ``ecr-pullthroughcache/``) holding
  JSON ``{"username": …, "accessToken": …}``, read through Powertools Parameters with ``max_age`` caching.
- An ECR upstream (ECR-to-ECR rule): ``GetAuthorizationToken`` in the upstream's region, as ptc-sync's
  own read path: the read role configured for the upstream account (``UpstreamRoleArns``, a role that
  trusts ptc-sync's functions), else the function's own role (same account, or an upstream repository
  policy that grants it). Never the rule's ``customRoleArn``: ECR assumes that one, and its documented
  trust policy names only ``pullthroughcache.ecr.amazonaws.com``. Tokens are cached until near expiry;
  a role that does not trust the caller is ``UpstreamRoleTrustError``, tried again only after
  ``failure_ttl``.

Secrets never appear in logs, exception messages or reprs: every value obtained here is registered
with ``ptc_sync.redact`` before it is used, so any text that echoes it (an upstream error body, a
header) is masked wherever it goes.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.models import UpstreamKind, UpstreamRef
from ptc_sync.redact import redact, register_credentials, register_secret
from ptc_sync.registry.errors import CredentialsUnavailableError
from ptc_sync.upstream import UpstreamMappingError, parse_ecr_host

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sts.client import STSClient

    from ptc_sync.registry import CredentialsFn


SECRET_NAME_PREFIX: Final = "ecr-pullthroughcache/"  # noqa: S105 - a name prefix, not a password
ACCESS_DENIED: Final = frozenset({"AccessDenied", "AccessDeniedException"})
logger = Logger(child=True)


class CredentialsError(Exception):
    """Credentials could not be obtained. The message names the source, never a secret value."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))  # it may quote botocore's text


class UpstreamRoleTrustError(CredentialsError):
    """The read role for an upstream account refused ``sts:AssumeRole`` by ptc-sync's function: its
    trust policy does not name the caller. ``remedy`` says which statement to add."""

    def __init__(self, role_arn: str, caller_arn: str, account: str) -> None:
        self.role_arn = role_arn
        self.caller_arn = caller_arn
        self.account = account
        self.remedy = (
            f"add {caller_arn} to the trust policy of {role_arn} (Allow sts:AssumeRole), or drop the "
            f"role and grant {caller_arn} ecr:BatchGetImage in the repository policies of account {account}"
        )
        super().__init__(f"role {role_arn} does not trust {caller_arn}: {self.remedy}")


def role_arn_of(caller_arn: str) -> str:
    """``arn:aws:sts::1:assumed-role/Name/session`` → ``arn:aws:iam::1:role/Name``; others unchanged
    (the role's path is not in the session ARN)."""
    parts = caller_arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        name = parts[5].split("/")[1]
        return f"{parts[0]}:{parts[1]}:iam::{parts[4]}:role/{name}"
    return caller_arn


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    secret: str = field(repr=False)
    expires_at: datetime | None = None  # None: until rotated

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<redacted>, expires_at={self.expires_at!r})"

    __str__ = __repr__


class CredentialProvider(Protocol):
    def credentials_for(self, ref: UpstreamRef) -> Credentials | None:
        """Credentials for ``ref``'s upstream, or None for anonymous access. Raises CredentialsError."""
        ...

    def invalidate(self, ref: UpstreamRef) -> None:
        """Upstream refused the credentials: read them again next time (a rotated secret)."""
        ...


def _secret_name(arn_or_name: str) -> str:
    """The secret's name from an ARN (``arn:aws:secretsmanager:…:secret:NAME-AbCdEf``) or a name."""
    if arn_or_name.startswith("arn:"):
        parts = arn_or_name.split(":", 6)
        if len(parts) == 7 and parts[2] == "secretsmanager" and parts[5] == "secret":
            return parts[6]
        raise CredentialsError(f"{arn_or_name[:200]!r} is not a Secrets Manager secret ARN")
    return arn_or_name


class SecretsManagerCredentials:
    """The rule's ``credentialArn`` secret, cached ``max_age`` seconds by Powertools Parameters."""

    def __init__(
        self,
        client: SecretsManagerClient | None = None,
        *,
        max_age: int = 300,
        provider: SecretsProvider | None = None,
    ) -> None:
        if provider is None:
            provider = SecretsProvider(boto3_client=client)
        self._provider = provider
        self._max_age = max_age
        self._lock = threading.Lock()
        self._stale: set[str] = set()

    def credentials_for(self, ref: UpstreamRef) -> Credentials | None:
        arn = ref.credential_arn
        if not arn:
            return None
        if not _secret_name(arn).startswith(SECRET_NAME_PREFIX):
            raise CredentialsError(
                f"secret {arn[:200]} is not named {SECRET_NAME_PREFIX}…, as ECR requires for "
                "pull-through cache"
            )
        with self._lock:
            force = arn in self._stale
            self._stale.discard(arn)
            try:
                raw = self._provider.get(arn, max_age=self._max_age, force_fetch=force)
            except GetParameterError as exc:
                raise CredentialsError(f"cannot read secret {arn[:200]}: {str(exc)[:300]}") from None
        return self._parse(arn, raw)

    @staticmethod
    def _parse(arn: str, raw: object) -> Credentials:
        if isinstance(raw, bytes):
            try:
                raw = raw.decode()
            except UnicodeDecodeError:
                raise CredentialsError(f"secret {arn[:200]} is binary, not JSON text") from None
        if not isinstance(raw, str):
            raise CredentialsError(f"secret {arn[:200]} has no string value")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise CredentialsError(f"secret {arn[:200]} is not JSON") from None
        if not isinstance(doc, dict):
            raise CredentialsError(f"secret {arn[:200]} is not a JSON object")
        missing = [
            k for k in ("username", "accessToken") if not isinstance(doc.get(k), str) or not doc.get(k)
        ]
        if missing:
            raise CredentialsError(f"secret {arn[:200]} lacks {' and '.join(missing)} (non-empty strings)")
        register_credentials(doc["username"], doc["accessToken"])
        return Credentials(username=doc["username"], secret=doc["accessToken"])

    def invalidate(self, ref: UpstreamRef) -> None:
        if ref.credential_arn:
            with self._lock:
                self._stale.add(ref.credential_arn)


AwsCredentials = Mapping[str, str]  # aws_access_key_id, aws_secret_access_key, aws_session_token
EcrClientFactory = Callable[[str, AwsCredentials | None], "ECRClient"]


def default_ecr_client(region: str, creds: AwsCredentials | None) -> ECRClient:
    if creds is None:
        return boto3.client("ecr", region_name=region)
    return boto3.client(
        "ecr",
        region_name=region,
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
        aws_session_token=creds["aws_session_token"],
    )


def session_ecr_factory(session: boto3.Session, config: Any = None) -> EcrClientFactory:
    """ECR clients in any region as ``session`` (its own credentials), or as assumed credentials."""

    def factory(region: str, creds: AwsCredentials | None) -> ECRClient:
        if creds is None:
            return session.client("ecr", region_name=region, config=config)
        return session.client(
            "ecr",
            region_name=region,
            config=config,
            aws_access_key_id=creds["aws_access_key_id"],
            aws_secret_access_key=creds["aws_secret_access_key"],
            aws_session_token=creds["aws_session_token"],
        )

    return factory


class EcrAuthorizationCredentials:
    """Basic credentials for a private ECR upstream from ``GetAuthorizationToken`` (valid 12 h).

    ptc-sync's own read path (module docstring): the call is made as ``read_roles``' role for the
    upstream account (``sts:AssumeRole``) when there is one, else as the function's own role, asking
    for the upstream registry (``registryIds``). The rule's ``customRoleArn`` is never assumed. Tokens
    are cached per (host, role) until ``refresh_before`` seconds before they expire (and at least a
    minute); a role that refuses the caller is remembered ``failure_ttl`` seconds, so a run with many
    tags asks STS once and reports one reason.
    """

    def __init__(
        self,
        *,
        sts_client: STSClient | None = None,
        ecr_client_factory: EcrClientFactory = default_ecr_client,
        read_roles: Iterable[str] = (),
        session_name: str = "ptc-sync-upstream",
        refresh_before: float = 600.0,
        failure_ttl: float = 300.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sts = sts_client
        self._factory = ecr_client_factory
        self._roles: dict[str, str] = {}
        for arn in read_roles:
            self._roles.setdefault(arn.split(":")[4], arn)
        self._session_name = session_name
        self._refresh_before = refresh_before
        self._failure_ttl = timedelta(seconds=failure_ttl)
        self._now = now
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[Credentials, datetime]] = {}
        self._refused: dict[str, tuple[UpstreamRoleTrustError, datetime]] = {}
        self._caller: str | None = None

    def _sts_client(self) -> STSClient:
        if self._sts is None:
            self._sts = boto3.client("sts")
        return self._sts

    def read_role(self, account: str) -> str | None:
        """The role ptc-sync reads ``account``'s registry as (UpstreamRoleArns), or None: its own."""
        return self._roles.get(account)

    def caller_arn(self) -> str:
        """The function's own role ARN (GetCallerIdentity, once), for errors that must name it."""
        if self._caller is None:
            try:
                self._caller = role_arn_of(self._sts_client().get_caller_identity()["Arn"])
            except (ClientError, BotoCoreError, KeyError):
                return "this function's role"
        return self._caller

    def principal_for(self, ref: UpstreamRef) -> str:
        """Who reads ``ref``'s registry: its account's read role, else the function's own role."""
        try:
            account, _region = parse_ecr_host(ref.host)
        except UpstreamMappingError:
            return self.caller_arn()
        return self.read_role(account) or self.caller_arn()

    def refusal(self, ref: UpstreamRef) -> UpstreamRoleTrustError | None:
        """The trust refusal remembered for ``ref``'s account (typed: what the run reports)."""
        try:
            account, _region = parse_ecr_host(ref.host)
        except UpstreamMappingError:
            return None
        with self._lock:
            refused = self._refused.get(account)
        return refused[0] if refused is not None and self._now() < refused[1] else None

    def credentials_for(self, ref: UpstreamRef) -> Credentials | None:
        if ref.kind is not UpstreamKind.ECR:
            return None
        try:
            account, region = parse_ecr_host(ref.host)
        except UpstreamMappingError as exc:
            raise CredentialsError(str(exc)) from None
        role = self.read_role(account)
        key = (ref.host, role or "")
        with self._lock:
            now = self._now()
            refused = self._refused.get(account)
            if refused is not None and now < refused[1]:
                raise refused[0]
            cached = self._cache.get(key)
            if cached is not None and now < cached[1]:
                return cached[0]
            try:
                creds = self._fetch(account, region, role)
            except UpstreamRoleTrustError as exc:
                self._refused[account] = (exc, now + self._failure_ttl)
                logger.warning(
                    "ECR upstream read role refused",
                    extra={"role": exc.role_arn, "caller": exc.caller_arn, "remedy": exc.remedy},
                )
                raise
            # refresh ahead of expiry, but never more often than a minute (a skewed clock that sees
            # the token as expired must not turn every request into a GetAuthorizationToken call)
            expires = creds.expires_at or now
            refresh_at = max(expires - timedelta(seconds=self._refresh_before), now + timedelta(seconds=60))
            self._cache[key] = (creds, refresh_at)
            return creds

    def _assume(self, role: str, account: str) -> dict[str, str]:
        try:
            assumed = self._sts_client().assume_role(
                RoleArn=role, RoleSessionName=self._session_name, DurationSeconds=900
            )["Credentials"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code in ACCESS_DENIED:
                # the template grants sts:AssumeRole on exactly the UpstreamRoleArns: a refusal of a
                # role named there is the role's trust policy
                raise UpstreamRoleTrustError(role, self.caller_arn(), account) from None
            raise CredentialsError(f"AssumeRole {role} failed: {code}") from None
        except BotoCoreError as exc:
            raise CredentialsError(f"AssumeRole {role} failed: {exc.__class__.__name__}") from None
        register_secret(assumed["SecretAccessKey"])
        register_secret(assumed["SessionToken"])
        return {
            "aws_access_key_id": assumed["AccessKeyId"],
            "aws_secret_access_key": assumed["SecretAccessKey"],
            "aws_session_token": assumed["SessionToken"],
        }

    def _fetch(self, account: str, region: str, role: str | None) -> Credentials:
        aws_creds = self._assume(role, account) if role else None
        step = f"GetAuthorizationToken as {role}" if role else "GetAuthorizationToken"
        try:
            ecr = self._factory(region, aws_creds)
            out = ecr.get_authorization_token(registryIds=[account])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise CredentialsError(f"{step} for {account} in {region} failed: {code}") from None
        except BotoCoreError as exc:
            raise CredentialsError(
                f"{step} for {account} in {region} failed: {exc.__class__.__name__}"
            ) from None
        data: list[Any] = list(out.get("authorizationData") or [])
        if not data or not data[0].get("authorizationToken"):
            raise CredentialsError(f"GetAuthorizationToken for {account} in {region} returned no token")
        register_secret(data[0]["authorizationToken"])
        try:
            decoded = base64.b64decode(data[0]["authorizationToken"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(
                f"GetAuthorizationToken for {account} returned a malformed token"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username or not password:
            raise CredentialsError(f"GetAuthorizationToken for {account} returned a malformed token")
        register_credentials(username, password)
        expires = data[0].get("expiresAt")
        if not isinstance(expires, datetime):
            expires = self._now() + timedelta(hours=1)  # ECR says 12 h; without a date, assume less
        elif expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return Credentials(username=username, secret=password, expires_at=expires)

    def invalidate(self, ref: UpstreamRef) -> None:
        try:
            account, _region = parse_ecr_host(ref.host)
        except UpstreamMappingError:
            return
        with self._lock:
            self._cache.pop((ref.host, self.read_role(account) or ""), None)


class RuleCredentialProvider:
    """The production provider: ECR upstreams through GetAuthorizationToken, others through the rule's
    Secrets Manager secret when it has one, anonymous otherwise."""

    def __init__(
        self,
        *,
        secrets: CredentialProvider | None = None,
        ecr: CredentialProvider | None = None,
    ) -> None:
        self._secrets = secrets
        self._ecr = ecr

    def _for(self, ref: UpstreamRef) -> CredentialProvider | None:
        if ref.kind is UpstreamKind.ECR:
            return self._ecr
        if ref.credential_arn:
            if self._secrets is None:
                raise CredentialsError(
                    f"rule {ref.rule_prefix!r} names a secret and no secrets provider is set"
                )
            return self._secrets
        return None

    def credentials_for(self, ref: UpstreamRef) -> Credentials | None:
        provider = self._for(ref)
        return provider.credentials_for(ref) if provider else None

    def invalidate(self, ref: UpstreamRef) -> None:
        try:
            provider = self._for(ref)
        except CredentialsError:
            return
        if provider is not None:
            provider.invalidate(ref)


class StaticCredentials:
    """Fixed credentials per upstream host (tests and the local demo)."""

    def __init__(self, by_host: Mapping[str, Credentials]) -> None:
        self._by_host = dict(by_host)
        for creds in self._by_host.values():
            register_credentials(creds.username, creds.secret)

    def credentials_for(self, ref: UpstreamRef) -> Credentials | None:
        return self._by_host.get(ref.host)

    def invalidate(self, ref: UpstreamRef) -> None:
        return None


def registry_credentials(provider: CredentialProvider | None) -> CredentialsFn | None:
    """``provider`` as the registry client's credentials function (the registry package imports
    neither boto3 nor this module). ``refused``: upstream refused the last ones, read them again. A
    CredentialsError becomes the registry's CredentialsUnavailableError."""
    if provider is None:
        return None
    source = provider

    def credentials(ref: UpstreamRef, refused: bool) -> Credentials | None:
        try:
            if refused:
                source.invalidate(ref)
            return source.credentials_for(ref)
        except CredentialsError as exc:
            raise CredentialsUnavailableError(
                f"{ref}: credentials unavailable: {exc}", host=ref.host, repository=ref.repository
            ) from None

    return credentials
