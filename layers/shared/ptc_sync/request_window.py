"""How many Sync Requests a stack accepts per hour, counted in the state table.

Whoever may put events on the stack's request bus may still send many: each request starts a run
that reaches upstream with the rules' credentials. One item per clock hour counts the requests
accepted in it; the count is taken with one conditional ``ADD`` (never more than the limit, however
many request functions race), and the item expires two days later::

    pk REQUESTS    sk <hour, UTC ISO>    count    expiresAt
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Final, Protocol

from ptc_sync.state import EXPIRES_AT, PK, SK, ConditionFailedError, TableCaller, iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REQUESTS_PK: Final = "REQUESTS"
RETENTION: Final = timedelta(days=2)


def window_start(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


class RequestWindow(Protocol):
    def admit(self, now: datetime, limit: int) -> bool:
        """Count one request in ``now``'s hour: False (nothing counted) when ``limit`` were already."""
        ...


class DynamoRequestWindow:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table_name = table_name
        self._call = TableCaller(table_name)

    def admit(self, now: datetime, limit: int) -> bool:
        if limit < 1:
            return False
        start = window_start(now)
        try:
            self._call(
                "UpdateItem",
                partial(
                    self.client.update_item,
                    TableName=self.table_name,
                    Key={PK: {"S": REQUESTS_PK}, SK: {"S": iso(start)}},
                    UpdateExpression="ADD #count :one SET #expires = :expires",
                    ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
                    ExpressionAttributeNames={"#count": "count", "#expires": EXPIRES_AT},
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":limit": {"N": str(limit)},
                        ":expires": {"N": str(int((start + RETENTION).timestamp()))},
                    },
                ),
            )
        except ConditionFailedError:
            return False
        return True


class LocalRequestWindow:
    """One process's count (tests and a stack without a table)."""

    def __init__(self) -> None:
        self.counts: dict[datetime, int] = {}

    def admit(self, now: datetime, limit: int) -> bool:
        start = window_start(now)
        if self.counts.get(start, 0) >= limit:
            return False
        self.counts[start] = self.counts.get(start, 0) + 1
        return True
