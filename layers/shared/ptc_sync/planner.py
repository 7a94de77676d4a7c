"""The planner: one scheduled run becomes work items on the queue, checked by the checker function.

It discovers every cached tag in scope, adds the pre-warm list's images that are not cached yet and
new upstream tags found by tag discovery, creates the run in the state table (so the checker that
records the last result publishes the summary exactly once) and sends the items.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, ValidationError

from ptc_sync.discovery import Discovery
from ptc_sync.ecr import EcrError
from ptc_sync.journal import Lease
from ptc_sync.models import Outcome, TagResult, UpstreamRef
from ptc_sync.names import parse_tagged_image
from ptc_sync.queue import WorkQueue
from ptc_sync.registry import RegistryError
from ptc_sync.semver import newest_matching, newest_named
from ptc_sync.settings import SyncSettings
from ptc_sync.state import StateError, StateStore
from ptc_sync.upstream import rule_for_repository, upstream_for
from ptc_sync.work import MAX_REPOSITORIES_PER_ITEM, MAX_TAGS_PER_ITEM, DiscoverySpec, WorkItem, WorkKind

logger = Logger(child=True)
MAX_LISTED_TAGS = 20_000  # upstream tags read per discovery spec and run


class PrewarmConfig(BaseModel):
    """The SSM parameter document: ``{"prewarm": ["repo:tag", …], "discover": [spec, …]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prewarm: tuple[str, ...] = ()
    discover: tuple[DiscoverySpec, ...] = ()


class Repairs(Protocol):
    def due(self, repository: str | None = None) -> list[Lease]:
        """Open refresh intents whose lease ran out: tags a killed refresh may have left absent."""
        ...


class ParameterSource(Protocol):
    def __call__(self, name: str) -> Any: ...


@dataclass
class Plan:
    run_id: str
    items: list[WorkItem] = field(default_factory=list)
    skipped: list[TagResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """The work items the run waits for (a scan that splits adds its shares to the run)."""
        return len(self.items)

    @property
    def named_tags(self) -> int:
        """The tags the items name (check and warm items; a scan lists its repositories' tags)."""
        return sum(len(item.tags) for item in self.items)

    @property
    def scanned(self) -> int:
        return sum(len(item.repositories) for item in self.items if item.kind is WorkKind.SCAN)


def new_run_id(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _chunks(tags: Sequence[str], size: int) -> Iterable[tuple[str, ...]]:
    for start in range(0, len(tags), size):
        yield tuple(tags[start : start + size])


class UpstreamTags(Protocol):
    def list_tags(self, ref: UpstreamRef, page_size: int = ...) -> Iterator[str]:
        """The upstream repository's tags (tag discovery reads them)."""
        ...


class Planner:
    """Each collaborator is a port the composition root (``wiring.App.planner``) injects."""

    def __init__(
        self,
        queue: WorkQueue,
        state: StateStore,
        *,
        settings: SyncSettings,
        now: Callable[[], datetime],
        discovery: Discovery,
        repairs: Repairs,
        upstream: UpstreamTags,
        parameters: ParameterSource | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.discovery = discovery
        self.queue = queue
        self.state = state
        self.repairs = repairs
        self.upstream = upstream
        self.parameters = parameters

    def plan(self, *, dry_run: bool | None = None, run_id: str | None = None, prewarm: bool = True) -> Plan:
        """Rules → repositories in scope → scan items of up to MAX_REPOSITORIES_PER_ITEM repositories
        (their checkers list the tags), plus warm items for pre-warm images and new upstream tags
        (``prewarm=False``: the scans only, as a CLI run checks what is cached).
        The planner reads no repository's tags but those of the pre-warm list and discovery specs."""
        now = self.now()
        dry = self.settings.dry_run if dry_run is None else dry_run
        plan = Plan(run_id or new_run_id(now))
        caches, errors = self.discovery.repositories()
        plan.errors.extend(errors)
        names = sorted(repo.name for repo in caches)
        prewarm_images, specs = self._prewarm_config(plan) if prewarm else ((), ())
        cached = self._cached(prewarm_images, specs, plan)
        # cached but not warm at its last pre-warm: warmed again this run (which also reports it), and
        # left out of its repository's scan
        warming = set() if dry else self._still_warming(prewarm_images, cached, plan)
        left_out: dict[str, list[str]] = {}
        for repository, tag in sorted(warming):
            left_out.setdefault(repository, []).append(tag)
        self._scan_items(plan, names, left_out, dry=dry)
        self._warm_items(plan, prewarm_images, specs, cached, warming, dry=dry)
        return plan

    def _scan_items(self, plan: Plan, names: list[str], left_out: dict[str, list[str]], *, dry: bool) -> None:
        repairs = self._due_repairs(plan)
        scanned = set(names)
        plain = [name for name in names if name not in left_out]
        for start in range(0, len(plain), MAX_REPOSITORIES_PER_ITEM):
            first, *more = plain[start : start + MAX_REPOSITORIES_PER_ITEM]
            plan.items.append(
                WorkItem(
                    run_id=plan.run_id,
                    kind=WorkKind.SCAN,
                    repository=first,
                    more_repositories=tuple(more),
                    dry_run=dry,
                )
            )
        for repository, tags in sorted(left_out.items()):
            if repository in scanned:
                plan.items.append(
                    WorkItem(
                        run_id=plan.run_id,
                        kind=WorkKind.SCAN,
                        repository=repository,
                        left_out=tuple(tags[:MAX_TAGS_PER_ITEM]),
                        dry_run=dry,
                    )
                )
        # a tag a killed refresh removed in a repository no scan covers (out of scope now): the
        # checker of its repository repairs it before checking (the planner writes to no image)
        for repository, tags in sorted(repairs.items()):
            if repository not in scanned:
                for chunk in _chunks(tags, self.settings.tags_per_message):
                    plan.items.append(
                        WorkItem(
                            run_id=plan.run_id,
                            kind=WorkKind.CHECK,
                            repository=repository,
                            tags=chunk,
                            dry_run=dry,
                        )
                    )

    def _warm_items(
        self,
        plan: Plan,
        prewarm: Sequence[str],
        specs: Sequence[DiscoverySpec],
        cached: set[tuple[str, str]],
        warming: set[tuple[str, str]],
        *,
        dry: bool,
    ) -> None:
        warm: dict[str, list[str]] = {}
        for image in prewarm:
            repository, tag = parse_tagged_image(image)
            if (repository, tag) in cached and (repository, tag) not in warming:
                continue  # cached: checked like any other tag
            if rule_for_repository(self.discovery.rules(), repository) is None:
                plan.errors.append(f"pre-warm {image}: not under any pull-through cache rule in scope")
                continue
            warm.setdefault(repository, []).append(tag)
        for spec in specs:
            for tag in self._new_tags(spec, cached, plan):
                warm.setdefault(spec.repository, []).append(tag)
        if not dry:
            for repository, tags in sorted(warm.items()):
                unique = list(dict.fromkeys(tags))
                for chunk in _chunks(unique, self.settings.tags_per_message):
                    plan.items.append(
                        WorkItem(
                            run_id=plan.run_id,
                            kind=WorkKind.WARM,
                            repository=repository,
                            tags=chunk,
                            source="prewarm",
                        )
                    )

    def _cached(
        self, prewarm: Sequence[str], specs: Sequence[DiscoverySpec], plan: Plan
    ) -> set[tuple[str, str]]:
        """The cached tags of the repositories the pre-warm list and the discovery specs name: the
        only tags the planner reads (one listing per such repository)."""
        repositories = {parse_tagged_image(image)[0] for image in prewarm} | {s.repository for s in specs}
        cached: set[tuple[str, str]] = set()
        for repository in sorted(repositories):
            if rule_for_repository(self.discovery.rules(), repository) is None:
                continue  # reported where the image or spec is planned
            try:
                cached |= {(repository, tag) for tag in self.discovery.cached_tags(repository)}
            except EcrError as exc:
                plan.errors.append(f"{repository}: cached tags not read: {exc}")
        return cached

    def _still_warming(
        self, prewarm: Sequence[str], cached: set[tuple[str, str]], plan: Plan
    ) -> set[tuple[str, str]]:
        """Pre-warm images cached but not warm at their last pre-warm: warmed again, not only checked."""
        listed = [key for key in (parse_tagged_image(image) for image in prewarm) if key in cached]
        if not listed:
            return set()
        try:
            states = self.state.tag_states(listed)
        except StateError as exc:
            plan.errors.append(f"pre-warm states not read: {exc}")
            return set()
        return {key for key, state in states.items() if state.outcome is Outcome.WARMING}

    def _due_repairs(self, plan: Plan) -> dict[str, list[str]]:
        """Expired refresh intents by repository: tags a killed refresh may have left absent."""
        try:
            due = self.repairs.due()
        except StateError as exc:
            plan.errors.append(f"refresh journal not read: {exc}")
            return {}
        by_repo: dict[str, list[str]] = {}
        for lease in due:
            tags = by_repo.setdefault(lease.repository, [])
            if lease.tag not in tags:
                tags.append(lease.tag)
        return by_repo

    def _prewarm_config(self, plan: Plan) -> tuple[tuple[str, ...], tuple[DiscoverySpec, ...]]:
        prewarm, specs = self.settings.prewarm_images, self.settings.discover
        name = self.settings.prewarm_parameter
        if name and self.parameters is not None:
            try:
                doc = PrewarmConfig.model_validate(self.parameters(name))
                for image in doc.prewarm:
                    parse_tagged_image(image)
            except (ValidationError, ValueError) as exc:
                plan.errors.append(f"SSM parameter {name}: {exc}".splitlines()[0])
            except Exception as exc:  # noqa: BLE001 - Parameters raises its own GetParameterError family
                plan.errors.append(f"SSM parameter {name}: {type(exc).__name__}: {exc}")
            else:
                prewarm, specs = (*prewarm, *doc.prewarm), (*specs, *doc.discover)
        return prewarm, specs

    def _new_tags(self, spec: DiscoverySpec, cached: set[tuple[str, str]], plan: Plan) -> list[str]:
        rule = rule_for_repository(self.discovery.rules(), spec.repository)
        if rule is None:
            plan.errors.append(f"discover {spec.repository}: not under any pull-through cache rule in scope")
            return []
        try:
            ref = upstream_for(rule, spec.repository)
            upstream_tags = []
            for tag in self.upstream.list_tags(ref):
                upstream_tags.append(tag)
                if len(upstream_tags) >= MAX_LISTED_TAGS:
                    break
        except (RegistryError, ValueError) as exc:
            plan.errors.append(f"discover {spec.repository}: {exc}")
            return []
        if spec.semver:
            candidates = newest_matching(
                upstream_tags, spec.semver, variant=spec.variant, include_prerelease=spec.include_prerelease
            )
        else:
            candidates = newest_named(upstream_tags, spec.pattern or "")
        # the newest max_new matching tags, those not cached yet: never older ones in their place
        return [t for t in candidates[: spec.max_new] if (spec.repository, t) not in cached]

    def send(self, plan: Plan) -> int:
        """Create the run, then queue its items; raises StateError/QueueError with the reason."""
        if plan.expected:
            self.state.start_run(plan.run_id, plan.expected, self.now())
        return self.queue.send(plan.items)
