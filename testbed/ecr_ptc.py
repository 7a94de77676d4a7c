"""Amazon ECR pull-through cache (PTC) emulation on top of moto: test and demo infrastructure.

Not shipped in the Lambda layer. While moto's ``mock_aws()`` is active in this process,

    with mock_aws(), PullThroughCacheEmulator({"registry-1.docker.io": registry.url}) as ptc:
        ecr = boto3.client("ecr")
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub", ...)
        ecr.batch_get_image(repositoryName="docker-hub/library/alpine", imageIds=[{"imageTag": "3"}])

makes moto's ECR behave like ECR with pull-through cache, importing from real registries over the
distribution HTTP API (own small urllib3 client; Basic and Bearer challenges answered with the rule's
secret). ``upstreams`` maps real-looking hosts to loopback registries; nothing else is contacted (an
unmapped host, token realm or redirect target is unreachable). It patches moto's ``ECRResponse``
(moto dispatches actions by method name) and ``uninstall()`` restores the class exactly; one emulator
at a time, one lock around every emulated call. Facts and their sources: docs/ecr-behaviour.md.
"Inferred" below means not documented by AWS and chosen here; tests/testbed/test_ecr_ptc_emulation.py
checks each.

Rules. Create/Describe/Delete/Update/ValidatePullThroughCacheRule with the request and response fields
of botocore's ECR model: prefix 2-30 characters of the model's pattern or ``ROOT``, the
``credentialArn`` pattern and length, the ``upstreamRegistry`` enum, ``createdAt``/``updatedAt``,
describe pagination (maxResults 1-1000, nextToken), PullThroughCacheRuleAlreadyExists/NotFound,
SecretNotFound (documented). ``customRoleArn`` is for ``ecr`` upstreams and needed only when the
upstream registry is in another account (documented: pull-through-cache-private; the role must be in the
rule's account, botocore). ``upstreamRepositoryPrefix`` is accepted for every kind (the model does not
restrict it; Chainguard's ECR guide uses it) and refused with a ROOT cache prefix unless it is ROOT
itself (documented: pull-through-cache-private-wildcards); ``ecr`` rules report ``ROOT`` when it was not
given. Inferred: credentials required for docker-hub, github, azure, gitlab, chainguard and refused for
the others; ``customRoleArn`` refused for non-``ecr`` kinds; the URL must be the enum's host (unknown
URL: UnsupportedUpstreamRegistryException); the secret must be in the rule's account and region
(UnableToAccessSecretException); model constraint violations raise ValidationException, semantic ones
InvalidParameterException; at most 50 rules; a trailing ``/`` of a prefix is dropped; the longest
matching prefix wins, ``ROOT`` last. Validate reports ``failure`` as "<code>: <reason>".

Pull (BatchGetImage). By tag in a repository under a rule: a tag absent from the cache is always fetched
upstream; the exact manifest bytes are stored, so the digest is their sha256 (moto's synthetic digests
never appear); an index brings every manifest it lists (by digest, untagged). Names map as prefix + "/"
+ upstream path (``ROOT``: the whole name; a rule's ``upstreamRepositoryPrefix``, of any kind, replaces
the cache prefix unless ROOT). The repository is created on the first import, MUTABLE and AES256
(repository creation templates are not emulated). By digest never reaches upstream: a digest never
cached is ImageNotFound (#2837). acceptedMediaTypes defaults to the API reference's three (no index
types). Every failure code is one of botocore's ImageFailureCode enum, nothing else (``FAILURE_CODES``).
Inferred: an image of a type not accepted is failure ImageNotFound (what real ECR answers is not public;
the enum has no better value) and a fresh import of such a type stores nothing; upstream answers map to
the enum (404 ImageNotFound, 401/403 UpstreamAccessDenied, 429 UpstreamTooManyRequests, else
UpstreamUnavailable). Docker Hub official images asked for without ``library/`` (``docker-hub/alpine``)
are UpstreamAccessDenied: Docker Hub answers 403 Forbidden, not "not found" (reported). An unusable
secret raises UnableToGetUpstreamImageException; pulls set ``lastRecordedPullTime`` exactly (ECR: "at
least once every 24 hours"), except a pull by a principal registered with
RegisterPullTimeUpdateExclusion (below). Schema 1 conversion is not emulated.

The 24-hour rule (documented). A cached tag is re-checked upstream only when pulled by tag more than
24 h after its last check; within 24 h the cache is served even if upstream moved. When the re-check
fails for any reason (unreachable, 404, secret, injected fault) the cache is served and the next pull
re-checks. An immutable tag (IMMUTABLE; for *_WITH_EXCLUSION the filters, matched as wildcards, decide)
is never moved. Inferred: the baseline is the last import or successful check, else the push; PutImage
of a tag counts as a check; a moved tag's old image stays, untagged. Every timestamp comes from ``clock``.

PutImage, DescribeImages, BatchDeleteImage, GetDownloadUrlForLayer (moto's replaced or missing).
PutImage stores sha256 of the exact bytes; imageDigest must match (ImageDigestDoesNotMatchException); an
immutable tag raises ImageTagAlreadyExistsException; referenced blobs must exist
(LayersNotFoundException) and an index's manifests (ReferencedImagesNotFoundException), unless
``strict_put_image_layers=False``; a blob referenced by any image of the repository counts as present
(inferred, PTC layers arrive lazily). DescribeImages: imageIds, filter.tagStatus, maxResults/nextToken,
imagePushedAt, lastRecordedPullTime, imageManifestMediaType, artifactMediaType (config type) and
imageSizeInBytes (inferred: sum of layer sizes; an index: its largest manifest, as the model says),
``imageStatus`` ACTIVE (archiving is not emulated, so filter.imageStatus ARCHIVED/ACTIVATING finds
nothing). BatchDeleteImage: the only tag deletes the image, one of several keeps it (documented); by
digest deletes all tags, refused with ImageReferencedByManifestList while an index lists it; an untagged
image still listed by an index stays. GetDownloadUrlForLayer: for a blob referenced by an image of the
repository; unreferenced but uploaded: LayerInaccessibleException; unknown: LayersNotFoundException.

Layers (reported: aws/containers-roadmap #939, #2304). A PTC blob ECR has not cached yet is not ECR's:
GetDownloadUrlForLayer asks upstream for it (failure: UnableToGetUpstreamLayerException), answers
upstream's own blob URL (``https://<upstream host>/v2/<path>/blobs/<digest>``) and caches the blob in
the background, done ``layer_cache_delay`` later on ``clock`` (default 0: cached by the next call, but
the first answer is still upstream's URL). Once cached (``imported_layers``) the answer is an S3-shaped
URL (not fetchable). BatchCheckLayerAvailability (moto's replaced so it sees the same layers): AVAILABLE
only for a blob ECR holds itself, pushed or cached; a blob an image references but ECR has not cached
answers ``uncached_layer_answer`` (unknown: UNAVAILABLE by default, or the failure MissingLayerDigest);
anything else MissingLayerDigest; a malformed digest InvalidLayerDigest; 1 to 100 digests.

Consistency and quotas. ``describe_lag`` (unknown, default off): after BatchDeleteImage removes a tag,
DescribeImages (by imageIds and listings) keeps showing the tag on its old digest for that long, even
once the tag is back on another image; BatchGetImage and PutImage see the truth. ``put_image_rate``
(documented quota 10/s per account and region, default off): more PutImage calls than that within one
second of ``clock`` raise ThrottlingException (refused calls do not count).

Background imports and faults (the seed article's large image; the real failure code is not
documented). ``import_in_background`` makes the first pull answer a failure (default
UpstreamUnavailable) or raise, the repository exists, and the image appears after N later
DescribeImages/BatchGetImage calls on it or once the clock passes a time. ``set_upstream_unreachable``
and ``fail_next_import`` inject upstream faults.

Pull-time exclusions (botocore 1.43). Register/Deregister/ListPullTimeUpdateExclusions per account and
region: principalArn of the model's pattern (an IAM role or user; ValidationException otherwise),
ExclusionAlreadyExists/ExclusionNotFound, list pagination (maxResults 1-1000). BatchGetImage by an
excluded principal leaves ``lastRecordedPullTime`` as it was (documented: "Amazon ECR will not record
the pull time if an excluded principal pulls an image"). The caller is who moto says it is: an
assumed-role session counts as its role's ARN, moto's default caller as
``arn:aws:iam::<account>:user/moto`` (inferred). No limit on the number of exclusions is emulated (none
is published).

Events. One ``ECR Pull Through Cache Action`` (source ``aws.ecr``) on moto's default bus per import
and per failed import or failed re-check, detail: rule-version, sync-status, ecr-repository-prefix,
repository-name, upstream-registry-url, image-tag, image-digest, failure-code, failure-reason
(documented fields). Inferred: sync-status ``FAILED`` on failure; image-digest only on success,
failure-* only on failure; rule-version counts rule updates from "1"; no event when a re-check finds
nothing new or an immutable tag. moto's delivery to SQS writes ``time`` as epoch seconds and drops
``account``; ``events`` keeps the full event with an ISO time.

Not emulated: IAM (``customRoleArn`` is checked for shape and account, ``ecr`` upstreams are read
anonymously), archive storage (every image is ACTIVE), cross-account registryId
(InvalidParameterException), ECR Image Action events, throttling of any call but PutImage. moto's
repository name check (kept) is stricter than the model's: it refuses ``a--b``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Final, Protocol, Self
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from moto.core.exceptions import JsonRESTError, ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    ImageAlreadyExistsException,
    ImageNotFoundException,
    RepositoryNotFoundException,
)
from moto.ecr.models import ECRBackend, Image, Repository, ecr_backends
from moto.ecr.responses import ECRResponse

from ptc_sync import mediatypes as mt
from ptc_sync.models import sha256_digest

DEFAULT_ACCOUNT_ID: Final = "123456789012"  # moto's default account
DEFAULT_REGION: Final = "us-east-1"
REFRESH_INTERVAL: Final = timedelta(hours=24)
MAX_RULES: Final = 50

EVENT_SOURCE: Final = "aws.ecr"
EVENT_DETAIL_TYPE: Final = "ECR Pull Through Cache Action"
SYNC_SUCCESS: Final = "SUCCESS"
SYNC_FAILED: Final = "FAILED"

SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
# What BatchGetImage accepts when acceptedMediaTypes is omitted: the API reference's valid values.
DEFAULT_ACCEPTED: Final = (SCHEMA1, mt.DOCKER_MANIFEST, mt.OCI_MANIFEST)

# Patterns and limits from botocore's ECR service model.
PREFIX_RE: Final = re.compile(
    r"^([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*\/?|ROOT)$"
)
CREDENTIAL_ARN_RE: Final = re.compile(
    r"^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$"
)
LAYER_DIGEST_RE: Final = re.compile(r"^[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+$")
IMAGE_DIGEST_RE: Final = re.compile(r"^sha256:[a-f0-9]{64}$")
UPSTREAM_REGISTRIES: Final = (
    "ecr",
    "ecr-public",
    "quay",
    "k8s",
    "docker-hub",
    "github-container-registry",
    "azure-container-registry",
    "gitlab-container-registry",
    "chainguard",
)
FIXED_HOSTS: Final[dict[str, str]] = {
    "ecr-public": "public.ecr.aws",
    "k8s": "registry.k8s.io",
    "quay": "quay.io",
    "docker-hub": "registry-1.docker.io",
    "github-container-registry": "ghcr.io",
    "gitlab-container-registry": "registry.gitlab.com",
    "chainguard": "cgr.dev",
}
AZURE_HOST_RE: Final = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.io$")
ECR_HOST_RE: Final = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
ROLE_ARN_RE: Final = re.compile(r"^arn:aws(-\w+)*:iam::([0-9]{12}):role/[\w+=,.@/-]+$")
SECRET_ARN_PARTS_RE: Final = re.compile(r"^arn:[^:]+:secretsmanager:([^:]+):([0-9]{12}):secret:.+$")
CREDENTIALS_REQUIRED: Final = frozenset(
    {
        "docker-hub",
        "github-container-registry",
        "azure-container-registry",
        "gitlab-container-registry",
        "chainguard",
    }
)
# botocore's ImageFailureCode enum, exactly: the only failure codes the emulation answers with.
FAILURE_CODES: Final = frozenset(
    {
        "InvalidImageDigest",
        "InvalidImageTag",
        "ImageTagDoesNotMatchDigest",
        "ImageNotFound",
        "MissingDigestAndTag",
        "ImageReferencedByManifestList",
        "KmsError",
        "UpstreamAccessDenied",
        "UpstreamTooManyRequests",
        "UpstreamUnavailable",
        "ImageInaccessible",
    }
)
# Exceptions BatchGetImage's model lists that a fault may raise instead of returning a failure.
RAISABLE_CODES: Final = frozenset(
    {"UnableToGetUpstreamImageException", "ServerException", "LimitExceededException"}
)
IMAGE_ACTIVE: Final = "ACTIVE"
IMAGE_STATUSES: Final = (IMAGE_ACTIVE, "ARCHIVED", "ACTIVATING")  # botocore's ImageStatus enum
PRINCIPAL_ARN_RE: Final = re.compile(
    r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\w+=,.@-]+(/[\w+=,.@-]+)*$"
)
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
LAYER_AVAILABLE: Final = "AVAILABLE"
LAYER_UNAVAILABLE: Final = "UNAVAILABLE"
# What BatchCheckLayerAvailability answers for a layer an image of the repository references but ECR has
# not cached yet (unknown: both are values of the model; the code must treat either as "not warm").
UNCACHED_LAYER_ANSWERS: Final = (LAYER_UNAVAILABLE, "MissingLayerDigest")
DEFAULT_LAYER_MEDIA_TYPE: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MAX_LAYER_DIGESTS: Final = 100  # BatchedOperationLayerDigestList: 1 to 100
PUT_IMAGE_QUOTA: Final = 10  # PutImage requests per second, per account and region (service-quotas.html)
BACKGROUND_REASON: Final = "Timed out while importing the image from the upstream registry"

_ACTIONS: Final = (
    "create_pull_through_cache_rule",
    "describe_pull_through_cache_rules",
    "delete_pull_through_cache_rule",
    "update_pull_through_cache_rule",
    "validate_pull_through_cache_rule",
    "batch_get_image",
    "put_image",
    "describe_images",
    "batch_delete_image",
    "get_download_url_for_layer",
    "batch_check_layer_availability",
    "register_pull_time_update_exclusion",
    "deregister_pull_time_update_exclusion",
    "list_pull_time_update_exclusions",
)
_MISSING: Final = object()


class EmulatedEcrError(ServiceException):
    """An ECR error of the emulator; moto serialises it by ``code``, the model's exception name.

    (Defined here, outside moto's packages: moto looks up the service model of an exception by the
    package that defines it, and ``moto.core`` has none.)"""


def _error(code: str, message: str) -> EmulatedEcrError:
    return EmulatedEcrError(code, message)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wildcard(pattern: str, value: str) -> bool:
    """ECR's tag filters: ``*`` matches any run of characters, everything else is literal."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None


