"""`make demo`: the scheduled sync for real, on the local testbed, with no AWS account.

1. starts a real registry (Debian's docker-registry) on loopback as the upstream of two
   pull-through cache rules (``ecr-public`` → public.ecr.aws, ``docker-hub`` → registry-1.docker.io),
   emulated on moto by testbed/ecr_ptc;
2. pushes images upstream (single-platform, Docker manifest list, OCI index) and pulls them through
   the cache, as people pulling would;
3. the first run after the deploy: everything is fresh, and the report says what it watches
   ("watching N tags under M rules");
4. publishes new upstream versions of some tags and deletes one, then runs again through the deployed
   wiring with the real handlers: the schedule invokes the planner (functions/sync) with
   events/scheduled.json, the work queue feeds the checker (functions/checker) as Lambda's SQS event
   source would; prints each tag's outcome, the chat message as Slack renders it (testbed/render.py:
   the chat notifier's Slack payload, not its markdown), and the metrics;
5. runs again: everything is fresh, nothing is posted;
6. prints what an operator would see with the CLI (``ptc-sync history`` and ``ptc-sync runs``, tables
   read from the state table). Then stops the registry and removes its storage.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_SERVICE_NAME": "ptc-sync",
        "POWERTOOLS_METRICS_NAMESPACE": "PtcSync",
    }
)
os.environ.pop("AWS_PROFILE", None)

from ptc_sync import wiring  # noqa: E402 - the environment above must be set before boto3 loads
from ptc_sync.chat import slack  # noqa: E402
from ptc_sync.chat.model import NotAReport, chat_report, read_message  # noqa: E402
from ptc_sync.cli import main as cli_main  # noqa: E402
from ptc_sync.models import short_digest  # noqa: E402
from testbed.ecr_ptc import FakeClock  # noqa: E402
from testbed.lambdas import Stack  # noqa: E402
from testbed.registry import RegistryServer  # noqa: E402
from testbed.render import boxed, slack_blocks, use_ansi  # noqa: E402
from testbed.sandbox import REGION, Sandbox  # noqa: E402

# what the stack's chat notifier links by default (ChatDashboardUrl empty): the stack's dashboard
DASHBOARD_URL = f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards:name=ptc-sync-ptc-sync"


def invoke(box: Sandbox, stack: Stack) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    event = json.loads((ROOT / "events" / "scheduled.json").read_text())
    app = box.build_app()
    wiring.set_app(app)
    out = io.StringIO()
    # Powertools' handlers hold the stream they were created with: point them at the buffer too
    handlers = [h for h in logging.getLogger("ptc-sync").handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(out) for h in handlers]
    try:
        with contextlib.redirect_stdout(out):
            planned = dict(stack.schedule(event))
            delivery = stack.drain()
    finally:
        for h, stream in zip(handlers, previous, strict=True):
            if stream is not None:
                h.setStream(stream)
    state, _queue = app.fanout()
    progress = state.run_progress(planned["run_id"])
    planned["counts"] = progress.totals() if progress else {}
    planned["batches"] = delivery.invocations
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line and "TagsChecked" in line]
    logs = [line for line in lines if "_aws" not in line]
    return planned, emf, logs


def show(
    title: str, summary: dict[str, Any], emf: list[dict[str, Any]], logs: list[dict[str, Any]], box: Sandbox
) -> None:
    print(f"\n=== {title} ===")
    print(
        f"planner queued {summary['messages']} work item(s); the checker took {summary['batches']} batch(es)"
    )
    print(f"run {summary['run_id']}: {summary['counts']}")
    tag_lines = [entry for entry in logs if "outcome" in entry]
    if tag_lines:
        print("\nnot fresh (one log line each):")
        for entry in tag_lines:
            digests = ""
            if entry.get("upstream_digest"):
                digests = (
                    f" {short_digest(entry['cached_digest'])} -> {short_digest(entry['upstream_digest'])}"
                )
            reason = f"  ({entry['reason']})" if entry.get("reason") else ""
            print(f"  {entry['outcome']:<17} {entry['repository']}:{entry['tag']}{digests}{reason}")
    messages = box.messages()
    if messages:
        show_message(messages[0])
    else:
        print("\nSNS: nothing published (nothing notable)")
    print("\nmetrics (EMF):")
    for blob in emf:
        dims = blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
        label = ", ".join(f"{d}={blob[d]}" for d in dims)
        values = {m["Name"]: blob[m["Name"]][0] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        shown = ", ".join(f"{k}={v:g}" for k, v in values.items() if v)
        print(f"  [{label}] {shown or 'all zero'}")


def show_message(envelope: dict[str, Any]) -> None:
    """The published report as a Slack channel shows it: the chat notifier's payload, rendered."""
    body = json.loads(envelope["Message"])
    message = read_message(envelope["Message"])
    if isinstance(message, NotAReport):
        raise SystemExit(f"the report topic published something else: {message.reason}")
    report = chat_report(message, dashboard_url=DASHBOARD_URL)
    kind = body["metadata"]["additionalContext"].get("kind", "run")
    print(f"\nSNS message ({kind}; Chatbot JSON, email text), as Slack shows it:")
    print(boxed(slack_blocks(slack.payload(report), ansi=use_ansi())))


