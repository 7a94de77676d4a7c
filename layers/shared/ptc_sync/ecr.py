"""The ECR adapter: the only module that calls the ECR API.

Discovery (rules → repositories → tagged images), manifest reads and writes by exact bytes, tag
deletion, layer warming. Every call is paginated or batched to the API limits; every failure comes
back as an ``EcrError`` naming the operation, the image and ECR's error code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync import mediatypes as mt
from ptc_sync.models import (
    CachedRepository,
    CachedTag,
    PullThroughCacheRule,
    TagMutability,
    UpstreamKind,
    sha256_digest,
)
from ptc_sync.upstream import rule_for_repository

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import ImageIdentifierTypeDef

DESCRIBE_IMAGES_PAGE = 1000
DELETE_BATCH = 100  # BatchDeleteImage takes at most 100 image ids
LAYER_CHECK_BATCH = 100  # BatchCheckLayerAvailability takes at most 100 digests


class EcrError(RuntimeError):
    """An ECR call failed. ``code`` is ECR's error or failure code (``AccessDeniedException``, …)."""

    def __init__(self, operation: str, code: str, message: str, *, subject: str = "") -> None:
        self.operation = operation
        self.code = code
        self.subject = subject
        # code first: chat lines are cut at a couple hundred characters, the subject matters least
        where = f" ({subject})" if subject else ""
        super().__init__(f"{operation}: {code}: {message}{where}")

    @property
    def not_found(self) -> bool:
        return self.code in {"ImageNotFoundException", "ImageNotFound", "RepositoryNotFoundException"}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest exactly as ECR holds it."""

    digest: str
    media_type: str
    body: bytes


def _raise(operation: str, exc: ClientError | BotoCoreError, subject: str = "") -> EcrError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return EcrError(operation, err.get("Code", "Unknown"), err.get("Message", str(exc)), subject=subject)
    return EcrError(operation, type(exc).__name__, str(exc), subject=subject)


KIND_BY_HOST = {
    "public.ecr.aws": UpstreamKind.ECR_PUBLIC,
    "registry.k8s.io": UpstreamKind.K8S,
    "quay.io": UpstreamKind.QUAY,
    "registry-1.docker.io": UpstreamKind.DOCKER_HUB,
    "ghcr.io": UpstreamKind.GITHUB,
    "registry.gitlab.com": UpstreamKind.GITLAB,
    "cgr.dev": UpstreamKind.CHAINGUARD,
}


def _kind(raw: Any) -> UpstreamKind:
    """Rules created before ECR returned ``upstreamRegistry`` only carry the URL."""
    if raw.get("upstreamRegistry"):
        return UpstreamKind(raw["upstreamRegistry"])
    host = raw["upstreamRegistryUrl"]
    if host in KIND_BY_HOST:
        return KIND_BY_HOST[host]
    if host.endswith(".azurecr.io"):
        return UpstreamKind.AZURE
    if ".dkr.ecr." in host:
        return UpstreamKind.ECR
    raise ValueError(f"pull-through cache rule {raw['ecrRepositoryPrefix']!r}: unknown upstream {host!r}")


def _rule(raw: Any) -> PullThroughCacheRule:
    return PullThroughCacheRule(
        prefix=raw["ecrRepositoryPrefix"],
        upstream_registry=_kind(raw),
        upstream_url=raw["upstreamRegistryUrl"],
        registry_id=raw.get("registryId", ""),
        credential_arn=raw.get("credentialArn"),
        custom_role_arn=raw.get("customRoleArn"),
        upstream_repository_prefix=raw.get("upstreamRepositoryPrefix"),
    )


def _repository(raw: Any, rule: PullThroughCacheRule) -> CachedRepository:
    filters = tuple(f.get("filter", "") for f in raw.get("imageTagMutabilityExclusionFilters", []) or [])
    return CachedRepository(
        name=raw["repositoryName"],
        arn=raw["repositoryArn"],
        registry_id=raw["registryId"],
        rule=rule,
        tag_mutability=TagMutability(raw.get("imageTagMutability", "MUTABLE")),
        mutability_exclusions=filters,
    )


DESCRIBE_REPOSITORIES_PAGE = 1000


class EcrAdapter:
    """ECR calls for the caller's own registry (pull-through cache rules are per registry)."""

    def __init__(self, client: ECRClient) -> None:
        self.client = client

    # -- discovery -----------------------------------------------------------------------------------

    def pull_through_cache_rules(self) -> list[PullThroughCacheRule]:
        try:
            pages = self.client.get_paginator("describe_pull_through_cache_rules").paginate()
            return [_rule(raw) for page in pages for raw in page.get("pullThroughCacheRules", [])]
        except (ClientError, BotoCoreError) as exc:
            raise _raise("DescribePullThroughCacheRules", exc) from exc

    def cached_repositories(self, rules: list[PullThroughCacheRule]) -> Iterator[CachedRepository]:
        """Every repository covered by one of ``rules``, with its tag mutability."""
        try:
            # ECR's largest page (1,000; the default is 100): the planner's calls per 1,000 repositories
            pages = self.client.get_paginator("describe_repositories").paginate(
                PaginationConfig={"PageSize": DESCRIBE_REPOSITORIES_PAGE}
            )
            for page in pages:
                for raw in page.get("repositories", []):
                    rule = rule_for_repository(rules, raw["repositoryName"])
                    if rule is not None:
                        yield _repository(raw, rule)
        except (ClientError, BotoCoreError) as exc:
            raise _raise("DescribeRepositories", exc) from exc

    def cached_repository(self, name: str, rule: PullThroughCacheRule) -> CachedRepository | None:
        """One repository (None when it does not exist)."""
        try:
            resp = self.client.describe_repositories(repositoryNames=[name])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                return None
            raise _raise("DescribeRepositories", exc, name) from exc
        except BotoCoreError as exc:
            raise _raise("DescribeRepositories", exc, name) from exc
        repos = resp.get("repositories", [])
        return _repository(repos[0], rule) if repos else None

    def tagged_images(self, repository: str) -> Iterator[CachedTag]:
        """One CachedTag per tag of every tagged image in ``repository``."""
        try:
            pages = self.client.get_paginator("describe_images").paginate(
                repositoryName=repository,
                filter={"tagStatus": "TAGGED"},
                PaginationConfig={"PageSize": DESCRIBE_IMAGES_PAGE},
            )
            for page in pages:
                for image in page.get("imageDetails", []):
                    for tag in image.get("imageTags", []) or []:
                        yield CachedTag(
                            repository=repository,
                            tag=tag,
                            digest=image["imageDigest"],
                            media_type=image.get("imageManifestMediaType", ""),
                            pushed_at=image.get("imagePushedAt"),
                            last_pulled_at=image.get("lastRecordedPullTime"),
                            size_bytes=image.get("imageSizeInBytes"),
                        )
        except (ClientError, BotoCoreError) as exc:
            raise _raise("DescribeImages", exc, repository) from exc

    def tag_digest(self, repository: str, tag: str) -> str | None:
        """What DescribeImages says ``tag`` points at now (None when the tag is absent)."""
        try:
            resp = self.client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ImageNotFoundException":
                return None
            raise _raise("DescribeImages", exc, f"{repository}:{tag}") from exc
        except BotoCoreError as exc:
            raise _raise("DescribeImages", exc, f"{repository}:{tag}") from exc
        details = resp.get("imageDetails", [])
        return details[0]["imageDigest"] if details else None

    # -- manifests -----------------------------------------------------------------------------------

    def get_manifest(self, repository: str, *, tag: str | None = None, digest: str | None = None) -> Manifest:
        """BatchGetImage by tag (which lets a pull-through cache import from upstream) or by digest
        (which never does). The bytes are checked against the digest ECR reports."""
        image_id: ImageIdentifierTypeDef = {"imageTag": tag} if tag else {"imageDigest": digest or ""}
        subject = f"{repository}:{tag}" if tag else f"{repository}@{digest}"
        try:
            resp = self.client.batch_get_image(
                repositoryName=repository,
                imageIds=[image_id],
                acceptedMediaTypes=sorted(mt.MANIFEST_TYPES),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _raise("BatchGetImage", exc, subject) from exc
        images = resp.get("images", [])
        if not images:
            failures = resp.get("failures", [])
            code = failures[0].get("failureCode", "Unknown") if failures else "ImageNotFound"
            reason = (
                failures[0].get("failureReason", "no image returned") if failures else "no image returned"
            )
            raise EcrError("BatchGetImage", code, reason, subject=subject)
        image = images[0]
        body = image.get("imageManifest", "").encode()
        reported = image.get("imageId", {}).get("imageDigest", "")
        if sha256_digest(body) != reported:
            raise EcrError(
                "BatchGetImage",
                "DigestMismatch",
                f"manifest bytes hash to {sha256_digest(body)}, ECR reports {reported}",
                subject=subject,
            )
        if digest and reported != digest:
            raise EcrError(
                "BatchGetImage", "DigestMismatch", f"asked {digest}, got {reported}", subject=subject
            )
        media_type = image.get("imageManifestMediaType", "") or _media_type_of(body)
        return Manifest(digest=reported, media_type=media_type, body=body)

    def put_manifest(self, repository: str, tag: str, manifest: Manifest) -> None:
        """PutImage from exact bytes; the digest is passed so ECR refuses anything else."""
        try:
            resp = self.client.put_image(
                repositoryName=repository,
                imageManifest=manifest.body.decode(),
                imageManifestMediaType=manifest.media_type,
                imageTag=tag,
                imageDigest=manifest.digest,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _raise("PutImage", exc, f"{repository}:{tag}") from exc
        stored = resp.get("image", {}).get("imageId", {}).get("imageDigest")
        if stored != manifest.digest:
            raise EcrError(
                "PutImage",
                "DigestMismatch",
                f"stored {stored}, expected {manifest.digest}",
                subject=repository,
            )

    def delete_tags(self, repository: str, tags: Iterable[str]) -> None:
        """Remove tags (an image whose last tag goes is deleted by ECR; others keep it)."""
        tag_list = list(tags)
        for start in range(0, len(tag_list), DELETE_BATCH):
            batch = tag_list[start : start + DELETE_BATCH]
            try:
                resp = self.client.batch_delete_image(
                    repositoryName=repository, imageIds=[{"imageTag": t} for t in batch]
                )
            except (ClientError, BotoCoreError) as exc:
                raise _raise("BatchDeleteImage", exc, f"{repository}:{','.join(batch)}") from exc
            failures = [f for f in resp.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
            if failures:
                first = failures[0]
                raise EcrError(
                    "BatchDeleteImage",
                    first.get("failureCode", "Unknown"),
                    first.get("failureReason", ""),
                    subject=f"{repository}:{first.get('imageId', {}).get('imageTag', '')}",
                )

    def warm_layer(self, repository: str, layer_digest: str) -> str:
        """GetDownloadUrlForLayer: in a pull-through cache repository this starts caching the blob. The
        URL it returns may be upstream's own (the blob is not cached yet): it proves nothing about
        warmth, ``layers_available`` does. Returns the URL."""
        try:
            resp = self.client.get_download_url_for_layer(repositoryName=repository, layerDigest=layer_digest)
        except (ClientError, BotoCoreError) as exc:
            raise _raise("GetDownloadUrlForLayer", exc, f"{repository}@{layer_digest}") from exc
        url = resp.get("downloadUrl")
        if resp.get("layerDigest") != layer_digest or not url:
            raise EcrError(
                "GetDownloadUrlForLayer", "BadResponse", "no download URL for the layer", subject=repository
            )
        return url

    def layers_available(self, repository: str, digests: Iterable[str]) -> dict[str, bool]:
        """BatchCheckLayerAvailability, 100 digests a call: True for a blob ECR serves itself
        (AVAILABLE); UNAVAILABLE, ARCHIVED, a failure entry or no answer at all is False."""
        wanted = list(dict.fromkeys(digests))
        out = dict.fromkeys(wanted, False)
        for start in range(0, len(wanted), LAYER_CHECK_BATCH):
            batch = wanted[start : start + LAYER_CHECK_BATCH]
            try:
                resp = self.client.batch_check_layer_availability(
                    repositoryName=repository, layerDigests=batch
                )
            except (ClientError, BotoCoreError) as exc:
                raise _raise("BatchCheckLayerAvailability", exc, repository) from exc
            for layer in resp.get("layers", []):
                digest = layer.get("layerDigest", "")
                if digest in out and layer.get("layerAvailability") == "AVAILABLE":
                    out[digest] = True
        return out


def _media_type_of(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    value = doc.get("mediaType", "") if isinstance(doc, dict) else ""
    return value if isinstance(value, str) else ""
