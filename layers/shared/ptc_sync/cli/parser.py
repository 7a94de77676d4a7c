"""The arguments: options every command takes, the option groups of scope, writes and the state table,
and ``build_parser``, the one place where subcommands are registered (a new one is one ``command(...)``
call there with its handler and options).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ptc_sync import __version__, selftest
from ptc_sync import cli_output as out
from ptc_sync.cli import commands, history
from ptc_sync.cli.completion import bash_completion
from ptc_sync.cli.context import (
    EXAMPLE,
    PROG,
    Context,
)


def cmd_completion(ctx: Context) -> int:
    ctx.stdout.write(bash_completion(build_parser()))
    return out.EXIT_OK


# -- arguments ----------------------------------------------------------------------------------------

DESCRIPTION = """\
Keep Amazon ECR pull-through cache repositories fresh, from an operator's shell.

Uses the usual AWS credentials (--profile, --region, AWS_* environment variables). The scope options
of status and check are those of the scheduled sync (rule prefixes, repository and tag patterns).
"""

EPILOG = f"""\
examples:
  {PROG} status --rule docker-hub
  {PROG} check --repository 'docker-hub/library/*' --output json
  {PROG} refresh docker-hub/library/alpine:3.20 --dry-run
  {PROG} rollback docker-hub/library/alpine:3.20
  {PROG} warm {EXAMPLE}
  {PROG} history --since 7d --table STATE_TABLE
  {PROG} runs --table STATE_TABLE
  eval "$({PROG} completion bash)"

exit codes:
{out.exit_codes_help()}
"""


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before and after the command (the command's own win when given twice)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    aws = parser.add_argument_group("AWS and output")
    aws.add_argument("--profile", default=default(None), help="AWS profile (default: the environment's)")
    aws.add_argument("--region", default=default(None), help="AWS region (default: the profile's)")
    aws.add_argument(
        "--output",
        choices=("table", "text", "json"),
        default=default("table"),
        help="table (aligned, with a summary), text (tab-separated records, no header) or json",
    )
    aws.add_argument(
        "--debug", action="store_true", default=default(False), help="print the traceback of a crash (exit 3)"
    )
    aws.add_argument(
        "--stack-name",
        default=default(os.environ.get("PTC_STACK_NAME")),
        metavar="NAME",
        help="a deployed ptc-sync stack: its state table and settings, no retyping ($PTC_STACK_NAME)",
    )
    # the local testbed (tests and demos only): a moto server and loopback registries instead of AWS
    # and the real upstream registries. Accepted everywhere, shown nowhere: not for production accounts.
    parser.add_argument("--endpoint-url", default=default(None), metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument(
        "--upstream-override",
        action="append",
        default=default(None),
        metavar="HOST=URL",
        help=argparse.SUPPRESS,
    )


def _table_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, why: str = "") -> None:
    """``--table``: the stack's state table, and what the command reads or writes in it."""
    parser.add_argument(
        "--table",
        default=os.environ.get("PTC_TABLE_NAME"),
        metavar="NAME",
        help=f"the stack's StateTableName output (default: $PTC_TABLE_NAME){': ' + why if why else ''}",
    )


def _scope_options(parser: argparse.ArgumentParser) -> None:
    _table_option(parser, "its ledger says which tags are ptc-sync's backups (read only)")
    scope = parser.add_argument_group("scope (as the scheduled sync's settings)")
    scope.add_argument("--rule", action="append", metavar="PREFIX", help="only this rule prefix (repeatable)")
    scope.add_argument(
        "--repository", action="append", metavar="PATTERN", help="only repositories matching (repeatable)"
    )
    scope.add_argument("--exclude-repository", action="append", metavar="PATTERN", help="skip repositories")
    scope.add_argument("--tag", action="append", metavar="PATTERN", help="only tags matching (repeatable)")
    scope.add_argument("--exclude-tag", action="append", metavar="PATTERN", help="skip tags matching")
    scope.add_argument(
        "--pulled-within-days", type=int, default=0, metavar="N", help="only tags pulled in the last N days"
    )


