"""``ptc-sync``: the operator CLI (status, check, refresh, rollback, warm).

Works with ordinary AWS credentials (``--profile``, ``--region``, the environment) and, for tests and
demos, against the local testbed (``--endpoint-url`` of a moto server, ``--upstream-override`` to
loopback registries). Everything is built by ``wiring.build_app`` and every decision is the engine's
or the refresher's: this module picks the scope from the arguments, calls them and prints.

Exit codes: 0 nothing to do (every tag in scope fresh, nothing changed), 1 something is stale or was
changed (with ``--dry-run``: would be), 2 errors (a failed check or refresh, a refused argument).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError
from pydantic import ValidationError

from ptc_sync import __version__
from ptc_sync import cli_output as out
from ptc_sync.ecr import EcrError, match_rule
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
from ptc_sync.refresh import is_backup_tag
from ptc_sync.registry import RegistryClient
from ptc_sync.registry.errors import RegistryError
from ptc_sync.settings import SyncSettings
from ptc_sync.upstream import UpstreamMappingError, upstream_for
from ptc_sync.wiring import App, build_app

PROG: Final = "ptc-sync"
PROGRESS_DELAY = 0.5  # seconds a scan runs before the progress line appears (TTY only)
PROGRESS_INTERVAL = 0.1  # seconds between redraws
EXAMPLE: Final = "docker-hub/library/alpine:3.20"
# ECR repository names (botocore model) and Docker tag grammar: neither admits glob characters, so a
# name used as an engine scope pattern matches exactly itself.
REPOSITORY_RE: Final = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
TAG_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
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
    """A refused argument or an operation that cannot go on; printed, exit code 2."""


# -- names --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageName:
    repository: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def _looks_like_host(repository: str) -> bool:
    first = repository.split("/", 1)[0]
    return "." in first or ":" in first or first == "localhost"


def parse_image(text: str, *, tag_required: bool) -> ImageName:
    """``REPO[:TAG]`` of a cached repository in ECR. Never a URL, a registry host or a digest."""
    raw = text.strip()
    if "://" in raw:
        raise CliError(f"{raw!r} is a URL{HOST_HINT}")
    if "@" in raw:
        raise CliError(f"{raw!r}: give REPO:TAG (the cache imports and refreshes by tag, not by digest)")
    head, _, last = raw.rpartition("/")
    repository, tag = raw, None
    if ":" in last:
        name, _, tag = last.partition(":")
        repository = f"{head}/{name}" if head else name
    if len(repository) > 256 or not REPOSITORY_RE.fullmatch(repository):
        hint = HOST_HINT if _looks_like_host(repository) else ""
        raise CliError(f"{repository!r} is not an ECR repository name{hint}")
    if tag is not None and not TAG_RE.fullmatch(tag):
        raise CliError(f"{tag!r} is not an image tag")
    if tag is None and tag_required:
        raise CliError(f"{raw!r}: give REPO:TAG, for example {EXAMPLE}")
    if tag is not None and is_backup_tag(tag):
        raise CliError(f"{tag} is a backup tag kept by ptc-sync; name the tag it backs up")
    return ImageName(repository, tag)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_endpoint(url: str) -> str:
    """An AWS endpoint: https anywhere, plain http only on loopback (the local testbed's moto server)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--endpoint-url {url!r}: give an http(s) URL such as http://127.0.0.1:5000")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
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

    @property
    def json(self) -> bool:
        return bool(self.args.output == "json")

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

    def app(self, **values: Any) -> App:
        """The app for this command, scoped by ``values`` (SyncSettings fields); never notifies."""
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
    rule = match_rule(rules, repository)
    if rule is None:
        prefixes = ", ".join(sorted(r.prefix for r in rules)) or "none"
        hint = HOST_HINT if _looks_like_host(repository) else ""
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


def _report_doc(command: str, report: RunReport, results: list[TagResult], code: int) -> dict[str, Any]:
    return {
        "command": command,
        "region": report.region,
        "dry_run": report.dry_run,
        "exit_code": code,
        "summary": out.summary_counts(results),
        "errors": list(report.errors),
        "tags": [out.result_doc(r) for r in results],
        "rate_limits": [out.rate_limit_doc(s) for s in report.rate_limits],
    }


def _footer(ctx: Context, report: RunReport, results: list[TagResult]) -> None:
    ctx.say(out.summary_line(out.summary_counts(r for r in results if r.outcome is not Outcome.SKIPPED)))
    skipped = sum(1 for r in results if r.outcome is Outcome.SKIPPED)
    if skipped:
        ctx.say(f"{skipped} more not in scope (listed with --output json)")
    for status in report.rate_limits:
        line = out.rate_limit_line(status)
        if line:
            ctx.say(line)
    if report.dry_run:
        ctx.say("dry run: nothing written")
    for error in report.errors:
        ctx.warn(f"error: {error}")


# -- commands -----------------------------------------------------------------------------------------


def cmd_status(ctx: Context) -> int:
    with _opened(ctx.app(**_scope(ctx.args))) as app, ctx.progress() as progress:
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
        doc = _report_doc("status", report, results, code)
        for entry, result in zip(doc["tags"], results, strict=True):
            tag = seen(result)
            entry["pushed_at"] = out.iso(tag.pushed_at if tag else None)
            entry["age_seconds"] = age_of(result)
            entry["last_pulled_at"] = out.iso(tag.last_pulled_at if tag else None)
            entry["size_bytes"] = tag.size_bytes if tag else None
            entry["backups"] = sorted(found.backups.get((result.repository, result.tag), []))
        out.dump_json(doc, ctx.stdout)
        return code
    rows = [
        [
            r.image,
            out.digest(r.cached_digest),
            out.digest(r.upstream_digest),
            out.age(age_of(r)),
            r.outcome.value,
            "" if r.reason == "dry run" else r.reason,
        ]
        for r in results
        if r.outcome is not Outcome.SKIPPED
    ]
    if rows:
        ctx.say(out.table(["IMAGE", "CACHED", "UPSTREAM", "AGE", "OUTCOME", "NOTE"], rows))
    _footer(ctx, report, results)
    return code


def _print_run(ctx: Context, command: str, report: RunReport, results: list[TagResult]) -> int:
    code = out.exit_code(results, report.errors)
    if ctx.json:
        out.dump_json(_report_doc(command, report, results, code), ctx.stdout)
        return code
    rows = [
        [
            out.outcome_label(r, report.dry_run),
            r.image,
            out.digest(r.cached_digest),
            out.digest(r.upstream_digest),
            ", ".join(r.platforms) or ("" if r.reason == "dry run" else r.reason),
        ]
        for r in results
        if r.outcome is not Outcome.SKIPPED
    ]
    if rows:
        ctx.say(out.table(["OUTCOME", "IMAGE", "CACHED", "UPSTREAM", "NOTE"], rows))
    _footer(ctx, report, results)
    return code


def cmd_check(ctx: Context) -> int:
    with _opened(ctx.app(**_scope(ctx.args))) as app, ctx.progress() as progress:
        report = _run(app, progress, dry_run=True)
    return _print_run(ctx, "check", report, _sorted(report.results))


def cmd_refresh(ctx: Context) -> int:
    name = parse_image(ctx.args.image, tag_required=False)
    scope = {
        "repository_include": (name.repository,),
        "tag_include": (name.tag,) if name.tag else (),
        "verify_timeout_seconds": ctx.args.verify_timeout,
        "keep_generations": ctx.args.keep_generations,
    }
    with _opened(ctx.app(**scope)) as app:
        _require_rule(app, name.repository)
        with ctx.progress() as progress:
            report = _run(app, progress, dry_run=ctx.dry_run)
    results = _sorted(r for r in report.results if r.repository == name.repository)
    if not report.errors and not any(r.outcome is not Outcome.SKIPPED for r in results):
        raise CliError(f"no cached tag {name} in ECR" if name.tag else f"{name} has no cached tags in ECR")
    return _print_run(ctx, "refresh", report, results)


def _print_action(ctx: Context, doc: dict[str, Any], line: str) -> int:
    code = int(doc["exit_code"])
    if ctx.json:
        out.dump_json(doc, ctx.stdout)
    elif code == out.EXIT_ERROR:
        ctx.warn(line)
    else:
        ctx.say(line)
    return code


def newest_backup(backups: Sequence[str]) -> str:
    """The generation Refresher.rollback restores: backup tags end in a sortable UTC stamp."""
    return max(backups, key=lambda t: t.rpartition("--")[2])


def cmd_rollback(ctx: Context) -> int:
    name = parse_image(ctx.args.image, tag_required=True)
    repo, tag = name.repository, str(name.tag)
    with _opened(ctx.app(repository_include=(repo,), tag_include=(tag,))) as app:
        _require_rule(app, repo)
        found = app.engine.discover()
        if found.errors:
            raise CliError("; ".join(found.errors))
        backups = sorted(found.backups.get((repo, tag), []))
        if not backups:
            raise CliError(f"no backup of {name}: refreshes keep one when --keep-generations is 1 or more")
        current = _tag_digest(app, repo, tag)
        newest = newest_backup(backups)
        doc: dict[str, Any] = {
            "command": "rollback",
            "image": str(name),
            "dry_run": ctx.dry_run,
            "backup_tag": newest,
            "backups": backups,
            "from_digest": current,
        }
        if ctx.dry_run:
            target = _tag_digest(app, repo, newest)
            if target is None:
                raise CliError(f"backup tag {newest} is gone")
            changes = target != current
            doc |= {"ok": True, "to_digest": target, "changed": False, "would_change": changes}
            doc["exit_code"] = out.EXIT_CHANGED if changes else out.EXIT_OK
            line = (
                f"would roll back {name}: {out.digest(current)} -> {out.digest(target)} (from {newest})"
                if changes
                else f"{name} already shows {out.digest(target)}, the image kept under {newest}"
            ) + "; dry run: nothing written"
            return _print_action(ctx, doc, line)
        result = app.engine.refresher.rollback(repo, tag, backups)
    changed = result.ok and result.new_digest != current
    doc |= {"ok": result.ok, "to_digest": result.new_digest, "changed": changed, "reason": result.reason}
    if not result.ok:
        doc["exit_code"] = out.EXIT_ERROR
        return _print_action(ctx, doc, f"rollback of {name} failed at {result.failed_step}: {result.reason}")
    doc["exit_code"] = out.EXIT_CHANGED if changed else out.EXIT_OK
    line = (
        f"rolled back {name}: {out.digest(current)} -> {out.digest(result.new_digest)} (from {newest})"
        if changed
        else f"{name} already showed {out.digest(result.new_digest)} (from {newest})"
    )
    return _print_action(ctx, doc, line)


def cmd_warm(ctx: Context) -> int:
    name = parse_image(ctx.args.image, tag_required=True)
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
        doc["exit_code"] = out.EXIT_ERROR
        return _print_action(ctx, doc, f"warming {name} failed at {result.failed_step}: {result.reason}")
    doc["exit_code"] = out.EXIT_CHANGED if doc["imported"] else out.EXIT_OK
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
        doc |= {"ok": False, "reason": str(exc), "exit_code": out.EXIT_ERROR}
        return _print_action(ctx, doc, f"cannot warm {name}: {exc}")
    doc |= {"ok": True, "upstream_digest": resolved.digest}
    if current is None:
        doc["exit_code"] = out.EXIT_CHANGED
        line = f"would cache {name} from {upstream}:{name.tag} ({out.digest(resolved.digest)}) and warm it"
    elif current == resolved.digest:
        doc["exit_code"] = out.EXIT_OK
        line = f"{name} is cached and fresh ({out.digest(current)}); would warm its layers"
    else:
        doc["exit_code"] = out.EXIT_CHANGED
        line = (
            f"{name} is cached as {out.digest(current)} but upstream has {out.digest(resolved.digest)}: "
            f"warm keeps the cached image, `{PROG} refresh {name}` replaces it"
        )
    return _print_action(ctx, doc, line + "; dry run: nothing written")


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

exit codes:
  0  nothing to do: every tag in scope is fresh, nothing changed
  1  something is stale, or was changed (with --dry-run: would be)
  2  errors: a failed check, refresh, rollback or warm; a refused argument
"""


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before and after the command (the command's own win when given twice)."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    aws = parser.add_argument_group("AWS and output")
    aws.add_argument("--profile", default=default(None), help="AWS profile (default: the environment's)")
    aws.add_argument("--region", default=default(None), help="AWS region (default: the profile's)")
    aws.add_argument(
        "--output", choices=("table", "json"), default=default("table"), help="output format (table)"
    )
    testbed = parser.add_argument_group(
        "local testbed (tests and demos only)",
        "Point the CLI at a local moto server and loopback registries instead of AWS\n"
        "and the real upstream registries. Not for production accounts.",
    )
    testbed.add_argument(
        "--endpoint-url",
        default=default(None),
        metavar="URL",
        help="AWS endpoint for every service, e.g. a moto server on http://127.0.0.1:PORT "
        "(plain http only on loopback)",
    )
    testbed.add_argument(
        "--upstream-override",
        action="append",
        default=default(None),
        metavar="HOST=URL",
        help="send an upstream registry host to a loopback registry, e.g. "
        "registry-1.docker.io=http://127.0.0.1:5000 (repeatable; loopback URLs only)",
    )


def _scope_options(parser: argparse.ArgumentParser) -> None:
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
    if verify:
        parser.add_argument(
            "--verify-timeout",
            type=float,
            default=120.0,
            metavar="SECONDS",
            help="how long to wait for ECR to show the imported image (120)",
        )
    if generations:
        parser.add_argument(
            "--keep-generations",
            type=int,
            default=1,
            metavar="N",
            help="previous images kept under backup tags, as the stack's KeepGenerations (1)",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return out.EXIT_ERROR
    ctx = Context(args, sys.stdout, sys.stderr)
    handler: Callable[[Context], int] = args.handler
    try:
        return handler(ctx)
    except (CliError, EcrError, RegistryError) as exc:
        if ctx.json:
            out.dump_json(
                {"command": args.command, "exit_code": out.EXIT_ERROR, "error": str(exc)}, ctx.stdout
            )
        ctx.warn(f"error: {exc}")
        return out.EXIT_ERROR
    except KeyboardInterrupt:
        ctx.warn("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
