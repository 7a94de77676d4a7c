"""The reliability harness: one sandbox per test module, an upstream that fails on cue, AWS faults on
every client a run creates, and a fan-out run whose outcome is collected in one place.

- ``FaultyUpstream`` sits between everything and the loopback registry: the sync's registry client
  and the emulated ECR both reach "upstream" through it (the sandbox's upstream override points the
  rule hosts at it). It proxies every request unless an injected fault matches it.
- ``SessionFaults`` registers on a boto3 session's event system before ``build_app`` creates its
  clients, so it sees (and can fail) every AWS call of that run: ECR, DynamoDB (the state store and
  the idempotency layer), SQS, SNS, Secrets Manager.
- ``run_fanout`` is one scheduled run through the real handlers (planner → SQS → checker), with
  Lambda's retry of a failed batch, a bounded drain and the dead-letter queue.
- ``check_invariant`` is the property every cell and example must hold: every tag present before the
  run is present after it, with its old digest or the new one the refresh verified.

Time is virtual: the sandbox's clock moves only when the code sleeps (verify polling, upstream backoff,
Retry-After), so waiting costs nothing real; only socket timeouts are real (and short).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
import urllib3
from botocore.exceptions import ClientError
from botocore.loaders import create_loader

from ptc_sync import mediatypes as mt
from ptc_sync import wiring
from ptc_sync.credentials import (
    EcrAuthorizationCredentials,
    RuleCredentialProvider,
    SecretsManagerCredentials,
    registry_credentials,
)
from ptc_sync.models import TagResult
from ptc_sync.refresh import is_backup_tag
from ptc_sync.registry import RegistryClient, RetryPolicy
from ptc_sync.state import DynamoStateStore
from testbed.fault_server import FaultServer, Recorded, Reply, forward
from testbed.images import PushedImage
from testbed.lambdas import Stack
from testbed.registry import RegistryServer
from testbed.runtime import Delivery, FakeClock, FakeContext
from testbed.sandbox import HUB_HOST, PUBLIC_HOST, REGION, Sandbox

# A short-fused registry client: timeouts are real seconds, backoff and Retry-After are virtual.
FAST_RETRY = RetryPolicy(
    max_attempts=3, base_delay=0.5, max_delay=4.0, max_retry_after=30.0, total_budget=60.0
)
READ_TIMEOUT = 0.4
PLATFORMS = ("linux/amd64", "linux/arm64")


# -- upstream ------------------------------------------------------------------------------------------


@dataclass
class UpstreamFault:
    method: str | None  # None: any
    match: Callable[[str], bool]  # on the request path (query included)
    reply: Reply | Callable[[Recorded], Reply]  # a callable answers from the request (an echo)
    times: int | None  # None: every matching request
    hits: int = 0


class FaultyUpstream(FaultServer):
    """Proxies to the real registry; injected faults answer matching requests instead."""

    def __init__(self, registry_url: str) -> None:
        super().__init__()
        self.registry_url = registry_url.rstrip("/")
        self.faults: list[UpstreamFault] = []
        self._http = urllib3.PoolManager(
            maxsize=8, retries=False, timeout=urllib3.Timeout(connect=2.0, read=10.0)
        )

    def __enter__(self) -> FaultyUpstream:
        self.start()
        return self

    def inject(
        self,
        match: Callable[[str], bool],
        reply: Reply | Callable[[Recorded], Reply],
        *,
        method: str | None = None,
        times: int | None = None,
    ) -> UpstreamFault:
        fault = UpstreamFault(method, match, reply, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, fragment: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if fragment in r.path)

    def count_where(self, method: str, match: Callable[[str], bool]) -> int:
        """Requests of ``method`` whose path ``match`` accepts (e.g. ECR's import GETs of one tag)."""
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and match(r.path))

    def reply_for(self, rec: Recorded) -> Reply:
        with self._lock:
            for fault in self.faults:
                if fault.method not in (None, rec.method) or not fault.match(rec.path):
                    continue
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                fault.hits += 1
                return fault.reply(rec) if callable(fault.reply) else fault.reply
        return self._proxy(rec)

    def _proxy(self, rec: Recorded) -> Reply:
        forwarded = frozenset({"accept", "authorization", "content-type"})
        return forward(self._http, self.registry_url, rec, headers=forwarded)


