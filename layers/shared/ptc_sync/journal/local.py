"""``RefreshJournal`` and ``BackupLedger`` in one process's memory (the CLI without a state table, tests):
the same conditions as the table's, under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ptc_sync.state import (
    StateError,
)

if TYPE_CHECKING:
    pass
from ptc_sync.journal.model import (
    BACKUP_EXISTS,
    LEASE,
    BackupRecord,
    BackupStatus,
    Lease,
    LeaseHeldError,
    Phase,
    removing,
)

# -- one process ---------------------------------------------------------------------------------------


class LocalJournal:
    """``RefreshJournal`` and ``BackupLedger`` in memory, for a process without a state table (the CLI
    run locally): leases still keep its own refresh threads apart; nothing survives the process."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._leases: dict[tuple[str, str], Lease] = {}
        self._backups: dict[tuple[str, str], BackupRecord] = {}
        self._lock = threading.Lock()
        self.now = now

    def acquire(self, repository: str, tag: str, owner: str, now: datetime) -> Lease:
        with self._lock:
            held = self._leases.get((repository, tag))
            if held is not None and not (held.expired(now) and held.phase is Phase.LEASED):
                raise LeaseHeldError(held)
            lease = Lease(repository, tag, owner, now + LEASE, opened_at=now)
            self._leases[(repository, tag)] = lease
            return lease

    def _replace_if(self, lease: Lease, new: Lease, ok: Callable[[Lease], bool]) -> Lease:
        with self._lock:
            held = self._leases.get((lease.repository, lease.tag))
            if held is None or not ok(held):
                raise LeaseHeldError(held)
            self._leases[(lease.repository, lease.tag)] = new
            return new

    def mark_removing(
        self, lease: Lease, *, old_digest: str, backup_tag: str, expected_digest: str, now: datetime
    ) -> Lease:
        intent = removing(
            lease, old_digest=old_digest, backup_tag=backup_tag, expected_digest=expected_digest, now=now
        )
        return self._replace_if(lease, intent, lambda held: held.owner == lease.owner)

    def take_over(self, stale: Lease, owner: str, now: datetime) -> Lease:
        mine = replace(stale, owner=owner, until=now + LEASE)
        return self._replace_if(stale, mine, lambda held: held.owner == stale.owner and held.expired(now))

    def abandon(self, lease: Lease, now: datetime) -> None:
        self._replace_if(lease, replace(lease, until=now), lambda held: held.owner == lease.owner)

    def release(self, lease: Lease) -> None:
        with self._lock:
            held = self._leases.get((lease.repository, lease.tag))
            if held is not None and held.owner == lease.owner:
                del self._leases[(lease.repository, lease.tag)]

    def open_leases(self, repository: str | None = None) -> list[Lease]:
        with self._lock:
            return [v for (repo, _), v in self._leases.items() if repository in (None, repo)]

    def record_backup(self, record: BackupRecord) -> None:
        with self._lock:
            if (record.repository, record.backup_tag) in self._backups:
                raise StateError("record_backup", "local", BACKUP_EXISTS, f"{record.backup_tag} exists")
            self._backups[(record.repository, record.backup_tag)] = record

    def mark_kept(self, record: BackupRecord) -> None:
        with self._lock:
            key = (record.repository, record.backup_tag)
            if key in self._backups:
                self._backups[key] = replace(self._backups[key], status=BackupStatus.KEPT)

    def forget_backups(self, repository: str, backup_tags: Sequence[str]) -> None:
        with self._lock:
            for tag in backup_tags:
                self._backups.pop((repository, tag), None)

    def backups(self, repository: str) -> list[BackupRecord]:
        with self._lock:
            return [r for (repo, _), r in self._backups.items() if repo == repository]
