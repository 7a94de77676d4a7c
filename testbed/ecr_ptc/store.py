"""How images live in moto's repositories: the exact manifest bytes, stored once per digest, a tag on at
most one image, the repository created on the first import, and the tag-immutability rule.

Facts that live here (docs/ecr-facts.md "Freshness": tag immutability; "APIs": DescribeRepositories'
``imageTagMutability`` and ``imageTagMutabilityExclusionFilters``). An immutable tag (IMMUTABLE; for
*_WITH_EXCLUSION the filters, matched as wildcards, decide: IMMUTABLE_WITH_EXCLUSION exempts the
matching tags, MUTABLE_WITH_EXCLUSION makes them immutable) is never moved. The digest of a stored image
is the sha256 of its bytes, so moto's synthetic digests never appear. The repository ECR creates on a
pull is MUTABLE and AES256 (repository creation templates are not emulated). A moved tag's old image
stays, untagged. moto's repository name check (kept) is stricter than the model's: it refuses ``a--b``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from moto.ecr.models import ECRBackend, Image, Repository, ecr_backends

from testbed.ecr_ptc.base import EmulatorCore


def _wildcard(pattern: str, value: str) -> bool:
    """ECR's tag filters: ``*`` matches any run of characters, everything else is literal."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None


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


class StoreMixin(EmulatorCore):
    """Writes manifests into moto's repositories and answers what a repository references."""

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
            repository.ptc_created_by_cache = True  # type: ignore[attr-defined]  # pulls.py: not pushed to
        return repository

    def _store(
        self,
        repository: Repository,
        manifest: str,
        digest: str,
        media_type: str,
        tag: str | None,
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

    def _referenced_blobs(self, repository: Repository) -> set[str]:
        return {digest for image in repository.images for digest in _blob_digests(_doc(image))}

    def _referencing_index(self, repository: Repository, digest: str) -> Image | None:
        return next((i for i in repository.images if digest in _child_digests(_doc(i))), None)
