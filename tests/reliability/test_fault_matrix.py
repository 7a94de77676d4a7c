"""The fault matrix: every step of discovery, comparison and the refresh protocol x every fault that can
happen there, each run through the deployed fan-out (planner → SQS → checker, separate containers).

Each cell holds three things: every tag present before the run is present after it with its old
digest or the verified new one; the outcome (a tag's reason, a run error, a log line, a recorded
invocation error) names the fault; nothing is retried forever (AWS calls per operation, upstream
requests and checker invocations are counted and bounded, and the work queue ends empty).

Cells that cannot happen are not listed: a step only gets the faults its calls can meet (no PutImage
fault during discovery, no digest fault on a tag list). ``CELLS`` is built from ``STEPS`` below.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync.refresh import is_backup_tag
from testbed.fault_server import Reply
from testbed.registry import RegistryServer
from tests.reliability import harness
from tests.reliability.conftest import MATRIX
from tests.reliability.harness import App, Cached, World, manifest_path

BOUND_AWS_PER_OPERATION = 80  # verify polling at 1 s over a 30 s bound is the largest legitimate count
BOUND_UPSTREAM = 60  # requests for one repository in one run, retries and probes included
BOUND_INVOCATIONS = 20  # checker invocations (a poison item is received 3 times, then dead-lettered)


@dataclass
class Ctx:
    world: World
    cached: Cached
    planner: App
    checker: App
    settings: dict[str, Any] = field(default_factory=dict)
    context: Callable[[], Any] | None = None

    @property
    def stale(self) -> str:
        return "stable"


Inject = Callable[[Ctx], None]


@dataclass(frozen=True)
class Fault:
    inject: Inject
    names: tuple[str, ...]  # one of these must appear in the outcome


# -- upstream faults -----------------------------------------------------------------------------------

ERROR_BODY = json.dumps({"errors": [{"code": "DENIED", "message": "injected"}]}).encode()


def upstream_reply(kind: str) -> Reply:
    statuses = {"401": 401, "403": 403, "404": 404, "429": 429, "500": 500, "502": 502, "503": 503}
    if kind in statuses:
        return Reply(statuses[kind], {"Content-Type": "application/json"}, ERROR_BODY)
    if kind == "429-retry-after":
        return Reply(429, {"Retry-After": "7", "Content-Type": "application/json"}, ERROR_BODY)
    if kind == "timeout":
        return Reply(200, delay=harness.READ_TIMEOUT * 3)
    if kind == "reset":
        return Reply(reset=True)
    raise ValueError(kind)


CLIENT_NAMES = {
    "401": ("HTTP 401",),
    "403": ("HTTP 403",),
    "404": ("HTTP 404",),
    "429": ("HTTP 429",),
    "429-retry-after": ("HTTP 429",),
    "500": ("HTTP 500",),
    "502": ("HTTP 502",),
    "503": ("HTTP 503",),
    "timeout": ("timed out",),
    "reset": ("connection reset", "connection broken", "connection failed"),
    "malformed-digest": ("malformed Docker-Content-Digest",),
    "digest-mismatch": ("hashes to",),
}
# what ECR (the emulator) reports for an upstream answer during an import or a layer fetch
ECR_NAMES = {
    "401": ("UpstreamAccessDenied", "UnableToGetUpstream"),
    "403": ("UpstreamAccessDenied", "UnableToGetUpstream"),
    "404": ("ImageNotFound", "UnableToGetUpstream"),
    "429": ("UpstreamTooManyRequests", "UnableToGetUpstream"),
    "429-retry-after": ("UpstreamTooManyRequests", "UnableToGetUpstream"),
    "500": ("answered 500", "UnableToGetUpstream"),
    "502": ("answered 502", "UnableToGetUpstream"),
    "503": ("answered 503", "UnableToGetUpstream"),
    "timeout": ("ReadTimeoutError", "UnableToGetUpstream"),
    "reset": ("ProtocolError", "HTTPError", "UnableToGetUpstream"),
    "malformed-digest": ("do not match their digest",),
    "digest-mismatch": ("do not match their digest", "does not match its digest", "UnableToGetUpstream"),
}
HTTP_KINDS = ("401", "403", "404", "429", "429-retry-after", "500", "502", "503", "timeout", "reset")


def on_compare(kind: str) -> Fault:
    """The registry client's HEAD (and its GET fallback) for the stale tag."""

    def inject(c: Ctx) -> None:
        up, path = c.world.upstream, manifest_path(c.cached.upstream_repo, c.stale)
        if kind == "malformed-digest":
            headers = {
                "Docker-Content-Digest": "sha256:NOT-A-DIGEST",
                "Content-Type": mt.DOCKER_MANIFEST_LIST,
            }
            up.inject(path, Reply(200, headers), method="HEAD")
        elif kind == "digest-mismatch":
            # HEAD gives no digest, so the client GETs and hashes: the body is not what the header says
            up.inject(path, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST_LIST}), method="HEAD")
            body = (
                b'{"schemaVersion": 2, "mediaType": "%s", "manifests": []}' % mt.DOCKER_MANIFEST_LIST.encode()
            )
            headers = {
                "Docker-Content-Digest": c.cached.new[c.stale],
                "Content-Type": mt.DOCKER_MANIFEST_LIST,
            }
            up.inject(path, Reply(200, headers, body), method="GET")
        else:
            up.inject(path, upstream_reply(kind), method="HEAD")

    return Fault(inject, CLIENT_NAMES[kind])


