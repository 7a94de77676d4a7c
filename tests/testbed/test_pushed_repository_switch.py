"""Unknown, switchable both ways (docs/ecr-facts.md, "Still unknown"; no public evidence either way):
whether ECR imports into a repository under a ROOT rule that it did not create itself (one the team
pushes to). ``import_into_pushed_repositories`` (testbed/ecr_ptc/pulls.py) answers it; a repository
ECR's own import created is a cache whatever the switch says."""

from __future__ import annotations

from typing import Any

import pytest

from testbed.ecr_ptc import PullThroughCacheEmulator
from testbed.images import ImagePusher

from .conftest import PUBLIC_HOSTS

assert "public.ecr.aws" in PUBLIC_HOSTS


def pull(ecr: Any, repository: str, tag: str) -> dict[str, Any]:
    return dict(ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}]))


@pytest.mark.parametrize("imports", [True, False], ids=["imports", "leaves-it-alone"])
def test_a_pull_in_a_pushed_repository_under_root(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str, imports: bool
) -> None:
    ptc.import_into_pushed_repositories = imports
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ROOT", upstreamRegistryUrl="public.ecr.aws", upstreamRegistry="ecr-public"
    )
    pushed = pusher.push_image(unique_repo, "1", layers=1)
    ecr.create_repository(repositoryName=unique_repo)  # the team's own repository: ECR did not create it
    out = pull(ecr, unique_repo, "1")
    if imports:
        assert [i["imageId"]["imageDigest"] for i in out["images"]] == [pushed.digest]
    else:
        assert out["images"] == []
        assert [f["failureCode"] for f in out["failures"]] == ["ImageNotFound"]


def test_a_repository_the_import_created_is_a_cache_either_way(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    ptc.import_into_pushed_repositories = False
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ROOT", upstreamRegistryUrl="public.ecr.aws", upstreamRegistry="ecr-public"
    )
    pusher.push_image(unique_repo, "1", layers=1)
    assert pull(ecr, unique_repo, "1")["images"]  # the first pull creates the repository
    second = pusher.push_image(unique_repo, "2", layers=1)
    assert [i["imageId"]["imageDigest"] for i in pull(ecr, unique_repo, "2")["images"]] == [second.digest]
