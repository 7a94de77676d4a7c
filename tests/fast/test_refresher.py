"""Refresher decisions on the in-memory ECR and journal: what is touched, what is put back."""

from __future__ import annotations

from datetime import timedelta

from ptc_sync.journal import BackupRecord, BackupStatus
from ptc_sync.models import CachedTag
from ptc_sync.names import is_tag
from ptc_sync.refresh import MAX_TAG, Step, backup_tag_for, is_backup_tag
from tests.fakes import START, Fakes

REPO = "docker-hub/library/node"


def stale(fakes: Fakes, tag: str = "lts") -> tuple[CachedTag, str, str]:
    """A cached tag upstream has moved: (cached tag, old digest, upstream digest)."""
    old = fakes.cached(REPO, tag, seed="old", upstream_seed="new")
    new = fakes.upstream_image(REPO, tag)
    assert new is not None
    return CachedTag(REPO, tag, old.digest, old.media_type), old.digest, new.digest


def test_a_stale_tag_is_refreshed_and_one_backup_generation_kept() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    result = fakes.refresher().refresh(cached, new)
    assert result.ok, result
    assert fakes.ecr.digest(REPO, "lts") == new
    assert result.backup_tag is not None
    assert fakes.ecr.digest(REPO, result.backup_tag) == old
    (record,) = fakes.journal.backups(REPO)
    assert record.status is BackupStatus.KEPT
    assert record.source_tag == "lts"
    assert fakes.journal.open_leases() == []
    assert fakes.ecr.warmed  # every blob of the new image warmed


def test_a_held_lease_leaves_the_tag_untouched() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    fakes.journal.acquire(REPO, "lts", "checker-2", fakes.clock.now())
    result = fakes.refresher("checker-1").refresh(cached, new)
    assert not result.ok
    assert "checker-2" in result.held_by
    assert fakes.ecr.writes() == []
    assert fakes.ecr.digest(REPO, "lts") == old
    assert fakes.journal.backups(REPO) == []


def test_no_time_for_the_worst_case_leaves_the_tag_untouched() -> None:
    fakes = Fakes()
    cached, _old, new = stale(fakes)
    result = fakes.refresher().refresh(cached, new, time_left=lambda: 5.0)
    assert not result.ok
    assert result.untouched.startswith("no time left")
    assert fakes.ecr.calls == []
    assert fakes.journal.open_leases() == []


def test_time_running_out_after_the_backup_drops_it_and_removes_nothing() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    calls: list[int] = []

    def left() -> float:  # enough at the start, not before the tag would be removed
        calls.append(1)
        return 1000.0 if len(calls) == 1 else 1.0

    result = fakes.refresher().refresh(cached, new, time_left=left)
    assert not result.ok
    assert result.untouched
    assert fakes.ecr.tags_of(REPO) == {"lts": old}  # the backup tag was written, then dropped
    assert fakes.journal.backups(REPO) == []
    assert fakes.journal.open_leases() == []


def test_a_failed_import_is_rolled_back_to_the_old_digest() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    fakes.ecr.fail("BatchGetImage", "UpstreamAccessDenied", when=lambda call: call["tag"] == "lts")
    result = fakes.refresher().refresh(cached, new)
    assert not result.ok
    assert result.failed_step is Step.IMPORT
    assert result.rolled_back
    assert fakes.ecr.tags_of(REPO) == {"lts": old}  # put back, backup gone
    assert fakes.journal.backups(REPO) == []
    assert fakes.journal.open_leases() == []


def test_a_failed_delete_leaves_the_tag_where_it_was() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    fakes.ecr.fail("BatchDeleteImage", "ThrottlingException")
    result = fakes.refresher().refresh(cached, new)
    assert not result.ok
    assert result.failed_step is Step.REMOVE_TAG
    assert not result.rolled_back
    assert fakes.ecr.tags_of(REPO) == {"lts": old}
    assert fakes.journal.open_leases() == []


