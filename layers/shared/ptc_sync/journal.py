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

Items (the table's schema is in ``state.py``)::

    lease / intent   pk REFRESH            sk <repository>:<tag>     expiresAt lease end + 14 days
    backup           pk BACKUP#<repository> sk <backup tag>           expiresAt none (pruned explicitly)

ECR names cannot contain ``:``, so the sort key is unambiguous, and ``begins_with(<repository>:)``
lists one repository's intents. Costs: a refresh writes the lease, the backup record, the intent,
marks the backup kept and releases the lease (5 writes), plus one delete per pruned generation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from ptc_sync.state import (
    EXPIRES_AT,
    PK,
    SK,
    ConditionFailedError,
    StateError,
    TableCaller,
    iso,
    parse_iso,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from ptc_sync.state import Item

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


# -- DynamoDB ----------------------------------------------------------------------------------------


def _lease_key(repository: str, tag: str) -> Item:
    return {PK: {"S": REFRESH_PK}, SK: {"S": f"{repository}:{tag}"}}


def _backup_key(repository: str, backup_tag: str) -> Item:
    return {PK: {"S": f"{BACKUP_PK_PREFIX}{repository}"}, SK: {"S": backup_tag}}


def _s(item: Item, name: str) -> str | None:
    value = item.get(name, {})
    return value.get("S") if isinstance(value, dict) else None


def _lease_item(lease: Lease) -> Item:
    item: Item = {
        **_lease_key(lease.repository, lease.tag),
        "repository": {"S": lease.repository},
        "tag": {"S": lease.tag},
        "owner": {"S": lease.owner},
        "leaseUntil": {"S": iso(lease.until)},
        "phase": {"S": lease.phase.value},
        EXPIRES_AT: {"N": str(int((lease.until + INTENT_RETENTION).timestamp()))},
    }
    for name, value in (
        ("oldDigest", lease.old_digest),
        ("backupTag", lease.backup_tag),
        ("expectedDigest", lease.expected_digest),
    ):
        if value is not None:
            item[name] = {"S": value}
    if lease.opened_at is not None:
        item["openedAt"] = {"S": iso(lease.opened_at)}
    return item


def _lease_from(item: Item) -> Lease:
    opened = _s(item, "openedAt")
    return Lease(
        repository=_s(item, "repository") or "",
        tag=_s(item, "tag") or "",
        owner=_s(item, "owner") or "",
        until=parse_iso(_s(item, "leaseUntil") or "1970-01-01T00:00:00.000000Z"),
        phase=Phase(_s(item, "phase") or Phase.LEASED),
        old_digest=_s(item, "oldDigest"),
        backup_tag=_s(item, "backupTag"),
        expected_digest=_s(item, "expectedDigest"),
        opened_at=parse_iso(opened) if opened else None,
    )


def _backup_from(item: Item) -> BackupRecord:
    return BackupRecord(
        repository=(_s(item, PK) or "")[len(BACKUP_PK_PREFIX) :],
        backup_tag=_s(item, SK) or "",
        source_tag=_s(item, "sourceTag") or "",
        digest=_s(item, "digest") or "",
        created_at=parse_iso(_s(item, "createdAt") or "1970-01-01T00:00:00.000000Z"),
        status=BackupStatus(_s(item, "status") or BackupStatus.PENDING),
    )


class DynamoJournal:
    """``RefreshJournal`` and ``BackupLedger`` on the state table."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table_name = table_name
        self._call = TableCaller(table_name)

    def _put(self, item: Item, condition: str, names: dict[str, str], values: dict[str, Any]) -> None:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": item,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if values:
            request["ExpressionAttributeValues"] = values
        self._call("PutItem", partial(self.client.put_item, **request))

    def _held(self, failed: ConditionFailedError) -> LeaseHeldError:
        return LeaseHeldError(_lease_from(failed.item) if failed.item else None)

    def acquire(self, repository: str, tag: str, owner: str, now: datetime) -> Lease:
        lease = Lease(repository, tag, owner, now + LEASE, opened_at=now)
        try:
            self._put(
                _lease_item(lease),
                "attribute_not_exists(#pk) OR (#until <= :now AND #phase = :leased)",
                {"#pk": PK, "#until": "leaseUntil", "#phase": "phase"},
                {":now": {"S": iso(now)}, ":leased": {"S": Phase.LEASED.value}},
            )
        except ConditionFailedError as failed:
            raise self._held(failed) from None
        return lease

    def mark_removing(
        self, lease: Lease, *, old_digest: str, backup_tag: str, expected_digest: str, now: datetime
    ) -> Lease:
        intent = removing(
            lease, old_digest=old_digest, backup_tag=backup_tag, expected_digest=expected_digest, now=now
        )
        try:
            self._put(
                _lease_item(intent),
                "#owner = :owner",
                {"#owner": "owner"},
                {":owner": {"S": lease.owner}},
            )
        except ConditionFailedError as failed:
            raise self._held(failed) from None
        return intent

    def take_over(self, stale: Lease, owner: str, now: datetime) -> Lease:
        mine = replace(stale, owner=owner, until=now + LEASE)
        try:
            self._put(
                _lease_item(mine),
                "#owner = :was AND #until <= :now",
                {"#owner": "owner", "#until": "leaseUntil"},
                {":was": {"S": stale.owner}, ":now": {"S": iso(now)}},
            )
        except ConditionFailedError as failed:
            raise self._held(failed) from None
        return mine

    def abandon(self, lease: Lease, now: datetime) -> None:
        try:
            self._put(
                _lease_item(replace(lease, until=now)),
                "#owner = :owner",
                {"#owner": "owner"},
                {":owner": {"S": lease.owner}},
            )
        except ConditionFailedError as failed:
            raise self._held(failed) from None

    def release(self, lease: Lease) -> None:
        try:
            self._call(
                "DeleteItem",
                partial(
                    self.client.delete_item,
                    TableName=self.table_name,
                    Key=_lease_key(lease.repository, lease.tag),
                    ConditionExpression="#owner = :owner",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":owner": {"S": lease.owner}},
                ),
            )
        except ConditionFailedError:
            return  # taken over after it expired: the new holder closes it

    def open_leases(self, repository: str | None = None) -> list[Lease]:
        names = {"#pk": PK}
        values: dict[str, Any] = {":pk": {"S": REFRESH_PK}}
        condition = "#pk = :pk"
        if repository is not None:
            names["#sk"] = SK
            values[":prefix"] = {"S": f"{repository}:"}
            condition += " AND begins_with(#sk, :prefix)"
        items = self._call.query(
            self.client,
            {
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "ConsistentRead": True,
            },
        )
        return [_lease_from(item) for item in items]

    # -- the ledger ------------------------------------------------------------------------------------

    def record_backup(self, record: BackupRecord) -> None:
        """A new record only: a name already in the ledger is another generation's (StateError)."""
        item: Item = {
            **_backup_key(record.repository, record.backup_tag),
            "sourceTag": {"S": record.source_tag},
            "digest": {"S": record.digest},
            "createdAt": {"S": iso(record.created_at)},
            "status": {"S": record.status.value},
        }
        try:
            self._put(item, "attribute_not_exists(#pk)", {"#pk": PK}, {})
        except ConditionFailedError:
            raise StateError(
                "PutItem", self.table_name, BACKUP_EXISTS, f"{record.backup_tag} is another backup's name"
            ) from None

    def mark_kept(self, record: BackupRecord) -> None:
        self._call(
            "UpdateItem",
            partial(
                self.client.update_item,
                TableName=self.table_name,
                Key=_backup_key(record.repository, record.backup_tag),
                UpdateExpression="SET #status = :kept",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":kept": {"S": BackupStatus.KEPT.value}},
            ),
        )

    def forget_backups(self, repository: str, backup_tags: Sequence[str]) -> None:
        for tag in backup_tags:
            self._call(
                "DeleteItem",
                partial(self.client.delete_item, TableName=self.table_name, Key=_backup_key(repository, tag)),
            )

    def backups(self, repository: str) -> list[BackupRecord]:
        items = self._call.query(
            self.client,
            {
                "KeyConditionExpression": "#pk = :pk",
                "ExpressionAttributeNames": {"#pk": PK},
                "ExpressionAttributeValues": {":pk": {"S": f"{BACKUP_PK_PREFIX}{repository}"}},
                "ConsistentRead": True,
            },
        )
        return [_backup_from(item) for item in items]


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
