"""The bad-input corpus (``corpus/*.json``) through every handler: functions/sync, checker, requests and
notifier, loaded as Lambda loads them, on the sandbox.

An entry names its handler, the shape of its payload (a whole ``event``, an SQS ``sqs-body`` for the
checker, an SQS ``sqs-records`` list for the checker, an SNS ``sns-message`` for the notifier, or a
``bus`` PutEvents entry put on the default bus or the stack's request bus, which reaches the request
function only through the rules read from template.yaml), what must happen (``rejected``: the handler
answers ``status: rejected``; ``dropped``: the checker reports no batch item failure, so SQS does not
retry it; ``skipped``: the notifier skips the message; ``error-reported``: the request is refused with
the reason in its answer and nothing is queued; ``unmatched``: no rule delivers the event), the text the
log must carry, and text that must appear nowhere (the hostile value itself). ``grow`` builds the
oversized, huge and deeply nested ones at load time (300 KB strings, thousands of items, 100,000 levels)
so the files stay small.

In ``sqs-records``, an element ``{"@record": {...}}`` is a well-formed SQS record (a message id of its
own) with those fields replaced, and ``"@drop"`` names fields to remove; any other element is sent as
it is. In ``bus``, ``"@request"`` names the stack's request bus and ``"@source"`` its request source.

For every entry: no exception escapes the handler (else it *crashed*), a WARNING or ERROR log line says
what was wrong, the answer does not retry, nothing is written or asked of upstream, the hostile value is
not echoed (answers and logs stay small), and no connection is attempted to any address but loopback (a
socket-level guard records every connect and every name resolution); an entry failing any of these was
*accepted wrongly*. The reliability summary prints ``N events, C crashed, A accepted wrongly``.
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

from ptc_sync import wiring
from ptc_sync.chat import wiring as chat_wiring
from ptc_sync.chat.settings import ChatSettings
from testbed.registry import RegistryServer
from testbed.runtime import FakeContext
from tests.chat.sample import TOPIC_ARN, sns_event
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
        place(entry, grow, grown(grow))
    return entry


def grown(grow: dict[str, Any]) -> Any:
    """The oversized, huge or deeply nested value ``grow`` describes."""
    if "nest" in grow:  # "[[[...]]]" as text: no JSON file (nor json.loads) holds 100,000 levels
        value: Any = grow["open"] * grow["nest"] + grow.get("inner", "") + grow["close"] * grow["nest"]
        if "wrap" in grow:
            value = grow["wrap"].replace("@@", value)
        # shallow enough for Python: the event as Lambda's runtime parsed it
        return json.loads(value) if grow.get("decode") else value
    if "text" in grow:
        value = grow["text"] * grow["times"]
        return grow["wrap"].replace("@@", value) if "wrap" in grow else value
    item = grow["item"]
    return [item.format(i=i) if isinstance(item, str) else copy.deepcopy(item) for i in range(grow["times"])]


def place(entry: dict[str, Any], grow: dict[str, Any], value: Any) -> None:
    """Put ``value`` at the entry's ``path`` (as a key of the object there with ``as_key``)."""
    path = grow["path"]
    if not path and not grow.get("as_key"):
        entry["payload"] = value
        return
    encoded = isinstance(entry["payload"], str)  # an SQS body: JSON text
    root = json.loads(entry["payload"]) if encoded else entry["payload"]
    target = root
    if grow.get("as_key"):
        for key in path:
            target = target[key]
        target[value] = True
    else:
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    entry["payload"] = json.dumps(root) if encoded else root


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
        # the notifier: a webhook secret with no channel (no message here is a report to post), and
        # the report topic of tests.chat.sample (the one sns_event publishes to)
        secrets = world.client("secretsmanager")
        arn = secrets.create_secret(Name="ptc-sync/chat-webhooks", SecretString="{}")["ARN"]
        chat_wiring.set_notifier(
            chat_wiring.build_notifier(
                ChatSettings(chat_secret_arn=arn, chat_secret_max_age=0, topic_arn=TOPIC_ARN),
                session=harness.new_session(),
            )
        )
        try:
            yield world
        finally:
            chat_wiring.set_notifier(None)


def sqs_record(body: Any, index: int = 0) -> dict[str, Any]:
    """A well-formed SQS → Lambda record carrying ``body``."""
    return {
        "messageId": f"5e1f0c2a-0000-4000-8000-{index:012x}",
        "receiptHandle": f"AQEB-corpus-{index}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
        "awsRegion": "us-east-1",
    }


def sqs_records(payload: list[Any]) -> list[Any]:
    out = []
    for index, element in enumerate(payload):
        if isinstance(element, dict) and "@record" in element:
            record = {**sqs_record("", index), **element["@record"]}
            for key in element.get("@drop", ()):
                del record[key]
            out.append(record)
        else:
            out.append(element)
    return out


