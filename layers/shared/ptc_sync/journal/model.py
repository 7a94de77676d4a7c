"""The journal's model and ports: a tag's lease and intent (``Lease``, its ``Phase``), a backup's
record (``BackupRecord``, the one backup ordering ``newest_first``), and the ``RefreshJournal`` and
``BackupLedger`` protocols the refresher and the repair depend on. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    pass


REFRESH_PK: Final = "REFRESH"
BACKUP_PK_PREFIX: Final = "BACKUP#"
# Longer than any Lambda invocation (900 s) with margin: an expired lease's holder cannot be running.
LEASE: Final = timedelta(minutes=20)
BACKUP_EXISTS: Final = "BackupExists"
INTENT_RETENTION: Final = timedelta(days=14)  # an intent nobody repaired is still kept this long


class Phase(StrEnum):
    LEASED = "leased"  # the tag is untouched: an expired lease is simply released
    REMOVING = "removing"  # the tag may be absent: an expired intent is repaired


class BackupStatus(StrEnum):
    PENDING = "pending"  # written for a refresh that has not closed
    KEPT = "kept"  # a previous generation kept after a verified refresh


@dataclass(frozen=True, slots=True)
class Lease:
    """One refresher's hold on ``repository:tag``; with phase REMOVING, the refresh's intent."""

    repository: str
    tag: str
    owner: str
    until: datetime
    phase: Phase = Phase.LEASED
    old_digest: str | None = None
    backup_tag: str | None = None
    expected_digest: str | None = None
    opened_at: datetime | None = None

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"

    def expired(self, now: datetime) -> bool:
        return self.until <= now


@dataclass(frozen=True, slots=True)
class BackupRecord:
    repository: str
    backup_tag: str
    source_tag: str
    digest: str
    created_at: datetime
    status: BackupStatus = BackupStatus.PENDING


def newest_first(records: Iterable[BackupRecord]) -> list[BackupRecord]:
    """The one backup ordering: by when ptc-sync wrote them, newest first (names are not trusted)."""
    return sorted(records, key=lambda r: (r.created_at, r.backup_tag), reverse=True)


def removing(lease: Lease, *, old_digest: str, backup_tag: str, expected_digest: str, now: datetime) -> Lease:
    """The intent a lease becomes before its tag is removed (held for a whole LEASE from now)."""
    return replace(
        lease,
        phase=Phase.REMOVING,
        old_digest=old_digest,
        backup_tag=backup_tag,
        expected_digest=expected_digest,
        until=max(lease.until, now + LEASE),
    )


class LeaseHeldError(Exception):
    """Another refresher holds the tag (or took it over): this one must touch nothing."""

    def __init__(self, held: Lease | None) -> None:
        super().__init__(f"held by {held.owner} until {held.until:%H:%M:%SZ}" if held else "lease lost")
        self.held = held


class RefreshJournal(Protocol):
    """Leases and intents, one item per tag being refreshed."""

    def acquire(self, repository: str, tag: str, owner: str, now: datetime) -> Lease:
        """Take the lease (free, or expired in phase LEASED); LeaseHeldError with the holder otherwise."""
        ...

    def mark_removing(
        self, lease: Lease, *, old_digest: str, backup_tag: str, expected_digest: str, now: datetime
    ) -> Lease:
        """Write the intent before the tag is removed (LeaseHeldError when the lease was lost)."""
        ...

    def take_over(self, stale: Lease, owner: str, now: datetime) -> Lease:
        """Take an expired lease or intent over to repair it (LeaseHeldError when someone else did)."""
        ...

    def release(self, lease: Lease) -> None:
        """Close the lease or intent (a lease already taken over by someone else is left alone)."""
        ...

    def abandon(self, lease: Lease, now: datetime) -> None:
        """Leave the intent open but expired now: the holder failed to put the tag back, and the next
        repair sweep need not wait out the lease (LeaseHeldError when it was lost)."""
        ...

    def open_leases(self, repository: str | None = None) -> list[Lease]:
        """Every open lease and intent (of one repository)."""
        ...


class BackupLedger(Protocol):
    """The backup tags ptc-sync wrote, per repository."""

    def record_backup(self, record: BackupRecord) -> None: ...

    def mark_kept(self, record: BackupRecord) -> None: ...

    def forget_backups(self, repository: str, backup_tags: Sequence[str]) -> None: ...

    def backups(self, repository: str) -> list[BackupRecord]: ...
