"""Discovery: the account's rules, the repositories in scope and their cached tags; never upstream.

A name from a work item or an event only ever selects among the repositories under the account's
pull-through cache rules; the upstream host always comes from the rule. Only tags recorded in the
backup ledger are backups. Under a ROOT rule only repositories the operator's scope names are caches.

PTC_PULLED_WITHIN_DAYS counts people's pulls only (ptc_sync.pull_times): ECR's pull and push times
that fall within ptc-sync's own pull windows do not count, and the tag state's last person's pull
(``TagState.pulled_at``) survives a refresh, which gives the tag a new image.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from aws_lambda_powertools import Logger

from ptc_sync.ecr import EcrAdapter, EcrError
from ptc_sync.journal import BackupLedger, BackupRecord
from ptc_sync.models import CachedRepository, CachedTag, Outcome, PullThroughCacheRule, TagResult, UpstreamRef
from ptc_sync.pull_times import latest, own_pull_times, people_pulled_at
from ptc_sync.refresh import is_backup_tag
from ptc_sync.settings import SyncSettings
from ptc_sync.state import StateError
from ptc_sync.upstream import ROOT, rule_for_repository, upstream_for

if TYPE_CHECKING:
    from ptc_sync.state import TagState

logger = Logger(child=True)
RULES_TTL = 300.0  # seconds a container trusts its copy of the account's pull-through cache rules


class PullLog(Protocol):
    """Where discovery reads when ptc-sync itself pulled a tag: the tag state (state.py)."""

    def tag_states(
        self, keys: Iterable[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], TagState]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """A cached tag in scope, with where its upstream is."""

    repository: CachedRepository
    cached: CachedTag
    upstream: UpstreamRef


class NotUnderRule(Exception):
    """The repository is under no pull-through cache rule in scope: permanent, retrying cannot help."""


class RepositoryGone(Exception):
    """The repository is not (or no longer) in ECR: permanent for this work item."""


@dataclass(slots=True)
class Found:
    """What discovery found: targets to compare, results already decided, non-fatal errors, the
    backups of each tag; ``gone`` when the one repository asked for cannot be checked at all."""

    targets: list[Target] = field(default_factory=list)
    skipped: list[TagResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # (repository, source tag) → the backups ptc-sync recorded for it (only ledger tags are backups)
    backups: dict[tuple[str, str], list[BackupRecord]] = field(default_factory=dict)
    gone: NotUnderRule | RepositoryGone | None = None


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


EVERYTHING = frozenset({"*", "**"})


def is_cache(repository: CachedRepository, include: Iterable[str]) -> bool:
    """Whether ptc-sync may treat the repository as a cache. Under a prefixed rule ECR owns the
    namespace. Under a ROOT rule any repository of the account matches, including ones the team
    pushes to, and ECR says nowhere which repositories it created: only the operator's explicit
    scope (PTC_REPOSITORY_INCLUDE naming it, not ``*``) makes one a cache."""
    if repository.rule.prefix.strip().rstrip("/") != ROOT:
        return True
    return matches(repository.name, [p for p in include if p not in EVERYTHING])


def comparable(upstream_digest: str, cached_digest: str) -> bool:
    """Digests of one algorithm compare; ECR's are sha256, an upstream's sha512 says nothing."""
    return upstream_digest.partition(":")[0] == cached_digest.partition(":")[0]


class Discovery:
    def __init__(
        self,
        ecr: EcrAdapter,
        ledger: BackupLedger,
        settings: SyncSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        pulls: PullLog | None = None,
    ) -> None:
        self.ecr = ecr
        self.ledger = ledger
        self.settings = settings
        self.now = now
        self.pulls = pulls
        self._rules: tuple[float, list[PullThroughCacheRule]] | None = None

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
        if s.repository_include and not matches(repository, s.repository_include):
            return False
        return not matches(repository, s.repository_exclude)

    def discover(self) -> Found:
        """Every cached tag in scope: rules → repositories under their prefixes → tagged images."""
        s = self.settings
        found = Found()
        rules = self.rules()
        if not rules:
            found.errors.append(
                "no pull-through cache rules"
                + (f" match PTC_RULE_PREFIXES={','.join(s.rule_prefixes)}" if s.rule_prefixes else "")
            )
            return found
        pulled_after = self._pulled_after()
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

    def repositories(self) -> tuple[list[CachedRepository], list[str]]:
        """The caches in scope (rules → repositories under their prefixes), no tag read; with the
        reasons when there is nothing to read. What the planner lists: its cost grows with
        repositories, and each repository's checker lists its tags."""
        rules = self.rules()
        if not rules:
            prefixes = self.settings.rule_prefixes
            return [], [
                "no pull-through cache rules"
                + (f" match PTC_RULE_PREFIXES={','.join(prefixes)}" if prefixes else "")
            ]
        caches, not_caches = [], 0
        for repo in self.ecr.cached_repositories(rules):
            if not self.in_scope(repo.name):
                continue
            if is_cache(repo, self.settings.repository_include):
                caches.append(repo)
            else:
                not_caches += 1
        if not_caches:
            logger.info(
                "repositories under a ROOT rule left alone: not named by PTC_REPOSITORY_INCLUDE",
                extra={"repositories": not_caches},
            )
        return caches, []

    def cached_tags(self, repository: str) -> set[str]:
        """The tags ECR holds in ``repository`` now (none when it does not exist); EcrError else."""
        try:
            return {cached.tag for cached in self.ecr.tagged_images(repository)}
        except EcrError as exc:
            if exc.code == "RepositoryNotFoundException":
                return set()
            raise

    def discover_repository(
        self, name: str, tags: Collection[str] | None = None, *, scoped: bool = False
    ) -> Found:
        """The cached tags ``tags`` (all when None) of one repository, with its rule and mutability;
        ``scoped`` applies the tag filters and PTC_PULLED_WITHIN_DAYS to them, as a scan does.

        The repository must be under one of the account's rules: a name from a message or an event
        only ever selects; the upstream host always comes from the rule."""
        found = Found()
        rule = rule_for_repository(self.rules(), name)
        if rule is None:
            found.gone = NotUnderRule(f"{name}: not under any pull-through cache rule in scope")
            found.errors.append(str(found.gone))
            return found
        try:
            repo = self.ecr.cached_repository(name, rule)
        except EcrError as exc:
            found.errors.append(str(exc))
            return found
        if repo is None:
            found.gone = RepositoryGone(f"{name}: no such repository in the cache")
            found.errors.append(str(found.gone))
            return found
        if not is_cache(repo, self.settings.repository_include):
            reason = "not a cache: a repository under a ROOT rule that PTC_REPOSITORY_INCLUDE does not name"
            found.skipped.extend(
                TagResult(name, tag, rule.prefix, Outcome.NOT_A_CACHE, reason=reason) for tag in tags or ()
            )
            return found
        self._collect(repo, found, pulled_after=self._pulled_after() if scoped else None, only=tags)
        return found

    def _pulled_after(self) -> datetime | None:
        days = self.settings.pulled_within_days
        return self.now() - timedelta(days=days) if days else None

    def _collect(
        self,
        repo: CachedRepository,
        found: Found,
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
        own = self._own_pulls(repo.name, tags, pulled_after, found)
        for cached in tags:
            record = ledger.get(cached.tag)
            if record is not None:
                found.backups.setdefault((repo.name, record.source_tag), []).append(record)
                continue
            if wanted is not None and cached.tag not in wanted:
                continue
            seen.add(cached.tag)
            reason = self._filtered(cached, pulled_after, own.get(cached.tag)) if wanted is None else ""
            if reason:
                found.skipped.append(tag_result(repo, cached, Outcome.SKIPPED, reason=reason))
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

    def _own_pulls(
        self, repository: str, tags: Sequence[CachedTag], pulled_after: datetime | None, found: Found
    ) -> dict[str, TagState]:
        """The tag states (ptc-sync's own pulls, the last person's pull) of the tags whose ECR times
        would keep them in scope (one BatchGetItem per 100 tags, eventually consistent: a pull a
        second old changes nothing)."""
        if pulled_after is None or self.pulls is None:
            return {}
        keys = [
            (repository, cached.tag)
            for cached in tags
            if any(t is not None and t >= pulled_after for t in (cached.last_pulled_at, cached.pushed_at))
        ]
        if not keys:
            return {}
        try:
            states = self.pulls.tag_states(keys, consistent=False)
        except StateError as exc:
            # unread: ECR's times count as people's (a tag stays in scope rather than going stale)
            found.errors.append(f"{repository}: tag states for PTC_PULLED_WITHIN_DAYS not read: {exc}")
            return {}
        return {tag: state for (_repo, tag), state in states.items()}

    def _filtered(
        self, cached: CachedTag, pulled_after: datetime | None, state: TagState | None = None
    ) -> str:
        s = self.settings
        if s.tag_include and not matches(cached.tag, s.tag_include):
            return "tag not in PTC_TAG_INCLUDE"
        if matches(cached.tag, s.tag_exclude):
            return "tag in PTC_TAG_EXCLUDE"
        if pulled_after is not None:
            ecr_says = people_pulled_at(cached.last_pulled_at, cached.pushed_at, own_pull_times(state))
            last = latest(ecr_says, state.pulled_at if state is not None else None)
            if last is None or last < pulled_after:
                return f"not pulled within {s.pulled_within_days} days (ptc-sync's own pulls do not count)"
        return ""


def tag_result(
    repo: CachedRepository,
    cached: CachedTag,
    outcome: Outcome,
    *,
    upstream: str | None = None,
    reason: str = "",
    platforms: tuple[str, ...] = (),
) -> TagResult:
    stale_since = (
        cached.pushed_at if outcome in {Outcome.STALE, Outcome.REFRESHED, Outcome.REFRESH_FAILED} else None
    )
    """The result of a cached tag's check, its staleness dated from the cached push."""
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
        image_pulled_at=cached.last_pulled_at,
        image_pushed_at=cached.pushed_at,
    )
