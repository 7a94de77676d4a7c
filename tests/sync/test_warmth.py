"""Warm means ECR serves every blob itself, and a refresh survives ECR's read-after-delete lag.

Facts (docs/ecr-behaviour.md, ecr-facts 2026-12-01): for a layer not cached yet GetDownloadUrlForLayer
answers a URL on upstream's own storage and ECR caches it in the background (reported,
containers-roadmap #939, #2304), so only BatchCheckLayerAvailability's AVAILABLE proves a node without
a route to upstream can pull it; right after BatchDeleteImage, DescribeImages may still show the old
digest (unknown). The sandbox here switches both on: layers cache after ``layer_cache_delay`` of the
emulated clock, and DescribeImages lags ``LAG`` behind a removed tag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync import wiring
from ptc_sync.local_run import run_locally
from ptc_sync.models import Outcome, TagResult
from ptc_sync.refresh import Step, is_backup_tag
from testbed.images import PushedImage
from testbed.lambdas import Stack
from testbed.registry import RegistryServer
from testbed.sandbox import PUBLIC_HOST, Sandbox
from tests.faults import AwsFaults

LAG = timedelta(seconds=8)  # DescribeImages shows a removed tag's old digest this long
BIG_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/s390x")

MakeBox = Callable[..., Sandbox]


@pytest.fixture
def sandbox(registry: RegistryServer) -> Iterator[MakeBox]:
    """A sandbox with the read-after-delete lag on (``LAG``) and the given emulator switches."""
    with ExitStack() as boxes:

        def make(**options: Any) -> Sandbox:
            options.setdefault("describe_lag", LAG)
            return boxes.enter_context(Sandbox(registry, **options))

        yield make
    wiring.set_app(None)


def blobs_of(image: PushedImage) -> set[str]:
    """Every config and layer digest of every platform."""
    parts = image.children or (image,)
    return {b.digest for p in parts for b in (*([p.config] if p.config else []), *p.layers)}


def node_pull(box: Sandbox, repository: str, tag: str) -> set[str]:
    """What a node does on its first pull through ECR: the manifest by tag, each platform's manifest
    by digest, then each blob, which ECR must serve itself (AVAILABLE, an S3 URL, never upstream's
    host). Returns the blobs pulled; fails an assertion for a blob ECR does not serve itself."""
    ecr = box.client("ecr")
    accept = sorted(mt.MANIFEST_TYPES)
    (top,) = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=accept
    )["images"]
    doc = json.loads(top["imageManifest"])
    manifests = [doc]
    for entry in doc.get("manifests", []):
        (child,) = ecr.batch_get_image(
            repositoryName=repository, imageIds=[{"imageDigest": entry["digest"]}], acceptedMediaTypes=accept
        )["images"]
        manifests.append(json.loads(child["imageManifest"]))
    blobs = {d["digest"] for m in manifests for d in [m.get("config"), *m.get("layers", [])] if d}
    checked = ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=sorted(blobs))
    assert checked["failures"] == []
    assert {layer["layerDigest"]: layer["layerAvailability"] for layer in checked["layers"]} == dict.fromkeys(
        blobs, "AVAILABLE"
    )
    for digest in blobs:
        url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
        host = urlsplit(url).hostname or ""
        assert host.endswith(".amazonaws.com"), f"{digest} served from {host}, not by ECR"
    return blobs


# -- pre-warm ---------------------------------------------------------------------------------------------


def test_prewarm_reports_warming_until_ecr_serves_every_blob_itself(
    sandbox: MakeBox, unique_repo: str
) -> None:
    box = sandbox(layer_cache_delay=timedelta(seconds=90))
    image = box.pusher.push_index(unique_repo, "1.0", layers=2)
    name = f"ecr-public/{unique_repo}"
    blobs = blobs_of(image)
    refresher = box.build_app(verify_timeout_seconds=30).refresher

    first = refresher.prewarm(name, "1.0")

    assert not first.ok, "ECR still sends nodes upstream for the blobs: not warmed"
    assert first.failed_step is Step.WARM
    assert (first.blobs_warmed, first.blobs_warming) == (0, len(blobs))
    assert f"{len(blobs)} of {len(blobs)} layers still warming" in first.reason
    assert first.new_digest == image.digest
    assert box.tag_digest(name, "1.0") == image.digest, "the image itself is cached"
    box.emulator.set_upstream_unreachable(PUBLIC_HOST)
    with pytest.raises(AssertionError):
        node_pull(box, name, "1.0")  # a node without a route to upstream cannot pull it yet
    box.emulator.set_upstream_unreachable(PUBLIC_HOST, False)

    box.clock.advance(timedelta(seconds=60))  # the next run: ECR has cached the blobs since
    second = refresher.prewarm(name, "1.0")

    assert second.ok, second.reason
    assert (second.blobs_warmed, second.blobs_warming) == (len(blobs), 0)
    assert second.reason == ""
    assert second.platforms == ("linux/amd64", "linux/arm64")


def test_prewarm_waits_within_its_bound_for_blobs_that_cache_slowly(
    sandbox: MakeBox, unique_repo: str
) -> None:
    box = sandbox(layer_cache_delay=timedelta(seconds=12))
    image = box.pusher.push_image(unique_repo, "1.0", layers=3)
    name = f"ecr-public/{unique_repo}"
    started = box.clock.now()

    result = box.build_app(verify_timeout_seconds=30).refresher.prewarm(name, "1.0")

    assert result.ok, result.reason
    assert result.blobs_warmed == len(blobs_of(image))
    waited = box.clock.now() - started
    assert timedelta(seconds=12) <= waited < timedelta(seconds=30), "polled until ready, not to the bound"


def test_after_prewarm_a_node_with_no_route_to_upstream_pulls_a_big_multi_platform_image(
    sandbox: MakeBox, unique_repo: str
) -> None:
    """The seed case: a node in a private subnet pulls a big image for the first time. Pre-warmed,
    every manifest and blob of every platform comes from ECR itself, upstream unreachable; an image
    only pulled by tag (never pre-warmed) fails the same pull."""
    box = sandbox(layer_cache_delay=timedelta(seconds=5))
    big = box.pusher.push_index(unique_repo, "big", platforms=BIG_PLATFORMS, layers=4, layer_size=64 * 1024)
    cold = box.pusher.push_index(unique_repo, "cold", platforms=BIG_PLATFORMS, layers=2)
    name = f"ecr-public/{unique_repo}"

    result = box.build_app().refresher.prewarm(name, "big")
    assert result.ok, result.reason
    assert result.platforms == BIG_PLATFORMS
    assert result.blobs_warmed == len(blobs_of(big)) == 3 * (4 + 1)
    assert box.cache(name, "cold") == cold.digest  # cached by a pull, blobs never asked for

    box.emulator.set_upstream_unreachable(PUBLIC_HOST)  # the node's, and now ECR's, view of upstream

    assert node_pull(box, name, "big") == blobs_of(big)
    with pytest.raises(AssertionError):
        node_pull(box, name, "cold")


# -- refresh ----------------------------------------------------------------------------------------------


def stale_index(box: Sandbox, repo: str, tag: str = "stable") -> tuple[str, PushedImage, PushedImage]:
    old = box.pusher.push_index(repo, tag)
    name = f"ecr-public/{repo}"
    assert box.cache(name, tag) == old.digest
    return name, old, box.pusher.push_index(repo, tag)


def result_of(box: Sandbox, name: str, inject: Callable[[AwsFaults], None] | None = None) -> TagResult:
    app = box.build_app()
    if inject is not None:
        inject(AwsFaults(app.ecr.client))
    (result,) = [r for r in run_locally(app).results if r.repository == name]
    return result


def test_refresh_waits_out_the_read_after_delete_lag_without_rolling_back(
    sandbox: MakeBox, unique_repo: str
) -> None:
    box = sandbox(layer_cache_delay=timedelta(seconds=2))
    name, old, new = stale_index(box, unique_repo)
    started = box.clock.now()

    result = result_of(box, name)

    assert result.outcome is Outcome.REFRESHED, result.reason
    assert "rolled back" not in result.reason
    assert "warming" not in result.reason, "every blob was ECR's by the end of the bound"
    assert box.clock.now() - started >= LAG, "verify saw the old digest and waited it out"
    tags = box.tags(name)
    assert tags["stable"] == new.digest
    assert [d for t, d in tags.items() if is_backup_tag(t)] == [old.digest]
    assert node_pull(box, name, "stable") == blobs_of(new)


def test_refresh_whose_blobs_are_still_warming_at_the_bound_keeps_the_verified_tag(
    sandbox: MakeBox, unique_repo: str
) -> None:
    box = sandbox(layer_cache_delay=timedelta(minutes=10))
    name, _old, new = stale_index(box, unique_repo)

    result = result_of(box, name)

    assert result.outcome is Outcome.REFRESHED, result.reason
    n = len(blobs_of(new))
    assert f"{n} of {n} layers still warming" in result.reason
    assert box.tag_digest(name, "stable") == new.digest


def test_a_failed_refresh_under_the_lag_still_puts_the_old_image_back(
    sandbox: MakeBox, unique_repo: str
) -> None:
    """Right after the delete DescribeImages still shows the old digest: the rollback must write the
    old manifest back, not take that read for a tag that never went."""
    box = sandbox()
    name, old, _new = stale_index(box, unique_repo)

    def deny_import(faults: AwsFaults) -> None:
        faults.fail(
            "BatchGetImage",
            "AccessDeniedException",
            when=lambda p: p.get("imageIds", [{}])[0].get("imageTag") == "stable",
        )

    result = result_of(box, name, deny_import)

    assert result.outcome is Outcome.REFRESH_FAILED
    assert result.reason.startswith("import: "), result.reason
    assert "(rolled back)" in result.reason
    box.clock.advance(LAG)  # past the lag, DescribeImages tells the truth
    tags = box.tags(name)
    assert tags["stable"] == old.digest, "the tag is back on its old image"
    assert not [t for t in tags if is_backup_tag(t)]


def test_a_scheduled_prewarm_still_warming_is_reported_warming_not_failed(
    sandbox: MakeBox, unique_repo: str
) -> None:
    box = sandbox(layer_cache_delay=timedelta(minutes=10))
    box.pusher.push_image(unique_repo, "1.0")
    name = f"ecr-public/{unique_repo}"
    stack = Stack(box)
    app = box.build_app(prewarm_images=f"{name}:1.0")
    wiring.set_app(app)
    planned = dict(stack.schedule({"source": "ptc-sync.schedule", "mode": "scheduled"}))
    stack.drain()
    state, _queue = app.fanout()
    progress = state.run_progress(planned["run_id"])
    assert progress is not None
    assert progress.totals() == {Outcome.WARMING.value: 1}


def test_a_prewarm_still_warming_is_warmed_again_next_run_until_warm(
    sandbox: MakeBox, unique_repo: str
) -> None:
    """The next scheduled run queues the cached-but-warming image as a pre-warm again (not only a
    check), and it leaves 'warming' once ECR serves every blob."""
    box = sandbox(layer_cache_delay=timedelta(minutes=10))
    box.pusher.push_image(unique_repo, "1.0")
    name = f"ecr-public/{unique_repo}"
    stack = Stack(box)
    app = box.build_app(prewarm_images=f"{name}:1.0")
    wiring.set_app(app)
    state, _queue = app.fanout()

    def run() -> tuple[dict[str, Any], dict[str, int]]:
        planned = dict(stack.schedule({"source": "ptc-sync.schedule", "mode": "scheduled"}))
        stack.drain()
        progress = state.run_progress(planned["run_id"])
        assert progress is not None
        return planned, progress.totals()

    _first, first = run()
    box.clock.advance(timedelta(minutes=15))  # past the layer cache delay
    second_plan, second = run()
    box.clock.advance(timedelta(minutes=15))
    _third, third = run()

    assert first == {Outcome.WARMING.value: 1}
    assert second_plan["messages"] == 2, "the pre-warm item, and its repository's scan leaving it out"
    assert second_plan["tags"] == 1
    assert second == {Outcome.SKIPPED.value: 1}, "warm now: cached already, layers warmed"
    assert third == {Outcome.FRESH.value: 1}, "then checked like any other cached tag"
