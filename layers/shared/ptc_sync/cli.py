"""``ptc-sync``: the operator CLI (status, check, refresh, rollback, warm, history, runs, completion).

Works with ordinary AWS credentials (``--profile``, ``--region``, the environment) and, for tests and
demos, against the local testbed (``--endpoint-url`` of a moto server, ``--upstream-override`` to
loopback registries; both hidden from help). Everything is built by ``wiring.build_app`` and every
decision is the engine's or the refresher's: this module picks the scope from the arguments, calls
them and prints.

Exit codes (``cli_output.EXIT_CODES``): 0 fresh (or a write did what it was asked), 1 stale or
failed, 2 usage or missing (a refused argument; a rule, tag, backup, run or table that is not
there), 3 crash (an unexpected exception: one line on stderr, the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError, ProfileNotFound
from pydantic import ValidationError

from ptc_sync import __version__, selftest
from ptc_sync import cli_output as out
from ptc_sync.ecr import EcrError
from ptc_sync.journal import newest_first
from ptc_sync.models import (
    CachedTag,
    Outcome,
    PullThroughCacheRule,
    RateLimitStatus,
    ResolvedDigest,
    RunReport,
    TagResult,
    UpstreamRef,
)
from ptc_sync.names import ImageName, ImageNameError, looks_like_host, parse_image
from ptc_sync.refresh import is_backup_tag
from ptc_sync.registry import RegistryClient
from ptc_sync.registry.errors import NotFoundError, RegistryError
from ptc_sync.registry.transport import is_loopback
from ptc_sync.settings import SyncSettings
from ptc_sync.stack import DeployedStack, StackError, put_sync_request, read_stack, sync_request_detail
from ptc_sync.state import Change, RunProgress, StateError, StateStore
from ptc_sync.upstream import UpstreamMappingError, rule_for_repository, upstream_for
from ptc_sync.wiring import App, build_app
from ptc_sync.work import RUN_ID_RE

PROG: Final = "ptc-sync"
PROGRESS_DELAY = 0.5  # seconds a scan runs before the progress line appears (TTY only)
PROGRESS_INTERVAL = 0.1  # seconds between redraws
EXAMPLE: Final = "docker-hub/library/alpine:3.20"
HOST_HINT: Final = (
    f"; give the cached repository's name in ECR (for example {EXAMPLE}): "
    "the upstream host always comes from the pull-through cache rule"
)
SETTING_FLAGS: Final = {
    "rule_prefixes": "--rule",
    "repository_include": "--repository",
    "repository_exclude": "--exclude-repository",
    "tag_include": "--tag",
    "tag_exclude": "--exclude-tag",
    "pulled_within_days": "--pulled-within-days",
    "verify_timeout_seconds": "--verify-timeout",
    "keep_generations": "--keep-generations",
}


class CliError(Exception):
    """A refused argument, or something named that is not there; printed, exit code 2."""


# -- names --------------------------------------------------------------------------------------------


def image_argument(text: str, *, tag_required: bool) -> ImageName:
    """``REPO[:TAG]`` of a cached repository in ECR (``names.parse_image``), never a backup tag."""
    try:
        name = parse_image(text)
    except ImageNameError as exc:
        raise CliError(f"{exc}{HOST_HINT if exc.host_like else ''}") from None
    if name.tag is None and tag_required:
        raise CliError(f"{text.strip()!r}: give REPO:TAG, for example {EXAMPLE}")
    if name.tag is not None and is_backup_tag(name.tag):
        raise CliError(f"{name.tag} is a backup tag kept by ptc-sync; name the tag it backs up")
    return name


def parse_endpoint(url: str) -> str:
    """An AWS endpoint: https anywhere, plain http only on loopback (the local testbed's moto server)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--endpoint-url {url!r}: give an http(s) URL such as http://127.0.0.1:5000")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise CliError(f"--endpoint-url {url!r}: plain http is only for a loopback address; use https")
    return url


def parse_overrides(values: Sequence[str] | None) -> dict[str, str]:
    """``HOST=URL`` pairs; the registry client refuses any URL that is not on loopback."""
    found: dict[str, str] = {}
    for value in values or ():
        host, sep, url = value.partition("=")
        host = host.strip().lower()
        if not sep or not host or not url.strip() or "/" in host or ":" in host:
            raise CliError(
                f"--upstream-override {value!r}: give HOST=URL, e.g. ghcr.io=http://127.0.0.1:5000"
            )
        found[host] = url.strip()
    return found


# -- AWS session and the app --------------------------------------------------------------------------


class EndpointSession(boto3.Session):
    """A boto3 session whose every client talks to one endpoint (the local testbed's moto server).

    ``wiring.build_app`` makes its clients from the session it is given, so this is all it takes to
    point the whole app at the testbed without a second way of building adapters."""

    def __init__(self, endpoint_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    def client(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().client(*args, **kwargs)


@dataclass
class Context:
    args: argparse.Namespace
    stdout: TextIO
    stderr: TextIO
    _stack: DeployedStack | None = None

    @property
    def json(self) -> bool:
        return bool(self.args.output == "json")

    @property
    def text(self) -> bool:
        return bool(self.args.output == "text")

    @property
    def dry_run(self) -> bool:
        return bool(getattr(self.args, "dry_run", False))

    def session(self) -> boto3.Session:
        kwargs: dict[str, Any] = {"profile_name": self.args.profile, "region_name": self.args.region}
        try:
            if self.args.endpoint_url:
                return EndpointSession(parse_endpoint(self.args.endpoint_url), **kwargs)
            return boto3.Session(**kwargs)
        except BotoCoreError as exc:  # ProfileNotFound, a broken config file
            raise CliError(str(exc)) from exc

    def stack(self) -> DeployedStack | None:
        """The stack ``--stack-name`` names (read once per command), or None."""
        name = getattr(self.args, "stack_name", None)
        if not name:
            return None
        if self._stack is None:
            self._stack = read_stack(self.session(), name)
        return self._stack

    def app(self, **values: Any) -> App:
        """The app for this command, scoped by ``values`` (SyncSettings fields; None or () means not
        given); with --stack-name on the settings the stack's functions run with. Never notifies."""
        given = {k: v for k, v in values.items() if v is not None and v != ()}
        if getattr(self.args, "table", None):
            given.setdefault("table_name", self.args.table)
        stack = self.stack()
        values = {**(stack.settings() if stack else {}), **given}
        session = self.session()
        region = session.region_name
        if not region:
            raise CliError("no AWS region: pass --region, set AWS_REGION or give the profile a region")
        try:
            settings = SyncSettings.model_validate({"region": region, "topic_arn": None, **values})
        except ValidationError as exc:
            problems = [
                f"{SETTING_FLAGS.get(str(err['loc'][0]) if err['loc'] else '', 'settings')}: {err['msg']}"
                for err in exc.errors()
            ]
            raise CliError("; ".join(problems)) from None
        overrides = parse_overrides(self.args.upstream_override)
        try:
            return build_app(settings, session=session, upstream_override=overrides or None)
        except ValueError as exc:  # e.g. the registry client refusing an override not on loopback
            raise CliError(str(exc)) from exc

    def progress(self) -> out.Progress:
        return out.Progress(self.stderr, delay=PROGRESS_DELAY, interval=PROGRESS_INTERVAL)

    def say(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def rows(
        self, headers: Sequence[str], table_rows: Sequence[Sequence[str]], text_rows: Sequence[Sequence[str]]
    ) -> None:
        """A table under its headers, or with --output text one tab-separated record a line."""
        if self.text:
            if text_rows:
                self.say(out.text_rows(text_rows))
        elif table_rows:
            self.say(out.table(headers, table_rows))

    def warn(self, text: str) -> None:
        self.stderr.write(f"{PROG}: {text}\n")


@contextmanager
def _opened(app: App) -> Iterator[App]:
    try:
        yield app
    finally:
        app.registry.close()


class ProgressResolver:
    """The app's registry client as the engine's upstream resolver, counting answers on the progress
    line (an UpstreamResolver: everything else is the client's own)."""

    def __init__(self, inner: RegistryClient, progress: out.Progress, *, after: str) -> None:
        self.inner = inner
        self.progress = progress
        self.after = after

    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = 32
    ) -> Iterator[tuple[UpstreamRef, str, ResolvedDigest | RegistryError]]:
        batch = list(items)
        self.progress.phase("comparing with upstream", total=len(batch))
        for answer in self.inner.resolve_many(batch, max_workers=max_workers):
            self.progress.advance()
            yield answer
        self.progress.phase(self.after)

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        return self.inner.rate_limit(host)

    def rate_limits(self) -> tuple[RateLimitStatus, ...]:
        return self.inner.rate_limits()

    def list_tags(self, ref: UpstreamRef, page_size: int = 1000) -> Iterator[str]:
        return self.inner.list_tags(ref, page_size)


def _run(app: App, progress: out.Progress, *, dry_run: bool) -> RunReport:
    """One engine run with the progress line following its upstream checks."""
    app.engine.registry = ProgressResolver(
        app.registry, progress, after="finishing" if dry_run else "refreshing"
    )
    progress.phase("discovering cached tags")
    return app.engine.run(dry_run=dry_run)


def _require_rule(app: App, repository: str) -> PullThroughCacheRule:
    rules = app.engine.ecr.pull_through_cache_rules()
    rule = rule_for_repository(rules, repository)
    if rule is None:
        prefixes = ", ".join(sorted(r.prefix for r in rules)) or "none"
        hint = HOST_HINT if looks_like_host(repository) else ""
        raise CliError(f"{repository} is not under any pull-through cache rule (prefixes: {prefixes}){hint}")
    return rule


def _tag_digest(app: App, repository: str, tag: str) -> str | None:
    """What the tag points at now; None when absent (or the repository does not exist yet)."""
    try:
        return app.engine.ecr.tag_digest(repository, tag)
    except EcrError as exc:
        if exc.not_found:
            return None
        raise


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "rule_prefixes": tuple(args.rule or ()),
        "repository_include": tuple(args.repository or ()),
        "repository_exclude": tuple(args.exclude_repository or ()),
        "tag_include": tuple(args.tag or ()),
        "tag_exclude": tuple(args.exclude_tag or ()),
        "pulled_within_days": args.pulled_within_days,
    }


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


# -- commands -----------------------------------------------------------------------------------------


def _require_rules(app: App) -> None:
    """A scan needs a rule in scope: none (or a --rule naming none) is a missing rule, exit 2."""
    if not app.engine.rules():
        prefixes = app.settings.rule_prefixes
        raise CliError(
            "no pull-through cache rules" + (f" match --rule {', '.join(prefixes)}" if prefixes else "")
        )


def cmd_status(ctx: Context) -> int:
    with _opened(ctx.app(**_scope(ctx.args))) as app, ctx.progress() as progress:
        _require_rules(app)
        progress.phase("discovering cached tags")
        found = app.engine.discover()  # for push times, pull times and backups; the run decides outcomes
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
        raise CliError(f"no cached tag {name} in ECR" if name.tag else f"{name} has no cached tags in ECR")
    return _print_run(ctx, "refresh", report, results, read_only=False)


def _print_action(ctx: Context, doc: dict[str, Any], line: str) -> int:
    code = int(doc["exit_code"])
    if ctx.json:
        out.dump_json(doc, ctx.stdout)
    elif doc.get("ok") is False:
        ctx.warn(line)
    else:
        ctx.say(line)
    return code


def cmd_rollback(ctx: Context) -> int:
    name = image_argument(ctx.args.image, tag_required=True)
    repo, tag = name.repository, str(name.tag)
    table = _journal_table(ctx, "rollback")
    with _opened(ctx.app(repository_include=(repo,), tag_include=(tag,), **table)) as app:
        _require_rule(app, repo)
        found = app.engine.discover()
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
        result = app.engine.refresher.rollback(repo, tag, records)
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
        result = app.engine.refresher.prewarm(repo, tag)
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
    table = ctx.args.table
    if not table:
        raise CliError("give --table NAME (the stack's StateTableName output) or set PTC_TABLE_NAME")
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
    ctx.rows(["RUN", "STARTED", "TAGS", "STATE", "OUTCOMES"], cells, cells)
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
        ctx.say(out.table(["RUN", "STARTED", "TAGS", "STATE", "OUTCOMES"], [_progress_cells(progress)]))
        ctx.say("")

    def row(r: TagResult, digest: Callable[[str | None], str]) -> list[str]:
        return [r.outcome.value, r.image, digest(r.cached_digest), digest(r.upstream_digest), r.reason]

    ctx.rows(
        ["OUTCOME", "IMAGE", "CACHED", "UPSTREAM", "NOTE"],
        [row(r, out.digest) for r in results],
        [row(r, _full) for r in results],
    )
    return out.EXIT_OK


# -- shell completion ---------------------------------------------------------------------------------


def _visible_words(parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, list[str]]]:
    """What help shows (options, and the values of a positional with choices), and the values of
    each option that takes one of a few."""
    words: list[str] = []
    values: dict[str, list[str]] = {}
    for action in parser._actions:  # argparse has no public walk of its actions
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        choices = [str(c) for c in action.choices or ()]
        if not action.option_strings:
            words.extend(choices)
            continue
        words.extend(action.option_strings)
        for flag in action.option_strings:
            if choices:
                values[flag] = choices
    return words, values


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion function for every command and visible option (``complete -F``)."""
    commands = _commands(parser)
    top, values = _visible_words(parser)
    cases = []
    for name, sub in commands.items():
        words, sub_values = _visible_words(sub)
        values |= sub_values
        cases.append(f"        {name}) words={shlex.quote(' '.join(words))} ;;")
    value_cases = [
        f'        {flag}) COMPREPLY=($(compgen -W {shlex.quote(" ".join(v))} -- "$cur")); return ;;'
        for flag, v in sorted(values.items())
    ]
    nl = "\n"
    return f"""# bash completion for {PROG}: eval "$({PROG} completion bash)", or save the output as
# ~/.local/share/bash-completion/completions/{PROG}
_ptc_sync() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} command="" words i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            {"|".join(commands)}) command=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    case $prev in
{nl.join(value_cases)}
    esac
    case $command in
{nl.join(cases)}
        *) words={shlex.quote(" ".join([*commands, *top]))} ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _ptc_sync {PROG}
