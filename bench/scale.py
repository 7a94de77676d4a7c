"""The fan-out at scale on the local testbed: N cached tags over M repositories, planned and checked.

The real planner handler (functions/sync) plans one scheduled run; the real checker handler
(functions/checker) drains the work queue through the SQS event source, batch by batch, as Lambda
would. Prints the planner's wall time and peak memory, the messages it queued, the checker batches
and the largest peak memory of one checker invocation, and every upstream request the app made.
Figures, not assertions: ``make bench-scale`` (a script, never a timed test).

    python -m bench.scale [--tags 10000] [--repos 2000]

Two scheduled runs: the first sees every tag for the first time (its state is created); the second,
15 emulated minutes later with nothing changed upstream, is the steady state. For each run the
bench counts, per tag check and outside the code under test: upstream requests (a counting proxy
in front of the registry, ``testbed.latency_proxy`` with no delay; the emulator's own imports go
round it), AWS calls by service (botocore ``after-call`` hooks on the app's session and on the
testbed's, which plays Lambda's SQS poller), ECR read and write calls, DynamoDB read and write units
(from item sizes: ``bench.awscount``) and SQS requests; and prints the steady state next to the
floor (one upstream HEAD and no writes per unchanged tag), with what DynamoDB and SQS would cost a
month for README's fleet (2,000 tags every 15 minutes) at the prices in PRICES.

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
from datetime import timedelta
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

import boto3
import moto.dynamodb.models as moto_dynamodb
import moto.sqs.models as moto_sqs
import urllib3
from moto.dynamodb.models.table import Table

from bench.awscount import AwsCounter
from ptc_sync import wiring
from ptc_sync.models import Outcome
from ptc_sync.wiring import App, build_app
from testbed.images import ImagePusher, PushedImage
from testbed.lambdas import Stack
from testbed.latency_proxy import LatencyProxy
from testbed.registry import RegistryServer
from testbed.runtime import Delivery
from testbed.sandbox import REGION, Sandbox

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
SAMPLES = 40  # checker invocations traced for memory, besides the last ones
# Public on-demand prices, us-east-1, USD (aws.amazon.com/dynamodb/pricing/on-demand since
# 2024-11-01; aws.amazon.com/sqs/pricing, standard queue after the free tier)
# us-east-1 list prices (per unit), as cited in docs/cost.md
PRICES = {"dynamodb_wru": 0.625e-6, "dynamodb_rru": 0.125e-6, "sqs_request": 0.40e-6}
LAMBDA_GB_S = 0.0000133334  # arm64
LAMBDA_REQUEST = 0.20e-6
CHECKER_GB = 0.25  # 256 MB
# what a stack costs whatever its fleet, before any free tier: the custom metrics its runs wrote in
# this bench (counted from the EMF lines, one per namespace, name and dimension values), every alarm
# template.yaml can create (all features on), the dashboard and the report topic's KMS key
METRIC_MONTH, ALARM_MONTH, DASHBOARD_MONTH, KMS_KEY_MONTH = 0.30, 0.10, 3.00, 1.00
FREE_METRICS, FREE_ALARMS = 10, 10  # CloudWatch's always-free tier, per account (and 3 dashboards)
FLEET_TAGS = 2_000  # README's fleet
CHECKS_A_MONTH = FLEET_TAGS * 4 * 24 * 30  # every 15 minutes


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


def counting_app(box: Sandbox, counter: AwsCounter, upstream: str) -> App:
    """``box.build_app()`` with the app's AWS calls counted and its upstream requests sent through
    the counting proxy (the emulator keeps talking to the registry directly)."""
    session = boto3.Session(region_name=REGION)
    counter.attach(session, "app")
    return build_app(
        box.settings(),
        session=session,
        upstream_override=dict.fromkeys(box.upstreams, upstream),
        sleep=lambda seconds: box.clock.advance(timedelta(seconds=seconds)),
        monotonic=lambda: box.clock.now().timestamp(),
        now=box.clock.now,
    )


@dataclass
class RunFigures:
    name: str
    tags: int
    planner_s: float
    planner_peak_mb: float
    messages: int
    drained: Drained
    fresh: int
    upstream: dict[str, Any]
    calls: dict[str, dict[str, int]]  # service → operation → calls (app and poller)
    rru: float
    wru: float
    ecr_reads: int
    ecr_writes: int
    sqs: int

    def per_tag(self, n: float) -> float:
        return n / max(1, self.tags)

    def summary(self) -> dict[str, float]:
        return {
            "upstream": self.per_tag(self.upstream.get("requests", 0)),
            "ecr_reads": self.per_tag(self.ecr_reads),
            "ecr_writes": self.per_tag(self.ecr_writes),
            "ddb_rru": self.per_tag(self.rru),
            "ddb_wru": self.per_tag(self.wru),
            "sqs": self.per_tag(self.sqs),
            "checker_ms": self.per_tag(self.drained.seconds * 1000),
        }

    def monthly_usd(self) -> float:
        per = self.summary()
        return CHECKS_A_MONTH * (
            per["ddb_wru"] * PRICES["dynamodb_wru"]
            + per["ddb_rru"] * PRICES["dynamodb_rru"]
            + per["sqs"] * PRICES["sqs_request"]
        )


def one_run(
    name: str,
    *,
    stack: Stack,
    app: App,
    counter: AwsCounter,
    proxy: LatencyProxy,
    sink: io.StringIO,
    total: int,
) -> RunFigures:
    counter.reset()
    proxy.reset()
    event = json.loads((ROOT / "events" / "scheduled.json").read_text())
    tracemalloc.start()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        planned = stack.schedule(event)
    planner_s = time.perf_counter() - started
    planner_peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    if planned.get("status") != "planned":
        raise SystemExit(f"planner: {planned}")
    # the planner lists repositories (scan items); the checkers list the tags
    print(
        f"{name} run planner: {planner_s:.1f} s, {planned['messages']} messages, "
        f"{planned.get('repositories', 0)} repositories, {planned['tags']} tags named"
    )
    drained = drain(stack, planned["messages"], sink)
    upstream = proxy.stats()
    calls = {svc: counter.by_operation(svc) for svc in sorted({svc for _, svc, _ in counter.calls})}
    figures = RunFigures(
        name=name,
        tags=total,
        planner_s=planner_s,
        planner_peak_mb=planner_peak,
        messages=planned["messages"],
        drained=drained,
        fresh=0,
        upstream=upstream,
        calls=calls,
        rru=counter.rru["app"],
        wru=counter.wru["app"],
        ecr_reads=counter.count("ecr", label="app", read=True),
        ecr_writes=counter.count("ecr", label="app", read=False),
        sqs=counter.count("sqs"),
    )
    state, _queue = app.fanout()
    progress = state.run_progress(planned["run_id"])
    checked = sum(progress.counts.values()) if progress is not None else 0
    if progress is None or not progress.summarised or progress.done != progress.expected or checked != total:
        raise SystemExit(f"the {name} run did not complete ({checked} of {total} tags): {progress}")
    figures.fresh = progress.count(Outcome.FRESH)
    return figures


def print_run(run: RunFigures) -> None:
    delivery = run.drained.delivery
    print(
        f"{run.name} run checker: {delivery.invocations} batches, {delivery.records} records, "
        f"{delivery.failures} failures, {run.drained.seconds:.1f} s; fresh {run.fresh} of {run.tags}"
    )
    kinds = json.dumps(run.upstream.get("by_kind", {}))
    print(f"  upstream: {run.upstream.get('requests', 0)} requests {kinds}")
    for svc, ops in run.calls.items():
        print(f"  {svc}: " + ", ".join(f"{op}={n}" for op, n in ops.items()))
    print(f"  dynamodb units (app): read {run.rru:.1f}, write {run.wru:.0f}")
    per = run.summary()
    print(
        "  per tag check: "
        + ", ".join(f"{k}={v:.3f}" for k, v in per.items())
        + f"; DynamoDB+SQS for {FLEET_TAGS} tags every 15 min: ${run.monthly_usd():.2f}/month"
    )


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
    counter = AwsCounter()

    with (
        tempfile.TemporaryDirectory(prefix="ptc-scale-") as tmp,
        RegistryServer(Path(tmp)) as registry,
        LatencyProxy(registry.host, latency=0) as proxy,
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
        counter.attach(boto3._get_default_session(), "testbed")  # Lambda's SQS poller
        stack = Stack(box)
        app = counting_app(box, counter, proxy.url)
        wiring.set_app(app)
        run = {"stack": stack, "app": app, "counter": counter, "proxy": proxy, "sink": sink}
        first = one_run("first", **run, total=seeded.total)
        box.clock.advance(timedelta(minutes=15))
        steady = one_run("steady", **run, total=seeded.total)
        dlq = box.client("sqs").get_queue_attributes(
            QueueUrl=box.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]

    if cancelled:
        raise SystemExit(f"{len(cancelled)} transactions cancelled ({cancelled[:3]}): figures not valid")
    print_run(first)
    print_run(steady)
    per = steady.summary()
    print(
        f"steady state vs floor, per unchanged tag: upstream {per['upstream']:.3f} (floor 1 HEAD), "
        f"ECR writes {per['ecr_writes']:.3f} (0), DynamoDB write units {per['ddb_wru']:.3f} (0), "
        f"read units {per['ddb_rru']:.3f}, ECR reads {per['ecr_reads']:.3f}, SQS {per['sqs']:.3f}; "
        f"dead-lettered {dlq}"
    )
    print(
        f"memory: baseline_rss_mb={baseline:.0f} (a fresh interpreter with both handlers imported); the "
        f"peaks are tracemalloc's, moto's in-process allocations included; checker: the largest of "
        f"{steady.drained.traced} traced invocations of {steady.drained.delivery.invocations}"
    )
    fields = {
        "tags": seeded.total,
        "repos": len(seeded.names),
        "planner_s": round(first.planner_s, 1),
        "planner_peak_mb": round(first.planner_peak_mb, 1),
        "checker_peak_mb": round(max(first.drained.peak_mb, steady.drained.peak_mb), 1),
        "messages": first.messages,
        **{f"first_{k}": round(v, 3) for k, v in first.summary().items()},
        **{f"steady_{k}": round(v, 3) for k, v in per.items()},
        "steady_usd_month": round(steady.monthly_usd(), 2),
    }
    metrics = emitted_metrics(sink.getvalue())
    alarms = template_alarms()
    print(
        f"custom metrics the runs wrote: {len(metrics)} ({', '.join(sorted(name for _, name, _ in metrics))})"
    )
    fields["custom_metrics"] = len(metrics)
    fields["alarms"] = alarms
    bills = {tags: print_bill(steady, tags, len(metrics), alarms) for tags in (FLEET_TAGS, 100_000)}
    fields["bill_2000_usd"] = round(bills[FLEET_TAGS][0], 2)
    fields["bill_2000_free_tier_usd"] = round(bills[FLEET_TAGS][1], 2)
    fields["bill_100000_usd"] = round(bills[100_000][0], 2)
    print("scale: " + " ".join(f"{k}={v}" for k, v in fields.items()))


def emitted_metrics(emf: str) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """The custom metrics the EMF lines write: what CloudWatch bills for (name and dimension set)."""
    found = set()
    for line in emf.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                labels = tuple((name, str(blob[name])) for name in dimensions)
                for metric in directive["Metrics"]:
                    found.add((directive["Namespace"], metric["Name"], labels))
    return found


def template_alarms() -> int:
    """Every CloudWatch alarm template.yaml creates with all its conditions true (all features on)."""
    return (ROOT / "template.yaml").read_text().count("Type: AWS::CloudWatch::Alarm")


def fixed_rows(metrics: int, alarms: int) -> tuple[dict[str, float], float]:
    """The month's fixed rows and how much of them CloudWatch's always-free tier covers."""
    rows = {
        f"custom metrics ({metrics} x ${METRIC_MONTH:.2f})": metrics * METRIC_MONTH,
        f"alarms ({alarms} x ${ALARM_MONTH:.2f})": alarms * ALARM_MONTH,
        "dashboard": DASHBOARD_MONTH,
        "KMS key": KMS_KEY_MONTH,
    }
    free = (
        min(metrics, FREE_METRICS) * METRIC_MONTH + min(alarms, FREE_ALARMS) * ALARM_MONTH + DASHBOARD_MONTH
    )
    return rows, free


def print_bill(run: RunFigures, tags: int, metrics: int, alarms: int) -> tuple[float, float]:
    """A month of ``tags`` checked every 15 minutes, from this run's counts per tag check (measured)
    and the prices above (cited): the steady state, nothing changing upstream. Returns the total
    before and after the account-wide free tiers of the fixed items."""
    per = run.summary()
    checks = tags * 4 * 24 * 30
    invocations = checks / max(1, run.tags) * (run.drained.delivery.invocations + 1)  # + the planner
    rows = {
        "DynamoDB writes": checks * per["ddb_wru"] * PRICES["dynamodb_wru"],
        "DynamoDB reads": checks * per["ddb_rru"] * PRICES["dynamodb_rru"],
        "SQS": checks * per["sqs"] * PRICES["sqs_request"],
        # the checker's time against moto in process and a loopback registry: an order of magnitude
        "Lambda (checker time)": checks * per["checker_ms"] / 1000 * CHECKER_GB * LAMBDA_GB_S
        + invocations * LAMBDA_REQUEST,
    }
    fixed, free_tier = fixed_rows(metrics, alarms)
    rows.update(fixed)
    total = sum(rows.values())
    free = total - free_tier
    print(f"a month of {tags} tags every 15 minutes, steady state (measured counts x cited prices):")
    for name, usd in rows.items():
        print(f"  {name:32} ${usd:7.2f}")
    print(f"  {'total':32} ${total:7.2f} (${free:.2f} within the account's free metrics, alarms, dashboards)")
    return total, free


if __name__ == "__main__":
    main()