def on_import(kind: str) -> Fault:
    """ECR's GET of the manifest when the refresh pulls the removed tag (the HEAD before it is fine)."""

    def inject(c: Ctx) -> None:
        up, path = c.world.upstream, manifest_path(c.cached.upstream_repo, c.stale)
        if kind in {"malformed-digest", "digest-mismatch"}:
            digest = "sha256:NOT-A-DIGEST" if kind == "malformed-digest" else "sha256:" + "0" * 64
            headers = {"Docker-Content-Digest": digest, "Content-Type": mt.DOCKER_MANIFEST_LIST}
            up.inject(path, Reply(200, headers, b'{"schemaVersion": 2, "manifests": []}'), method="GET")
        else:
            up.inject(path, upstream_reply(kind), method="GET")

    return Fault(inject, (*ECR_NAMES[kind], "import: "))


def on_layers(kind: str) -> Fault:
    """ECR's fetch of the new image's blobs while the refresh warms them (GetDownloadUrlForLayer)."""

    def inject(c: Ctx) -> None:
        prefix = f"/v2/{c.cached.upstream_repo}/blobs/"
        reply = Reply(200, {}, b"not the blob") if kind == "digest-mismatch" else upstream_reply(kind)
        c.world.upstream.inject(lambda p: p.startswith(prefix), reply, method="GET")

    return Fault(inject, ("warm: ",))


def on_tag_list(kind: str) -> Fault:
    """The planner's new-tag discovery (GET tags/list) for a repository with a discovery spec."""

    def inject(c: Ctx) -> None:
        c.settings["discover"] = json.dumps([{"repository": c.cached.name, "pattern": "v.*"}])
        path = f"/v2/{c.cached.upstream_repo}/tags/list"
        c.world.upstream.inject(lambda p: p.split("?", 1)[0] == path, upstream_reply(kind), method="GET")

    return Fault(inject, CLIENT_NAMES[kind])


# -- AWS faults ----------------------------------------------------------------------------------------

CODES = {
    "throttling": "ThrottlingException",
    "access-denied": "AccessDeniedException",
    "image-not-found": "ImageNotFoundException",
    "repository-not-found": "RepositoryNotFoundException",
    "put-rejected": "ImageTagAlreadyExistsException",
    "server-error": "ServerException",
}


