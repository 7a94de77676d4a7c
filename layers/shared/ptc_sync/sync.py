"""The sync engine: discover cached tags, compare with upstream, refresh what is stale.

Each discovered tag ends in exactly one ``Outcome``. Upstream is only ever reached through hosts
taken from the account's pull-through cache rules (``upstream.upstream_for``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aws_lambda_powertools import Logger

from ptc_sync.ecr import EcrAdapter, EcrError, Manifest
from ptc_sync.journal import BackupLedger, BackupRecord
from ptc_sync.models import (
    CachedRepository,
    CachedTag,
    Outcome,
    PullThroughCacheRule,
    RateLimitStatus,
    ResolvedDigest,
    RunReport,
    TagMutability,
    TagResult,
    UpstreamRef,
)
from ptc_sync.refresh import Refresher, RefreshResult, StepFailedError, is_backup_tag, pull_cost
from ptc_sync.registry.errors import NotFoundError, RateLimitedError, RegistryError
from ptc_sync.registry.ratelimit import within_budget
from ptc_sync.settings import SyncSettings
from ptc_sync.state import StateError
from ptc_sync.upstream import ROOT, rule_for_repository, upstream_for

logger = Logger(child=True)
RULES_TTL = 300.0  # seconds a container trusts its copy of the account's pull-through cache rules


class UpstreamResolver(Protocol):
    """What the engine needs of the registry client."""

    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = ...
    ) -> Iterator[tuple[UpstreamRef, str, ResolvedDigest | RegistryError]]: ...

    def rate_limit(self, host: str) -> RateLimitStatus | None: ...

    def rate_limits(self) -> tuple[RateLimitStatus, ...]: ...

    def list_tags(self, ref: UpstreamRef, page_size: int = ...) -> Iterator[str]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """A cached tag in scope, with where its upstream is."""

    repository: CachedRepository
    cached: CachedTag
    upstream: UpstreamRef


@dataclass(slots=True)
class Discovery:
    targets: list[Target] = field(default_factory=list)
    skipped: list[TagResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (repository, source tag) → the backups ptc-sync recorded for it (only ledger tags are backups)
    backups: dict[tuple[str, str], list[BackupRecord]] = field(default_factory=dict)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


EVERYTHING = frozenset({"*", "**"})


def is_cache(repository: CachedRepository, include: Iterable[str]) -> bool:
    """Whether ptc-sync may treat the repository as a cache. Under a prefixed rule ECR owns the
    namespace. Under a ROOT rule any repository of the account matches, including ones the team
    pushes to, and ECR says nowhere which repositories it created: only the operator's explicit
    scope (PTC_REPOSITORY_INCLUDE naming it, not ``*``) makes one a cache."""
    if repository.rule.prefix.strip().rstrip("/") != ROOT:
        return True
    return _matches(repository.name, [p for p in include if p not in EVERYTHING])


def comparable(upstream_digest: str, cached_digest: str) -> bool:
    """Digests of one algorithm compare; ECR's are sha256, an upstream's sha512 says nothing."""
    return upstream_digest.partition(":")[0] == cached_digest.partition(":")[0]


def is_immutable(repository: CachedRepository, tag: str) -> bool:
    """Whether ECR would refuse to move ``tag`` (exclusion filters invert the repository default)."""
    excluded = _matches(tag, repository.mutability_exclusions)
    match repository.tag_mutability:
        case TagMutability.IMMUTABLE:
            return True
        case TagMutability.MUTABLE_WITH_EXCLUSION:
            return excluded
        case TagMutability.IMMUTABLE_WITH_EXCLUSION:
            return not excluded
        case _:
            return False


class PullBudget(Protocol):
    """Upstream pulls a run may still spend per host (Docker Hub counts one per platform)."""

    def try_spend(self, host: str, pulls: int) -> str:
        """Spend ``pulls`` on ``host``: '' when allowed, else why not (the rate-limited reason)."""
        ...


class LocalBudget:
    """A budget for one process: upstream's last reported ``ratelimit-remaining`` less the reserve,
    less what this run already spent. Hosts that report no limit are unlimited."""

    def __init__(self, engine: SyncEngine) -> None:
        self._registry = engine.registry
        self._reserve = engine.settings.rate_limit_reserve
        self._status: dict[str, RateLimitStatus | None] = {}
        self._lock = threading.Lock()

    def try_spend(self, host: str, pulls: int) -> str:
        with self._lock:
            if host not in self._status:
                self._status[host] = self._registry.rate_limit(host)
            status = self._status[host]
            if not within_budget(status, pulls, reserve=self._reserve):
                left = status.remaining if status else None
                return f"{host}: {left} pulls left, reserve {self._reserve}, refresh costs {pulls}"
            if status is not None and status.remaining is not None:
                self._status[host] = dataclasses.replace(status, remaining=status.remaining - pulls)
            return ""


class SyncEngine:
    def __init__(
        self,
        ecr: EcrAdapter,
        registry: UpstreamResolver,
        refresher: Refresher,
        settings: SyncSettings,
        ledger: BackupLedger,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ecr = ecr
        self.registry = registry
        self.refresher = refresher
        self.settings = settings
        self.ledger = ledger
        self.now = now
        self._rules: tuple[float, list[PullThroughCacheRule]] | None = None

    # -- discovery -----------------------------------------------------------------------------------

    def rules(self) -> list[PullThroughCacheRule]:
        """The account's rules in scope (PTC_RULE_PREFIXES), cached for RULES_TTL seconds per container."""
        now = time.monotonic()
        if self._rules is None or now - self._rules[0] > RULES_TTL:
            rules = self.ecr.pull_through_cache_rules()
            if self.settings.rule_prefixes:
                rules = [r for r in rules if r.prefix in self.settings.rule_prefixes]
            self._rules = (now, rules)
        return self._rules[1]

    def in_scope(self, repository: str) -> bool:
        s = self.settings
        if s.repository_include and not _matches(repository, s.repository_include):
            return False
        return not _matches(repository, s.repository_exclude)

    def discover(self) -> Discovery:
        """Every cached tag in scope: rules → repositories under their prefixes → tagged images."""
        s = self.settings
        found = Discovery()
        rules = self.rules()
        if not rules:
            found.errors.append(
                "no pull-through cache rules"
                + (f" match PTC_RULE_PREFIXES={','.join(s.rule_prefixes)}" if s.rule_prefixes else "")
            )
            return found
        pulled_after = self.now() - timedelta(days=s.pulled_within_days) if s.pulled_within_days else None
        not_caches = 0
        for repo in self.ecr.cached_repositories(rules):
            if not self.in_scope(repo.name):
                continue
            if not is_cache(repo, s.repository_include):
                not_caches += 1
                continue
            self._collect(repo, found, pulled_after=pulled_after)
        if not_caches:
            logger.info(
                "repositories under a ROOT rule left alone: not named by PTC_REPOSITORY_INCLUDE",
                extra={"repositories": not_caches},
            )
        return found

    def discover_repository(self, name: str, tags: Collection[str] | None = None) -> Discovery:
        """The cached tags ``tags`` (all when None) of one repository, with its rule and mutability.

        The repository must be under one of the account's rules: a name from a message or an event
        only ever selects; the upstream host always comes from the rule."""
        found = Discovery()
        rule = rule_for_repository(self.rules(), name)
        if rule is None:
            found.errors.append(f"{name}: not under any pull-through cache rule in scope")
            return found
        try:
            repo = self.ecr.cached_repository(name, rule)
        except EcrError as exc:
            found.errors.append(str(exc))
            return found
        if repo is None:
            found.errors.append(f"{name}: no such repository in the cache")
            return found
        if not is_cache(repo, self.settings.repository_include):
            reason = "not a cache: a repository under a ROOT rule that PTC_REPOSITORY_INCLUDE does not name"
            found.skipped.extend(
                TagResult(name, tag, rule.prefix, Outcome.NOT_A_CACHE, reason=reason) for tag in tags or ()
            )
            return found
        self._collect(repo, found, pulled_after=None, only=tags)
        return found

    def _collect(
        self,
        repo: CachedRepository,
        found: Discovery,
        *,
        pulled_after: datetime | None,
        only: Collection[str] | None = None,
    ) -> None:
        try:
            upstream = upstream_for(repo.rule, repo.name)
        except ValueError as exc:
            found.errors.append(f"{repo.name}: {exc}")
            return
        try:
            tags = list(self.ecr.tagged_images(repo.name))
        except EcrError as exc:
            found.errors.append(str(exc))
            return
        wanted = set(only) if only is not None else None
        seen: set[str] = set()
        ledger: dict[str, BackupRecord] = {}
        if any(is_backup_tag(cached.tag) for cached in tags):  # only then can the ledger know any
            try:
                ledger = {record.backup_tag: record for record in self.ledger.backups(repo.name)}
            except StateError as exc:
                found.errors.append(f"{repo.name}: backup ledger: {exc}")
                return
        for cached in tags:
            record = ledger.get(cached.tag)
            if record is not None:
                found.backups.setdefault((repo.name, record.source_tag), []).append(record)
                continue
            if wanted is not None and cached.tag not in wanted:
                continue
            seen.add(cached.tag)
            reason = self._filtered(cached, pulled_after) if wanted is None else ""
            if reason:
                found.skipped.append(self._result(repo, cached, Outcome.SKIPPED, reason=reason))
            else:
                found.targets.append(Target(repo, cached, upstream))
        for missing in sorted((wanted or set()) - seen):
            found.skipped.append(
                TagResult(
                    repository=repo.name,
                    tag=missing,
                    rule_prefix=repo.rule.prefix,
                    outcome=Outcome.SKIPPED,
                    reason="no longer in the cache",
                )
            )

    def _filtered(self, cached: CachedTag, pulled_after: datetime | None) -> str:
        s = self.settings
        if s.tag_include and not _matches(cached.tag, s.tag_include):
            return "tag not in PTC_TAG_INCLUDE"
        if _matches(cached.tag, s.tag_exclude):
            return "tag in PTC_TAG_EXCLUDE"
        if pulled_after is not None:
            last = cached.last_pulled_at or cached.pushed_at
            if last is None or last < pulled_after:
                return f"not pulled within {s.pulled_within_days} days"
        return ""

    # -- the run -------------------------------------------------------------------------------------

    def run(
        self,
        *,
        run_id: str | None = None,
        dry_run: bool | None = None,
        time_left: Callable[[], float] | None = None,
    ) -> RunReport:
        """One full sync. ``time_left`` (seconds) stops new refreshes before the Lambda times out."""
        started = self.now()
        run_id = run_id or uuid.uuid4().hex
        dry = self.settings.dry_run if dry_run is None else dry_run
        errors: list[str] = []
        try:
            found = self.discover()
        except EcrError as exc:
            found = Discovery(errors=[f"discovery failed: {exc}"])
        errors.extend(found.errors)

        results = list(found.skipped)
        results.extend(
            self.check(
                found.targets, found.backups, dry_run=dry, time_left=time_left, budget=LocalBudget(self)
            )
        )
        return RunReport(
            run_id=run_id,
            started_at=started,
            finished_at=self.now(),
            dry_run=dry,
            results=tuple(results),
            rate_limits=self.registry.rate_limits(),
            errors=tuple(errors),
            region=self.settings.region,
            account_id=self.settings.account_id,
        )

    def check(
        self,
        targets: Sequence[Target],
        backups: Mapping[tuple[str, str], list[BackupRecord]],
        *,
        dry_run: bool,
        budget: PullBudget,
        time_left: Callable[[], float] | None = None,
        refresh_gate: Callable[[Target, str], str] | None = None,
    ) -> list[TagResult]:
        """Compare ``targets`` with upstream and refresh the stale ones: one result per target.

        ``refresh_gate(target, upstream digest)`` may hold a stale tag back (a cooldown, a backoff):
        it returns the reason, or ''."""
        results: list[TagResult] = []
        stale: list[tuple[Target, ResolvedDigest]] = []
        # one upstream check per (upstream repository, tag), however many cached repos share it
        unique = dict.fromkeys((t.upstream, t.cached.tag) for t in targets)
        resolved = {
            (ref, tag): answer
            for ref, tag, answer in self.registry.resolve_many(
                unique, max_workers=self.settings.check_concurrency
            )
        }
        for target in targets:
            answer = resolved.get((target.upstream, target.cached.tag))
            if answer is None:
                results.append(
                    self._result(target.repository, target.cached, Outcome.UPSTREAM_ERROR, reason="no answer")
                )
            elif isinstance(answer, RegistryError):
                results.append(self._compare_failed(target, answer))
            elif answer.digest == target.cached.digest:
                results.append(
                    self._result(target.repository, target.cached, Outcome.FRESH, upstream=answer.digest)
                )
            elif not comparable(answer.digest, target.cached.digest):
                results.append(
                    self._result(
                        target.repository,
                        target.cached,
                        Outcome.NOT_COMPARABLE,
                        upstream=answer.digest,
                        reason=f"upstream reports a {answer.digest.partition(':')[0]} digest, the cache "
                        f"{target.cached.digest.partition(':')[0]}: not compared, never refreshed",
                    )
                )
            elif is_immutable(target.repository, target.cached.tag):
                results.append(
                    self._result(
                        target.repository,
                        target.cached,
                        Outcome.IMMUTABLE,
                        upstream=answer.digest,
                        reason=f"repository tag mutability {target.repository.tag_mutability.value}",
                    )
                )
            elif dry_run:
                results.append(
                    self._result(
                        target.repository,
                        target.cached,
                        Outcome.STALE,
                        upstream=answer.digest,
                        reason="dry run",
                    )
                )
            else:
                stale.append((target, answer))

        held: list[tuple[Target, ResolvedDigest]] = []
        for target, answer in stale:
            reason = refresh_gate(target, answer.digest) if refresh_gate else ""
            if reason:
                results.append(
                    self._result(
                        target.repository, target.cached, Outcome.STALE, upstream=answer.digest, reason=reason
                    )
                )
            else:
                held.append((target, answer))
        results.extend(self._refresh_all(held, backups, time_left, budget))
        return results

    def _compare_failed(self, target: Target, error: RegistryError) -> TagResult:
        if isinstance(error, NotFoundError):
            outcome = Outcome.UPSTREAM_MISSING
        elif isinstance(error, RateLimitedError):
            outcome = Outcome.RATE_LIMITED
        else:
            outcome = Outcome.UPSTREAM_ERROR
        return self._result(target.repository, target.cached, outcome, reason=str(error))

    # -- refreshes -----------------------------------------------------------------------------------

    def _refresh_all(
        self,
        stale: list[tuple[Target, ResolvedDigest]],
        backups: Mapping[tuple[str, str], list[BackupRecord]],
        time_left: Callable[[], float] | None,
        budget: PullBudget,
    ) -> list[TagResult]:
        results: list[TagResult] = []
        # the oldest cached copies first: if the run cannot refresh everything, they matter most
        stale.sort(key=lambda pair: pair[0].cached.pushed_at or datetime.min.replace(tzinfo=UTC))
        planned: list[tuple[Target, ResolvedDigest, Manifest]] = []
        for target, answer in stale:
            repo, cached = target.repository, target.cached
            if len(planned) >= self.settings.max_refreshes_per_run:
                results.append(
                    self._result(
                        repo, cached, Outcome.STALE, upstream=answer.digest, reason="refresh cap reached"
                    )
                )
                continue
            if not self.refresher.has_time(time_left):
                results.append(
                    self._result(
                        repo, cached, Outcome.STALE, upstream=answer.digest, reason="no time left in run"
                    )
                )
                continue
            try:
                old = self.refresher.read_old(cached)
            except StepFailedError as exc:
                results.append(
                    self._result(
                        repo,
                        cached,
                        Outcome.REFRESH_FAILED,
                        upstream=answer.digest,
                        reason=f"{exc.step}: {exc.reason}",
                    )
                )
                continue
            refusal = budget.try_spend(target.upstream.host, pull_cost(old))
            if refusal:
                results.append(
                    self._result(repo, cached, Outcome.RATE_LIMITED, upstream=answer.digest, reason=refusal)
                )
                continue
            planned.append((target, answer, old))

        def one(item: tuple[Target, ResolvedDigest, Manifest]) -> TagResult:
            target, answer, old = item
            repo, cached = target.repository, target.cached
            outcome = self.refresher.refresh(
                cached,
                answer.digest,
                old=old,
                existing_backups=backups.get((repo.name, cached.tag), []),
                time_left=time_left,
            )
            return self.refresh_result(target, answer.digest, outcome)

        if planned:
            with ThreadPoolExecutor(max_workers=self.settings.refresh_concurrency) as pool:
                results.extend(pool.map(one, planned))
        return results

    def refresh_result(self, target: Target, upstream: str, outcome: RefreshResult) -> TagResult:
        """The one mapping of a refresh's result to the tag's outcome."""
        repo, cached = target.repository, target.cached
        if outcome.ok:
            return self._result(
                repo,
                cached,
                Outcome.REFRESHED,
                upstream=upstream,
                platforms=outcome.platforms,
                reason="; ".join(outcome.notes),
            )
        if outcome.held_by:
            reason = f"another refresh of this tag is under way ({outcome.held_by}); nothing touched"
            return self._result(repo, cached, Outcome.IN_PROGRESS, upstream=upstream, reason=reason)
        if outcome.untouched and outcome.new_digest is not None and outcome.new_digest == upstream:
            # another refresher got there first: the tag matches upstream now
            return dataclasses.replace(
                self._result(repo, cached, Outcome.FRESH, upstream=upstream, reason=outcome.untouched),
                cached_digest=outcome.new_digest,
            )
        if outcome.untouched:
            return self._result(repo, cached, Outcome.STALE, upstream=upstream, reason=outcome.untouched)
        return self._result(
            repo,
            cached,
            Outcome.REFRESH_FAILED,
            upstream=upstream,
            reason=f"{outcome.failed_step}: {outcome.reason}"
            + (" (rolled back)" if outcome.rolled_back else ""),
        )

    def _result(
        self,
        repo: CachedRepository,
        cached: CachedTag,
        outcome: Outcome,
        *,
        upstream: str | None = None,
        reason: str = "",
        platforms: tuple[str, ...] = (),
    ) -> TagResult:
        stale_since = (
            cached.pushed_at
            if outcome in {Outcome.STALE, Outcome.REFRESHED, Outcome.REFRESH_FAILED}
            else None
        )
        return TagResult(
            repository=cached.repository,
            tag=cached.tag,
            rule_prefix=repo.rule.prefix,
            outcome=outcome,
            cached_digest=cached.digest,
            upstream_digest=upstream,
            platforms=platforms,
            reason=reason,
            stale_since=stale_since,
        )
