"""The never-lose-a-tag scenarios under both answers to every ECR behaviour nobody has public evidence
for (issue 15 item 1; docs/ecr-facts.md, "Still unknown"; docs/ecr-behaviour.md, rows marked unknown).

The emulation answers each unknown with a switch (testbed/ecr_ptc); the code must be safe whichever
way a real account answers. Every scenario of tests/reliability/test_never_lose.py runs here once per
setting of each switch, on a world of its own:

- ``reimport_after_delete`` (pulls.py): whether BatchDeleteImage of a cached tag then BatchGetImage by
  tag through the API imports upstream's current image again;
- ``import_into_pushed_repositories`` (pulls.py): whether ECR imports into a repository under a ROOT
  rule that it did not create (one the team pushes to);
- ``put_image_in_cache`` (images.py): whether PutImage works in a repository of a pull-through cache
  namespace (the backup tag is written with it);
- ``describe_lag`` (images.py): whether DescribeImages keeps showing a removed tag's old digest for a
  while (read-after-delete consistency);
- ``uncached_layer_answer`` (layers.py): what BatchCheckLayerAvailability answers for a blob a cached
  manifest references but ECR has not cached (UNAVAILABLE, or the failure MissingLayerDigest).

Under the switches that leave a refresh no way to succeed (no re-import after a delete, no PutImage
for the backup: ``OUTCOME_CHANGING``) a scenario's own assertions about outcomes ("refreshed", "one
import") cannot hold: the refresh fails and rolls back, or leaves the tag untouched. There only the
property is asserted; everywhere else the scenario's own assertions too. The property, after every
scenario under every setting: each tag of every repository the scenario cached is still there, on
its old digest or on the new one upstream moved it to. (A real account answers once, in its selftest:
a behaviour found failing makes the scheduled run report only, item 6.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from moto.ecr.models import ecr_backends

from testbed.ecr_ptc import LAYER_UNAVAILABLE
from testbed.registry import RegistryServer
from testbed.sandbox import ACCOUNT, REGION
from tests.reliability import harness
from tests.reliability import test_never_lose as scenarios
from tests.reliability.harness import Cached, World
from tests.reliability.test_never_lose import healed  # noqa: F401 - its autouse fixture, here too

# (attribute of the emulator, the two answers): the first is the emulation's default
SWITCHES: dict[str, tuple[Any, Any]] = {
    "reimport_after_delete": (True, False),
    "import_into_pushed_repositories": (True, False),
    "put_image_in_cache": (True, False),
    "describe_lag": (timedelta(0), timedelta(seconds=20)),
    "uncached_layer_answer": (LAYER_UNAVAILABLE, "MissingLayerDigest"),
}
SETTINGS = [(name, value) for name, values in SWITCHES.items() for value in values]
# the answers under which a refresh cannot succeed: the scenario's outcome assertions do not apply
OUTCOME_CHANGING = {
    ("reimport_after_delete", False),
    ("put_image_in_cache", False),
    ("import_into_pushed_repositories", False),  # a refresh of an included pushed repository fails
}
SWITCHED: dict[int, tuple[str, Any]] = {}  # id(world) -> its setting
SCENARIOS = [
    "test_a_128_character_tag_gets_an_addressable_backup",
    "test_a_double_fault_is_repaired_by_the_next_run",
    "test_a_duplicate_that_saw_the_tag_stale_does_not_refresh_it_again",
    "test_a_failed_refresh_stops_importing_and_is_alerted_once",
    "test_a_held_lease_means_in_progress_and_nothing_touched",
    "test_a_killed_holder_is_repaired_once_its_lease_runs_out",
    "test_a_sha512_upstream_digest_is_not_comparable",
    "test_no_time_for_a_refresh_leaves_the_tags_stale_and_untouched",
    "test_only_ledger_tags_are_backups",
    "test_root_rule_leaves_a_pushed_repository_alone",
    "test_time_running_out_before_the_remove_leaves_the_tag",
    "test_two_refreshers_overlapping_one_reports_in_progress",
    "test_two_refreshers_racing_one_refreshes",
]


def _id(setting: tuple[str, Any]) -> str:
    name, value = setting
    shown = f"{int(value.total_seconds())}s" if isinstance(value, timedelta) else str(value)
    return f"{name}={shown}"


@pytest.fixture(scope="module", params=SETTINGS, ids=[_id(s) for s in SETTINGS])
def world(request: pytest.FixtureRequest, registry: RegistryServer) -> Iterator[World]:
    """A world of its own per setting, the switch set before anything is cached."""
    name, value = request.param
    for world in harness.world_of(registry):
        assert hasattr(world.box.emulator, name), f"the emulation has no switch {name}"
        setattr(world.box.emulator, name, value)
        SWITCHED[id(world)] = (name, value)
        if name == "describe_lag":
            # the lag is ECR's answer to the code under test; the scenarios' own look at the tags
            # (World.tags, through DescribeImages too) must see what ECR holds, or they judge the lag
            world.tags = functools.partial(held_tags, world)  # type: ignore[method-assign]
        yield world
        SWITCHED.pop(id(world), None)


def held_tags(world: World, repository: str) -> dict[str, str]:
    """The tags ``repository`` holds, read from the emulated store (no DescribeImages lag)."""
    repo = ecr_backends[ACCOUNT][REGION].repositories.get(repository)
    if repo is None:
        return {}
    return {tag: image.get_image_digest() for image in repo.images for tag in image.image_tags}


def never_lost(world: World, created: list[Cached]) -> list[str]:
    """Every tag the scenario cached is still cached, on its old digest or upstream's new one."""
    problems = []
    for cached in created:
        now = world.tags(cached.name)
        for tag, digest in cached.before.items():
            allowed = {digest, cached.new.get(tag)}
            if now.get(tag) not in allowed:
                problems.append(
                    f"{cached.name}:{tag} is {now.get(tag)}, not {sorted(str(a) for a in allowed)}"
                )
    return problems


def under_switches(scenario: Callable[..., None]) -> Callable[..., None]:
    """``scenario`` with the property checked after it, its own assertions waived where the setting
    leaves a refresh no way to succeed."""

    @functools.wraps(scenario)
    def run(**kwargs: Any) -> None:
        world: World = kwargs["world"]
        created: list[Cached] = []
        original = harness.cache_repo

        def spy(*args: Any, **kw: Any) -> Cached:
            cached = original(*args, **kw)
            created.append(cached)
            return cached

        harness.cache_repo = spy
        try:
            scenario(**kwargs)
        except AssertionError:
            if SWITCHED.get(id(world)) not in OUTCOME_CHANGING:
                raise
        finally:
            harness.cache_repo = original
        problems = never_lost(world, created)
        assert not problems, f"{SWITCHED.get(id(world))}: tags lost:\n" + "\n".join(problems)

    return run


for _name in SCENARIOS:
    globals()[_name] = under_switches(getattr(scenarios, _name))