def put_on_bus(world: World, payload: dict[str, Any]) -> dict[str, Any]:
    """PutEvents with the entry, then every rule of the stack delivers what it matched."""
    stack = world.stack
    entry = {k: v for k, v in payload.items()}
    if entry.get("EventBusName") == "@request":
        entry["EventBusName"] = stack.request_bus_name
    if entry.get("Source") == "@source":
        entry["Source"] = stack.request_source
    if not isinstance(entry.get("Detail"), str):
        entry["Detail"] = json.dumps(entry.get("Detail", {}))
    response = world.client("events").put_events(Entries=[entry])
    return {"failed": response["FailedEntryCount"], "delivered": stack.deliver_events()}


def invoke(world: World, entry: dict[str, Any]) -> Any:
    handler, kind, payload = entry["handler"], entry["kind"], entry["payload"]
    stack = world.stack
    if kind == "bus":
        return put_on_bus(world, payload)
    if kind == "sqs-body":
        event: Any = {"Records": [sqs_record(payload, 0xC0DE)]}
    elif kind == "sqs-records":
        event = {"Records": sqs_records(payload)}
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
    wiring.set_app(app.app)
    caplog.set_level(logging.INFO)
    guard.install(monkeypatch)
    try:
        answer = invoke(world, entry)
    except Exception:
        MATRIX.corpus_crashed.append(name)
        raise
    finally:
        monkeypatch.undo()
    try:
        judge(
            world, name, entry, answer=answer, sent=app.faults.calls, log_records=caplog.records, guard=guard
        )
    except AssertionError:
        MATRIX.corpus_accepted.append(name)
        raise


def judge(
    world: World,
    name: str,
    entry: dict[str, Any],
    *,
    answer: Any,
    sent: list[Any],
    log_records: list[logging.LogRecord],
    guard: NetworkGuard,
) -> None:
    """Whether the handler refused the entry cleanly (AssertionError with what it did instead)."""
    answer_text = json.dumps(answer, default=str)
    records = [r for r in log_records if r.levelno >= logging.WARNING]
    logs = "\n".join(harness.log_texts(log_records))
    expect = entry["expect"]
    if expect == "rejected":
        assert answer.get("status") == "rejected", answer_text[:500]
    elif expect == "dropped":
        assert answer == {"batchItemFailures": []}, "a bad work item is dropped, never retried"
    elif expect == "skipped":
        assert [m["status"] for m in answer["messages"]] == ["skipped"]
    elif expect == "unmatched":
        assert answer["delivered"] == [], f"a rule delivered it: {answer_text[:500]}"
    else:  # error-reported: nothing queued, the reason in the answer
        assert answer.get("messages", 0) == 0, answer_text[:500]
        assert answer.get("tags", 0) == 0, answer_text[:500]
        assert answer.get("errors"), answer_text[:500]
    for text in entry["names"]:
        assert text in logs or text in answer_text, f"{text!r} not in the logs:\n{logs[:2000]}"
    assert records or entry["kind"] in {"sqs-body", "bus"}, "a WARNING or ERROR line says what was wrong"
    for text in entry["forbidden"]:
        assert text not in answer_text, "the hostile value is echoed in the answer"
        assert text not in logs, "the hostile value is echoed in the logs"
    assert len(answer_text) < MAX_ANSWER_CHARS
    assert all(len(line) < MAX_LOG_CHARS for line in harness.log_texts(log_records))
    assert guard.refused == [], f"reached for a host that is not loopback: {guard.refused}"
    writes = [op for service, op, _ in sent if op in {"PutImage", "BatchDeleteImage", "SendMessageBatch"}]
    assert writes == [], f"bad input caused writes: {writes}"
    if entry["handler"] != "notifier":
        assert world.upstream.count(name) == 0
    for marker in entry.get("untouched", ()):  # a tag or repository the entry must not reach upstream for
        assert world.upstream.count(marker) == 0, f"upstream was asked for {marker!r}"


def test_corpus_covers_every_handler_and_kind_of_trouble() -> None:
    entries = [load(name) for name in ENTRIES]
    assert len(entries) >= 100
    assert {e["handler"] for e in entries} == set(HANDLERS)
    for handler in HANDLERS:
        assert sum(1 for e in entries if e["handler"] == handler) >= 10
    assert sum(1 for e in entries if e["kind"] == "bus") >= 5, "the request bus and the default bus"
    assert sum(1 for e in entries if e["kind"] == "sqs-records") >= 5, "malformed SQS records"
    sizes = [len(json.dumps(e["payload"])) for e in entries]
    assert max(sizes) >= 300_000, "oversized entries exist"


def test_the_request_rule_delivers_a_request_of_this_stack(world: World) -> None:
    """The control of the ``bus`` entries: the same put, with the stack's source on its request bus,
    reaches the request function (so an ``unmatched`` entry was refused by the rule, not lost)."""
    app = harness.build(world)
    wiring.set_app(app.app)
    world.stack.deliver_events()  # anything an earlier test left on a rule's queue
    answer = put_on_bus(
        world,
        {
            "EventBusName": "@request",
            "Source": "@source",
            "DetailType": "Sync Request",
            "Detail": {"repositories": ["ecr-public/no/such/repository"], "dry_run": True},
        },
    )
    assert answer["failed"] == 0
    [delivered] = answer["delivered"]
    assert delivered["messages"] == 0, delivered
    assert any("not a cached repository" in e for e in delivered["errors"]), delivered
