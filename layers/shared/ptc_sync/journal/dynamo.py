"""``RefreshJournal`` and ``BackupLedger`` on the state table (items in ``ptc_sync.journal``): every
lease change is one conditional write, so two refreshers never both hold a tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

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
from ptc_sync.journal.model import (
    BACKUP_EXISTS,
    BACKUP_PK_PREFIX,
    INTENT_RETENTION,
    LEASE,
    REFRESH_PK,
    BackupRecord,
    BackupStatus,
    Lease,
    LeaseHeldError,
    Phase,
    removing,
)

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

    def _write(self, operation: Literal["DeleteItem", "UpdateItem"], key: Item, **expressions: Any) -> None:
        """One DeleteItem or UpdateItem of the item at ``key``, with its condition, update and attribute
        names and values as the request names them."""
        method = self.client.delete_item if operation == "DeleteItem" else self.client.update_item
        self._call(operation, partial(method, TableName=self.table_name, Key=key, **expressions))

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
            self._write(
                "DeleteItem",
                _lease_key(lease.repository, lease.tag),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": lease.owner}},
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
        self._write(
            "UpdateItem",
            _backup_key(record.repository, record.backup_tag),
            UpdateExpression="SET #status = :kept",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":kept": {"S": BackupStatus.KEPT.value}},
        )

    def forget_backups(self, repository: str, backup_tags: Sequence[str]) -> None:
        for tag in backup_tags:
            self._write("DeleteItem", _backup_key(repository, tag))

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
