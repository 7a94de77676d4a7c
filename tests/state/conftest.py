"""Fixtures for the state store: moto DynamoDB with the state table exactly as template.yaml declares it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from ptc_sync.state import DynamoStateStore
from testbed.runtime import FakeClock

TABLE = "ptc-sync-state"
START = datetime(2025, 6, 2, 23, 30, tzinfo=UTC)

# The StateTable resource of template.yaml, in CreateTable's words (tests/state/test_template.py
# checks the template against these once the resource exists).
KEY_SCHEMA = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": name, "AttributeType": "S"}
    for name in ("pk", "sk", "changeDay", "changedAt", "tagGroup", "tagKey")
]
GLOBAL_SECONDARY_INDEXES = [
    {
        "IndexName": "ChangesByDay",
        "KeySchema": [
            {"AttributeName": "changeDay", "KeyType": "HASH"},
            {"AttributeName": "changedAt", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
    {
        "IndexName": "TagStatesByGroup",
        "KeySchema": [
            {"AttributeName": "tagGroup", "KeyType": "HASH"},
            {"AttributeName": "tagKey", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
]
TTL_ATTRIBUTE = "expiresAt"


def create_state_table(client: Any, name: str = TABLE) -> None:
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=KEY_SCHEMA,
        AttributeDefinitions=ATTRIBUTE_DEFINITIONS,
        GlobalSecondaryIndexes=GLOBAL_SECONDARY_INDEXES,
        SSESpecification={"Enabled": True},
    )
    client.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
    )
    client.update_continuous_backups(
        TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )


@pytest.fixture(autouse=True)
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real DynamoDB applies each request atomically; moto evaluates a condition and then writes
    without a lock. Serialise moto's request handling so racing threads test our code (which may
    interleave freely between requests), not moto's."""
    lock = threading.Lock()
    handle = DynamoHandler.call_action

    def serialised(self: DynamoHandler) -> Any:
        with lock:
            return handle(self)

    monkeypatch.setattr(DynamoHandler, "call_action", serialised)


@pytest.fixture
def ddb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_state_table(client)
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(ddb: Any, clock: FakeClock) -> DynamoStateStore:
    return DynamoStateStore(ddb, TABLE, now=clock.now)


def item(client: Any, pk: str, sk: str) -> dict[str, Any] | None:
    """The raw stored item (to check what is written, not just what the store reads back)."""
    found: dict[str, Any] | None = client.get_item(
        TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}}
    ).get("Item")
    return found
