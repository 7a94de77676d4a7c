"""A failure at each step of the refresh protocol leaves the tag pullable with its old digest and
a ``refresh_failed`` outcome that names the step."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from ptc_sync.local_run import run_locally
from ptc_sync.models import Outcome, TagResult
from ptc_sync.refresh import BACKUP_PREFIX, is_backup_tag
from testbed.images import PushedImage
from testbed.sandbox import Sandbox
from tests.faults import AwsFaults


@dataclass
class Stale:
    name: str
    tag: str
    old: PushedImage
    new: PushedImage


@pytest.fixture
def stale(box: Sandbox, unique_repo: str) -> Stale:
    old = box.pusher.push_index(unique_repo, "stable")
    name = f"ecr-public/{unique_repo}"
    assert box.cache(name, "stable") == old.digest
    new = box.pusher.push_index(unique_repo, "stable")
    return Stale(name, "stable", old, new)


def run_with(box: Sandbox, inject: Callable[[AwsFaults, Stale], None], stale: Stale) -> TagResult:
    app = box.build_app()
    inject(AwsFaults(app.ecr.client), stale)
    report = run_locally(app)
    (result,) = [r for r in report.results if r.repository == stale.name]
    return result


def by_tag(s: Stale) -> Callable[[Mapping[str, Any]], bool]:
    return lambda p: p.get("imageIds", [{}])[0].get("imageTag") == s.tag


def by_digest(p: Mapping[str, Any]) -> bool:
    return "imageDigest" in p.get("imageIds", [{}])[0]


def verify_phase_faults(f: AwsFaults, s: Stale) -> None:
    """From the tag's removal until the rollback's PutImage, DescribeImages cannot see the tag: verify
    times out. (Before the removal it sees the tag: the refresher reads it under the lease.)"""
    state = {"removed": False, "rolled_back": False}

    def rollback_seen(p: Mapping[str, Any]) -> bool:
        if p.get("imageTag") == s.tag:
            state["rolled_back"] = True
        return False

    def removal_seen(p: Mapping[str, Any]) -> bool:
        if by_tag(s)(p):
            state["removed"] = True
        return False

    f.fail("PutImage", "Unused", when=rollback_seen, times=None)
    f.fail("BatchDeleteImage", "Unused", when=removal_seen, times=None)
    f.fail(
        "DescribeImages",
        "ImageNotFoundException",
        when=lambda p: by_tag(s)(p) and state["removed"] and not state["rolled_back"],
        times=None,
    )


CASES: dict[str, tuple[Callable[[AwsFaults, Stale], None], str, bool]] = {
    # name: (fault, step named in the reason, whether the tag was removed and put back)
    "read-old": (
        lambda f, s: f.fail("BatchGetImage", "AccessDeniedException", when=by_digest),
        "read-old",
        False,
    ),
    "backup": (
        lambda f, s: f.fail(
            "PutImage", "LimitExceededException", when=lambda p: is_backup_tag(p["imageTag"])
        ),
        "backup",
        False,
    ),
    "remove-tag": (lambda f, s: f.fail("BatchDeleteImage", "ThrottlingException"), "remove-tag", False),
    "import-denied": (
        lambda f, s: f.fail("BatchGetImage", "AccessDeniedException", when=by_tag(s)),
        "import",
        True,
    ),
    "import-never-completes": (
        lambda f, s: f.fail("BatchGetImage", "ServerException", when=by_tag(s), times=None),
        "import",
        True,
    ),
    "warm": (lambda f, s: f.fail("GetDownloadUrlForLayer", "LayerInaccessibleException"), "warm", True),
    "verify": (verify_phase_faults, "verify", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failure_at_each_step_keeps_the_old_image(box: Sandbox, stale: Stale, case: str) -> None:
    inject, step, rolled_back = CASES[case]
    result = run_with(box, inject, stale)

    assert result.outcome is Outcome.REFRESH_FAILED
    assert result.reason.startswith(f"{step}: "), result.reason
    assert ("(rolled back)" in result.reason) is rolled_back
    tags = box.tags(stale.name)
    assert tags[stale.tag] == stale.old.digest, "the tag is pullable with its old digest"
    assert not [t for t in tags if is_backup_tag(t)], "the backup goes once the old tag is back"
    assert box.cache(stale.name, stale.tag) == stale.old.digest, "a pull gets the old image"


def test_upstream_moving_during_the_refresh_is_a_third_digest(box: Sandbox, stale: Stale) -> None:
    """Upstream releases again between the check and the import: ECR would import neither digest
    the check saw, so the refresh rolls back instead of reporting a digest nobody verified."""

    def release_during_backup(f: AwsFaults, s: Stale) -> None:
        def push_again(p: Mapping[str, Any]) -> bool:
            if is_backup_tag(p.get("imageTag", "")):
                box.pusher.push_index(s.name.removeprefix("ecr-public/"), s.tag)
            return False

        f.fail("PutImage", "Unused", when=push_again, times=None)

    result = run_with(box, release_during_backup, stale)
    assert result.outcome is Outcome.REFRESH_FAILED
    assert result.reason.startswith("import: ECR imported"), result.reason
    assert box.tag_digest(stale.name, stale.tag) == stale.old.digest


def test_failed_rollback_keeps_the_image_under_the_backup_tag(box: Sandbox, stale: Stale) -> None:
    def import_and_restore_fail(f: AwsFaults, s: Stale) -> None:
        f.fail("BatchGetImage", "AccessDeniedException", when=by_tag(s))
        # every restore attempt fails (one failed PutImage is retried: see the fault matrix)
        f.fail("PutImage", "AccessDeniedException", when=lambda p: p.get("imageTag") == s.tag, times=None)

    result = run_with(box, import_and_restore_fail, stale)
    assert result.outcome is Outcome.REFRESH_FAILED
    assert "ROLLBACK FAILED" in result.reason
    backups = {t: d for t, d in box.tags(stale.name).items() if t.startswith(BACKUP_PREFIX)}
    assert list(backups.values()) == [stale.old.digest]
    assert next(iter(backups)) in result.reason, "the reason says where the old image is"
