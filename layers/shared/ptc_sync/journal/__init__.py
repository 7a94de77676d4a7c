"""The refresh journal, the per-tag lease and the backup ledger: what makes a refresh crash-consistent.

A refresh removes a cached tag for a moment (ECR has no "refresh now"). Whatever kills the process
in that moment (a Lambda timeout, a throttled rollback, a bug), the next run must be able to put the
tag back. So, in the state table, before anything in ECR changes:

- a **lease** names the one refresher of ``repository:tag`` (a conditional write; a second refresher
  finds it held and touches nothing). It expires after ``LEASE``, longer than a Lambda can live, so
  an expired lease's holder is certainly gone;
- the **intent** (the same item, phase ``removing``) names the old digest, the backup tag and the
  digest expected from upstream; it is written before the tag is removed and closed (deleted) only
  after the new digest is verified or the old one is back under the tag;
- the **ledger** records each backup tag ptc-sync writes, before it writes it. Only ledger tags are
  backups: a tag upstream happens to name ``ptc-sync-prev--…`` is an ordinary cached tag, never
  pruned or restored from.

Items (the table's schema is in ``ptc_sync.state.dynamo``)::

    lease / intent   pk REFRESH            sk <repository>:<tag>     expiresAt lease end + 14 days
    backup           pk BACKUP#<repository> sk <backup tag>           expiresAt none (pruned explicitly)

ECR names cannot contain ``:``, so the sort key is unambiguous, and ``begins_with(<repository>:)``
lists one repository's intents. Costs: a refresh writes the lease, the backup record, the intent,
marks the backup kept and releases the lease (5 writes), plus one delete per pruned generation.

Modules: ``model`` (leases, backup records, the two protocols: pure), ``dynamo`` (both on the state
table), ``local`` (both in one process). Every name imports from ``ptc_sync.journal``.
"""

from ptc_sync.journal.dynamo import DynamoJournal
from ptc_sync.journal.local import LocalJournal
from ptc_sync.journal.model import (
    BACKUP_EXISTS,
    BACKUP_PK_PREFIX,
    INTENT_RETENTION,
    LEASE,
    REFRESH_PK,
    BackupLedger,
    BackupRecord,
    BackupStatus,
    Lease,
    LeaseHeldError,
    Phase,
    RefreshJournal,
    newest_first,
    removing,
)

__all__ = [
    "BACKUP_EXISTS",
    "BACKUP_PK_PREFIX",
    "INTENT_RETENTION",
    "LEASE",
    "REFRESH_PK",
    "BackupLedger",
    "BackupRecord",
    "BackupStatus",
    "DynamoJournal",
    "Lease",
    "LeaseHeldError",
    "LocalJournal",
    "Phase",
    "RefreshJournal",
    "newest_first",
    "removing",
]
