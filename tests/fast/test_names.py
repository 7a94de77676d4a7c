"""The one repository-name rule, tag rule, image-reference parser and rule matcher."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import botocore
import pytest

from ptc_sync import ecr
from ptc_sync.models import PullThroughCacheRule, UpstreamKind
from ptc_sync.names import (
    ECR_REPOSITORY_PATTERN,
    REPOSITORY_MAX,
    REPOSITORY_MIN,
    ImageName,
    ImageNameError,
    is_repository_name,
    is_tag,
    is_upstream_repository,
    parse_image,
    parse_tagged_image,
)
from ptc_sync.upstream import rule_for_repository
from ptc_sync.work import WorkItem, WorkKind


def ecr_model_shape(name: str) -> dict[str, object]:
    path = Path(botocore.__file__).parent / "data" / "ecr" / "2015-09-21" / "service-2.json.gz"
    shapes: dict[str, dict[str, object]] = json.loads(gzip.decompress(path.read_bytes()))["shapes"]
    return shapes[name]


def test_the_rule_is_the_ecr_service_models() -> None:
    shape = ecr_model_shape("RepositoryName")
    assert shape["pattern"] == ECR_REPOSITORY_PATTERN
    assert (shape["min"], shape["max"]) == (REPOSITORY_MIN, REPOSITORY_MAX)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("docker-hub/library/node", True),
        ("a__b/c", True),  # ECR's rule: a double underscore and runs of dashes are separators
        ("a--b/c", True),
        ("a.b_c-d/e", True),
        ("ab", True),
        ("a", False),  # 2 characters at least
        ("a" * 256, True),
        ("a" * 257, False),
        ("A/b", False),
        ("a_/b", False),
        ("a//b", False),
        ("/a", False),
        ("a/", False),
        ("a___b", False),
        ("a/*", False),
        ("../etc", False),
        ("host.example:5000/a", False),
    ],
)
def test_one_repository_name_rule_everywhere(name: str, valid: bool) -> None:
    assert is_repository_name(name) is valid
    try:
        WorkItem(run_id="r", kind=WorkKind.CHECK, repository=name)
    except ValueError:
        accepted = False
    else:
        accepted = True
    assert accepted is valid  # the work item's pydantic rule is the same one
    assert (parse_image(f"{name}:t").repository == name) if valid else _refused(f"{name}:t")


def _refused(text: str) -> bool:
    with pytest.raises(ImageNameError):
        parse_image(text)
    return True


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        ("3.20", True),
        ("_x", True),
        ("v" * 128, True),
        ("v" * 129, False),
        (".x", False),
        ("-x", False),
        ("a/b", False),
        ("", False),
    ],
)
def test_the_tag_rule(tag: str, valid: bool) -> None:
    assert is_tag(tag) is valid


def test_the_image_reference_parser() -> None:
    assert parse_image(" docker-hub/library/alpine:3.20 ") == ImageName("docker-hub/library/alpine", "3.20")
    assert parse_image("docker-hub/library/alpine") == ImageName("docker-hub/library/alpine", None)
    assert parse_tagged_image("quay/prometheus/node-exporter:v1") == ("quay/prometheus/node-exporter", "v1")
    with pytest.raises(ImageNameError) as url:
        parse_image("https://registry-1.docker.io/library/alpine:3.20")
    assert url.value.host_like
    assert "is a URL" in str(url.value)
    with pytest.raises(ImageNameError) as host:
        parse_image("localhost:5000/library/alpine:3.20")
    assert host.value.host_like
    with pytest.raises(ImageNameError, match="not by digest"):
        parse_image("docker-hub/library/alpine@sha256:" + "a" * 64)
    with pytest.raises(ImageNameError, match="REPOSITORY:TAG"):
        parse_tagged_image("docker-hub/library/alpine")


ROOT = PullThroughCacheRule("ROOT", UpstreamKind.ECR, "123456789012.dkr.ecr.eu-west-1.amazonaws.com")
HUB = PullThroughCacheRule("hub", UpstreamKind.DOCKER_HUB, "registry-1.docker.io")
HUB_TEAM = PullThroughCacheRule("hub/team", UpstreamKind.DOCKER_HUB, "registry-1.docker.io")
SLASHED = PullThroughCacheRule("quay/", UpstreamKind.QUAY, "quay.io")


@pytest.mark.parametrize(
    ("repository", "expected"),
    [("hub/team/app", HUB_TEAM), ("hub/library/alpine", HUB), ("hubby/app", ROOT), ("quay/a/b", SLASHED)],
)
def test_the_rule_matcher(repository: str, expected: PullThroughCacheRule) -> None:
    rules = [ROOT, HUB, HUB_TEAM, SLASHED]
    assert rule_for_repository(rules, repository) is expected
    assert rule_for_repository(rules[1:3], "other/app") is None


def test_ecr_uses_the_one_matcher() -> None:
    """The adapter lists repositories through upstream.rule_for_repository; its own matcher is gone."""
    assert not hasattr(ecr, "match_rule")
    assert not hasattr(ecr, "rule_covers")
    assert ecr.rule_for_repository is rule_for_repository


def test_an_upstream_path_may_be_one_character() -> None:
    assert is_repository_name("quay/x")
    assert is_upstream_repository("x")
    assert not is_repository_name("x")
    assert not is_upstream_repository("a" * 257)
    assert not is_upstream_repository("a__b_")
