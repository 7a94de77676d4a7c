"""Pulls and imports: BatchGetImage, the import from upstream it triggers, the 24-hour re-check, and the
progression of background imports.

Facts that live here (docs/ecr-facts.md "Freshness", "Which calls reach upstream" (BatchGetImage),
"Multi-architecture", "Docker Hub official images without library/").

By tag in a repository under a rule: a tag absent from the cache is always fetched upstream; the exact
manifest bytes are stored; an index brings every manifest it lists (by digest, untagged). The
repository is created on the first import. By digest never reaches upstream: a digest never cached is
ImageNotFound (#2837). acceptedMediaTypes defaults to the API reference's three (no index types).
Inferred: an image of a type not accepted is failure ImageNotFound (what real ECR answers is not
public; the enum has no better value) and a fresh import of such a type stores nothing. Docker Hub
official images asked for without ``library/`` (``docker-hub/alpine``) are UpstreamAccessDenied: Docker
Hub answers 403 Forbidden, not "not found" (reported). Pulls set ``lastRecordedPullTime`` exactly (ECR:
"at least once every 24 hours"), except a pull by an excluded principal (``pull_time``). Schema 1
conversion is not emulated.

The 24-hour rule (documented). A cached tag is re-checked upstream only when pulled by tag more than
24 h after its last check; within 24 h the cache is served even if upstream moved. When the re-check
fails for any reason (unreachable, 404, secret, injected fault) the cache is served and the next pull
re-checks. An immutable tag (``store``) is never moved. Inferred: the baseline is the last import or
successful check, else the push; PutImage of a tag counts as a check; a moved tag's old image stays,
untagged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from moto.core.responses import ActionResult
from moto.ecr.exceptions import (
    RepositoryNotFoundException,
)
from moto.ecr.models import Image, Repository, ecr_backends

from ptc_sync import mediatypes as mt
from testbed.ecr_ptc.access import ecr_service_refusal
from testbed.ecr_ptc.api import (
    EmulatedEcrError,
    _Call,
    _error,
    _failure,
    _invalid_image_id,
)
from testbed.ecr_ptc.events import EventsMixin
from testbed.ecr_ptc.faults import RAISABLE_CODES, FaultsMixin, _Background
from testbed.ecr_ptc.pull_time import PullTimeMixin
from testbed.ecr_ptc.rules import RulesMixin, _Rule, _Target
from testbed.ecr_ptc.store import (
    StoreMixin,
    _by_digest,
    _by_tag,
    _child_digests,
    _tag_is_immutable,
)
from testbed.ecr_ptc.upstream import _Fetched, _UpstreamClient, _UpstreamError

REFRESH_INTERVAL: Final = timedelta(hours=24)

SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
# What BatchGetImage accepts when acceptedMediaTypes is omitted: the API reference's valid values.
DEFAULT_ACCEPTED: Final = (SCHEMA1, mt.DOCKER_MANIFEST, mt.OCI_MANIFEST)


def _pushed_to(repository: Repository | None, rule: _Rule) -> bool:
    """A repository under a ROOT rule that ECR's import did not create: one the team pushes to."""
    return (
        repository is not None
        and rule.prefix == "ROOT"
        and not getattr(repository, "ptc_created_by_cache", False)
    )


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
class UpstreamFetch:
    """One manifest request the emulated ECR made upstream; ``outcome`` is "ok" or a failure code."""

    host: str
    repository: str
    reference: str
    at: datetime
    outcome: str


@dataclass
class _Pending:
    target: _Target
    fetched: _Fetched
    background: _Background
    ready_at: datetime | None
    calls_left: int | None


class PullsMixin(RulesMixin, EventsMixin, FaultsMixin, StoreMixin, PullTimeMixin):
    """BatchGetImage and everything a pull sets going upstream."""

    imports: list[ImportRecord]
    upstream_fetches: list[UpstreamFetch]
    pulls: Counter[tuple[str, str]]
    _pending: dict[tuple[str, str, str, str], _Pending]

    def complete_background_imports(self) -> int:
        """Finish every pending background import now; returns how many there were."""
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            for item in pending:
                self._complete(item)
            return len(pending)

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
            refusal = ecr_service_refusal(rule.upstream_registry, rule.custom_role_arn)
            if refusal:
                raise _UpstreamError("UpstreamAccessDenied", refusal)
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

    import_into_pushed_repositories: bool

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
        if (
            match is not None
            and not self.import_into_pushed_repositories
            and _pushed_to(repository, match[0])
        ):
            match = None  # switched off: ECR leaves a repository it did not create alone (serves only it)
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
            return {
                "failureCode": "ImageNotFound",
                "failureReason": "Requested image not found",
            }
        if image.image_manifest_media_type not in accepted:
            return self._unsupported(image.image_manifest_media_type or "")
        return image, repository

    def _first_pull(self, target: _Target, accepted: tuple[str, ...]) -> Image | dict[str, str]:
        """A pull by tag of a tag absent from the cache: always goes upstream (or waits for the
        background import already under way). With ``reimport_after_delete`` off (unknown: no public
        report of the API-only path), a tag BatchDeleteImage removed is never imported again: the
        pull answers ImageNotFound, as for a tag upstream does not have."""
        if not self.reimport_after_delete and target.key in self._removed_tags:
            return {"failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
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
        return {
            "failureCode": background.failure_code,
            "failureReason": background.failure_reason,
        }
