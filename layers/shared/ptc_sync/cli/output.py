"""How a command prints what it did: the JSON document of a run, the summary footer, a run's tags as a
table or records, a write's one line, and a failure's one line with its exit code. Formatting itself
is ``cli_output``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ptc_sync import cli_output as out
from ptc_sync.cli.context import (
    Context,
)
from ptc_sync.models import (
    Outcome,
    RunReport,
    TagResult,
)


def _sorted(results: Iterable[TagResult]) -> list[TagResult]:
    return sorted(results, key=lambda r: (r.repository, r.tag))


def _report_doc(
    command: str, report: RunReport, results: list[TagResult], code: int, *, read_only: bool
) -> dict[str, Any]:
    return {
        "command": command,
        "region": report.region,
        **({} if read_only else {"dry_run": report.dry_run}),
        "exit_code": code,
        "summary": out.summary_counts(results),
        "errors": list(report.errors),
        "tags": [out.result_doc(r) for r in results],
        "rate_limits": [out.rate_limit_doc(s) for s in report.rate_limits],
    }


def _footer(ctx: Context, report: RunReport, results: list[TagResult], *, read_only: bool) -> None:
    for error in report.errors:
        ctx.warn(f"error: {error}")
    if ctx.text:  # records only: the summary is the records
        return
    ctx.say(out.summary_line(out.summary_counts(r for r in results if r.outcome is not Outcome.SKIPPED)))
    skipped = sum(1 for r in results if r.outcome is Outcome.SKIPPED)
    if skipped:
        ctx.say(f"{skipped} more not in scope (listed with --output json)")
    for status in report.rate_limits:
        line = out.rate_limit_line(status)
        if line:
            ctx.say(line)
    if report.dry_run and not read_only:
        ctx.say("dry run: nothing written")


def _full(value: str | None) -> str:
    return value or "-"


def _print_run(
    ctx: Context, command: str, report: RunReport, results: list[TagResult], *, read_only: bool
) -> int:
    code = out.exit_code(results, report.errors)
    if ctx.json:
        out.dump_json(_report_doc(command, report, results, code, read_only=read_only), ctx.stdout)
        return code
    shown = [r for r in results if r.outcome is not Outcome.SKIPPED]

    def row(r: TagResult, digest: Callable[[str | None], str]) -> list[str]:
        note = ", ".join(r.platforms) or ("" if r.reason == "dry run" else r.reason)
        label = out.outcome_label(r, would_refresh=report.dry_run and not read_only)
        return [label, r.image, digest(r.cached_digest), digest(r.upstream_digest), note]

    ctx.rows(
        ["OUTCOME", "IMAGE", "CACHED", "UPSTREAM", "NOTE"],
        [row(r, out.digest) for r in shown],
        [row(r, _full) for r in shown],
    )
    _footer(ctx, report, results, read_only=read_only)
    return code


def _print_action(ctx: Context, doc: dict[str, Any], line: str) -> int:
    code = int(doc["exit_code"])
    if ctx.json:
        out.dump_json(doc, ctx.stdout)
    elif doc.get("ok") is False:
        ctx.warn(line)
    else:
        ctx.say(line)
    return code


def _fail(ctx: Context, command: str, code: int, message: str) -> int:
    if ctx.json:
        out.dump_json({"command": command, "exit_code": code, "error": message}, ctx.stdout)
    ctx.warn(f"error: {message}")
    return code
