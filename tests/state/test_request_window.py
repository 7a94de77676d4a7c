"""Sync Requests per hour: one conditional ADD per request on the state table, never past the limit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from ptc_sync.request_window import REQUESTS_PK, DynamoRequestWindow, LocalRequestWindow
from ptc_sync.state import iso
from tests.state.conftest import START, TABLE


def test_the_limit_is_held_within_an_hour_and_starts_again_in_the_next(ddb: Any) -> None:
    window = DynamoRequestWindow(ddb, TABLE)
    admitted = [window.admit(START, 3) for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    assert window.admit(START + timedelta(minutes=29), 3) is False, "still 23:00-24:00"
    assert window.admit(START + timedelta(minutes=31), 3) is True, "a new hour"
    item = ddb.get_item(
        TableName=TABLE, Key={"pk": {"S": REQUESTS_PK}, "sk": {"S": iso(START.replace(minute=0))}}
    )["Item"]
    assert item["count"] == {"N": "3"}, "refused requests are not counted"
    assert int(item["expiresAt"]["N"]) > START.timestamp(), "the count expires by itself"


def test_racing_request_functions_never_admit_more_than_the_limit(ddb: Any) -> None:
    window = DynamoRequestWindow(ddb, TABLE)
    with ThreadPoolExecutor(max_workers=8) as pool:
        admitted = list(pool.map(lambda _: window.admit(START, 5), range(20)))
    assert admitted.count(True) == 5


def test_a_zero_limit_refuses_every_request(ddb: Any) -> None:
    assert DynamoRequestWindow(ddb, TABLE).admit(START, 0) is False
    assert LocalRequestWindow().admit(START, 0) is False


def test_the_local_window_counts_like_the_table() -> None:
    window = LocalRequestWindow()
    assert [window.admit(START, 2) for _ in range(3)] == [True, True, False]
    assert window.admit(START + timedelta(hours=1), 2) is True
