"""PutImage, DescribeImages and BatchDeleteImage (moto's replaced), with read-after-delete lag and the
PutImage quota.

Facts that live here (docs/ecr-facts.md "Repositories inside a PTC namespace": PutImage and
BatchDeleteImage are not restricted, deleting the only tag deletes the image; "APIs": DescribeImages'
fields and the PutImage quota; "Newer ECR features": ``imageStatus``; "Still unknown": read-after-delete
consistency of DescribeImages).

PutImage stores sha256 of the exact bytes; imageDigest must match (ImageDigestDoesNotMatchException);
an immutable tag raises ImageTagAlreadyExistsException; referenced blobs must exist
(LayersNotFoundException) and an index's manifests (ReferencedImagesNotFoundException), unless
``strict_put_image_layers=False``; a blob referenced by any image of the repository counts as present
(inferred, PTC layers arrive lazily). DescribeImages: imageIds, filter.tagStatus, maxResults/nextToken,
imagePushedAt, lastRecordedPullTime, imageManifestMediaType, artifactMediaType (config type) and
imageSizeInBytes (inferred: sum of layer sizes; an index: its largest manifest, as the model says),
``imageStatus`` ACTIVE (archiving is not emulated, so filter.imageStatus ARCHIVED/ACTIVATING finds
nothing). BatchDeleteImage: the only tag deletes the image, one of several keeps it (documented); by
digest deletes all tags, refused with ImageReferencedByManifestList while an index lists it; an
untagged image still listed by an index stays.

Consistency and quotas. ``describe_lag`` (unknown, default off): after BatchDeleteImage removes a tag,
DescribeImages (by imageIds and listings) keeps showing the tag on its old digest for that long, even
once the tag is back on another image; BatchGetImage and PutImage see the truth. ``put_image_rate``
(documented quota 10/s per account and region, default off): more PutImage calls than that within one
second of ``clock`` raise ThrottlingException (refused calls do not count). No other call is throttled.

Unknown, switchable (docs/ecr-behaviour.md): ``put_image_in_cache`` (default True, not documented as
restricted) False makes PutImage into a repository under a pull-through cache rule fail with
InvalidParameterException (the code is chosen here: none is public), so a backup cannot be written.
BatchDeleteImage records every tag it removes, for ``pulls``' ``reimport_after_delete``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    ImageAlreadyExistsException,
    ImageNotFoundException,
)
from moto.ecr.models import Image, Repository

from ptc_sync.models import sha256_digest
from testbed.ecr_ptc.api import (
    LAYER_DIGEST_RE,
    _Call,
    _decode_token,
    _encode_token,
    _error,
    _failure,
    _invalid_image_id,
    _max_results,
)
from testbed.ecr_ptc.store import (
    StoreMixin,
    _blob_digests,
    _by_digest,
    _by_tag,
    _child_digests,
    _doc,
    _tag_is_immutable,
    _untag,
)

IMAGE_ACTIVE: Final = "ACTIVE"
IMAGE_STATUSES: Final = (
    IMAGE_ACTIVE,
    "ARCHIVED",
    "ACTIVATING",
)  # botocore's ImageStatus enum

PUT_IMAGE_QUOTA: Final = 10  # PutImage requests per second, per account and region (service-quotas.html)


@dataclass(frozen=True)
class _LaggingTag:
    """A removed tag DescribeImages still shows, as it was, until ``until``."""

    digest: str
    until: datetime
    detail: dict[str, Any]


class ImagesMixin(StoreMixin):
    """The image APIs besides BatchGetImage."""

    strict_put_image_layers: bool
    describe_lag: timedelta
    put_image_rate: int | None
    _lagging: dict[tuple[str, str, str, str], _LaggingTag]
    _put_times: dict[tuple[str, str], deque[datetime]]

    @staticmethod
    def _put_image_manifest(call: _Call) -> tuple[str, dict[str, Any], str, str]:
        """PutImage's manifest checked like ECR: (manifest, parsed, media type, sha256 of the bytes)."""
        manifest = call.param("imageManifest")
        if not isinstance(manifest, str) or not manifest:
            raise _error(
                "InvalidParameterException",
                "Invalid parameter at 'imageManifest': required",
            )
        try:
            doc = json.loads(manifest)
        except ValueError as exc:
            raise _error(
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
            ) from exc
        if not isinstance(doc, dict):
            raise _error(
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest': not a JSON object",
            )
        param_type, doc_type = (
            call.param("imageManifestMediaType"),
            doc.get("mediaType"),
        )
        if param_type and doc_type and param_type != doc_type:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'imageManifestMediaType': '{param_type}' does not match the "
                f"manifest's mediaType '{doc_type}'",
            )
        media_type = param_type or doc_type
        if not media_type:
            raise _error(
                "InvalidParameterException",
                "image manifest media type not provided in manifest or parameter",
            )
        digest = sha256_digest(manifest.encode("utf-8"))
        given = call.param("imageDigest")
        if given is not None and not LAYER_DIGEST_RE.fullmatch(given):
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'imageDigest': '{given}'",
            )
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
        if (
            not self.put_image_in_cache
            and self._match_rule(call.account, call.region, name) is not None
            and getattr(repository, "ptc_created_by_cache", False)  # a pushed repository is not a cache
        ):
            raise _error(
                "InvalidParameterException",
                f"PutImage is not supported in the pull through cache repository '{name}' (emulated)",
            )
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
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'tagStatus': '{tag_status}'",
            )
        image_status = (call.param("filter") or {}).get("imageStatus", "ANY")
        if image_status not in (*IMAGE_STATUSES, "ANY"):
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'imageStatus': '{image_status}'",
            )
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
                self._removed_tags.add((call.account, call.region, name, tag))
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
                self._removed_tags.add((call.account, call.region, name, image_tag))
                deleted.append({"imageDigest": image_digest, "imageTag": image_tag})
            if not image.image_tags:
                deleted.append({"imageDigest": image_digest})
            repository.images.remove(image)
        return ActionResult({"imageIds": deleted, "failures": failures})
