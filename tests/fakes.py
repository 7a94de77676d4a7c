"""In-memory fakes of the ports, for the fast tier (tests/fast): no moto, no registry, no socket.

- ``FakeEcr``: what ``ecr.EcrAdapter`` exposes, over tags → digests and manifests by digest, with
  ECR's semantics as the adapter sees them: BatchGetImage by tag imports an absent tag from the
  ``FakeUpstream`` (a pull-through cache), by digest never does; PutImage refuses bytes that do not
  hash to the digest and a tag already on that digest (ImageAlreadyExistsException), and tags over
  128 characters; BatchDeleteImage drops an image with its last tag; DescribeImages answers None
  for an absent tag. ``fail(...)`` scripts errors per operation.
- ``FakeUpstream`` and ``FakeRegistry``: upstream's tags, and the registry client's resolver port.
- ``FakeState``: the ``state.StateStore`` subset the planner and checker use, on the pure policy
  (``state.next_tag_state``, ``state.should_alert``).
- ``FakeNotifier``, ``FakeQueue``; ``journal.LocalJournal`` is the journal and ledger fake.
- ``FakeClock`` and ``FakeContext`` live in ``testbed.runtime`` (the testbed uses them too).
- ``Fakes`` wires them into the real ``Refresher``, ``Repairer``, ``Comparer``, ``Checker`` and
  ``Planner``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ptc_sync import mediatypes as mt
from ptc_sync.checker import Checker
from ptc_sync.discovery import Discovery
from ptc_sync.ecr import EcrError, Manifest
from ptc_sync.journal import LocalJournal
from ptc_sync.models import (
    CachedRepository,
    CachedTag,
    PullThroughCacheRule,
    RateLimitStatus,
    ResolvedDigest,
    RunReport,
    UpstreamKind,
    UpstreamRef,
    sha256_digest,
)
from ptc_sync.names import is_tag
from ptc_sync.ondemand import RequestPlanner
from ptc_sync.planner import Planner
from ptc_sync.refresh import Refresher
from ptc_sync.registry.errors import NotFoundError, RegistryError
from ptc_sync.repair import Repairer
from ptc_sync.report import PublishDecision, ReportKind
from ptc_sync.request_window import RequestWindow
from ptc_sync.settings import SyncSettings
from ptc_sync.state import MemoryStateStore
from ptc_sync.sync import Comparer
from ptc_sync.upstream import rule_for_repository, upstream_for
from ptc_sync.work import WorkItem
from testbed.runtime import FakeClock, FakeContext

__all__ = [
    "HUB",
    "FakeClock",
    "FakeContext",
    "FakeEcr",
    "FakeNotifier",
    "FakeQueue",
    "FakeRegistry",
    "FakeState",
    "FakeUpstream",
    "Fakes",
    "image",
]

HUB = PullThroughCacheRule("docker-hub", UpstreamKind.DOCKER_HUB, "registry-1.docker.io")
ACCOUNT = "123456789012"
START = datetime.now(UTC).replace(second=0, microsecond=0)  # EMF refuses timestamps 14 days old


def image(seed: str) -> Manifest:
    """A small OCI image manifest, one config and one layer, unique to ``seed``."""

    def blob(kind: str) -> str:
        return "sha256:" + hashlib.sha256(f"{seed}/{kind}".encode()).hexdigest()

    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob("c"), "size": 1},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob("l"), "size": 1}
        ],
    }
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Manifest(sha256_digest(body), mt.OCI_MANIFEST, body)


# -- upstream ------------------------------------------------------------------------------------------


@dataclass
class FakeUpstream:
    """Upstream's tags: (upstream repository path, tag) → manifest. ``missing``: tags upstream lost."""

    images: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    fetches: list[tuple[str, str]] = field(default_factory=list)

    def push(self, repository: str, tag: str, manifest: Manifest) -> None:
        self.images[(repository, tag)] = manifest

    def get(self, repository: str, tag: str) -> Manifest | None:
        return self.images.get((repository, tag))


