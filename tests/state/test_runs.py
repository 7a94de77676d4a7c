"""Runs fanned out over SQS batches: counted once per batch, summarised exactly once."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ptc_sync.models import Outcome, RunReport, TagResult
from ptc_sync.state import DynamoStateStore, StateError
from testbed.runtime import FakeClock
from tests.faults import AwsFaults

from .conftest import START, TABLE, item

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64


def result(i: int, outcome: Outcome, rule: str = "docker-hub") -> TagResult:
    return TagResult(
        f"{rule}/library/app{i}",
        "latest",
        rule,
        outcome,
        OLD,
        NEW,
        platforms=("linux/amd64", "linux/arm64") if outcome is Outcome.REFRESHED else (),
        reason="" if outcome is Outcome.FRESH else f"reason {i}",
        stale_since=START if outcome is Outcome.REFRESH_FAILED else None,
        details={"step": "verify"} if outcome is Outcome.REFRESH_FAILED else {},
        news=outcome in {Outcome.REFRESHED, Outcome.REFRESH_FAILED},
        recovered=outcome is Outcome.UPSTREAM_ERROR,  # any flag round-trips, whatever the outcome
        first_seen=outcome is Outcome.SKIPPED,
    )


BATCHES = [
    [result(0, Outcome.FRESH), result(1, Outcome.FRESH), result(2, Outcome.REFRESHED)],
    [result(3, Outcome.REFRESH_FAILED), result(4, Outcome.FRESH, "quay")],
    [result(5, Outcome.SKIPPED), result(6, Outcome.UPSTREAM_ERROR, "quay")],
]
EXPECTED = len(BATCHES)  # a run waits for work items; each records one batch of results
TAGS = sum(len(b) for b in BATCHES)


@pytest.mark.parametrize("with_batch_ids", [True, False])
def test_only_the_batch_that_completes_the_run_says_so(store: DynamoStateStore, with_batch_ids: bool) -> None:
    store.start_run("run-1", EXPECTED, START)
    completed = [
        store.record_results("run-1", batch, batch_id=f"msg-{i}" if with_batch_ids else None)
        for i, batch in enumerate(BATCHES)
    ]
    assert completed == [False, False, True]
    progress = store.run_progress("run-1")
    assert progress is not None
    assert (progress.expected, progress.done, progress.summarised) == (EXPECTED, EXPECTED, True)
    assert progress.started_at == START
    assert progress.count(Outcome.FRESH) == 3
    assert progress.counts[("quay", Outcome.FRESH)] == 1
    assert progress.counts[("docker-hub", Outcome.REFRESHED)] == 1


def test_run_results_rebuild_the_report(store: DynamoStateStore) -> None:
    store.start_run("run-1", EXPECTED, START)
    for i, batch in enumerate(BATCHES):
        store.record_results("run-1", batch, batch_id=f"msg-{i}")
    results = store.run_results("run-1")
    progress = store.run_progress("run-1")
    assert progress is not None
    report = RunReport(
        "run-1", START, START + timedelta(minutes=3), False, tuple(results), counts=progress.counts
    )
    direct = RunReport("run-1", START, START, False, tuple(r for batch in BATCHES for r in batch))
    assert report.tags_checked == TAGS  # counted from the run's counters: no nameless padding
    for outcome in Outcome:
        assert report.count(outcome) == direct.count(outcome), outcome
    assert report.rule_prefixes == {"docker-hub", "quay"}
    stored = {r.image: r for r in results}
    originals = {r.image: r for batch in BATCHES for r in batch if r.outcome is not Outcome.FRESH}
    assert stored == originals  # every field of every named result round-trips; plain fresh ones are counted


def test_stored_results_expire(store: DynamoStateStore, ddb: Any, clock: FakeClock) -> None:
    store.start_run("run-1", 1, START)
    store.record_results("run-1", [result(2, Outcome.REFRESHED)], batch_id="m")
    raw = item(ddb, "RUN#run-1", "RESULT#docker-hub/library/app2:latest")
    assert raw is not None
    assert int(raw["expiresAt"]["N"]) == int((clock.now() + timedelta(days=14)).timestamp())
    run = item(ddb, "RUN#run-1", "RUN")
    assert run is not None
    assert int(run["expiresAt"]["N"]) == int((START + timedelta(days=14)).timestamp())


def test_a_redelivered_batch_is_counted_once(store: DynamoStateStore) -> None:
    store.start_run("run-1", EXPECTED, START)
    store.record_results("run-1", BATCHES[0], batch_id="msg-0")
    assert not store.record_results("run-1", BATCHES[0], batch_id="msg-0")
    store.record_results("run-1", BATCHES[1], batch_id="msg-1")
    progress = store.run_progress("run-1")
    assert progress is not None
    assert progress.done == 2  # two items, each counted once
    assert not progress.summarised
    assert store.record_results("run-1", BATCHES[2], batch_id="msg-2")
    assert not store.record_results("run-1", BATCHES[2], batch_id="msg-2")  # late duplicate


def test_a_retry_after_a_failed_summary_flag_completes_the_run(store: DynamoStateStore, ddb: Any) -> None:
    """Counted, then throttled on the summarised flag: the retry must complete without recounting."""
    store.start_run("run-1", EXPECTED, START)
    store.record_results("run-1", BATCHES[0], batch_id="msg-0")
    store.record_results("run-1", BATCHES[1], batch_id="msg-1")
    faults = AwsFaults(ddb)
    faults.fail(
        "UpdateItem",
        "ProvisionedThroughputExceededException",
        when=lambda params: "summarised" in str(params.get("ExpressionAttributeNames")),
    )
    with pytest.raises(StateError) as raised:
        store.record_results("run-1", BATCHES[2], batch_id="msg-2")
    assert raised.value.throttled
    assert store.record_results("run-1", BATCHES[2], batch_id="msg-2")
    progress = store.run_progress("run-1")
    assert progress is not None
    assert (progress.done, progress.summarised) == (EXPECTED, True)


def test_runs_start_once_and_results_need_a_started_run(store: DynamoStateStore) -> None:
    store.start_run("run-1", 3, START)
    with pytest.raises(StateError) as again:
        store.start_run("run-1", 3, START)
    assert again.value.code == "RunAlreadyStarted"
    for batch_id in ("msg-0", None):
        with pytest.raises(StateError) as missing:
            store.record_results("run-2", BATCHES[0], batch_id=batch_id)
        assert missing.value.code == "RunNotStarted"
        assert missing.value.table == TABLE
    assert store.run_progress("run-2") is None
    with pytest.raises(ValueError, match="no work"):
        store.start_run("run-3", 0, START)


def conflict_once(client: Any, operation: str) -> list[str]:
    """The first ``operation`` call fails as a transaction conflict would (moto never conflicts)."""
    seen: list[str] = []

    def hook(model: Any, params: Mapping[str, Any], **_: Any) -> None:
        if model.name != operation or seen:
            return
        seen.append(model.name)
        error: dict[str, Any] = {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"}}
        error["CancellationReasons"] = [{"Code": "None"}, {"Code": "TransactionConflict"}]
        raise ClientError(error, operation)  # type: ignore[arg-type]

    client.meta.events.register("before-parameter-build.dynamodb", hook)
    return seen


def test_a_transaction_conflict_is_retried(store: DynamoStateStore, ddb: Any) -> None:
    store.start_run("run-1", 1, START)
    seen = conflict_once(ddb, "TransactWriteItems")
    assert store.record_results("run-1", BATCHES[0], batch_id="msg-0")
    assert seen == ["TransactWriteItems"]
    progress = store.run_progress("run-1")
    assert progress is not None
    assert progress.done == 1
    assert sum(progress.counts.values()) == len(BATCHES[0])


def test_a_throttled_transaction_names_the_reason(store: DynamoStateStore, ddb: Any) -> None:
    store.start_run("run-1", 3, START)

    def hook(model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems":
            error: dict[str, Any] = {"Error": {"Code": "TransactionCanceledException", "Message": "no"}}
            error["CancellationReasons"] = [{"Code": "None"}, {"Code": "ThrottlingError"}]
            raise ClientError(error, model.name)  # type: ignore[arg-type]

    ddb.meta.events.register("before-parameter-build.dynamodb", hook)
    with pytest.raises(StateError) as raised:
        store.record_results("run-1", BATCHES[0], batch_id="msg-0")
    assert (raised.value.operation, raised.value.code, raised.value.throttled) == (
        "TransactWriteItems",
        "ThrottlingError",
        True,
    )


@pytest.mark.parametrize("with_batch_ids", [True, False])
def test_racing_batches_complete_the_run_exactly_once(store: DynamoStateStore, with_batch_ids: bool) -> None:
    """Thirty batches recorded by twelve threads at once (plus redeliveries when batches are named):
    exactly one call completes the run, and only once every result is readable."""
    batches = [[result(2 * b, Outcome.FRESH), result(2 * b + 1, Outcome.REFRESHED)] for b in range(30)]
    work: list[tuple[str, list[TagResult]]] = [(f"msg-{b}", batch) for b, batch in enumerate(batches)]
    if with_batch_ids:
        work += random.Random(7).sample(work, 10)  # SQS delivers some twice
    random.Random(3).shuffle(work)
    store.start_run("run-1", 30, START)
    readable_at_completion: list[int] = []
    jobs: queue.SimpleQueue[tuple[str, list[TagResult]]] = queue.SimpleQueue()
    for job in work:
        jobs.put(job)
    barrier = threading.Barrier(12)

    def checker(_: int) -> list[bool]:
        barrier.wait()
        completed = []
        while True:
            try:
                batch_id, batch = jobs.get_nowait()
            except queue.Empty:
                return completed
            named = batch_id if with_batch_ids else None
            done = store.record_results("run-1", batch, batch_id=named)
            if done:  # what a checker does next: build the report
                progress = store.run_progress("run-1")
                counted = sum(progress.counts.values()) if progress else 0
                readable_at_completion.append(len(store.run_results("run-1")) + counted)
            completed.append(done)

    with ThreadPoolExecutor(12) as pool:
        completed = [c for calls in pool.map(checker, range(12)) for c in calls]
    assert len(completed) == len(work)
    assert completed.count(True) == 1
    assert readable_at_completion == [30 + 60]  # the 30 refreshed named, all 60 counted
    progress = store.run_progress("run-1")
    assert progress is not None
    assert (progress.done, progress.summarised) == (30, True)
    assert progress.count(Outcome.REFRESHED) == 30


def test_a_scan_that_splits_extends_its_run_once(store: DynamoStateStore) -> None:
    """The run waits for a scan's split-off items; a retried scan extends it no further."""
    store.start_run("run-1", 1, START)
    store.extend_run("run-1", 2, "abc")
    store.extend_run("run-1", 2, "abc")  # the same scan, retried
    assert not store.record_results("run-1", BATCHES[0], batch_id="scan")
    assert not store.record_results("run-1", BATCHES[1], batch_id="part-0")
    assert store.record_results("run-1", BATCHES[2], batch_id="part-1")
    progress = store.run_progress("run-1")
    assert progress is not None
    assert (progress.expected, progress.done) == (3, 3)
    with pytest.raises(StateError) as missing:
        store.extend_run("run-2", 1, "abc")
    assert missing.value.code == "RunNotStarted"