def image_id(p: Mapping[str, Any]) -> Mapping[str, str]:
    ids = p.get("imageIds") or [{}]
    return ids[0]


def ecr_fault(
    who: str,
    operation: str,
    kind: str,
    when: Callable[[Ctx], Callable[[Mapping[str, Any]], bool]] = lambda c: lambda p: True,
    *,
    times: int | None = None,
    names: tuple[str, ...] = (),
) -> Fault:
    code = CODES[kind]

    def inject(c: Ctx) -> None:
        app = c.planner if who == "planner" else c.checker
        app.faults.fail("ecr", operation, code, when=when(c), times=times)

    return Fault(inject, names or (code,))


def by_tag(c: Ctx) -> Callable[[Mapping[str, Any]], bool]:
    return lambda p: image_id(p).get("imageTag") == c.stale and p.get("repositoryName") == c.cached.name


def by_digest(c: Ctx) -> Callable[[Mapping[str, Any]], bool]:
    return lambda p: "imageDigest" in image_id(p) and p.get("repositoryName") == c.cached.name


def listing(c: Ctx) -> Callable[[Mapping[str, Any]], bool]:
    return lambda p: "filter" in p


def put_of(pred: Callable[[str], bool]) -> Callable[[Ctx], Callable[[Mapping[str, Any]], bool]]:
    return lambda c: lambda p: pred(str(p.get("imageTag", ""))) and p.get("repositoryName") == c.cached.name


def delete_of(pred: Callable[[str], bool]) -> Callable[[Ctx], Callable[[Mapping[str, Any]], bool]]:
    return lambda c: lambda p: any(pred(i.get("imageTag", "")) for i in p.get("imageIds", []))


def import_never_completes(c: Ctx) -> None:
    c.world.box.emulator.import_in_background(c.cached.name, c.stale, ready_after_calls=10**6)


def verify_fault(kind: str) -> Fault:
    """DescribeImages of the tag after the import fails (or shows a third digest) until the rollback."""

    def inject(c: Ctx) -> None:
        name, tag = c.cached.name, c.stale
        seen = {"restored": False, "moved": False}

        def restoring(p: Mapping[str, Any]) -> bool:
            if p.get("imageTag") == tag and p.get("repositoryName") == name:
                seen["restored"] = True
            return False

        c.checker.faults.fail("ecr", "PutImage", "Unused", when=restoring)
        if kind == "third-digest":

            def move_tag(p: Mapping[str, Any]) -> bool:
                # while the refresh warms layers, something else moves the tag in ECR to a third image
                if not seen["moved"] and p.get("repositoryName") == name:
                    seen["moved"] = True
                    ecr = c.world.client("ecr")
                    third = ecr.batch_get_image(
                        repositoryName=name,
                        imageIds=[{"imageDigest": c.cached.before["pinned"]}],
                        acceptedMediaTypes=sorted(mt.MANIFEST_TYPES),
                    )["images"][0]
                    ecr.put_image(
                        repositoryName=name,
                        imageManifest=third["imageManifest"],
                        imageManifestMediaType=third["imageManifestMediaType"],
                        imageTag=tag,
                    )
                return False

            c.checker.faults.fail("ecr", "GetDownloadUrlForLayer", "Unused", when=move_tag)
            return
        code = CODES[kind]
        after_import = {"imported": False}

        def imported(p: Mapping[str, Any]) -> bool:
            if by_tag(c)(p):
                after_import["imported"] = True
            return False

        c.checker.faults.fail("ecr", "BatchGetImage", "Unused", when=imported)
        c.checker.faults.fail(
            "ecr",
            "DescribeImages",
            code,
            when=lambda p: by_tag(c)(p) and after_import["imported"] and not seen["restored"],
        )

    names = ("verify: tag shows",) if kind == "third-digest" else ("verify: ", CODES.get(kind, ""))
    return Fault(inject, names)


