"""``ptc-sync selftest`` on the testbed (issue 15 item 6): all verified with the emulation as it is,
a failure with an "unknown" behaviour switched off (docs/ecr-behaviour.md: PutImage into a cache
repository, re-import after an API-only delete), and then the next scheduled run reports only, with
the reason in its report."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from ptc_sync import cli
from ptc_sync.models import CachedTag
from ptc_sync.selftest import (
    BACKUP_PREFIX,
    DEFAULT_IMAGE,
    DEFAULT_TAGS,
    SelftestOptions,
    SelftestUsageError,
    caller_principal,
    exit_code,
    render,
    run_selftest,
)
from ptc_sync.selftest_store import Behaviour, SelftestResult, Status
from testbed.ecr_endpoint import EcrRegistryEndpoint
from testbed.images import PushedImage
from testbed.lambdas import Stack
from testbed.sandbox import ACCOUNT, PUBLIC_HOST, REGION, Sandbox
from tests.selftest.conftest import BuildApp
from tests.sync.conftest import run_stack

CALLER = f"arn:aws:iam::{ACCOUNT}:user/moto"  # moto's default credentials, as the emulation sees them


def publish(box: Sandbox, image: str, tags: tuple[str, ...] = DEFAULT_TAGS) -> dict[str, PushedImage]:
    """The small public image upstream (public.ecr.aws is the loopback registry), multi-platform."""
    return {tag: box.pusher.push_index(image, tag, layers=2) for tag in tags}


def exclude_caller(box: Sandbox) -> None:
    box.client("ecr").register_pull_time_update_exclusion(principalArn=CALLER)


def options(endpoint: EcrRegistryEndpoint, image: str = DEFAULT_IMAGE) -> SelftestOptions:
    return SelftestOptions(image=image, endpoint_override=endpoint.url)


def shown(result: SelftestResult) -> str:
    out = io.StringIO()
    render(result, out)
    print(out.getvalue())  # the timings, for the log of the run
    return out.getvalue()


def test_the_testbed_runs_the_selftest_to_all_verified(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint
) -> None:
    pushed = publish(box, DEFAULT_IMAGE)
    exclude_caller(box)
    app = build_app()
    repository = f"ecr-public/{DEFAULT_IMAGE}"

    result = run_selftest(app, options(endpoint))

    text = shown(result)
    assert result.all_verified, text
    assert [c.behaviour for c in result.checks] == list(Behaviour), "one check per behaviour, in order"
    assert all(c.seconds >= 0 for c in result.checks)
    assert exit_code(result) == 0
    assert text.splitlines()[-1] == "all verified"
    assert result.repository == repository
    assert endpoint.requests[("GET", "manifest")] >= 1, "the endpoint import went through the endpoint"
    imported = {r.tag for r in box.emulator.imports if r.repository == repository}
    assert imported == set(DEFAULT_TAGS)
    assert {r.digest for r in box.emulator.imports} == {p.digest for p in pushed.values()}
    assert box.tags(repository) == {}, "the throwaway tags and the backup are gone"
    assert any(n.startswith("removed ") and BACKUP_PREFIX in n for n in result.notes)
    assert app.selftest is not None
    assert app.selftest.latest() == result, "stored as the latest result"
    assert app.report_only_reason() == ""


def test_without_an_exclusion_for_the_caller_pull_time_is_unknown_not_failed(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    publish(box, unique_repo)
    result = run_selftest(build_app(), options(endpoint, unique_repo))

    check = next(c for c in result.checks if c.behaviour is Behaviour.PULL_TIME_EXCLUSION)
    assert check.status is Status.UNKNOWN
    assert CALLER in check.detail
    assert not result.failed
    assert exit_code(result) == 0, "unknown is not a failure"


def _stale_tag(box: Sandbox, unique_repo: str) -> tuple[str, str, str]:
    """A cached tag upstream has moved: (repository, cached digest, upstream digest)."""
    box.pusher.push_image(f"{unique_repo}-app", "1.0")
    repository = f"ecr-public/{unique_repo}-app"
    old = box.cache(repository, "1.0")
    new = box.pusher.push_image(f"{unique_repo}-app", "1.0").digest
    return repository, old, new


@pytest.mark.parametrize(
    "case",
    [
        ("put_image_in_cache", Behaviour.BACKUP_PUT_IMAGE),
        ("reimport_after_delete", Behaviour.REIMPORT_AFTER_DELETE),
    ],
    ids=["backup-refused", "no-reimport-after-delete"],
)
def test_a_behaviour_switched_off_fails_and_the_next_scheduled_run_reports_only(
    box: Sandbox,
    build_app: BuildApp,
    endpoint: EcrRegistryEndpoint,
    unique_repo: str,
    case: tuple[str, Behaviour],
) -> None:
    switch, behaviour = case
    publish(box, unique_repo)
    exclude_caller(box)
    repository, old, new = _stale_tag(box, unique_repo)
    setattr(box.emulator, switch, False)
    app = build_app(verify_timeout_seconds=10)

    result = run_selftest(app, options(endpoint, unique_repo))

    text = shown(result)
    failed = {c.behaviour for c in result.failed}
    assert failed == {behaviour}, text
    assert all(c.status is Status.VERIFIED for c in result.checks if c.behaviour is not behaviour), (
        "the other checks still run (on the tag still cached)"
    )
    assert exit_code(result) == 1
    assert f"report only: the selftest of {result.at:%Y-%m-%d %H:%M}Z found {behaviour.value}" in text
    assert box.tags(f"ecr-public/{unique_repo}") == {}, "cleaned up after a failure too"

    stack = Stack(box)
    planned = run_stack(box, stack, app=app)

    assert planned["status"] == "planned"
    assert planned["dry_run"] is True, "report only: no refresh, no removal"
    assert planned["errors"][0].startswith("report only: the selftest")
    assert behaviour.value in planned["errors"][0]
    assert box.tag_digest(repository, "1.0") == old, "the stale tag is left as it is"
    assert [t for t in box.tags(repository) if t != "1.0"] == [], "no backup written"
    published = " ".join(m["Message"] for m in box.messages())
    assert "report only" in published, "the run's report says why"
    assert behaviour.value in published

    # the behaviour works again, a selftest says so: the next run refreshes
    setattr(box.emulator, switch, True)
    again = run_selftest(build_app(), options(endpoint, unique_repo))
    assert not again.failed, shown(again)
    assert build_app().report_only_reason() == ""
    refreshed = run_stack(box, stack, app=build_app())
    assert refreshed["dry_run"] is False
    assert box.tag_digest(repository, "1.0") == new


def test_the_refresh_is_safe_with_either_switch_off(
    box: Sandbox, build_app: BuildApp, unique_repo: str
) -> None:
    """What the gate protects against, and what happens without it: the protocol itself still never
    loses the tag (backup refused: untouched; no re-import: rolled back)."""
    repository, old, new = _stale_tag(box, unique_repo)
    refresher = build_app(verify_timeout_seconds=5).refresher
    cached = CachedTag(repository=repository, tag="1.0", digest=old, media_type="")

    box.emulator.put_image_in_cache = False
    refused = refresher.refresh(cached, new)
    assert not refused.ok
    assert not refused.rolled_back, "the tag was never removed"
    assert box.tag_digest(repository, "1.0") == old

    box.emulator.put_image_in_cache = True
    box.emulator.reimport_after_delete = False
    lost = refresher.refresh(cached, new)
    assert not lost.ok
    assert lost.rolled_back, lost.reason
    assert box.tag_digest(repository, "1.0") == old


def test_a_tag_already_cached_is_refused_before_anything_is_written(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    publish(box, unique_repo)
    box.cache(f"ecr-public/{unique_repo}", DEFAULT_TAGS[0])
    imports = len(box.emulator.imports)
    with pytest.raises(SelftestUsageError, match="already cached"):
        run_selftest(build_app(), options(endpoint, unique_repo))
    assert len(box.emulator.imports) == imports
    assert set(box.tags(f"ecr-public/{unique_repo}")) == {DEFAULT_TAGS[0]}, "left as it was"


def test_a_rule_that_does_not_exist_is_refused(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint
) -> None:
    with pytest.raises(SelftestUsageError, match="no pull-through cache rule with prefix 'quay'"):
        run_selftest(build_app(), SelftestOptions(rule="quay", endpoint_override=endpoint.url))


@pytest.mark.parametrize(
    ("arn", "principal"),
    [
        (
            "arn:aws:sts::123456789012:assumed-role/ptc-sync-Checker-1AB/botocore-session-1",
            "arn:aws:iam::123456789012:role/ptc-sync-Checker-1AB",
        ),
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"),
        ("arn:aws:sts::123456789012:user/moto", "arn:aws:iam::123456789012:user/moto"),
    ],
)
def test_the_caller_is_named_as_the_exclusion_names_it(arn: str, principal: str) -> None:
    assert caller_principal(arn) == principal


# -- the command ------------------------------------------------------------------------------------


def test_help_documents_each_behaviour(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["selftest", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for behaviour in Behaviour:
        assert behaviour.value in text, behaviour
    for word in ("verified", "failed", "unknown", "report only", "Exit code"):
        assert word in text
    assert "--ecr-endpoint-override" not in text, "the testbed's override is not for accounts"


def _cli(box: Sandbox, endpoint: EcrRegistryEndpoint, *args: str) -> list[str]:
    return [
        "selftest",
        "--region",
        REGION,
        "--table",
        box.table_name,
        "--upstream-override",
        f"{PUBLIC_HOST}={box.registry.url}",
        "--ecr-endpoint-override",
        endpoint.url,
        "--verify-timeout",
        "5",
        *args,
    ]


def test_the_command_prints_each_behaviour_and_exits_by_the_result(
    box: Sandbox, endpoint: EcrRegistryEndpoint, unique_repo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(box, unique_repo)
    exclude_caller(box)

    assert cli.main(_cli(box, endpoint, "--image", unique_repo)) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[-1] == "all verified"

    box.emulator.put_image_in_cache = False
    assert cli.main(_cli(box, endpoint, "--image", unique_repo, "--output", "json")) == 1
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 1
    statuses = {c["behaviour"]: c["status"] for c in doc["checks"]}
    assert statuses[Behaviour.BACKUP_PUT_IMAGE.value] == "failed"

    box.cache(f"ecr-public/{unique_repo}", DEFAULT_TAGS[1])
    assert cli.main(_cli(box, endpoint, "--image", unique_repo)) == 2, "a tag already cached: usage"
    assert cli.main(_cli(box, endpoint, "--image", unique_repo, "--tag", "only-one")) == 2
