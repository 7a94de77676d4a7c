"""One scheduled run over N cached tags where a fraction is stale, on the local testbed.

Prints the run's wall time, the ECR calls by operation, the upstream requests by kind, and the
outcomes. Figures, not assertions: ``make bench-sync`` (a script, never a timed test).

    python -m bench.sync_run [--tags 500] [--repos 50] [--stale 0.05]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)

from ptc_sync.local_run import run_locally
from ptc_sync.models import Outcome
from testbed.registry import RegistryServer
from testbed.sandbox import Sandbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tags", type=int, default=500)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--stale", type=float, default=0.05)
    args = parser.parse_args()
    per_repo = max(1, args.tags // args.repos)
    with (
        tempfile.TemporaryDirectory(prefix="ptc-bench-") as tmp,
        RegistryServer(Path(tmp)) as registry,
        Sandbox(registry) as box,
    ):
        t0 = time.perf_counter()
        names: list[tuple[str, str, str]] = []
        for r in range(args.repos):
            upstream = f"bench/app{r:04d}"
            image = box.pusher.push_image(upstream, "t0", layers=1, layer_size=64)
            for t in range(per_repo):
                tag = f"t{t}"
                if t:
                    box.pusher.put_manifest(upstream, tag, image.manifest, image.media_type)
                names.append((f"ecr-public/{upstream}", upstream, tag))
        for name, _, tag in names:
            box.cache(name, tag)
        stale_count = round(len(names) * args.stale)
        step = max(1, len(names) // max(1, stale_count))
        stale = names[::step][:stale_count]
        for _, upstream, tag in stale:
            box.pusher.push_image(upstream, tag, layers=1, layer_size=64)
        seeded = time.perf_counter() - t0

        app = box.build_app()
        ecr_calls: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            ecr_calls[model.name] += 1

        app.ecr.client.meta.events.register("before-parameter-build.ecr", count)
        t1 = time.perf_counter()
        report = run_locally(app)
        wall = time.perf_counter() - t1

    outcomes = Counter(r.outcome.value for r in report.results)
    requests = app.registry.counts()
    total_ecr = sum(ecr_calls.values())
    print(f"seeded {len(names)} cached tags in {args.repos} repos ({stale_count} stale) in {seeded:.1f} s")
    print(f"outcomes: {dict(outcomes)}")
    print(
        "ECR calls: " + ", ".join(f"{k}={v}" for k, v in sorted(ecr_calls.items())) + f" (total {total_ecr})"
    )
    print("upstream requests: " + ", ".join(f"{k}={v}" for k, v in sorted(requests.items())))
    refreshed = outcomes.get(Outcome.REFRESHED.value, 0)
    print(
        f"sync: tags={len(names)} stale={stale_count} refreshed={refreshed} wall_s={wall:.2f} "
        f"ecr_calls={total_ecr} ecr_writes={ecr_calls['PutImage'] + ecr_calls['BatchDeleteImage']} "
        f"upstream_requests={requests.get('requests', 0)} "
        f"upstream_per_tag={requests.get('requests', 0) / max(1, len(names)):.3f}"
    )


if __name__ == "__main__":
    main()
