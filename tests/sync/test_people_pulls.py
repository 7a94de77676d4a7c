"""People's pulls only (issue 15 item 5): PTC_PULLED_WITHIN_DAYS is not kept alive by ptc-sync's own pulls.

Facts (docs/ecr-facts.md, "Pull time and ptc-sync's own pulls"): every pull, ptc-sync's BatchGetImage
included, updates ``lastRecordedPullTime``; RegisterPullTimeUpdateExclusion makes ECR stop recording a
principal's pulls (botocore 1.43, emulated in testbed/ecr_ptc/pull_time.py). Pull and push times are per
image, and a refresh gives the tag a new image that ptc-sync imported. So a tag nobody pulls must leave
the scope N days after its last person's pull, however often ptc-sync refreshed it, with the exclusion
registered or not; a person's pull keeps it in.

Through the deployed shape (planner → SQS → checker, the state table): each day upstream moves, and the
tag is "in scope" that day when the run refreshed it. The person is an IAM user of their own; ptc-sync
runs as moto's default caller (``arn:aws:iam::<account>:user/moto``), the principal the exclusion names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from ptc_sync import mediatypes as mt
from testbed.lambdas import Stack
from testbed.sandbox import ACCOUNT, REGION, Sandbox
from tests.sync.conftest import run_stack

DAYS = 3  # PTC_PULLED_WITHIN_DAYS
PTC_SYNC = f"arn:aws:iam::{ACCOUNT}:user/moto"  # who the sandbox's app calls ECR as


def person(box: Sandbox) -> Any:
    """An ECR client of a person's own IAM user (not ptc-sync's principal)."""
    iam = box.client("iam")
    iam.create_user(UserName="developer")
    key = iam.create_access_key(UserName="developer")["AccessKey"]
    return boto3.client(
        "ecr",
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


def pull(ecr: Any, repository: str, tag: str) -> None:
    resp = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=sorted(mt.MANIFEST_TYPES)
    )
    assert resp["images"], resp["failures"]


def days_in_scope(
    box: Sandbox, stack: Stack, unique_repo: str, *, exclusion: bool, person_pulls: set[int], days: int
) -> tuple[set[int], dict[int, Any]]:
    """Day 0 a person pulls the tag (ECR imports it); each later day the person may pull, upstream moves
    and one scheduled run goes. The days whose run refreshed the tag, and what ECR said of it after."""
    developer = person(box)
    name = f"ecr-public/{unique_repo}"
    box.pusher.push_image(unique_repo, "1", layers=1)
    pull(developer, name, "1")
    if exclusion:
        box.client("ecr").register_pull_time_update_exclusion(principalArn=PTC_SYNC)
    refreshed: set[int] = set()
    details: dict[int, Any] = {}
    for day in range(1, days + 1):
        box.clock.advance(timedelta(days=1))
        if day in person_pulls:
            pull(developer, name, "1")
        moved = box.pusher.push_image(unique_repo, "1", layers=1)
        run_stack(
            box,
            stack,
            pulled_within_days=DAYS,
            repository_include=name,
            refresh_cooldown_minutes=0,
            keep_generations=0,
        )
        if box.tag_digest(name, "1") == moved.digest:
            refreshed.add(day)
        (details[day],) = box.client("ecr").describe_images(
            repositoryName=name, imageIds=[{"imageTag": "1"}]
        )["imageDetails"]
    return refreshed, details


@pytest.mark.parametrize("exclusion", [False, True], ids=["own-pulls-recorded", "exclusion-registered"])
def test_a_tag_nobody_pulls_leaves_the_scope_although_ptc_sync_refreshed_it(
    box: Sandbox, stack: Stack, unique_repo: str, exclusion: bool
) -> None:
    """The person pulled on day 0 only: refreshed while that pull is within DAYS days, never after,
    although every refresh pulled the tag (or, with the exclusion, left no pull time at all)."""
    refreshed, details = days_in_scope(
        box, stack, unique_repo, exclusion=exclusion, person_pulls=set(), days=6
    )
    assert {1, 2} <= refreshed, refreshed
    assert not refreshed & {4, 5, 6}, f"refreshed on days {sorted(refreshed)}: ptc-sync's pulls kept it"
    if exclusion:  # ECR honours the exclusion: the image ptc-sync imported and pulled has no pull time
        assert "lastRecordedPullTime" not in details[1], details[1]
    else:
        assert "lastRecordedPullTime" in details[1]  # ptc-sync's own pull, recorded and ignored


@pytest.mark.parametrize("exclusion", [False, True], ids=["own-pulls-recorded", "exclusion-registered"])
def test_a_persons_pull_keeps_the_tag_in_scope(
    box: Sandbox, stack: Stack, unique_repo: str, exclusion: bool
) -> None:
    """The person pulls again on day 3: the tag stays in scope for DAYS days after that pull."""
    refreshed, _details = days_in_scope(
        box, stack, unique_repo, exclusion=exclusion, person_pulls={3}, days=8
    )
    assert {1, 2, 3, 4, 5} <= refreshed, refreshed
    assert not refreshed & {7, 8}, refreshed
