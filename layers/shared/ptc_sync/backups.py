"""Backup tags: how they are named, and the pruning of generations beyond ``keep_generations``.

Backup tags are named ``ptc-sync-prev--<tag>--<UTC stamp>``, at most 128 characters (a long source
tag is cut and given a short hash). The name is only a label: what makes a tag a backup is its
record in the ledger, which also names its source tag; generations are ordered by the ledger's one
ordering (``journal.newest_first``), never by name. The refresh protocol (``refresh.py``) writes a
backup before it removes a tag and drops the surplus once the new image is verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from ptc_sync.ecr import EcrAdapter, EcrError
from ptc_sync.journal import BackupLedger, BackupRecord, newest_first
from ptc_sync.state import StateError

BACKUP_PREFIX: Final = "ptc-sync-prev--"
STAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
MAX_TAG: Final = 128  # the reference grammar's limit: a longer tag is not addressable by any client
_HASH_CHARS: Final = 8
DROP_BACKUP_STEP: Final = "drop-backup"  # the refresh step (``refresh.Step.DROP_BACKUP``) notes name


def backup_tag_for(tag: str, at: datetime) -> str:
    """``ptc-sync-prev--<tag>--<stamp>``, cut to 128 characters: a long tag keeps its start and a
    hash of the whole (``<start>.<sha256[:8]>``), so two long tags never share a backup name."""
    stamp = at.astimezone(UTC).strftime(STAMP_FORMAT)
    name = f"{BACKUP_PREFIX}{tag}--{stamp}"
    if len(name) <= MAX_TAG:
        return name
    room = MAX_TAG - len(BACKUP_PREFIX) - len(stamp) - 2 - _HASH_CHARS - 1
    digest = hashlib.sha256(tag.encode()).hexdigest()[:_HASH_CHARS]
    return f"{BACKUP_PREFIX}{tag[:room]}.{digest}--{stamp}"


def is_backup_tag(tag: str) -> bool:
    """Whether the tag is named like a backup. A name proves nothing (upstream may use any name):
    only the ledger says which tags are ptc-sync's backups."""
    return tag.startswith(BACKUP_PREFIX)


def backup_source(backup_tag: str) -> str | None:
    """``ptc-sync-prev--node--20261127T101500Z`` → ``node`` (None when not named like a backup; a
    shortened name gives its cut form: the ledger's record has the real source)."""
    if not is_backup_tag(backup_tag):
        return None
    source, sep, _stamp = backup_tag[len(BACKUP_PREFIX) :].rpartition("--")
    return source if sep else None


def surplus(backups: Sequence[BackupRecord], keep: int) -> list[BackupRecord]:
    """The generations beyond the ``keep`` newest (newest by the ledger, ``journal.newest_first``)."""
    return newest_first(backups)[keep:]


def drop_backups(
    ecr: EcrAdapter, ledger: BackupLedger, repo: str, doomed: Sequence[BackupRecord]
) -> tuple[str, ...]:
    """Delete these backup tags, then their ledger records; a failure here is a note, not a
    failed refresh (a record whose tag is still there is pruned next time)."""
    if not doomed:
        return ()
    tags = [r.backup_tag for r in doomed]
    try:
        ecr.delete_tags(repo, tags)
    except EcrError as exc:
        return (f"{DROP_BACKUP_STEP}: {exc}",)
    try:
        ledger.forget_backups(repo, tags)
    except StateError as exc:
        return (f"{DROP_BACKUP_STEP}: ledger not updated ({exc})",)
    return ()
