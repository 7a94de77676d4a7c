"""The comparison and refresh step (``Comparer``): compare discovered tags with upstream, refresh
what is stale. Discovery (rules, scope, cached tags, backups) is ``discovery.Discovery``'s; the
checker gives the targets, the pull budget and the gate (cooldown, backoff) and records the results.

Each discovered tag ends in exactly one ``Outcome``. Upstream is only ever reached through hosts
taken from the account's pull-through cache rules (``upstream.upstream_for``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol

from ptc_sync.discovery import (
    Target,
    comparable,
    matches,
    tag_result,
)
from ptc_sync.ecr import Manifest
from ptc_sync.journal import BackupRecord
from ptc_sync.models import (
    CachedRepository,
    Outcome,
    RateLimitStatus,
    ResolvedDigest,
    TagMutability,
    TagResult,
    UpstreamRef,
)
from ptc_sync.refresh import Refresher, RefreshResult, StepFailedError, pull_cost
from ptc_sync.registry.errors import NotFoundError, RateLimitedError, RegistryError
from ptc_sync.settings import SyncSettings


class UpstreamResolver(Protocol):
    """What the comparer and the checker need of the registry client."""

    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = ...
    ) -> Iterator[tuple[UpstreamRef, str, ResolvedDigest | RegistryError]]: ...

    def rate_limit(self, host: str) -> RateLimitStatus | None: ...

    def rate_limits(self) -> tuple[RateLimitStatus, ...]: ...

    def list_tags(self, ref: UpstreamRef, page_size: int = ...) -> Iterator[str]: ...


def is_immutable(repository: CachedRepository, tag: str) -> bool:
    """Whether ECR would refuse to move ``tag`` (exclusion filters invert the repository default)."""
    excluded = matches(tag, repository.mutability_exclusions)
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


class Comparer:
    """Compares targets with upstream and refreshes the stale ones, within a budget and a gate the
    caller gives (the checker: the shared pull budget, the cooldown and the backoff)."""

    def __init__(self, registry: UpstreamResolver, refresher: Refresher, settings: SyncSettings) -> None:
        self.registry = registry
        self.refresher = refresher
        self.settings = settings

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
                    tag_result(target.repository, target.cached, Outcome.UPSTREAM_ERROR, reason="no answer")
                )
            elif isinstance(answer, RegistryError):
                results.append(self._compare_failed(target, answer))
            elif answer.digest == target.cached.digest:
                results.append(
                    tag_result(target.repository, target.cached, Outcome.FRESH, upstream=answer.digest)
                )
            elif not comparable(answer.digest, target.cached.digest):
                results.append(
                    tag_result(
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
                    tag_result(
                        target.repository,
                        target.cached,
                        Outcome.IMMUTABLE,
                        upstream=answer.digest,
                        reason=f"repository tag mutability {target.repository.tag_mutability.value}",
                    )
                )
            elif dry_run:
                results.append(
                    tag_result(
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
                    tag_result(
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
        return tag_result(target.repository, target.cached, outcome, reason=str(error))

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
                    tag_result(
                        repo, cached, Outcome.STALE, upstream=answer.digest, reason="refresh cap reached"
                    )
                )
                continue
            if not self.refresher.has_time(time_left):
                results.append(
                    tag_result(
                        repo, cached, Outcome.STALE, upstream=answer.digest, reason="no time left in run"
                    )
                )
                continue
            try:
                old = self.refresher.read_old(cached)
            except StepFailedError as exc:
                results.append(
                    tag_result(
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
                    tag_result(repo, cached, Outcome.RATE_LIMITED, upstream=answer.digest, reason=refusal)
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
            return tag_result(
                repo,
                cached,
                Outcome.REFRESHED,
                upstream=upstream,
                platforms=outcome.platforms,
                reason="; ".join(outcome.notes),
            )
        if outcome.held_by:
            reason = f"another refresh of this tag is under way ({outcome.held_by}); nothing touched"
            return tag_result(repo, cached, Outcome.IN_PROGRESS, upstream=upstream, reason=reason)
        if outcome.untouched and outcome.new_digest is not None and outcome.new_digest == upstream:
            # another refresher got there first: the tag matches upstream now
            return dataclasses.replace(
                tag_result(repo, cached, Outcome.FRESH, upstream=upstream, reason=outcome.untouched),
                cached_digest=outcome.new_digest,
            )
        if outcome.untouched:
            return tag_result(repo, cached, Outcome.STALE, upstream=upstream, reason=outcome.untouched)
        return tag_result(
            repo,
            cached,
            Outcome.REFRESH_FAILED,
            upstream=upstream,
            reason=f"{outcome.failed_step}: {outcome.reason}"
            + (" (rolled back)" if outcome.rolled_back else ""),
        )
