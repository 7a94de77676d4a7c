"""The fan-out through the real handlers: the planner splits work items, the checker (behind the SQS
event source with ReportBatchItemFailures and the redrive policy of template.yaml) retries only what
failed, never counts a batch twice, and publishes each run's summary exactly once."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from ptc_sync.models import Outcome
from ptc_sync.state import IDEMPOTENCY_PK, PK, SK
from ptc_sync.work import WorkItem, WorkKind
from testbed.lambdas import Stack
from testbed.runtime import FakeContext
from testbed.sandbox import Sandbox, template_resources
from tests.faults import AwsFaults

from .conftest import (
    cache,
    load_event,
    outcome_counts,
    queued,
    release,
    reports,
    run_id_of,
    schedule,
    spy_on_checker,
    state_of,
    use,
)

WRITES = ("PutImage", "BatchDeleteImage")
MAX_RECEIVES = int(template_resources()["WorkQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])


def described(faults: AwsFaults) -> Counter[str]:
    """DescribeImages calls per repository: how often a work item's tags were read."""
    return Counter(params["repositoryName"] for op, params in faults.calls if op == "DescribeImages")


def test_scans_split_big_repositories_and_the_run_is_summarised_once(
    box: Sandbox,
    stack: Stack,
    unique_repo: str,
    one_repository_per_item: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The planner queues one scan per repository and reads no tag; the scan of a repository with
    more tags than one checker's share checks its share and queues the rest as check items, which
    the run waits for: every tag checked once, one summary."""
    monkeypatch.setattr("ptc_sync.checker.MAX_SCAN_TARGETS", 2)
    big, small = f"{unique_repo}-big", f"{unique_repo}-small"
    image = box.pusher.push_image(big, "t0", layers=1)
    release(box, big, ["t1", "t2", "t3", "t4"], image)
    other = box.pusher.push_image(small, "a", layers=1)
    release(box, small, ["b"], other)
    for tag in ("t0", "t1", "t2", "t3", "t4"):
        cache(box, big, tag)
    for tag in ("a", "b"):
        cache(box, small, tag)
    box.pusher.push_image(big, "t3", layers=1)  # one tag moves upstream: the run has news
    app = use(box, tags_per_message=2)
    spy = spy_on_checker(stack)
    stack.work.batch_size = 1  # one record per invocation: as many batches as messages

    planned, delivery = schedule(stack)

    assert (planned["status"], planned["messages"], planned["repositories"]) == ("planned", 2, 2)
    items = spy.items()
    scans = sorted(i.repository for i in items if i.kind is WorkKind.SCAN)
    assert scans == [f"ecr-public/{big}", f"ecr-public/{small}"]
    parts = [i for i in items if i.kind is WorkKind.CHECK]
    assert sorted(len(i.tags) for i in parts) == [1, 2], "the big repository's three other tags"
    assert {i.repository for i in parts} == {f"ecr-public/{big}"}
    assert {i.run_id for i in items} == {planned["run_id"]}
    assert (delivery.invocations, delivery.failures) == (4, 0)
    assert outcome_counts(app, planned["run_id"]) == {"fresh": 6, "refreshed": 1}
    progress = state_of(app).run_progress(planned["run_id"])
    assert progress is not None
    assert (progress.expected, progress.done) == (4, 4)
    assert delivery.responses == [{"batchItemFailures": []}] * 4
    (report,) = reports(box)  # four batches, one summary
    assert run_id_of(report) == planned["run_id"]
    assert report["metadata"]["additionalContext"]["tagsChecked"] == "7"
    assert report["metadata"]["additionalContext"]["refreshed"] == "1"


@pytest.mark.parametrize("fault", ["ecr-throttled", "dynamodb-throttled"])
def test_a_retryable_failure_retries_only_its_own_record(
    box: Sandbox, stack: Stack, unique_repo: str, fault: str, one_repository_per_item: None
) -> None:
    names = []
    for suffix in ("a", "b", "c"):
        box.pusher.push_image(f"{unique_repo}-{suffix}", "1.0", layers=1)
        names.append(cache(box, f"{unique_repo}-{suffix}", "1.0"))
    app = use(box)
    planned = stack.schedule(load_event("scheduled.json"))
    assert planned["messages"] == 3
    ecr = AwsFaults(app.ecr.client)
    state = AwsFaults(app.state.client)  # type: ignore[union-attr]
    if fault == "ecr-throttled":
        ecr.fail(
            "DescribeImages",
            "ThrottlingException",
            "Rate exceeded",
            when=lambda p: p["repositoryName"] == names[1],
        )
    else:  # the first batch's counters cannot be written: DynamoDB throttles the transaction
        state.fail(
            "TransactWriteItems", "ThrottlingException", "Rate of requests exceeds the allowed throughput"
        )
    spy = spy_on_checker(stack)

    delivery = stack.drain()

    first, retry = spy.events
    assert len(first["Records"]) == 3, "the three items arrive in one batch"
    (failed,) = delivery.responses[0]["batchItemFailures"]
    assert [r["messageId"] for r in retry["Records"]] == [failed["itemIdentifier"]], "only it comes back"
    again = WorkItem.model_validate_json(retry["Records"][0]["body"])
    reads = described(ecr)
    assert reads[again.repository] == 2
    assert all(reads[n] == 1 for n in names if n != again.repository), "the others are not reprocessed"
    if fault == "ecr-throttled":
        assert again.repository == names[1]
    progress = state_of(app).run_progress(planned["run_id"])
    assert progress is not None
    assert (progress.done, progress.expected, progress.summarised) == (3, 3, True)
    assert outcome_counts(app, planned["run_id"]) == {"fresh": 3}
    assert delivery.records == 4
    assert queued(box, box.work_queue_url) == queued(box, box.dlq_url) == 0


def _batch_for(items: list[WorkItem]) -> dict[str, Any]:
    """events/sqs-work-batch.json with its bodies replaced by work items for the testbed."""
    event = load_event("sqs-work-batch.json")
    assert len(event["Records"]) == len(items)
    for record, item in zip(event["Records"], items, strict=True):
        record["body"] = item.model_dump_json()
    return event


def test_a_redelivered_record_does_nothing_twice(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    stale_repo, fresh_repo = f"{unique_repo}-stale", f"{unique_repo}-fresh"
    box.pusher.push_image(stale_repo, "lts", layers=1)
    stale = cache(box, stale_repo, "lts")
    new = box.pusher.push_image(stale_repo, "lts", layers=1)
    box.pusher.push_image(fresh_repo, "1.27", layers=1)
    fresh = cache(box, fresh_repo, "1.27")
    app = use(box)
    state = state_of(app)
    run_id = "20260301T120000Z-8c1f0e2a"
    state.start_run(run_id, 2, box.clock.now())
    event = _batch_for(
        [
            WorkItem(run_id=run_id, kind=WorkKind.CHECK, repository=stale, tags=("lts",)),
            WorkItem(run_id=run_id, kind=WorkKind.CHECK, repository=fresh, tags=("1.27",)),
        ],
    )
    ecr = AwsFaults(app.ecr.client)

    first = stack.checker(event, FakeContext("checker"))

    assert first == {"batchItemFailures": []}
    assert box.tag_digest(stale, "lts") == new.digest
    writes = sum(ecr.count(op) for op in WRITES)
    assert writes > 0, "the stale tag was refreshed"
    (report,) = reports(box)
    assert run_id_of(report) == run_id

    # SQS delivers at least once: the same records again (same message ids and bodies), and the
    # same body under a new message id (a duplicate send)
    ecr.calls.clear()
    assert stack.checker(event, FakeContext("checker")) == {"batchItemFailures": []}
    duplicate = json.loads(json.dumps(event))
    duplicate["Records"][0]["messageId"] = "6f0c3a8e-1d2b-4c5a-9e7f-0a1b2c3d4e5f"
    assert stack.checker(duplicate, FakeContext("checker")) == {"batchItemFailures": []}
    assert ecr.calls == [], "idempotency: nothing is read or written again"

    # the idempotency records gone (expired, or deleted when a later step failed): the items run
    # again, and the batch markers keep the run's counters and its summary from counting twice
    ddb = box.client("dynamodb")
    keys = ddb.query(
        TableName=box.table_name,
        KeyConditionExpression="#pk = :pk",
        ExpressionAttributeNames={"#pk": PK},
        ExpressionAttributeValues={":pk": {"S": IDEMPOTENCY_PK}},
    )["Items"]
    assert len(keys) == 2
    for key in keys:
        ddb.delete_item(TableName=box.table_name, Key={PK: key[PK], SK: key[SK]})
    assert stack.checker(event, FakeContext("checker")) == {"batchItemFailures": []}
    assert ecr.count("DescribeImages") == 2, "processed again"
    assert sum(ecr.count(op) for op in WRITES) == 0, "the refreshed tag is fresh now: nothing written"
    progress = state.run_progress(run_id)
    assert progress is not None
    assert (progress.done, progress.expected) == (2, 2), "counted once"
    assert progress.count(Outcome.REFRESHED) == 1
    assert progress.count(Outcome.FRESH) == 1
    assert reports(box) == [], "summarised once"


def test_a_record_failing_every_time_is_dead_lettered_and_its_run_never_summarised(
    box: Sandbox, stack: Stack, unique_repo: str, one_repository_per_item: None
) -> None:
    """Known limit, asserted so it stays visible: a dead-lettered item never records its results, so
    its run never reaches ``expected`` and is never summarised. The DeadLetterAlarm is what tells."""
    good, poison = f"{unique_repo}-good", f"{unique_repo}-poison"
    for repo in (good, poison):
        box.pusher.push_image(repo, "1.0", layers=1)
        cache(box, repo, "1.0")
    app = use(box)
    planned = stack.schedule(load_event("scheduled.json"))
    ecr = AwsFaults(app.ecr.client)
    ecr.fail(
        "DescribeImages",
        "ThrottlingException",
        "Rate exceeded",
        when=lambda p: p["repositoryName"] == f"ecr-public/{poison}",
        times=None,
    )

    delivery = stack.drain()

    assert described(ecr)[f"ecr-public/{poison}"] == MAX_RECEIVES, "tried maxReceiveCount times"
    assert described(ecr)[f"ecr-public/{good}"] == 1
    assert delivery.failures == MAX_RECEIVES
    sqs = box.client("sqs")
    (dead,) = sqs.receive_message(QueueUrl=box.dlq_url, MaxNumberOfMessages=10)["Messages"]
    item = WorkItem.model_validate_json(dead["Body"])
    assert (item.run_id, item.kind) == (planned["run_id"], WorkKind.SCAN)
    assert item.repositories == (f"ecr-public/{poison}",)
    assert queued(box, box.work_queue_url) == 0
    progress = state_of(app).run_progress(planned["run_id"])
    assert progress is not None
    assert (progress.done, progress.expected, progress.summarised) == (1, 2, False)
    assert reports(box) == [], "the run is never summarised"


def test_malformed_work_items_are_dropped_with_the_reason_not_retried(
    box: Sandbox, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    app = use(box)
    ecr = AwsFaults(app.ecr.client)
    ddb = AwsFaults(app.state.client)  # type: ignore[union-attr]
    event = load_event("sqs-work-malformed.json")
    truncated, hostile = (r["messageId"] for r in event["Records"])

    answer = stack.checker(event, FakeContext("checker"))

    assert answer == {"batchItemFailures": []}, "retrying cannot fix a body: none is retried"
    reasons = {
        r.__dict__["message_id"]: r.__dict__["reason"]
        for r in caplog.records
        if r.getMessage() == "work item rejected"
    }
    assert set(reasons) == {truncated, hostile}
    assert reasons[truncated].startswith("event: Invalid JSON")
    for part in (
        "repository: String should match pattern",
        "tags.0: String should match pattern",
        "upstream: Extra inputs are not permitted",
    ):
        assert part in reasons[hostile]
    assert "evil.example.com" not in reasons[hostile]
    assert ecr.calls == [], "nothing read in ECR"
    assert ddb.calls == [], "nothing written to the state table"
    assert app.registry.counts().get("requests", 0) == 0