def restore_fault(kind: str) -> Fault:
    """The import is refused, and the rollback's PutImage of the old manifest fails (transiently)."""

    def inject(c: Ctx) -> None:
        c.checker.faults.fail("ecr", "BatchGetImage", "AccessDeniedException", when=by_tag(c))
        c.checker.faults.fail("ecr", "PutImage", CODES[kind], when=put_of(lambda t: t == c.stale)(c), times=2)

    return Fault(inject, ("import: ",))


def aws(service: str, operation: str, code: str, who: str = "checker", *, when: Any = None) -> Fault:
    def inject(c: Ctx) -> None:
        app = c.planner if who == "planner" else c.checker
        pred = when(c) if when else (lambda p: True)
        app.faults.fail(service, operation, code, when=pred)

    return Fault(inject, (code,))


def on_index(name: str) -> Callable[[Ctx], Callable[[Mapping[str, Any]], bool]]:
    """A DynamoDB Query on the index ``name``."""

    def pred(_c: Ctx) -> Callable[[Mapping[str, Any]], bool]:
        return lambda p: p.get("IndexName") == name

    return pred


def leading(prefix: str) -> Callable[[Ctx], Callable[[Mapping[str, Any]], bool]]:
    """A DynamoDB call on an item whose partition key starts with ``prefix``."""

    def pred(_c: Ctx) -> Callable[[Mapping[str, Any]], bool]:
        def match(p: Mapping[str, Any]) -> bool:
            text = json.dumps(
                p.get("Key") or p.get("Item") or p.get("RequestItems") or p.get("TransactItems")
            )
            return f'"S": "{prefix}' in text

        return match

    return pred


def little_time(c: Ctx) -> None:
    c.context = harness.lambda_context("checker", lambda: 20_000)


def time_runs_out_mid_batch(c: Ctx) -> None:
    """Each tag is its own work item; the first refresh's backup takes 40 s, so the items after it in
    the batch have too little time left (the context's remaining time follows the virtual clock)."""
    box = c.world.box
    deadline = box.clock.now() + timedelta(seconds=85)
    c.settings["tags_per_message"] = 1
    c.context = harness.lambda_context(
        "checker", lambda: max(0, int((deadline - box.clock.now()).total_seconds() * 1000))
    )
    slow = {"done": False}

    def slow_backup(p: Mapping[str, Any]) -> bool:
        if not slow["done"] and is_backup_tag(str(p.get("imageTag", ""))):
            slow["done"] = True
            box.clock.advance(timedelta(seconds=40))
        return False

    c.checker.faults.fail("ecr", "PutImage", "Unused", when=slow_backup)


def idempotency_fails_once(c: Ctx) -> None:
    """Each tag its own work item; the first idempotency put of the batch is throttled."""
    c.settings["tags_per_message"] = 1
    c.checker.faults.fail(
        "dynamodb",
        "PutItem",
        "ProvisionedThroughputExceededException",
        when=leading("IDEMPOTENCY")(c),
        times=1,
    )


# -- the steps and their faults ------------------------------------------------------------------------


def upstream_cells(step: str, make: Callable[[str], Fault], kinds: tuple[str, ...]) -> dict[str, Fault]:
    return {f"{step}/{kind}": make(kind) for kind in kinds}


def ecr_cells(
    who: str, step: str, operation: str, kinds: tuple[str, ...], when: Any = None, **kw: Any
) -> dict[str, Fault]:
    return {
        f"{step}/{kind}": ecr_fault(who, operation, kind, when or (lambda c: lambda p: True), **kw)
        for kind in kinds
    }


TA = ("throttling", "access-denied")
TAR = ("throttling", "access-denied", "repository-not-found")
DIGEST_KINDS = ("malformed-digest", "digest-mismatch")

