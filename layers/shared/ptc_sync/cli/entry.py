"""The console script's entry point (``ptc-sync = "ptc_sync.cli:main"``): parse, run the command's
handler, and turn every error into one line and its exit code.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence

from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError, ProfileNotFound

from ptc_sync import cli_output as out
from ptc_sync.cli.context import (
    PROG,
    CliError,
    Context,
)
from ptc_sync.cli.output import (
    _fail,
)
from ptc_sync.cli.parser import build_parser
from ptc_sync.ecr import EcrError
from ptc_sync.registry.errors import NotFoundError, RegistryError
from ptc_sync.stack import StackError
from ptc_sync.state import StateError


def error_exit_code(exc: Exception) -> int | None:
    """2 for a refused argument or something missing, 1 for a failure; None for a crash."""
    missing = (
        isinstance(
            exc, (CliError, StackError, NotFoundError, NoCredentialsError, NoRegionError, ProfileNotFound)
        )
        or (isinstance(exc, EcrError) and exc.not_found)
        or (isinstance(exc, StateError) and exc.code == "ResourceNotFoundException")
    )
    if missing:
        return out.EXIT_USAGE
    # the account, the registry or the network said no: a failed step, as a failed refresh
    if isinstance(exc, (EcrError, RegistryError, StateError, BotoCoreError)):
        return out.EXIT_STALE
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return out.EXIT_USAGE
    ctx = Context(args, sys.stdout, sys.stderr)
    handler: Callable[[Context], int] = args.handler
    try:
        return handler(ctx)
    except KeyboardInterrupt:
        ctx.warn("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends in one line and its exit code
        code = error_exit_code(exc)
        if code is not None:
            return _fail(ctx, args.command, code, str(exc))
        if args.debug:
            traceback.print_exc(file=ctx.stderr)
        hint = "" if args.debug else " (run again with --debug for the traceback)"
        return _fail(ctx, args.command, out.EXIT_CRASH, f"{PROG} crashed: {type(exc).__name__}: {exc}{hint}")
