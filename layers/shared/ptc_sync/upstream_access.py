"""ECR-to-ECR upstreams: when ptc-sync's own read path is refused, say which trust or policy to add.

ptc-sync reads an ECR upstream registry as the read role of its account (``UpstreamRoleArns``) or as
the function's own role (credentials.py). Two things can be missing, and each has one fix:

- the read role does not trust the function (``sts:AssumeRole`` refused): ``UpstreamTrustMissing``,
  "role … does not trust …: add … to the role's trust policy";
- the upstream repository's policy does not grant the reader (the registry answers 401/403):
  ``UpstreamPolicyMissing``, "repository policy of <account>/<repository> does not grant
  ecr:BatchGetImage to …". Same-account reads need the reader's own IAM policy instead; the message
  says that.

Decided by type, never by error text: the resolver below takes the registry client's typed errors
for ECR upstreams and the credentials provider's remembered refusal (``refusal``). The reason names
the upstream repository but no tag, so a report shows one line for all of a repository's tags, and
the provider asks STS once per account per ``failure_ttl``. The tag itself is never touched: the
result is ``upstream_error``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from ptc_sync.credentials import UpstreamRoleTrustError
from ptc_sync.models import RateLimitStatus, ResolvedDigest, UpstreamKind, UpstreamRef
from ptc_sync.registry.errors import (
    CredentialsUnavailableError,
    ForbiddenError,
    RegistryError,
    UnauthorizedError,
)
from ptc_sync.upstream import UpstreamMappingError, parse_ecr_host

PULL_ACTIONS = "ecr:BatchGetImage, ecr:GetDownloadUrlForLayer and ecr:BatchCheckLayerAvailability"


class UpstreamTrustMissing(CredentialsUnavailableError):
    """The read role of an ECR upstream account does not trust ptc-sync's function."""

    kind = "credentials_unavailable"

    def __init__(self, message: str, *, host: str = "", repository: str = "", remedy: str = "") -> None:
        super().__init__(message, host=host, repository=repository)
        self.remedy = remedy


class UpstreamPolicyMissing(ForbiddenError):
    """The ECR upstream repository's policy (or, same-account, the reader's own policy) does not let
    ptc-sync's reader pull."""

    kind = "forbidden"

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        repository: str = "",
        status: int | None = 403,
        remedy: str = "",
    ) -> None:
        super().__init__(message, host=host, repository=repository, status=status)
        self.remedy = remedy


class ReadPath(Protocol):
    """What the explanation needs of the ECR credentials provider (credentials.py)."""

    def principal_for(self, ref: UpstreamRef) -> str: ...

    def caller_arn(self) -> str: ...

    def refusal(self, ref: UpstreamRef) -> UpstreamRoleTrustError | None: ...


class Resolver(Protocol):
    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = ...
    ) -> Iterator[tuple[UpstreamRef, str, ResolvedDigest | RegistryError]]: ...

    def rate_limit(self, host: str) -> RateLimitStatus | None: ...

    def rate_limits(self) -> tuple[RateLimitStatus, ...]: ...

    def list_tags(self, ref: UpstreamRef, page_size: int = ...) -> Iterator[str]: ...


def explain(ref: UpstreamRef, error: RegistryError, path: ReadPath) -> RegistryError:
    """``error`` as the precise access error when it is one on an ECR upstream, else unchanged."""
    if ref.kind is not UpstreamKind.ECR or isinstance(error, UpstreamTrustMissing | UpstreamPolicyMissing):
        return error
    try:
        account, region = parse_ecr_host(ref.host)
    except UpstreamMappingError:
        return error
    if isinstance(error, CredentialsUnavailableError):
        refused = path.refusal(ref)
        if refused is None:
            return error
        return UpstreamTrustMissing(
            str(refused), host=ref.host, repository=ref.repository, remedy=refused.remedy
        )
    if not isinstance(error, ForbiddenError | UnauthorizedError):
        return error
    reader = path.principal_for(ref)
    own_account = reader.split(":")[4] if reader.startswith("arn:") else ""
    repository_arn = f"arn:aws:ecr:{region}:{account}:repository/{ref.repository}"
    if own_account == account:
        remedy = f"grant {reader} {PULL_ACTIONS} on {repository_arn} in its IAM policy"
        message = f"{reader} may not pull {account}/{ref.repository}: {remedy}"
    else:
        remedy = (
            f"add a statement to the repository policy of {repository_arn} allowing {PULL_ACTIONS} "
            f"to {reader}"
        )
        message = (
            f"repository policy of {account}/{ref.repository} does not grant ecr:BatchGetImage to "
            f"{reader}: {remedy}"
        )
    return UpstreamPolicyMissing(
        message, host=ref.host, repository=ref.repository, status=error.status, remedy=remedy
    )


class ExplainingResolver:
    """The registry client as the comparer sees it, with ECR upstream access errors made precise."""

    def __init__(self, inner: Resolver, path: ReadPath) -> None:
        self._inner = inner
        self._path = path

    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = 32
    ) -> Iterator[tuple[UpstreamRef, str, ResolvedDigest | RegistryError]]:
        for ref, tag, answer in self._inner.resolve_many(items, max_workers=max_workers):
            yield ref, tag, explain(ref, answer, self._path) if isinstance(answer, RegistryError) else answer

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        return self._inner.rate_limit(host)

    def rate_limits(self) -> tuple[RateLimitStatus, ...]:
        return self._inner.rate_limits()

    def list_tags(self, ref: UpstreamRef, page_size: int = 1000) -> Iterator[str]:
        try:
            yield from self._inner.list_tags(ref, page_size)
        except RegistryError as exc:
            raise explain(ref, exc, self._path) from None
