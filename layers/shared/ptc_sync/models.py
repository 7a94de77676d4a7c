"""The core vocabulary: pull-through cache rules, cached tags, upstream references, outcomes.

Pure data, no I/O. Every adapter speaks in these types.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Final

from ptc_sync.redact import redact

DIGEST_RE: Final = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


class InvalidDigestError(ValueError):
    pass


def validate_digest(value: str) -> str:
    """Return ``value`` if it is a well-formed sha256/sha512 digest, else raise InvalidDigestError."""
    if not DIGEST_RE.fullmatch(value):
        raise InvalidDigestError(f"malformed digest {value[:80]!r}")
    return value


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short_digest(digest: str) -> str:
    """``sha256:0123456789ab…`` → ``0123456789ab`` (the 12 hex characters chat and logs show)."""
    return digest.partition(":")[2][:12] or digest[:12]


class UpstreamKind(StrEnum):
    """ECR's ``UpstreamRegistry`` enum."""

    ECR_PUBLIC = "ecr-public"
    K8S = "k8s"
    QUAY = "quay"
    DOCKER_HUB = "docker-hub"
    GITHUB = "github-container-registry"
    AZURE = "azure-container-registry"
    GITLAB = "gitlab-container-registry"
    CHAINGUARD = "chainguard"
    ECR = "ecr"


@dataclass(frozen=True, slots=True)
class PullThroughCacheRule:
    """One ``DescribePullThroughCacheRules`` entry."""

    prefix: str  # ecrRepositoryPrefix; "ROOT" for a rule that covers the whole registry
    upstream_registry: UpstreamKind
    upstream_url: str  # upstreamRegistryUrl as ECR returns it (a host, no scheme)
    registry_id: str = ""
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_repository_prefix: str | None = None  # ECR-to-ECR only; "ROOT" means none


@dataclass(frozen=True, slots=True)
class UpstreamRef:
    """Where a cached repository's images come from: built only from a rule, never from an event."""

    host: str  # e.g. registry-1.docker.io
    repository: str  # e.g. library/alpine
    kind: UpstreamKind
    rule_prefix: str
    credential_arn: str | None = None
    custom_role_arn: str | None = None

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True, slots=True)
class ResolvedDigest:
    """What upstream says a tag points at now."""

    digest: str
    media_type: str


class TagMutability(StrEnum):
    MUTABLE = "MUTABLE"
    IMMUTABLE = "IMMUTABLE"
    MUTABLE_WITH_EXCLUSION = "MUTABLE_WITH_EXCLUSION"
    IMMUTABLE_WITH_EXCLUSION = "IMMUTABLE_WITH_EXCLUSION"


@dataclass(frozen=True, slots=True)
class CachedRepository:
    name: str
    arn: str
    registry_id: str
    rule: PullThroughCacheRule
    tag_mutability: TagMutability = TagMutability.MUTABLE
    mutability_exclusions: tuple[str, ...] = ()  # wildcard filters from imageTagMutabilityExclusionFilters


@dataclass(frozen=True, slots=True)
class CachedTag:
    """One tag of one cached repository, as DescribeImages reports it."""

    repository: str
    tag: str
    digest: str
    media_type: str
    pushed_at: datetime | None = None
    last_pulled_at: datetime | None = None
    size_bytes: int | None = None

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


class Outcome(StrEnum):
    """Exactly one per checked tag."""

    FRESH = "fresh"
    STALE = "stale"
    REFRESHED = "refreshed"
    REFRESH_FAILED = "refresh_failed"
    UPSTREAM_MISSING = "upstream_missing"
    UPSTREAM_ERROR = "upstream_error"
    RATE_LIMITED = "rate_limited"
    IMMUTABLE = "immutable"
    SKIPPED = "skipped"
    # a refresh killed part-way (timeout, crash, failed rollback) was finished or rolled back
    REPAIRED = "repaired"
    # another refresher holds the tag's lease: this check touched nothing
    IN_PROGRESS = "in_progress"
    # the repository is not a cache ECR made (a repository pushed to directly under a ROOT rule)
    NOT_A_CACHE = "not_a_cache"
    # upstream reports a digest of another algorithm than the cache's: it cannot be called stale
    NOT_COMPARABLE = "not_comparable"
    # the image is cached, but ECR does not serve every blob itself yet (a node without a route to
    # upstream could not pull it): not a failure, the next run checks again
    WARMING = "warming"

    @property
    def notable(self) -> bool:
        return self not in {Outcome.FRESH, Outcome.SKIPPED, Outcome.IN_PROGRESS, Outcome.NOT_A_CACHE}


