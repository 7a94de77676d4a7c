"""AWS calls counted from botocore's event hooks, outside the code under test (bench tool).

``AwsCounter.attach(session)`` registers ``provide-client-params`` and ``after-call`` handlers on a
boto3 session before its clients are made (a client copies the session's handlers when created),
so every call of every client of that session is seen: failed calls too (``after-call`` fires for an
error response before botocore raises it).

DynamoDB capacity is computed from item sizes, by DynamoDB's published rules, because moto's
``ConsumedCapacity`` is a constant: a read unit per 4 KB of each item read (half for an eventually
consistent read, a whole one even for a key with no item), a Query's items summed before rounding,
a write unit per 1 KB of each item written (the stored item after the write, read from moto's
backend; a failed condition still costs one), transactions twice both, and for each global
secondary index whose keys the stored item carries, its write units again (what DynamoDB charges to
keep an index: an index with projection ALL writes the whole item). Item size: attribute names
plus values (a number ~ half its digits + 1, a map or list 3 bytes + its elements, 1 per element).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID

READ_PREFIXES = ("Describe", "List", "Get", "BatchGet", "BatchCheck", "Query", "Scan")


def _number_size(raw: Any) -> int:
    digits = len(str(raw).lstrip("-").replace(".", "").strip("0")) or 1
    return math.ceil(digits / 2) + 1


def _binary_size(raw: Any) -> int:
    return len(raw) if isinstance(raw, bytes | bytearray) else math.ceil(len(str(raw)) * 3 / 4)


_SCALAR_SIZES: dict[str, Callable[[Any], int]] = {
    "S": lambda raw: len(str(raw).encode()),
    "N": _number_size,
    "B": _binary_size,
    "BOOL": lambda _: 1,
    "NULL": lambda _: 1,
}


def value_size(value: dict[str, Any]) -> int:
    (kind, raw), *_ = value.items()
    if kind in _SCALAR_SIZES:
        return _SCALAR_SIZES[kind](raw)
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in raw.items())
    return 1


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def _read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


def _write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


class AwsCounter:
    """Calls by (label, service, operation), DynamoDB read and write units by label."""

    def __init__(self, region: str = "us-east-1", account: str = DEFAULT_ACCOUNT_ID) -> None:
        self.region = region
        self.account = account
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.rru: Counter[str] = Counter()
        self.wru: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()
        self.rru.clear()
        self.wru.clear()

    def attach(self, session: Any, label: str) -> None:
        events = session.events if hasattr(session, "events") else session
        events.register("provide-client-params", self._keep_params)
        events.register("after-call", lambda **kw: self._after(label, **kw))

    @staticmethod
    def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_params"] = dict(params)

    # -- tallies -----------------------------------------------------------------------------------

    def count(self, service: str, *, label: str | None = None, read: bool | None = None) -> int:
        return sum(
            n
            for (lab, svc, op), n in self.calls.items()
            if svc == service
            and (label is None or lab == label)
            and (read is None or op.startswith(READ_PREFIXES) == read)
        )

    def by_operation(self, service: str, label: str | None = None) -> dict[str, int]:
        found: Counter[str] = Counter()
        for (lab, svc, op), n in self.calls.items():
            if svc == service and (label is None or lab == label):
                found[op] += n
        return dict(sorted(found.items()))

    # -- the hook ----------------------------------------------------------------------------------

    def _after(
        self, label: str, http_response: Any, parsed: dict[str, Any], model: Any, context: Any, **_: Any
    ) -> None:
        service = model.service_model.service_name
        op = model.name
        self.calls[(label, service, op)] += 1
        if service == "dynamodb":
            params = (context or {}).get("bench_params", {})
            failed = getattr(http_response, "status_code", 200) >= 300
            reads, writes = self._capacity(op, params, parsed, failed)
            self.rru[label] += reads
            self.wru[label] += writes

    def _stored_write_units(self, table: str, key: dict[str, Any]) -> int:
        """The write units of the stored item after a write, with each global secondary index that
        holds it (its keys are in the item) charged the write again; no item: none."""
        from moto.dynamodb.models import dynamodb_backends

        try:
            stored = dynamodb_backends[self.account][self.region].get_item(table, key)
        except Exception:  # a bench estimate: no item, one unit
            stored = None
        if stored is None:
            return _write_units(0)
        return _write_units(stored.size()) * (1 + self._indexes_holding(table, stored.attrs))

    def _indexes_holding(self, table: str, attrs: Any) -> int:
        """How many global secondary indexes of ``table`` an item with ``attrs`` is copied to."""
        from moto.dynamodb.models import dynamodb_backends

        try:
            indexes = dynamodb_backends[self.account][self.region].get_table(table).global_indexes
        except Exception:  # a bench estimate: no index
            return 0
        return sum(1 for index in indexes if all(k["AttributeName"] in attrs for k in index.schema))

    def _key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        from moto.dynamodb.models import dynamodb_backends

        schema = dynamodb_backends[self.account][self.region].get_table(table).schema
        names = [k["AttributeName"] for k in schema]
        return {n: item[n] for n in names if n in item}

    def _capacity(
        self, op: str, params: dict[str, Any], parsed: dict[str, Any], failed: bool
    ) -> tuple[float, float]:
        if op in ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"):
            return self._reads(op, params, parsed), 0
        return 0, self._writes(op, params, parsed, failed)

    @staticmethod
    def _reads(op: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
        if op == "GetItem":
            return _read_units(item_size(parsed.get("Item", {})), bool(params.get("ConsistentRead")))
        if op in ("Query", "Scan"):
            strong = bool(params.get("ConsistentRead", False)) and "IndexName" not in params
            return _read_units(sum(item_size(it) for it in parsed.get("Items", [])), strong)
        if op == "TransactGetItems":
            responses = parsed.get("Responses", [])
            return 2 * sum(_read_units(item_size(r.get("Item", {})), True) for r in responses)
        units = 0.0
        for table, spec in params.get("RequestItems", {}).items():
            strong = bool(spec.get("ConsistentRead", False))
            found = [item_size(it) for it in parsed.get("Responses", {}).get(table, [])]
            unprocessed = parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            asked = len(spec.get("Keys", [])) - len(unprocessed)
            units += sum(_read_units(size, strong) for size in found)
            units += _read_units(0, strong) * max(0, asked - len(found))
        return units

    def _writes(self, op: str, params: dict[str, Any], parsed: dict[str, Any], failed: bool) -> int:
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            table = params.get("TableName", "")
            if failed or op == "DeleteItem":
                return 1
            key = params.get("Key") or self._key_of(table, params.get("Item", {}))
            return self._stored_write_units(table, key)
        units = 0
        if op == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                left = len(parsed.get("UnprocessedItems", {}).get(table, []))
                for request in requests[: max(0, len(requests) - left)]:
                    put = request.get("PutRequest")
                    units += (
                        _write_units(item_size(put["Item"])) * (1 + self._indexes_holding(table, put["Item"]))
                        if put
                        else 1
                    )
        elif op == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                (kind, spec), *_ = entry.items()
                table = spec.get("TableName", "")
                if failed or kind in ("ConditionCheck", "Delete"):
                    units += 2
                    continue
                key = spec.get("Key") or self._key_of(table, spec.get("Item", {}))
                units += 2 * self._stored_write_units(table, key)
        return units
