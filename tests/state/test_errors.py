"""Every DynamoDB failure surfaces as a StateError naming the operation, the table and the code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from ptc_sync.models import Outcome, RateLimitStatus, TagResult
from ptc_sync.state import DynamoStateStore, StateError
from tests.faults import AwsFaults

from .conftest import START, TABLE

FAILED = TagResult("docker-hub/library/node", "lts", "docker-hub", Outcome.REFRESH_FAILED, reason="verify")
HUB = RateLimitStatus("registry-1.docker.io", 100, 50, 21600)

CALLS: dict[str, tuple[str, Callable[[DynamoStateStore], object]]] = {
    "tag_state": ("GetItem", lambda s: s.tag_state("r", "t")),
    "tag_states": ("BatchGetItem", lambda s: s.tag_states([("r", "t")])),
    "record_tag": ("UpdateItem", lambda s: s.record_tag(FAILED, START)),
    "observe_rate_limit": ("UpdateItem", lambda s: s.observe_rate_limit(HUB, START)),
    "reserve_pulls": ("UpdateItem", lambda s: s.reserve_pulls(HUB.host, 1, 10, START)),
    "start_run": ("PutItem", lambda s: s.start_run("run-x", 1, START)),
    "record_results": ("BatchWriteItem", lambda s: s.record_results("run-1", [FAILED])),
    "record_batch": ("TransactWriteItems", lambda s: s.record_results("run-1", [], batch_id="m")),
    "record_unnamed": ("UpdateItem", lambda s: s.record_results("run-1", [])),
    "run_results": ("Query", lambda s: s.run_results("run-1")),
    "changes_since": ("Query", lambda s: s.changes_since(START)),
}
CODES = ["ThrottlingException", "ProvisionedThroughputExceededException", "AccessDeniedException"]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("call", sorted(CALLS))
def test_dynamodb_errors_become_state_errors(store: DynamoStateStore, ddb: Any, call: str, code: str) -> None:
    store.start_run("run-1", 5, START)
    operation, invoke = CALLS[call]
    faults = AwsFaults(ddb)
    faults.fail(operation, code, "injected", times=None)
    with pytest.raises(StateError) as raised:
        invoke(store)
    error = raised.value
    assert (error.operation, error.table, error.code) == (operation, TABLE, code)
    assert str(error) == f"{operation} on {TABLE}: {code}: injected"
    assert error.throttled is (code != "AccessDeniedException")
    assert error.access_denied is (code == "AccessDeniedException")


def test_no_connection_is_a_state_error(ddb: Any) -> None:
    client = boto3.client(
        "dynamodb", region_name="us-east-1", config=Config(retries={"total_max_attempts": 1})
    )

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.dynamodb", unreachable)
    with pytest.raises(StateError) as raised:
        DynamoStateStore(client, TABLE).tag_state("r", "t")
    assert (raised.value.operation, raised.value.code) == ("GetItem", "EndpointConnectionError")


def test_items_dynamodb_keeps_leaving_unprocessed_are_an_error(store: DynamoStateStore, ddb: Any) -> None:
    store.start_run("run-1", 1, START)
    with Stubber(ddb) as stub:
        for _ in range(6):
            unprocessed = {TABLE: [{"PutRequest": {"Item": {"pk": {"S": "x"}, "sk": {"S": "y"}}}}]}
            stub.add_response("batch_write_item", {"UnprocessedItems": unprocessed})
        with pytest.raises(StateError) as raised:
            store.record_results("run-1", [FAILED])
    assert (raised.value.operation, raised.value.code) == ("BatchWriteItem", "UnprocessedItems")
