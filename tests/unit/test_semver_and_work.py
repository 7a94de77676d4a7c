"""The work item model's validation (semver ranges themselves: test_semver.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ptc_sync.work import DiscoverySpec, WorkItem, WorkKind


def test_work_item_round_trip() -> None:
    item = WorkItem(
        run_id="r-1", kind=WorkKind.CHECK, repository="docker-hub/library/node", tags=("lts", "20")
    )
    assert WorkItem.model_validate_json(item.model_dump_json()) == item


@pytest.mark.parametrize(
    "body",
    [
        {"run_id": "r", "kind": "check", "repository": "https://evil.example.com/x"},
        {"run_id": "r", "kind": "check", "repository": "../../etc/passwd"},
        {"run_id": "r", "kind": "check", "repository": "docker-hub/Node"},
        {"run_id": "r", "kind": "check", "repository": "a/b", "tags": ["../x"]},
        {"run_id": "r", "kind": "check", "repository": "a/b", "host": "evil.example.com"},
        {"run_id": "r; rm -rf", "kind": "check", "repository": "a/b"},
        {"run_id": "r", "kind": "delete", "repository": "a/b"},
        {"run_id": "r", "kind": "check", "repository": "a/b", "tags": ["t"] * 101},
    ],
)
def test_hostile_work_items_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WorkItem.model_validate(body)


def test_discovery_spec_needs_exactly_one_matcher() -> None:
    assert DiscoverySpec(repository="a/b", semver="^1").max_new == 3
    with pytest.raises(ValidationError, match="exactly one"):
        DiscoverySpec(repository="a/b")
    with pytest.raises(ValidationError, match="exactly one"):
        DiscoverySpec(repository="a/b", pattern="x", semver="^1")
    with pytest.raises(ValidationError, match="regular expression"):
        DiscoverySpec(repository="a/b", pattern="(")


def test_discovery_spec_takes_a_variant_and_prereleases_for_semver_only() -> None:
    spec = DiscoverySpec.model_validate(
        {"repository": "a/b", "semver": "^3.13", "variant": "slim", "include_prerelease": True}
    )
    assert (spec.variant, spec.include_prerelease) == ("slim", True)
    assert DiscoverySpec(repository="a/b", semver="^3").variant is None
    with pytest.raises(ValidationError, match="pre-release, not a variant"):
        DiscoverySpec(repository="a/b", semver="^3", variant="rc1")
    with pytest.raises(ValidationError, match="not an image variant"):
        DiscoverySpec(repository="a/b", semver="^3", variant="-slim")
    with pytest.raises(ValidationError, match="go with semver"):
        DiscoverySpec(repository="a/b", pattern="3.*", variant="slim")
    with pytest.raises(ValidationError, match="image variant, not a semver pre-release"):
        DiscoverySpec(repository="a/b", semver=">=3.13.0-slim")
