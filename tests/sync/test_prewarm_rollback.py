"""Pre-warming an image nobody pulled yet, and rolling a refresh back to the generation it kept."""

from __future__ import annotations

from ptc_sync.local_run import run_locally
from ptc_sync.refresh import Step, is_backup_tag
from testbed.sandbox import Sandbox


def test_prewarm_imports_an_absent_tag_and_warms_every_platform(box: Sandbox, unique_repo: str) -> None:
    image = box.pusher.push_index(unique_repo, "1.0", flavor="oci")
    name = f"ecr-public/{unique_repo}"
    app = box.build_app()
    result = app.refresher.prewarm(name, "1.0")
    assert result.ok, result.reason
    assert result.new_digest == image.digest
    assert result.platforms == ("linux/amd64", "linux/arm64")
    warmed = {layer.digest for layer in box.emulator.imported_layers if layer.repository == name}
    assert {b.digest for b in image.all_layers} <= warmed
    assert box.tag_digest(name, "1.0") == image.digest


def test_prewarm_waits_for_a_background_import(box: Sandbox, unique_repo: str) -> None:
    image = box.pusher.push_image(unique_repo, "huge")
    name = f"ecr-public/{unique_repo}"
    box.emulator.import_in_background(name, "huge", ready_after_calls=4)
    result = box.build_app().refresher.prewarm(name, "huge")
    assert result.ok, result.reason
    assert result.new_digest == image.digest


def test_prewarm_of_a_tag_missing_upstream_fails_with_the_reason(box: Sandbox, unique_repo: str) -> None:
    box.pusher.push_image(unique_repo, "exists")
    result = box.build_app(verify_timeout_seconds=5).refresher.prewarm(f"ecr-public/{unique_repo}", "nope")
    assert not result.ok
    assert result.failed_step is Step.IMPORT
    assert "ImageNotFound" in result.reason


def test_rollback_restores_the_generation_a_refresh_kept(box: Sandbox, unique_repo: str) -> None:
    old = box.pusher.push_image(unique_repo, "v")
    name = f"ecr-public/{unique_repo}"
    box.cache(name, "v")
    new = box.pusher.push_image(unique_repo, "v")
    app = box.build_app(keep_generations=1)
    run_locally(app)
    assert box.tag_digest(name, "v") == new.digest
    backups = [t for t in box.tags(name) if is_backup_tag(t)]
    records = app.ledger.backups(name)
    assert [r.backup_tag for r in records] == backups  # the ledger knows the one backup it wrote
    result = app.refresher.rollback(name, "v", records)
    assert result.ok, result.reason
    assert box.tag_digest(name, "v") == old.digest
    assert result.backup_tag == backups[0]


def test_rollback_without_a_backup_says_so(box: Sandbox, unique_repo: str) -> None:
    result = box.build_app().refresher.rollback(f"ecr-public/{unique_repo}", "v", [])
    assert not result.ok
    assert "no backup" in result.reason
