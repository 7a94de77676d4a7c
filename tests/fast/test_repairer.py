"""The repair sweep on the in-memory ECR and journal: what a killed refresh left is finished."""

from __future__ import annotations

from datetime import timedelta

from ptc_sync.ecr import Manifest
from ptc_sync.journal import LEASE, BackupRecord, BackupStatus, Lease
from ptc_sync.models import Outcome
from ptc_sync.refresh import backup_tag_for
from tests.fakes import Fakes

REPO = "docker-hub/library/node"


def killed_mid_refresh(fakes: Fakes, *, tag_after: str | None) -> tuple[Lease, Manifest, Manifest]:
    """A refresh of REPO:lts killed after its intent: the backup written, the tag removed, then
    (``tag_after``) nothing more, or the import done ("new"). The lease has run out since."""
    old = fakes.cached(REPO, "lts", seed="old", upstream_seed="new")
    new = fakes.upstream_image(REPO, "lts")
    assert new is not None
    now = fakes.clock.now()
    backup = backup_tag_for("lts", now)
    fakes.journal.record_backup(BackupRecord(REPO, backup, "lts", old.digest, now))
    fakes.ecr.put_manifest(REPO, backup, old)
    lease = fakes.journal.acquire(REPO, "lts", "killed-checker", now)
    intent = fakes.journal.mark_removing(
        lease, old_digest=old.digest, backup_tag=backup, expected_digest=new.digest, now=now
    )
    fakes.ecr.delete_tags(REPO, ["lts"])
    if tag_after == "new":
        fakes.ecr.get_manifest(REPO, tag="lts")  # the import had happened
    fakes.clock.advance(LEASE + timedelta(minutes=1))
    return intent, old, new


def test_an_expired_intent_with_the_tag_absent_is_restored() -> None:
    fakes = Fakes()
    intent, old, _new = killed_mid_refresh(fakes, tag_after=None)
    assert fakes.repairer().due() == [intent]
    (result,) = fakes.repairer().sweep(REPO, "docker-hub")
    assert result.outcome is Outcome.REPAIRED
    assert result.tag == "lts"
    assert "is back" in result.reason
    assert fakes.ecr.tags_of(REPO) == {"lts": old.digest}  # the backup went, as after a rollback
    assert fakes.journal.open_leases() == []
    assert fakes.journal.backups(REPO) == []


def test_a_tag_on_the_expected_digest_is_a_completed_refresh() -> None:
    fakes = Fakes()
    _intent, old, new = killed_mid_refresh(fakes, tag_after="new")
    (result,) = fakes.repairer().sweep(REPO, "docker-hub")
    assert result.outcome is Outcome.REPAIRED
    assert result.upstream_digest == new.digest
    assert "completed" in result.reason
    assert fakes.ecr.digest(REPO, "lts") == new.digest
    (record,) = fakes.journal.backups(REPO)
    assert record.status is BackupStatus.KEPT
    assert fakes.ecr.digest(REPO, record.backup_tag) == old.digest
    assert fakes.journal.open_leases() == []


def test_a_live_lease_is_not_repaired() -> None:
    fakes = Fakes()
    killed_mid_refresh(fakes, tag_after=None)
    lease = fakes.journal.open_leases(REPO)[0]
    fakes.journal.take_over(lease, "live-checker", fakes.clock.now())  # someone is on it right now
    assert fakes.repairer().sweep(REPO, "docker-hub") == []
    assert fakes.ecr.digest(REPO, "lts") is None  # left to its holder


def test_a_failed_restore_stays_open_for_the_next_sweep() -> None:
    fakes = Fakes()
    killed_mid_refresh(fakes, tag_after=None)
    fakes.ecr.fail("PutImage", "ThrottlingException", times=99)
    (result,) = fakes.repairer().sweep(REPO, "docker-hub")
    assert result.outcome is Outcome.REFRESH_FAILED
    assert "putting" in result.reason
    (intent,) = fakes.journal.open_leases(REPO)
    assert intent.expired(fakes.clock.now())  # abandoned: due again on the next sweep
