"""The checker's warm path: tags an ECR event or a request names, pre-warmed (imported into the cache
when not cached yet, within the shared pull budget; their layers warmed when they are).

``WarmPath`` is a part of ``checker.Checker`` (its attributes are the checker's): a ROOT rule's
repository is imported into only when it is a cache, an echo of ptc-sync's own refresh is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ptc_sync.discovery import Discovery, is_cache
from ptc_sync.ecr import EcrAdapter, EcrError
from ptc_sync.models import Outcome, PullThroughCacheRule, TagResult
from ptc_sync.refresh import Refresher
from ptc_sync.settings import SyncSettings
from ptc_sync.state import StateStore
from ptc_sync.state_budget import RetryableError, StateBudget
from ptc_sync.sync import UpstreamResolver
from ptc_sync.upstream import ROOT, rule_for_repository, upstream_for
from ptc_sync.work import WorkItem


class WarmPath:
    """The warm path's methods; ``Checker`` provides the attributes and ``_echoes``."""

    ecr: EcrAdapter
    discovery: Discovery
    refresher: Refresher
    registry: UpstreamResolver
    state: StateStore
    settings: SyncSettings

    def _echoes(self, item: WorkItem, tags: list[str], now: datetime) -> tuple[list[str], list[TagResult]]:
        raise NotImplementedError  # Checker's

    def _warm(self, item: WorkItem, now: datetime, time_left: Callable[[], float] | None) -> list[TagResult]:
        matched = rule_for_repository(self.discovery.rules(), item.repository)
        if matched is None:
            reason = "not under any pull-through cache rule"
            return [TagResult(item.repository, tag, "", Outcome.SKIPPED, reason=reason) for tag in item.tags]
        prefix = matched.prefix
        try:
            host = upstream_for(matched, item.repository).host
        except ValueError as exc:
            return [
                TagResult(item.repository, tag, prefix, Outcome.SKIPPED, reason=str(exc)) for tag in item.tags
            ]
        if not self._may_import_into(item.repository, matched):
            reason = "not a cache: a repository under a ROOT rule that PTC_REPOSITORY_INCLUDE does not name"
            return [
                TagResult(item.repository, t, prefix, Outcome.NOT_A_CACHE, reason=reason) for t in item.tags
            ]
        tags, echoes = self._echoes(item, list(item.tags), now)  # a failed import's event: no retry storm
        budget = StateBudget(self.state, self.registry, self.settings.rate_limit_reserve, now)
        return echoes + [
            self._warm_one(item, tag, prefix=prefix, host=host, budget=budget, time_left=time_left)
            for tag in tags
        ]

    def _may_import_into(self, repository: str, rule: PullThroughCacheRule) -> bool:
        """Under a ROOT rule an existing repository must be in the explicit scope (it may be one the
        team pushes to); one that does not exist yet is created by ECR's import, a cache."""
        if rule.prefix.strip().rstrip("/") != ROOT:
            return True
        try:
            repo = self.ecr.cached_repository(repository, rule)
        except EcrError as exc:
            raise RetryableError(str(exc)) from exc
        return repo is None or is_cache(repo, self.settings.repository_include)

    def _warm_one(
        self,
        item: WorkItem,
        tag: str,
        *,
        prefix: str,
        host: str,
        budget: StateBudget,
        time_left: Callable[[], float] | None,
    ) -> TagResult:
        try:
            before = self.ecr.tag_digest(item.repository, tag)
        except EcrError as exc:
            if exc.code != "RepositoryNotFoundException":
                raise RetryableError(str(exc)) from exc
            before = None  # nothing cached under this name yet: the pull creates the repository
        if before is None:
            # an import is an upstream pull: one at least (one per platform where pulls are counted)
            refusal = budget.try_spend(host, 1)
            if refusal:
                return TagResult(item.repository, tag, prefix, Outcome.RATE_LIMITED, reason=refusal)
        warmed = self.refresher.prewarm(item.repository, tag, time_left=time_left)
        if warmed.untouched:
            return TagResult(
                item.repository, tag, prefix, Outcome.SKIPPED, cached_digest=before, reason=warmed.untouched
            )
        if before is None and len(warmed.platforms) > 1:
            budget.try_spend(host, len(warmed.platforms) - 1)  # already pulled: only counted
        if not warmed.ok and warmed.blobs_warming:
            # cached, but ECR still fetches some blobs from upstream: not warm yet, nothing failed
            return TagResult(
                item.repository,
                tag,
                prefix,
                Outcome.WARMING,
                cached_digest=before,
                upstream_digest=warmed.new_digest,
                platforms=warmed.platforms,
                reason=warmed.reason,
            )
        if not warmed.ok:
            return TagResult(
                item.repository,
                tag,
                prefix,
                Outcome.REFRESH_FAILED,
                cached_digest=before,
                upstream_digest=warmed.new_digest,
                reason=f"{warmed.failed_step}: {warmed.reason}",
            )
        if before is None:
            return TagResult(
                item.repository,
                tag,
                prefix,
                Outcome.REFRESHED,
                upstream_digest=warmed.new_digest,
                platforms=warmed.platforms,
                reason=f"pre-warmed ({item.source})",
            )
        # cached already: a pre-warm says nothing of upstream (the tag may be a rolled-back old image),
        # so it neither ends a failure nor resets a backoff
        return TagResult(
            item.repository,
            tag,
            prefix,
            Outcome.SKIPPED,
            cached_digest=before,
            upstream_digest=warmed.new_digest,
            reason="already cached; layers warmed",
        )
