"""The upstream registry client (distribution / OCI distribution-spec HTTP API over urllib3).

client = RegistryClient(credentials, max_per_host=8)   # credentials: a CredentialsFn, or None
resolved = client.resolve_digest(ref, "3.20")          # one HEAD; ResolvedDigest(digest, media_type)
for ref, tag, result in client.resolve_many(items):    # bounded pool, shared tokens
    ...
"""

from ptc_sync.registry.authorizer import BasicCredentials, CredentialsFn
from ptc_sync.registry.client import RegistryClient, next_link
from ptc_sync.registry.concurrency import ResolveResult
from ptc_sync.registry.errors import (
    ERROR_KINDS,
    BadResponseError,
    CredentialsUnavailableError,
    ForbiddenError,
    InvalidReferenceError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    UnauthorizedError,
    UpstreamUnavailableError,
)
from ptc_sync.registry.ratelimit import within_budget
from ptc_sync.registry.transport import Clock, RetryPolicy, SystemClock

__all__ = [
    "ERROR_KINDS",
    "BadResponseError",
    "BasicCredentials",
    "Clock",
    "CredentialsFn",
    "CredentialsUnavailableError",
    "ForbiddenError",
    "InvalidReferenceError",
    "NotFoundError",
    "RateLimitedError",
    "RegistryClient",
    "RegistryError",
    "ResolveResult",
    "RetryPolicy",
    "SystemClock",
    "UnauthorizedError",
    "UpstreamUnavailableError",
    "next_link",
    "within_budget",
]
