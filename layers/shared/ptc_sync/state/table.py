"""One DynamoDB table, called safely: ``TableCaller`` runs one call (transaction conflicts retried, a
failed condition raised as ``ConditionFailedError``, every other failure as ``StateError``), and
``StateTable`` is the plumbing the state adapters share (get, conditional update, paged query, TTLs).
The journal uses ``TableCaller`` on the same table.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.state.codec import _set_and_remove
from ptc_sync.state.ports import StateError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from ptc_sync.state.codec import Item


DEFAULT_TTL_DAYS: Final = 14
DEFAULT_TAG_TTL_DAYS: Final = 90  # a tag nobody checked for this long left ECR or the sync's scope

_ATTEMPTS: Final = 6  # for version conflicts, transaction conflicts and unprocessed batch items


class ConditionFailedError(Exception):
    """A ConditionExpression did not hold (internal: callers turn it into a decision or a StateError)."""

    def __init__(self, item: Item | None) -> None:
        super().__init__("condition failed")
        self.item = item


class _CancelledError(Exception):
    """A transaction was cancelled; ``reasons`` line up with its items (``"None"``: that item was fine)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


class TableCaller:
    """One DynamoDB call on one table. Conflicts with an ongoing transaction are retried; a failed
    condition raises ConditionFailedError (with the item when asked for); every other failure raises
    StateError (throttling is botocore's to retry, then the caller's to decide)."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def __call__[R](self, operation: str, call: Callable[[], R]) -> R:
        for attempt in range(_ATTEMPTS):
            try:
                return call()
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code = err.get("Code", "Unknown")
                if code == "ConditionalCheckFailedException":
                    raw: Any = exc.response
                    raise ConditionFailedError(raw.get("Item")) from exc
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                conflict = code == "TransactionConflictException" or "TransactionConflict" in reasons
                if conflict and attempt < _ATTEMPTS - 1:
                    _backoff(attempt)
                    continue
                if code == "TransactionCanceledException" and not conflict:
                    raise _CancelledError(reasons) from exc
                raise StateError(operation, self.table_name, code, err.get("Message", str(exc))) from exc
            except BotoCoreError as exc:
                raise StateError(operation, self.table_name, type(exc).__name__, str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def query(self, client: DynamoDBClient, request: Mapping[str, Any]) -> list[Item]:
        """Every page of one Query."""
        items: list[Item] = []
        page_request: dict[str, Any] = {"TableName": self.table_name, **request}
        while True:
            page = self("Query", partial(client.query, **page_request))
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            page_request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class StateTable:
    """The state table and its TTLs; the adapters of each port (``dynamo_*``) build on it."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        ttl_days: int = DEFAULT_TTL_DAYS,
        tag_ttl_days: int = DEFAULT_TAG_TTL_DAYS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ttl_days < 1 or tag_ttl_days < 1:
            raise ValueError("ttl_days and tag_ttl_days must be at least 1")
        self.client = client
        self.table_name = table_name
        self.ttl = timedelta(days=ttl_days)
        self.tag_ttl = timedelta(days=tag_ttl_days)
        self.now = now
        self._call = TableCaller(table_name)

    # -- plumbing ------------------------------------------------------------------------------------

    def _error(self, operation: str, code: str, message: str) -> StateError:
        return StateError(operation, self.table_name, code, message)

    def _get(self, key: Item, *, consistent: bool = True) -> Item | None:
        response = self._call(
            "GetItem",
            partial(self.client.get_item, TableName=self.table_name, Key=key, ConsistentRead=consistent),
        )
        return response.get("Item")

    def _update(
        self,
        key: Item,
        fields: Mapping[str, AttributeValueTypeDef | None],
        condition: str,
        names: Mapping[str, str],
        values: Mapping[str, AttributeValueTypeDef],
    ) -> None:
        """SET/REMOVE ``fields`` on one item if ``condition`` holds (else ConditionFailedError)."""
        expression, field_names, field_values = _set_and_remove(fields)
        self._call(
            "UpdateItem",
            partial(
                self.client.update_item,
                TableName=self.table_name,
                Key=key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={**field_names, **names},
                ExpressionAttributeValues={**field_values, **values},
            ),
        )

    def _query(self, request: Mapping[str, Any]) -> list[Item]:
        return self._call.query(self.client, request)


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter, not security
