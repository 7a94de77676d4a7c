"""Typed errors of the upstream registry client.

Every error names what was asked (host, repository, reference), what happened (HTTP status or
transport failure) and carries a stable ``kind`` string the comparer maps to an outcome.
Messages never contain credentials or tokens: every message passes ``ptc_sync.redact`` when the
error is made, whatever upstream text it quotes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, TypedDict, Unpack

from ptc_sync.models import RateLimitStatus
from ptc_sync.redact import redact


def describe_target(host: str, repository: str = "", reference: str = "") -> str:
    """``host/repository:tag`` or ``host/repository@sha256:…``, as precise as what is known."""
    if not repository:
        return host
    if not reference:
        return f"{host}/{repository}"
    sep = "@" if ":" in reference else ":"
    return f"{host}/{repository}{sep}{reference}"


class Target(TypedDict, total=False):
    """What an error names: the keyword arguments every RegistryError takes (subclasses pass them on)."""

    host: str
    repository: str
    reference: str
    status: int | None


class RegistryError(Exception):
    """Base class: an upstream registry could not answer what was asked."""

    kind: ClassVar[str] = "registry_error"

    def __init__(
        self,
        message: str,
        *,
        host: str = "",
        repository: str = "",
        reference: str = "",
        status: int | None = None,
    ) -> None:
        message = redact(message)  # messages quote upstream bodies and headers: no credential survives
        super().__init__(message)
        self.message = message
        self.host = host
        self.repository = repository
        self.reference = reference
        self.status = status

    @property
    def target(self) -> str:
        return describe_target(self.host, self.repository, self.reference)

    def _state(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "repository": self.repository,
            "reference": self.reference,
            "status": self.status,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only constructor arguments: rebuild explicitly so errors survive pickling
        return (_rebuild, (type(self), self.message, self._state()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


def _rebuild(cls: type[RegistryError], message: str, state: dict[str, Any]) -> RegistryError:
    return cls(message, **state)


class NotFoundError(RegistryError):
    """The repository or the tag does not exist upstream (HTTP 404)."""

    kind = "not_found"


class UnauthorizedError(RegistryError):
    """Upstream wants credentials, or refused the ones given (HTTP 401, also from a token endpoint)."""

    kind = "unauthorized"


class ForbiddenError(RegistryError):
    """Authenticated, but not allowed (HTTP 403)."""

    kind = "forbidden"


class RateLimitedError(RegistryError):
    """Upstream's rate limit is exhausted (HTTP 429) and waiting would exceed the retry bounds."""

    kind = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        reset_at: datetime | None = None,
        rate_limit: RateLimitStatus | None = None,
        **target: Unpack[Target],
    ) -> None:
        target.setdefault("status", 429)
        super().__init__(message, **target)
        self.reset_at = reset_at
        self.rate_limit = rate_limit

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "reset_at": self.reset_at, "rate_limit": self.rate_limit}


class UpstreamUnavailableError(RegistryError):
    """Upstream did not answer usefully: 5xx or 408 after retries, timeouts, refused or reset connections."""

    kind = "upstream_unavailable"


class BadResponseError(RegistryError):
    """Upstream answered something that cannot be trusted or used: a malformed or mismatching digest,
    invalid JSON, an unexpected status, a redirect or realm that would leave HTTPS."""

    kind = "bad_response"


class RealmRefusedError(BadResponseError):
    """A challenge named a token realm the rule's credentials must not go to: not HTTPS, an IP address,
    a local name, or a host that is neither the upstream nor a documented realm of the upstream's kind.
    Nothing was sent to the realm. ``realm_host`` names it; ``reason`` is a stable code (``not_https``,
    ``user_info``, ``ip_address``, ``local_name``, ``port``, ``foreign_host``, ``no_host``)."""

    kind = "realm_refused"

    def __init__(
        self, message: str, *, realm_host: str = "", reason: str = "", **target: Unpack[Target]
    ) -> None:
        super().__init__(message, **target)
        self.realm_host = realm_host
        self.reason = reason

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "realm_host": self.realm_host, "reason": self.reason}


class CredentialsUnavailableError(RegistryError):
    """The rule's credentials could not be obtained (Secrets Manager, GetAuthorizationToken, STS)."""

    kind = "credentials_unavailable"


class InvalidReferenceError(RegistryError, ValueError):
    """The caller asked for something no registry can have: a malformed host, repository, tag or digest."""

    kind = "invalid_reference"


ERROR_KINDS: tuple[str, ...] = tuple(
    cls.kind
    for cls in (
        NotFoundError,
        UnauthorizedError,
        ForbiddenError,
        RateLimitedError,
        UpstreamUnavailableError,
        BadResponseError,
        RealmRefusedError,
        CredentialsUnavailableError,
        InvalidReferenceError,
    )
)