@dataclass
class FakeRegistry:
    """The registry client's resolver port (``sync.UpstreamResolver``) over a ``FakeUpstream``."""

    upstream: FakeUpstream
    limits: dict[str, RateLimitStatus] = field(default_factory=dict)
    errors: dict[tuple[str, str], RegistryError] = field(default_factory=dict)
    resolved: list[tuple[str, str]] = field(default_factory=list)

    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = 32
    ) -> Iterator[tuple[UpstreamRef, str, ResolvedDigest | RegistryError]]:
        for ref, tag in items:
            self.resolved.append((ref.repository, tag))
            error = self.errors.get((ref.repository, tag))
            found = self.upstream.get(ref.repository, tag)
            if error is not None:
                yield ref, tag, error
            elif found is None:
                yield (
                    ref,
                    tag,
                    NotFoundError(f"{ref}:{tag}: not found", host=ref.host, repository=ref.repository),
                )
            else:
                yield ref, tag, ResolvedDigest(found.digest, found.media_type)

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        return self.limits.get(host)

    def rate_limits(self) -> tuple[RateLimitStatus, ...]:
        return tuple(self.limits.values())

    def list_tags(self, ref: UpstreamRef, page_size: int = 1000) -> Iterator[str]:
        return iter(sorted(tag for repo, tag in self.upstream.images if repo == ref.repository))


# -- ECR -----------------------------------------------------------------------------------------------


@dataclass
class _Fault:
    operation: str
    code: str
    times: int
    when: Callable[[dict[str, object]], bool] | None


