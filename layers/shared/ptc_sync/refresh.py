"""The refresh protocol: replace a stale cached tag with upstream's image without ever losing it.

ECR has no "refresh now" (ecr-facts.md, Freshness): a tag absent from the cache is fetched from
upstream on its next pull. So, with every step checked:

1. read the old manifest by digest (a read by digest never reaches upstream)
2. back it up under a backup tag with PutImage from the exact bytes (same digest)
3. remove the tag (the image stays: the backup tag still references it)
4. pull the tag (BatchGetImage with the index types accepted): ECR imports it from upstream
5. warm every blob of every platform (GetDownloadUrlForLayer)
6. verify DescribeImages shows upstream's digest, polling within a bound (imports can finish in
   the background after the first request failed)
7. drop backups beyond the configured generations

A failure at 2 leaves the tag alone. A failure after 3 puts the old manifest back under the tag and
checks that it is there. Backup tags are named ``ptc-sync-prev--<tag>--<UTC stamp>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from ptc_sync import mediatypes as mt
from ptc_sync.ecr import EcrAdapter, EcrError, Manifest
from ptc_sync.models import CachedTag, short_digest

BACKUP_PREFIX: Final = "ptc-sync-prev--"
STAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
# Codes after which waiting cannot help: the import will not finish in the background.
DEFINITE_IMPORT_FAILURES: Final = frozenset(
    {"AccessDeniedException", "RepositoryNotFoundException", "UpstreamAccessDenied", "UnsupportedImageType"}
)
UNKNOWN_PLATFORM: Final = "unknown/unknown"  # buildx attestation manifests inside an index
RESTORE_ATTEMPTS: Final = 4  # PutImage of the old manifest during a rollback, a poll interval apart


class Step(StrEnum):
    READ_OLD = "read-old"
    BACKUP = "backup"
    REMOVE_TAG = "remove-tag"
    IMPORT = "import"
    WARM = "warm"
    VERIFY = "verify"
    DROP_BACKUP = "drop-backup"


def backup_tag_for(tag: str, at: datetime) -> str:
    return f"{BACKUP_PREFIX}{tag}--{at.astimezone(UTC).strftime(STAMP_FORMAT)}"


def is_backup_tag(tag: str) -> bool:
    return tag.startswith(BACKUP_PREFIX)


def backup_source(backup_tag: str) -> str | None:
    """``ptc-sync-prev--node--20261127T101500Z`` → ``node`` (None when not a backup tag)."""
    if not is_backup_tag(backup_tag):
        return None
    source, sep, _stamp = backup_tag[len(BACKUP_PREFIX) :].rpartition("--")
    return source if sep else None


@dataclass(frozen=True, slots=True)
class ImageContents:
    platforms: tuple[str, ...]  # os/arch[/variant] of each child of an index; () for one image
    blobs: tuple[str, ...]  # every config and layer digest, all platforms
    manifests: int  # manifests read (index + children)


def platforms_of(manifest: Manifest) -> tuple[str, ...]:
    """The platforms an index lists (attestations left out); () for a single-platform manifest."""
    if not mt.is_index(manifest.media_type):
        return ()
    doc = json.loads(manifest.body)
    found = []
    for entry in doc.get("manifests", []):
        p = entry.get("platform") or {}
        name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
        if name and name != UNKNOWN_PLATFORM:
            found.append(name)
    return tuple(found)


def pull_cost(manifest: Manifest) -> int:
    """Upstream pulls a refresh of this image costs where pulls are counted (one per platform)."""
    return max(1, len(platforms_of(manifest)))


@dataclass(frozen=True, slots=True)
class RefreshResult:
    ok: bool
    new_digest: str | None = None
    platforms: tuple[str, ...] = ()
    failed_step: Step | None = None
    reason: str = ""
    rolled_back: bool = False
    backup_tag: str | None = None
    blobs_warmed: int = 0
    notes: tuple[str, ...] = ()


class StepFailedError(Exception):
    def __init__(self, step: Step, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class Refresher:
    def __init__(
        self,
        ecr: EcrAdapter,
        *,
        verify_timeout: float = 120.0,
        poll_interval: float = 2.0,
        keep_generations: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ecr = ecr
        self.verify_timeout = verify_timeout
        self.poll_interval = poll_interval
        self.keep_generations = keep_generations
        self.sleep = sleep
        self.monotonic = monotonic
        self.now = now

    def read_old(self, cached: CachedTag) -> Manifest:
        """Step 1, also used by the caller to price the refresh before spending upstream budget."""
        try:
            return self.ecr.get_manifest(cached.repository, digest=cached.digest)
        except EcrError as exc:
            raise StepFailedError(Step.READ_OLD, str(exc)) from exc

    def refresh(
        self,
        cached: CachedTag,
        expected_digest: str,
        *,
        old: Manifest | None = None,
        existing_backups: Sequence[str] = (),
    ) -> RefreshResult:
        repo, tag = cached.repository, cached.tag
        try:
            old = old or self.read_old(cached)
        except StepFailedError as exc:
            return RefreshResult(ok=False, failed_step=exc.step, reason=exc.reason)
        backup = backup_tag_for(tag, self.now())
        try:
            self.ecr.put_manifest(repo, backup, old)
        except EcrError as exc:
            return RefreshResult(ok=False, failed_step=Step.BACKUP, reason=f"{exc}; tag left untouched")

        try:
            self.ecr.delete_tags(repo, [tag])
        except EcrError as exc:
            return self._after_failure(cached, old, backup, Step.REMOVE_TAG, str(exc))

        try:
            contents = self._import_warm_verify(repo, tag, expected_digest)
        except StepFailedError as exc:
            return self._after_failure(cached, old, backup, exc.step, exc.reason)

        notes = self._drop_backups(repo, [*existing_backups, backup])
        kept = backup if self.keep_generations > 0 else None
        return RefreshResult(
            ok=True,
            new_digest=expected_digest,
            platforms=contents.platforms,
            backup_tag=kept,
            blobs_warmed=len(contents.blobs),
            notes=notes,
        )

    # -- pre-warm and rollback (pre-warm list, CLI) -----------------------------------------------------

    def prewarm(self, repository: str, tag: str) -> RefreshResult:
        """Make ``repository:tag`` cached and every blob of every platform warm: a pull by tag (which
        imports an absent tag), waiting within the bound for a background import, then the blobs."""
        deadline = self.monotonic() + self.verify_timeout
        try:
            manifest = self.ecr.get_manifest(repository, tag=tag)
        except EcrError as exc:
            if exc.code in DEFINITE_IMPORT_FAILURES:
                return RefreshResult(ok=False, failed_step=Step.IMPORT, reason=str(exc))
            try:
                digest = self._wait_for_any(repository, tag, deadline, str(exc))
                manifest = self.ecr.get_manifest(repository, digest=digest)
            except (StepFailedError, EcrError) as err:
                reason = err.reason if isinstance(err, StepFailedError) else str(err)
                return RefreshResult(ok=False, failed_step=Step.IMPORT, reason=reason)
        try:
            contents = self._warm(repository, manifest)
        except StepFailedError as exc:
            return RefreshResult(
                ok=False, new_digest=manifest.digest, failed_step=exc.step, reason=exc.reason
            )
        return RefreshResult(
            ok=True,
            new_digest=manifest.digest,
            platforms=contents.platforms,
            blobs_warmed=len(contents.blobs),
        )

    def _wait_for_any(self, repo: str, tag: str, deadline: float, first_error: str) -> str:
        while True:
            try:
                seen = self.ecr.tag_digest(repo, tag)
            except EcrError:
                seen = None
            if seen is not None:
                return seen
            if self.monotonic() >= deadline:
                raise StepFailedError(
                    Step.IMPORT, f"not in ECR after {self.verify_timeout:g}s ({first_error})"
                )
            self.sleep(self.poll_interval)

    def rollback(self, repository: str, tag: str, backups: Sequence[str]) -> RefreshResult:
        """Put the newest backup generation back under ``tag`` (the previous image a refresh kept)."""
        if not backups:
            return RefreshResult(
                ok=False, failed_step=Step.READ_OLD, reason=f"no backup of {repository}:{tag}"
            )
        newest = sorted(backups, key=lambda t: t.rpartition("--")[2])[-1]
        try:
            digest = self.ecr.tag_digest(repository, newest)
            if digest is None:
                return RefreshResult(
                    ok=False, failed_step=Step.READ_OLD, reason=f"backup tag {newest} is gone"
                )
            previous = self.ecr.get_manifest(repository, digest=digest)
        except EcrError as exc:
            return RefreshResult(ok=False, failed_step=Step.READ_OLD, reason=str(exc), backup_tag=newest)
        try:
            self.ecr.put_manifest(repository, tag, previous)
        except EcrError as exc:
            put_error = str(exc)  # ImageAlreadyExists when the tag already shows it: checked below
        else:
            put_error = ""
        if not self._tag_is(repository, tag, previous.digest):
            reason = put_error or f"{tag} does not show {previous.digest}"
            return RefreshResult(ok=False, failed_step=Step.VERIFY, reason=reason, backup_tag=newest)
        return RefreshResult(ok=True, new_digest=previous.digest, backup_tag=newest)

    # -- steps 4 to 6 -----------------------------------------------------------------------------------

    def _import_warm_verify(self, repo: str, tag: str, expected: str) -> ImageContents:
        deadline = self.monotonic() + self.verify_timeout
        first_error = ""
        try:
            imported: Manifest | None = self.ecr.get_manifest(repo, tag=tag)
        except EcrError as exc:
            if exc.code in DEFINITE_IMPORT_FAILURES:
                raise StepFailedError(Step.IMPORT, str(exc)) from exc
            imported = None  # ECR may finish the import in the background: poll for it below
            first_error = str(exc)
        if imported is None:
            self._wait_for_tag(repo, tag, expected, deadline, first_error)
            try:
                imported = self.ecr.get_manifest(repo, tag=tag)
            except EcrError as exc:
                raise StepFailedError(Step.IMPORT, str(exc)) from exc
        if imported.digest != expected:
            raise StepFailedError(
                Step.IMPORT,
                f"ECR imported {imported.digest}, upstream reported {expected} "
                "(upstream moved during the refresh?)",
            )
        contents = self._warm(repo, imported)
        self._wait_for_tag(repo, tag, expected, deadline, "")
        return contents

    def _wait_for_tag(self, repo: str, tag: str, expected: str, deadline: float, first_error: str) -> None:
        """Poll DescribeImages until ``tag`` shows ``expected``; a third digest fails at once."""
        last = ""
        while True:
            try:
                seen = self.ecr.tag_digest(repo, tag)
            except EcrError as exc:
                seen, last = None, str(exc)
            if seen == expected:
                return
            if seen is not None:
                raise StepFailedError(Step.VERIFY, f"tag shows {seen}, expected {expected}")
            if self.monotonic() >= deadline:
                why = first_error or last or "tag still absent"
                raise StepFailedError(
                    Step.IMPORT if first_error else Step.VERIFY,
                    f"{expected} not in ECR after {self.verify_timeout:g}s ({why})",
                )
            self.sleep(self.poll_interval)

    def _warm(self, repo: str, manifest: Manifest) -> ImageContents:
        manifests = [manifest]
        if mt.is_index(manifest.media_type):
            for entry in json.loads(manifest.body).get("manifests", []):
                try:
                    manifests.append(self.ecr.get_manifest(repo, digest=entry["digest"]))
                except EcrError as exc:
                    raise StepFailedError(Step.WARM, f"child manifest {entry['digest']}: {exc}") from exc
        blobs: list[str] = []
        for child in manifests:
            if mt.is_index(child.media_type):
                continue
            doc = json.loads(child.body)
            for desc in [doc.get("config", {}), *doc.get("layers", [])]:
                digest = desc.get("digest")
                if digest and digest not in blobs:
                    blobs.append(digest)
        for digest in blobs:
            try:
                self.ecr.warm_layer(repo, digest)
            except EcrError as exc:
                raise StepFailedError(Step.WARM, str(exc)) from exc
        return ImageContents(platforms_of(manifest), tuple(blobs), len(manifests))

    # -- failure and cleanup -------------------------------------------------------------------------

    def _after_failure(
        self, cached: CachedTag, old: Manifest, backup: str, step: Step, reason: str
    ) -> RefreshResult:
        """Put the old manifest back under the tag and check it is there; the backup tag goes only
        once the tag is verified to show the old digest again."""
        repo, tag = cached.repository, cached.tag
        restored = self._tag_is(repo, tag, old.digest)  # the tag may never have gone (delete failed)
        rolled_back = False
        if not restored:
            restore_error = ""
            for attempt in range(RESTORE_ATTEMPTS):  # a throttled PutImage must not leave the tag absent
                if attempt:  # flat: the time a run keeps in hand after the verify bound is short
                    self.sleep(self.poll_interval)
                try:
                    self.ecr.put_manifest(repo, tag, old)
                except EcrError as exc:
                    restore_error = str(exc)
                else:
                    restore_error = ""
                restored = self._tag_is(repo, tag, old.digest)  # ImageAlreadyExists also lands here
                if restored:
                    break
            rolled_back = restored
            if not restored:
                return RefreshResult(
                    ok=False,
                    failed_step=step,
                    reason=(
                        f"{reason}; ROLLBACK FAILED ({restore_error or 'tag does not show the old digest'}); "
                        f"the old image {short_digest(old.digest)} is kept under {repo}:{backup}"
                    ),
                    backup_tag=backup,
                )
        notes = self._drop_backups(repo, [backup], keep=0)
        return RefreshResult(
            ok=False,
            failed_step=step,
            reason=reason,
            rolled_back=rolled_back,
            backup_tag=backup if notes else None,
            notes=notes,
        )

    def _tag_is(self, repo: str, tag: str, digest: str) -> bool:
        try:
            return self.ecr.tag_digest(repo, tag) == digest
        except EcrError:
            return False

    def _drop_backups(self, repo: str, backups: Sequence[str], keep: int | None = None) -> tuple[str, ...]:
        """Delete all but the newest ``keep`` backups; a failure here is a note, not a failed refresh."""
        keep = self.keep_generations if keep is None else keep
        ordered = sorted(set(backups), key=lambda t: t.rpartition("--")[2], reverse=True)
        doomed = ordered[keep:]
        if not doomed:
            return ()
        try:
            self.ecr.delete_tags(repo, doomed)
        except EcrError as exc:
            return (f"{Step.DROP_BACKUP}: {exc}",)
        return ()
