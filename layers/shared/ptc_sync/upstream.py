"""From a pull-through cache rule and a cached repository name to the upstream host and repository.

Pure mapping, no I/O. Upstream hosts come only from rules (``upstreamRegistryUrl``), checked against
what ECR allows for the rule's ``upstreamRegistry`` kind; never from an event or a repository name.

Mapping (ECR user guide, pull-through-cache and pull-through-cache-private-wildcards):
- cached ``<prefix>/<path>`` → upstream ``<path>``; a ``ROOT`` rule covers every repository that no
  other rule covers, and maps ``<path>`` → ``<path>``.
- Docker Hub official images are cached as ``<prefix>/library/<name>`` (upstream ``library/<name>``).
- A rule of any kind may carry ``upstreamRepositoryPrefix`` (ECR-to-ECR rules, and Chainguard rules
  scoped to one organisation): the cache prefix is replaced by it (``my-app/image1`` →
  ``upstream-app/image1``); ``ROOT`` (the default) means no upstream prefix. A non-ROOT upstream
  prefix is valid only under a non-ROOT cache prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from ptc_sync.models import PullThroughCacheRule, UpstreamKind, UpstreamRef
from ptc_sync.names import is_upstream_repository

ROOT: Final = "ROOT"
DOCKER_HUB_HOST: Final = "registry-1.docker.io"

FIXED_HOSTS: Final[dict[UpstreamKind, str]] = {
    UpstreamKind.ECR_PUBLIC: "public.ecr.aws",
    UpstreamKind.K8S: "registry.k8s.io",
    UpstreamKind.QUAY: "quay.io",
    UpstreamKind.DOCKER_HUB: DOCKER_HUB_HOST,
    UpstreamKind.GITHUB: "ghcr.io",
    UpstreamKind.GITLAB: "registry.gitlab.com",
    UpstreamKind.CHAINGUARD: "cgr.dev",
}
# what a Docker Hub rule's upstreamRegistryUrl may say; the registry API lives on registry-1.docker.io
DOCKER_HUB_ALIASES: Final = frozenset({"registry-1.docker.io", "docker.io", "index.docker.io"})
AZURE_HOST_RE: Final = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.io$")
ECR_HOST_RE: Final = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com$")


class UpstreamMappingError(ValueError):
    """A repository is not under the rule, or the rule cannot be mapped to an upstream."""


def _prefix(rule: PullThroughCacheRule) -> str:
    return rule.prefix.strip().rstrip("/")


def rule_for_repository(
    rules: Iterable[PullThroughCacheRule], repository: str
) -> PullThroughCacheRule | None:
    """The rule covering ``repository``: the longest prefix it starts with (``prefix/``), else ROOT.
    The one rule matcher (a prefix given with a trailing ``/``, as ECR allows, matches the same)."""
    best: PullThroughCacheRule | None = None
    root: PullThroughCacheRule | None = None
    for rule in rules:
        prefix = _prefix(rule)
        if prefix == ROOT:
            root = root or rule
            continue
        if repository.startswith(prefix + "/") and (best is None or len(prefix) > len(_prefix(best))):
            best = rule
    return best or root


def upstream_host(rule: PullThroughCacheRule) -> str:
    """The rule's upstream host, validated against its kind (a scheme or trailing slash is tolerated)."""
    raw = rule.upstream_url.strip().lower()
    for scheme in ("https://", "http://"):
        if raw.startswith(scheme):
            raw = raw[len(scheme) :]
    host = raw.rstrip("/")
    kind = rule.upstream_registry
    if kind is UpstreamKind.DOCKER_HUB:
        valid = host in DOCKER_HUB_ALIASES
        host = DOCKER_HUB_HOST
    elif kind is UpstreamKind.AZURE:
        valid = AZURE_HOST_RE.fullmatch(host) is not None
    elif kind is UpstreamKind.ECR:
        valid = ECR_HOST_RE.fullmatch(host) is not None
    else:
        valid = host == FIXED_HOSTS.get(kind)
    if not valid:
        raise UpstreamMappingError(
            f"rule {rule.prefix!r}: upstreamRegistryUrl {rule.upstream_url[:120]!r} "
            f"is not a {kind.value} registry"
        )
    return host


def parse_ecr_host(host: str) -> tuple[str, str]:
    """``123456789012.dkr.ecr.eu-west-1.amazonaws.com`` → ``("123456789012", "eu-west-1")``."""
    match = ECR_HOST_RE.fullmatch(host)
    if match is None:
        raise UpstreamMappingError(f"{host[:120]!r} is not a private ECR registry host")
    return match.group(1), match.group(2)


def _upstream_prefix(rule: PullThroughCacheRule) -> str | None:
    """The rule's ``upstreamRepositoryPrefix`` without a trailing ``/``; None when it is absent or ROOT."""
    raw = (rule.upstream_repository_prefix or "").strip().rstrip("/")
    return None if raw in ("", ROOT) else raw


def upstream_for(rule: PullThroughCacheRule, repository: str) -> UpstreamRef:
    """Where the cached ``repository`` (created by ``rule``) comes from."""
    prefix = _prefix(rule)
    upstream_prefix = _upstream_prefix(rule)
    if prefix == ROOT:
        if upstream_prefix is not None:
            raise UpstreamMappingError(
                f"rule {prefix!r}: upstreamRepositoryPrefix {upstream_prefix[:120]!r} needs a "
                "non-ROOT ecrRepositoryPrefix"
            )
        path = repository
    elif repository.startswith(prefix + "/") and len(repository) > len(prefix) + 1:
        path = repository[len(prefix) + 1 :]
    else:
        raise UpstreamMappingError(f"repository {repository!r} is not under rule prefix {prefix + '/'!r}")
    host = upstream_host(rule)
    kind = rule.upstream_registry
    if upstream_prefix is not None:
        path = f"{upstream_prefix}/{path}"
    if kind is UpstreamKind.DOCKER_HUB and "/" not in path:
        raise UpstreamMappingError(
            f"repository {repository!r}: Docker Hub official images are cached as "
            f"{prefix + '/' if prefix != ROOT else ''}library/{path}"
        )
    if not is_upstream_repository(path):
        raise UpstreamMappingError(
            f"repository {repository!r}: {path!r} is not a valid upstream repository name"
        )
    return UpstreamRef(
        host=host,
        repository=path,
        kind=kind,
        rule_prefix=prefix,
        credential_arn=rule.credential_arn,
        custom_role_arn=rule.custom_role_arn,
    )
