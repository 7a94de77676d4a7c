"""``RunLedger`` on the state table: the run item with its counters, one marker per counted batch or
split, the results (written before they are counted) and the ``ChangesByDay`` history. Exactly one
caller completes a run however many batches race (``ptc_sync.state.dynamo``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ptc_sync.models import (
    TagResult,
)
from ptc_sync.state.codec import (
    CHANGE_DAY,
    CHANGED_AT,
    CHANGES_INDEX,
    EXPIRES_AT,
    PK,
    SK,
    _batch_key,
    _counter_name,
    _epoch,
    _int,
    _number,
    _progress_from,
    _result_from,
    _result_item,
    _run_key,
    _stored,
    _str,
    _time,
    iso,
)
from ptc_sync.state.policy import Change, RunProgress
from ptc_sync.state.ports import RUN_ALREADY_STARTED, RUN_NOT_STARTED, UNPROCESSED_ITEMS
from ptc_sync.state.table import _ATTEMPTS, ConditionFailedError, StateTable, _backoff, _CancelledError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from ptc_sync.state.codec import Item


_BATCH_WRITE: Final = 25


class RunLedgerTable(StateTable):
    """Runs: start, extend, record results, progress, results and the history of changes."""

    def start_run(self, run_id: str, expected_items: int, started_at: datetime) -> None:
        """Create the run before any of its work is sent; a run id starts once."""
        if expected_items < 1:
            raise ValueError("a run with no work has nothing to wait for: summarise it directly")
        item: Item = {
            **_run_key(run_id),
            "runId": {"S": run_id},
            "expected": _number(expected_items),
            "done": _number(0),
            "startedAt": {"S": iso(started_at)},
            EXPIRES_AT: _number(_epoch(started_at + self.ttl)),
        }
        try:
            self._call(
                "PutItem",
                partial(
                    self.client.put_item,
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": PK},
                ),
            )
        except ConditionFailedError:
            raise self._error("PutItem", RUN_ALREADY_STARTED, f"run {run_id} exists") from None

    def extend_run(self, run_id: str, more_items: int, key: str) -> None:
        """A scan splits: the run waits for ``more_items`` more work items. Once per ``key`` (a
        retried scan extends nothing twice), in one transaction with its marker, and before the
        items are sent, so the run cannot complete without them."""
        split: Any = {
            "TableName": self.table_name,
            "Item": {
                **_batch_key(run_id, f"split:{key}"),
                EXPIRES_AT: _number(_epoch(self.now() + self.ttl)),
            },
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PK},
        }
        more: Any = {
            "TableName": self.table_name,
            "Key": _run_key(run_id),
            "UpdateExpression": "ADD #expected :more",
            "ConditionExpression": "attribute_exists(#expected)",
            "ExpressionAttributeNames": {"#expected": "expected"},
            "ExpressionAttributeValues": {":more": _number(more_items)},
        }
        try:
            self._call(
                "TransactWriteItems",
                partial(self.client.transact_write_items, TransactItems=[{"Put": split}, {"Update": more}]),
            )
        except _CancelledError as cancelled:
            split_reason, run_reason = [*cancelled.reasons, "None", "None"][:2]
            if run_reason == "ConditionalCheckFailed":
                raise self._error("UpdateItem", RUN_NOT_STARTED, f"run {run_id} was never started") from None
            if split_reason != "ConditionalCheckFailed":
                code = next((r for r in cancelled.reasons if r != "None"), "TransactionCanceledException")
                raise self._error("TransactWriteItems", code, f"transaction cancelled: {cancelled}") from None
            # extended by an earlier try of this scan

    def record_results(
        self, run_id: str, results: Sequence[TagResult], *, batch_id: str | None = None
    ) -> bool:
        """Store one work item's results and count them (``done`` counts items, the outcome
        counters tags). True for exactly one call: the one that completes
        the run (``done`` reaches ``expected``), however many batches race.

        ``batch_id`` (the SQS messageId the results came from) makes a retried batch count once:
        its marker and the counters are written in one transaction, and a retry only finishes what
        the first try left undone. Without it a retried batch is counted again. Raises StateError
        ``RunNotStarted`` for a run ``start_run`` never created.
        """
        recorded_at = self.now()
        self._write_results(run_id, results, recorded_at)
        counts = Counter(_counter_name(r.rule_prefix, r.outcome) for r in results)
        names = {"#done": "done", "#expected": "expected"}
        # ``done`` counts work items (one per call), the per-outcome counters count tags
        values: dict[str, AttributeValueTypeDef] = {":total": _number(1)}
        adds = ["#done :total"]
        for i, (counter, count) in enumerate(sorted(counts.items())):
            names[f"#c{i}"] = counter
            values[f":c{i}"] = _number(count)
            adds.append(f"#c{i} :c{i}")
        count_update: Any = {
            "TableName": self.table_name,
            "Key": _run_key(run_id),
            "UpdateExpression": "ADD " + ", ".join(adds),
            "ConditionExpression": "attribute_exists(#expected)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        not_started = self._error("UpdateItem", RUN_NOT_STARTED, f"run {run_id} was never started")
        if batch_id is None:
            try:
                response = self._call(
                    "UpdateItem", partial(self.client.update_item, **count_update, ReturnValues="ALL_NEW")
                )
            except ConditionFailedError:
                raise not_started from None
            return self._summarise_if_done(run_id, response.get("Attributes", {}))
        marker: Item = {
            **_batch_key(run_id, batch_id),
            "batchId": {"S": batch_id},
            EXPIRES_AT: _number(_epoch(recorded_at + self.ttl)),
        }
        put_marker: Any = {
            "TableName": self.table_name,
            "Item": marker,
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PK},
        }
        try:
            self._call(
                "TransactWriteItems",
                partial(
                    self.client.transact_write_items,
                    TransactItems=[{"Put": put_marker}, {"Update": count_update}],
                ),
            )
        except _CancelledError as cancelled:
            marker_reason, count_reason = [*cancelled.reasons, "None", "None"][:2]
            if count_reason == "ConditionalCheckFailed":
                raise not_started from None
            if marker_reason != "ConditionalCheckFailed":
                code = next((r for r in cancelled.reasons if r != "None"), "TransactionCanceledException")
                raise self._error("TransactWriteItems", code, f"transaction cancelled: {cancelled}") from None
            # counted by an earlier try of this batch: finish what that try may have left undone
        item = self._get(_run_key(run_id))
        if item is None:
            raise not_started
        return self._summarise_if_done(run_id, item)

    def _write_results(self, run_id: str, results: Sequence[TagResult], recorded_at: datetime) -> None:
        """Put every result but the plain fresh ones (a report names no fresh tag but a recovered
        one; counters carry the rest)."""
        expires = _epoch(recorded_at + self.ttl)
        by_tag = {(r.repository, r.tag): r for r in results if _stored(r)}
        items = [_result_item(run_id, r, recorded_at, expires) for r in by_tag.values()]
        for start in range(0, len(items), _BATCH_WRITE):
            pending: Any = [{"PutRequest": {"Item": item}} for item in items[start : start + _BATCH_WRITE]]
            for attempt in range(_ATTEMPTS):
                request: Any = {self.table_name: pending}
                response = self._call(
                    "BatchWriteItem", partial(self.client.batch_write_item, RequestItems=request)
                )
                unprocessed: Any = response.get("UnprocessedItems", {})
                pending = unprocessed.get(self.table_name, [])
                if not pending:
                    break
                if attempt == _ATTEMPTS - 1:
                    raise self._error(
                        "BatchWriteItem", UNPROCESSED_ITEMS, f"{len(pending)} results not written"
                    )
                _backoff(attempt)

    def _summarise_if_done(self, run_id: str, item: Item) -> bool:
        done, expected = _int(item, "done"), _int(item, "expected")
        if done is None or expected is None or done < expected or "summarised" in item:
            return False
        try:
            self._update(
                _run_key(run_id),
                {"summarised": {"BOOL": True}, "summarisedAt": {"S": iso(self.now())}},
                "attribute_not_exists(#summarised) AND #done >= #expected",
                {"#summarised": "summarised", "#done": "done", "#expected": "expected"},
                {},
            )
        except ConditionFailedError:
            return False
        return True

    def run_progress(self, run_id: str) -> RunProgress | None:
        item = self._get(_run_key(run_id))
        return _progress_from(run_id, item) if item is not None else None

    def run_results(self, run_id: str) -> list[TagResult]:
        """The stored results of the run: every one but the plain fresh ones, which only its counters
        hold (``run_progress(...).counts``: what the RunReport's ``counts`` carry). Complete once
        ``record_results`` returned True: results are stored before counted.
        """
        return [
            _result_from(item)
            for item in self._query(
                {
                    "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
                    "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
                    "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}, ":prefix": {"S": "RESULT#"}},
                    "ConsistentRead": True,
                }
            )
        ]

    # -- history -------------------------------------------------------------------------------------

    def changes_since(self, since: datetime, until: datetime | None = None) -> list[Change]:
        """Refreshes and failures recorded in [since, until], oldest first: one Query per UTC day."""
        end = until or self.now()
        window = {":since": {"S": iso(since)}, ":until": {"S": iso(end)}}
        changes: list[Change] = []
        day, last = since.astimezone(UTC).date(), end.astimezone(UTC).date()
        while day <= last:
            for item in self._query(
                {
                    "IndexName": CHANGES_INDEX,
                    "KeyConditionExpression": "#day = :day AND #at BETWEEN :since AND :until",
                    "ExpressionAttributeNames": {"#day": CHANGE_DAY, "#at": CHANGED_AT},
                    "ExpressionAttributeValues": {":day": {"S": day.isoformat()}, **window},
                }
            ):
                at = _time(item, CHANGED_AT) or since
                changes.append(Change(at, _str(item, "runId") or "", _result_from(item)))
            day += timedelta(days=1)
        changes.sort(key=lambda change: change.at)
        return changes
