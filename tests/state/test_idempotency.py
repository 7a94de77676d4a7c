"""The checker's Powertools idempotency records live in the state table without disturbing it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

from ptc_sync.state import idempotency_persistence
from testbed.runtime import FakeContext

from .conftest import TABLE


def config() -> IdempotencyConfig:
    """Keyed on the record's body: a redelivery, or the same work sent twice, runs once."""
    idempotency = IdempotencyConfig(event_key_jmespath="body")
    idempotency.register_lambda_context(FakeContext("ptc-sync-Checker", remaining_ms=60_000))  # type: ignore[arg-type]
    return idempotency


def sqs_record(message_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"messageId": message_id, "receiptHandle": "h", "body": json.dumps(body), "attributes": {}}


@pytest.fixture
def idempotency_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_IDEMPOTENCY_DISABLED", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ptc-sync-Checker")


@pytest.mark.usefixtures("idempotency_enabled")
def test_a_redelivered_record_is_processed_once(ddb: Any) -> None:
    processed: list[str] = []

    @idempotent_function(
        data_keyword_argument="record",
        persistence_store=idempotency_persistence(TABLE, client=ddb),
        config=config(),
    )
    def check(record: dict[str, Any]) -> dict[str, Any]:
        processed.append(record["messageId"])
        return {"checked": json.loads(record["body"])["tags"]}

    work = {"run_id": "run-1", "tags": ["docker-hub/library/node:lts"]}
    first = check(record=sqs_record("m-1", work))
    again = check(record=sqs_record("m-1", work))  # SQS redelivers the same message
    assert processed == ["m-1"]
    assert again == first == {"checked": ["docker-hub/library/node:lts"]}
    check(record=sqs_record("m-2", {**work, "tags": ["quay/x:1"]}))
    assert processed == ["m-1", "m-2"]

    # the records sit in their own partition, expire through the table's TTL, and stay out of the GSI
    records = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "IDEMPOTENCY"}},
    )["Items"]
    assert len(records) == 2
    for item in records:
        assert item["sk"]["S"].startswith("ptc-sync-Checker.")
        assert item["idempotencyStatus"]["S"] == "COMPLETED"
        assert int(item["expiresAt"]["N"]) > 0
        assert "changeDay" not in item
    assert ddb.scan(TableName=TABLE, IndexName="ChangesByDay")["Count"] == 0


@pytest.mark.usefixtures("idempotency_enabled")
def test_a_failed_record_is_processed_again_when_redelivered(ddb: Any) -> None:
    """Powertools deletes the record of a failed call (so the checker needs DeleteItem)."""
    attempts: list[int] = []

    @idempotent_function(
        data_keyword_argument="record",
        persistence_store=idempotency_persistence(TABLE, client=ddb),
        config=config(),
    )
    def check(record: dict[str, Any]) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("upstream timed out")
        return "ok"

    record = sqs_record("m-1", {"run_id": "run-1", "tags": ["a:b"]})
    with pytest.raises(RuntimeError):
        check(record=record)
    assert check(record=record) == "ok"
    assert len(attempts) == 2
