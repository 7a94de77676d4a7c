"""Arguments the CLI refuses before touching AWS, its help, its exit-code rule and its progress line."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError

from ptc_sync import cli
from ptc_sync import cli_output as out
from ptc_sync.ecr import EcrError
from ptc_sync.models import Outcome, TagResult
from ptc_sync.registry.errors import NotFoundError, RegistryError
from ptc_sync.state import StateError
from tests.cli.conftest import Bed

UNUSED_ENDPOINT = "http://127.0.0.1:9"
NOW = datetime(2026, 2, 15, 12, 0, tzinfo=UTC)  # nothing listens: a test that reached AWS would fail loudly


def run(*args: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(args))
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream-override", "public.ecr.aws=https://registry.example.com"], "not a loopback address"),
        (["--upstream-override", "public.ecr.aws"], "give HOST=URL"),
        (["--upstream-override", "https://public.ecr.aws=http://127.0.0.1:5000"], "give HOST=URL"),
        (["--endpoint-url", "http://moto.example.com:5000"], "plain http is only for a loopback address"),
        (["--endpoint-url", "file:///etc/passwd"], "give an http(s) URL"),
        (["--rule", "Not A Prefix"], "--rule: Value error"),
        (["--pulled-within-days", "-1"], "--pulled-within-days"),
    ],
)
def test_bad_options_exit_2_with_the_reason(args: list[str], message: str) -> None:
    code, stdout, stderr = run("check", "--region", "us-east-1", "--endpoint-url", UNUSED_ENDPOINT, *args)
    assert code == 2
    assert message in stderr
    assert stdout == ""


def test_errors_are_a_json_document_with_output_json() -> None:
    code, stdout, stderr = run(
        "check",
        "--output",
        "json",
        "--region",
        "us-east-1",
        "--upstream-override",
        "public.ecr.aws=http://10.0.0.1",
    )
    assert code == 2
    assert '"exit_code": 2' in stdout
    assert "loopback" in stdout
    assert "loopback" in stderr


def test_a_missing_region_or_an_unknown_profile_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    code, _, stderr = run("status", "--endpoint-url", UNUSED_ENDPOINT)
    assert code == 2
    assert "no AWS region" in stderr
    code, _, stderr = run("status", "--profile", "nobody", "--region", "us-east-1")
    assert code == 2
    assert "nobody" in stderr


def test_usage_errors_and_no_command_exit_2() -> None:
    code, _, stderr = run()
    assert code == 2
    assert "usage: ptc-sync" in stderr
    with pytest.raises(SystemExit) as missing_image, contextlib.redirect_stderr(io.StringIO()):
        cli.main(["warm"])
    assert missing_image.value.code == 2
    with pytest.raises(SystemExit) as bad_output, contextlib.redirect_stderr(io.StringIO()):
        cli.main(["check", "--output", "yaml"])
    assert bad_output.value.code == 2


def help_of(*command: str) -> str:
    stdout = io.StringIO()
    with pytest.raises(SystemExit) as done, contextlib.redirect_stdout(stdout):
        cli.main([*command, "--help"])
    assert done.value.code == 0
    return stdout.getvalue()


COMMANDS = ["status", "check", "refresh", "rollback", "warm", "history", "runs", "completion"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_hides_the_testbed_options_and_documents_the_exit_codes(command: list[str]) -> None:
    text = help_of(*command)
    assert "--endpoint-url" not in text
    assert "--upstream-override" not in text
    assert "testbed" not in text
    assert "exit codes:" in text
    for code, meaning in out.EXIT_CODES:
        assert f"  {code}  {meaning}" in text
    assert "--output {table,text,json}" in text
    assert "--debug" in text


def test_only_the_writing_commands_take_dry_run() -> None:
    takes = [c for c in COMMANDS if re.search(r"^  --dry-run ", help_of(c), re.MULTILINE)]
    assert takes == ["refresh", "rollback", "warm"]


def result(outcome: Outcome) -> TagResult:
    return TagResult(repository="r", tag="t", rule_prefix="p", outcome=outcome)


@pytest.mark.parametrize(
    ("outcomes", "errors", "code"),
    [
        ([Outcome.FRESH, Outcome.SKIPPED], [], 0),
        ([], [], 0),
        ([Outcome.REFRESHED, Outcome.FRESH], [], 0),  # fresh now
        ([Outcome.FRESH, Outcome.STALE], [], 1),
        ([Outcome.IMMUTABLE], [], 1),
        ([Outcome.UPSTREAM_MISSING], [], 1),
        ([Outcome.UPSTREAM_ERROR], [], 1),
        ([Outcome.REFRESHED, Outcome.REFRESH_FAILED], [], 1),
        ([Outcome.RATE_LIMITED], [], 1),
        ([Outcome.FRESH], ["DescribeRepositories: AccessDenied"], 1),
    ],
)
def test_exit_code_is_1_for_anything_stale_or_failed_else_0(
    outcomes: list[Outcome], errors: list[str], code: int
) -> None:
    assert out.exit_code([result(o) for o in outcomes], errors) == code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (cli.CliError("no backup"), 2),
        (EcrError("DescribeImages", "ImageNotFoundException", "gone"), 2),
        (NotFoundError("HTTP 404", host="h", repository="r", reference="t", status=404), 2),
        (StateError("Query", "t", "ResourceNotFoundException", "no table"), 2),
        (NoCredentialsError(), 2),
        (EcrError("DescribeRepositories", "AccessDeniedException", "no"), 1),
        (RegistryError("HTTP 500", host="h"), 1),
        (StateError("Query", "t", "AccessDeniedException", "no"), 1),
        (EndpointConnectionError(endpoint_url="https://ecr"), 1),
        (KeyError("x"), None),
        (TypeError("bug"), None),
    ],
)
def test_errors_map_to_usage_or_missing_failed_or_crash(error: Exception, code: int | None) -> None:
    assert cli.error_exit_code(error) == code


def test_a_crash_exits_3_with_one_line_and_the_traceback_only_with_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(ctx: cli.Context) -> int:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli.commands, "cmd_status", crash)
    code, stdout, stderr = run("status")
    assert code == 3
    assert stderr.splitlines() == [
        "ptc-sync: error: ptc-sync crashed: ZeroDivisionError: division by zero "
        "(run again with --debug for the traceback)"
    ]
    assert stdout == ""
    code, stdout, stderr = run("status", "--output", "json")
    assert (code, json.loads(stdout)["exit_code"]) == (3, 3)
    code, _, stderr = run("--debug", "status")
    assert code == 3
    assert "Traceback (most recent call last)" in stderr
    assert 'raise ZeroDivisionError("division by zero")' in stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-02-01T10:30:00+01:00", datetime(2026, 2, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_since_takes_a_duration_or_a_date(text: str, expected: datetime) -> None:
    assert cli.parse_since(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("yesterday", "give 30m, 24h"), ("2026-03-01", "in the future"), ("400d", "at most 365 days")],
)
def test_since_refuses_what_it_cannot_read(text: str, message: str) -> None:
    with pytest.raises(cli.CliError, match=message):
        cli.parse_since(text, NOW)


def test_ages_read_at_a_glance() -> None:
    assert [out.age(s) for s in (None, 5, 125, 3 * 3600 + 7 * 60, 2 * 86400 + 5 * 3600)] == [
        "-",
        "5s",
        "2m",
        "3h07m",
        "2d05h",
    ]


# -- the progress line -----------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_progress_draws_a_bar_on_a_terminal_and_wipes_it() -> None:
    stream = Terminal()
    with out.Progress(stream, delay=0, interval=0.005, width=10) as progress:
        progress.phase("comparing", total=4)
        progress.advance(2)
        wait_for(lambda: "[#####.....] 2/4" in stream.getvalue())
    assert stream.getvalue().endswith("\r")
    last = stream.getvalue().rsplit("\r", 2)[-2]
    assert last.strip() == ""  # the line is blanked before the command prints


def test_progress_stays_silent_off_a_terminal_and_during_the_first_moment() -> None:
    piped = io.StringIO()
    with out.Progress(piped, delay=0, interval=0.001) as progress:
        progress.phase("comparing", total=1)
        time.sleep(0.02)
    assert piped.getvalue() == ""
    quick = Terminal()
    with out.Progress(quick, delay=5, interval=0.001) as progress:
        progress.phase("comparing", total=1)
        time.sleep(0.02)
    assert quick.getvalue() == ""


def test_a_scan_shows_progress_on_a_terminal_stderr_only(
    bed: Bed, unique_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for tag in ("a", "b", "c"):
        bed.pusher.push_image(unique_repo, tag)
        bed.cache(f"ecr-public/{unique_repo}", tag)
    monkeypatch.setattr(cli.context, "PROGRESS_DELAY", 0.0)
    monkeypatch.setattr(cli.context, "PROGRESS_INTERVAL", 0.001)
    stdout, stderr = io.StringIO(), Terminal()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["check", "--output", "json", *bed.aws_args])
    assert code == 0
    assert "\r" in stderr.getvalue()
    assert any(label in stderr.getvalue() for label in ("discovering cached tags", "comparing with upstream"))
    assert stdout.getvalue().startswith("{")  # the JSON document is untouched
    assert "\r" not in stdout.getvalue()
