"""Randomised runs: Hypothesis generates caches (repositories, tags, single- or multi-arch), upstream
changes (retag, delete, unchanged) and fault sequences (AWS errors at any refresh step, once, twice or
for good; upstream HTTP errors; imports that finish late or never), runs a sync (``local_run``: the
checker's path, on a state of its own, so no backoff holds the second run back) and checks the
invariant of the fault matrix over every example: no tag is lost or left on a digest nobody verified,
and every call count stays bounded. Once the faults clear, a second run converges: every tag upstream
moved is refreshed (or already fresh), none is lost.

The examples are derandomised (the same sequence on every machine and every run, no example database)
and bounded in number, so the module stays within CI's time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptc_sync.local_run import run_locally
from ptc_sync.models import Outcome
from ptc_sync.refresh import is_backup_tag
from ptc_sync.state import MemoryStateStore
from testbed.fault_server import Reply
from testbed.registry import RegistryServer
from tests.reliability import harness
from tests.reliability.conftest import MATRIX
from tests.reliability.harness import Cached, World, manifest_path

EXAMPLES = 24
BOUND_AWS_PER_OPERATION = 120
BOUND_UPSTREAM = 80


@dataclass(frozen=True)
class TagPlan:
    change: str  # "retag" | "delete" | "same"
    multi: bool


@dataclass(frozen=True)
class FaultPlan:
    target: int  # index into the example's (repository, tag) pairs
    kind: str
    times: int | None  # None: for good


AWS_FAULTS: dict[str, tuple[str, str, str]] = {
    # kind: (operation, error code, which calls: "tag", "digest", "backup", "restore", "any")
    "import-denied": ("BatchGetImage", "AccessDeniedException", "tag"),
    "import-throttled": ("BatchGetImage", "ThrottlingException", "tag"),
    "read-old-throttled": ("BatchGetImage", "ThrottlingException", "digest"),
    "backup-rejected": ("PutImage", "ImageTagAlreadyExistsException", "backup"),
    "restore-throttled": ("PutImage", "ThrottlingException", "restore"),
    "remove-throttled": ("BatchDeleteImage", "ThrottlingException", "tag"),
    "warm-denied": ("GetDownloadUrlForLayer", "AccessDeniedException", "any"),
    "verify-throttled": ("DescribeImages", "ThrottlingException", "tag"),
}
UPSTREAM_FAULTS: dict[str, tuple[str, Reply]] = {
    "head-503": ("HEAD", Reply(503)),
    "head-429": ("HEAD", Reply(429, {"Retry-After": "3"})),
    "head-401": ("HEAD", Reply(401)),
    "head-reset": ("HEAD", Reply(reset=True)),
    "get-502": ("GET", Reply(502)),  # ECR's import (and the client's GET fallback)
    "get-404": ("GET", Reply(404)),
}
OTHER_FAULTS = ("import-late", "import-never")

tag_plans = st.builds(TagPlan, st.sampled_from(["retag", "retag", "delete", "same"]), st.booleans())
caches = st.lists(st.lists(tag_plans, min_size=1, max_size=3), min_size=1, max_size=2)
fault_plans = st.lists(
    st.builds(
        FaultPlan,
        st.integers(min_value=0, max_value=5),
        st.sampled_from(sorted(AWS_FAULTS) + sorted(UPSTREAM_FAULTS) + list(OTHER_FAULTS)),
        st.sampled_from([1, 2, None]),
    ),
    max_size=3,
)


@pytest.fixture(scope="module")
def world(registry: RegistryServer) -> Iterator[World]:
    yield from harness.world_of(registry)


def build_cache(world: World, plan: list[list[TagPlan]]) -> list[Cached]:
    caches_ = []
    for tags in plan:
        upstream_repo = world.name("prop")
        name = f"ecr-public/{upstream_repo}"
        box = world.box
        names = [f"t{i}" for i in range(len(tags))]
        for tag, tp in zip(names, tags, strict=True):
            if tp.multi:
                box.pusher.push_index(upstream_repo, tag, platforms=harness.PLATFORMS)
            else:
                box.pusher.push_image(upstream_repo, tag, layers=1)
            world.cache(name, tag)
        cached = Cached(name, upstream_repo, "ecr-public", world.tags(name))
        for tag, tp in zip(names, tags, strict=True):
            if tp.change == "retag":
                push = box.pusher.push_index if tp.multi else box.pusher.push_image
                kw: dict[str, Any] = {"platforms": harness.PLATFORMS} if tp.multi else {"layers": 1}
                cached.new[tag] = push(upstream_repo, tag, **kw).digest
            elif tp.change == "delete":
                box.pusher.delete_tag(upstream_repo, tag)
                cached.gone.add(tag)
        caches_.append(cached)
    return caches_


def inject(world: World, app: harness.App, pairs: list[tuple[Cached, str]], faults: list[FaultPlan]) -> None:
    for fault in faults:
        cached, tag = pairs[fault.target % len(pairs)]
        if fault.kind in AWS_FAULTS:
            operation, code, which = AWS_FAULTS[fault.kind]

            def when(
                p: Mapping[str, Any], which: str = which, name: str = cached.name, tag: str = tag
            ) -> bool:
                if p.get("repositoryName") != name:
                    return False
                ids = p.get("imageIds") or [{}]
                put_tag = str(p.get("imageTag", ""))
                return {
                    "tag": any(i.get("imageTag") == tag for i in ids),
                    "digest": "imageDigest" in ids[0],
                    "backup": is_backup_tag(put_tag),
                    "restore": put_tag == tag,
                    "any": True,
                }[which]

            app.faults.fail("ecr", operation, code, when=when, times=fault.times)
        elif fault.kind in UPSTREAM_FAULTS:
            method, reply = UPSTREAM_FAULTS[fault.kind]
            world.upstream.inject(
                manifest_path(cached.upstream_repo, tag), reply, method=method, times=fault.times
            )
        elif fault.kind == "import-late":
            world.box.emulator.import_in_background(cached.name, tag, ready_after_calls=3)
        else:
            world.box.emulator.import_in_background(cached.name, tag, ready_after_calls=10**6)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=caches, faults=fault_plans)
def test_no_tag_is_lost_whatever_fails(
    world: World, plan: list[list[TagPlan]], faults: list[FaultPlan]
) -> None:
    MATRIX.examples += 1
    cached = build_cache(world, plan)
    pairs = [(c, t) for c in cached for t in c.before]
    scope = {"repository_include": ",".join(c.name for c in cached)}
    app = harness.build(world, **scope)
    inject(world, app, pairs, faults)
    never = any(f.kind == "import-never" for f in faults)

    report = run_locally(app.app, state=MemoryStateStore(app.clock.now))
    world.upstream.heal()

    problems = [p for c in cached for p in harness.check_invariant(world, c, list(report.results))]
    for op, n in app.faults.per_operation().items():
        if n > BOUND_AWS_PER_OPERATION:
            problems.append(f"{op} called {n} times")
    for c in cached:
        if world.upstream.count(f"/v2/{c.upstream_repo}/") > BOUND_UPSTREAM:
            problems.append(f"{c.name}: unbounded upstream requests")
    by_image = {r.image: r for r in report.results}
    for c in cached:
        for tag in c.before:
            result = by_image.get(f"{c.name}:{tag}")
            if result is None:
                problems.append(f"{c.name}:{tag} has no outcome")
            elif result.outcome in {Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR} and not result.reason:
                problems.append(f"{c.name}:{tag} {result.outcome.value} without a reason")
    assert not problems, "\n".join(problems)

    if never:
        return  # ECR never finishes that import: no run can converge, and none must lose the tag
    # the faults cleared: the next run converges, and still loses nothing
    again = harness.build(world, **scope)
    second = run_locally(again.app, state=MemoryStateStore(again.clock.now))
    both = [*report.results, *second.results]  # a digest verified by either run
    problems = [p for c in cached for p in harness.check_invariant(world, c, both)]
    outcomes = {r.image: r for r in second.results}
    for c in cached:
        after = world.tags(c.name)
        for tag, digest in c.new.items():
            result = outcomes.get(f"{c.name}:{tag}")
            if after.get(tag) != digest:
                reason = f"{result.outcome.value}: {result.reason}" if result else "no outcome"
                problems.append(f"{c.name}:{tag} did not converge to {digest} ({reason})")
    assert not problems, "\n".join(problems)
