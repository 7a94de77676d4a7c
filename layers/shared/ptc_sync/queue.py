"""The SQS adapter the planner and the request handler use to fan work out to the checker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.work import WorkItem

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SEND_BATCH = 10  # SendMessageBatch takes at most 10 entries
SEND_ATTEMPTS = 3


class QueueError(RuntimeError):
    pass


class WorkQueue(Protocol):
    def send(self, items: Sequence[WorkItem]) -> int:
        """Enqueue every item (or raise QueueError naming how many could not be sent)."""
        ...


class SqsWorkQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url
        self.calls = 0

    def send(self, items: Sequence[WorkItem]) -> int:
        sent = 0
        for start in range(0, len(items), SEND_BATCH):
            pending: dict[str, WorkItem] = {
                str(i): item for i, item in enumerate(items[start : start + SEND_BATCH])
            }
            last_error = ""
            for _attempt in range(SEND_ATTEMPTS):
                entries: list[SendMessageBatchRequestEntryTypeDef] = [
                    {"Id": key, "MessageBody": item.model_dump_json(exclude_defaults=False)}
                    for key, item in pending.items()
                ]
                try:
                    self.calls += 1
                    resp = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
                except (ClientError, BotoCoreError) as exc:
                    code = (
                        exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
                    )
                    last_error = f"SendMessageBatch: {code or type(exc).__name__}: {exc}"
                    continue
                for ok in resp.get("Successful", []):
                    pending.pop(ok["Id"], None)
                    sent += 1
                failed = resp.get("Failed", [])
                if failed:
                    first = failed[0]
                    last_error = f"SendMessageBatch: {first.get('Code')}: {first.get('Message', '')}"
                    if any(f.get("SenderFault") for f in failed):
                        break  # the request itself is wrong: retrying cannot help
                if not pending:
                    break
            if pending:
                raise QueueError(
                    f"{len(pending)} work item(s) not queued to {self.queue_url} after "
                    f"{SEND_ATTEMPTS} attempts ({last_error}); {sent} queued"
                )
        return sent