class Clock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, delta: timedelta) -> None: ...


class FakeClock:
    """Time that moves only when told to; every emulated timestamp is read from it."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("time does not go backwards")
        self._now += delta


@dataclass(frozen=True, slots=True)
class ImportRecord:
    """One manifest import from upstream into the cache (a first pull, or a re-check that moved a tag)."""

    repository: str
    tag: str
    digest: str
    media_type: str
    upstream: str  # host/repository:tag
    at: datetime
    children: tuple[str, ...] = ()  # digests of an index's manifests, imported with it


@dataclass(frozen=True, slots=True)
class ImportedLayer:
    """One blob imported from upstream by GetDownloadUrlForLayer (a warmed layer)."""

    repository: str
    digest: str
    size: int
    upstream: str
    at: datetime


@dataclass(frozen=True, slots=True)
class UpstreamFetch:
    """One manifest request the emulated ECR made upstream; ``outcome`` is "ok" or a failure code."""

    host: str
    repository: str
    reference: str
    at: datetime
    outcome: str


@dataclass
class _Rule:
    prefix: str
    upstream_url: str
    upstream_registry: str
    registry_id: str
    created_at: datetime
    updated_at: datetime
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None
    version: int = 1

    def api(self, *, timestamps: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ecrRepositoryPrefix": self.prefix,
            "upstreamRegistryUrl": self.upstream_url,
            "registryId": self.registry_id,
            "upstreamRegistry": self.upstream_registry,
        }
        if timestamps:
            out["createdAt"] = self.created_at
            out["updatedAt"] = self.updated_at
        for key, value in (
            ("credentialArn", self.credential_arn),
            ("customRoleArn", self.custom_role_arn),
            ("upstreamRepositoryPrefix", self.upstream_repository_prefix),
        ):
            if value is not None:
                out[key] = value
        return out

    def upstream_repository(self, repository: str) -> str | None:
        """The upstream path this rule maps ``repository`` to, or None when the name is not under it."""
        if self.prefix == "ROOT":
            rest = repository
        elif repository.startswith(self.prefix + "/"):
            rest = repository[len(self.prefix) + 1 :]
        else:
            return None
        upstream_prefix = self.upstream_repository_prefix
        if upstream_prefix and upstream_prefix != "ROOT":
            return f"{upstream_prefix.rstrip('/')}/{rest}"
        return rest


class _UpstreamError(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass
class _Fetched:
    manifest: str
    media_type: str
    digest: str
    children: list[_Fetched] = field(default_factory=list)


@dataclass
class _Fault:
    code: str
    reason: str
    repository: str | None
    tag: str | None
    remaining: int


@dataclass
class _Background:
    repository: str | None
    tag: str | None
    ready_after_calls: int | None
    ready_after: timedelta | None
    failure_code: str
    failure_reason: str
    raise_code: str | None


@dataclass(frozen=True)
class _Target:
    """One tag of one PTC repository and where the rule says it comes from."""

    account: str
    region: str
    repository: str
    tag: str
    rule: _Rule
    upstream: str  # upstream repository path

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.account, self.region, self.repository, self.tag)

    @property
    def source(self) -> str:
        return f"{self.rule.upstream_url}/{self.upstream}:{self.tag}"


@dataclass(frozen=True)
class _CachingLayer:
    """A blob ECR is caching in the background after a GetDownloadUrlForLayer sent the client upstream."""

    account: str
    region: str
    repository: str
    digest: str
    size: int
    upstream: str  # host/repository
    ready_at: datetime


@dataclass(frozen=True)
class _LaggingTag:
    """A removed tag DescribeImages still shows, as it was, until ``until``."""

    digest: str
    until: datetime
    detail: dict[str, Any]


@dataclass
class _Pending:
    target: _Target
    fetched: _Fetched
    background: _Background
    ready_at: datetime | None
    calls_left: int | None


class _Call:
    """One ECR request as moto hands it to a response method."""

    def __init__(self, response: ECRResponse) -> None:
        self.response = response
        self.account: str = response.current_account
        self.region: str = response.region
        registry_id = response._get_param("registryId")
        if registry_id and registry_id != self.account:
            raise _error("InvalidParameterException", "the emulator does not serve cross-account registryId")

    def param(self, name: str, default: Any = None) -> Any:
        return self.response._get_param(name, default)

    @property
    def backend(self) -> ECRBackend:
        return ecr_backends[self.account][self.region]

    def repository(self, name: str) -> Repository:
        repository = self.backend.repositories.get(name)
        if repository is None:
            raise RepositoryNotFoundException(name, self.account)
        return repository

    def principal_arns(self) -> set[str]:
        """The IAM principal(s) this request is made as: an assumed role's ARN, an IAM user's, or
        ``arn:aws:iam::<account>:user/moto`` for moto's default credentials."""
        from moto.iam.models import iam_backends
        from moto.sts.models import sts_backends

        access_key = self.response.get_access_key()
        for account in list(sts_backends):
            for sts in sts_backends[account].values():
                assumed = sts.get_assumed_role_from_access_key(access_key)
                if assumed is not None:
                    return {assumed.role_arn, assumed.arn}
        for account in list(iam_backends):
            for iam in iam_backends[account].values():
                user = iam.get_user_from_access_key_id(access_key)
                if user is not None:
                    return {user.arn}
        return {f"arn:aws:iam::{self.account}:user/moto"}