def manifest_path(upstream_repo: str, tag: str) -> Callable[[str], bool]:
    suffix = f"/v2/{upstream_repo}/manifests/{tag}"
    return lambda path: path.split("?", 1)[0] == suffix


def repo_path(upstream_repo: str) -> Callable[[str], bool]:
    prefix = f"/v2/{upstream_repo}/"
    return lambda path: path.startswith(prefix)


# -- AWS -----------------------------------------------------------------------------------------------


@dataclass
class AwsFault:
    service: str
    operation: str
    code: str
    when: Callable[[Mapping[str, Any]], bool]
    times: int | None
    hits: int = 0


@dataclass
class SessionFaults:
    """Faults and a call log for every client ``session`` creates from now on."""

    session: boto3.Session
    faults: list[AwsFault] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # called first on every call (a kill switch may raise from here: tests/reliability/test_kill_matrix)
    observers: list[Callable[..., None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.session.events.register("before-parameter-build", self._hook)

    def fail(
        self,
        service: str,
        operation: str,
        code: str,
        *,
        when: Callable[[Mapping[str, Any]], bool] = lambda _p: True,
        times: int | None = None,
    ) -> AwsFault:
        fault = AwsFault(service, operation, code, when, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        with self._lock:
            return sum(1 for s, op, _ in self.calls if service in (None, s) and operation in (None, op))

    def per_operation(self) -> Counter[str]:
        with self._lock:
            return Counter(f"{s}:{op}" for s, op, _ in self.calls)

    def _hook(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        for observer in list(self.observers):
            observer(params=params, model=model)
        service = model.service_model.service_name
        body = dict(params)
        with self._lock:
            self.calls.append((service, model.name, body))
            for fault in self.faults:
                if fault.service != service or fault.operation != model.name:
                    continue
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if not fault.when(body):
                    continue
                fault.hits += 1
                raise ClientError({"Error": {"Code": fault.code, "Message": "injected fault"}}, model.name)


# -- the world -----------------------------------------------------------------------------------------


@dataclass
class World:
    box: Sandbox
    upstream: FaultyUpstream
    stack: Stack
    serial: int = 0
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """One boto3 client per service for the suite's own reads and writes (creating one per call,
        as the sandbox does, costs more than the call)."""
        if service not in self._clients:
            self._clients[service] = new_session().client(service)  # type: ignore[call-overload]
        return self._clients[service]

    def cache(self, repository: str, tag: str) -> str:
        """A pull through ECR (as ``docker pull`` does): the cached digest."""
        resp = self.client("ecr").batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=sorted(mt.MANIFEST_TYPES),
        )
        if not resp["images"]:
            raise RuntimeError(f"caching {repository}:{tag} failed: {resp['failures']}")
        return str(resp["images"][0]["imageId"]["imageDigest"])

    def tags(self, repository: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for page in self.client("ecr").get_paginator("describe_images").paginate(repositoryName=repository):
            for image in page["imageDetails"]:
                for tag in image.get("imageTags", []):
                    out[tag] = image["imageDigest"]
        return out

    def name(self, label: str) -> str:
        self.serial += 1
        clean = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")
        while "--" in clean:
            clean = clean.replace("--", "-")
        return f"r/{clean[:40].strip('-')}-{self.serial}-{os.urandom(2).hex()}"


@dataclass
class App:
    """One run's wiring: the app the handlers use, its session's faults and its registry clock."""

    app: wiring.App
    faults: SessionFaults
    clock: FakeClock


def world_of(registry: RegistryServer) -> Iterator[World]:
    """Body of a module-scoped fixture: a sandbox whose upstream hosts go through a FaultyUpstream."""
    with FaultyUpstream(registry.url) as upstream, Sandbox(registry) as box:
        for host in (PUBLIC_HOST, HUB_HOST):
            box.upstreams[host] = upstream.url
            box.emulator.add_upstream(host, upstream.url)
        # ECR's own upstream timeout, shortened so a hanging upstream costs half a second, not five
        box.emulator._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=1.0, read=READ_TIMEOUT)
        )
        try:
            yield World(box, upstream, Stack(box))
        finally:
            wiring.set_app(None)


LOADER = create_loader()  # service models parsed once for every session the suite creates


def new_session() -> boto3.Session:
    """A boto3 session of its own (own event system, so its own faults) sharing the parsed models."""
    core = botocore.session.Session()
    core.register_component("data_loader", LOADER)
    return boto3.Session(botocore_session=core, region_name=REGION)


def build(world: World, **settings: Any) -> App:
    """ptc_sync wired to the sandbox through a fresh session (faults registered first) and a registry
    client with short timeouts and the virtual clock."""
    box = world.box
    session = new_session()
    faults = SessionFaults(session)
    clock = box.clock  # the registry client sleeps on it too: backoff and Retry-After cost nothing
    settings.setdefault("verify_timeout_seconds", 30)
    built = box.settings(**settings)
    ecr_reader = EcrAuthorizationCredentials(
        sts_client=session.client("sts"), read_roles=built.upstream_role_arns
    )
    credentials = RuleCredentialProvider(
        secrets=SecretsManagerCredentials(session.client("secretsmanager"), max_age=0),
        ecr=ecr_reader,
    )
    registry = RegistryClient(
        registry_credentials(credentials),
        host_override=box.upstreams,
        connect_timeout=1.0,
        read_timeout=READ_TIMEOUT,
        retry=FAST_RETRY,
        clock=clock,
    )
    app = wiring.build_app(
        built,
        session=session,
        upstream_override=box.upstreams,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        now=box.clock.now,
        registry=registry,
    )
    return App(app, faults, clock)


# -- cached images -------------------------------------------------------------------------------------


@dataclass
class Cached:
    """A cached repository whose tags are known before a run."""

    name: str  # ECR repository
    upstream_repo: str
    prefix: str
    before: dict[str, str]  # every tag (backups included) → digest, before the run
    new: dict[str, str] = field(default_factory=dict)  # tags upstream moved → upstream's new digest
    gone: set[str] = field(default_factory=set)  # tags deleted upstream

    def tag_of(self, kind: str) -> str:
        return next(t for t in self.before if t.startswith(kind))


def cache_repo(
    world: World,
    label: str,
    *,
    stale: tuple[str, ...] = ("stable",),
    fresh: tuple[str, ...] = ("pinned",),
    gone: tuple[str, ...] = (),
    multi: bool = False,
    prefix: str = "ecr-public",
) -> Cached:
    """Push and cache tags, then move ``stale`` upstream and delete ``gone``: the state before a run."""
    box = world.box
    upstream_repo = world.name(label)
    name = (
        f"{prefix}/{'library/' if prefix == 'docker-hub' and '/' not in upstream_repo else ''}{upstream_repo}"
    )

    def push(tag: str) -> PushedImage:
        if multi and tag in stale:
            return box.pusher.push_index(upstream_repo, tag, platforms=PLATFORMS)
        return box.pusher.push_image(upstream_repo, tag, layers=1)

    for tag in (*stale, *fresh, *gone):
        push(tag)
        world.cache(name, tag)
    cached = Cached(name, upstream_repo, prefix, world.tags(name))
    for tag in stale:
        cached.new[tag] = push(tag).digest
    for tag in gone:
        box.pusher.delete_tag(upstream_repo, tag)
        cached.gone.add(tag)
    return cached


def check_invariant(
    world: World,
    cached: Cached,
    results: list[TagResult],
    records: list[logging.LogRecord] = (),  # type: ignore[assignment]
) -> list[str]:
    """Problems with the one property that matters: each tag present before is present after with its
    old digest or the new one the refresh verified (a REFRESHED result naming that digest, in the run's
    state or, when the state table refused it, in the checker's per-tag log line)."""
    after = world.tags(cached.name)
    verified = {
        r.tag: r.upstream_digest
        for r in results
        if r.repository == cached.name and r.outcome.value == "refreshed"
    }
    for record in records:
        fields = record.__dict__
        if fields.get("outcome") == "refreshed" and fields.get("repository") == cached.name:
            verified.setdefault(str(fields.get("tag")), fields.get("upstream_digest"))
    return tag_problems(cached, after, verified)


def tag_problems(cached: Cached, after: Mapping[str, str], verified: Mapping[str, str | None]) -> list[str]:
    """Each tag present before is present after, on its old digest or on upstream's new one where
    ``verified`` (tag → digest a result verified) names it."""
    problems = []
    for tag, old in cached.before.items():
        now = after.get(tag)
        if now is None:
            problems.append(f"{cached.name}:{tag} is gone (was {old})")
        elif now != old and not (now == verified.get(tag) == cached.new.get(tag)):
            problems.append(f"{cached.name}:{tag} shows {now}: neither the old {old} nor a verified new one")
    return problems


# -- a run through the fan-out -------------------------------------------------------------------------


@dataclass
class Outcome:
    planned: dict[str, Any] | None
    results: list[TagResult]
    texts: list[str]  # what names the fault: reasons, run errors, log lines, exception messages
    delivery: Delivery
    exceptions: list[str]
    dead_letters: list[dict[str, Any]]

    def text(self) -> str:
        return "\n".join(self.texts)


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    out = []
    for record in records:
        extra = {k: v for k, v in record.__dict__.items() if k in {"reason", "errors", "error", "exception"}}
        out.append(f"{record.getMessage()} {extra}" if extra else record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            out.append(str(record.exc_info[1]))
    return out


def drain(
    world: World, handler: Callable[[dict[str, Any], Any], Any], *, limit: int = 40
) -> tuple[Delivery, list[str]]:
    """The checker's SQS event source, as Lambda runs it: a batch whose invocation raised is retried
    whole (its messages become visible again); bounded by ``limit`` invocations."""
    errors: list[str] = []

    def lambda_like(event: dict[str, Any], context: Any) -> Any:
        try:
            return handler(event, context)
        except Exception as exc:  # noqa: BLE001 - Lambda's view: the invocation failed, retry the batch
            errors.append(f"{type(exc).__name__}: {exc}")
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"]]}

    source = world.stack.work
    saved = source.handler
    source.handler = lambda_like
    try:
        delivery = source.drain(max_invocations=limit)
    finally:
        source.handler = saved
    return delivery, errors


def dead_letters(world: World) -> list[dict[str, Any]]:
    box, sqs = world.box, world.client("sqs")
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=box.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=box.dlq_url, ReceiptHandle=message["ReceiptHandle"])


def run_fanout(
    world: World,
    planner: App,
    checker_app: App,
    records: Callable[[], list[logging.LogRecord]],
    *,
    event: Mapping[str, Any] | None = None,
    checker_context: Callable[[], Any] | None = None,
) -> Outcome:
    """The schedule → planner → queue → checker, as deployed: the planner and the checker are separate
    containers (apps). Nothing raised escapes: an exception is what Lambda would record, and goes into
    the outcome."""
    wiring.set_app(planner.app)
    exceptions: list[str] = []
    planned: dict[str, Any] | None = None
    try:
        planned = dict(
            world.stack.schedule(dict(event or {"source": "ptc-sync.schedule", "mode": "scheduled"}))
        )
    except Exception as exc:  # noqa: BLE001 - the planner's invocation failed: Lambda records it
        exceptions.append(f"{type(exc).__name__}: {exc}")
    wiring.set_app(checker_app.app)
    checker = world.stack.checker
    handler = checker if checker_context is None else (lambda e, _c: checker(e, checker_context()))
    delivery, errors = drain(world, handler)
    exceptions += errors
    planner.faults.heal()
    checker_app.faults.heal()
    world.upstream.heal()
    results: list[TagResult] = []
    texts: list[str] = []
    if planned is not None:
        texts += [str(e) for e in planned.get("errors", [])] + [str(planned.get("reason", ""))]
        if planned.get("run_id") and planned.get("messages"):
            store = DynamoStateStore(world.client("dynamodb"), world.box.table_name)
            results = [r for r in store.run_results(planned["run_id"]) if r.repository]
    texts += [f"{r.image} {r.outcome.value}: {r.reason}" for r in results]
    texts += exceptions + log_texts(records())
    letters = dead_letters(world)
    return Outcome(planned, results, texts, delivery, exceptions, letters)


def lambda_context(function: str, remaining: Callable[[], int]) -> Callable[[], Any]:
    """A context factory whose remaining time comes from ``remaining`` (milliseconds) at each call."""

    return lambda: FakeContext(function, remaining=remaining)


def backups(tags: Mapping[str, str]) -> dict[str, str]:
    return {t: d for t, d in tags.items() if is_backup_tag(t)}


def notifier_handler() -> Callable[[Any, Any], Any]:
    """functions/notifier's handler, loaded as Lambda loads it."""
    from testbed.lambdas import load_handler

    handler: Callable[[Any, Any], Any] = load_handler("notifier").lambda_handler
    return handler
