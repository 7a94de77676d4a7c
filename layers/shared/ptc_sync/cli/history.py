"""The commands that read the state table: history (refreshes and failures since a time) and runs (the
runs with news, or one run's tags).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ptc_sync import cli_output as out
from ptc_sync.cli.context import (
    PROG,
    CliError,
    Context,
    _opened,
)
from ptc_sync.cli.output import (
    _full,
    _sorted,
)
from ptc_sync.models import (
    TagResult,
)
from ptc_sync.state import Change, RunProgress, StateStore
from ptc_sync.wiring import App
from ptc_sync.work import RUN_ID_RE

# -- history and runs: the state table ----------------------------------------------------------------

MAX_SINCE: Final = timedelta(days=366)  # HistoryDays is at most 365: nothing older is kept
DURATION_RE: Final = re.compile(r"^(\d+)([mhdw])$")
UNITS: Final = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` back from now, or an ISO date or time (UTC unless it says)."""
    raw = text.strip()
    if m := DURATION_RE.fullmatch(raw):
        since = now - timedelta(**{UNITS[m.group(2)]: int(m.group(1))})
    else:
        try:
            since = datetime.fromisoformat(raw)
        except ValueError:
            raise CliError(f"--since {text!r}: give 30m, 24h, 7d, 2w or a date such as 2026-01-31") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    if since > now:
        raise CliError(f"--since {text!r} is in the future")
    if now - since > MAX_SINCE:
        raise CliError(f"--since {text!r}: the state table keeps at most 365 days (HistoryDays)")
    return since


def _state(ctx: Context, app: App) -> StateStore:
    if app.state is None:  # pragma: no cover - _state_app always names a table
        raise CliError("no state table")
    return app.state


def _state_app(ctx: Context) -> App:
    stack = ctx.stack()
    table = ctx.args.table or (stack.settings().get("table_name") if stack else None)
    if not table:
        raise CliError(
            "give --stack-name NAME, --table NAME (the stack's StateTableName output) or set PTC_TABLE_NAME"
        )
    ctx.args.table = table  # named in what the command says
    return ctx.app(table_name=table)


def _minute(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}Z"


def cmd_history(ctx: Context) -> int:
    now = datetime.now(UTC)
    since = parse_since(ctx.args.since, now)
    patterns = ctx.args.repository or ()
    with _opened(_state_app(ctx)) as app:
        changes = _state(ctx, app).changes_since(since, now)
    if patterns:
        changes = [c for c in changes if any(fnmatch.fnmatchcase(c.result.repository, p) for p in patterns)]
    if ctx.json:
        doc = {
            "command": "history",
            "since": since.isoformat(),
            "until": now.isoformat(),
            "exit_code": out.EXIT_OK,
            "changes": [
                {"at": c.at.isoformat(), "run_id": c.run_id, **out.result_doc(c.result)} for c in changes
            ],
        }
        out.dump_json(doc, ctx.stdout)
        return out.EXIT_OK

    def row(c: Change, digest: Callable[[str | None], str], at: str) -> list[str]:
        r = c.result
        return [
            at,
            c.run_id,
            r.outcome.value,
            r.image,
            digest(r.cached_digest),
            digest(r.upstream_digest),
            r.reason,
        ]

    ctx.rows(
        ["AT", "RUN", "OUTCOME", "IMAGE", "FROM", "TO", "NOTE"],
        [row(c, out.digest, _minute(c.at)) for c in changes],
        [row(c, _full, c.at.isoformat()) for c in changes],
    )
    if not ctx.text:
        counts = out.summary_counts(c.result for c in changes)
        what = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no refreshes or failures"
        ctx.say(f"{what} since {_minute(since)}")
    return out.EXIT_OK


def _progress_doc(p: RunProgress) -> dict[str, Any]:
    return {
        "run_id": p.run_id,
        "started_at": p.started_at.isoformat(),
        "expected": p.expected,
        "done": p.done,
        "complete": p.complete,
        "summary": p.totals(),
    }


def _progress_cells(p: RunProgress) -> list[str]:
    counts = ", ".join(f"{n} {name}" for name, n in p.totals().items())
    return [
        p.run_id,
        _minute(p.started_at),
        f"{p.done}/{p.expected}",
        "complete" if p.complete else "running",
        counts,
    ]


def cmd_runs(ctx: Context) -> int:
    if ctx.args.run_id:
        return _show_run(ctx, ctx.args.run_id)
    now = datetime.now(UTC)
    since = parse_since(ctx.args.since, now)
    with _opened(_state_app(ctx)) as app:
        state = _state(ctx, app)
        run_ids = list(dict.fromkeys(c.run_id for c in reversed(state.changes_since(since, now)) if c.run_id))
        runs = [p for run_id in run_ids if (p := state.run_progress(run_id)) is not None]
    runs.sort(key=lambda p: p.started_at, reverse=True)
    if ctx.json:
        doc = {
            "command": "runs",
            "since": since.isoformat(),
            "exit_code": out.EXIT_OK,
            "runs": [_progress_doc(p) for p in runs],
        }
        out.dump_json(doc, ctx.stdout)
        return out.EXIT_OK
    cells = [_progress_cells(p) for p in runs]
    ctx.rows(["RUN", "STARTED", "ITEMS", "STATE", "OUTCOMES"], cells, cells)
    if not ctx.text:
        ctx.say(
            f"{len(runs)} run{'s' if len(runs) != 1 else ''} with a refresh or a failure since "
            f"{_minute(since)}; `{PROG} runs RUN_ID` for one run's tags"
        )
    return out.EXIT_OK


def _show_run(ctx: Context, run_id: str) -> int:
    if not re.fullmatch(RUN_ID_RE, run_id):
        raise CliError(f"{run_id!r} is not a run id")
    with _opened(_state_app(ctx)) as app:
        state = _state(ctx, app)
        progress = state.run_progress(run_id)
        if progress is None:
            raise CliError(f"no run {run_id} in {ctx.args.table} (runs are kept for HistoryDays)")
        results = _sorted(r for r in state.run_results(run_id) if r.repository)
    if ctx.json:
        doc = {
            "command": "runs",
            "exit_code": out.EXIT_OK,
            "run": _progress_doc(progress),
            "tags": [out.result_doc(r) for r in results],
        }
        out.dump_json(doc, ctx.stdout)
        return out.EXIT_OK
    if ctx.text:
        ctx.say(out.text_rows([_progress_cells(progress)]))
    else:
        ctx.say(out.table(["RUN", "STARTED", "ITEMS", "STATE", "OUTCOMES"], [_progress_cells(progress)]))
        ctx.say("")

    def row(r: TagResult, digest: Callable[[str | None], str]) -> list[str]:
        return [r.outcome.value, r.image, digest(r.cached_digest), digest(r.upstream_digest), r.reason]

    ctx.rows(
        ["OUTCOME", "IMAGE", "CACHED", "UPSTREAM", "NOTE"],
        [row(r, out.digest) for r in results],
        [row(r, _full) for r in results],
    )
    return out.EXIT_OK