def show_cli(box: Sandbox, *commands: list[str]) -> None:
    """What an operator sees: ptc-sync CLI tables read from the stack's state table."""
    for command in commands:
        argv = [*command, "--table", box.table_name, "--region", REGION]
        print(f"\n$ ptc-sync {' '.join(command)} --table {box.table_name}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli_main(argv)
        print(out.getvalue().rstrip())
        print(f"(exit {code})")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ptc-sync-demo-") as tmp, RegistryServer(Path(tmp)) as registry:
        print(f"upstream registry: docker-registry pid {registry.pid} at {registry.url}")
        # the emulated clock starts an hour back, so the runs are in the CLI's (real-time) window
        clock = FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
        with Sandbox(registry, clock=clock) as box:
            stack = Stack(box)
            p = box.pusher
            seeded = {
                "ecr-public/library/python": (
                    "3.13-slim",
                    p.push_index("library/python", "3.13-slim", flavor="oci"),
                ),
                "ecr-public/library/node": ("lts", p.push_index("library/node", "lts")),
                "ecr-public/tools/jq": ("1.7", p.push_image("tools/jq", "1.7")),
                "ecr-public/tools/yq": ("4", p.push_image("tools/yq", "4", flavor="oci")),
                "docker-hub/team/api": ("stable", p.push_image("team/api", "stable")),
                "docker-hub/team/old": ("0.9", p.push_image("team/old", "0.9")),
            }
            for repository, (tag, image) in seeded.items():
                box.cache(repository, tag)
                print(f"cached {repository}:{tag} {short_digest(image.digest)}")

            show("first run after the deploy: everything fresh", *invoke(box, stack), box)

            print("\nupstream releases: python:3.13-slim, node:lts, team/api:stable; team/old:0.9 deleted")
            p.push_index("library/python", "3.13-slim", flavor="oci")
            p.push_index("library/node", "lts")
            p.push_image("team/api", "stable")
            p.delete_tag("team/old", "0.9")
            show("second run: upstream released", *invoke(box, stack), box)

            old_image = seeded["docker-hub/team/old"][1]
            p.put_manifest("team/old", "0.9", old_image.manifest, old_image.media_type)
            print("\nupstream restores team/old:0.9 (the same manifest, the same digest)")
            show("third run: everything fresh", *invoke(box, stack), box)

            print("\n=== the operator's view (ptc-sync CLI) ===")
            show_cli(box, ["history", "--since", "2h"], ["runs"])
            wiring.set_app(None)
    print("\ndemo done: registry stopped, storage removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
