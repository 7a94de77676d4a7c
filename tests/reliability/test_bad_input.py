"""The bad-input corpus (``corpus/*.json``) through every handler: functions/sync, checker, requests and
notifier, loaded as Lambda loads them, on the sandbox.

An entry names its handler, the shape of its payload (a whole ``event``, an SQS ``sqs-body`` for the
checker, an SNS ``sns-message`` for the notifier), what must happen (``rejected``: the handler answers
``status: rejected``; ``dropped``: the checker reports no batch item failure, so SQS does not retry it;
``skipped``: the notifier skips the message; ``error-reported``: the request is refused with the reason
in its answer and nothing is queued), the text the log must carry, and text that must appear nowhere
(the hostile value itself). ``grow`` builds the oversized and huge ones at load time (300 KB strings,
thousands of items) so the files stay small.

For every entry: no exception escapes the handler, a WARNING or ERROR log line says what was wrong, the
answer does not retry, the hostile value is not echoed (answers and logs stay small), and no connection
is attempted to any address but loopback (a socket-level guard records every connect and every name
resolution).
"""

from __future__ import annotations

import copy
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptc_sync.chat import wiring as chat_wiring
from ptc_sync.chat.settings import ChatSettings
from testbed.registry import RegistryServer
from testbed.runtime import FakeContext
from tests.chat.sample import sns_event
from tests.reliability import harness
from tests.reliability.conftest import MATRIX
from tests.reliability.harness import World

CORPUS = Path(__file__).resolve().parent / "corpus"
ENTRIES = sorted(p.stem for p in CORPUS.glob("*.json"))
HANDLERS = ("sync", "checker", "requests", "notifier")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_ANSWER_CHARS = 4_000
MAX_LOG_CHARS = 8_000


def load(name: str) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text())
    grow = entry.get("grow")
    if grow:
        if "text" in grow:
            value: Any = grow["text"] * grow["times"]
            if "wrap" in grow:
                value = grow["wrap"].replace("@@", value)
        else:
            item = grow["item"]
            value = [
                item.format(i=i) if isinstance(item, str) else copy.deepcopy(item)
                for i in range(grow["times"])
            ]
        path = grow["path"]
        if not path:
            entry["payload"] = value
        else:
            encoded = isinstance(entry["payload"], str)  # an SQS body: JSON text
            root = json.loads(entry["payload"]) if encoded else entry["payload"]
            target = root
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            entry["payload"] = json.dumps(root) if encoded else root
    return entry


class NetworkGuard:
    """Records every outbound connect and name lookup; refuses anything that is not loopback."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_connect = socket.socket.connect
        real_getaddrinfo = socket.getaddrinfo
        guard = self

        def connect(sock: socket.socket, address: Any) -> Any:
            host = address[0] if isinstance(address, tuple) else str(address)
            if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in LOOPBACK:
                guard.refused.append(f"connect {host}")
                raise ConnectionRefusedError(f"network guard: {host} is not loopback")
            return real_connect(sock, address)

        def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
            if host is not None and str(host) not in LOOPBACK:
                guard.refused.append(f"resolve {host}")
                raise socket.gaierror(f"network guard: {host} is not loopback")
            return real_getaddrinfo(host, *args, **kw)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="module")
def world(registry: RegistryServer) -> Iterator[World]:
    for world in harness.world_of(registry):
        box = world.box
        # the checker's corpus items belong to a run that exists (so only the input is wrong)
        app = harness.build(world)
        state, _queue = app.app.fanout()
        state.start_run("corpus-run", 10_000, box.clock.now())
        # the notifier: a webhook secret with no channel (no message here is a report to post)
        secrets = world.client("secretsmanager")
        arn = secrets.create_secret(Name="ptc-sync/chat-webhooks", SecretString="{}")["ARN"]
        chat_wiring.set_notifier(
            chat_wiring.build_notifier(
                ChatSettings(chat_secret_arn=arn, chat_secret_max_age=0), session=harness.new_session()
            )
        )
        try:
            yield world
        finally:
            chat_wiring.set_notifier(None)


def invoke(world: World, entry: dict[str, Any]) -> Any:
    handler, kind, payload = entry["handler"], entry["kind"], entry["payload"]
    stack = world.stack
    if kind == "sqs-body":
        event: Any = {
            "Records": [
                {
                    "messageId": "5e1f0c2a-0000-4000-8000-00000000c0de",
                    "receiptHandle": "AQEB-corpus",
                    "body": payload,
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "messageAttributes": {},
                    "md5OfBody": "0" * 32,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
                    "awsRegion": "us-east-1",
                }
            ]
        }
    elif kind == "sns-message":
        event = sns_event(payload)
    else:
        event = payload
    functions = {
        "sync": stack.sync,
        "checker": stack.checker,
        "requests": stack.requests,
        "notifier": harness.notifier_handler(),
    }
    return functions[handler](event, FakeContext(f"ptc-sync-{handler}"))


@pytest.mark.parametrize("name", ENTRIES)
def test_bad_input_is_refused_cleanly(
    world: World, name: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    MATRIX.corpus += 1
    entry = load(name)
    assert entry["handler"] in HANDLERS
    guard = NetworkGuard()
    app = harness.build(world)
    harness.wiring.set_app(app.app)
    caplog.set_level(logging.INFO)
    guard.install(monkeypatch)
    try:
        answer = invoke(world, entry)
    finally:
        monkeypatch.undo()
    sent = app.faults.calls

    answer_text = json.dumps(answer, default=str)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    logs = "\n".join(harness.log_texts(caplog.records))
    expect = entry["expect"]
    if expect == "rejected":
        assert answer.get("status") == "rejected", answer_text[:500]
    elif expect == "dropped":
        assert answer == {"batchItemFailures": []}, "a bad work item is dropped, never retried"
    elif expect == "skipped":
        assert [m["status"] for m in answer["messages"]] == ["skipped"]
    else:  # error-reported: nothing queued, the reason in the answer
        assert answer.get("messages", 0) == 0, answer_text[:500]
        assert answer.get("tags", 0) == 0, answer_text[:500]
        assert answer.get("errors"), answer_text[:500]
    for text in entry["names"]:
        assert text in logs or text in answer_text, f"{text!r} not in the logs:\n{logs[:2000]}"
    assert records or entry["kind"] == "sqs-body", "a WARNING or ERROR line says what was wrong"
    for text in entry["forbidden"]:
        assert text not in answer_text, "the hostile value is echoed in the answer"
        assert text not in logs, "the hostile value is echoed in the logs"
    assert len(answer_text) < MAX_ANSWER_CHARS
    assert all(len(line) < MAX_LOG_CHARS for line in harness.log_texts(caplog.records))
    assert guard.refused == [], f"reached for a host that is not loopback: {guard.refused}"
    writes = [op for service, op, _ in sent if op in {"PutImage", "BatchDeleteImage", "SendMessageBatch"}]
    assert writes == [], f"bad input caused writes: {writes}"
    if entry["handler"] != "notifier":
        assert world.upstream.count(name) == 0


def test_corpus_covers_every_handler_and_kind_of_trouble() -> None:
    entries = [load(name) for name in ENTRIES]
    assert {e["handler"] for e in entries} == set(HANDLERS)
    for handler in HANDLERS:
        assert sum(1 for e in entries if e["handler"] == handler) >= 5
    sizes = [len(json.dumps(e["payload"])) for e in entries]
    assert max(sizes) >= 300_000, "oversized entries exist"