class _UpstreamClient:
    """Just enough of the registry HTTP API for ECR's side of a pull: manifests, blobs and auth."""

    def __init__(
        self, emulator: PullThroughCacheEmulator, host: str, credentials: tuple[str, str] | None
    ) -> None:
        self.emulator = emulator
        self.host = host
        self.credentials = credentials
        self.base = emulator._base_url(host)
        self._authorization: dict[str, str] = {}  # scope (repository or "") -> Authorization value

    def _resolve(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in self.emulator.upstreams:
            if host in self.emulator.unreachable_hosts:
                raise _UpstreamError("UpstreamUnavailable", f"{host} is unreachable")
            base = self.emulator.upstreams[host]
            return base + parts.path + (f"?{parts.query}" if parts.query else "")
        if host in LOOPBACK_HOSTS:
            return url
        raise _UpstreamError("UpstreamUnavailable", f"{host} is not reachable from the emulation")

    def _http(self, method: str, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        hdrs = dict(headers)
        for _ in range(5):
            target = self._resolve(url)
            try:
                resp = self.emulator._http.request(method, target, headers=hdrs, redirect=False)
            except urllib3.exceptions.HTTPError as exc:
                raise _UpstreamError("UpstreamUnavailable", f"{self.host}: {type(exc).__name__}") from exc
            if resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            next_url = urljoin(url, resp.headers["Location"])
            if urlsplit(next_url).netloc != urlsplit(url).netloc:
                hdrs.pop("Authorization", None)  # never forward credentials to another host
            url = next_url
        raise _UpstreamError("UpstreamUnavailable", f"{self.host}: too many redirects")

    def _request(
        self, path: str, scope: str, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        url = f"https://{self.host}{path}"
        hdrs = dict(headers or {})
        if scope in self._authorization:
            hdrs["Authorization"] = self._authorization[scope]
        resp = self._http("GET", url, hdrs)
        if resp.status == 401 and "Authorization" not in hdrs:
            self._authorization[scope] = self._answer(resp.headers.get("WWW-Authenticate", ""), scope)
            hdrs["Authorization"] = self._authorization[scope]
            resp = self._http("GET", url, hdrs)
        return resp

    def _basic(self) -> str:
        assert self.credentials is not None
        user, token = self.credentials
        return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()

    def _answer(self, challenge: str, scope: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise _UpstreamError("UpstreamAccessDenied", f"{self.host} requires authentication")
            return self._basic()
        if scheme.lower() != "bearer":
            raise _UpstreamError(
                "UpstreamAccessDenied", f"{self.host} answered 401 without a usable challenge"
            )
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise _UpstreamError("UpstreamAccessDenied", f"{self.host}: bearer challenge without realm")
        query: dict[str, str] = {}
        if fields.get("service"):
            query["service"] = fields["service"]
        if scope:
            query["scope"] = f"repository:{scope}:pull"
        headers = {"Authorization": self._basic()} if self.credentials else {}
        realm = fields["realm"] + ("?" + urlencode(query) if query else "")
        resp = self._http("GET", realm, headers)
        if resp.status in (401, 403):
            raise _UpstreamError(
                "UpstreamAccessDenied", f"{self.host}: token request refused ({resp.status})"
            )
        if resp.status != 200:
            raise _UpstreamError("UpstreamUnavailable", f"{self.host}: token request failed ({resp.status})")
        try:
            doc = json.loads(resp.data)
            return "Bearer " + str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError) as exc:
            raise _UpstreamError("UpstreamUnavailable", f"{self.host}: malformed token response") from exc

    def _check(self, resp: urllib3.BaseHTTPResponse, what: str) -> None:
        if resp.status == 200:
            return
        if resp.status in (401, 403):
            raise _UpstreamError(
                "UpstreamAccessDenied", f"{self.host} denied access to {what} ({resp.status})"
            )
        if resp.status == 404:
            raise _UpstreamError("ImageNotFound", f"{what} not found upstream")
        if resp.status == 429:
            raise _UpstreamError("UpstreamTooManyRequests", f"{self.host} rate-limited {what}")
        raise _UpstreamError("UpstreamUnavailable", f"{self.host} answered {resp.status} for {what}")

    def ping(self) -> None:
        self._check(self._request("/v2/", ""), "/v2/")

    def manifest(self, repository: str, reference: str) -> _Fetched:
        what = f"{self.host}/{repository}:{reference}"
        resp = self._request(f"/v2/{repository}/manifests/{reference}", repository, {"Accept": mt.ACCEPT_ALL})
        self._check(resp, what)
        body = resp.data
        digest = sha256_digest(body)
        announced = resp.headers.get("Docker-Content-Digest")
        if (announced and announced != digest) or (reference.startswith("sha256:") and reference != digest):
            raise _UpstreamError("UpstreamUnavailable", f"{what}: manifest bytes do not match their digest")
        try:
            text = body.decode("utf-8")
            doc = json.loads(text)
        except ValueError as exc:
            raise _UpstreamError("ImageInaccessible", f"{what}: manifest is not UTF-8 JSON") from exc
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type in ("", "application/json", "application/octet-stream"):
            media_type = str(doc.get("mediaType", ""))
        return _Fetched(text, media_type, digest)

    def blob(self, repository: str, digest: str) -> bytes:
        resp = self._request(f"/v2/{repository}/blobs/{digest}", repository)
        self._check(resp, f"{self.host}/{repository}@{digest}")
        if sha256_digest(resp.data) != digest:
            raise _UpstreamError("UpstreamUnavailable", f"blob {digest} does not match its digest")
        return bytes(resp.data)


def _doc(image: Image) -> dict[str, Any]:
    try:
        doc = json.loads(image.image_manifest)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _blob_digests(doc: Mapping[str, Any]) -> list[str]:
    """Config and layer digests an image manifest references (foreign layers excluded)."""
    digests: list[str] = []
    config = doc.get("config")
    if isinstance(config, dict) and config.get("digest"):
        digests.append(str(config["digest"]))
    for layer in doc.get("layers") or []:
        if isinstance(layer, dict) and layer.get("digest") and not layer.get("urls"):
            digests.append(str(layer["digest"]))
    return digests


def _child_digests(doc: Mapping[str, Any]) -> list[str]:
    return [str(m["digest"]) for m in doc.get("manifests") or [] if isinstance(m, dict) and m.get("digest")]


def _by_tag(repository: Repository, tag: str) -> Image | None:
    return next((i for i in repository.images if tag in i.image_tags), None)


def _by_digest(repository: Repository, digest: str) -> Image | None:
    return next((i for i in repository.images if i.get_image_digest() == digest), None)


def _untag(image: Image, tag: str) -> None:
    image.image_tags.remove(tag)
    image.image_tag = image.image_tags[-1] if image.image_tags else None  # type: ignore[assignment]


def _tag_is_immutable(repository: Repository, tag: str) -> bool:
    mutability = str(getattr(repository.image_tag_mutability, "value", repository.image_tag_mutability))
    filters = [f["filter"] for f in repository.image_tag_mutability_exclusion_filters or []]
    excluded = any(_wildcard(f, tag) for f in filters)
    if mutability == "IMMUTABLE":
        return True
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return False


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _error("InvalidParameterException", "Invalid parameter at 'nextToken': invalid token") from exc
    if not isinstance(offset, int) or offset < 0:
        raise _error("InvalidParameterException", "Invalid parameter at 'nextToken': invalid token")
    return offset


def _max_results(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not 1 <= value <= 1000:
        raise _error(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy constraint: "
            "Member must have value between 1 and 1000",
        )
    return value


def _validate_prefix(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 2 <= len(value) <= 30 or not PREFIX_RE.fullmatch(value):
        raise _error(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy constraint: "
            f"Member must have length between 2 and 30 and satisfy regular expression pattern: "
            f"{PREFIX_RE.pattern}",
        )
    return value if value == "ROOT" else value.rstrip("/")


def _invalid_image_id(image_id: Mapping[str, str]) -> dict[str, str] | None:
    """The failure for an imageId that names no image at all, or None when it is well-formed."""
    if not image_id.get("imageTag") and not image_id.get("imageDigest"):
        return {
            "failureCode": "MissingDigestAndTag",
            "failureReason": "Invalid request parameters: both tag and digest cannot be null",
        }
    digest = image_id.get("imageDigest")
    if digest and not LAYER_DIGEST_RE.fullmatch(digest):
        return {
            "failureCode": "InvalidImageDigest",
            "failureReason": "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        }
    return None


def _failure(image_id: Mapping[str, str], code: str, reason: str) -> dict[str, Any]:
    return {"imageId": dict(image_id), "failureCode": code, "failureReason": reason}


class PullThroughCacheEmulator:
    """Makes moto's ECR behave like ECR pull-through cache while installed (a context manager).

    ``upstreams`` maps real upstream hosts (``registry-1.docker.io``, ``ghcr.io``, ...) to loopback
    base URLs (``http://127.0.0.1:PORT``). Use inside ``mock_aws()``; only one emulator at a time.
    """

    _installed: ClassVar[PullThroughCacheEmulator | None] = None

    def __init__(
        self,
        upstreams: Mapping[str, str],
        clock: Clock | None = None,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        strict_put_image_layers: bool = True,
        upstream_timeout: float = 5.0,
        layer_cache_delay: timedelta = timedelta(0),
        uncached_layer_answer: str = LAYER_UNAVAILABLE,
        describe_lag: timedelta = timedelta(0),
        put_image_rate: int | None = None,
    ) -> None:
        """``layer_cache_delay``: how long ECR takes to cache a blob after the first GetDownloadUrlForLayer
        sent the client upstream (reported: #939, #2304). ``uncached_layer_answer``: what
        BatchCheckLayerAvailability says for a referenced blob not cached yet, ``UNAVAILABLE`` or the
        failure ``MissingLayerDigest`` (unknown). ``describe_lag``: how long DescribeImages keeps showing
        a removed tag's old digest (unknown; zero: off). ``put_image_rate``: PutImage calls accepted per
        second of ``clock`` before ThrottlingException (documented quota: 10; None: off)."""
        if uncached_layer_answer not in UNCACHED_LAYER_ANSWERS:
            raise ValueError(f"uncached_layer_answer must be one of {UNCACHED_LAYER_ANSWERS}")
        self.layer_cache_delay = layer_cache_delay
        self.uncached_layer_answer = uncached_layer_answer
        self.describe_lag = describe_lag
        self.put_image_rate = put_image_rate
        self.upstreams: dict[str, str] = {}
        for host, url in upstreams.items():
            self.add_upstream(host, url)
        self.clock: Clock = clock or FakeClock()
        self.account_id = account_id
        self.region = region
        self.strict_put_image_layers = strict_put_image_layers
        self.unreachable_hosts: set[str] = set()
        self.imports: list[ImportRecord] = []
        self.imported_layers: list[ImportedLayer] = []
        self.upstream_fetches: list[UpstreamFetch] = []
        self.events: list[dict[str, Any]] = []  # every event also put on the moto default bus
        self.pulls: Counter[tuple[str, str]] = Counter()  # (repository, tag or digest) -> BatchGetImage count
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=2.0, read=upstream_timeout)
        )
        self._lock = threading.RLock()
        self._rules: dict[tuple[str, str], dict[str, _Rule]] = {}
        self._last_checked: dict[tuple[str, str, str, str], datetime] = {}
        self._faults: list[_Fault] = []
        self._background: list[_Background] = []
        self._pending: dict[tuple[str, str, str, str], _Pending] = {}
        self._exclusions: dict[tuple[str, str], dict[str, datetime]] = {}  # principalArn -> createdAt
        self._caching_layers: dict[tuple[str, str, str, str], _CachingLayer] = {}
        self._lagging: dict[tuple[str, str, str, str], _LaggingTag] = {}
        self._put_times: dict[tuple[str, str], deque[datetime]] = {}
        self._saved: dict[str, object] = {}

    # -- installation ---------------------------------------------------------------------------------

    def install(self) -> Self:
        """Patch moto's ECRResponse; uninstall() puts back exactly what was there."""
        if PullThroughCacheEmulator._installed is not None:
            raise RuntimeError("a PullThroughCacheEmulator is already installed")
        for action in _ACTIONS:
            self._saved[action] = ECRResponse.__dict__.get(action, _MISSING)
            setattr(ECRResponse, action, self._handler(getattr(self, f"_api_{action}")))
        PullThroughCacheEmulator._installed = self
        return self

    def uninstall(self) -> None:
        if PullThroughCacheEmulator._installed is not self:
            return
        for action, original in self._saved.items():
            if original is _MISSING:
                delattr(ECRResponse, action)
            else:
                setattr(ECRResponse, action, original)
        self._saved.clear()
        PullThroughCacheEmulator._installed = None

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    def _handler(self, impl: Callable[[_Call], ActionResult]) -> Callable[[ECRResponse], ActionResult]:
        def handler(response: ECRResponse) -> ActionResult:
            with self._lock:
                call = _Call(response)
                self._advance_background(call.account, call.region, None)
                self._advance_layers()
                return impl(call)

        handler.__name__ = impl.__name__.removeprefix("_api_")
        return handler

    # -- controls for tests ---------------------------------------------------------------------------

    def add_upstream(self, host: str, base_url: str) -> None:
        """Map an upstream host (as a rule's upstreamRegistryUrl names it) to a loopback registry."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"upstream {host} must map to a loopback http(s) URL, not {base_url!r}")
        self.upstreams[host] = base_url.rstrip("/")

    def set_upstream_unreachable(self, host: str, unreachable: bool = True) -> None:
        """Make every request to ``host`` (manifests, blobs, tokens) fail as if the network were down."""
        if unreachable:
            self.unreachable_hosts.add(host)
        else:
            self.unreachable_hosts.discard(host)

    def fail_next_import(
        self,
        code: str,
        reason: str | None = None,
        *,
        repository: str | None = None,
        tag: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` upstream manifest fetches (first imports and 24 h re-checks) matching
        ``repository``/``tag`` fail without contacting upstream: ``code`` from the ImageFailureCode enum
        gives a failure entry; UnableToGetUpstreamImageException, ServerException or
        LimitExceededException is raised instead. At a 24 h re-check any failure serves the cache."""
        if code not in FAILURE_CODES and code not in RAISABLE_CODES:
            raise ValueError(f"unknown failure code {code!r}")
        self._faults.append(_Fault(code, reason or f"injected {code}", repository, tag, times))

    def import_in_background(
        self,
        repository: str | None = None,
        tag: str | None = None,
        *,
        ready_after_calls: int | None = None,
        ready_after: timedelta | None = None,
        failure_code: str = "UpstreamUnavailable",
        failure_reason: str = BACKGROUND_REASON,
        raise_code: str | None = None,
    ) -> None:
        """From now on, the first pull of a not-yet-cached tag (matching ``repository``/``tag``; None
        matches all) answers with ``failure_code`` (or raises ``raise_code``) while the import goes on:
        the image appears after ``ready_after_calls`` later DescribeImages/BatchGetImage calls on the
        repository, or once the clock has moved ``ready_after``, whichever comes first (default: 1 call)."""
        if raise_code is not None and raise_code not in RAISABLE_CODES:
            raise ValueError(f"raise_code must be one of {sorted(RAISABLE_CODES)}")
        if failure_code not in FAILURE_CODES:
            raise ValueError(f"unknown failure code {failure_code!r}")
        if ready_after_calls is None and ready_after is None:
            ready_after_calls = 1
        self._background.append(
            _Background(
                repository, tag, ready_after_calls, ready_after, failure_code, failure_reason, raise_code
            )
        )

    def complete_background_imports(self) -> int:
        """Finish every pending background import now; returns how many there were."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            for item in pending:
                self._complete(item)
            return len(pending)

    @property
    def caching_layers(self) -> list[tuple[str, str]]:
        """(repository, digest) of every blob ECR is still caching in the background."""
        with self._lock:
            self._advance_layers()
            return [(c.repository, c.digest) for c in self._caching_layers.values()]

    def complete_layer_caching(self) -> int:
        """Finish caching every blob under way now; returns how many there were."""
        with self._lock:
            caching = list(self._caching_layers.values())
            self._caching_layers.clear()
            for layer in caching:
                self._cache_layer(layer)
            return len(caching)

    @property
    def pending_imports(self) -> list[tuple[str, str]]:
        return [(p.target.repository, p.target.tag) for p in self._pending.values()]

    def pull_count(self, repository: str, reference: str | None = None) -> int:
        """BatchGetImage requests for ``repository`` (and a tag or digest), whatever their outcome."""
        return sum(
            n for (repo, ref), n in self.pulls.items() if repo == repository and reference in (None, ref)
        )

    def import_count(self, repository: str, tag: str | None = None) -> int:
        return sum(1 for r in self.imports if r.repository == repository and tag in (None, r.tag))

    def last_checked(self, repository: str, tag: str) -> datetime | None:
        """When the cached ``tag`` was last imported or successfully re-checked upstream."""
        return self._last_checked.get((self.account_id, self.region, repository, tag))

    def upstream_for(self, repository: str) -> tuple[str, str] | None:
        """(upstream host, upstream repository) that ``repository`` is cached from, or None."""
        match = self._match_rule(self.account_id, self.region, repository)
        return (match[0].upstream_url, match[1]) if match else None

    # -- rules ----------------------------------------------------------------------------------------

    def _rules_of(self, account: str, region: str) -> dict[str, _Rule]:
        return self._rules.setdefault((account, region), {})

    def _rule(self, call: _Call, prefix: str) -> _Rule:
        rule = self._rules_of(call.account, call.region).get(prefix)
        if rule is None:
            raise _error(
                "PullThroughCacheRuleNotFoundException",
                f"The pull through cache rule with prefix '{prefix}' does not exist "
                f"in the registry with id '{call.account}'",
            )
        return rule

    def _match_rule(self, account: str, region: str, repository: str) -> tuple[_Rule, str] | None:
        rules = self._rules.get((account, region), {})
        for prefix in sorted((p for p in rules if p != "ROOT"), key=len, reverse=True):
            upstream = rules[prefix].upstream_repository(repository)
            if upstream is not None:
                return rules[prefix], upstream
        if "ROOT" in rules:
            return rules["ROOT"], rules["ROOT"].upstream_repository(repository) or repository
        return None

    @staticmethod
    def _upstream_kind(url: Any, kind: Any) -> str:
        if not isinstance(url, str) or not url:
            raise _error("ValidationException", "upstreamRegistryUrl is required")
        if kind is not None and kind not in UPSTREAM_REGISTRIES:
            raise _error(
                "ValidationException",
                f"1 validation error detected: Value '{kind}' at 'upstreamRegistry' failed to satisfy "
                f"constraint: Member must satisfy enum value set: [{', '.join(UPSTREAM_REGISTRIES)}]",
            )
        inferred = next((k for k, host in FIXED_HOSTS.items() if host == url), None)
        if inferred is None and AZURE_HOST_RE.fullmatch(url):
            inferred = "azure-container-registry"
        if inferred is None and ECR_HOST_RE.fullmatch(url):
            inferred = "ecr"
        if inferred is None:
            raise _error(
                "UnsupportedUpstreamRegistryException", f"The upstream registry '{url}' is not supported"
            )
        if kind is not None and kind != inferred:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: upstreamRegistryUrl '{url}' is not a {kind} registry URL",
            )
        return inferred

    def _check_secret(self, call: _Call, arn: str) -> None:
        match = SECRET_ARN_PARTS_RE.match(arn)
        if match is None or (match.group(1), match.group(2)) != (call.region, call.account):
            raise _error(
                "UnableToAccessSecretException",
                f"The secret '{arn}' must be in the same account and region as the registry",
            )
        from moto.secretsmanager.models import secretsmanager_backends

        if arn not in secretsmanager_backends[call.account][call.region].secrets:
            raise _error("SecretNotFoundException", f"The secret '{arn}' was not found")

    def _check_credential_arn(self, call: _Call, arn: Any) -> None:
        if not isinstance(arn, str) or not 50 <= len(arn) <= 612 or not CREDENTIAL_ARN_RE.fullmatch(arn):
            raise _error(
                "ValidationException",
                f"1 validation error detected: Value '{arn}' at 'credentialArn' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {CREDENTIAL_ARN_RE.pattern}",
            )
        self._check_secret(call, arn)

    @staticmethod
    def _check_role_arn(call: _Call, arn: Any) -> None:
        match = ROLE_ARN_RE.fullmatch(arn) if isinstance(arn, str) and len(arn) <= 2048 else None
        if match is None or match.group(2) != call.account:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter: customRoleArn '{arn}' must be an IAM role in account {call.account}",
            )

    def _api_create_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        prefix = _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix")
        url = call.param("upstreamRegistryUrl")
        kind = self._upstream_kind(url, call.param("upstreamRegistry"))
        credential_arn = call.param("credentialArn")
        role_arn = call.param("customRoleArn")
        upstream_prefix = call.param("upstreamRepositoryPrefix")
        if upstream_prefix is not None:
            upstream_prefix = _validate_prefix(upstream_prefix, "upstreamRepositoryPrefix")
            if prefix == "ROOT" and upstream_prefix != "ROOT":
                raise _error(
                    "InvalidParameterException",
                    "Invalid parameter: upstreamRepositoryPrefix can only be set when ecrRepositoryPrefix "
                    "is not ROOT",
                )
        if kind in CREDENTIALS_REQUIRED and credential_arn is None:
            raise _error(
                "InvalidParameterException", f"Invalid parameter: credentialArn is required for {kind}"
            )
        if kind not in CREDENTIALS_REQUIRED and credential_arn is not None:
            raise _error(
                "InvalidParameterException", f"Invalid parameter: credentialArn is not supported for {kind}"
            )
        if kind == "ecr" and role_arn is None and url.split(".", 1)[0] != call.account:
            raise _error(
                "InvalidParameterException",
                "Invalid parameter: customRoleArn is required for an ecr upstream in another account",
            )
        if kind != "ecr" and role_arn is not None:
            raise _error(
                "InvalidParameterException", f"Invalid parameter: customRoleArn is not supported for {kind}"
            )
        if credential_arn is not None:
            self._check_credential_arn(call, credential_arn)
        if role_arn is not None:
            self._check_role_arn(call, role_arn)
        rules = self._rules_of(call.account, call.region)
        if prefix in rules:
            raise _error(
                "PullThroughCacheRuleAlreadyExistsException",
                f"A pull through cache rule with prefix '{prefix}' already exists in the registry "
                f"with id '{call.account}'",
            )
        if len(rules) >= MAX_RULES:
            raise _error(
                "LimitExceededException", f"The limit of {MAX_RULES} pull through cache rules is reached"
            )
        now = self.clock.now()
        rule = _Rule(
            prefix=prefix,
            upstream_url=url,
            upstream_registry=kind,
            registry_id=call.account,
            created_at=now,
            updated_at=now,
            credential_arn=credential_arn,
            custom_role_arn=role_arn,
            upstream_repository_prefix=(upstream_prefix or "ROOT") if kind == "ecr" else upstream_prefix,
        )
        rules[prefix] = rule
        out = rule.api(timestamps=False)
        out["createdAt"] = now
        return ActionResult(out)

    def _api_describe_pull_through_cache_rules(self, call: _Call) -> ActionResult:
        rules = self._rules_of(call.account, call.region)
        prefixes = call.param("ecrRepositoryPrefixes")
        limit = _max_results(call.param("maxResults"))
        offset = _decode_token(call.param("nextToken"))
        if prefixes:
            selected = [self._rule(call, _validate_prefix(p, "ecrRepositoryPrefixes")) for p in prefixes]
        else:
            selected = list(rules.values())
        page = selected[offset : offset + limit] if limit else selected[offset:]
        out: dict[str, Any] = {"pullThroughCacheRules": [r.api() for r in page]}
        if limit and offset + limit < len(selected):
            out["nextToken"] = _encode_token(offset + limit)
        return ActionResult(out)

    def _api_delete_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        prefix = _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix")
        rule = self._rule(call, prefix)
        del self._rules_of(call.account, call.region)[prefix]
        out = rule.api(timestamps=False)
        out.pop("upstreamRegistry")
        out["createdAt"] = rule.created_at
        return ActionResult(out)

    def _api_update_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        rule = self._rule(call, _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix"))
        credential_arn = call.param("credentialArn")
        role_arn = call.param("customRoleArn")
        if credential_arn is None and role_arn is None:
            raise _error("InvalidParameterException", "Invalid parameter: nothing to update")
        if credential_arn is not None:
            if rule.upstream_registry not in CREDENTIALS_REQUIRED:
                raise _error(
                    "InvalidParameterException",
                    f"Invalid parameter: credentialArn is not supported for {rule.upstream_registry}",
                )
            self._check_credential_arn(call, credential_arn)
            rule.credential_arn = credential_arn
        if role_arn is not None:
            if rule.upstream_registry != "ecr":
                raise _error(
                    "InvalidParameterException",
                    f"Invalid parameter: customRoleArn is not supported for {rule.upstream_registry}",
                )
            self._check_role_arn(call, role_arn)
            rule.custom_role_arn = role_arn
        rule.updated_at = self.clock.now()
        rule.version += 1
        out = rule.api(timestamps=False)
        for key in ("upstreamRegistryUrl", "upstreamRegistry"):
            out.pop(key)
        out["updatedAt"] = rule.updated_at
        return ActionResult(out)

    def _api_validate_pull_through_cache_rule(self, call: _Call) -> ActionResult:
        rule = self._rule(call, _validate_prefix(call.param("ecrRepositoryPrefix"), "ecrRepositoryPrefix"))
        failure: str | None = None
        try:
            credentials = self._credentials(rule)
            _UpstreamClient(self, rule.upstream_url, credentials).ping()
        except _UpstreamError as exc:
            failure = f"{exc.code}: {exc.reason}"
        except ServiceException as exc:  # the secret
            failure = f"{exc.code}: {exc.message}"
        out = rule.api(timestamps=False)
        out.pop("upstreamRegistry")
        out["isValid"] = failure is None
        if failure is not None:
            out["failure"] = failure
        return ActionResult(out)

    # -- upstream -------------------------------------------------------------------------------------

    def _base_url(self, host: str) -> str:
        if host in self.unreachable_hosts:
            raise _UpstreamError("UpstreamUnavailable", f"{host} is unreachable")
        if host not in self.upstreams:
            raise _UpstreamError("UpstreamUnavailable", f"{host} is not reachable from the emulation")
        return self.upstreams[host]

    def _credentials(self, rule: _Rule) -> tuple[str, str] | None:
        """The rule's secret as (username, accessToken); UnableToGetUpstreamImageException when unusable."""
        if rule.credential_arn is None:
            return None
        from moto.secretsmanager.models import secretsmanager_backends

        arn = rule.credential_arn
        match = SECRET_ARN_PARTS_RE.match(arn)
        if match is None:
            raise _error("UnableToGetUpstreamImageException", f"The secret '{arn}' is not a secret ARN")
        backend = secretsmanager_backends[match.group(2)][match.group(1)]
        try:
            value = backend.get_secret_value(arn, None, None)  # type: ignore[arg-type]
        except JsonRESTError as exc:
            raise _error("UnableToGetUpstreamImageException", f"Unable to read the secret '{arn}'") from exc
        try:
            doc = json.loads(value.get("SecretString") or "")
            username, token = doc["username"], doc["accessToken"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _error(
                "UnableToGetUpstreamImageException",
                f"The secret '{arn}' must be JSON with the keys username and accessToken",
            ) from exc
        if not isinstance(username, str) or not isinstance(token, str):
            raise _error("UnableToGetUpstreamImageException", f"The secret '{arn}' has malformed credentials")
        return username, token

    def _take_fault(self, repository: str, tag: str) -> _Fault | None:
        for fault in self._faults:
            if fault.repository in (None, repository) and fault.tag in (None, tag) and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _fetch(self, target: _Target) -> _Fetched:
        """Fetch the tag (and an index's manifests) upstream; raises _UpstreamError or EmulatedEcrError."""
        rule, upstream, tag = target.rule, target.upstream, target.tag
        now = self.clock.now()
        fault = self._take_fault(target.repository, tag)
        try:
            if fault is not None:
                if fault.code in RAISABLE_CODES:
                    raise _error(fault.code, fault.reason)
                raise _UpstreamError(fault.code, fault.reason)
            if rule.upstream_registry == "docker-hub" and "/" not in upstream:
                raise _UpstreamError(  # Docker Hub's answer is 403 Forbidden, not "not found"
                    "UpstreamAccessDenied",
                    f"{rule.upstream_url} answered 403 Forbidden for '{upstream}': official images "
                    f"are library/{upstream}",
                )
            client = _UpstreamClient(self, rule.upstream_url, self._credentials(rule))
            fetched = client.manifest(upstream, tag)
            if fetched.media_type in mt.INDEX_TYPES:
                fetched.children = [
                    client.manifest(upstream, child) for child in _child_digests(json.loads(fetched.manifest))
                ]
        except _UpstreamError as exc:
            self.upstream_fetches.append(UpstreamFetch(rule.upstream_url, upstream, tag, now, exc.code))
            self._emit(target, failure=(exc.code, exc.reason))
            raise
        except EmulatedEcrError as exc:
            self.upstream_fetches.append(UpstreamFetch(rule.upstream_url, upstream, tag, now, exc.code))
            self._emit(target, failure=(exc.code, exc.message))
            raise
        self.upstream_fetches.append(UpstreamFetch(rule.upstream_url, upstream, tag, now, "ok"))
        return fetched

    # -- storage --------------------------------------------------------------------------------------

    def _ensure_repository(self, account: str, region: str, name: str) -> Repository:
        backend: ECRBackend = ecr_backends[account][region]
        repository = backend.repositories.get(name)
        if repository is None:  # ECR's CreateRepository-on-pull
            repository = backend.create_repository(
                repository_name=name,
                registry_id=None,
                encryption_config=None,  # type: ignore[arg-type]
                image_scan_config=None,
                image_tag_mutability=None,  # type: ignore[arg-type]
                tags=[],
            )
            repository.created_at = self.clock.now()
        return repository

    def _store(
        self, repository: Repository, manifest: str, digest: str, media_type: str, tag: str | None
    ) -> Image:
        """Add the manifest (if new) and point ``tag`` at it; the tag's previous image stays, untagged."""
        image = _by_digest(repository, digest)
        if image is None:
            image = Image(
                repository.account_id,
                None,  # type: ignore[arg-type]  # untagged; moto's annotation is too narrow
                manifest,
                repository.name,
                media_type,
                digest,
                repository.registry_id,
            )
            now = self.clock.now()
            image.image_pushed_at = int(now.timestamp())
            image.ptc_pushed_at = now  # type: ignore[attr-defined]
            image.ptc_last_pull = None  # type: ignore[attr-defined]
            repository.images.append(image)
        if tag is not None and tag not in image.image_tags:
            holder = _by_tag(repository, tag)
            if holder is not None:
                _untag(holder, tag)
            image.image_tags.append(tag)
            image.image_tag = tag
        return image

    def _store_import(self, target: _Target, fetched: _Fetched) -> Image:
        repository = self._ensure_repository(target.account, target.region, target.repository)
        for child in fetched.children:
            self._store(repository, child.manifest, child.digest, child.media_type, None)
        image = self._store(repository, fetched.manifest, fetched.digest, fetched.media_type, target.tag)
        now = self.clock.now()
        self._last_checked[target.key] = now
        self.imports.append(
            ImportRecord(
                target.repository,
                target.tag,
                fetched.digest,
                fetched.media_type,
                target.source,
                now,
                tuple(c.digest for c in fetched.children),
            )
        )
        self._emit(target, digest=fetched.digest)
        return image

    def _referenced_blobs(self, repository: Repository) -> set[str]:
        return {digest for image in repository.images for digest in _blob_digests(_doc(image))}

    def _referencing_index(self, repository: Repository, digest: str) -> Image | None:
        return next((i for i in repository.images if digest in _child_digests(_doc(i))), None)

    # -- background imports ---------------------------------------------------------------------------

    def _background_for(self, repository: str, tag: str) -> _Background | None:
        return next(
            (b for b in self._background if b.repository in (None, repository) and b.tag in (None, tag)), None
        )

    def _advance_background(self, account: str, region: str, repository: str | None) -> None:
        """Count one call on ``repository`` (None: count nothing) and finish imports that are due."""
        now = self.clock.now()
        for key, pending in list(self._pending.items()):
            if pending.target.key[:2] != (account, region):
                continue
            if repository == pending.target.repository and pending.calls_left is not None:
                pending.calls_left -= 1
            due_by_calls = pending.calls_left is not None and pending.calls_left <= 0
            due_by_time = pending.ready_at is not None and now >= pending.ready_at
            if due_by_calls or due_by_time:
                del self._pending[key]
                self._complete(pending)

    def _complete(self, pending: _Pending) -> None:
        self._store_import(pending.target, pending.fetched)

    # -- layers cached in the background ------------------------------------------------------------

    def _advance_layers(self) -> None:
        """Blobs whose background caching is due are now ECR's own (BatchCheckLayerAvailability:
        AVAILABLE; GetDownloadUrlForLayer: an S3 URL)."""
        now = self.clock.now()
        for key, layer in list(self._caching_layers.items()):
            if now >= layer.ready_at:
                del self._caching_layers[key]
                self._cache_layer(layer)

    def _cache_layer(self, layer: _CachingLayer) -> None:
        repository = ecr_backends[layer.account][layer.region].repositories.get(layer.repository)
        if repository is None:
            return  # the repository went while the blob was being cached
        repository.layers[layer.digest] = layer.size
        self.imported_layers.append(
            ImportedLayer(layer.repository, layer.digest, layer.size, layer.upstream, layer.ready_at)
        )

    # -- events ---------------------------------------------------------------------------------------

    def _emit(
        self, target: _Target, *, digest: str | None = None, failure: tuple[str, str] | None = None
    ) -> None:
        account, region, rule, repository = target.account, target.region, target.rule, target.repository
        detail: dict[str, str] = {
            "rule-version": str(rule.version),
            "sync-status": SYNC_SUCCESS if failure is None else SYNC_FAILED,
            "ecr-repository-prefix": rule.prefix,
            "repository-name": repository,
            "upstream-registry-url": rule.upstream_url,
            "image-tag": target.tag,
        }
        if digest is not None:
            detail["image-digest"] = digest
        if failure is not None:
            detail["failure-code"], detail["failure-reason"] = failure
        arn = f"arn:aws:ecr:{region}:{account}:repository/{repository}"
        time = _iso(self.clock.now())
        self.events.append(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": EVENT_DETAIL_TYPE,
                "source": EVENT_SOURCE,
                "account": account,
                "time": time,
                "region": region,
                "resources": [arn],
                "detail": detail,
            }
        )
        from moto.events.models import events_backends

        events_backends[account][region].put_events(
            [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(detail),
                    "Resources": [arn],
                    "Time": int(self.clock.now().timestamp()),  # moto's SQS delivery writes it unquoted
                }
            ]
        )

    # -- pull-time exclusions -------------------------------------------------------------------------

    def _exclusions_of(self, account: str, region: str) -> dict[str, datetime]:
        return self._exclusions.setdefault((account, region), {})

    @staticmethod
    def _principal_arn(call: _Call) -> str:
        arn = call.param("principalArn")
        if not isinstance(arn, str) or len(arn) > 200 or not PRINCIPAL_ARN_RE.fullmatch(arn):
            raise _error(
                "ValidationException",
                f"1 validation error detected: Value '{arn}' at 'principalArn' failed to satisfy "
                f"constraint: Member must satisfy regular expression pattern: {PRINCIPAL_ARN_RE.pattern}",
            )
        return arn

    def _api_register_pull_time_update_exclusion(self, call: _Call) -> ActionResult:
        arn = self._principal_arn(call)
        exclusions = self._exclusions_of(call.account, call.region)
        if arn in exclusions:
            raise _error(
                "ExclusionAlreadyExistsException",
                f"The pull time update exclusion for '{arn}' already exists in the registry "
                f"with id '{call.account}'",
            )
        exclusions[arn] = self.clock.now()
        return ActionResult({"principalArn": arn, "createdAt": exclusions[arn]})

    def _api_deregister_pull_time_update_exclusion(self, call: _Call) -> ActionResult:
        arn = self._principal_arn(call)
        exclusions = self._exclusions_of(call.account, call.region)
        if exclusions.pop(arn, None) is None:
            raise _error(
                "ExclusionNotFoundException",
                f"The pull time update exclusion for '{arn}' was not found in the registry "
                f"with id '{call.account}'",
            )
        return ActionResult({"principalArn": arn})

    def _api_list_pull_time_update_exclusions(self, call: _Call) -> ActionResult:
        arns = list(self._exclusions_of(call.account, call.region))
        limit = _max_results(call.param("maxResults"))
        offset = _decode_token(call.param("nextToken"))
        page = arns[offset : offset + limit] if limit else arns[offset:]
        out: dict[str, Any] = {"pullTimeUpdateExclusions": page}
        if limit and offset + limit < len(arns):
            out["nextToken"] = _encode_token(offset + limit)
        return ActionResult(out)

    def _excluded_from_pull_time(self, call: _Call) -> bool:
        exclusions = self._exclusions.get((call.account, call.region), {})
        return bool(exclusions) and not call.principal_arns().isdisjoint(exclusions)

    # -- image APIs -----------------------------------------------------------------------------------

    def _api_batch_get_image(self, call: _Call) -> ActionResult:
        name = call.param("repositoryName")
        image_ids: list[dict[str, str]] = call.param("imageIds") or []
        accepted = tuple(call.param("acceptedMediaTypes") or DEFAULT_ACCEPTED)
        match = self._match_rule(call.account, call.region, name)
        if name not in call.backend.repositories and match is None:
            raise RepositoryNotFoundException(name, call.account)
        self._advance_background(call.account, call.region, name)
        images: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for image_id in image_ids:
            result = self._get_one(call, name, image_id, accepted, match)
            (images if "imageManifest" in result else failures).append(result)
        return ActionResult({"images": images, "failures": failures})

    def _get_one(
        self,
        call: _Call,
        name: str,
        image_id: Mapping[str, str],
        accepted: tuple[str, ...],
        match: tuple[_Rule, str] | None,
    ) -> dict[str, Any]:
        found = self._find_for_pull(call, name, image_id, accepted, match)
        if isinstance(found, dict):
            return _failure(image_id, found["failureCode"], found["failureReason"])
        image, repository = found
        if not self._excluded_from_pull_time(call):
            image.ptc_last_pull = self.clock.now()  # type: ignore[attr-defined]
        out_id = {"imageDigest": image.get_image_digest()}
        if image_id.get("imageTag"):
            out_id["imageTag"] = image_id["imageTag"]
        return {
            "registryId": repository.registry_id,
            "repositoryName": name,
            "imageId": out_id,
            "imageManifest": image.image_manifest,
            "imageManifestMediaType": image.image_manifest_media_type,
        }

    def _find_for_pull(
        self,
        call: _Call,
        name: str,
        image_id: Mapping[str, str],
        accepted: tuple[str, ...],
        match: tuple[_Rule, str] | None,
    ) -> tuple[Image, Repository] | dict[str, str]:
        """The image one BatchGetImage imageId gets, importing it first where ECR would."""
        invalid = _invalid_image_id(image_id)
        if invalid is not None:
            return invalid
        tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
        self.pulls[(name, tag or digest or "")] += 1
        repository = call.backend.repositories.get(name)
        image = None
        if tag:
            image = _by_tag(repository, tag) if repository is not None else None
            if match is not None:
                target = _Target(call.account, call.region, name, tag, *match)
                outcome = (
                    self._first_pull(target, accepted)
                    if image is None
                    else self._recheck(target, image, accepted)
                )
                if isinstance(outcome, dict):
                    return outcome
                image, repository = outcome, call.backend.repositories.get(name)
            if image is not None and digest and image.get_image_digest() != digest:
                return {
                    "failureCode": "ImageTagDoesNotMatchDigest",
                    "failureReason": "Requested image tag does not match digest",
                }
        elif repository is not None and digest:
            image = _by_digest(repository, digest)
        if image is None or repository is None:
            return {"failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
        if image.image_manifest_media_type not in accepted:
            return self._unsupported(image.image_manifest_media_type or "")
        return image, repository

    def _first_pull(self, target: _Target, accepted: tuple[str, ...]) -> Image | dict[str, str]:
        """A pull by tag of a tag absent from the cache: always goes upstream (or waits for the
        background import already under way)."""
        pending = self._pending.get(target.key)
        if pending is not None:
            return self._background_answer(pending.background)
        try:
            fetched = self._fetch(target)
        except _UpstreamError as exc:
            return {"failureCode": exc.code, "failureReason": exc.reason}
        if fetched.media_type not in accepted:
            return self._unsupported(fetched.media_type)
        background = self._background_for(target.repository, target.tag)
        if background is None:
            return self._store_import(target, fetched)
        self._ensure_repository(target.account, target.region, target.repository)  # upstream answered
        ready_at = self.clock.now() + background.ready_after if background.ready_after is not None else None
        self._pending[target.key] = _Pending(
            target, fetched, background, ready_at, background.ready_after_calls
        )
        return self._background_answer(background)

    def _recheck(self, target: _Target, cached: Image, accepted: tuple[str, ...]) -> Image | dict[str, str]:
        """A pull by tag of a cached tag: upstream is asked only more than 24 h after the last check."""
        now = self.clock.now()
        baseline = self._last_checked.get(target.key) or getattr(cached, "ptc_pushed_at", None) or now
        if now - baseline <= REFRESH_INTERVAL:
            return cached
        try:
            fetched = self._fetch(target)
        except (_UpstreamError, EmulatedEcrError):
            return cached  # upstream unreachable or failing: ECR serves the cached image
        repository = ecr_backends[target.account][target.region].repositories[target.repository]
        if fetched.digest == cached.get_image_digest() or _tag_is_immutable(repository, target.tag):
            self._last_checked[target.key] = now
            return cached
        if fetched.media_type not in accepted:
            return self._unsupported(fetched.media_type)
        return self._store_import(target, fetched)

    @staticmethod
    def _unsupported(media_type: str) -> dict[str, str]:
        return {  # ImageFailureCode has no "unsupported type" value; what real ECR answers is not public
            "failureCode": "ImageNotFound",
            "failureReason": f"Image of media type {media_type} is not among the accepted media types",
        }

    @staticmethod
    def _background_answer(background: _Background) -> dict[str, str]:
        if background.raise_code is not None:
            raise _error(background.raise_code, background.failure_reason)
        return {"failureCode": background.failure_code, "failureReason": background.failure_reason}

    @staticmethod
    def _put_image_manifest(call: _Call) -> tuple[str, dict[str, Any], str, str]:
        """PutImage's manifest checked like ECR: (manifest, parsed, media type, sha256 of the bytes)."""
        manifest = call.param("imageManifest")
        if not isinstance(manifest, str) or not manifest:
            raise _error("InvalidParameterException", "Invalid parameter at 'imageManifest': required")
        try:
            doc = json.loads(manifest)
        except ValueError as exc:
            raise _error(
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
            ) from exc
        if not isinstance(doc, dict):
            raise _error(
                "InvalidParameterException", "Invalid parameter at 'ImageManifest': not a JSON object"
            )
        param_type, doc_type = call.param("imageManifestMediaType"), doc.get("mediaType")
        if param_type and doc_type and param_type != doc_type:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'imageManifestMediaType': '{param_type}' does not match the "
                f"manifest's mediaType '{doc_type}'",
            )
        media_type = param_type or doc_type
        if not media_type:
            raise _error(
                "InvalidParameterException", "image manifest media type not provided in manifest or parameter"
            )
        digest = sha256_digest(manifest.encode("utf-8"))
        given = call.param("imageDigest")
        if given is not None and not LAYER_DIGEST_RE.fullmatch(given):
            raise _error("InvalidParameterException", f"Invalid parameter at 'imageDigest': '{given}'")
        if given is not None and given != digest:
            raise _error(
                "ImageDigestDoesNotMatchException",
                f"Provided digest '{given}' does not match the calculated digest '{digest}' of the manifest",
            )
        return manifest, doc, str(media_type), digest

    def _throttle_put_image(self, call: _Call) -> None:
        """More than ``put_image_rate`` PutImage calls within one second of the clock, per account and
        region: ThrottlingException (documented quota 10/s, service-quotas.html); a refused call does
        not count."""
        if self.put_image_rate is None:
            return
        now = self.clock.now()
        window = self._put_times.setdefault((call.account, call.region), deque())
        while window and now - window[0] >= timedelta(seconds=1):
            window.popleft()
        if len(window) >= self.put_image_rate:
            raise _error("ThrottlingException", "Rate exceeded")
        window.append(now)

    def _api_put_image(self, call: _Call) -> ActionResult:
        name = call.param("repositoryName")
        repository = call.repository(name)
        self._throttle_put_image(call)
        manifest, doc, media_type, digest = self._put_image_manifest(call)
        tag = call.param("imageTag")
        existing = _by_digest(repository, digest)
        if existing is not None and (tag is None or tag in existing.image_tags):
            raise ImageAlreadyExistsException(name, repository.registry_id, digest, tag or "null")
        if existing is None and self.strict_put_image_layers:
            self._check_references(repository, doc)
        if tag is not None:
            holder = _by_tag(repository, tag)
            if holder is not None and holder is not existing and _tag_is_immutable(repository, tag):
                raise _error(
                    "ImageTagAlreadyExistsException",
                    f"The image tag '{tag}' already exists in the '{name}' repository and cannot be "
                    "overwritten because the repository is immutable.",
                )
        image = self._store(repository, manifest, digest, media_type, tag)
        if tag is not None:
            self._last_checked[(call.account, call.region, name, tag)] = self.clock.now()
        out_id = {"imageDigest": digest}
        if tag is not None:
            out_id["imageTag"] = tag
        return ActionResult(
            {
                "image": {
                    "registryId": repository.registry_id,
                    "repositoryName": name,
                    "imageId": out_id,
                    "imageManifest": image.image_manifest,
                    "imageManifestMediaType": media_type,
                }
            }
        )

    def _check_references(self, repository: Repository, doc: Mapping[str, Any]) -> None:
        known = set(repository.layers) | self._referenced_blobs(repository)
        missing = [d for d in _blob_digests(doc) if d not in known]
        if missing:
            raise _error(
                "LayersNotFoundException",
                f"Layers with digests {missing} not found in the repository with name '{repository.name}'",
            )
        images = {i.get_image_digest() for i in repository.images}
        missing = [d for d in _child_digests(doc) if d not in images]
        if missing:
            raise _error(
                "ReferencedImagesNotFoundException",
                f"Manifests with digests {missing} not found in the repository with name '{repository.name}'",
            )

    def _api_describe_images(self, call: _Call) -> ActionResult:
        name = call.param("repositoryName")
        repository = call.repository(name)
        self._advance_background(call.account, call.region, name)
        image_ids: list[dict[str, str]] | None = call.param("imageIds")
        tag_status = (call.param("filter") or {}).get("tagStatus", "ANY")
        if tag_status not in ("TAGGED", "UNTAGGED", "ANY"):
            raise _error("InvalidParameterException", f"Invalid parameter at 'tagStatus': '{tag_status}'")
        image_status = (call.param("filter") or {}).get("imageStatus", "ANY")
        if image_status not in (*IMAGE_STATUSES, "ANY"):
            raise _error("InvalidParameterException", f"Invalid parameter at 'imageStatus': '{image_status}'")
        limit = _max_results(call.param("maxResults"))
        token = call.param("nextToken")
        lags = self._lags_of(call, name)
        if image_ids:
            if limit is not None or token:
                raise _error(
                    "InvalidParameterException",
                    "Invalid parameter: maxResults and nextToken cannot be used with imageIds",
                )
            details = self._describe_by_ids(call, repository, image_ids, lags)
        else:
            details = self._lagged([self._detail(repository, i) for i in repository.images], lags)
        if tag_status == "TAGGED":
            details = [d for d in details if d.get("imageTags")]
        elif tag_status == "UNTAGGED":
            details = [d for d in details if not d.get("imageTags")]
        if image_status not in ("ANY", IMAGE_ACTIVE):
            details = []  # every emulated image is ACTIVE: archiving is not emulated
        offset = _decode_token(token)
        page = details[offset : offset + limit] if limit else details[offset:]
        out: dict[str, Any] = {"imageDetails": page}
        if limit and offset + limit < len(details):
            out["nextToken"] = _encode_token(offset + limit)
        return ActionResult(out)

    def _describe_by_ids(
        self,
        call: _Call,
        repository: Repository,
        image_ids: list[dict[str, str]],
        lags: Mapping[str, _LaggingTag],
    ) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = []
        for image_id in image_ids:
            tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
            if tag and tag in lags:  # a lagging read: the removed tag, as it was
                detail: dict[str, Any] | None = dict(lags[tag].detail, imageTags=[tag])
            else:
                image = _by_tag(repository, tag) if tag else _by_digest(repository, digest or "")
                detail = None if image is None else self._detail(repository, image)
            if detail is None or (digest and detail["imageDigest"] != digest):
                raise ImageNotFoundException(
                    f"{{imageDigest:'{digest or 'null'}', imageTag:'{tag or 'null'}'}}",
                    repository.name,
                    call.account,
                )
            if all(d["imageDigest"] != detail["imageDigest"] for d in details):
                details.append(detail)
        return details

    def _size(self, repository: Repository, image: Image) -> int | None:
        doc = _doc(image)
        if "layers" in doc:
            return sum(int(layer.get("size", 0)) for layer in doc["layers"] if isinstance(layer, dict))
        children = [_by_digest(repository, d) for d in _child_digests(doc)]
        sizes = [s for c in children if c is not None and (s := self._size(repository, c)) is not None]
        return max(sizes) if sizes else None

    def _detail(self, repository: Repository, image: Image) -> dict[str, Any]:
        pushed = getattr(image, "ptc_pushed_at", None) or datetime.fromtimestamp(image.image_pushed_at, UTC)
        detail: dict[str, Any] = {
            "registryId": repository.registry_id,
            "repositoryName": repository.name,
            "imageDigest": image.get_image_digest(),
            "imagePushedAt": pushed,
            "imageManifestMediaType": image.image_manifest_media_type,
            "imageStatus": IMAGE_ACTIVE,
        }
        if image.image_tags:
            detail["imageTags"] = list(image.image_tags)
        size = self._size(repository, image)
        if size is not None:
            detail["imageSizeInBytes"] = size
        config = _doc(image).get("config")
        if isinstance(config, dict) and config.get("mediaType"):
            detail["artifactMediaType"] = config["mediaType"]
        last_pull = getattr(image, "ptc_last_pull", None)
        if last_pull is not None:
            detail["lastRecordedPullTime"] = last_pull
        return detail

    def _start_lag(self, call: _Call, repository: Repository, image: Image, tag: str) -> None:
        """With ``describe_lag``, DescribeImages keeps showing ``tag`` on ``image`` for that long after
        the tag is removed (read-after-delete consistency: unknown, ecr-behaviour.md)."""
        if self.describe_lag <= timedelta(0):
            return
        detail = self._detail(repository, image)
        self._lagging[(call.account, call.region, repository.name, tag)] = _LaggingTag(
            image.get_image_digest(), self.clock.now() + self.describe_lag, detail
        )

    def _lags_of(self, call: _Call, name: str) -> dict[str, _LaggingTag]:
        """tag -> what a lagging DescribeImages still shows for it, for ``name`` now."""
        now = self.clock.now()
        for key, lag in list(self._lagging.items()):
            if now >= lag.until:
                del self._lagging[key]
        return {
            key[3]: lag for key, lag in self._lagging.items() if key[:3] == (call.account, call.region, name)
        }

    @staticmethod
    def _lagged(details: list[dict[str, Any]], lags: Mapping[str, _LaggingTag]) -> list[dict[str, Any]]:
        """A listing as a lagging read shows it: each lagging tag back on its old digest only."""
        out = [dict(d) for d in details]
        for tag, lag in lags.items():
            for detail in out:
                tags = [t for t in detail.get("imageTags", []) if t != tag]
                if detail["imageDigest"] == lag.digest:
                    tags.append(tag)
                if tags:
                    detail["imageTags"] = tags
                else:
                    detail.pop("imageTags", None)
            if not any(d["imageDigest"] == lag.digest for d in out):
                out.append(dict(lag.detail, imageTags=[tag]))
        return out

    def _api_batch_delete_image(self, call: _Call) -> ActionResult:
        name = call.param("repositoryName")
        repository = call.repository(name)
        deleted: list[dict[str, str]] = []
        failures: list[dict[str, Any]] = []
        for image_id in call.param("imageIds") or []:
            tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
            invalid = _invalid_image_id(image_id)
            if invalid is not None:
                failures.append(_failure(image_id, invalid["failureCode"], invalid["failureReason"]))
                continue
            image = _by_tag(repository, tag) if tag else _by_digest(repository, digest or "")
            if image is None or (tag and digest and image.get_image_digest() != digest):
                failures.append(_failure(image_id, "ImageNotFound", "Requested image not found"))
                continue
            image_digest = image.get_image_digest()
            if tag:
                self._start_lag(call, repository, image, tag)
                _untag(image, tag)
                self._last_checked.pop((call.account, call.region, name, tag), None)
                deleted.append({"imageDigest": image_digest, "imageTag": tag})
                if not image.image_tags and self._referencing_index(repository, image_digest) is None:
                    repository.images.remove(image)
                continue
            index = self._referencing_index(repository, image_digest)
            if index is not None:
                failures.append(
                    _failure(
                        image_id,
                        "ImageReferencedByManifestList",
                        f"Requested image referenced by manifest list: [{index.get_image_digest()}]",
                    )
                )
                continue
            for image_tag in list(image.image_tags):
                self._start_lag(call, repository, image, image_tag)
                self._last_checked.pop((call.account, call.region, name, image_tag), None)
                deleted.append({"imageDigest": image_digest, "imageTag": image_tag})
            if not image.image_tags:
                deleted.append({"imageDigest": image_digest})
            repository.images.remove(image)
        return ActionResult({"imageIds": deleted, "failures": failures})

    def _api_get_download_url_for_layer(self, call: _Call) -> ActionResult:
        name = call.param("repositoryName")
        digest = call.param("layerDigest")
        repository = call.repository(name)
        if not isinstance(digest, str) or not LAYER_DIGEST_RE.fullmatch(digest):
            raise _error("InvalidParameterException", f"Invalid parameter at 'layerDigest': '{digest}'")
        if digest not in self._referenced_blobs(repository):
            if digest in repository.layers:
                raise _error(
                    "LayerInaccessibleException",
                    f"The layer with digest '{digest}' is not associated with an image in '{name}'",
                )
            raise _error(
                "LayersNotFoundException",
                f"The layer with digest '{digest}' was not found in the repository '{name}'",
            )
        if digest not in repository.layers:
            url = self._upstream_layer_url(call, name, digest)
            return ActionResult({"downloadUrl": url, "layerDigest": digest})
        url = (
            f"https://prod-{call.region}-starport-layer-bucket.s3.{call.region}.amazonaws.com/"
            f"{call.account}/{name}/{digest}?X-Amz-Expires=3600&emulated=ptc-sync-testbed"
        )
        return ActionResult({"downloadUrl": url, "layerDigest": digest})

    def _upstream_layer_url(self, call: _Call, name: str, digest: str) -> str:
        """A blob ECR has not cached: the client is sent to upstream's own blob URL, and ECR caches the
        blob in the background, done ``layer_cache_delay`` later (reported: #939, #2304). Upstream is
        asked for the blob now (an unreachable upstream or a missing blob fails the call)."""
        match = self._match_rule(call.account, call.region, name)
        if match is None:
            raise _error(
                "LayersNotFoundException",
                f"The layer with digest '{digest}' was not found in the repository '{name}'",
            )
        rule, upstream = match
        key = (call.account, call.region, name, digest)
        if key not in self._caching_layers:
            try:
                credentials = self._credentials(rule)
                data = _UpstreamClient(self, rule.upstream_url, credentials).blob(upstream, digest)
            except (_UpstreamError, ServiceException) as exc:
                raise _error(
                    "UnableToGetUpstreamLayerException",
                    f"Unable to get layer {digest} from {rule.upstream_url}/{upstream}: {exc}",
                ) from exc
            self._caching_layers[key] = _CachingLayer(
                call.account,
                call.region,
                name,
                digest,
                len(data),
                f"{rule.upstream_url}/{upstream}",
                self.clock.now() + self.layer_cache_delay,
            )
        return f"https://{rule.upstream_url}/v2/{upstream}/blobs/{digest}"

    def _api_batch_check_layer_availability(self, call: _Call) -> ActionResult:
        """AVAILABLE only for a blob ECR stores itself (pushed, or cached from upstream); a blob an
        image references but ECR has not cached answers ``uncached_layer_answer``; any other digest is
        the failure MissingLayerDigest. Codes: botocore's LayerAvailability and LayerFailureCode."""
        name = call.param("repositoryName")
        repository = call.repository(name)
        digests = call.param("layerDigests")
        if not isinstance(digests, list) or not 1 <= len(digests) <= MAX_LAYER_DIGESTS:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'layerDigests': between 1 and {MAX_LAYER_DIGESTS} digests",
            )
        described = self._referenced_descriptors(repository)
        layers: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        for digest in digests:
            if not isinstance(digest, str) or not LAYER_DIGEST_RE.fullmatch(digest):
                failures.append(
                    {
                        "layerDigest": str(digest),
                        "failureCode": "InvalidLayerDigest",
                        "failureReason": f"Invalid layer digest '{digest}'",
                    }
                )
                continue
            size, media_type = described.get(digest, (None, DEFAULT_LAYER_MEDIA_TYPE))
            if digest in repository.layers:
                availability = LAYER_AVAILABLE
                size = repository.layers[digest]
            elif digest in described and self.uncached_layer_answer == LAYER_UNAVAILABLE:
                availability = LAYER_UNAVAILABLE
            else:
                failures.append(
                    {
                        "layerDigest": digest,
                        "failureCode": "MissingLayerDigest",
                        "failureReason": f"Layer digest '{digest}' could not be found",
                    }
                )
                continue
            layer: dict[str, Any] = {
                "layerDigest": digest,
                "layerAvailability": availability,
                "mediaType": media_type,
            }
            if size is not None:
                layer["layerSize"] = size
            layers.append(layer)
        return ActionResult({"layers": layers, "failures": failures})

    def _referenced_descriptors(self, repository: Repository) -> dict[str, tuple[int | None, str]]:
        """digest -> (size, media type) of every blob an image of ``repository`` references."""
        out: dict[str, tuple[int | None, str]] = {}
        for image in repository.images:
            doc = _doc(image)
            for desc in [doc.get("config"), *(doc.get("layers") or [])]:
                if isinstance(desc, dict) and desc.get("digest") and not desc.get("urls"):
                    size = desc.get("size")
                    out[str(desc["digest"])] = (
                        int(size) if isinstance(size, int) else None,
                        str(desc.get("mediaType") or DEFAULT_LAYER_MEDIA_TYPE),
                    )
        return out
