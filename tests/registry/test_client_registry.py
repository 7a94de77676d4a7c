"""The registry client against the real distribution registry: anonymous, Basic and Bearer token auth.

Every client here reaches the registry through the test-only host override, so the upstream it
believes it talks to is registry-1.docker.io (and auth.docker.io for tokens), as in production.
"""

from __future__ import annotations

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync.credentials import Credentials, StaticCredentials
from ptc_sync.models import ResolvedDigest, UpstreamRef
from ptc_sync.registry import NotFoundError, RegistryError, UnauthorizedError
from testbed.images import ImagePusher
from testbed.registry import RegistryServer
from testbed.token_server import TokenServer
from tests.conftest import REGISTRY_USER
from tests.registry.conftest import HUB, PRIVATE_PREFIX, TOKEN_USER, ClientFactory, FakeClock, hub_ref

# -- anonymous ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flavor", "media_type"), [("docker", mt.DOCKER_MANIFEST), ("oci", mt.OCI_MANIFEST)])
def test_single_image_resolves_with_one_head(
    *,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: str,
    make_client: ClientFactory,
    flavor: str,
    media_type: str,
) -> None:
    pushed = pusher.push_image(unique_repo, "1.0", flavor=flavor)  # type: ignore[arg-type]
    client = make_client({HUB: registry.url})
    resolved = client.resolve_digest(hub_ref(unique_repo), "1.0")
    assert resolved == ResolvedDigest(pushed.digest, media_type)
    assert client.counts() == {"requests": 1, "manifest_head": 1}
    assert client.manifest_get_count == 0


@pytest.mark.parametrize(
    ("flavor", "media_type"), [("docker", mt.DOCKER_MANIFEST_LIST), ("oci", mt.OCI_INDEX)]
)
def test_multi_arch_resolves_to_the_index_digest_never_a_child(
    *,
    registry: RegistryServer,
    pusher: ImagePusher,
    unique_repo: str,
    make_client: ClientFactory,
    flavor: str,
    media_type: str,
) -> None:
    index = pusher.push_index(unique_repo, "multi", flavor=flavor)  # type: ignore[arg-type]
    client = make_client({HUB: registry.url})
    resolved = client.resolve_digest(hub_ref(unique_repo), "multi")
    assert resolved.digest == index.digest
    assert resolved.digest not in {c.digest for c in index.children}
    assert resolved.media_type == media_type
    assert client.manifest_get_count == 0
    body, got_type = client.get_manifest(hub_ref(unique_repo), "multi")
    assert body == index.manifest  # exact bytes, the index itself
    assert got_type == media_type
    assert client.manifest_get_count == 1


