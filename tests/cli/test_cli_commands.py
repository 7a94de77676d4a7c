"""Every command end to end on the testbed: moto's server with the emulated pull-through cache, a real
upstream registry on loopback, ``ptc_sync.cli.main`` in-process. Writes are counted on the server."""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from ptc_sync.cli import main
from ptc_sync.models import short_digest
from ptc_sync.refresh import is_backup_tag
from testbed.images import PushedImage
from tests.cli.conftest import PUSHED_DAYS_AGO, Bed


def line_of(output: str, image: str) -> str:
    (line,) = [ln for ln in output.splitlines() if image in ln.split()]
    return line


def make_stale(
    bed: Bed, repo: str, tag: str, *, rule: str = "ecr-public"
) -> tuple[str, PushedImage, PushedImage]:
    """A cached tag whose upstream has moved on: (cached repository, old image, new image)."""
    name = f"{rule}/{repo}"
    old = bed.pusher.push_image(repo, tag)
    assert bed.cache(name, tag) == old.digest
    new = bed.pusher.push_image(repo, tag)
    return name, old, new


def make_fresh(bed: Bed, repo: str, tag: str, *, rule: str = "ecr-public") -> tuple[str, PushedImage]:
    name = f"{rule}/{repo}"
    image = bed.pusher.push_image(repo, tag)
    assert bed.cache(name, tag) == image.digest
    return name, image


# -- status --------------------------------------------------------------------------------------------


def test_status_lists_every_cached_tag_with_digests_age_and_outcome(bed: Bed, unique_repo: str) -> None:
    name, old, new = make_stale(bed, unique_repo, "stale")
    _, fresh = make_fresh(bed, unique_repo, "fresh")
    before = bed.snapshot()

    result = bed.cli("status")

    assert result.code == 1, result.err
    assert result.out.splitlines()[0].split() == ["IMAGE", "CACHED", "UPSTREAM", "AGE", "OUTCOME", "NOTE"]
    stale_line = line_of(result.out, f"{name}:stale")
    assert stale_line.split()[1:5] == [
        short_digest(old.digest),
        short_digest(new.digest),
        f"{PUSHED_DAYS_AGO}d00h",
        "stale",
    ]
    fresh_line = line_of(result.out, f"{name}:fresh")
    assert fresh_line.split()[1:5] == [short_digest(fresh.digest)] * 2 + [f"{PUSHED_DAYS_AGO}d00h", "fresh"]
    assert "2 tags: 1 fresh, 1 stale" in result.out
    assert result.writes == []
    assert bed.snapshot() == before


def test_status_json_covers_every_rule_with_full_digests_and_push_times(bed: Bed, unique_repo: str) -> None:
    public, old, new = make_stale(bed, unique_repo, "v1")
    hub, hub_image = make_fresh(bed, unique_repo, "v2", rule="docker-hub")  # credentials from the secret

    result = bed.cli("status", "--output", "json")

    assert result.code == 1, result.err
    doc = result.json()
    assert doc["command"] == "status"
    assert doc["exit_code"] == 1
    assert doc["summary"] == {"fresh": 1, "stale": 1}
    assert doc["errors"] == []
    tags = {t["image"]: t for t in doc["tags"]}
    assert set(tags) == {f"{public}:v1", f"{hub}:v2"}
    stale = tags[f"{public}:v1"]
    assert (stale["cached_digest"], stale["upstream_digest"], stale["outcome"]) == (
        old.digest,
        new.digest,
        "stale",
    )
    assert stale["rule"] == "ecr-public"
    assert PUSHED_DAYS_AGO * 86400 <= stale["age_seconds"] < PUSHED_DAYS_AGO * 86400 + 300
    pushed = datetime.fromisoformat(stale["pushed_at"])
    assert datetime.now(UTC) - pushed >= timedelta(days=PUSHED_DAYS_AGO)
    assert stale["backups"] == []
    fresh = tags[f"{hub}:v2"]
    assert fresh["rule"] == "docker-hub"
    assert fresh["cached_digest"] == fresh["upstream_digest"] == hub_image.digest
    assert result.writes == []


def test_status_and_check_exit_0_when_everything_is_fresh(bed: Bed, unique_repo: str) -> None:
    make_fresh(bed, unique_repo, "1")
    make_fresh(bed, unique_repo, "2")
    assert bed.cli("status").code == 0
    result = bed.cli("check", "--output", "json")
    assert result.code == 0, result.err
    assert result.json()["summary"] == {"fresh": 2}


# -- check ---------------------------------------------------------------------------------------------