class FakeEcr:
    """``ecr.EcrAdapter`` in memory: one registry's rules, repositories, tags and manifests."""

    def __init__(
        self,
        rules: Sequence[PullThroughCacheRule] = (HUB,),
        upstream: FakeUpstream | None = None,
        now: Callable[[], datetime] = lambda: START,
    ) -> None:
        self.rules = list(rules)
        self.upstream = upstream
        self.now = now
        self.repositories: dict[str, CachedRepository] = {}
        self.tags: dict[tuple[str, str], str] = {}  # (repository, tag) → digest
        self.manifests: dict[tuple[str, str], Manifest] = {}  # (repository, digest) → manifest
        self.pushed: dict[tuple[str, str], datetime] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, subject)
        self.warmed: list[str] = []
        self.available: set[tuple[str, str]] = set()  # (repository, blob digest) ECR serves itself
        self.cold: set[str] = set()  # blobs warm_layer does not make available
        self._faults: list[_Fault] = []

    # -- set-up and inspection ---------------------------------------------------------------------

    def cache(self, repository: str, tag: str, manifest: Manifest, **repo: object) -> None:
        """``repository:tag`` cached (the repository made under its rule when new)."""
        if repository not in self.repositories:
            rule = rule_for_repository(self.rules, repository)
            assert rule is not None, f"{repository} is under no rule"
            arn = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/{repository}"
            self.repositories[repository] = CachedRepository(repository, arn, ACCOUNT, rule, **repo)  # type: ignore[arg-type]
        self._store(repository, tag, manifest)

    def digest(self, repository: str, tag: str) -> str | None:
        return self.tags.get((repository, tag))

    def tags_of(self, repository: str) -> dict[str, str]:
        return {t: d for (r, t), d in self.tags.items() if r == repository}

    def writes(self) -> list[tuple[str, str]]:
        """The calls that changed something (PutImage, BatchDeleteImage)."""
        return [c for c in self.calls if c[0] in {"PutImage", "BatchDeleteImage"}]

    def fail(
        self,
        operation: str,
        code: str = "ThrottlingException",
        *,
        times: int = 1,
        when: Callable[[dict[str, object]], bool] | None = None,
    ) -> None:
        """The next ``times`` calls of ``operation`` (those ``when`` accepts) raise EcrError ``code``."""
        self._faults.append(_Fault(operation, code, times, when))

    def _call(self, operation: str, subject: str, **args: object) -> None:
        self.calls.append((operation, subject))
        for fault in self._faults:
            if fault.operation == operation and fault.times > 0 and (fault.when is None or fault.when(args)):
                fault.times -= 1
                raise EcrError(operation, fault.code, "injected by FakeEcr", subject=subject)

    def _store(self, repository: str, tag: str, manifest: Manifest) -> None:
        self.manifests[(repository, manifest.digest)] = manifest
        if self.tags.get((repository, tag)) != manifest.digest:
            self.pushed[(repository, manifest.digest)] = self.now()
        self.tags[(repository, tag)] = manifest.digest

    def _repository(self, operation: str, repository: str) -> CachedRepository:
        repo = self.repositories.get(repository)
        if repo is None:
            raise EcrError(operation, "RepositoryNotFoundException", "no such repository", subject=repository)
        return repo

    # -- discovery ---------------------------------------------------------------------------------

    def pull_through_cache_rules(self) -> list[PullThroughCacheRule]:
        self._call("DescribePullThroughCacheRules", "")
        return list(self.rules)

    def cached_repositories(self, rules: list[PullThroughCacheRule]) -> Iterator[CachedRepository]:
        self._call("DescribeRepositories", "")
        for name, repo in sorted(self.repositories.items()):
            rule = rule_for_repository(rules, name)
            if rule is not None:
                yield CachedRepository(
                    repo.name,
                    repo.arn,
                    repo.registry_id,
                    rule,
                    repo.tag_mutability,
                    repo.mutability_exclusions,
                )

    def cached_repository(self, name: str, rule: PullThroughCacheRule) -> CachedRepository | None:
        self._call("DescribeRepositories", name)
        repo = self.repositories.get(name)
        if repo is None:
            return None
        return CachedRepository(
            repo.name, repo.arn, repo.registry_id, rule, repo.tag_mutability, repo.mutability_exclusions
        )

    def tagged_images(self, repository: str) -> Iterator[CachedTag]:
        self._call("DescribeImages", repository)
        self._repository("DescribeImages", repository)
        for (repo, tag), digest in sorted(self.tags.items()):
            if repo == repository:
                yield CachedTag(
                    repository,
                    tag,
                    digest,
                    self.manifests[(repo, digest)].media_type,
                    pushed_at=self.pushed.get((repo, digest)),
                )

    def tag_digest(self, repository: str, tag: str) -> str | None:
        self._call("DescribeImages", f"{repository}:{tag}")
        self._repository("DescribeImages", repository)
        return self.tags.get((repository, tag))

    # -- manifests ---------------------------------------------------------------------------------

    def get_manifest(self, repository: str, *, tag: str | None = None, digest: str | None = None) -> Manifest:
        subject = f"{repository}:{tag}" if tag else f"{repository}@{digest}"
        self._call("BatchGetImage", subject, tag=tag, digest=digest)
        if tag is None:
            found = self.manifests.get((repository, digest or ""))
            if found is None:
                raise EcrError("BatchGetImage", "ImageNotFound", "no such image", subject=subject)
            return found
        current = self.tags.get((repository, tag))
        if current is not None:
            return self.manifests[(repository, current)]
        imported = self._import(repository, tag)
        if imported is None:
            raise EcrError("BatchGetImage", "ImageNotFound", "not in the cache nor upstream", subject=subject)
        return imported

    def _import(self, repository: str, tag: str) -> Manifest | None:
        """A pull by tag of an absent tag: the pull-through cache fetches it from upstream."""
        rule = rule_for_repository(self.rules, repository)
        if self.upstream is None or rule is None:
            return None
        path = upstream_for(rule, repository).repository
        self.upstream.fetches.append((path, tag))
        found = self.upstream.get(path, tag)
        if found is not None:
            self.cache(repository, tag, found)
        return found

    def put_manifest(self, repository: str, tag: str, manifest: Manifest) -> None:
        self._call("PutImage", f"{repository}:{tag}", tag=tag, digest=manifest.digest)
        self._repository("PutImage", repository)
        if len(tag) > 128 or not is_tag(tag):
            raise EcrError(
                "PutImage", "InvalidParameterException", f"invalid tag {tag[:140]!r}", subject=repository
            )
        if sha256_digest(manifest.body) != manifest.digest:
            raise EcrError(
                "PutImage", "ImageDigestDoesNotMatchException", "bytes and digest differ", subject=tag
            )
        if self.tags.get((repository, tag)) == manifest.digest:
            raise EcrError(
                "PutImage", "ImageAlreadyExistsException", "tag already on this digest", subject=tag
            )
        self._store(repository, tag, manifest)

    def delete_tags(self, repository: str, tags: Iterable[str]) -> None:
        tag_list = list(tags)
        self._call("BatchDeleteImage", f"{repository}:{','.join(tag_list)}", tags=tag_list)
        self._repository("BatchDeleteImage", repository)
        for tag in tag_list:
            digest = self.tags.pop((repository, tag), None)
            if digest is not None and digest not in {d for (r, _), d in self.tags.items() if r == repository}:
                self.manifests.pop((repository, digest), None)  # its last tag went: ECR deletes the image

    def warm_layer(self, repository: str, layer_digest: str) -> str:
        """GetDownloadUrlForLayer: the blob is cached from then on (``cold`` keeps it upstream's)."""
        self._call("GetDownloadUrlForLayer", f"{repository}@{layer_digest}")
        self.warmed.append(layer_digest)
        if layer_digest not in self.cold:
            self.available.add((repository, layer_digest))
        return f"https://fake-ecr.invalid/{repository}/{layer_digest}"

    def layers_available(self, repository: str, digests: Iterable[str]) -> dict[str, bool]:
        """BatchCheckLayerAvailability: True for a blob ECR serves itself."""
        wanted = list(dict.fromkeys(digests))
        self._call("BatchCheckLayerAvailability", repository)
        return {d: (repository, d) in self.available for d in wanted}


