"""The scheduled sync, replayed from events/ through the real handlers on the testbed: the planner
(functions/sync) queues work, the checker (functions/checker) compares, refreshes and reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ptc_sync import wiring
from ptc_sync.models import short_digest
from ptc_sync.refresh import is_backup_tag
from testbed.images import PushedImage
from testbed.lambdas import Stack
from testbed.runtime import FakeContext
from testbed.sandbox import Sandbox
from tests.conftest import load_handler
from tests.faults import AwsFaults
from tests.sync.conftest import load_event, run_stack

handler = load_handler("sync").lambda_handler

WRITES = {"PutImage", "BatchDeleteImage"}


def run(box: Sandbox, stack: Stack, event: str = "scheduled.json", **settings: Any) -> dict[str, Any]:
    return run_stack(box, stack, event, **settings)


def cached(box: Sandbox, repo: str, tag: str, image: PushedImage, prefix: str = "ecr-public") -> str:
    name = f"{prefix}/{repo}"
    assert box.cache(name, tag) == image.digest
    return name


@pytest.mark.parametrize(
    ("flavor", "multi"),
    [("docker", False), ("oci", False), ("docker", True), ("oci", True)],
    ids=["docker-v2", "oci-manifest", "docker-list", "oci-index"],
)
def test_stale_tag_is_refreshed_to_the_exact_upstream_digest(
    box: Sandbox, stack: Stack, unique_repo: str, flavor: str, multi: bool
) -> None:
    push = box.pusher.push_index if multi else box.pusher.push_image
    old = push(unique_repo, "lts", flavor=flavor)  # type: ignore[operator]
    name = cached(box, unique_repo, "lts", old)
    new = push(unique_repo, "lts", flavor=flavor)  # type: ignore[operator]

    summary = run(box, stack)

    assert summary["counts"] == {"refreshed": 1}
    assert box.tag_digest(name, "lts") == new.digest
    every_blob = {b.digest for b in new.all_layers} | {
        c.config.digest for c in (new.children or (new,)) if c.config is not None
    }
    warmed = {layer.digest for layer in box.emulator.imported_layers if layer.repository == name}
    assert every_blob <= warmed, "every layer of every platform is warmed"
    backups = {t: d for t, d in box.tags(name).items() if is_backup_tag(t)}
    assert list(backups.values()) == [old.digest], "one generation kept, the old image"


def test_fresh_tags_cause_no_ecr_writes(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    images = [box.pusher.push_image(unique_repo, f"v{i}") for i in range(3)]
    name = ""
    for i, image in enumerate(images):
        name = cached(box, unique_repo, f"v{i}", image)
    app = box.build_app()
    spy = AwsFaults(app.ecr.client)
    summary = run_stack(box, stack, app=app)
    assert summary["counts"] == {"fresh": 3}
    assert not WRITES & {op for op, _ in spy.calls}
    assert box.tags(name) == {f"v{i}": img.digest for i, img in enumerate(images)}
    first = box.messages()
    assert len(first) == 1, "the first run over these tags says what it watches"
    assert "watches 3 tags" in json.loads(first[0]["Message"])["content"]["description"]
    again = run_stack(box, stack, app=app)
    assert again["counts"] == {"fresh": 3}
    assert not WRITES & {op for op, _ in spy.calls}
    assert box.messages() == [], "a quiet run publishes nothing"


def test_upstream_missing_tag_is_kept_and_reported(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    image = box.pusher.push_image(unique_repo, "gone")
    name = cached(box, unique_repo, "gone", image)
    box.pusher.delete_tag(unique_repo, "gone")
    summary = run(box, stack)
    assert summary["counts"] == {"upstream_missing": 1}
    assert box.tag_digest(name, "gone") == image.digest


def test_immutable_tag_is_reported_not_forced(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    name = f"ecr-public/{unique_repo}"
    box.client("ecr").create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    old = box.pusher.push_image(unique_repo, "1.0")
    cached(box, unique_repo, "1.0", old)
    box.pusher.push_image(unique_repo, "1.0")
    summary = run(box, stack)
    assert summary["counts"] == {"immutable": 1}
    assert box.tag_digest(name, "1.0") == old.digest


def test_background_import_is_verified(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    old = box.pusher.push_index(unique_repo, "big")
    name = cached(box, unique_repo, "big", old)
    new = box.pusher.push_index(unique_repo, "big")
    box.emulator.import_in_background(name, "big", ready_after_calls=3)
    summary = run(box, stack)
    assert summary["counts"] == {"refreshed": 1}
    assert box.tag_digest(name, "big") == new.digest


def test_dry_run_reports_stale_and_writes_nothing(box: Sandbox, stack: Stack, unique_repo: str) -> None:
    old = box.pusher.push_image(unique_repo, "latest")
    name = cached(box, unique_repo, "latest", old)
    new = box.pusher.push_image(unique_repo, "latest")
    summary = run(box, stack, event="manual-dry-run.json")
    assert summary["dry_run"] is True
    assert summary["counts"] == {"stale": 1}
    assert box.tags(name) == {"latest": old.digest}
    (envelope,) = box.messages()
    body = json.loads(envelope["Message"])
    assert short_digest(old.digest) in body["content"]["description"]
    assert short_digest(new.digest) in body["content"]["description"]


def test_docker_hub_rule_uses_its_secret_and_maps_the_name(
    box: Sandbox, stack: Stack, unique_repo: str
) -> None:
    old = box.pusher.push_image(unique_repo, "3")
    name = cached(box, unique_repo, "3", old, prefix="docker-hub")
    new = box.pusher.push_image(unique_repo, "3")
    summary = run(box, stack)
    assert summary["counts"] == {"refreshed": 1}
    assert box.tag_digest(name, "3") == new.digest


def test_malformed_event_is_rejected_without_work(
    box: Sandbox, lambda_context: FakeContext, caplog: pytest.LogCaptureFixture
) -> None:
    app = box.build_app()
    spy = AwsFaults(app.ecr.client)
    wiring.set_app(app)
    summary = handler(load_event("malformed-scheduled.json"), lambda_context)
    assert summary["status"] == "rejected"
    assert "dry_run: Input should be a valid boolean" in summary["reason"]
    assert "upstream: Extra inputs are not permitted" in summary["reason"]
    assert "evil.example.com" not in summary["reason"]
    assert spy.calls == []
    (record,) = [r for r in caplog.records if r.getMessage() == "event rejected"]
    assert record.levelname == "ERROR"
    assert record.__dict__["reason"] == summary["reason"]