STEPS: dict[str, Fault] = {
    # discovery, in the planner
    **ecr_cells("planner", "planner-rules", "DescribePullThroughCacheRules", TA),
    **ecr_cells("planner", "planner-repositories", "DescribeRepositories", TA),
    **ecr_cells("planner", "planner-images", "DescribeImages", TAR, listing),
    **upstream_cells("planner-tag-list", on_tag_list, HTTP_KINDS),
    # discovery, in the checker (its own container: it reads the rules and the repository again)
    **ecr_cells("checker", "checker-rules", "DescribePullThroughCacheRules", TA),
    **ecr_cells("checker", "checker-repository", "DescribeRepositories", TA),
    "checker-repository/repository-not-found": ecr_fault(
        "checker", "DescribeRepositories", "repository-not-found", names=("no such repository",)
    ),
    **ecr_cells("checker", "checker-images", "DescribeImages", TAR, listing),
    # comparison
    **upstream_cells("compare", on_compare, HTTP_KINDS + DIGEST_KINDS),
    # the refresh protocol
    **ecr_cells(
        "checker",
        "read-old",
        "BatchGetImage",
        (*TAR, "image-not-found"),
        by_digest,
        times=1,
        names=("read-old: ",),
    ),
    **ecr_cells(
        "checker", "backup", "PutImage", (*TAR, "put-rejected"), put_of(is_backup_tag), names=("backup: ",)
    ),
    **ecr_cells(
        "checker",
        "remove-tag",
        "BatchDeleteImage",
        TAR,
        delete_of(lambda t: t == "stable"),
        names=("remove-tag: ",),
    ),
    **ecr_cells(
        "checker",
        "import",
        "BatchGetImage",
        (*TAR, "image-not-found", "server-error"),
        by_tag,
        names=("import: ",),
    ),
    "import/never-completes": Fault(import_never_completes, ("import: ", "not in ECR after")),
    **upstream_cells("import-upstream", on_import, HTTP_KINDS + DIGEST_KINDS),
    **ecr_cells("checker", "warm", "GetDownloadUrlForLayer", TAR, names=("warm: ",)),
    **upstream_cells("warm-upstream", on_layers, (*HTTP_KINDS, "digest-mismatch")),
    **{
        f"verify/{k}": verify_fault(k)
        for k in ("throttling", "access-denied", "image-not-found", "third-digest")
    },
    **ecr_cells(
        "checker", "drop-backup", "BatchDeleteImage", TA, delete_of(is_backup_tag), names=("drop-backup: ",)
    ),
    **{f"rollback-restore/{k}": restore_fault(k) for k in ("throttling", "server-error")},
    # reporting
    "report/sns-authorization": aws("sns", "Publish", "AuthorizationError"),
    "report/sns-kms": aws("sns", "Publish", "KMSAccessDeniedException"),
    "report/sns-throttled": aws("sns", "Publish", "ThrottledException"),
    # run state
    "state/planner-start-run": aws(
        "dynamodb", "PutItem", "ProvisionedThroughputExceededException", "planner", when=leading("RUN#")
    ),
    "state/checker-idempotency": aws(
        "dynamodb", "PutItem", "ProvisionedThroughputExceededException", when=leading("IDEMPOTENCY")
    ),
    # one record of a batch fails (the other succeeds): its retry must say why, too
    "state/checker-idempotency-one-record": Fault(
        idempotency_fails_once, ("ProvisionedThroughputExceededException",)
    ),
    # a scan reads its repositories' tag states with one Query on the TagStatesByGroup index
    "state/checker-tag-states": aws(
        "dynamodb", "Query", "ProvisionedThroughputExceededException", when=on_index("TagStatesByGroup")
    ),
    "state/checker-record-tag": aws("dynamodb", "UpdateItem", "ThrottlingException", when=leading("TAG#")),
    "state/checker-record-results": aws("dynamodb", "TransactWriteItems", "ThrottlingException"),
    "state/checker-write-results": aws(
        "dynamodb", "BatchWriteItem", "ProvisionedThroughputExceededException"
    ),
    # the Lambda running out of time
    "lambda-timeout/little-time-left": Fault(little_time, ("no time left in run",)),
    "lambda-timeout/mid-batch": Fault(time_runs_out_mid_batch, ("no time left in run",)),
}
CELLS = sorted(STEPS)
# where an index (children read and warmed per platform) changes what the step does; elsewhere a
# single-platform image keeps the cell cheap
UPSTREAM_STEPS = frozenset({"compare", "import-upstream", "warm-upstream", "planner-tag-list"})
MULTI_ARCH_STEPS = frozenset({"read-old", "import", "import-upstream", "warm", "warm-upstream", "verify"})


