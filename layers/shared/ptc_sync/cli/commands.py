"""The commands that look at or change cached tags: status, check, refresh, rollback, warm, trigger and
selftest. Each picks the scope from its arguments, calls a local run (the checker's path), the
refresher or the stack and prints; every decision is theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ptc_sync import cli_output as out
from ptc_sync import selftest
from ptc_sync.cli.context import (
    PROG,
    CliError,
    Context,
    _opened,
    _require_rule,
    _run,
    _scope,
    _tag_digest,
    image_argument,
)
from ptc_sync.cli.output import (
    _footer,
    _full,
    _print_action,
    _print_run,
    _report_doc,
    _sorted,
)
from ptc_sync.journal import newest_first
from ptc_sync.models import (
    CachedTag,
    Outcome,
    TagResult,
    UpstreamRef,
)
from ptc_sync.names import ImageName
from ptc_sync.registry.errors import NotFoundError, RegistryError
from ptc_sync.stack import put_sync_request, sync_request_detail
from ptc_sync.upstream import UpstreamMappingError, upstream_for
from ptc_sync.wiring import App


def _require_rules(app: App) -> None:
    """A scan needs a rule in scope: none (or a --rule naming none) is a missing rule, exit 2."""
    if not app.discovery.rules():
        prefixes = app.settings.rule_prefixes
        raise CliError(
            "no pull-through cache rules" + (f" match --rule {', '.join(prefixes)}" if prefixes else "")
        )


def cmd_status(ctx: Context) -> int:
    with _opened(ctx.app(**_scope(ctx.args))) as app, ctx.progress() as progress:
        _require_rules(app)
        progress.phase("discovering cached tags")
        found = app.discovery.discover()  # for push times, pull times and backups; the run decides outcomes
        report = _run(app, progress, dry_run=True)
    cached: dict[tuple[str, str], CachedTag] = {
        (t.cached.repository, t.cached.tag): t.cached for t in found.targets
    }
    now = datetime.now(UTC)
    results = _sorted(report.results)
    code = out.exit_code(results, report.errors)

    def seen(result: TagResult) -> CachedTag | None:
        tag = cached.get((result.repository, result.tag))
        return tag if tag and tag.digest == result.cached_digest else None

    def age_of(result: TagResult) -> float | None:
        tag = seen(result)
        return (now - tag.pushed_at).total_seconds() if tag and tag.pushed_at else None

    if ctx.json:
        doc = _report_doc("status", report, results, code, read_only=True)
        for entry, result in zip(doc["tags"], results, strict=True):
            tag = seen(result)
            entry["pushed_at"] = out.iso(tag.pushed_at if tag else None)
            entry["age_seconds"] = age_of(result)
            entry["last_pulled_at"] = out.iso(tag.last_pulled_at if tag else None)
            entry["size_bytes"] = tag.size_bytes if tag else None
            entry["backups"] = [
                r.backup_tag for r in newest_first(found.backups.get((result.repository, result.tag), []))
            ]
        out.dump_json(doc, ctx.stdout)
        return code
    shown = [r for r in results if r.outcome is not Outcome.SKIPPED]

    def row(r: TagResult, digest: Callable[[str | None], str]) -> list[str]:
        note = "" if r.reason == "dry run" else r.reason
        return [
            r.image,
            digest(r.cached_digest),
            digest(r.upstream_digest),
            out.age(age_of(r)),
            r.outcome.value,
            note,
        ]

    ctx.rows(
        ["IMAGE", "CACHED", "UPSTREAM", "AGE", "OUTCOME", "NOTE"],
        [row(r, out.digest) for r in shown],
        [row(r, _full) for r in shown],
    )
    _footer(ctx, report, results, read_only=True)
    return code


def cmd_check(ctx: Context) -> int:
    with _opened(ctx.app(**_scope(ctx.args))) as app, ctx.progress() as progress:
        _require_rules(app)
        report = _run(app, progress, dry_run=True)
    return _print_run(ctx, "check", report, _sorted(report.results), read_only=True)


def _journal_table(ctx: Context, command: str) -> dict[str, Any]:
    """The state table a writing command needs: its journal and lease keep a refresh from a crash
    and from a concurrent scheduled run, and its ledger is the only record of which tags are
    backups. A dry run writes nothing and may do without."""
    stack = ctx.stack()
    table = ctx.args.table or (stack.settings().get("table_name") if stack else None)
    if not table and not ctx.dry_run:
        raise CliError(
            f"{command} needs the stack's state table: give --table NAME (the StateTableName output) or "
            "set PTC_TABLE_NAME (its journal makes the refresh crash-safe; its ledger knows the backups)"
        )
    return {"table_name": table} if table else {}


def cmd_refresh(ctx: Context) -> int:
    name = image_argument(ctx.args.image, tag_required=False)
    scope = {
        "repository_include": (name.repository,),
        "tag_include": (name.tag,) if name.tag else (),
        "verify_timeout_seconds": ctx.args.verify_timeout,
        "keep_generations": ctx.args.keep_generations,
        **_journal_table(ctx, "refresh"),
    }
    with _opened(ctx.app(**scope)) as app:
        _require_rule(app, name.repository)
        with ctx.progress() as progress:
            report = _run(app, progress, dry_run=ctx.dry_run)
        results = _sorted(r for r in report.results if r.repository == name.repository)
        if not report.errors and not any(r.outcome is not Outcome.SKIPPED for r in results):
            raise CliError(
                f"no cached tag {name} in ECR" if name.tag else f"{name} has no cached tags in ECR"
            )
    return _print_run(ctx, "refresh", report, results, read_only=False)


def cmd_rollback(ctx: Context) -> int:
    name = image_argument(ctx.args.image, tag_required=True)
    repo, tag = name.repository, str(name.tag)
    table = _journal_table(ctx, "rollback")
    with _opened(ctx.app(repository_include=(repo,), tag_include=(tag,), **table)) as app:
        _require_rule(app, repo)
        found = app.discovery.discover()
        if found.errors:
            raise CliError("; ".join(found.errors))
        records = newest_first(found.backups.get((repo, tag), []))
        if not records:
            raise CliError(
                f"no backup of {name} in the ledger: refreshes keep one when --keep-generations is 1 or more"
            )
        current = _tag_digest(app, repo, tag)
        newest = records[0].backup_tag
        doc: dict[str, Any] = {
            "command": "rollback",
            "image": str(name),
            "dry_run": ctx.dry_run,
            "backup_tag": newest,
            "backups": [r.backup_tag for r in records],
            "from_digest": current,
        }
        if ctx.dry_run:
            target = _tag_digest(app, repo, newest)
            if target is None:
                raise CliError(f"backup tag {newest} is gone")
            changes = target != current
            doc |= {"ok": True, "to_digest": target, "changed": False, "would_change": changes}
            doc["exit_code"] = out.EXIT_STALE if changes else out.EXIT_OK
            line = (
                f"would roll back {name}: {out.digest(current)} -> {out.digest(target)} (from {newest})"
                if changes
                else f"{name} already shows {out.digest(target)}, the image kept under {newest}"
            ) + "; dry run: nothing written"
            return _print_action(ctx, doc, line)
        result = app.refresher.rollback(repo, tag, records)
    changed = result.ok and result.new_digest != current
    doc |= {"ok": result.ok, "to_digest": result.new_digest, "changed": changed, "reason": result.reason}
    if not result.ok:
        doc["exit_code"] = out.EXIT_STALE
        return _print_action(ctx, doc, f"rollback of {name} failed at {result.failed_step}: {result.reason}")
    doc["exit_code"] = out.EXIT_OK
    line = (
        f"rolled back {name}: {out.digest(current)} -> {out.digest(result.new_digest)} (from {newest})"
        if changed
        else f"{name} already showed {out.digest(result.new_digest)} (from {newest})"
    )
    return _print_action(ctx, doc, line)


def cmd_warm(ctx: Context) -> int:
    name = image_argument(ctx.args.image, tag_required=True)
    repo, tag = name.repository, str(name.tag)
    with _opened(ctx.app(verify_timeout_seconds=ctx.args.verify_timeout)) as app:
        rule = _require_rule(app, repo)
        try:
            upstream = upstream_for(rule, repo)
        except UpstreamMappingError as exc:
            raise CliError(str(exc)) from exc
        current = _tag_digest(app, repo, tag)
        doc: dict[str, Any] = {
            "command": "warm",
            "image": str(name),
            "dry_run": ctx.dry_run,
            "rule": rule.prefix,
            "upstream": f"{upstream}:{tag}",
            "cached_digest": current,
        }
        if ctx.dry_run:
            return _warm_plan(ctx, app, name, upstream=upstream, current=current, doc=doc)
        result = app.refresher.prewarm(repo, tag)
    doc |= {
        "ok": result.ok,
        "digest": result.new_digest,
        "platforms": list(result.platforms),
        "blobs_warmed": result.blobs_warmed,
        "imported": result.ok and result.new_digest != current,
        "reason": result.reason,
    }
    if not result.ok:
        doc["exit_code"] = out.EXIT_STALE
        return _print_action(ctx, doc, f"warming {name} failed at {result.failed_step}: {result.reason}")
    doc["exit_code"] = out.EXIT_OK
    what = "cached" if doc["imported"] else "already cached"
    platforms = f", {', '.join(result.platforms)}" if result.platforms else ""
    line = f"{what} {name} {out.digest(result.new_digest)}: {result.blobs_warmed} blobs warm{platforms}"
    return _print_action(ctx, doc, line)


def _warm_plan(
    ctx: Context,
    app: App,
    name: ImageName,
    *,
    upstream: UpstreamRef,
    current: str | None,
    doc: dict[str, Any],
) -> int:
    """--dry-run: ask upstream (one HEAD) what a pull would bring; write nothing."""
    try:
        resolved = app.registry.resolve_digest(upstream, str(name.tag))
    except RegistryError as exc:
        code = out.EXIT_USAGE if isinstance(exc, NotFoundError) else out.EXIT_STALE
        doc |= {"ok": False, "reason": str(exc), "exit_code": code}
        return _print_action(ctx, doc, f"cannot warm {name}: {exc}")
    doc |= {"ok": True, "upstream_digest": resolved.digest}
    if current is None:
        doc["exit_code"] = out.EXIT_STALE
        line = f"would cache {name} from {upstream}:{name.tag} ({out.digest(resolved.digest)}) and warm it"
    elif current == resolved.digest:
        doc["exit_code"] = out.EXIT_OK
        line = f"{name} is cached and fresh ({out.digest(current)}); would warm its layers"
    else:
        doc["exit_code"] = out.EXIT_STALE
        line = (
            f"{name} is cached as {out.digest(current)} but upstream has {out.digest(resolved.digest)}: "
            f"warm keeps the cached image, `{PROG} refresh {name}` replaces it"
        )
    return _print_action(ctx, doc, line + "; dry run: nothing written")


def cmd_selftest(ctx: Context) -> int:
    """The logic is selftest.py's: this builds the app, runs it and prints."""
    try:
        options = selftest.options_from(ctx.args)
        with _opened(ctx.app(verify_timeout_seconds=ctx.args.verify_timeout)) as app:
            result = selftest.run_selftest(app, options)
    except selftest.SelftestUsageError as exc:
        raise CliError(str(exc)) from exc
    return selftest.render(result, ctx.stdout, as_json=ctx.json)


def cmd_trigger(ctx: Context) -> int:
    stack = ctx.stack()
    if stack is None:
        raise CliError(
            "trigger needs --stack-name (or PTC_STACK_NAME): the stack whose bus takes the request"
        )
    detail = sync_request_detail(
        ctx.args.repositories,
        ctx.args.tag or (),
        check=ctx.args.check,
        dry_run=ctx.args.dry_run,
        reason=ctx.args.reason,
    )
    event_id = put_sync_request(ctx.session(), stack, detail)
    doc = {"command": "trigger", "stack": stack.name, "event_id": event_id, "detail": detail, "exit_code": 0}
    line = (
        f"Sync Request {event_id} put on {stack.output('RequestBusName')}: "
        f"{'check' if ctx.args.check else 'refresh'} {', '.join(ctx.args.repositories)}"
        + (f" tags {', '.join(ctx.args.tag)}" if ctx.args.tag else "")
        + f"; follow it with: {PROG} runs --stack-name {stack.name}"
    )
    return _print_action(ctx, doc, line)