"""


def cmd_selftest(ctx: Context) -> int:
    """The logic is selftest.py's: this builds the app, runs it and prints."""
    try:
        options = selftest.options_from(ctx.args)
        with _opened(ctx.app(verify_timeout_seconds=ctx.args.verify_timeout)) as app:
            result = selftest.run_selftest(app, options)
    except selftest.SelftestUsageError as exc:
        raise CliError(str(exc)) from exc
    return selftest.render(result, ctx.stdout, as_json=ctx.json)


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


def _scope_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table",
        default=os.environ.get("PTC_TABLE_NAME"),
        metavar="NAME",
        help="the stack's StateTableName output (default: $PTC_TABLE_NAME): its ledger says which tags "
        "are ptc-sync's backups (read only)",
    )
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
    parser.add_argument(
        "--table",
        default=os.environ.get("PTC_TABLE_NAME"),
        metavar="NAME",
        help="the stack's StateTableName output (default: $PTC_TABLE_NAME): its refresh journal, lease "
        "and backup ledger make a refresh safe from a crash and from a concurrent run",
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
    state.add_argument(
        "--table",
        default=os.environ.get("PTC_TABLE_NAME"),
        metavar="NAME",
        help="the stack's StateTableName output (default: $PTC_TABLE_NAME)",
    )
    state.add_argument(
        "--since",
        default=since,
        metavar="WHEN",
        help=f"30m, 24h, 7d, 2w back from now, or an ISO date or time, UTC unless it says ({since})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, handler: Callable[[Context], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, epilog=EPILOG, formatter_class=parser.formatter_class
        )
        sub.set_defaults(handler=handler)
        _common(sub, top=False)
        return sub

    status = command(
        "status",
        "every cached tag with its cached and upstream digest, age and outcome (no writes)",
        cmd_status,
    )
    _scope_options(status)
    check = command(
        "check", "compare every cached tag with upstream, summary and per tag (no writes)", cmd_check
    )
    _scope_options(check)
    refresh = command(
        "refresh",
        "refresh stale tags of one cached repository with the sync's safe protocol (backup, import, "
        "verify, roll back on failure)",
        cmd_refresh,
    )
    refresh.add_argument("image", metavar="REPO[:TAG]", help="cached repository (every stale tag) or one tag")
    _write_options(refresh, verify=True, generations=True)
    rollback = command(
        "rollback", "put back the previous image a refresh kept under a backup tag", cmd_rollback
    )
    rollback.add_argument("image", metavar="REPO:TAG", help="cached repository and tag")
    _write_options(rollback, verify=False, generations=False)
    warm = command(
        "warm", "pre-cache one image under a pull-through cache rule and warm every layer", cmd_warm
    )
    warm.add_argument("image", metavar="REPO:TAG", help=f"cached repository name and tag, e.g. {EXAMPLE}")
    _write_options(warm, verify=True, generations=False)
    history = command(
        "history", "refreshes and failures the stack recorded in its state table (no writes)", cmd_history
    )
    _state_options(history, since="24h")
    history.add_argument(
        "--repository", action="append", metavar="PATTERN", help="only repositories matching (repeatable)"
    )
    runs = command(
        "runs",
        "the stack's runs with a refresh or a failure, or one run's tags (no writes)",
        cmd_runs,
    )
    _state_options(runs, since="7d")
    runs.add_argument(
        "run_id", nargs="?", metavar="RUN_ID", help="one run: its progress and every tag it named"
    )
    trigger = command(
        "trigger",
        "ask the deployed stack for a run: a Sync Request on its request bus (needs --stack-name)",
        cmd_trigger,
    )
    trigger.add_argument(
        "repositories", nargs="+", metavar="REPOSITORY", help="cached repositories or patterns"
    )
    trigger.add_argument("--tag", action="append", metavar="PATTERN", help="only these tags (repeatable)")
    trigger.add_argument("--check", action="store_true", help="compare and report only, refresh nothing")
    trigger.add_argument("--dry-run", action="store_true", help="the run reports what it would refresh")
    trigger.add_argument("--reason", metavar="TEXT", help="why, for the run's log (e.g. the release)")
    selftest.add_arguments(command("selftest", selftest.SUMMARY, cmd_selftest))
    completion = command("completion", "print a shell completion script", cmd_completion)
    completion.add_argument("shell", choices=("bash",), help="the shell (bash; zsh through bashcompinit)")
    return parser


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


def _fail(ctx: Context, command: str, code: int, message: str) -> int:
    if ctx.json:
        out.dump_json({"command": command, "exit_code": code, "error": message}, ctx.stdout)
    ctx.warn(f"error: {message}")
    return code


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


if __name__ == "__main__":
    sys.exit(main())