def test_a_new_release_under_the_same_tag_changes_the_digest(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    client = make_client({HUB: registry.url})
    ref = hub_ref(unique_repo)
    old = pusher.push_image(unique_repo, "latest")
    assert client.resolve_digest(ref, "latest").digest == old.digest
    new = pusher.push_index(unique_repo, "latest")
    assert client.resolve_digest(ref, "latest").digest == new.digest
    assert new.digest != old.digest


def test_missing_tag_and_repository_are_not_found(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    pusher.push_image(unique_repo, "present")
    client = make_client({HUB: registry.url})
    with pytest.raises(NotFoundError) as info:
        client.resolve_digest(hub_ref(unique_repo), "absent")
    err = info.value
    assert (err.kind, err.status, err.host, err.repository, err.reference) == (
        "not_found",
        404,
        HUB,
        unique_repo,
        "absent",
    )
    assert f"{HUB}/{unique_repo}:absent: HEAD manifest: HTTP 404" in str(err)
    with pytest.raises(NotFoundError, match="NAME_UNKNOWN"):
        list(client.list_tags(hub_ref(unique_repo + "-nope")))


def test_get_manifest_by_digest_checks_the_bytes(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    pushed = pusher.push_image(unique_repo, "x", flavor="oci")
    client = make_client({HUB: registry.url})
    body, media_type = client.get_manifest(hub_ref(unique_repo), pushed.digest)
    assert (body, media_type) == (pushed.manifest, mt.OCI_MANIFEST)
    assert client.resolve_digest(hub_ref(unique_repo), pushed.digest).digest == pushed.digest


def test_list_tags_from_the_real_registry(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    img = pusher.push_image(unique_repo, "a")
    for tag in ("b", "c", "1.0"):
        pusher.put_manifest(unique_repo, tag, img.manifest, img.media_type)
    client = make_client({HUB: registry.url})
    assert sorted(client.list_tags(hub_ref(unique_repo))) == ["1.0", "a", "b", "c"]
    assert client.rate_limit(HUB) is None  # distribution sends no rate-limit headers


def test_resolve_many_across_repositories_matches_what_was_pushed(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    expected: dict[tuple[str, str], str] = {}
    for i in range(3):
        repo = f"{unique_repo}-{i}"
        img = pusher.push_index(repo, "base") if i == 0 else pusher.push_image(repo, "base")
        for tag in ("t1", "t2"):
            pusher.put_manifest(repo, tag, img.manifest, img.media_type)
            expected[(repo, tag)] = img.digest
    items = [(hub_ref(repo), tag) for repo, tag in expected] + [(hub_ref(f"{unique_repo}-0"), "missing")]
    client = make_client({HUB: registry.url})
    results = {(ref.repository, tag): r for ref, tag, r in client.resolve_many(items, max_workers=4)}
    assert len(results) == 7
    for key, digest in expected.items():
        res = results[key]
        assert isinstance(res, ResolvedDigest)
        assert res.digest == digest
    missing = results[(f"{unique_repo}-0", "missing")]
    assert isinstance(missing, NotFoundError)
    # one /v2/ probe, one HEAD per tag, nothing else
    assert client.counts() == {"requests": 8, "ping": 1, "manifest_head": 7}


# -- Basic auth (htpasswd) ---------------------------------------------------------------------------


class CountingCredentials(StaticCredentials):
    def __init__(self, creds: Credentials | None) -> None:
        super().__init__({HUB: creds} if creds else {})
        self.invalidated = 0

    def invalidate(self, ref: UpstreamRef) -> None:
        self.invalidated += 1


def test_basic_auth_registry(
    auth_registry: RegistryServer, auth_pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    pushed = auth_pusher.push_image(unique_repo, "v1")
    client = make_client({HUB: auth_registry.url}, CountingCredentials(Credentials(*REGISTRY_USER)))
    assert client.resolve_digest(hub_ref(unique_repo), "v1").digest == pushed.digest
    assert client.request_count == 2  # the 401 that names the scheme, then the authenticated HEAD
    assert client.resolve_digest(hub_ref(unique_repo), "v1").digest == pushed.digest
    assert client.request_count == 3  # Basic is now sent up front


def test_basic_auth_without_or_with_wrong_credentials(
    auth_registry: RegistryServer, auth_pusher: ImagePusher, unique_repo: str, make_client: ClientFactory
) -> None:
    auth_pusher.push_image(unique_repo, "v1")
    anonymous = make_client({HUB: auth_registry.url})
    with pytest.raises(UnauthorizedError, match="wants Basic credentials and none are configured") as info:
        anonymous.resolve_digest(hub_ref(unique_repo), "v1")
    assert info.value.kind == "unauthorized"
    assert info.value.status == 401

    wrong = CountingCredentials(Credentials(REGISTRY_USER[0], "not-the-password"))
    client = make_client({HUB: auth_registry.url}, wrong)
    with pytest.raises(UnauthorizedError) as info:
        client.resolve_digest(hub_ref(unique_repo), "v1")
    assert "not-the-password" not in str(info.value)
    assert wrong.invalidated == 1  # re-read once (a rotated secret), then give up
    assert client.request_count == 3


# -- Bearer token auth (distribution `auth: token` + the test token server) --------------------------


def test_anonymous_token_flow_and_token_reuse(
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    unique_repo: str,
    make_client: ClientFactory,
) -> None:
    pushed = token_pusher.push_index(unique_repo, "v1", flavor="oci")
    fresh_tokens.clear()
    client = make_client(token_override)
    ref = hub_ref(unique_repo)
    assert client.resolve_digest(ref, "v1").digest == pushed.digest
    assert [(r.scopes, r.user, r.service) for r in fresh_tokens.requests] == [
        ((f"repository:{unique_repo}:pull",), None, fresh_tokens.service)
    ]
    assert client.counts() == {"requests": 3, "manifest_head": 2, "token": 1}
    assert client.resolve_digest(ref, "v1").digest == pushed.digest
    assert len(fresh_tokens.requests) == 1  # cached token, sent up front
    assert client.counts()["requests"] == 4


def test_token_cache_honours_expires_in(
    *,
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    unique_repo: str,
    make_client: ClientFactory,
    clock: FakeClock,
) -> None:
    token_pusher.push_image(unique_repo, "v1")
    fresh_tokens.clear()
    client = make_client(token_override)
    ref = hub_ref(unique_repo)
    client.resolve_digest(ref, "v1")
    clock.advance(fresh_tokens.expires_in * 0.85)  # inside the lifetime, before the early-refresh margin
    client.resolve_digest(ref, "v1")
    assert len(fresh_tokens.requests) == 1
    clock.advance(fresh_tokens.expires_in * 0.1)  # into the margin: refreshed before use, no 401
    client.resolve_digest(ref, "v1")
    assert len(fresh_tokens.requests) == 2
    assert client.manifest_head_count == 4  # one discovery 401, then one HEAD per check


def test_private_repository_needs_the_rule_credentials(
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    make_client: ClientFactory,
) -> None:
    repo = f"{PRIVATE_PREFIX}app-{id(fresh_tokens) % 100000}"
    pushed = token_pusher.push_image(repo, "v1")
    fresh_tokens.clear()
    with pytest.raises(UnauthorizedError, match=r"HTTP 401 unauthorized \[insufficient_scope\]"):
        make_client(token_override).resolve_digest(hub_ref(repo), "v1")

    fresh_tokens.clear()
    creds = StaticCredentials({HUB: Credentials(*TOKEN_USER)})
    client = make_client(token_override, creds)
    assert client.resolve_digest(hub_ref(repo), "v1").digest == pushed.digest
    assert [(r.user, r.account) for r in fresh_tokens.requests] == [(TOKEN_USER[0], TOKEN_USER[0])]

    bad = StaticCredentials({HUB: Credentials(TOKEN_USER[0], "wrong")})
    with pytest.raises(
        UnauthorizedError, match=r"token request to http://127\.0\.0\.1:\d+/token \(with credentials\)"
    ):
        make_client(token_override, bad).resolve_digest(hub_ref(repo), "v1")


def test_expired_token_is_replaced_once(
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    unique_repo: str,
    make_client: ClientFactory,
) -> None:
    pushed = token_pusher.push_image(unique_repo, "v1")
    fresh_tokens.clear()
    fresh_tokens.expire_next(1)  # the registry will reject the first token as expired
    client = make_client(token_override)
    assert client.resolve_digest(hub_ref(unique_repo), "v1").digest == pushed.digest
    assert len(fresh_tokens.requests) == 2
    assert client.manifest_head_count == 3  # discovery 401, 401 with the expired token, success

    fresh_tokens.clear()
    fresh_tokens.expire_next(2)  # the replacement is rejected too: give up after one re-auth
    other = make_client(token_override)
    with pytest.raises(UnauthorizedError, match=r"\[invalid_token\]"):
        other.resolve_digest(hub_ref(unique_repo), "v1")
    assert len(fresh_tokens.requests) == 2


def test_resolve_many_fetches_one_token_for_several_repositories(
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    unique_repo: str,
    make_client: ClientFactory,
) -> None:
    repos = [f"{unique_repo}-{i}" for i in range(5)]
    digests = {repo: token_pusher.push_image(repo, "v1").digest for repo in repos}
    fresh_tokens.clear()
    client = make_client(token_override)
    items = [(hub_ref(repo), tag) for repo in repos for tag in ("v1", "v1")]
    results = list(client.resolve_many(items, max_workers=8))
    assert all(isinstance(r, ResolvedDigest) and r.digest == digests[ref.repository] for ref, _, r in results)
    assert [sorted(r.scopes) for r in fresh_tokens.requests] == [
        sorted(f"repository:{r}:pull" for r in repos)
    ]
    # probe + one token request + one HEAD per item: no 401 round trips
    assert client.counts() == {"requests": 12, "ping": 1, "token": 1, "manifest_head": 10}


def test_realm_that_grants_one_scope_per_token_is_detected(
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    unique_repo: str,
    make_client: ClientFactory,
) -> None:
    repos = [f"{unique_repo}-{i}" for i in range(3)]
    for repo in repos:
        token_pusher.push_image(repo, "v1")
    fresh_tokens.clear()
    fresh_tokens.single_scope = True  # grants only the first scope of a request
    client = make_client(token_override, scopes_per_token=8)
    results = list(client.resolve_many([(hub_ref(r), "v1") for r in repos], max_workers=1))
    failures: list[RegistryError] = [r for _, _, r in results if isinstance(r, RegistryError)]
    assert failures == []
    assert len(fresh_tokens.requests[0].scopes) == 3  # the batch
    assert all(len(r.scopes) == 1 for r in fresh_tokens.requests[1:])  # then one per repository
    # a second batch on this host asks one scope per request from the start
    more = [f"{unique_repo}-x{i}" for i in range(2)]
    for repo in more:
        token_pusher.push_image(repo, "v1")
    fresh_tokens.clear()
    list(client.resolve_many([(hub_ref(r), "v1") for r in more], max_workers=1))
    assert [len(r.scopes) for r in fresh_tokens.requests] == [1, 1]


def test_an_expired_batch_token_does_not_stop_batching(
    token_pusher: ImagePusher,
    token_override: dict[str, str],
    fresh_tokens: TokenServer,
    unique_repo: str,
    make_client: ClientFactory,
) -> None:
    repos = [f"{unique_repo}-{i}" for i in range(3)]
    for repo in repos:
        token_pusher.push_image(repo, "v1")
    fresh_tokens.clear()
    fresh_tokens.expire_next(1)  # the batch token is rejected as expired (invalid_token)
    client = make_client(token_override)
    results = list(client.resolve_many([(hub_ref(r), "v1") for r in repos], max_workers=1))
    assert all(isinstance(r, ResolvedDigest) for _, _, r in results)
    assert [len(r.scopes) for r in fresh_tokens.requests] == [3, 1, 1, 1]
    more = [f"{unique_repo}-y{i}" for i in range(2)]
    for repo in more:
        token_pusher.push_image(repo, "v1")
    fresh_tokens.clear()
    list(client.resolve_many([(hub_ref(r), "v1") for r in more], max_workers=1))
    assert [len(r.scopes) for r in fresh_tokens.requests] == [2]  # still one request for the batch
