"""The refresh protocol: replace a stale cached tag with upstream's image without ever losing it.

ECR has no "refresh now" (docs/ecr-behaviour.md): a tag absent from the cache is fetched from
upstream on its next pull. So, with every step checked:

0. take the tag's lease in the journal (another refresher holding it: touch nothing)
1. read the old manifest by digest (a read by digest never reaches upstream)
2. record the backup in the ledger, then write it with PutImage from the exact bytes (same digest)
3. write the intent (old digest, backup tag, expected digest), then remove the tag (the image
   stays: the backup tag still references it)
4. pull the tag (BatchGetImage with the index types accepted, or the registry endpoint's
   ``GET /v2/…/manifests/<tag>``: ``importer.py``): ECR imports it from upstream
5. ask for every blob of every platform (GetDownloadUrlForLayer, or the endpoint's blob GET), which
   makes ECR cache it
6. verify DescribeImages shows upstream's digest, polling within a bound (imports can finish in
   the background after the first request failed; right after the delete DescribeImages may still
   show the old digest for a while, which is waited out, not failed on)
7. poll BatchCheckLayerAvailability, within what is left of the same bound, until ECR serves every
   blob itself: a blob not cached yet is served from upstream's own storage (docs/ecr-behaviour.md),
   so a node without a route to upstream could not pull it. Blobs still warming by the bound are a
   note on the refreshed tag, never a failure: the tag is verified and stays
8. drop backups beyond the configured generations, close the intent

A refresh starts only when the time left covers its worst case, checked again before the tag is
removed. A failure before 3 leaves the tag alone. A failure after 3 puts the old manifest back under
the tag and checks that it is there; when even that fails, or the process dies, the intent stays
open and ``repair.Repairer`` finishes the job on the next run.

Backup tags, their names and the pruning of generations beyond ``keep_generations`` are
``backups.py``'s (names re-exported here). What stays is one protocol: the steps above, the rollback
after a failure and the entry points the repair sweep and the CLI call (``restore``, ``rollback``,
``prewarm``). It is over 400 lines on purpose: split by step, a reader would follow one tag's life
through several modules, and every step shares the lease, the bound and the rollback.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from ptc_sync import mediatypes as mt
from ptc_sync.backups import (
    BACKUP_PREFIX,
    DROP_BACKUP_STEP,
    MAX_TAG,
    backup_source,
    backup_tag_for,
    drop_backups,
    is_backup_tag,
    surplus,
)
from ptc_sync.ecr import EcrAdapter, EcrError, Manifest
from ptc_sync.importer import ApiImporter, CacheImporter
from ptc_sync.journal import (
    BackupLedger,
    BackupRecord,
    Lease,
    LeaseHeldError,
    RefreshJournal,
    newest_first,
)
from ptc_sync.models import CachedTag, short_digest
from ptc_sync.state import StateError

# Codes after which waiting cannot help: the import will not finish in the background.
DEFINITE_IMPORT_FAILURES: Final = frozenset(
    {"AccessDeniedException", "RepositoryNotFoundException", "UpstreamAccessDenied", "UnsupportedImageType"}
)
UNKNOWN_PLATFORM: Final = "unknown/unknown"  # buildx attestation manifests inside an index
# a pre-warm pulls a tag that is not cached: these mean upstream has no such image
PREWARM_DEFINITE: Final = frozenset({"ImageNotFound", "ImageNotFoundException"})
RESTORE_ATTEMPTS: Final = 4  # PutImage of the old manifest during a rollback, a poll interval apart
# seconds for the calls around the polling (lease, read, backup, intent, remove, import request,
# restore, close), each bounded by the AWS client's timeouts and retries
CALL_ALLOWANCE: Final = 45.0


__all__ = [
    "BACKUP_PREFIX",
    "CALL_ALLOWANCE",
    "DEFINITE_IMPORT_FAILURES",
    "MAX_TAG",
    "PREWARM_DEFINITE",
    "RESTORE_ATTEMPTS",
    "UNKNOWN_PLATFORM",
    "ImageContents",
    "RefreshResult",
    "Refresher",
    "Step",
    "StepFailedError",
    "backup_source",
    "backup_tag_for",
    "is_backup_tag",
    "platforms_of",
    "pull_cost",
]


class Step(StrEnum):
    LEASE = "lease"
    READ_OLD = "read-old"
    BACKUP = "backup"
    REMOVE_TAG = "remove-tag"
    IMPORT = "import"
    WARM = "warm"
    VERIFY = "verify"
    DROP_BACKUP = DROP_BACKUP_STEP


@dataclass(frozen=True, slots=True)
class ImageContents:
    platforms: tuple[str, ...]  # os/arch[/variant] of each child of an index; () for one image
    blobs: tuple[str, ...]  # every config and layer digest, all platforms
    manifests: int  # manifests read (index + children)
    warming: tuple[str, ...] = ()  # blobs ECR does not serve itself yet (not AVAILABLE)
    check_error: str = ""  # why availability could not be checked (then every unchecked blob is warming)

    @property
    def warm(self) -> int:
        return len(self.blobs) - len(self.warming)

    def warming_note(self) -> str:
        """'' when every blob is ECR's own, else "N of M layers still warming …"."""
        if not self.warming:
            return ""
        why = f"; {self.check_error}" if self.check_error else ""
        return (
            f"{len(self.warming)} of {len(self.blobs)} layers still warming: ECR does not serve them "
            f"itself yet, a node without a route to upstream cannot pull them{why}"
        )


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
    blobs_warmed: int = 0  # blobs ECR serves itself (BatchCheckLayerAvailability: AVAILABLE)
    blobs_warming: int = 0  # blobs asked for but not ECR's own yet: not warm, the next run checks again
    notes: tuple[str, ...] = ()
    untouched: str = ""  # not attempted, the tag as it was: why (no time left, …)
    held_by: str = ""  # another refresher holds the tag's lease: this one touched nothing
    repair_pending: bool = False  # the tag may be absent: the intent stays open for the repair sweep