def test_check_reports_per_tag_and_a_summary_and_exits_1_on_a_missing_upstream(
    bed: Bed, unique_repo: str
) -> None:
    name, _, new = make_stale(bed, unique_repo, "stale")
    gone_repo = f"{unique_repo}-gone"
    gone, _ = make_fresh(bed, gone_repo, "old")
    bed.pusher.delete_tag(gone_repo, "old")
    before = bed.snapshot()

    result = bed.cli("check")

    assert result.code == 1
    assert line_of(result.out, f"{name}:stale").split()[0] == "stale"
    assert short_digest(new.digest) in line_of(result.out, f"{name}:stale")
    assert line_of(result.out, f"{gone}:old").startswith("upstream_missing")
    assert "2 tags: 1 stale, 1 upstream_missing" in result.out
    assert "dry run" not in result.out + result.err, "a read-only command says nothing about dry runs"
    assert "would" not in result.out
    assert result.writes == []
    assert bed.snapshot() == before

    doc = bed.cli("check", "--output", "json").json()
    assert doc["exit_code"] == 1
    assert "dry_run" not in doc
    assert doc["summary"] == {"stale": 1, "upstream_missing": 1}


def test_check_scope_options_are_the_syncs_filters(bed: Bed, unique_repo: str) -> None:
    public, _, _ = make_stale(bed, unique_repo, "1.0")
    make_fresh(bed, unique_repo, "2.0")
    hub, _ = make_fresh(bed, unique_repo, "1.0", rule="docker-hub")

    by_rule = bed.cli("check", "--rule", "docker-hub", "--output", "json").json()
    assert [t["image"] for t in by_rule["tags"]] == [f"{hub}:1.0"]
    assert by_rule["exit_code"] == 0  # the stale tag is under the other rule

    by_pattern = bed.cli("check", "--repository", "ecr-public/*", "--tag", "2.*")
    assert by_pattern.code == 0
    assert f"{public}:2.0" in by_pattern.out
    assert f"{public}:1.0" not in by_pattern.out
    assert "1 more not in scope" in by_pattern.out

    excluded = bed.cli(
        "check", "--exclude-repository", "docker-hub/*", "--exclude-tag", "2.0", "--output", "json"
    )
    tags = {t["image"]: t["outcome"] for t in excluded.json()["tags"]}
    assert tags == {f"{public}:1.0": "stale", f"{public}:2.0": "skipped"}
    assert excluded.code == 1


def test_global_options_may_come_before_the_command(bed: Bed, unique_repo: str) -> None:
    make_stale(bed, unique_repo, "v")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--output", "json", *bed.aws_args, "check"])
    assert code == 1
    assert '"stale": 1' in out.getvalue()


def test_a_rule_prefix_that_matches_nothing_is_an_error(bed: Bed, unique_repo: str) -> None:
    make_fresh(bed, unique_repo, "v")
    result = bed.cli("check", "--rule", "quay")
    assert result.code == 2
    assert "no pull-through cache rules match" in result.err


# -- refresh -------------------------------------------------------------------------------------------


def test_refresh_of_one_tag_replaces_it_and_keeps_the_old_image_under_a_backup_tag(
    bed: Bed, unique_repo: str
) -> None:
    name, old1, new1 = make_stale(bed, unique_repo, "one")
    _, old2, _ = make_stale(bed, unique_repo, "two")

    result = bed.cli("refresh", f"{name}:one")

    assert result.code == 0, result.err  # the tag is fresh now
    assert line_of(result.out, f"{name}:one").split()[0] == "refreshed"
    assert f"{name}:two" not in result.out
    tags = bed.tags(name)
    assert tags["one"] == new1.digest
    assert tags["two"] == old2.digest  # not named, not touched
    (backup,) = [t for t in tags if is_backup_tag(t)]
    assert backup.startswith("ptc-sync-prev--one--")
    assert tags[backup] == old1.digest
    assert {"PutImage", "BatchDeleteImage", "BatchGetImage", "GetDownloadUrlForLayer"} <= set(result.writes)


def test_refresh_of_a_repository_refreshes_every_stale_tag_then_has_nothing_to_do(
    bed: Bed, unique_repo: str
) -> None:
    name, _, new_a = make_stale(bed, unique_repo, "a")
    _, _, new_b = make_stale(bed, unique_repo, "b")
    make_fresh(bed, unique_repo, "c")

    doc = bed.cli("refresh", name, "--output", "json").json()

    assert doc["exit_code"] == 0
    assert {t["tag"]: t["outcome"] for t in doc["tags"]} == {"a": "refreshed", "b": "refreshed", "c": "fresh"}
    assert bed.tags(name)["a"] == new_a.digest
    assert bed.tags(name)["b"] == new_b.digest

    again = bed.cli("refresh", name)
    assert again.code == 0, again.out
    assert "3 tags: 3 fresh" in again.out


