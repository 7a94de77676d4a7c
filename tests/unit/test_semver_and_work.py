"""New-tag discovery's semver ranges and the work item model's validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ptc_sync.semver import newest_matching, newest_named, parse_range, parse_version
from ptc_sync.work import DiscoverySpec, WorkItem, WorkKind

TAGS = [
    "3.12.7",
    "3.13.0",
    "3.13.1-slim",
    "v3.13.2",
    "3.14.0rc1",
    "latest",
    "3.13",
    "4.0.0",
    "0.2.3",
    "0.2.9",
]


@pytest.mark.parametrize(
    ("rng", "expected"),
    [
        (">=3.13.0 <3.14.0", ["v3.13.2", "3.13.1-slim", "3.13.0", "3.13"]),
        ("^3.13", ["v3.13.2", "3.13.1-slim", "3.13.0", "3.13"]),  # 3.14.0rc1 is no version: left out
        ("~3.13.1", ["v3.13.2", "3.13.1-slim"]),
        ("3.12.x", ["3.12.7"]),
        ("=4.0.0 || 3.12", ["4.0.0", "3.12.7"]),
        ("^0.2.3", ["0.2.9", "0.2.3"]),
    ],
)
def test_ranges(rng: str, expected: list[str]) -> None:
    assert newest_matching(TAGS, rng) == expected


def test_regex_discovery_orders_versions_numerically_then_by_name() -> None:
    tags = ["v9", "v10", "v9.1", "latest", "nightly-20260102", "nightly-20260103"]
    assert newest_named(tags, r"v\d+(\.\d+)?") == ["v10", "v9.1", "v9"]
    assert newest_named(tags, r"nightly-\d{8}") == ["nightly-20260103", "nightly-20260102"]


def test_versions() -> None:
    assert parse_version("v1.2.3-alpine") == (1, 2, 3)
    assert parse_version("20") == (20, 0, 0)
    assert parse_version("latest") is None


@pytest.mark.parametrize("bad", ["", ">=", "1.2.3.4", "=> 1", "a || b", "||"])
def test_bad_ranges(bad: str) -> None:
    with pytest.raises(ValueError, match="semver"):
        parse_range(bad)


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