class StepFailedError(Exception):
    def __init__(self, step: Step, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class Refresher:
    def __init__(
        self,
        ecr: EcrAdapter,
        journal: RefreshJournal,
        ledger: BackupLedger,
        *,
        owner: str,
        verify_timeout: float = 120.0,
        poll_interval: float = 2.0,
        keep_generations: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        importer: CacheImporter | None = None,
    ) -> None:
        self.ecr = ecr
        # how a pull by tag and the blob asks reach ECR (importer.py): the API unless told otherwise
        self.importer: CacheImporter = importer or ApiImporter(ecr)
        self.journal = journal
        self.ledger = ledger
        self.owner = owner
        self.verify_timeout = verify_timeout
        self.poll_interval = poll_interval
        self.keep_generations = keep_generations
        self.sleep = sleep
        self.monotonic = monotonic
        self.now = now

    @property
    def worst_case(self) -> float:
        """Seconds one refresh may take: remove → import → verify → rollback with its retries."""
        return self.verify_timeout + RESTORE_ATTEMPTS * self.poll_interval + CALL_ALLOWANCE

    def has_time(self, time_left: Callable[[], float] | None) -> bool:
        return time_left is None or time_left() >= self.worst_case

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
        existing_backups: Sequence[BackupRecord] = (),
        time_left: Callable[[], float] | None = None,
    ) -> RefreshResult:
        if not self.has_time(time_left):
            return RefreshResult(ok=False, untouched=self._no_time(time_left))
        try:
            lease = self.journal.acquire(cached.repository, cached.tag, self.owner, self.now())
        except LeaseHeldError as held:
            return RefreshResult(ok=False, held_by=str(held))
        except StateError as exc:
            return RefreshResult(ok=False, failed_step=Step.LEASE, reason=f"{exc}; tag left untouched")
        moved = self._moved_since_listed(lease, cached)
        if moved is not None:
            return moved
        return self._refresh_leased(
            lease, cached, expected_digest, old=old, existing_backups=existing_backups, time_left=time_left
        )

    def _moved_since_listed(self, lease: Lease, cached: CachedTag) -> RefreshResult | None:
        """Under the lease, what the tag shows now: a duplicate that compared before another refresher
        finished must not refresh again (None: the tag still shows the digest that was compared)."""
        try:
            current = self.ecr.tag_digest(cached.repository, cached.tag)
        except EcrError as exc:
            return self._untouched(lease, None, failed_step=Step.READ_OLD, reason=str(exc))
        if current == cached.digest:
            return None
        shows = f"shows {short_digest(current)}" if current else "is no longer in the cache"
        return self._untouched(
            lease,
            None,
            untouched=f"the tag {shows} since it was compared (another refresh?)",
            new_digest=current,
        )

    def _no_time(self, time_left: Callable[[], float] | None) -> str:
        left = time_left() if time_left is not None else 0.0
        return f"no time left in run ({left:.0f}s left, a refresh needs up to {self.worst_case:.0f}s)"

    def _release(self, lease: Lease) -> tuple[str, ...]:
        try:
            self.journal.release(lease)
        except StateError as exc:
            return (f"lease not released ({exc}); it expires by itself",)
        return ()

    def _untouched(self, lease: Lease, record: BackupRecord | None, **fields: Any) -> RefreshResult:
        """The tag was never removed: drop the backup just written (if any), release the lease."""
        notes = self.drop_backups(lease.repository, [record]) if record is not None else ()
        notes += self._release(lease)
        return RefreshResult(ok=False, notes=notes, **fields)

    def _refresh_leased(
        self,
        lease: Lease,
        cached: CachedTag,
        expected_digest: str,
        *,
        old: Manifest | None,
        existing_backups: Sequence[BackupRecord],
        time_left: Callable[[], float] | None,
    ) -> RefreshResult:
        backed_up = self._back_up(lease, cached, old)
        if isinstance(backed_up, RefreshResult):
            return backed_up
        old, record = backed_up
        intent = self._write_intent(lease, record, expected_digest, time_left)
        if isinstance(intent, RefreshResult):
            return intent
        repo, tag = cached.repository, cached.tag
        try:
            self.ecr.delete_tags(repo, [tag])
        except EcrError as exc:
            return self._after_failure(intent, old, record, Step.REMOVE_TAG, str(exc))
        try:
            contents = self._import_warm_verify(repo, tag, expected_digest, old.digest)
        except StepFailedError as exc:
            return self._after_failure(intent, old, record, exc.step, exc.reason)

        notes: tuple[str, ...] = (contents.warming_note(),) if contents.warming else ()
        try:
            self.ledger.mark_kept(record)
        except StateError as exc:
            notes += (f"backup {record.backup_tag} not marked kept ({exc})",)
        notes += self.drop_backups(repo, surplus([*existing_backups, record], self.keep_generations))
        notes += self._release(intent)
        kept = record.backup_tag if self.keep_generations > 0 else None
        return RefreshResult(
            ok=True,
            new_digest=expected_digest,
            platforms=contents.platforms,
            backup_tag=kept,
            blobs_warmed=contents.warm,
            blobs_warming=len(contents.warming),
            notes=notes,
        )

    def _back_up(
        self, lease: Lease, cached: CachedTag, old: Manifest | None
    ) -> tuple[Manifest, BackupRecord] | RefreshResult:
        """Steps 1 and 2: the old manifest, recorded in the ledger, then written under the backup tag."""
        try:
            old = old or self.read_old(cached)
        except StepFailedError as exc:
            return self._untouched(lease, None, failed_step=exc.step, reason=exc.reason)
        record = BackupRecord(
            cached.repository, backup_tag_for(cached.tag, self.now()), cached.tag, old.digest, self.now()
        )
        try:
            self.ledger.record_backup(record)
        except StateError as exc:
            return self._untouched(lease, None, failed_step=Step.BACKUP, reason=f"{exc}; tag left untouched")
        try:
            self.ecr.put_manifest(cached.repository, record.backup_tag, old)
        except EcrError as exc:
            return self._untouched(
                lease, record, failed_step=Step.BACKUP, reason=f"{exc}; tag left untouched"
            )
        return old, record

    def _write_intent(
        self, lease: Lease, record: BackupRecord, expected_digest: str, time_left: Callable[[], float] | None
    ) -> Lease | RefreshResult:
        """Step 3's first half: with the time for the worst case still left, the intent in the journal."""
        if not self.has_time(time_left):
            return self._untouched(lease, record, untouched=self._no_time(time_left))
        try:
            return self.journal.mark_removing(
                lease,
                old_digest=record.digest,
                backup_tag=record.backup_tag,
                expected_digest=expected_digest,
                now=self.now(),
            )
        except LeaseHeldError as held:
            return self._untouched(lease, record, held_by=str(held))
        except StateError as exc:
            reason = f"intent not written ({exc}); tag left untouched"
            return self._untouched(lease, record, failed_step=Step.BACKUP, reason=reason)

    # -- pre-warm and rollback (pre-warm list, CLI) -----------------------------------------------------

    def prewarm(
        self, repository: str, tag: str, *, time_left: Callable[[], float] | None = None
    ) -> RefreshResult:
        """Make ``repository:tag`` cached and every blob of every platform warm: a pull by tag (which
        imports an absent tag), waiting within the bound for a background import, then each blob asked
        for and BatchCheckLayerAvailability polled within the same bound until ECR serves every one
        itself. Blobs still warming by then: ``ok`` is False with ``blobs_warming`` set and step
        ``warm`` (not a failure: nothing is wrong, the next run checks again). It removes nothing, so it
        needs no lease; it starts only with the time for its bound."""
        if time_left is not None and time_left() < self.verify_timeout + CALL_ALLOWANCE:
            return RefreshResult(ok=False, untouched=self._no_time(time_left))
        deadline = self.monotonic() + self.verify_timeout
        try:
            manifest = self.importer.import_tag(repository, tag)
        except EcrError as exc:
            # nothing is cached yet, so "not found" is upstream's answer: waiting cannot help
            if exc.code in DEFINITE_IMPORT_FAILURES or exc.code in PREWARM_DEFINITE:
                return RefreshResult(ok=False, failed_step=Step.IMPORT, reason=str(exc))
            try:
                digest = self._wait_for_any(repository, tag, deadline, str(exc))
                manifest = self.ecr.get_manifest(repository, digest=digest)
            except (StepFailedError, EcrError) as err:
                reason = err.reason if isinstance(err, StepFailedError) else str(err)
                return RefreshResult(ok=False, failed_step=Step.IMPORT, reason=reason)
        try:
            contents = self._await_warm(repository, self._warm(repository, manifest), deadline)
        except StepFailedError as exc:
            return RefreshResult(
                ok=False, new_digest=manifest.digest, failed_step=exc.step, reason=exc.reason
            )
        return RefreshResult(
            ok=not contents.warming,
            new_digest=manifest.digest,
            platforms=contents.platforms,
            blobs_warmed=contents.warm,
            blobs_warming=len(contents.warming),
            failed_step=Step.WARM if contents.warming else None,
            reason=contents.warming_note(),
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

    def rollback(self, repository: str, tag: str, backups: Sequence[BackupRecord]) -> RefreshResult:
        """Put the newest backup generation ptc-sync recorded back under ``tag``."""
        mine = newest_first(b for b in backups if b.source_tag == tag)
        if not mine:
            return RefreshResult(
                ok=False, failed_step=Step.READ_OLD, reason=f"no backup of {repository}:{tag}"
            )
        newest = mine[0].backup_tag
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

    def _import_warm_verify(self, repo: str, tag: str, expected: str, old: str) -> ImageContents:
        deadline = self.monotonic() + self.verify_timeout
        first_error = ""
        try:
            imported: Manifest | None = self.importer.import_tag(repo, tag)
        except EcrError as exc:
            if exc.code in DEFINITE_IMPORT_FAILURES:
                raise StepFailedError(Step.IMPORT, str(exc)) from exc
            imported = None  # ECR may finish the import in the background: poll for it below
            first_error = str(exc)
        if imported is None:
            self._wait_for_tag(repo, tag, expected, deadline, first_error, lagging=old)
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
        self._wait_for_tag(repo, tag, expected, deadline, "", lagging=old)
        return self._await_warm(repo, contents, deadline)

    def _wait_for_tag(
        self, repo: str, tag: str, expected: str, deadline: float, first_error: str, *, lagging: str = ""
    ) -> None:
        """Poll DescribeImages until ``tag`` shows ``expected``. Right after the delete it may still show
        the old digest (``lagging``): that is waited out within the bound; a third digest fails at once."""
        last = ""
        while True:
            try:
                seen = self.ecr.tag_digest(repo, tag)
            except EcrError as exc:
                seen, last = None, str(exc)
            if seen == expected:
                return
            if seen is not None and seen != lagging:
                raise StepFailedError(Step.VERIFY, f"tag shows {seen}, expected {expected}")
            if seen is not None:
                last = f"still shows the old {short_digest(seen)}"
            if self.monotonic() >= deadline:
                why = first_error or last or "tag still absent"
                raise StepFailedError(
                    Step.IMPORT if first_error else Step.VERIFY,
                    f"{expected} not in ECR after {self.verify_timeout:g}s ({why})",
                )
            self.sleep(self.poll_interval)

    def _warm(self, repo: str, manifest: Manifest) -> ImageContents:
        """Every blob of every platform (an index's children read by digest), each asked for with
        GetDownloadUrlForLayer so ECR starts caching it; a failed ask fails the step."""
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
                self.importer.fetch_blob(repo, digest)
            except EcrError as exc:
                raise StepFailedError(Step.WARM, str(exc)) from exc
        return ImageContents(platforms_of(manifest), tuple(blobs), len(manifests), warming=tuple(blobs))

    def _await_warm(self, repo: str, contents: ImageContents, deadline: float) -> ImageContents:
        """Poll BatchCheckLayerAvailability for the blobs not yet ECR's own, a poll interval apart, until
        every one is AVAILABLE or ``deadline``. A URL GetDownloadUrlForLayer gave proves nothing: for a
        blob not cached it points at upstream. A failed check ends the polling (warmth is not safety):
        the blobs not seen AVAILABLE stay warming."""
        pending = list(contents.warming)
        check_error = ""
        while pending:
            try:
                available = self.ecr.layers_available(repo, pending)
            except EcrError as exc:
                check_error = f"availability not checked ({exc})"
                break
            pending = [d for d in pending if not available.get(d)]
            if not pending or self.monotonic() + self.poll_interval > deadline:
                break
            self.sleep(self.poll_interval)
        return dataclasses.replace(contents, warming=tuple(pending), check_error=check_error)

    # -- failure and cleanup -------------------------------------------------------------------------

    def _after_failure(
        self, intent: Lease, old: Manifest, record: BackupRecord, step: Step, reason: str
    ) -> RefreshResult:
        """Put the old manifest back under the tag and check it is there; the backup goes and the
        intent closes only once the tag is verified to show the old digest again."""
        repo, tag = intent.repository, intent.tag
        # Always written, never judged by a read: right after BatchDeleteImage, DescribeImages may still
        # show the old digest on a tag that is gone. PutImage answers ImageAlreadyExists only when the
        # tag really still holds the old image (the delete failed).
        restored, restore_error, wrote = self._put_back(repo, tag, old)
        rolled_back = restored and wrote
        if not restored:
            return RefreshResult(
                ok=False,
                failed_step=step,
                reason=(
                    f"{reason}; ROLLBACK FAILED ({restore_error or 'tag does not show the old digest'}); "
                    f"the old image {short_digest(old.digest)} is kept under {repo}:{record.backup_tag} "
                    "and the next run repairs the tag"
                ),
                backup_tag=record.backup_tag,
                repair_pending=True,
                notes=self._abandon(intent),
            )
        notes = self.drop_backups(repo, [record])
        notes += self._release(intent)
        return RefreshResult(
            ok=False,
            failed_step=step,
            reason=reason,
            rolled_back=rolled_back,
            backup_tag=record.backup_tag if any(n.startswith(Step.DROP_BACKUP) for n in notes) else None,
            notes=notes,
        )

    def restore(self, repo: str, tag: str, old: Manifest) -> tuple[bool, str]:
        """PutImage ``old`` under ``tag`` until DescribeImages shows it (a throttled PutImage must not
        leave the tag absent): (restored, the last error)."""
        restored, restore_error, _wrote = self._put_back(repo, tag, old)
        return restored, restore_error

    def _put_back(self, repo: str, tag: str, old: Manifest) -> tuple[bool, str, bool]:
        """``restore``, and whether a PutImage wrote the tag (False: it already held ``old``)."""
        restore_error = ""
        wrote = False
        for attempt in range(RESTORE_ATTEMPTS):
            if attempt:  # flat: the time a run keeps in hand after the verify bound is short
                self.sleep(self.poll_interval)
            try:
                self.ecr.put_manifest(repo, tag, old)
            except EcrError as exc:
                restore_error = str(exc)
                already = exc.code == "ImageAlreadyExistsException"
            else:
                restore_error, already, wrote = "", False, True
            # after a written PutImage or ImageAlreadyExists the read is about a tag that exists
            if (wrote or already) and self._tag_is(repo, tag, old.digest):
                return True, "", wrote
        return False, restore_error, wrote

    def _abandon(self, intent: Lease) -> tuple[str, ...]:
        """Leave the intent open but expired, so the next run's repair need not wait for the lease."""
        try:
            self.journal.abandon(intent, self.now())
        except (StateError, LeaseHeldError) as exc:
            return (f"intent left to expire ({exc})",)
        return ()

    def _tag_is(self, repo: str, tag: str, digest: str) -> bool:
        try:
            return self.ecr.tag_digest(repo, tag) == digest
        except EcrError:
            return False

    def drop_backups(self, repo: str, doomed: Sequence[BackupRecord]) -> tuple[str, ...]:
        """Step 8 (and after a rollback or a repair): ``backups.drop_backups``."""
        return drop_backups(self.ecr, self.ledger, repo, doomed)