def test_refresh_dry_run_says_what_it_would_do_and_writes_nothing(bed: Bed, unique_repo: str) -> None:
    name, old, new = make_stale(bed, unique_repo, "v")
    before = bed.snapshot()
    imports = bed.emulator.import_count(name)

    result = bed.cli("refresh", f"{name}:v", "--dry-run")

    assert result.code == 1
    line = line_of(result.out, f"{name}:v")
    assert line.startswith("stale (would refresh)")
    assert short_digest(old.digest) in line
    assert short_digest(new.digest) in line
    assert "dry run: nothing written" in result.out
    assert result.writes == []
    assert bed.snapshot() == before
    assert bed.emulator.import_count(name) == imports


def test_a_failed_refresh_puts_the_old_image_back_and_exits_1(bed: Bed, unique_repo: str) -> None:
    name, old, _ = make_stale(bed, unique_repo, "v")
    bed.emulator.fail_next_import("UpstreamAccessDenied", repository=name, tag="v")

    result = bed.cli("refresh", f"{name}:v")

    assert result.code == 1
    line = line_of(result.out, f"{name}:v")
    assert line.startswith("refresh_failed")
    assert "import" in line
    assert "rolled back" in line
    assert bed.tags(name)["v"] == old.digest


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("quay/t/app:1", "not under any pull-through cache rule"),
        ("ecr-public/t/never-cached:1", "no cached tag ecr-public/t/never-cached:1"),
        ("ecr-public/t/app:ptc-sync-prev--1--20260101T000000Z", "backup tag"),
        ("ecr-public/t/app@sha256:" + "0" * 64, "by tag, not by digest"),
    ],
)
def test_refresh_refuses_what_is_not_a_cached_tag(bed: Bed, target: str, message: str) -> None:
    result = bed.cli("refresh", target)
    assert result.code == 2
    assert message in result.err
    assert result.writes == []


# -- rollback ------------------------------------------------------------------------------------------


def test_rollback_restores_the_generation_a_refresh_kept(bed: Bed, unique_repo: str) -> None:
    name, old, new = make_stale(bed, unique_repo, "v")
    assert bed.cli("refresh", f"{name}:v").code == 0
    (backup,) = [t for t in bed.tags(name) if is_backup_tag(t)]
    status = bed.cli("status", "--output", "json").json()
    assert status["tags"][0]["backups"] == [backup]

    planned = bed.cli("rollback", f"{name}:v", "--dry-run")
    assert planned.code == 1
    assert planned.out.startswith(
        f"would roll back {name}:v: {short_digest(new.digest)} -> {short_digest(old.digest)} (from {backup})"
    )
    assert planned.writes == []
    assert bed.tags(name)["v"] == new.digest

    done = bed.cli("rollback", f"{name}:v", "--output", "json")
    assert done.code == 0, done.err
    doc = done.json()
    assert doc["ok"] is True
    assert (doc["from_digest"], doc["to_digest"], doc["backup_tag"]) == (new.digest, old.digest, backup)
    assert bed.tags(name)["v"] == old.digest
    assert "PutImage" in done.writes

    again = bed.cli("rollback", f"{name}:v")  # the tag already shows the kept image
    assert again.code == 0, again.err
    assert "already showed" in again.out


def test_rollback_without_a_backup_exits_2(bed: Bed, unique_repo: str) -> None:
    name, _ = make_fresh(bed, unique_repo, "v")
    result = bed.cli("rollback", f"{name}:v")
    assert result.code == 2
    assert f"no backup of {name}:v" in result.err
    assert result.writes == []


# -- warm ----------------------------------------------------------------------------------------------


def test_warm_caches_an_absent_image_and_warms_every_layer_of_every_platform(
    bed: Bed, unique_repo: str
) -> None:
    image = bed.pusher.push_index(unique_repo, "1.0", flavor="oci")
    name = f"docker-hub/{unique_repo}"

    result = bed.cli("warm", f"{name}:1.0")

    assert result.code == 0, result.err
    assert result.out.startswith(f"cached {name}:1.0 {short_digest(image.digest)}")
    assert "linux/amd64, linux/arm64" in result.out
    assert bed.tags(name) == {"1.0": image.digest}
    warmed = {layer.digest for layer in bed.emulator.imported_layers if layer.repository == name}
    assert {blob.digest for blob in image.all_layers} <= warmed

    again = bed.cli("warm", f"{name}:1.0", "--output", "json")
    assert again.code == 0
    doc = again.json()
    assert (doc["ok"], doc["imported"], doc["digest"]) == (True, False, image.digest)
    assert doc["upstream"] == f"registry-1.docker.io/{unique_repo}:1.0"


