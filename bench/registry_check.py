"""Benchmark: checking N tags across M repositories on the loopback registry behind a delaying proxy.

    .venv/bin/python -m bench.registry_check [--tags 2000 --repos 50 --concurrency 64 --latency-ms 50]

A real distribution registry holds M repositories (single-platform Docker and OCI images, Docker
manifest lists, OCI indexes) with N tags in all; a small fraction of tags is then re-pushed upstream
(a release under an old tag). The client resolves every tag through ``LatencyProxy`` (a fixed added
latency per request, one more per new connection) via the real mapping of a Docker Hub upstream
(``registry-1.docker.io`` → the proxy through the test-only host override), and every answer is
checked against what was pushed. Requests are counted by the proxy, not by the client under test.

Printed: wall time; the ideal ceil(N / concurrency) * latency; their ratio; upstream requests per
tag; manifest GETs per unchanged tag; and, as a peer, ``skopeo inspect --raw`` run sequentially
over the first tags (per-tag time and requests). The last line is machine-readable:

    bench: tags=N concurrency=C latency_ms=L wall_s=… ideal_s=… ratio=… requests_per_tag=… …
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import urllib3

from ptc_sync.models import ResolvedDigest, UpstreamKind, UpstreamRef
from ptc_sync.registry import RegistryClient, RegistryError
from testbed.images import ImagePusher, PushedImage
from testbed.latency_proxy import LatencyProxy
from testbed.registry import RegistryServer

UPSTREAM_HOST = "registry-1.docker.io"


@dataclass
class Tag:
    repository: str
    tag: str
    cached_digest: str  # what the cache would hold (the digest before the upstream change)
    upstream_digest: str  # what upstream holds now


def _base_image(pusher: ImagePusher, repo: str, i: int) -> PushedImage:
    match i % 4:
        case 0:
            return pusher.push_index(repo, "base", flavor="docker")
        case 1:
            return pusher.push_index(repo, "base", flavor="oci")
        case 2:
            return pusher.push_image(repo, "base", flavor="oci")
        case _:
            return pusher.push_image(repo, "base", flavor="docker")


def populate(registry: RegistryServer, tags: int, repos: int, changed: int, workers: int = 16) -> list[Tag]:
    """Push the repositories and tags; re-push ``changed`` tags with new content afterwards."""
    pusher = ImagePusher(registry.url)
    pusher.http = urllib3.PoolManager(maxsize=workers, retries=False, timeout=urllib3.Timeout(5, 30))
    names = [f"bench/app-{i:03d}" for i in range(repos)]
    with ThreadPoolExecutor(workers) as pool:
        bases = list(pool.map(lambda pair: _base_image(pusher, pair[1], pair[0]), enumerate(names)))
        plan = [(names[k % repos], bases[k % repos], f"v{k // repos}.{k % 7}.{k}") for k in range(tags)]
        list(pool.map(lambda p: pusher.put_manifest(p[0], p[2], p[1].manifest, p[1].media_type), plan))
        out = [Tag(repo, tag, base.digest, base.digest) for repo, base, tag in plan]
        step = max(1, tags // changed) if changed else 0
        moved = out[step // 2 :: step][:changed] if changed else []

        def move(t: Tag) -> None:
            t.upstream_digest = pusher.push_image(t.repository, t.tag, flavor="docker").digest

        list(pool.map(move, moved))
    return out


def skopeo_peer(proxy: LatencyProxy, tags: list[Tag]) -> tuple[float, float]:
    """Seconds and proxy-counted requests per tag for ``skopeo inspect --raw``, one tag after another."""
    proxy.reset()
    start = time.perf_counter()
    for t in tags:
        out = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{proxy.host}/{t.repository}:{t.tag}",
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"skopeo failed for {t.repository}:{t.tag}: {out.stderr.decode()[:300]}")
        got = "sha256:" + hashlib.sha256(out.stdout).hexdigest()
        if got != t.upstream_digest:
            raise RuntimeError(f"skopeo: {t.repository}:{t.tag} is {got}, expected {t.upstream_digest}")
    elapsed = time.perf_counter() - start
    stats = proxy.stats()
    return elapsed / len(tags), stats["requests"] / len(tags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="registry client benchmark")
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--changed", type=int, default=20, help="tags re-pushed upstream (stale in the cache)"
    )
    parser.add_argument("--skopeo-tags", type=int, default=100, help="0 skips the skopeo peer")
    args = parser.parse_args(argv)
    n, c, latency = args.tags, args.concurrency, args.latency_ms / 1000

    with (
        tempfile.TemporaryDirectory(prefix="ptc-bench-") as tmp,
        RegistryServer(Path(tmp) / "registry") as reg,
    ):
        t0 = time.perf_counter()
        tags = populate(reg, n, args.repos, args.changed)
        print(f"populated {n} tags in {args.repos} repositories in {time.perf_counter() - t0:.1f}s")
        with LatencyProxy(reg.host, latency) as proxy:
            client = RegistryClient(host_override={UPSTREAM_HOST: proxy.url}, max_per_host=c, read_timeout=30)
            items = [
                (UpstreamRef(UPSTREAM_HOST, t.repository, UpstreamKind.DOCKER_HUB, "docker-hub"), t.tag)
                for t in tags
            ]
            expected = {(t.repository, t.tag): t for t in tags}
            proxy.reset()
            start = time.perf_counter()
            results = list(client.resolve_many(items, max_workers=c))
            wall = time.perf_counter() - start
            stats = proxy.stats()
            client.close()

            errors = [r for _, _, r in results if isinstance(r, RegistryError)]
            wrong = [
                (ref.repository, tag)
                for ref, tag, r in results
                if isinstance(r, ResolvedDigest)
                and r.digest != expected[(ref.repository, tag)].upstream_digest
            ]
            stale = sum(
                1
                for ref, tag, r in results
                if isinstance(r, ResolvedDigest) and r.digest != expected[(ref.repository, tag)].cached_digest
            )
            if len(results) != n or errors or wrong:
                print(f"FAILED: {len(results)} results, {len(errors)} errors, {len(wrong)} wrong digests")
                for e in errors[:5]:
                    print(f"  {e}")
                return 1
            unchanged = n - stale
            ideal = math.ceil(n / c) * latency
            ratio = wall / ideal
            requests_per_tag = stats["requests"] / n
            gets = stats["by_kind"].get("GET manifests", 0)
            gets_per_unchanged = gets / unchanged if unchanged else 0.0
            print(f"checked {n} tags ({stale} stale, {unchanged} unchanged), all digests match upstream")
            print(
                f"wall {wall:.3f}s, ideal ceil({n}/{c}) x {args.latency_ms:g}ms = {ideal:.3f}s, "
                f"ratio {ratio:.3f}"
            )
            print(
                f"upstream requests {stats['requests']} ({requests_per_tag:.4f}/tag) over "
                f"{stats['connections']} connections: {stats['by_kind']}"
            )
            print(f"client counters: {client.counts()}")
            print(f"manifest GETs {gets} ({gets_per_unchanged:.4f} per unchanged tag)")

            skopeo_s = float("nan")
            if args.skopeo_tags and shutil.which("skopeo"):
                peer = tags[: args.skopeo_tags]
                skopeo_s, skopeo_req = skopeo_peer(proxy, peer)
                print(
                    f"skopeo inspect --raw, sequential over {len(peer)} tags: {skopeo_s:.3f}s/tag, "
                    f"{skopeo_req:.2f} requests/tag (client above: {wall / n:.5f}s/tag at concurrency {c})"
                )
            elif args.skopeo_tags:
                print("skopeo not installed: peer skipped")

    print(
        f"bench: tags={n} concurrency={c} latency_ms={args.latency_ms:g} wall_s={wall:.3f} "
        f"ideal_s={ideal:.3f} ratio={ratio:.3f} requests_per_tag={requests_per_tag:.4f} "
        f"gets_per_unchanged={gets_per_unchanged:.4f} skopeo_s_per_tag={skopeo_s:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
