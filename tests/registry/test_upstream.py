"""Rule + cached repository → upstream host and repository, for all nine upstream kinds."""

from __future__ import annotations

import pytest

from ptc_sync.models import PullThroughCacheRule, UpstreamKind
from ptc_sync.upstream import (
    UpstreamMappingError,
    parse_ecr_host,
    rule_for_repository,
    upstream_for,
    upstream_host,
)

ECR_UPSTREAM = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
SECRET = "arn:aws:secretsmanager:us-east-1:111122223333:secret:ecr-pullthroughcache/hub-AbCdEf"


def rule(prefix: str, kind: UpstreamKind, url: str, **kw: str | None) -> PullThroughCacheRule:
    return PullThroughCacheRule(prefix=prefix, upstream_registry=kind, upstream_url=url, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "url", "cached", "host", "upstream"),
    [
        (
            UpstreamKind.ECR_PUBLIC,
            "public.ecr.aws",
            "ecr-public/nginx/nginx",
            "public.ecr.aws",
            "nginx/nginx",
        ),
        (UpstreamKind.K8S, "registry.k8s.io", "k8s/pause", "registry.k8s.io", "pause"),
        (
            UpstreamKind.QUAY,
            "quay.io",
            "quay/prometheus/node-exporter",
            "quay.io",
            "prometheus/node-exporter",
        ),
        (
            UpstreamKind.DOCKER_HUB,
            "registry-1.docker.io",
            "hub/library/alpine",
            "registry-1.docker.io",
            "library/alpine",
        ),
        (
            UpstreamKind.DOCKER_HUB,
            "registry-1.docker.io",
            "hub/grafana/grafana",
            "registry-1.docker.io",
            "grafana/grafana",
        ),
        (UpstreamKind.GITHUB, "ghcr.io", "gh/org/tool", "ghcr.io", "org/tool"),
        (UpstreamKind.AZURE, "myregistry.azurecr.io", "acr/team/app", "myregistry.azurecr.io", "team/app"),
        (
            UpstreamKind.GITLAB,
            "registry.gitlab.com",
            "gl/group/project/img",
            "registry.gitlab.com",
            "group/project/img",
        ),
        (UpstreamKind.CHAINGUARD, "cgr.dev", "cg/chainguard/static", "cgr.dev", "chainguard/static"),
        (UpstreamKind.ECR, ECR_UPSTREAM, "ecr/team/app", ECR_UPSTREAM, "team/app"),
    ],
)
def test_each_kind_maps_prefix_path_to_upstream(
    kind: UpstreamKind, url: str, cached: str, host: str, upstream: str
) -> None:
    prefix = cached.split("/", 1)[0]
    ref = upstream_for(rule(prefix, kind, url, credential_arn=SECRET), cached)
    assert (ref.host, ref.repository, ref.kind, ref.rule_prefix) == (host, upstream, kind, prefix)
    assert ref.credential_arn == SECRET
    assert str(ref) == f"{host}/{upstream}"


def test_docker_hub_official_image_without_library_is_refused_with_the_right_name() -> None:
    with pytest.raises(UpstreamMappingError, match=r"cached as hub/library/alpine"):
        upstream_for(rule("hub", UpstreamKind.DOCKER_HUB, "registry-1.docker.io"), "hub/alpine")


def test_docker_hub_url_aliases_map_to_the_registry_api_host() -> None:
    for url in ("docker.io", "https://registry-1.docker.io/", "index.docker.io"):
        assert upstream_host(rule("hub", UpstreamKind.DOCKER_HUB, url)) == "registry-1.docker.io"