def test_upstream_moving_during_the_refresh_is_rolled_back() -> None:
    fakes = Fakes()
    cached, old, _new = stale(fakes)
    result = fakes.refresher().refresh(cached, "sha256:" + "e" * 64)  # upstream said another digest
    assert not result.ok
    assert result.failed_step is Step.IMPORT
    assert "upstream moved" in result.reason
    assert fakes.ecr.digest(REPO, "lts") == old
    assert result.rolled_back


def test_a_throttled_restore_is_retried_until_the_tag_shows_the_old_digest() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    fakes.ecr.fail("BatchGetImage", "UpstreamAccessDenied", when=lambda call: call["tag"] == "lts")
    fakes.ecr.fail("PutImage", "ThrottlingException", times=2, when=lambda call: call["tag"] == "lts")
    result = fakes.refresher().refresh(cached, new)
    assert result.rolled_back
    assert fakes.ecr.digest(REPO, "lts") == old
    assert fakes.clock.sleeps  # waited between restore attempts, on the fake clock


def test_a_rollback_that_keeps_failing_leaves_the_intent_for_the_repair_sweep() -> None:
    fakes = Fakes()
    cached, old, new = stale(fakes)
    fakes.ecr.fail("BatchGetImage", "UpstreamAccessDenied", when=lambda call: call["tag"] == "lts")
    fakes.ecr.fail("PutImage", "ThrottlingException", times=99, when=lambda call: call["tag"] == "lts")
    result = fakes.refresher().refresh(cached, new)
    assert not result.ok
    assert result.repair_pending
    assert "ROLLBACK FAILED" in result.reason
    assert fakes.ecr.digest(REPO, "lts") is None
    assert result.backup_tag is not None
    assert fakes.ecr.digest(REPO, result.backup_tag) == old
    (intent,) = fakes.journal.open_leases(REPO)
    assert intent.expired(fakes.clock.now())  # abandoned: the next sweep need not wait out the lease


def test_only_ledger_backups_are_pruned() -> None:
    fakes = Fakes()
    cached, _old, new = stale(fakes)
    look_alike = "ptc-sync-prev--lts--20200101T000000Z"  # upstream's own tag, named like a backup
    fakes.cached(REPO, look_alike, seed="theirs")
    older = fakes.cached(REPO, "ptc-sync-prev--lts--20250101T000000Z", seed="older")
    record = BackupRecord(
        REPO, "ptc-sync-prev--lts--20250101T000000Z", "lts", older.digest, START - timedelta(days=30)
    )
    fakes.journal.record_backup(record)
    result = fakes.refresher().refresh(cached, new, existing_backups=[record])
    assert result.ok
    tags = fakes.ecr.tags_of(REPO)
    assert look_alike in tags  # not in the ledger: an ordinary tag, never pruned
    assert record.backup_tag not in tags  # the older generation ptc-sync wrote: pruned
    assert [b.backup_tag for b in fakes.journal.backups(REPO)] == [result.backup_tag]


def test_an_unrecorded_backup_named_tag_is_checked_like_any_tag() -> None:
    fakes = Fakes()
    look_alike = "ptc-sync-prev--lts--20200101T000000Z"
    fakes.cached(REPO, look_alike)
    found = fakes.discovery().discover_repository(REPO)
    assert [t.cached.tag for t in found.targets] == [look_alike]
    assert found.backups == {}


def test_backup_names_of_128_character_tags_fit_and_stay_apart() -> None:
    first, second = "a" * 127 + "1", "a" * 127 + "2"
    names = {backup_tag_for(tag, START) for tag in (first, second)}
    assert len(names) == 2
    for name in names:
        assert len(name) <= MAX_TAG
        assert is_tag(name)
        assert is_backup_tag(name)


def test_a_128_character_tag_refreshes_with_a_valid_backup_tag() -> None:
    fakes = Fakes()
    cached, _old, new = stale(fakes, tag="v" * 128)
    result = fakes.refresher().refresh(cached, new)
    assert result.ok, result  # FakeEcr refuses a tag over 128 characters, as PutImage does
    assert result.backup_tag is not None
    assert len(result.backup_tag) <= MAX_TAG
