"""Planner routing on the fakes: every cached tag in scope, chunked, plus the repairs that are due."""

from __future__ import annotations

import json
from datetime import timedelta

from ptc_sync.journal import LEASE
from ptc_sync.work import WorkKind
from tests.fakes import Fakes, image

REPO = "docker-hub/library/node"


def test_every_cached_tag_is_planned_in_chunks() -> None:
    fakes = Fakes(tags_per_message=2)
    for tag in ("a", "b", "c"):
        fakes.cached(REPO, tag)
    plan = fakes.planner().plan()
    assert [(i.repository, i.tags) for i in plan.items] == [(REPO, ("a", "b")), (REPO, ("c",))]
    assert plan.expected == 3
    assert not plan.errors


def test_a_due_repair_of_a_tag_ecr_no_longer_lists_is_routed_to_its_repository() -> None:
    fakes = Fakes()
    old = fakes.cached(REPO, "lts")
    fakes.cached(REPO, "22")
    lease = fakes.journal.acquire(REPO, "lts", "killed", fakes.clock.now())
    fakes.journal.mark_removing(
        lease, old_digest=old.digest, backup_tag="b", expected_digest=old.digest, now=fakes.clock.now()
    )
    fakes.ecr.delete_tags(REPO, ["lts"])  # the killed refresh had removed it
    fakes.clock.advance(LEASE + timedelta(minutes=1))
    plan = fakes.planner().plan()
    (work,) = plan.items
    assert work.kind is WorkKind.CHECK
    assert set(work.tags) == {"22", "lts"}


def test_a_live_intent_is_not_routed() -> None:
    fakes = Fakes()
    old = fakes.cached(REPO, "lts")
    fakes.cached(REPO, "22")
    lease = fakes.journal.acquire(REPO, "lts", "running", fakes.clock.now())
    fakes.journal.mark_removing(
        lease, old_digest=old.digest, backup_tag="b", expected_digest=old.digest, now=fakes.clock.now()
    )
    fakes.ecr.delete_tags(REPO, ["lts"])
    (work,) = fakes.planner().plan().items
    assert work.tags == ("22",)


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
