"""`make demo`: the scheduled sync for real, on the local testbed, with no AWS account.

1. starts a real registry (Debian's docker-registry) on loopback as the upstream of two
   pull-through cache rules (``ecr-public`` → public.ecr.aws, ``docker-hub`` → registry-1.docker.io),
   emulated on moto by testbed/ecr_ptc.py;
2. pushes images upstream (single-platform, Docker manifest list, OCI index) and pulls them through
   the cache, as people pulling would;
3. publishes new upstream versions of some tags and deletes one;
4. invokes the real handler (functions/sync/app.py) with events/scheduled.json and prints each tag's
   outcome, the SNS message as chat shows it, and the metrics;
5. runs again: everything is fresh. Then stops the registry and removes its storage.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
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
from ptc_sync.models import short_digest  # noqa: E402
from testbed.registry import RegistryServer  # noqa: E402
from testbed.sandbox import Sandbox  # noqa: E402


class Context:
    function_name = "ptc-sync-SyncFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ptc-sync-SyncFunction"
    aws_request_id = "demo"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def load_handler() -> Any:
    spec = importlib.util.spec_from_file_location("sync_app", ROOT / "functions" / "sync" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def invoke(box: Sandbox, handler: Any) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    event = json.loads((ROOT / "events" / "scheduled.json").read_text())
    wiring.set_app(box.build_app())
    out = io.StringIO()
    # Powertools' handlers hold the stream they were created with: point them at the buffer too
    handlers = [h for h in logging.getLogger("ptc-sync").handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(out) for h in handlers]
    try:
        with contextlib.redirect_stdout(out):
            summary = handler(event, Context())
    finally:
        for h, stream in zip(handlers, previous, strict=True):
            if stream is not None:
                h.setStream(stream)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line]
    logs = [line for line in lines if "_aws" not in line]
    return summary, emf, logs


def show(
    title: str, summary: dict[str, Any], emf: list[dict[str, Any]], logs: list[dict[str, Any]], box: Sandbox
) -> None:
    print(f"\n=== {title} ===")
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
        body = json.loads(messages[0]["Message"])
        print("\nSNS message, as chat shows it:")
        print(f"  {body['content']['title']}")
        for line in body["content"]["description"].splitlines():
            print(f"  {line}")
        for step in body["content"].get("nextSteps", []):
            print(f"  next: {step}")
    else:
        print("\nSNS: nothing published (nothing notable)")
    print("\nmetrics (EMF):")
    for blob in emf:
        dims = blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
        label = ", ".join(f"{d}={blob[d]}" for d in dims)
        values = {m["Name"]: blob[m["Name"]][0] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        shown = ", ".join(f"{k}={v:g}" for k, v in values.items() if v)
        print(f"  [{label}] {shown or 'all zero'}")


def main() -> int:
    handler = load_handler()
    with tempfile.TemporaryDirectory(prefix="ptc-sync-demo-") as tmp, RegistryServer(Path(tmp)) as registry:
        print(f"upstream registry: docker-registry pid {registry.pid} at {registry.url}")
        with Sandbox(registry) as box:
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
            print("\nupstream releases: python:3.13-slim, node:lts, team/api:stable; team/old:0.9 deleted")
            p.push_index("library/python", "3.13-slim", flavor="oci")
            p.push_index("library/node", "lts")
            p.push_image("team/api", "stable")
            p.delete_tag("team/old", "0.9")

            show("first run", *invoke(box, handler), box)

            old_image = seeded["docker-hub/team/old"][1]
            p.put_manifest("team/old", "0.9", old_image.manifest, old_image.media_type)
            print("\nupstream restores team/old:0.9 (the same manifest, the same digest)")
            show("second run: everything fresh", *invoke(box, handler), box)
            wiring.set_app(None)
    print("\ndemo done: registry stopped, storage removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