@pytest.mark.parametrize(
    ("kind", "url", "prefixes", "cached", "upstream"),
    [
        # the table in the ECR user guide (pull-through-cache-private-wildcards)
        (UpstreamKind.ECR, ECR_UPSTREAM, ("ecr-public", None), "ecr-public/my-app/image1", "my-app/image1"),
        (UpstreamKind.ECR, ECR_UPSTREAM, ("ecr-public", "ROOT"), "ecr-public/my-app/image2", "my-app/image2"),
        (UpstreamKind.ECR, ECR_UPSTREAM, ("ROOT", "ROOT"), "my-app/image1", "my-app/image1"),
        (UpstreamKind.ECR, ECR_UPSTREAM, ("team-a", "team-a"), "team-a/myapp/image1", "team-a/myapp/image1"),
        (UpstreamKind.ECR, ECR_UPSTREAM, ("my-app", "upstream-app"), "my-app/image1", "upstream-app/image1"),
        # Chainguard rules scope a cache prefix to one organisation (Chainguard's ECR guide)
        (UpstreamKind.CHAINGUARD, "cgr.dev", ("cgr", "my-org.com"), "cgr/python", "my-org.com/python"),
        (UpstreamKind.CHAINGUARD, "cgr.dev", ("cgr", "my-org.com/"), "cgr/go/tools", "my-org.com/go/tools"),
        (UpstreamKind.CHAINGUARD, "cgr.dev", ("cgr", None), "cgr/chainguard/static", "chainguard/static"),
        # any other kind that carries one is mapped the same way
        (UpstreamKind.QUAY, "quay.io", ("q", "prometheus"), "q/node-exporter", "prometheus/node-exporter"),
        (UpstreamKind.DOCKER_HUB, "registry-1.docker.io", ("hub", "library"), "hub/alpine", "library/alpine"),
        (UpstreamKind.GITHUB, "ghcr.io", ("gh/team", "org"), "gh/team/tool", "org/tool"),
    ],
)
def test_upstream_repository_prefix_replaces_the_cache_prefix_for_every_kind(
    kind: UpstreamKind, url: str, prefixes: tuple[str, str | None], cached: str, upstream: str
) -> None:
    ecr_prefix, upstream_prefix = prefixes  # ecrRepositoryPrefix, upstreamRepositoryPrefix
    r = rule(ecr_prefix, kind, url, upstream_repository_prefix=upstream_prefix)
    ref = upstream_for(r, cached)
    assert (ref.host, ref.repository, ref.rule_prefix) == (upstream_host(r), upstream, ecr_prefix)


@pytest.mark.parametrize(
    ("kind", "url"),
    [(UpstreamKind.ECR, ECR_UPSTREAM), (UpstreamKind.CHAINGUARD, "cgr.dev"), (UpstreamKind.QUAY, "quay.io")],
)
def test_upstream_repository_prefix_needs_a_non_root_cache_prefix(kind: UpstreamKind, url: str) -> None:
    # pull-through-cache-private-wildcards: "only when the Amazon ECR repository prefix has a non-ROOT value"
    r = rule("ROOT", kind, url, upstream_repository_prefix="team")
    with pytest.raises(UpstreamMappingError, match="needs a non-ROOT ecrRepositoryPrefix"):
        upstream_for(r, "team/app")


def test_repository_not_under_rule_is_a_clear_error() -> None:
    r = rule("hub", UpstreamKind.DOCKER_HUB, "registry-1.docker.io")
    with pytest.raises(UpstreamMappingError, match=r"'quay/x' is not under rule prefix 'hub/'"):
        upstream_for(r, "quay/x")
    with pytest.raises(UpstreamMappingError, match="not under"):
        upstream_for(r, "hubx/library/alpine")  # a longer name sharing the prefix text is not under it
    with pytest.raises(UpstreamMappingError, match="not under"):
        upstream_for(r, "hub/")


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        (UpstreamKind.QUAY, "evil.example.com"),
        (UpstreamKind.DOCKER_HUB, "registry-1.docker.io.evil.com"),
        (UpstreamKind.AZURE, "evil.com/x.azurecr.io"),
        (UpstreamKind.ECR, "123.dkr.ecr.us-east-1.amazonaws.com"),
        (UpstreamKind.ECR, "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com"),
        (UpstreamKind.GITHUB, "ghcr.io@evil.com"),
    ],
)
def test_upstream_host_must_match_the_rule_kind(kind: UpstreamKind, url: str) -> None:
    with pytest.raises(UpstreamMappingError, match=f"is not a {kind.value} registry"):
        upstream_host(rule("p", kind, url))


def test_invalid_upstream_repository_names_are_refused() -> None:
    r = rule("ROOT", UpstreamKind.QUAY, "quay.io")
    for bad in ("a/../b", "A/B", "a//b", "a/b?x=1", "a/b#frag"):
        with pytest.raises(UpstreamMappingError, match="not a valid upstream repository name"):
            upstream_for(r, bad)


def test_rule_for_repository_longest_prefix_then_root() -> None:
    rules = [
        rule("ROOT", UpstreamKind.ECR, ECR_UPSTREAM),
        rule("hub", UpstreamKind.DOCKER_HUB, "registry-1.docker.io"),
        rule("hub/team", UpstreamKind.QUAY, "quay.io"),
    ]
    assert rule_for_repository(rules, "hub/team/app") is rules[2]
    assert rule_for_repository(rules, "hub/library/alpine") is rules[1]
    assert rule_for_repository(rules, "hubby/app") is rules[0]
    assert rule_for_repository(rules[1:], "other/app") is None


def test_parse_ecr_host() -> None:
    assert parse_ecr_host(ECR_UPSTREAM) == ("123456789012", "eu-west-1")
    with pytest.raises(UpstreamMappingError):
        parse_ecr_host("public.ecr.aws")
