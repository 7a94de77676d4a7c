"""The registry client against a fault-injecting HTTP server on loopback: statuses, retries, timeouts,
resets, bad digests, redirects, token expiry, rate-limit headers, pagination and URL policy."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from email.utils import format_datetime

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync.credentials import Credentials, StaticCredentials
from ptc_sync.models import RateLimitStatus, ResolvedDigest
from ptc_sync.registry import (
    BadResponseError,
    ForbiddenError,
    InvalidReferenceError,
    NotFoundError,
    RateLimitedError,
    RegistryClient,
    RegistryError,
    RetryPolicy,
    UnauthorizedError,
    UpstreamUnavailableError,
)
from ptc_sync.registry.transport import HostRouter, InsecureURLError
from testbed.fault_server import FaultServer, Recorded, Reply, json_reply
from testbed.registry import free_port
from tests.registry.conftest import HUB, HUB_AUTH, ClientFactory, FakeClock, hub_ref

REPO = "lib/app"
MANIFEST_PATH = f"/v2/{REPO}/manifests/1.0"
BODY = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": {"mediaType": mt.DOCKER_CONFIG, "digest": "sha256:" + "c" * 64, "size": 1},
        "layers": [],
    },
    indent=3,
).encode()
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
OK_HEAD = Reply(200, {"Docker-Content-Digest": DIGEST, "Content-Type": mt.DOCKER_MANIFEST})
BEARER = f'Bearer realm="https://{HUB_AUTH}/token",service="registry.docker.io"'


def ok_get(**headers: str) -> Reply:
    return Reply(200, {"Content-Type": mt.DOCKER_MANIFEST, **headers}, BODY)


@pytest.fixture
def client(fault: FaultServer, make_client: ClientFactory) -> RegistryClient:
    return make_client({HUB: fault.url, HUB_AUTH: fault.url})


def resolve(client: RegistryClient, tag: str = "1.0") -> ResolvedDigest:
    return client.resolve_digest(hub_ref(REPO), tag)


# -- statuses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "kind", "words"),
    [
        (404, NotFoundError, "not_found", "HTTP 404 not found"),
        (403, ForbiddenError, "forbidden", "HTTP 403 forbidden"),
        (401, UnauthorizedError, "unauthorized", "HTTP 401 unauthorized"),
        (400, BadResponseError, "bad_response", "HTTP 400 unexpected status"),
        (410, BadResponseError, "bad_response", "HTTP 410 unexpected status"),
    ],
)
def test_final_statuses_raise_typed_errors_without_retry(
    *,
    fault: FaultServer,
    client: RegistryClient,
    clock: FakeClock,
    status: int,
    error: type[RegistryError],
    kind: str,
    words: str,
) -> None:
    fault.script(MANIFEST_PATH, Reply(status))
    with pytest.raises(error) as info:
        resolve(client)
    err = info.value
    assert err.kind == kind
    assert err.status == status
    assert str(err).startswith(f"{HUB}/{REPO}:1.0: HEAD manifest: {words}")
    assert len(fault.requests) == 1
    assert clock.sleeps == []


def test_error_body_code_is_quoted_in_the_message(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}), method="HEAD")  # no digest
    fault.script(
        MANIFEST_PATH,
        json_reply(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}),
        method="GET",
    )
    with pytest.raises(
        NotFoundError, match=r"GET manifest: HTTP 404 not found \(MANIFEST_UNKNOWN: manifest unknown\)"
    ):
        resolve(client)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_backoff(
    fault: FaultServer, client: RegistryClient, clock: FakeClock, status: int
) -> None:
    fault.script(MANIFEST_PATH, Reply(status), OK_HEAD)
    assert resolve(client).digest == DIGEST
    assert len(fault.requests) == 2
    assert len(clock.sleeps) == 1
    assert 0.25 <= clock.sleeps[0] <= 0.5  # first step 0.5 s with equal jitter
    assert client.counts()["retries"] == 1


def test_persistent_5xx_gives_up_after_the_attempt_bound(
    fault: FaultServer, client: RegistryClient, clock: FakeClock
) -> None:
    fault.script(MANIFEST_PATH, Reply(503))
    with pytest.raises(
        UpstreamUnavailableError, match=r"HTTP 503 upstream unavailable after 4 attempts"
    ) as info:
        resolve(client)
    assert info.value.kind == "upstream_unavailable"
    assert len(fault.requests) == 4
    steps = [0.5, 1.0, 2.0]
    assert len(clock.sleeps) == 3
    for slept, step in zip(clock.sleeps, steps, strict=True):
        assert step / 2 <= slept <= step  # exponential, jittered


def test_total_time_budget_bounds_retries(
    fault: FaultServer, make_client: ClientFactory, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_attempts=50, base_delay=1.0, max_delay=1.0, total_budget=3.0)
    client = make_client({HUB: fault.url}, retry=policy)
    fault.script(MANIFEST_PATH, Reply(502))
    with pytest.raises(UpstreamUnavailableError):
        resolve(client)
    assert sum(clock.sleeps) < 3.0
    assert 3 <= len(fault.requests) <= 7


def test_retry_after_seconds_is_honoured(
    fault: FaultServer, client: RegistryClient, clock: FakeClock
) -> None:
    fault.script(MANIFEST_PATH, Reply(429, {"Retry-After": "7"}), OK_HEAD)
    assert resolve(client).digest == DIGEST
    assert clock.sleeps == [7.0]


def test_retry_after_http_date_is_honoured(
    fault: FaultServer, client: RegistryClient, clock: FakeClock
) -> None:
    when = format_datetime(clock.now().replace(microsecond=0) + dt.timedelta(seconds=12), usegmt=True)
    fault.script(MANIFEST_PATH, Reply(503, {"Retry-After": when}), OK_HEAD)
    assert resolve(client).digest == DIGEST
    assert clock.sleeps == [12.0]


def test_rate_limited_beyond_the_wait_bound_reports_the_reset_time(
    fault: FaultServer, client: RegistryClient, clock: FakeClock
) -> None:
    fault.script(
        MANIFEST_PATH,
        Reply(
            429,
            {"Retry-After": "3600", "ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"},
            json.dumps(
                {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit"}]}
            ).encode(),
        ),
    )
    with pytest.raises(RateLimitedError) as info:
        client.get_manifest(hub_ref(REPO), "1.0")
    err = info.value
    assert err.kind == "rate_limited"
    assert err.reset_at == clock.now() + dt.timedelta(seconds=3600)
    assert "resets at 2026-01-02T04:04:05+00:00" in str(err)
    assert "TOOMANYREQUESTS" in str(err)
    assert err.rate_limit == RateLimitStatus(HUB, limit=100, remaining=0, window_seconds=21600)
    assert clock.sleeps == []  # not worth waiting an hour
    assert len(fault.requests) == 1


def test_persistent_429_without_retry_after_has_no_reset_time(
    fault: FaultServer, client: RegistryClient, clock: FakeClock
) -> None:
    fault.script(MANIFEST_PATH, Reply(429))
    with pytest.raises(RateLimitedError, match="after 4 attempts") as info:
        resolve(client)
    assert info.value.reset_at is None
    assert len(clock.sleeps) == 3


# -- transport failures ------------------------------------------------------------------------------


def test_slow_response_times_out_and_is_retried(fault: FaultServer, make_client: ClientFactory) -> None:
    client = make_client({HUB: fault.url}, read_timeout=0.2)
    fault.script(MANIFEST_PATH, Reply(200, OK_HEAD.headers, delay=1.0), OK_HEAD)
    assert resolve(client).digest == DIGEST
    assert len(fault.requests) == 2

    fault.script(MANIFEST_PATH, Reply(200, OK_HEAD.headers, delay=1.0))
    with pytest.raises(UpstreamUnavailableError, match=r"read timed out after 4 attempt\(s\)") as info:
        resolve(client)
    assert info.value.status is None


def test_slow_body_times_out(fault: FaultServer, make_client: ClientFactory) -> None:
    client = make_client({HUB: fault.url}, read_timeout=0.2, retry=RetryPolicy(max_attempts=1))
    fault.script(MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}), method="HEAD")
    fault.script(
        MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}, BODY, body_delay=1.0), method="GET"
    )
    with pytest.raises(UpstreamUnavailableError, match="timed out"):
        resolve(client)


def test_a_dripped_body_cannot_stretch_the_request_past_its_deadline(
    fault: FaultServer, make_client: ClientFactory
) -> None:
    """Each byte arrives within the read timeout, so only a deadline over the whole exchange ends it:
    without one this body (a byte every 0.1 s) would hold the request for well over a minute."""
    client = make_client(
        {HUB: fault.url}, connect_timeout=0.5, read_timeout=0.5, retry=RetryPolicy(max_attempts=1)
    )
    body = BODY * (1 + 800 // len(BODY))
    fault.script(MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}), method="HEAD")
    fault.script(
        MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}, body, drip=0.1), method="GET"
    )
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError, match="deadline"):
        resolve(client)
    took = time.monotonic() - started
    assert took < 0.1 * len(body) / 4, f"{took:.1f}s: the drip was read to its end ({len(body)} bytes)"


def test_connection_reset_is_retried(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(reset=True), OK_HEAD)
    assert resolve(client).digest == DIGEST
    fault.script(MANIFEST_PATH, Reply(reset=True))
    with pytest.raises(UpstreamUnavailableError, match=r"connection (reset by peer|broken|failed)") as info:
        resolve(client)
    assert "after 4 attempt(s)" in str(info.value)


def test_connection_refused_is_upstream_unavailable(make_client: ClientFactory) -> None:
    client = make_client({HUB: f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(
        UpstreamUnavailableError,
        match=r"^registry-1\.docker\.io/lib/app:1\.0: HEAD manifest: connection failed \(\w+\) after 4",
    ):
        resolve(client)


def test_connections_are_reused(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, OK_HEAD)
    for _ in range(5):
        resolve(client)
    assert len(fault.requests) == 5
    pool = next(iter(client._transport._pools.values()))
    assert pool.num_connections == 1


# -- digests -----------------------------------------------------------------------------------------


def test_missing_digest_header_falls_back_to_get_and_hashes_exact_bytes(
    fault: FaultServer, client: RegistryClient
) -> None:
    fault.script(MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}), method="HEAD")
    fault.script(MANIFEST_PATH, ok_get(), method="GET")
    assert resolve(client) == ResolvedDigest(DIGEST, mt.DOCKER_MANIFEST)
    assert client.manifest_get_count == 1
    get = fault.requests_for(MANIFEST_PATH, "GET")[0]
    assert get.header("Accept") == mt.ACCEPT_ALL


def test_head_405_falls_back_to_get_and_stops_trying_head(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(405), method="HEAD")
    fault.script(MANIFEST_PATH, ok_get(**{"Docker-Content-Digest": DIGEST}), method="GET")
    assert resolve(client).digest == DIGEST
    assert resolve(client).digest == DIGEST
    assert [r.method for r in fault.requests] == ["HEAD", "GET", "GET"]


@pytest.mark.parametrize(
    "bad", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha256:" + "a" * 64 + "\u00e9", "garbage"]
)
def test_malformed_digest_header_is_a_bad_response(
    fault: FaultServer, client: RegistryClient, bad: str
) -> None:
    fault.script(
        MANIFEST_PATH, Reply(200, {"Docker-Content-Digest": bad, "Content-Type": mt.DOCKER_MANIFEST})
    )
    with pytest.raises(BadResponseError, match="malformed Docker-Content-Digest") as info:
        resolve(client)
    assert info.value.kind == "bad_response"


def test_body_that_does_not_match_its_digest_header(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}), method="HEAD")
    fault.script(MANIFEST_PATH, ok_get(**{"Docker-Content-Digest": "sha256:" + "0" * 64}), method="GET")
    with pytest.raises(
        BadResponseError, match=f"body hashes to {DIGEST}, but Docker-Content-Digest says sha256:0+"
    ):
        resolve(client)


def test_body_that_does_not_match_the_digest_asked_for(fault: FaultServer, client: RegistryClient) -> None:
    other = "sha256:" + "1" * 64
    fault.script(f"/v2/{REPO}/manifests/{other}", ok_get())
    with pytest.raises(BadResponseError, match="not the digest asked for"):
        client.get_manifest(hub_ref(REPO), other)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/html", b"<html>captive portal</html>"), ("application/json", b"[1, 2]"), ("", b"not json")],
)
def test_get_body_that_is_not_a_manifest(
    fault: FaultServer, client: RegistryClient, content_type: str, body: bytes
) -> None:
    fault.script(MANIFEST_PATH, Reply(200, {"Content-Type": content_type}, body))
    with pytest.raises(BadResponseError, match="GET manifest"):
        client.get_manifest(hub_ref(REPO), "1.0")


def test_head_with_a_non_manifest_content_type(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(200, {"Docker-Content-Digest": DIGEST, "Content-Type": "text/html"}))
    with pytest.raises(BadResponseError, match="not a manifest"):
        resolve(client)


def test_oversized_manifest_is_refused(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(
        MANIFEST_PATH, Reply(200, {"Content-Type": mt.DOCKER_MANIFEST}, b" " * (4 * 1024 * 1024 + 10))
    )
    with pytest.raises(BadResponseError, match="larger than 4194304 bytes"):
        client.get_manifest(hub_ref(REPO), "1.0")


def test_invalid_references_are_refused_before_any_request(
    fault: FaultServer, client: RegistryClient
) -> None:
    for tag in ("", "../x", "a b", "-lead", "x" * 129, "sha256:short"):
        with pytest.raises(InvalidReferenceError):
            resolve(client, tag)
    with pytest.raises(InvalidReferenceError):
        client.resolve_digest(hub_ref("Bad/Name"), "1")
    assert fault.requests == []


# -- auth: tokens, redirects -------------------------------------------------------------------------


def token_endpoint(tokens: list[str]) -> Reply:
    return json_reply(200, {"token": tokens.pop(0), "expires_in": 300, "issued_at": "2026-01-02T03:04:05Z"})


def bearer_manifest(valid: set[str], challenge_error: str = "invalid_token"):  # type: ignore[no-untyped-def]
    def reply(rec: Recorded) -> Reply:
        auth = rec.header("Authorization") or ""
        if auth.removeprefix("Bearer ") in valid:
            return OK_HEAD
        extra = f',error="{challenge_error}"' if auth else ""
        return Reply(401, {"WWW-Authenticate": f'{BEARER},scope="repository:{REPO}:pull"{extra}'})

    return reply


def test_expired_cached_token_is_replaced_once(fault: FaultServer, client: RegistryClient) -> None:
    tokens = ["tok-1", "tok-2", "tok-3"]
    valid = {"tok-1"}
    fault.script("/token", lambda rec: token_endpoint(tokens))
    fault.script(MANIFEST_PATH, bearer_manifest(valid))
    assert resolve(client).digest == DIGEST
    token_requests = fault.requests_for("/token")
    assert len(token_requests) == 1
    assert "scope=repository%3Alib%2Fapp%3Apull" in token_requests[0].path
    assert "service=registry.docker.io" in token_requests[0].path

    valid.clear()
    valid.add("tok-2")  # tok-1 expired upstream before our cache thought so
    assert resolve(client).digest == DIGEST
    assert len(fault.requests_for("/token")) == 2
    heads = [r.header("Authorization") for r in fault.requests_for(MANIFEST_PATH)]
    assert heads == [None, "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]

    valid.clear()  # nothing works any more: one re-auth, then a precise error
    with pytest.raises(UnauthorizedError, match=r"HTTP 401 unauthorized \[invalid_token\]"):
        resolve(client)
    assert len(fault.requests_for("/token")) == 3


def test_token_endpoint_failures_are_typed(
    fault: FaultServer, client: RegistryClient, clock: FakeClock
) -> None:
    fault.script(MANIFEST_PATH, Reply(401, {"WWW-Authenticate": BEARER}))
    fault.script("/token", Reply(503), Reply(200, {}, b"not json"))
    with pytest.raises(BadResponseError, match=r"token request to https://auth\.docker\.io/token .*not JSON"):
        resolve(client)
    assert len(clock.sleeps) == 1  # the 503 was retried

    fault.script("/token", json_reply(200, {"expires_in": 300}))
    with pytest.raises(BadResponseError, match="no usable token"):
        resolve(client)


def test_credentials_go_to_the_token_realm_never_to_the_registry(
    fault: FaultServer, make_client: ClientFactory
) -> None:
    client = make_client(
        {HUB: fault.url, HUB_AUTH: fault.url}, StaticCredentials({HUB: Credentials("bob", "pat")})
    )
    fault.script("/token", lambda rec: token_endpoint(["tok-b"]))
    fault.script(MANIFEST_PATH, bearer_manifest({"tok-b"}))
    assert resolve(client).digest == DIGEST
    token_req = fault.requests_for("/token")[0]
    assert token_req.header("Authorization") == Credentials("bob", "pat").basic_header()
    assert "account=bob" in token_req.path
    assert all(
        not (r.header("Authorization") or "").startswith("Basic") for r in fault.requests_for(MANIFEST_PATH)
    )


def test_cross_host_redirect_never_carries_authorization(
    fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory
) -> None:
    backend = "us-west1-docker.pkg.dev"
    client = make_client({"registry.k8s.io": fault.url, backend: other_fault.url})
    k8s = hub_ref(REPO).__class__("registry.k8s.io", REPO, hub_ref(REPO).kind, "k8s")
    fault.script("/token", lambda rec: token_endpoint(["tok-k8s", "tok-k8s"]))

    def registry(rec: Recorded) -> Reply:
        if rec.header("Authorization") != "Bearer tok-k8s":
            return Reply(
                401, {"WWW-Authenticate": 'Bearer realm="https://registry.k8s.io/token",service="k8s"'}
            )
        return Reply(307, {"Location": f"https://{backend}/v2/k8s-artifacts-prod/{REPO}/manifests/1.0"})

    fault.script(MANIFEST_PATH, registry)
    other_fault.script(f"/v2/k8s-artifacts-prod/{REPO}/manifests/1.0", OK_HEAD)
    assert client.resolve_digest(k8s, "1.0").digest == DIGEST
    assert fault.requests_for(MANIFEST_PATH)[-1].header("Authorization") == "Bearer tok-k8s"
    backend_requests = other_fault.requests
    assert len(backend_requests) == 1
    assert backend_requests[0].header("Authorization") is None
    assert backend_requests[0].method == "HEAD"
    assert backend_requests[0].header("Accept") == mt.ACCEPT_ALL
    assert client.counts()["redirects"] == 1


def test_redirect_target_that_challenges_gets_its_own_anonymous_token(
    fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory
) -> None:
    backend = "mirror.example.com"
    creds = StaticCredentials({HUB: Credentials("bob", "hub-secret")})
    client = make_client({HUB: fault.url, HUB_AUTH: fault.url, backend: other_fault.url}, creds)
    fault.script("/token", lambda rec: token_endpoint(["tok-hub"]))

    def registry(rec: Recorded) -> Reply:
        if rec.header("Authorization") != "Bearer tok-hub":
            return Reply(401, {"WWW-Authenticate": BEARER})
        return Reply(302, {"Location": f"https://{backend}/v2/m/manifests/1.0"})

    def mirror(rec: Recorded) -> Reply:
        if rec.path.startswith("/token"):
            return json_reply(200, {"token": "tok-mirror"})
        if rec.header("Authorization") == "Bearer tok-mirror":
            return OK_HEAD
        return Reply(
            401, {"WWW-Authenticate": f'Bearer realm="https://{backend}/token",scope="repository:m:pull"'}
        )

    fault.script(MANIFEST_PATH, registry)
    other_fault.script("/token", mirror)
    other_fault.script("/v2/m/manifests/1.0", mirror)
    assert resolve(client).digest == DIGEST
    seen = {(r.path.split("?")[0], r.header("Authorization")) for r in other_fault.requests}
    assert seen == {
        ("/v2/m/manifests/1.0", None),
        ("/token", None),
        ("/v2/m/manifests/1.0", "Bearer tok-mirror"),
    }


def test_same_host_redirect_keeps_authorization(fault: FaultServer, client: RegistryClient) -> None:
    fault.script("/token", lambda rec: token_endpoint(["tok-1"]))

    def first(rec: Recorded) -> Reply:
        if rec.header("Authorization") != "Bearer tok-1":
            return Reply(401, {"WWW-Authenticate": BEARER})
        return Reply(307, {"Location": f"/v2/{REPO}/manifests/moved"})

    fault.script(MANIFEST_PATH, first)
    fault.script(f"/v2/{REPO}/manifests/moved", OK_HEAD)
    assert resolve(client).digest == DIGEST
    assert fault.requests_for(f"/v2/{REPO}/manifests/moved")[0].header("Authorization") == "Bearer tok-1"


def test_redirect_to_plain_http_or_in_a_loop_is_refused(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(302, {"Location": "http://evil.example.com/v2/x/manifests/1.0"}))
    with pytest.raises(BadResponseError, match=r"refusing non-HTTPS URL http://evil\.example\.com"):
        resolve(client)
    fault.script(MANIFEST_PATH, Reply(302, {"Location": MANIFEST_PATH}))
    with pytest.raises(BadResponseError, match="more than 5 redirects"):
        resolve(client)


def test_token_realm_must_be_https(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(
        MANIFEST_PATH, Reply(401, {"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token"'})
    )
    with pytest.raises(BadResponseError, match=r"refusing non-HTTPS URL http://auth\.example\.com/token"):
        resolve(client)
    assert len(fault.requests) == 1


def test_unparseable_challenge_is_a_bad_response(fault: FaultServer, client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, Reply(401, {"WWW-Authenticate": 'Bearer realm="https://x/token'}))
    with pytest.raises(BadResponseError, match="unparseable WWW-Authenticate"):
        resolve(client)


# -- rate limits, tags -------------------------------------------------------------------------------


def test_rate_limit_headers_are_exposed_per_host(fault: FaultServer, client: RegistryClient) -> None:
    headers = {
        **OK_HEAD.headers,
        "ratelimit-limit": "100;w=21600",
        "ratelimit-remaining": "76;w=21600",
        "docker-ratelimit-source": "203.0.113.7",
    }
    fault.script(MANIFEST_PATH, Reply(200, headers))
    assert client.rate_limit(HUB) is None
    resolve(client)
    expected = RateLimitStatus(HUB, limit=100, remaining=76, window_seconds=21600, source="203.0.113.7")
    assert client.rate_limit(HUB) == expected
    assert client.rate_limits() == (expected,)
    assert client.rate_limit("quay.io") is None


def test_tags_follow_link_pagination(fault: FaultServer, client: RegistryClient) -> None:
    base = f"/v2/{REPO}/tags/list"
    fault.script(
        f"{base}?n=2",
        json_reply(200, {"name": REPO, "tags": ["a", "b"]}, {"Link": f'<{base}?n=2&last=b>; rel="next"'}),
    )
    fault.script(
        f"{base}?n=2&last=b",
        json_reply(
            200, {"name": REPO, "tags": ["c", "d"]}, {"Link": f'<{fault.url}{base}?n=2&last=d>; rel="next"'}
        ),
    )
    fault.script(f"{base}?n=2&last=d", json_reply(200, {"name": REPO, "tags": ["e"]}))
    assert list(client.list_tags(hub_ref(REPO), page_size=2)) == ["a", "b", "c", "d", "e"]
    assert client.counts()["tags"] == 3


def test_tag_pagination_loops_and_foreign_links_are_refused(
    fault: FaultServer, client: RegistryClient
) -> None:
    base = f"/v2/{REPO}/tags/list"
    fault.script(f"{base}?n=5", json_reply(200, {"tags": ["a"]}, {"Link": f'<{base}?n=5>; rel="next"'}))
    with pytest.raises(BadResponseError, match="pagination loops"):
        list(client.list_tags(hub_ref(REPO), page_size=5))
    fault.script(
        f"{base}?n=5",
        json_reply(200, {"tags": ["a"]}, {"Link": '<https://elsewhere.example/v2/x/tags/list>; rel="next"'}),
    )
    with pytest.raises(BadResponseError, match="another host"):
        list(client.list_tags(hub_ref(REPO), page_size=5))
    fault.script(f"{base}?n=5", json_reply(200, {"tags": "not-a-list"}))
    with pytest.raises(BadResponseError, match="not a tag list"):
        list(client.list_tags(hub_ref(REPO), page_size=5))


# -- URL policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.5:5000",
        "http://registry.example.com",
        "http://169.254.169.254",
        "ftp://127.0.0.1",
        "127.0.0.1:5000",
    ],
)
def test_host_override_must_be_loopback(target: str) -> None:
    with pytest.raises(ValueError, match="host_override"):
        RegistryClient(host_override={HUB: target})


def test_without_override_only_https_is_used() -> None:
    router = HostRouter()
    assert router.physical(f"https://{HUB}/v2/x/manifests/1") == f"https://{HUB}/v2/x/manifests/1"
    for url in (f"http://{HUB}/v2/", "http://127.0.0.1:5000/v2/", "https://user:pw@host/v2/"):
        with pytest.raises(InsecureURLError):
            router.physical(url)
    overridden = HostRouter({HUB: "http://127.0.0.1:5000"})
    assert overridden.physical(f"https://{HUB}/v2/?x=1") == "http://127.0.0.1:5000/v2/?x=1"
    assert overridden.physical("http://127.0.0.1:5000/v2/") == "http://127.0.0.1:5000/v2/"
    with pytest.raises(InsecureURLError):
        overridden.physical("http://127.0.0.1:5001/v2/")  # a loopback port nobody configured
