"""The repair sweep: every checker run first finishes what a killed refresh left undone.

A refresh that died (a Lambda timeout, a crash, a rollback ECR refused) leaves its intent open in the
journal, and perhaps a pending backup in the ledger. Once the lease has expired (its holder cannot be
running any more) or was abandoned by a holder that failed to put the tag back, the sweep takes the
intent over and, looking at what ECR shows now:

- the tag shows the digest the refresh expected: the refresh completed; the backup is kept;
- the tag shows another digest (the old one, or one a person pushed): the tag is there, nothing to do;
- the tag is absent: the old manifest (still referenced by the backup tag) is put back under it and
  read back; then the backup goes, as after a rollback.

A pending backup whose source tag is absent and that no open intent explains (its intent was lost) is
restored the same way; one whose tag was never written (killed before its PutImage) is forgotten.
Each repaired tag is reported ``repaired``; a repair that fails leaves the intent open and expired for
the next run, and is reported as a failed refresh with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from aws_lambda_powertools import Logger

from ptc_sync.ecr import EcrAdapter, EcrError
from ptc_sync.journal import (
    BackupLedger,
    BackupRecord,
    BackupStatus,
    Lease,
    LeaseHeldError,
    Phase,
    RefreshJournal,
)
from ptc_sync.models import Outcome, TagResult, short_digest
from ptc_sync.refresh import Refresher
from ptc_sync.state import StateError

logger = Logger(child=True)


class Repairer:
    def __init__(
        self,
        ecr: EcrAdapter,
        journal: RefreshJournal,
        ledger: BackupLedger,
        refresher: Refresher,
        *,
        owner: str,
        now: Callable[[], datetime],
    ) -> None:
        self.ecr = ecr
        self.journal = journal
        self.ledger = ledger
        self.refresher = refresher
        self.owner = owner
        self.now = now

    def due(self, repository: str | None = None) -> list[Lease]:
        """Open intents whose lease has run out (what the planner routes to the checkers)."""
        now = self.now()
        return [
            lease
            for lease in self.journal.open_leases(repository)
            if lease.expired(now) and lease.phase is Phase.REMOVING
        ]

    def sweep(
        self,
        repository: str,
        rule_prefix: str = "",
        *,
        leases: Sequence[Lease] | None = None,
        backups: Sequence[BackupRecord] | None = None,
    ) -> list[TagResult]:
        """Repair ``repository``'s expired intents and orphaned pending backups: one result per tag
        repaired (or whose repair failed). Errors reading the journal raise (the item is retried).

        A scan passes what it has read already: ``leases``, the repository's open leases (from one
        query of every lease), and ``backups``, its ledger records (read by discovery, which reads the
        ledger whenever the repository holds a backup tag). None: read here."""
        now = self.now()
        results: list[TagResult] = []
        open_leases = list(self.journal.open_leases(repository) if leases is None else leases)
        for lease in open_leases:
            if not lease.expired(now):
                continue
            try:
                mine = self.journal.take_over(lease, self.owner, now)
            except LeaseHeldError:
                continue  # another sweep got there first
            if mine.phase is Phase.LEASED:
                self.journal.release(mine)  # the tag was never removed; its backup is a pending record
                continue
            results.append(self._repair_intent(mine, rule_prefix))
        leased = {lease.tag for lease in open_leases if not lease.expired(now)}  # a live refresh's own
        repaired = {r.tag for r in results}
        records = self.ledger.backups(repository) if backups is None or results else backups
        pending = [
            b for b in records if b.status is BackupStatus.PENDING and b.source_tag not in leased | repaired
        ]
        results.extend(self._settle_pending(repository, pending, rule_prefix))
        return results

    # -- an intent -------------------------------------------------------------------------------------

    def _repair_intent(self, intent: Lease, rule_prefix: str) -> TagResult:
        repo, tag = intent.repository, intent.tag
        result = self._put_back(repo, tag, intent.old_digest, intent.expected_digest, rule_prefix)
        records = [b for b in self.ledger.backups(repo) if b.backup_tag == intent.backup_tag]
        if result.outcome is Outcome.REPAIRED:
            if result.upstream_digest is not None and result.upstream_digest == intent.expected_digest:
                for record in records:
                    self.ledger.mark_kept(record)  # the refresh completed: a generation like any other
            else:
                self.refresher.drop_backups(repo, records)  # as after a rollback
            self.journal.release(intent)
        else:
            with contextlib.suppress(LeaseHeldError):  # taken over since: the new holder repairs it
                self.journal.abandon(intent, self.now())
        logger.warning(
            "refresh repaired" if result.outcome is Outcome.REPAIRED else "refresh repair failed",
            extra={"repository": repo, "tag": tag, "reason": result.reason},
        )
        return result

    def _put_back(
        self, repo: str, tag: str, old_digest: str | None, expected: str | None, rule_prefix: str
    ) -> TagResult:
        def outcome(kind: Outcome, reason: str, seen: str | None = None) -> TagResult:
            return TagResult(
                repo,
                tag,
                rule_prefix,
                kind,
                cached_digest=old_digest,
                upstream_digest=seen if kind is Outcome.REPAIRED else expected,
                reason=reason,
            )

        try:
            seen = self.ecr.tag_digest(repo, tag)
        except EcrError as exc:
            return outcome(Outcome.REFRESH_FAILED, f"repair: {exc}; the next run tries again")
        if seen is not None and seen == expected:
            return outcome(
                Outcome.REPAIRED, "interrupted refresh had completed: upstream's digest verified", seen
            )
        if seen is not None and seen != old_digest:
            # a digest neither side of the refresh wrote (a person's push): the tag is there, leave it
            return outcome(Outcome.REPAIRED, f"interrupted refresh: the tag shows {short_digest(seen)}", seen)
        # absent, or showing the old digest, which DescribeImages may still do for a while after the
        # delete: only a PutImage (ImageAlreadyExists when the tag does hold it) tells
        if old_digest is None:
            return outcome(Outcome.REFRESH_FAILED, "repair: the intent names no old digest")
        error = self._restore(repo, tag, old_digest)
        if error:
            return outcome(
                Outcome.REFRESH_FAILED, f"repair: putting {short_digest(old_digest)} back: {error}"
            )
        return outcome(
            Outcome.REPAIRED,
            f"interrupted refresh: the old image {short_digest(old_digest)} is back",
            old_digest,
        )

    def _restore(self, repo: str, tag: str, old_digest: str) -> str:
        """The old manifest (read by digest: the backup tag keeps the image) back under ``tag``: '' once
        DescribeImages shows it, else the error."""
        try:
            old = self.ecr.get_manifest(repo, digest=old_digest)
        except EcrError as exc:
            return str(exc)
        restored, error = self.refresher.restore(repo, tag, old)
        return "" if restored else error or "the tag does not show it"

    # -- pending backups without an intent ---------------------------------------------------------------

    def _settle_pending(
        self, repository: str, pending: Iterable[BackupRecord], rule_prefix: str
    ) -> list[TagResult]:
        results = []
        for record in pending:
            try:
                written = self.ecr.tag_digest(repository, record.backup_tag) == record.digest
                seen = self.ecr.tag_digest(repository, record.source_tag)
            except EcrError:
                continue  # the next sweep looks again
            try:
                if not written:  # killed before its PutImage landed: there is no such backup
                    self.ledger.forget_backups(repository, [record.backup_tag])
                    continue
                if seen is not None:
                    self.ledger.mark_kept(record)  # its refresh ended with the tag in place
                    continue
            except StateError:
                continue
            results.append(self._put_back(repository, record.source_tag, record.digest, None, rule_prefix))
            if results[-1].outcome is Outcome.REPAIRED:
                self.refresher.drop_backups(repository, [record])
        return results
