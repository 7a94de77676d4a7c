"""The run id on the checker's log lines (issue 13): each work item's lines name its own run, and no
line outside an item (the batch's own, a rejected record's, the next invocation's) carries a run id
left over from an item before it, though a warm container's Logger outlives every invocation."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ptc_sync.work import WorkItem, WorkKind
from testbed.lambdas import Stack
from testbed.runtime import FakeContext
from testbed.sandbox import Sandbox

from .conftest import cache, state_of, use


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every JSON line the checker's Logger writes, formatted as Lambda's stdout would get it: the
    service Logger's own formatter (which holds the appended keys), written to a buffer."""
    service = logging.getLogger("ptc-sync")
    (formatter,) = {handler.formatter for handler in service.handlers}
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    service.addHandler(handler)
    try:
        yield buffer
    finally:
        service.removeHandler(handler)


def record(item: WorkItem) -> dict[str, Any]:
    """An SQS record carrying ``item`` as the work queue delivers it."""
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": item.model_dump_json(),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1767225600000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1767225600000",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ptc-sync-work",
        "awsRegion": "us-east-1",
    }


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The JSON lines written since the last call."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_each_item_logs_its_own_run_id_and_none_leaks_past_it(
    box: Sandbox, stack: Stack, unique_repo: str, log_lines: io.StringIO
) -> None:
    box.pusher.push_image(unique_repo, "1.0", layers=1)
    name = cache(box, unique_repo, "1.0")
    state = state_of(use(box))
    first, second, third = (f"run-{n}-{uuid.uuid4().hex[:8]}" for n in range(3))
    for run_id in (first, second, third):
        state.start_run(run_id, 1, box.clock.now())
    item = WorkItem(run_id=first, kind=WorkKind.CHECK, repository=name, tags=("1.0",), refresh=False)
    records = [record(item), record(item.model_copy(update={"run_id": second}))]
    malformed = {**record(item), "body": '{"v": 1, "run_id": "forged"}'}

    answer = stack.checker({"Records": [*records, malformed]}, FakeContext("ptc-sync-checker"))

    assert answer == {"batchItemFailures": []}
    batch = lines(log_lines)
    runs = [line.get("run_id") for line in batch]
    assert first in runs, "each item's work is logged with its run id"
    assert second in runs
    # the batch processor runs the records in order: the first item's lines, then the second's
    assert runs.index(second) > max(i for i, run in enumerate(runs) if run == first)
    for line in batch:
        if line["message"] == "work item rejected":  # the malformed record, after both items
            assert "run_id" not in line, f"a rejected record carries a leftover run id: {line}"
    assert any(line["message"] == "work item rejected" for line in batch)
    assert all(line.get("run_id") in {first, second, None} for line in batch)

    item_of_third = item.model_copy(update={"run_id": third})
    again = stack.checker({"Records": [record(item_of_third)]}, FakeContext("ptc-sync-checker"))
    after = stack.checker({"Records": [malformed]}, FakeContext("ptc-sync-checker"))

    assert again == after == {"batchItemFailures": []}
    logged = lines(log_lines)
    assert {line.get("run_id") for line in logged} == {third, None}
    rejected = [line for line in logged if line["message"] == "work item rejected"]
    assert rejected, "the next invocation's malformed record is logged"
    assert all("run_id" not in line for line in rejected), "the next invocation carries no run id"
