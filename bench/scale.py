"""The fan-out at scale on the local testbed: N cached tags over M repositories, planned and checked.

The real planner handler (functions/sync) plans one scheduled run; the real checker handler
(functions/checker) drains the work queue through the SQS event source, batch by batch, as Lambda
would. Prints the planner's wall time and peak memory, the messages it queued, the checker batches
and the largest peak memory of one checker invocation, and every upstream request the app made.
Figures, not assertions: ``make bench-scale`` (a script, never a timed test).

    python -m bench.scale [--tags 10000] [--repos 2000]

Seeding, fast: one small image per repository pushed upstream (its blobs mounted from the first
repository, every tag a put of the same manifest bytes). In ECR the first tag of each repository is
cached through the pull-through cache emulator (a real import from the registry); the other tags
are written with PutImage from the exact manifest bytes (same digest, as an import would store).
Caching every tag through the emulator costs one upstream import per tag: its measured rate is
printed, and the time all N would take.

Memory: tracemalloc's peak of Python allocations during one handler call. moto runs in this
process, so its allocations for the calls made (requests parsed, responses built, items stored)
are counted too: the figures are upper bounds of what the function allocates. The interpreter,
boto3, Powertools and pydantic loaded before the call are not in them; ``baseline_rss_mb`` is the
resident size of a fresh interpreter that imported the checker handler, which a Lambda container
holds before its first event. Memory fits a 256 MB function when baseline + peak stays under it.

Two costs of the test double that the real services do not have are taken out, so the figures are
the application's: moto's DynamoDB deep-copies the whole table before every TransactWriteItems (its
rollback backup; the checker writes one per batch, so the cost grows with the table), and moto's SQS
scans every queued message on each SendMessage (to read one queue attribute). The bench skips the
table backup and stops if any transaction is cancelled (none is expected: one would need the
backup), and lets SendMessage read that one attribute of a standard queue directly.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "ptc-sync",
        "POWERTOOLS_METRICS_NAMESPACE": "PtcSync",
    }
)
os.environ.pop("AWS_PROFILE", None)

import moto.dynamodb.models as moto_dynamodb
import moto.sqs.models as moto_sqs
import urllib3
from moto.dynamodb.models.table import Table

from ptc_sync import wiring
from ptc_sync.models import Outcome
from testbed.images import ImagePusher, PushedImage
from testbed.lambdas import Stack
from testbed.registry import RegistryServer
from testbed.runtime import Delivery
from testbed.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
SAMPLES = 40  # checker invocations traced for memory, besides the last ones


class _NoTableBackup:
    """Stands in for the ``copy`` module inside moto's DynamoDB backend: a Table is not deep-copied
    (the transaction backup); everything else is."""

    def __init__(self) -> None:
        import copy

        self._copy = copy

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            return value
        return self._copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._copy, name)


def skip_transaction_backups() -> list[str]:
    """Install the shim; returns the list cancelled transactions are appended to."""
    cancelled: list[str] = []
    backend_cls = moto_dynamodb.DynamoDBBackend
    original = backend_cls.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        try:
            original(self, transact_items)
        except Exception as exc:
            cancelled.append(type(exc).__name__)
            raise

    moto_dynamodb.copy = _NoTableBackup()  # type: ignore[attr-defined,assignment]
    backend_cls.transact_write_items = transact_write_items  # type: ignore[method-assign]
    return cancelled


def light_send_message() -> None:
    """moto's SendMessage reads one attribute of a standard queue (ContentBasedDeduplication) by
    building all of them, the approximate message counts included: a scan of every message in the
    queue for each one sent, quadratic over a run's thousands of messages (SQS has no such cost).
    While moto sends, a standard queue answers that attribute alone."""
    backend_cls = moto_sqs.SQSBackend
    original = backend_cls.send_message
    queue_cls: Any = moto_sqs.Queue
    full = queue_cls.__dict__["attributes"]

    def light(queue: Any) -> dict[str, Any]:
        return dict(full.fget(queue)) if queue.fifo_queue else {}  # a standard queue has no such attribute

    def send_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        queue_cls.attributes = property(light)
        try:
            return original(self, *args, **kwargs)
        finally:
            queue_cls.attributes = full

    backend_cls.send_message = send_message  # type: ignore[method-assign]


def mount(pusher: ImagePusher, repo: str, source: str, digest: str) -> None:
    """Cross-repository blob mount: the registry links a blob it has into another repository."""
    url = f"{pusher.base_url}/v2/{repo}/blobs/uploads/?mount={digest}&from={source}"
    resp = pusher.http.request("POST", url, redirect=False)
    if resp.status != 201:
        raise RuntimeError(f"mount {digest} into {repo}: {resp.status} {resp.data[:200]!r}")


def seed_upstream(pusher: ImagePusher, repos: list[str], tags: list[str]) -> PushedImage:
    """One image in the first repository; every other repository mounts its blobs and puts the same
    manifest bytes under every tag (the registry is its own process: eight requests at a time)."""
    first = pusher.push_image(repos[0], tags[0], layers=1, layer_size=64)
    blobs = [b.digest for b in first.layers] + ([first.config.digest] if first.config else [])

    def one(repo: str) -> None:
        if repo != repos[0]:
            for digest in blobs:
                mount(pusher, repo, repos[0], digest)
        for tag in tags:
            if (repo, tag) != (repos[0], tags[0]):
                pusher.put_manifest(repo, tag, first.manifest, first.media_type)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, repos))
    return first


def baseline_rss_mb() -> float:
    """Resident size of a fresh interpreter that imported the checker handler (a warm container)."""
    code = (
        "import resource, sys; sys.path.insert(0, 'layers/shared');"
        "from testbed.lambdas import load_handler; load_handler('checker'); load_handler('sync');"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=os.environ
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # Linux reports KiB


@dataclass
class Seeded:
    names: list[str]
    total: int
    upstream_s: float
    imports_s: float
    puts_s: float


def seed(box: Sandbox, registry: RegistryServer, repos: int, per_repo: int) -> Seeded:
    tags = [f"1.{t}" for t in range(per_repo)]
    upstream_repos = [f"scale/app{r:05d}" for r in range(repos)]
    names = [f"ecr-public/{repo}" for repo in upstream_repos]
    t0 = time.perf_counter()
    pusher = ImagePusher(registry.url)
    pusher.http = urllib3.PoolManager(maxsize=8, retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    image = seed_upstream(pusher, upstream_repos, tags)
    t1 = time.perf_counter()
    for name in names:
        box.cache(name, tags[0])  # a real import through the emulator
    t2 = time.perf_counter()
    ecr = box.client("ecr")
    for name in names:
        for tag in tags[1:]:
            ecr.put_image(
                repositoryName=name,
                imageManifest=image.manifest.decode(),
                imageManifestMediaType=image.media_type,
                imageTag=tag,
                imageDigest=image.digest,
            )
    t3 = time.perf_counter()
    return Seeded(names, repos * per_repo, t1 - t0, t2 - t1, t3 - t2)


@dataclass
class Drained:
    delivery: Delivery
    seconds: float
    peak_mb: float
    traced: int


def drain(stack: Stack, messages: int, sink: io.StringIO) -> Drained:
    """Every batch through the checker. tracemalloc slows allocation-heavy code a few times over, so
    a sample of the invocations is traced (all alike: batch_size items of one repository's tags) and
    every one of the last few, among them the one that completes the run and publishes its summary."""
    batches = -(-messages // stack.work.batch_size)
    every = max(1, batches // SAMPLES)
    delivery = Delivery()
    peak, traced = 0.0, 0
    started = time.perf_counter()
    while True:
        trace = delivery.invocations % every == 0 or batches - delivery.invocations <= 3
        if trace:
            tracemalloc.start()
        with contextlib.redirect_stdout(sink):
            delivered = stack.work.poll_once(delivery)
        if trace:
            if delivered:
                peak = max(peak, tracemalloc.get_traced_memory()[1] / MB)
                traced += 1
            tracemalloc.stop()
        if not delivered:
            return Drained(delivery, time.perf_counter() - started, peak, traced)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--repos", type=int, default=2_000)
    args = parser.parse_args()
    if args.repos < 1 or args.tags < args.repos:
        parser.error("need at least one repository and one tag per repository")
    cancelled = skip_transaction_backups()
    light_send_message()
    baseline = baseline_rss_mb()
    sink = io.StringIO()  # the EMF lines the handlers print

    with (
        tempfile.TemporaryDirectory(prefix="ptc-scale-") as tmp,
        RegistryServer(Path(tmp)) as registry,
        Sandbox(registry) as box,
    ):
        seeded = seed(box, registry, args.repos, args.tags // args.repos)
        per_import = seeded.imports_s / len(seeded.names)
        print(
            f"seeded {seeded.total} cached tags over {len(seeded.names)} repositories: upstream "
            f"{seeded.upstream_s:.1f} s, {len(seeded.names)} imports through the emulator "
            f"{seeded.imports_s:.1f} s ({per_import * 1000:.1f} ms each; all {seeded.total} tags that way "
            f"≈ {per_import * seeded.total:.0f} s), {seeded.total - len(seeded.names)} PutImage "
            f"{seeded.puts_s:.1f} s",
            flush=True,
        )
        stack = Stack(box)
        app = box.build_app()
        wiring.set_app(app)
        event = json.loads((ROOT / "events" / "scheduled.json").read_text())

        tracemalloc.start()
        started = time.perf_counter()
        with contextlib.redirect_stdout(sink):
            planned = stack.schedule(event)
        planner_s = time.perf_counter() - started
        planner_peak = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
        if planned.get("status") != "planned" or planned["tags"] != seeded.total:
            raise SystemExit(f"planner: {planned}")
        print(
            f"planner: {planner_s:.1f} s for {planned['messages']} messages ({planned['tags']} tags)",
            flush=True,
        )

        drained = drain(stack, planned["messages"], sink)
        state, _queue = app.fanout()
        progress = state.run_progress(planned["run_id"])
        counts = app.registry.counts()
        dlq = box.client("sqs").get_queue_attributes(
            QueueUrl=box.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]

    if cancelled:
        raise SystemExit(f"{len(cancelled)} transactions cancelled ({cancelled[:3]}): figures not valid")
    if progress is None or not progress.summarised or progress.done != seeded.total:
        raise SystemExit(f"the run did not complete: {progress}")
    delivery = drained.delivery
    print(
        f"checker: {delivery.invocations} batches, {delivery.records} records, {delivery.failures} failures, "
        f"{drained.seconds:.1f} s ({drained.seconds / max(1, delivery.invocations) * 1000:.0f} ms a batch); "
        f"fresh {progress.count(Outcome.FRESH)} of {progress.done}; dead-lettered {dlq}"
    )
    print("upstream requests: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print(
        f"memory: baseline_rss_mb={baseline:.0f} (a fresh interpreter with both handlers imported); the "
        f"peaks are tracemalloc's, moto's in-process allocations included; checker: the largest of "
        f"{drained.traced} traced invocations of {delivery.invocations}, the run's last ones among them"
    )
    print(
        f"scale: tags={seeded.total} repos={len(seeded.names)} planner_s={planner_s:.1f} "
        f"planner_peak_mb={planner_peak:.1f} checker_peak_mb={drained.peak_mb:.1f} "
        f"messages={planned['messages']} upstream_requests={counts.get('requests', 0)}"
    )


if __name__ == "__main__":
    main()
