"""The selftest's result in the state table, and the gate the scheduled plan asks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ptc_sync.selftest_store import (
    Behaviour,
    Check,
    DynamoSelftestStore,
    MemorySelftestStore,
    SelftestResult,
    SelftestStoreError,
    Status,
    report_only_reason,
)
from testbed.sandbox import Sandbox

AT = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)


def result(**statuses: Status) -> SelftestResult:
    checks = tuple(
        Check(b, statuses.get(b.name.lower(), Status.VERIFIED), 0.25, f"{b.value} detail") for b in Behaviour
    )
    return SelftestResult(AT, "123456789012", "us-east-1", "ecr-public", "ecr-public/x", ("a", "b"), checks)


@pytest.mark.parametrize(
    ("statuses", "path", "held"),
    [
        ({}, "auto", ""),
        ({"layer_warmth": Status.FAILED}, "auto", ""),  # warmth is not safety
        ({"pull_time_exclusion": Status.FAILED}, "auto", ""),
        ({"backup_put_image": Status.FAILED}, "auto", "backup-put-image"),
        ({"reimport_after_delete": Status.FAILED}, "auto", "reimport-after-delete"),
        ({"import_api": Status.FAILED}, "auto", ""),  # auto pulls through the endpoint instead
        ({"import_api": Status.FAILED}, "api", "import-api"),  # told to use the API
        ({"import_endpoint": Status.FAILED}, "endpoint", "import-endpoint"),
        ({"import_api": Status.FAILED, "import_endpoint": Status.FAILED}, "auto", "import (both"),
        ({"backup_put_image": Status.UNKNOWN}, "auto", ""),  # not checked is not failed
    ],
)
def test_only_a_failure_of_what_the_refresh_relies_on_holds_the_runs(
    statuses: dict[str, Status], path: str, held: str
) -> None:
    reason = result(**statuses).report_only_reason(path)
    if not held:
        assert reason == ""
    else:
        assert reason.startswith("report only: the selftest of 2026-12-01 10:30Z found ")
        assert held in reason
        assert "ptc-sync selftest" in reason, "says how to lift it"


def test_no_result_or_an_unreadable_one_holds_nothing() -> None:
    class Broken:
        def save(self, result: SelftestResult) -> None:
            raise SelftestStoreError("PutItem: AccessDenied")

        def latest(self) -> SelftestResult | None:
            raise SelftestStoreError("GetItem: AccessDeniedException: not authorized")

    assert report_only_reason(None) == ""
    assert report_only_reason(MemorySelftestStore()) == ""
    assert report_only_reason(Broken()) == ""
    store = MemorySelftestStore()
    store.save(result(backup_put_image=Status.FAILED))
    assert "backup-put-image" in report_only_reason(store)
    store.save(result())
    assert report_only_reason(store) == "", "the latest result decides"


def test_the_document_round_trips_and_ignores_behaviours_it_does_not_know() -> None:
    original = result(layer_warmth=Status.FAILED)
    doc = original.to_doc()
    assert SelftestResult.from_doc(doc) == original
    doc["checks"].append({"behaviour": "a-newer-check", "status": "failed", "seconds": 1})
    assert SelftestResult.from_doc(doc) == original


def test_the_state_table_keeps_the_latest_and_a_dated_history(box: Sandbox) -> None:
    store = DynamoSelftestStore(box.client("dynamodb"), box.table_name, ttl_days=30)
    assert store.latest() is None
    first = result(reimport_after_delete=Status.FAILED)
    second = SelftestResult(
        AT + timedelta(hours=1), first.account_id, first.region, first.rule, first.repository, first.tags, ()
    )
    store.save(first)
    store.save(second)

    assert store.latest() == second
    assert store.history() == [second, first]
    item = box.client("dynamodb").get_item(
        TableName=box.table_name, Key={"pk": {"S": "SELFTEST"}, "sk": {"S": "AT#2026-12-01T10:30:00.000000Z"}}
    )["Item"]
    assert int(item["expiresAt"]["N"]) == int((AT + timedelta(days=30)).timestamp())
    assert "changeDay" not in item, "never in the changes index"
    with pytest.raises(SelftestStoreError, match="GetItem"):
        DynamoSelftestStore(box.client("dynamodb"), "no-such-table").latest()