# -- state, notifier, queue ----------------------------------------------------------------------------


# the run state in memory is the package's own (tag history on the real policy, the pull budget,
# runs and results): the fake is the adapter the CLI uses without a table
FakeState = MemoryStateStore


@dataclass
class FakeNotifier:
    published: list[tuple[RunReport, PublishDecision | None]] = field(default_factory=list)
    kinds: list[ReportKind] = field(default_factory=list)

    def publish(self, report: RunReport, decision: PublishDecision | None = None) -> str | None:
        self.published.append((report, decision))
        self.kinds.append(decision.kind if decision else ReportKind.RUN)
        return f"message-{len(self.published)}"


@dataclass
class FakeQueue:
    sent: list[WorkItem] = field(default_factory=list)

    def send(self, items: Sequence[WorkItem]) -> int:
        self.sent.extend(items)
        return len(items)


# -- wiring ----------------------------------------------------------------------------------------------


class Fakes:
    """Every fake, and the real components built on them (each call builds a new one)."""

    def __init__(self, rules: Sequence[PullThroughCacheRule] = (HUB,), **settings: object) -> None:
        self.clock = FakeClock(START)
        self.upstream = FakeUpstream()
        self.ecr = FakeEcr(rules, self.upstream, now=self.clock.now)
        self.registry = FakeRegistry(self.upstream)
        self.state = FakeState()
        self.journal = LocalJournal(now=self.clock.now)
        self.notifier = FakeNotifier()
        self.queue = FakeQueue()
        self.settings = SyncSettings(**{"verify_timeout_seconds": 10, "verify_poll_seconds": 1, **settings})  # type: ignore[arg-type]

    def refresher(self, owner: str = "checker-1") -> Refresher:
        return Refresher(
            self.ecr,  # type: ignore[arg-type]
            self.journal,
            self.journal,
            owner=owner,
            verify_timeout=self.settings.verify_timeout_seconds,
            poll_interval=self.settings.verify_poll_seconds,
            keep_generations=self.settings.keep_generations,
            sleep=self.clock.sleep,
            monotonic=self.clock.monotonic,
            now=self.clock.now,
        )

    def repairer(self, owner: str = "checker-1") -> Repairer:
        return Repairer(
            self.ecr,  # type: ignore[arg-type]
            self.journal,
            self.journal,
            self.refresher(owner),
            owner=owner,
            now=self.clock.now,
        )

    def discovery(self) -> Discovery:
        return Discovery(self.ecr, self.journal, self.settings, now=self.clock.now)  # type: ignore[arg-type]

    def comparer(self) -> Comparer:
        return Comparer(self.registry, self.refresher(), self.settings)

    def checker(self) -> Checker:
        return Checker(
            settings=self.settings,
            now=self.clock.now,
            comparer=self.comparer(),
            ecr=self.ecr,  # type: ignore[arg-type]
            state=self.state,
            notifier=self.notifier,
            discovery=self.discovery(),
            refresher=self.refresher(),
            repairer=self.repairer(),
            journal=self.journal,
            registry=self.registry,
            queue=self.queue,
        )

    def planner(self) -> Planner:
        return Planner(
            self.queue,
            self.state,
            settings=self.settings,
            now=self.clock.now,
            discovery=self.discovery(),
            repairs=self.repairer(),
            upstream=self.registry,
        )

    def request_planner(self, window: RequestWindow | None = None) -> RequestPlanner:
        return RequestPlanner(
            settings=self.settings,
            now=self.clock.now,
            discovery=self.discovery(),
            ecr=self.ecr,  # type: ignore[arg-type]
            window=window,
        )

    # -- the world -----------------------------------------------------------------------------------

    def cached(
        self, repository: str, tag: str, *, seed: str = "old", upstream_seed: str | None = None
    ) -> Manifest:
        """``repository:tag`` cached from ``seed``; upstream has ``upstream_seed`` (default: the same)."""
        manifest = image(f"{repository}:{tag}:{seed}")
        self.ecr.cache(repository, tag, manifest)
        path = upstream_for(rule_for_repository(self.ecr.rules, repository) or HUB, repository).repository
        self.upstream.push(
            path, tag, image(f"{repository}:{tag}:{upstream_seed}") if upstream_seed else manifest
        )
        return manifest

    def upstream_image(self, repository: str, tag: str) -> Manifest | None:
        path = upstream_for(rule_for_repository(self.ecr.rules, repository) or HUB, repository).repository
        return self.upstream.get(path, tag)
