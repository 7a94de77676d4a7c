"""``ptc-sync``: the operator CLI (status, check, refresh, rollback, warm, history, runs, completion).

Works with ordinary AWS credentials (``--profile``, ``--region``, the environment) and, for tests and
demos, against the local testbed (``--endpoint-url`` of a moto server, ``--upstream-override`` to
loopback registries; both hidden from help). Everything is built by ``wiring.build_app`` and every
decision is the checker's (through ``local_run``) or the refresher's: the commands pick the scope
from the arguments, call them and print.

Exit codes (``cli_output.EXIT_CODES``): 0 fresh (or a write did what it was asked), 1 stale or
failed, 2 usage or missing (a refused argument; a rule, tag, backup, run or table that is not
there), 3 crash (an unexpected exception: one line on stderr, the traceback only with ``--debug``).

- ``parser``: the options and ``build_parser``, the one place where subcommands are registered;
- ``commands``: status, check, refresh, rollback, warm, trigger, selftest;
- ``history``: history and runs (the state table);
- ``context``: argument checks, the AWS session, the ``Context`` a command runs in;
- ``output``: how a command prints its result; ``completion``: the bash completion script;
- ``entry``: ``main``, the console script (``ptc-sync = "ptc_sync.cli:main"``).
"""

from ptc_sync.cli import commands, completion, context, entry, history, output, parser
from ptc_sync.cli.commands import (
    cmd_check,
    cmd_refresh,
    cmd_rollback,
    cmd_selftest,
    cmd_status,
    cmd_trigger,
    cmd_warm,
)
from ptc_sync.cli.completion import bash_completion
from ptc_sync.cli.context import (
    EXAMPLE,
    HOST_HINT,
    PROG,
    PROGRESS_DELAY,
    PROGRESS_INTERVAL,
    SETTING_FLAGS,
    CliError,
    Context,
    EndpointSession,
    ProgressResolver,
    image_argument,
    parse_endpoint,
    parse_overrides,
)
from ptc_sync.cli.entry import error_exit_code, main
from ptc_sync.cli.history import MAX_SINCE, cmd_history, cmd_runs, parse_since
from ptc_sync.cli.parser import DESCRIPTION, EPILOG, build_parser, cmd_completion

__all__ = [
    "DESCRIPTION",
    "EPILOG",
    "EXAMPLE",
    "HOST_HINT",
    "MAX_SINCE",
    "PROG",
    "PROGRESS_DELAY",
    "PROGRESS_INTERVAL",
    "SETTING_FLAGS",
    "CliError",
    "Context",
    "EndpointSession",
    "ProgressResolver",
    "bash_completion",
    "build_parser",
    "cmd_check",
    "cmd_completion",
    "cmd_history",
    "cmd_refresh",
    "cmd_rollback",
    "cmd_runs",
    "cmd_selftest",
    "cmd_status",
    "cmd_trigger",
    "cmd_warm",
    "commands",
    "completion",
    "context",
    "entry",
    "error_exit_code",
    "history",
    "image_argument",
    "main",
    "output",
    "parse_endpoint",
    "parse_overrides",
    "parse_since",
    "parser",
]