@pytest.fixture(scope="module")
def world(registry: RegistryServer) -> Iterator[World]:
    yield from harness.world_of(registry)


@pytest.mark.parametrize("cell", CELLS)
def test_cell(world: World, cell: str, caplog: pytest.LogCaptureFixture) -> None:
    MATRIX.cells.add(cell)
    fault = STEPS[cell]
    step = cell.split("/", 1)[0]
    two = {"lambda-timeout/mid-batch", "state/checker-idempotency-one-record"}
    stale = ("stable", "edge") if cell in two else ("stable",)
    if step.startswith("planner-"):
        stale = ()  # the planner's faults stop the run before any refresh
    # a fresh neighbour tag, left alone by every ECR fault (and the third digest of verify/third-digest)
    fresh = () if step in UPSTREAM_STEPS and stale else ("pinned",)
    cached = harness.cache_repo(world, cell, stale=stale, fresh=fresh, multi=step in MULTI_ARCH_STEPS)
    settings: dict[str, Any] = {"repository_include": cached.name}
    if step == "drop-backup":
        settings["keep_generations"] = 0
    planner = harness.build(world, **settings)
    # the checker is a container of its own where that matters (it reads the rules and the repository
    # again); elsewhere one app serves both, which changes nothing the cell observes
    checker = harness.build(world, **settings) if step.startswith("checker-") else planner
    ctx = Ctx(world, cached, planner, checker, dict(settings))
    fault.inject(ctx)
    if ctx.settings != settings:  # the fault changed the settings: rebuild, keeping its faults
        rebuilt = harness.build(world, **ctx.settings)
        rebuilt.faults.faults[:] = ctx.planner.faults.faults
        ctx.planner = ctx.checker = rebuilt

    out = harness.run_fanout(
        world, ctx.planner, ctx.checker, lambda: caplog.records, checker_context=ctx.context
    )

    problems = harness.check_invariant(world, cached, out.results, caplog.records)
    text = out.text()
    if not any(name and name in text for name in fault.names):
        problems.append(f"the outcome does not name the fault ({' | '.join(fault.names)}):\n{text[:3000]}")
    for app in {id(a): a for a in (ctx.planner, ctx.checker)}.values():
        for op, n in app.faults.per_operation().items():
            if n > BOUND_AWS_PER_OPERATION:
                problems.append(f"{op} called {n} times")
    upstream = world.upstream.count(f"/v2/{cached.upstream_repo}/")
    if upstream > BOUND_UPSTREAM:
        problems.append(f"{upstream} upstream requests")
    if out.delivery.invocations >= BOUND_INVOCATIONS:
        problems.append(f"{out.delivery.invocations} checker invocations: work is retried without end")
    if problems:
        MATRIX.failures[cell] = problems
    assert not problems, "\n".join(problems)


def test_matrix_covers_every_step() -> None:
    steps = {cell.split("/", 1)[0] for cell in CELLS}
    assert {
        "planner-rules",
        "planner-repositories",
        "planner-images",
        "planner-tag-list",
        "checker-rules",
        "checker-repository",
        "checker-images",
        "compare",
        "read-old",
        "backup",
        "remove-tag",
        "import",
        "import-upstream",
        "warm",
        "warm-upstream",
        "verify",
        "drop-backup",
        "rollback-restore",
        "report",
        "state",
        "lambda-timeout",
    } == steps
