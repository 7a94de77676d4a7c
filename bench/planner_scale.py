"""The planner alone at fleet scale: N repositories of T tags each, every ECR, DynamoDB and SQS call
taking a fixed latency.

The real ``Planner`` and ``Discovery`` over the real ``EcrAdapter``; what stands in for AWS is a
small in-process ECR client (the three paginated reads the planner can make:
DescribePullThroughCacheRules, DescribeRepositories, DescribeImages, paged as ECR pages them: up
to 1,000 repositories or images a page), a journal and a run store, and a queue, each sleeping
``--latency-ms`` per call (30 ms by default: a realistic regional API call from Lambda). Prints the
wall time of ``plan()`` plus ``send()``, the peak of Python allocations (tracemalloc) during them,
the calls made by service, and a last machine-readable line. Figures, not assertions: run it on
two commits to compare (``make bench-planner``).

    python -m bench.planner_scale [--repos 20000] [--tags-per-repo 5] [--latency-ms 30]

The planner since the scan items reads no tag: its calls grow with repositories (one
DescribeRepositories page per 1,000), not with tags. The planner before them listed every
repository's tags (one DescribeImages call per repository at least), so run the old commit with
fewer repositories: its wall time is about ``repos * latency``.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ptc-sync")

from ptc_sync.discovery import Discovery
from ptc_sync.ecr import EcrAdapter
from ptc_sync.planner import Planner
from ptc_sync.settings import SyncSettings

ACCOUNT = "123456789012"
REGION = "us-east-1"
DIGEST = "sha256:" + "ab" * 32
PAGE = 1000  # ECR's largest page for DescribeRepositories and DescribeImages
MB = 1024 * 1024
PUSHED = datetime(2026, 1, 1, tzinfo=UTC)


class Calls:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.by_name: Counter[str] = Counter()
        self._lock = threading.Lock()

    def made(self, name: str) -> None:
        with self._lock:
            self.by_name[name] += 1
        time.sleep(self.latency)


class _Paginator:
    def __init__(self, pages: Any) -> None:
        self._pages = pages

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return self._pages(**kwargs)  # type: ignore[no-any-return]


class StandInEcr:
    """What the planner reads of ECR, paged like ECR, one latency per page."""

    def __init__(self, calls: Calls, repos: int, tags_per_repo: int) -> None:
        self.calls = calls
        self.names = [f"docker-hub/library/app{i:06d}" for i in range(repos)]
        self.tags = [f"1.{t}" for t in range(tags_per_repo)]

    def get_paginator(self, operation: str) -> _Paginator:
        return _Paginator(getattr(self, f"_{operation}"))

    def _describe_pull_through_cache_rules(self, **_: Any) -> Iterator[dict[str, Any]]:
        self.calls.made("ecr:DescribePullThroughCacheRules")
        yield {
            "pullThroughCacheRules": [
                {
                    "ecrRepositoryPrefix": "docker-hub",
                    "upstreamRegistryUrl": "registry-1.docker.io",
                    "upstreamRegistry": "docker-hub",
                    "registryId": ACCOUNT,
                    "credentialArn": (
                        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/hub"
                    ),
                }
            ]
        }

    def _describe_repositories(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        size = min(PAGE, kwargs.get("PaginationConfig", {}).get("PageSize", 100))
        for start in range(0, len(self.names), size):
            self.calls.made("ecr:DescribeRepositories")
            yield {
                "repositories": [
                    {
                        "repositoryName": name,
                        "repositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
                        "registryId": ACCOUNT,
                        "imageTagMutability": "MUTABLE",
                    }
                    for name in self.names[start : start + size]
                ]
            }

    def _describe_images(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        size = min(PAGE, kwargs.get("PaginationConfig", {}).get("PageSize", 100))
        for start in range(0, len(self.tags), size):
            self.calls.made("ecr:DescribeImages")
            yield {
                "imageDetails": [
                    {"imageDigest": DIGEST, "imageTags": [tag], "imagePushedAt": PUSHED}
                    for tag in self.tags[start : start + size]
                ]
            }


class StandInState:
    """The journal (no refresh under way), the run store and the queue, one latency per call."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.items = 0

    def due(self, repository: str | None = None) -> list[Any]:
        self.calls.made("dynamodb:Query")
        return []

    def backups(self, repository: str) -> list[Any]:
        self.calls.made("dynamodb:Query")
        return []

    def tag_states(self, keys: Any, *, consistent: bool = True) -> dict[Any, Any]:
        self.calls.made("dynamodb:BatchGetItem")
        return {}

    def start_run(self, run_id: str, expected_items: int, started_at: datetime) -> None:
        self.calls.made("dynamodb:PutItem")

    def send(self, items: Sequence[Any]) -> int:
        for start in range(0, len(items), 10):  # SendMessageBatch takes 10
            self.calls.made("sqs:SendMessageBatch")
            self.items += len(items[start : start + 10])
        return len(items)


class NoUpstream:
    """No tag discovery spec is planned here: the upstream is never asked."""

    def list_tags(self, ref: object, page_size: int = 1000) -> Iterator[str]:
        raise AssertionError("the planner bench plans no tag discovery")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=20_000)
    parser.add_argument("--tags-per-repo", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    args = parser.parse_args()

    calls = Calls(args.latency_ms / 1000)
    ecr = StandInEcr(calls, args.repos, args.tags_per_repo)
    store = StandInState(calls)
    settings = SyncSettings()
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    discovery = Discovery(EcrAdapter(ecr), store, settings, now=lambda: now)  # type: ignore[arg-type]
    planner = Planner(
        store,  # type: ignore[arg-type]
        store,  # type: ignore[arg-type]
        settings=settings,
        now=lambda: now,
        discovery=discovery,
        repairs=store,
        upstream=NoUpstream(),
    )

    tracemalloc.start()
    started = time.perf_counter()
    plan = planner.plan()
    planner.send(plan)
    wall = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()

    tags = args.repos * args.tags_per_repo
    ecr_calls = sum(n for name, n in calls.by_name.items() if name.startswith("ecr:"))
    print(
        f"planned {args.repos} repositories / {tags} tags at {args.latency_ms:g} ms per call: "
        f"{wall:.1f} s, peak {peak:.1f} MB of Python allocations, {len(plan.items)} work items, "
        f"{store.items} queued, errors {len(plan.errors)}"
    )
    print("  calls: " + ", ".join(f"{name}={n}" for name, n in sorted(calls.by_name.items())))
    print(
        f"  per repository: {ecr_calls / max(1, args.repos):.4f} ECR calls; "
        f"latency alone {sum(calls.by_name.values()) * args.latency_ms / 1000:.1f} s of the wall time"
    )
    print(
        f"planner_scale: repos={args.repos} tags={tags} latency_ms={args.latency_ms:g} wall_s={wall:.2f} "
        f"peak_mb={peak:.1f} items={len(plan.items)} ecr_calls={ecr_calls} "
        f"calls={sum(calls.by_name.values())} limit_s=300 within_limit={wall <= 300}"
    )


if __name__ == "__main__":
    main()
