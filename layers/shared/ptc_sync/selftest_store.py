"""What ``ptc-sync selftest`` found in this account, kept in the state table, and what the sync makes of it.

Items (the stack's state table; no GSI key, so the changes index never sees them)::

    pk         sk              what
    SELFTEST   latest          the latest result (overwritten by each selftest)
    SELFTEST   AT#<UTC time>   every result, expiring after ``ttl_days`` (expiresAt)

A result is one JSON document (``SelftestResult.to_doc``) in the attribute ``result``. The scheduled
sync reads ``latest``: when a behaviour the refresh relies on failed in this account
(``report_only_reason``), the run reports only; ``preferred_import_path`` tells the ``auto`` import
setting which way to pull (``importer.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.importer import API, ENDPOINT, ImportPath

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(child=True)

PK_VALUE: Final = "SELFTEST"
LATEST: Final = "latest"
HISTORY_PREFIX: Final = "AT#"
_TIME: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


class Status(StrEnum):
    VERIFIED = "verified"
    FAILED = "failed"
    UNKNOWN = "unknown"  # not checked: a step before it failed, or the account cannot tell


class Behaviour(StrEnum):
    IMPORT_ENDPOINT = "import-endpoint"
    IMPORT_API = "import-api"
    BACKUP_PUT_IMAGE = "backup-put-image"
    REIMPORT_AFTER_DELETE = "reimport-after-delete"
    LAYER_WARMTH = "layer-warmth"
    PULL_TIME_EXCLUSION = "pull-time-exclusion"


# what a refresh cannot do without: it backs the tag up with PutImage, removes it and pulls it again
RELIED_ON: Final = (Behaviour.BACKUP_PUT_IMAGE, Behaviour.REIMPORT_AFTER_DELETE)


@dataclass(frozen=True, slots=True)
class Check:
    behaviour: Behaviour
    status: Status
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SelftestResult:
    at: datetime
    account_id: str
    region: str
    rule: str
    repository: str
    tags: tuple[str, ...]
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = field(default=())

    def status(self, behaviour: Behaviour) -> Status:
        for check in self.checks:
            if check.behaviour is behaviour:
                return check.status
        return Status.UNKNOWN

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAILED)

    @property
    def all_verified(self) -> bool:
        return bool(self.checks) and all(c.status is Status.VERIFIED for c in self.checks)

    def preferred_import_path(self) -> ImportPath | None:
        """The API when it imported, else the registry endpoint when it did, else None (no opinion)."""
        if self.status(Behaviour.IMPORT_API) is Status.VERIFIED:
            return API
        if self.status(Behaviour.IMPORT_ENDPOINT) is Status.VERIFIED:
            return ENDPOINT
        return None

    def report_only_reason(self, import_path: str = "auto") -> str:
        """Why a scheduled run must only report in this account ('' when nothing it relies on failed):
        a failed backup by PutImage or re-import after a delete, or no way to import that works."""
        failed = [b.value for b in RELIED_ON if self.status(b) is Status.FAILED]
        api, endpoint = self.status(Behaviour.IMPORT_API), self.status(Behaviour.IMPORT_ENDPOINT)
        if import_path == API and api is Status.FAILED:
            failed.append(Behaviour.IMPORT_API.value)
        elif import_path == ENDPOINT and endpoint is Status.FAILED:
            failed.append(Behaviour.IMPORT_ENDPOINT.value)
        elif api is Status.FAILED and endpoint is Status.FAILED:
            failed.append("import (both the API and the registry endpoint)")
        if not failed:
            return ""
        return (
            f"report only: the selftest of {self.at:%Y-%m-%d %H:%M}Z found {', '.join(failed)} failing "
            f"in {self.account_id or 'this account'} {self.region}; nothing is refreshed or removed until "
            "a selftest verifies it (ptc-sync selftest)"
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "at": self.at.astimezone(UTC).strftime(_TIME),
            "account_id": self.account_id,
            "region": self.region,
            "rule": self.rule,
            "repository": self.repository,
            "tags": list(self.tags),
            "checks": [
                {
                    "behaviour": c.behaviour.value,
                    "status": c.status.value,
                    "seconds": round(c.seconds, 3),
                    "detail": c.detail,
                }
                for c in self.checks
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> SelftestResult:
        checks = []
        for raw in doc.get("checks", []):
            try:
                behaviour = Behaviour(raw["behaviour"])
            except ValueError:
                continue  # a behaviour a newer version checks: not this version's business
            checks.append(
                Check(
                    behaviour, Status(raw["status"]), float(raw.get("seconds", 0)), str(raw.get("detail", ""))
                )
            )
        return cls(
            at=datetime.strptime(doc["at"], _TIME).replace(tzinfo=UTC),
            account_id=str(doc.get("account_id", "")),
            region=str(doc.get("region", "")),
            rule=str(doc.get("rule", "")),
            repository=str(doc.get("repository", "")),
            tags=tuple(doc.get("tags", [])),
            checks=tuple(checks),
            notes=tuple(doc.get("notes", [])),
        )


class SelftestStoreError(RuntimeError):
    """The result could not be read or written; the message names the operation and DynamoDB's code."""