def test_the_completing_batch_sees_results_of_a_batch_still_being_written(
    store: DynamoStateStore, ddb: Any
) -> None:
    """A batch counts only after its results are stored: when a slow batch's write is still in
    flight, the other batch cannot complete the run without it."""
    slow_write_started = threading.Event()

    def slow(model: Any, params: Mapping[str, Any], **_: Any) -> None:
        if model.name == "BatchWriteItem" and "app1" in str(params):
            slow_write_started.set()
            time.sleep(0.3)

    ddb.meta.events.register("before-parameter-build.dynamodb", slow)
    store.start_run("run-1", 2, START)
    slow_batch = [result(1, Outcome.REFRESH_FAILED)]
    quick_batch = [result(2, Outcome.REFRESHED)]

    def record(batch_id: str, batch: list[TagResult]) -> int | None:
        if batch_id == "quick":
            slow_write_started.wait(timeout=5)
        if store.record_results("run-1", batch, batch_id=batch_id):
            return len(store.run_results("run-1"))
        return None

    with ThreadPoolExecutor(2) as pool:
        slow_future = pool.submit(record, "slow", slow_batch)
        quick_future = pool.submit(record, "quick", quick_batch)
        seen = [slow_future.result(), quick_future.result()]
    assert [n for n in seen if n is not None] == [2]
