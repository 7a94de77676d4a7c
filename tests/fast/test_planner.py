"""Planner routing on the fakes: every cached tag in scope, chunked, plus the repairs that are due."""

from __future__ import annotations

import json
from datetime import timedelta

from ptc_sync.journal import LEASE
from ptc_sync.work import MAX_REPOSITORIES_PER_ITEM, WorkKind
from tests.fakes import Fakes, image

REPO = "docker-hub/library/node"


def test_the_planner_lists_repositories_and_reads_no_tag() -> None:
    """The schedule's cost grows with repositories: one scan item per MAX_REPOSITORIES_PER_ITEM
    repositories, and not one DescribeImages call by the planner."""
    fakes = Fakes()
    names = [f"docker-hub/library/r{i:03}" for i in range(MAX_REPOSITORIES_PER_ITEM + 3)]
    for name in names:
        fakes.cached(name, "lts")
    fakes.ecr.calls.clear()
    plan = fakes.planner().plan()
    assert [i.kind for i in plan.items] == [WorkKind.SCAN, WorkKind.SCAN]
    assert [r for i in plan.items for r in i.repositories] == sorted(names)
    assert plan.expected == 2  # the run waits for work items, not tags
    assert [c for c in fakes.ecr.calls if c[0] == "DescribeImages"] == []
    assert not plan.errors


def test_a_due_repair_of_a_repository_no_scan_covers_is_routed_to_it() -> None:
    fakes = Fakes(repository_exclude=(REPO,))  # out of scope now: no scan lists it
    old = fakes.cached(REPO, "lts")
    lease = fakes.journal.acquire(REPO, "lts", "killed", fakes.clock.now())
    fakes.journal.mark_removing(
        lease, old_digest=old.digest, backup_tag="b", expected_digest=old.digest, now=fakes.clock.now()
    )
    fakes.ecr.delete_tags(REPO, ["lts"])  # the killed refresh had removed it
    fakes.clock.advance(LEASE + timedelta(minutes=1))
    (work,) = fakes.planner().plan().items
    assert (work.kind, work.repository, work.tags) == (WorkKind.CHECK, REPO, ("lts",))


def test_a_due_repair_in_a_scanned_repository_is_left_to_its_scan() -> None:
    fakes = Fakes()
    old = fakes.cached(REPO, "lts")
    fakes.cached(REPO, "22")
    lease = fakes.journal.acquire(REPO, "lts", "killed", fakes.clock.now())
    fakes.journal.mark_removing(
        lease, old_digest=old.digest, backup_tag="b", expected_digest=old.digest, now=fakes.clock.now()
    )
    fakes.ecr.delete_tags(REPO, ["lts"])
    fakes.clock.advance(LEASE + timedelta(minutes=1))
    (work,) = fakes.planner().plan().items
    assert work.kind is WorkKind.SCAN
    assert work.repositories == (REPO,)


def test_send_starts_the_run_and_queues_the_items() -> None:
    fakes = Fakes()
    fakes.cached(REPO, "lts")
    planner = fakes.planner()
    plan = planner.plan()
    assert planner.send(plan) == 1
    assert fakes.queue.sent == plan.items
    assert fakes.state.run_progress(plan.run_id) is not None


def test_semver_discovery_passes_the_variant_and_prerelease_options() -> None:
    """A discovery spec's ``variant`` picks one flavour and ``include_prerelease`` admits
    pre-releases: the planner hands both to the version matcher (they were parsed and ignored)."""
    tags = ("3.13.1", "3.13.2", "3.13.2-slim", "3.13.1-slim", "3.14.0-rc.1", "3.14.0-rc.1-slim")
    fakes = Fakes(
        discover=json.dumps(
            [
                {"repository": REPO, "semver": ">=3.13.0", "max_new": 1, "variant": "slim"},
                {"repository": REPO, "semver": ">=3.13.0-0", "max_new": 1, "include_prerelease": True},
            ]
        )
    )
    for tag in tags:
        fakes.upstream.push("library/node", tag, image(tag))
    warm = [i for i in fakes.planner().plan().items if i.kind is WorkKind.WARM]
    assert sorted(t for i in warm for t in i.tags) == ["3.13.2-slim", "3.14.0-rc.1"]