class SelftestStore(Protocol):
    def save(self, result: SelftestResult) -> None: ...

    def latest(self) -> SelftestResult | None: ...


class MemorySelftestStore:
    """In memory (the CLI without a table, and tests)."""

    def __init__(self) -> None:
        self.history: list[SelftestResult] = []

    def save(self, result: SelftestResult) -> None:
        self.history.append(result)

    def latest(self) -> SelftestResult | None:
        return self.history[-1] if self.history else None


class DynamoSelftestStore:
    def __init__(self, client: DynamoDBClient, table_name: str, *, ttl_days: int = 365) -> None:
        self.client = client
        self.table_name = table_name
        self.ttl = timedelta(days=ttl_days)

    def save(self, result: SelftestResult) -> None:
        body = json.dumps(result.to_doc(), separators=(",", ":"))
        stamp = result.at.astimezone(UTC).strftime(_TIME)
        expires = str(int((result.at + self.ttl).timestamp()))
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {
                                "pk": {"S": PK_VALUE},
                                "sk": {"S": LATEST},
                                "result": {"S": body},
                                "at": {"S": stamp},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {
                                "pk": {"S": PK_VALUE},
                                "sk": {"S": f"{HISTORY_PREFIX}{stamp}"},
                                "result": {"S": body},
                                "at": {"S": stamp},
                                "expiresAt": {"N": expires},
                            },
                        }
                    },
                ]
            )
        except (ClientError, BotoCoreError) as exc:
            raise SelftestStoreError(f"TransactWriteItems: {_code(exc)}") from exc

    def latest(self) -> SelftestResult | None:
        try:
            resp = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": PK_VALUE}, "sk": {"S": LATEST}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            raise SelftestStoreError(f"GetItem: {_code(exc)}") from exc
        item = resp.get("Item")
        if not item:
            return None
        try:
            return SelftestResult.from_doc(json.loads(item["result"]["S"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise SelftestStoreError(f"the stored selftest result is unreadable ({exc})") from exc

    def history(self, limit: int = 20) -> list[SelftestResult]:
        """The newest ``limit`` results, newest first."""
        try:
            resp = self.client.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :at)",
                ExpressionAttributeValues={":pk": {"S": PK_VALUE}, ":at": {"S": HISTORY_PREFIX}},
                ScanIndexForward=False,
                Limit=limit,
            )
        except (ClientError, BotoCoreError) as exc:
            raise SelftestStoreError(f"Query: {_code(exc)}") from exc
        return [SelftestResult.from_doc(json.loads(i["result"]["S"])) for i in resp.get("Items", [])]


def _code(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Unknown')}: {err.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def report_only_reason(store: SelftestStore | None, import_path: str = "auto") -> str:
    """The gate the scheduled plan asks: '' to go on, else why the run reports only. No stored result
    is no opinion (''), and neither is one that cannot be read: it does not hold the run (the refresh
    still checks every step at run time and rolls back on its own)."""
    if store is None:
        return ""
    try:
        latest = store.latest()
    except SelftestStoreError as exc:
        logger.warning("selftest result not read: runs are not held by it", extra={"reason": str(exc)})
        return ""
    return latest.report_only_reason(import_path) if latest is not None else ""
