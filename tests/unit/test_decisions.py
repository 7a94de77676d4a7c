"""Pure decisions: which rule covers a repository, tag mutability, backup tag names, pull cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync.ecr import Manifest
from ptc_sync.models import CachedRepository, PullThroughCacheRule, TagMutability, UpstreamKind, sha256_digest
from ptc_sync.refresh import backup_source, backup_tag_for, is_backup_tag, platforms_of, pull_cost
from ptc_sync.sync import is_immutable
from ptc_sync.upstream import rule_for_repository

HUB = PullThroughCacheRule("docker-hub", UpstreamKind.DOCKER_HUB, "registry-1.docker.io")
HUB_TEAM = PullThroughCacheRule("docker-hub/team", UpstreamKind.DOCKER_HUB, "registry-1.docker.io")
ROOT = PullThroughCacheRule("ROOT", UpstreamKind.ECR_PUBLIC, "public.ecr.aws")


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        ("docker-hub/library/alpine", HUB),
        ("docker-hub/team/app", HUB_TEAM),
        ("docker-hubx/alpine", ROOT),
        ("docker-hub", ROOT),  # the prefix alone is not under the prefix
        ("anything/else", ROOT),
    ],
)
def test_longest_prefix_wins_and_root_takes_the_rest(repository: str, expected: PullThroughCacheRule) -> None:
    assert rule_for_repository([ROOT, HUB, HUB_TEAM], repository) == expected


def test_no_rule_covers() -> None:
    assert rule_for_repository([HUB], "quay/x") is None


def repo(mutability: TagMutability, *filters: str) -> CachedRepository:
    return CachedRepository("docker-hub/library/node", "arn", "123", HUB, mutability, filters)


@pytest.mark.parametrize(
    ("mutability", "filters", "tag", "immutable"),
    [
        (TagMutability.MUTABLE, (), "lts", False),
        (TagMutability.IMMUTABLE, (), "lts", True),
        (TagMutability.MUTABLE_WITH_EXCLUSION, ("v*",), "v1.2", True),
        (TagMutability.MUTABLE_WITH_EXCLUSION, ("v*",), "lts", False),
        (TagMutability.IMMUTABLE_WITH_EXCLUSION, ("latest",), "latest", False),
        (TagMutability.IMMUTABLE_WITH_EXCLUSION, ("latest",), "1.0", True),
    ],
)
def test_tag_mutability(
    mutability: TagMutability, filters: tuple[str, ...], tag: str, immutable: bool
) -> None:
    assert is_immutable(repo(mutability, *filters), tag) is immutable


def test_backup_tag_names_round_trip() -> None:
    tag = backup_tag_for("3.13-slim--x", datetime(2026, 11, 27, 10, 15, tzinfo=UTC))
    assert tag == "ptc-sync-prev--3.13-slim--x--20261127T101500Z"
    assert is_backup_tag(tag)
    assert backup_source(tag) == "3.13-slim--x"
    assert not is_backup_tag("latest")
    assert backup_source("latest") is None


def manifest(media_type: str, doc: dict[str, object]) -> Manifest:
    body = json.dumps(doc).encode()
    return Manifest(sha256_digest(body), media_type, body)


def test_platforms_and_pull_cost_leave_attestations_out() -> None:
    index = manifest(
        mt.OCI_INDEX,
        {
            "manifests": [
                {"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "amd64"}},
                {
                    "digest": "sha256:" + "b" * 64,
                    "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
                },
                {"digest": "sha256:" + "c" * 64, "platform": {"os": "unknown", "architecture": "unknown"}},
            ]
        },
    )
    assert platforms_of(index) == ("linux/amd64", "linux/arm/v7")
    assert pull_cost(index) == 2
    single = manifest(mt.DOCKER_MANIFEST, {"layers": []})
    assert platforms_of(single) == ()
    assert pull_cost(single) == 1
