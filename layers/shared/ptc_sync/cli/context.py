"""What every command shares: the argument checks (image names, endpoints, overrides), the AWS session
(``EndpointSession`` points every client at the local testbed), the ``Context`` a command runs in
(its app built by ``wiring.build_app`` with the arguments' scope, and how it prints), and the few
calls into the app several commands make.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError
from pydantic import ValidationError

from ptc_sync import cli_output as out
from ptc_sync.ecr import EcrError
from ptc_sync.local_run import run_locally
from ptc_sync.models import (
    PullThroughCacheRule,
    RateLimitStatus,
    ResolvedDigest,
    RunReport,
    UpstreamRef,
)
from ptc_sync.names import ImageName, ImageNameError, looks_like_host, parse_image
from ptc_sync.refresh import is_backup_tag
from ptc_sync.registry.errors import RegistryError
from ptc_sync.registry.transport import is_loopback
from ptc_sync.settings import SyncSettings
from ptc_sync.stack import DeployedStack, read_stack
from ptc_sync.sync import UpstreamResolver
from ptc_sync.upstream import rule_for_repository
from ptc_sync.wiring import App, build_app

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
    """The app's upstream resolver, counting answers on the progress line (an UpstreamResolver:
    everything else is the inner resolver's own)."""

    def __init__(self, inner: UpstreamResolver, progress: out.Progress, *, after: str) -> None:
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
    """One local run (``local_run``: the checker's path) with the progress line following its
    upstream checks."""
    resolver = ProgressResolver(app.resolver, progress, after="finishing" if dry_run else "refreshing")
    progress.phase("discovering cached tags")
    return run_locally(app, dry_run=dry_run, resolver=resolver)


def _require_rule(app: App, repository: str) -> PullThroughCacheRule:
    rules = app.ecr.pull_through_cache_rules()
    rule = rule_for_repository(rules, repository)
    if rule is None:
        prefixes = ", ".join(sorted(r.prefix for r in rules)) or "none"
        hint = HOST_HINT if looks_like_host(repository) else ""
        raise CliError(f"{repository} is not under any pull-through cache rule (prefixes: {prefixes}){hint}")
    return rule


def _tag_digest(app: App, repository: str, tag: str) -> str | None:
    """What the tag points at now; None when absent (or the repository does not exist yet)."""
    try:
        return app.ecr.tag_digest(repository, tag)
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