def test_warm_dry_run_asks_upstream_and_writes_nothing(bed: Bed, unique_repo: str) -> None:
    image = bed.pusher.push_image(unique_repo, "new")
    name = f"ecr-public/{unique_repo}"

    planned = bed.cli("warm", f"{name}:new", "--dry-run", "--output", "json")

    assert planned.code == 1
    doc = planned.json()
    assert doc["upstream_digest"] == image.digest
    assert doc["cached_digest"] is None
    assert planned.writes == []
    assert bed.tags(name) == {}
    assert bed.emulator.import_count(name) == 0

    make_fresh(bed, unique_repo, "cached")
    fresh = bed.cli("warm", f"{name}:cached", "--dry-run")
    assert fresh.code == 0
    assert "cached and fresh" in fresh.out
    make_stale(bed, unique_repo, "moved")
    stale = bed.cli("warm", f"{name}:moved", "--dry-run")
    assert stale.code == 1
    assert f"ptc-sync refresh {name}:moved" in stale.out
    missing = bed.cli("warm", f"{name}:nope", "--dry-run")
    assert missing.code == 2, "the upstream tag is missing"
    assert "404" in missing.err
    assert [r.writes for r in (fresh, stale, missing)] == [[], [], []]


def test_a_failed_warm_exits_1_with_the_reason(bed: Bed, unique_repo: str) -> None:
    bed.pusher.push_image(unique_repo, "v")
    name = f"ecr-public/{unique_repo}"
    bed.emulator.fail_next_import("UpstreamAccessDenied", repository=name, tag="v")
    result = bed.cli("warm", f"{name}:v")
    assert result.code == 1
    assert "failed at import" in result.err
    assert "UpstreamAccessDenied" in result.err


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("docker.io/library/alpine:3.20", "not under any pull-through cache rule"),
        ("registry-1.docker.io/library/alpine:3.20", "the upstream host always comes from the pull-through"),
        ("localhost:5000/library/alpine:3.20", "not an ECR repository name"),
        ("https://127.0.0.1:5000/library/alpine:3.20", "is a URL"),
        ("quay/prometheus/node-exporter:v1", "prefixes: docker-hub, ecr-public"),
        ("docker-hub/alpine:3.20", "docker-hub/library/alpine"),
        ("docker-hub/library/alpine", "give REPO:TAG"),
        ("docker-hub/library/alpine@sha256:" + "a" * 64, "not by digest"),
        ("docker-hub/library/Alpine:3.20", "not an ECR repository name"),
    ],
)
def test_warm_refuses_anything_but_a_cached_repository_name_under_a_rule(
    bed: Bed, image: str, message: str
) -> None:
    result = bed.cli("warm", image)
    assert result.code == 2
    assert message in result.err
    assert result.writes == []
    assert bed.emulator.upstream_fetches == []


# -- --output text and shell completion ------------------------------------------------------------------


def test_output_text_is_one_tab_separated_record_a_tag_with_full_digests(bed: Bed, unique_repo: str) -> None:
    name, old, new = make_stale(bed, unique_repo, "stale")
    _, fresh = make_fresh(bed, unique_repo, "fresh")

    status = bed.cli("status", "--output", "text")

    assert status.code == 1, status.err
    records = sorted(line.split("\t") for line in status.out.splitlines())
    assert records == [
        [f"{name}:fresh", fresh.digest, fresh.digest, f"{PUSHED_DAYS_AGO}d00h", "fresh", ""],
        [f"{name}:stale", old.digest, new.digest, f"{PUSHED_DAYS_AGO}d00h", "stale", ""],
    ]
    check = bed.cli("check", "--output", "text")
    assert sorted(line.split("\t")[:2] for line in check.out.splitlines()) == [
        ["fresh", f"{name}:fresh"],
        ["stale", f"{name}:stale"],
    ]


def completions(script: str, *words: str) -> list[str]:
    """What bash offers after ``ptc-sync WORDS`` with the completion script loaded."""
    quoted = " ".join(shlex.quote(w) for w in ["ptc-sync", *words])
    call = f'COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _ptc_sync; printf "%s\\n" "${{COMPREPLY[@]}}"'
    program = f"{script}\n{call}"
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, timeout=30)
    return [w for w in done.stdout.splitlines() if w]


def test_completion_prints_a_bash_script_that_completes_commands_options_and_values() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["completion", "bash"]) == 0
    script = out.getvalue()
    assert "complete -F _ptc_sync ptc-sync" in script
    assert completions(script, "ch") == ["check"]
    assert completions(script, "r") == ["refresh", "rollback", "runs"]
    assert "--output" in completions(script, "check", "--ou")
    assert completions(script, "check", "--output", "") == ["table", "text", "json"]
    assert completions(script, "refresh", "x", "--dr") == ["--dry-run"]
    assert completions(script, "history", "--si") == ["--since"]
    assert completions(script, "status", "--endpoint") == [], "test-only options stay hidden"
    assert "bash" in completions(script, "completion", "")