def _write_options(parser: argparse.ArgumentParser, *, verify: bool, generations: bool) -> None:
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; write nothing")
    _table_option(
        parser,
        "its refresh journal, lease and backup ledger make a refresh safe from a crash and from a "
        "concurrent run",
    )
    if verify:
        parser.add_argument(
            "--verify-timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="how long to wait for ECR to show the imported image (the stack's, or 120)",
        )
    if generations:
        parser.add_argument(
            "--keep-generations",
            type=int,
            default=None,
            metavar="N",
            help="previous images kept under backup tags (the stack's KeepGenerations, or 1)",
        )


def _state_options(parser: argparse.ArgumentParser, *, since: str) -> None:
    state = parser.add_argument_group("state table")
    _table_option(state)
    state.add_argument(
        "--since",
        default=since,
        metavar="WHEN",
        help=f"30m, 24h, 7d, 2w back from now, or an ISO date or time, UTC unless it says ({since})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command: the one place a subcommand is registered (``command(...)`` below,
    with its handler from ``commands`` or ``history`` and its own options)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser, top=True)
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, handler: Callable[[Context], int]) -> argparse.ArgumentParser:
        sub = subcommands.add_parser(
            name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=parser.formatter_class
        )
        sub.set_defaults(handler=handler)
        _common(sub, top=False)
        return sub

    def image_command(
        name: str,
        help_text: str,
        handler: Callable[[Context], int],
        image: tuple[str, str],
        *,
        verify: bool,
        generations: bool,
    ) -> None:
        """A command that writes to one image: ``image`` is the positional's metavar and help."""
        sub = command(name, help_text, handler)
        sub.add_argument("image", metavar=image[0], help=image[1])
        _write_options(sub, verify=verify, generations=generations)

    def state_command(
        name: str, help_text: str, handler: Callable[[Context], int], since: str
    ) -> argparse.ArgumentParser:
        """A command that reads the stack's state table (no writes), ``since`` back by default."""
        sub = command(name, f"{help_text} (no writes)", handler)
        _state_options(sub, since=since)
        return sub

    status = command(
        "status",
        "every cached tag with its cached and upstream digest, age and outcome (no writes)",
        commands.cmd_status,
    )
    _scope_options(status)
    check = command(
        "check", "compare every cached tag with upstream, summary and per tag (no writes)", commands.cmd_check
    )
    _scope_options(check)
    image_command(
        "refresh",
        "refresh stale tags of one cached repository with the sync's safe protocol (backup, import, "
        "verify, roll back on failure)",
        commands.cmd_refresh,
        ("REPO[:TAG]", "cached repository (every stale tag) or one tag"),
        verify=True,
        generations=True,
    )
    image_command(
        "rollback",
        "put back the previous image a refresh kept under a backup tag",
        commands.cmd_rollback,
        ("REPO:TAG", "cached repository and tag"),
        verify=False,
        generations=False,
    )
    image_command(
        "warm",
        "pre-cache one image under a pull-through cache rule and warm every layer",
        commands.cmd_warm,
        ("REPO:TAG", f"cached repository name and tag, e.g. {EXAMPLE}"),
        verify=True,
        generations=False,
    )
    state_command(
        "history", "refreshes and failures the stack recorded in its state table", history.cmd_history, "24h"
    ).add_argument(
        "--repository", action="append", metavar="PATTERN", help="only repositories matching (repeatable)"
    )
    state_command(
        "runs", "the stack's runs with a refresh or a failure, or one run's tags", history.cmd_runs, "7d"
    ).add_argument("run_id", nargs="?", metavar="RUN_ID", help="one run: its progress and every tag it named")
    trigger = command(
        "trigger",
        "ask the deployed stack for a run: a Sync Request on its request bus (needs --stack-name)",
        commands.cmd_trigger,
    )
    trigger.add_argument(
        "repositories", nargs="+", metavar="REPOSITORY", help="cached repositories or patterns"
    )
    trigger.add_argument("--tag", action="append", metavar="PATTERN", help="only these tags (repeatable)")
    trigger.add_argument("--check", action="store_true", help="compare and report only, refresh nothing")
    trigger.add_argument("--dry-run", action="store_true", help="the run reports what it would refresh")
    trigger.add_argument("--reason", metavar="TEXT", help="why, for the run's log (e.g. the release)")
    selftest.add_arguments(command("selftest", selftest.SUMMARY, commands.cmd_selftest))
    completion = command("completion", "print a shell completion script", cmd_completion)
    completion.add_argument("shell", choices=("bash",), help="the shell (bash; zsh through bashcompinit)")
    return parser