# The named groupings of outcomes, each defined once (tests/fast/test_outcomes.py pins every one).
# A step failed: the refresh, or reading upstream (alerted, logged as errors).
FAILED_OUTCOMES: Final = frozenset({Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR})
# Not fresh, yet nothing failed: differs from upstream, gone upstream, rate limited or immutable
# (logged as warnings; news the first time a tag shows one).
WARNING_OUTCOMES: Final = frozenset(
    {Outcome.STALE, Outcome.UPSTREAM_MISSING, Outcome.RATE_LIMITED, Outcome.IMMUTABLE}
)
# The tag may not match upstream after this check (the CLI's exit code 1).
NOT_FRESH_OUTCOMES: Final = FAILED_OUTCOMES | WARNING_OUTCOMES
# The cached digest differed from upstream's when checked, refreshed since or not (``TagsStale``).
DIFFERED_OUTCOMES: Final = frozenset(
    {Outcome.STALE, Outcome.REFRESHED, Outcome.REFRESH_FAILED, Outcome.IMMUTABLE}
)
# The cached digest still differs from upstream's after this check.
STILL_DIFFERS_OUTCOMES: Final = DIFFERED_OUTCOMES - {Outcome.REFRESHED}
# The tag matches upstream after this check.
MATCHES_OUTCOMES: Final = frozenset({Outcome.FRESH, Outcome.REFRESHED})
# Upstream has an image the cache did not: refreshed, or would be (the report lists its platforms).
NEW_IMAGE_OUTCOMES: Final = frozenset({Outcome.STALE, Outcome.REFRESHED})
# "cached → upstream" digests say what changed, or would have (the report shows them for these).
DIGEST_CHANGE_OUTCOMES: Final = DIFFERED_OUTCOMES | {Outcome.REPAIRED, Outcome.NOT_COMPARABLE}
# Upstream or the cache moved, or a killed refresh was put right (the report's "changed" tone).
CHANGED_OUTCOMES: Final = NEW_IMAGE_OUTCOMES | {Outcome.REPAIRED}
# What "what changed" lists (the state table's ChangesByDay index): refreshes, repairs and failures.
HISTORY_OUTCOMES: Final = frozenset({Outcome.REFRESHED, Outcome.REPAIRED}) | FAILED_OUTCOMES
# Nothing was learned about the tag: a failure streak neither grows nor ends.
INCONCLUSIVE_OUTCOMES: Final = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.SKIPPED,
        Outcome.IN_PROGRESS,
        Outcome.NOT_A_CACHE,
        Outcome.NOT_COMPARABLE,
        Outcome.REPAIRED,
        Outcome.WARMING,
    }
)
# After the check the tag may still serve an old image: every notable outcome but refreshed
# (what ``OldestStaleSeconds`` measures).
MAY_SERVE_OLD_OUTCOMES: Final = frozenset(
    outcome for outcome in Outcome if outcome.notable and outcome is not Outcome.REFRESHED
)


MAX_REASON_CHARS: Final = 1000
MAX_PLATFORM_CHARS: Final = 100


@dataclass(frozen=True, slots=True)
class TagResult:
    repository: str
    tag: str
    rule_prefix: str
    outcome: Outcome
    cached_digest: str | None = None
    upstream_digest: str | None = None
    platforms: tuple[str, ...] = ()  # "linux/amd64", … for what the tag carries now
    reason: str = ""  # for failures: the step and the error, precise enough to act on
    stale_since: datetime | None = None  # when the upstream digest was first seen differing
    details: dict[str, str] = field(default_factory=dict)
    # what ECR said of the cached image when it was checked: its last recorded pull and its push (the
    # tag state keeps the last person's pull from them: ptc_sync.pull_times)
    image_pulled_at: datetime | None = None
    image_pushed_at: datetime | None = None
    # what the run state made of the result (``state.policy.judged``; all False where no state was read):
    news: bool = False  # worth telling chat: the first failure, a refresh, a new warning, a recovery
    recovered: bool = False  # a fresh result that ends a failure the state had alerted on
    first_seen: bool = False  # a scheduled check of a tag with no state yet (the first run after a deploy)

    def __post_init__(self) -> None:
        # the one place every result passes: state items, reports, logs and the CLI see only redacted,
        # bounded text, whatever upstream put into an error
        if self.reason:
            object.__setattr__(self, "reason", redact(self.reason, limit=MAX_REASON_CHARS))
        if self.platforms:
            shown = tuple(redact(p, limit=MAX_PLATFORM_CHARS) for p in self.platforms)
            object.__setattr__(self, "platforms", shown)
        if self.details:
            details = {
                key: redact(value, limit=MAX_REASON_CHARS) if isinstance(value, str) else value
                for key, value in self.details.items()
            }
            object.__setattr__(self, "details", details)

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True, slots=True)
class RateLimitStatus:
    """An upstream's pull budget as its ``ratelimit-*`` headers last reported it (None: no headers)."""

    host: str
    limit: int | None = None
    remaining: int | None = None
    window_seconds: int | None = None
    source: str | None = None  # docker-ratelimit-source


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything one sync run did, for the SNS message, the metrics and the logs.

    ``results`` are the tags worth naming; ``counts`` the tags checked per (rule prefix, outcome), as
    the run's counters hold them (a fan-out run stores no plain fresh result, only counts it). Empty
    ``counts``: every tag checked is in ``results`` (a local run, a test), and they are counted."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    dry_run: bool
    results: tuple[TagResult, ...]
    rate_limits: tuple[RateLimitStatus, ...] = ()
    errors: tuple[str, ...] = ()  # run-level problems (a rule whose discovery failed, ...)
    region: str = ""
    account_id: str = ""
    counts: Mapping[tuple[str, Outcome], int] = field(default_factory=dict)

    @property
    def tallies(self) -> Mapping[tuple[str, Outcome], int]:
        """Tags checked per (rule prefix, outcome): ``counts``, else counted from ``results``."""
        if self.counts:
            return self.counts
        return Counter((r.rule_prefix, r.outcome) for r in self.results)

    def count(self, outcome: Outcome, *, rule_prefix: str | None = None) -> int:
        return sum(
            n
            for (rule, o), n in self.tallies.items()
            if o is outcome and (rule_prefix is None or rule == rule_prefix)
        )

    @property
    def tags_checked(self) -> int:
        return sum(self.tallies.values())

    @property
    def rule_prefixes(self) -> frozenset[str]:
        """The rules the run checked tags under."""
        return frozenset(rule for rule, _ in self.tallies)

    @property
    def notable(self) -> bool:
        return bool(self.errors) or any(r.outcome.notable for r in self.results)
