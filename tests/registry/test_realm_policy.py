"""Where the rule's credentials may go: the token realm policy and the pull-only scope, over real HTTP.

A challenge comes from upstream, so its realm and scope are not trusted: the realm must be https, a
host name (no IP literal, user information or local name) and the upstream host itself or a
documented realm of the rule's kind; the token request asks for ``repository:<name>:pull`` only.
Every foreign server here is a real loopback server the client *could* reach through the test
override, so a missing refusal shows up as a request it received.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from ptc_sync import mediatypes as mt
from ptc_sync.credentials import Credentials, StaticCredentials
from ptc_sync.models import UpstreamKind, UpstreamRef
from ptc_sync.registry import BadResponseError, RegistryClient
from ptc_sync.registry.auth import REALM_HOSTS, realm_refusal
from ptc_sync.registry.errors import ERROR_KINDS, RealmRefusedError
from ptc_sync.upstream import FIXED_HOSTS
from testbed.fault_server import FaultServer, Recorded, Reply, json_reply
from testbed.token_server import TokenServer
from tests.registry.conftest import HUB, HUB_AUTH, TOKEN_USER, ClientFactory, hub_ref

REPO = "lib/app"
MANIFEST_PATH = f"/v2/{REPO}/manifests/1.0"
BODY = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()
OK_HEAD = Reply(200, {"Docker-Content-Digest": DIGEST, "Content-Type": mt.DOCKER_MANIFEST})
HUB_CREDS = Credentials("bob", "hub-s3cret-pat")
EVIL = "evil.example.com"


def challenge(realm: str, **params: str) -> Reply:
    extra = "".join(f',{k}="{v}"' for k, v in params.items())
    return Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry.docker.io"{extra}'})


def assert_no_credentials(server: FaultServer) -> None:
    sent = [r.header("Authorization") for r in server.requests]
    assert all(value is None or not value.startswith("Basic") for value in sent), sent
    assert all(HUB_CREDS.secret not in r.path for r in server.requests)


class ConnectLog:
    """Every ``socket.connect`` the process attempts while a test holds the log (a CPython audit
    event, so this observes the real socket calls urllib3 makes; nothing is replaced)."""

    active: ConnectLog | None = None
    installed = False

    def __init__(self) -> None:
        self.addresses: list[object] = []

    @classmethod
    def _hook(cls, event: str, args: tuple[object, ...]) -> None:
        log = cls.active
        if log is not None and event == "socket.connect" and len(args) > 1:
            log.addresses.append(args[1])

    def hosts(self) -> set[str]:
        return {str(a[0]) for a in self.addresses if isinstance(a, tuple) and a}


@pytest.fixture
def connects() -> Iterator[ConnectLog]:
    if not ConnectLog.installed:
        sys.addaudithook(ConnectLog._hook)  # audit hooks cannot be removed; it records only when active
        ConnectLog.installed = True
    log = ConnectLog()
    ConnectLog.active = log
    yield log
    ConnectLog.active = None


@pytest.fixture
def hub_client(fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory) -> RegistryClient:
    """Docker Hub on ``fault`` with the rule's credentials; ``other_fault`` poses as a foreign host."""
    return make_client(
        {HUB: fault.url, HUB_AUTH: fault.url, EVIL: other_fault.url}, StaticCredentials({HUB: HUB_CREDS})
    )


def refused(client: RegistryClient, ref: UpstreamRef | None = None) -> RealmRefusedError:
    with pytest.raises(RealmRefusedError) as info:
        client.resolve_digest(ref or hub_ref(REPO), "1.0")
    return info.value


# -- foreign hosts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("physical", [False, True], ids=["by-name", "by-its-loopback-override"])
def test_foreign_host_realm_is_refused_and_receives_nothing(
    fault: FaultServer, other_fault: FaultServer, hub_client: RegistryClient, physical: bool
) -> None:
    realm = f"{other_fault.url}/token" if physical else f"https://{EVIL}/token"
    fault.script(MANIFEST_PATH, challenge(realm))
    other_fault.script("/token", json_reply(200, {"token": "stolen"}))

    err = refused(hub_client)
    assert (err.kind, err.reason) == ("realm_refused", "foreign_host")
    assert isinstance(err, BadResponseError)
    assert err.realm_host == (other_fault.host if physical else EVIL)
    assert err.realm_host in str(err)
    assert "neither the upstream host registry-1.docker.io nor a documented docker-hub realm" in str(err)
    assert HUB_CREDS.secret not in str(err)
    assert other_fault.requests == []  # reachable, but never asked: no request, no credential
    assert_no_credentials(fault)
    assert hub_client.counts().get("token", 0) == 0


def test_refused_realm_also_stops_the_batch_token_prefetch(
    fault: FaultServer, other_fault: FaultServer, hub_client: RegistryClient
) -> None:
    fault.script("/v2/", challenge(f"https://{EVIL}/token"))
    fault.script(MANIFEST_PATH, challenge(f"https://{EVIL}/token"))
    refs = [hub_ref(REPO), hub_ref("lib/other")]
    assert hub_client.prepare_host(refs[0].host, refs) is None  # up; its realm is refused, item by item
    results = list(hub_client.resolve_many([(ref, "1.0") for ref in refs], max_workers=2))
    assert {type(answer) for _ref, _tag, answer in results} == {RealmRefusedError}
    assert other_fault.requests == []
    assert_no_credentials(fault)


def test_a_realm_of_another_kind_is_foreign(fault: FaultServer, hub_client: RegistryClient) -> None:
    fault.script(MANIFEST_PATH, challenge("https://ghcr.io/token"))  # GHCR's realm, a Docker Hub rule
    err = refused(hub_client)
    assert (err.reason, err.realm_host) == ("foreign_host", "ghcr.io")


# -- addresses, schemes, shapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("realm", "host", "words"),
    [
        ("https://169.254.169.254/", "169.254.169.254", "is a link-local address"),
        ("https://169.254.169.254/latest/api/token", "169.254.169.254", "is a link-local address"),
        ("https://2852039166/token", "2852039166", "2852039166 (169.254.169.254) is a link-local address"),
        ("https://[fe80::1]/token", "fe80::1", "is a link-local address"),
        ("https://[::ffff:169.254.169.254]/token", "::ffff:169.254.169.254", "is a link-local address"),
    ],
)
def test_link_local_realm_is_refused_without_a_connection_attempt(
    *,
    fault: FaultServer,
    hub_client: RegistryClient,
    connects: ConnectLog,
    realm: str,
    host: str,
    words: str,
) -> None:
    fault.script(MANIFEST_PATH, challenge(realm))
    err = refused(hub_client)
    assert (err.reason, err.realm_host) == ("ip_address", host)
    assert f"token realm on {host} refused" in str(err)
    assert words in str(err)
    assert "127.0.0.1" in connects.hosts()  # the log sees the client's real connections ...
    assert connects.hosts() <= {"127.0.0.1"}  # ... and there was none to the realm
    assert hub_client.counts().get("token", 0) == 0


@pytest.mark.parametrize(
    ("realm", "host", "words"),
    [
        ("https://10.0.0.5/token", "10.0.0.5", "10.0.0.5 is a private address"),
        ("https://192.168.1.10/token", "192.168.1.10", "is a private address"),
        ("https://8.8.8.8/token", "8.8.8.8", "8.8.8.8 is an IP address, not a host name"),
        ("https://127.0.0.1/token", "127.0.0.1", "127.0.0.1 is a loopback address"),
        ("https://127.1/token", "127.1", "127.1 (127.0.0.1) is a loopback address"),
        ("https://[::1]/token", "::1", "::1 is a loopback address"),
        ("https://0x7f000001/token", "0x7f000001", "is a loopback address"),
    ],
)
def test_ip_literal_realm_is_refused(
    *, fault: FaultServer, hub_client: RegistryClient, connects: ConnectLog, realm: str, host: str, words: str
) -> None:
    fault.script(MANIFEST_PATH, challenge(realm))
    err = refused(hub_client)
    assert (err.reason, err.realm_host) == ("ip_address", host)
    assert words in str(err)
    assert connects.hosts() <= {"127.0.0.1"}
    assert len(fault.requests) == 1  # the challenge, nothing after it
    assert_no_credentials(fault)


def test_http_realm_is_refused_even_on_a_documented_host(
    fault: FaultServer, hub_client: RegistryClient
) -> None:
    # auth.docker.io is overridden to this very server: without the policy the token request (with
    # the rule's Basic credentials, in clear text upstream) would arrive here
    fault.script(MANIFEST_PATH, challenge(f"http://{HUB_AUTH}/token"))
    fault.script("/token", json_reply(200, {"token": "t"}))
    err = refused(hub_client)
    assert (err.reason, err.realm_host) == ("not_https", HUB_AUTH)
    assert f"refusing non-HTTPS URL http://{HUB_AUTH}/token" in str(err)
    assert fault.requests_for("/token") == []
    assert_no_credentials(fault)


@pytest.mark.parametrize(
    ("realm", "reason", "host"),
    [
        (f"https://bob:pw@{HUB_AUTH}/token", "user_info", HUB_AUTH),
        (f"https://{HUB_AUTH}:8443/token", "port", HUB_AUTH),
        ("https://localhost/token", "local_name", "localhost"),
        ("https://metadata.localhost/token", "local_name", "metadata.localhost"),
        ("/token", "no_host", ""),
        ("ftp://auth.docker.io/token", "not_https", HUB_AUTH),
        (f"https://{HUB_AUTH}.{EVIL}/token", "foreign_host", f"{HUB_AUTH}.{EVIL}"),
    ],
)
def test_other_unsafe_realms_are_refused(
    fault: FaultServer, hub_client: RegistryClient, realm: str, reason: str, host: str
) -> None:
    fault.script(MANIFEST_PATH, challenge(realm))
    fault.script("/token", json_reply(200, {"token": "t"}))
    err = refused(hub_client)
    assert (err.reason, err.realm_host) == (reason, host)
    assert fault.requests_for("/token") == []


# -- allowed realms --------------------------------------------------------------------------------------


def bearer_registry(token: str, realm: str, **params: str) -> object:
    def reply(rec: Recorded) -> Reply:
        return OK_HEAD if rec.header("Authorization") == f"Bearer {token}" else challenge(realm, **params)

    return reply


def test_documented_realm_on_another_host_gets_the_credentials(
    fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory
) -> None:
    gitlab = UpstreamRef("registry.gitlab.com", REPO, UpstreamKind.GITLAB, "gitlab")
    client = make_client(
        {"registry.gitlab.com": fault.url, "gitlab.com": other_fault.url},
        StaticCredentials({"registry.gitlab.com": HUB_CREDS}),
    )
    fault.script(MANIFEST_PATH, bearer_registry("tok-gl", "https://gitlab.com/jwt/auth"))
    other_fault.script("/jwt/auth", json_reply(200, {"token": "tok-gl"}))
    assert client.resolve_digest(gitlab, "1.0").digest == DIGEST
    (token_request,) = other_fault.requests
    assert token_request.header("Authorization") == HUB_CREDS.basic_header()

    # the same realm named for a Docker Hub rule is somebody else's
    hub = make_client({HUB: fault.url, "gitlab.com": other_fault.url}, StaticCredentials({HUB: HUB_CREDS}))
    fault.script(MANIFEST_PATH, challenge("https://gitlab.com/jwt/auth"))
    assert refused(hub).realm_host == "gitlab.com"
    assert len(other_fault.requests) == 1


def test_azure_realm_is_the_upstream_host_itself(fault: FaultServer, make_client: ClientFactory) -> None:
    acr = UpstreamRef("myregistry.azurecr.io", REPO, UpstreamKind.AZURE, "azure")
    client = make_client({"myregistry.azurecr.io": fault.url, "other.azurecr.io": fault.url})
    fault.script(MANIFEST_PATH, bearer_registry("tok-acr", "https://myregistry.azurecr.io/oauth2/token"))
    fault.script("/oauth2/token", json_reply(200, {"access_token": "tok-acr"}))
    assert client.resolve_digest(acr, "1.0").digest == DIGEST

    # another registry's realm, even on azurecr.io, is not this upstream's
    fresh = make_client({"myregistry.azurecr.io": fault.url, "other.azurecr.io": fault.url})
    fault.script(MANIFEST_PATH, challenge("https://other.azurecr.io/oauth2/token"))
    fault.requests.clear()
    err = refused(fresh, acr)
    assert (err.reason, err.realm_host) == ("foreign_host", "other.azurecr.io")
    assert fault.requests_for("/oauth2/token") == []


def test_realm_at_a_configured_loopback_override_is_judged_as_its_host(
    fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory
) -> None:
    # a test registry names its token server by loopback address: allowed as the override of auth.docker.io
    client = make_client({HUB: fault.url, HUB_AUTH: other_fault.url}, StaticCredentials({HUB: HUB_CREDS}))
    fault.script(MANIFEST_PATH, bearer_registry("tok", f"{other_fault.url}/token"))
    other_fault.script("/token", json_reply(200, {"token": "tok"}))
    assert client.resolve_digest(hub_ref(REPO), "1.0").digest == DIGEST
    assert other_fault.requests[0].header("Authorization") == HUB_CREDS.basic_header()


# -- scope -----------------------------------------------------------------------------------------------


def test_challenge_scope_widening_is_ignored(
    fault: FaultServer, fresh_tokens: TokenServer, make_client: ClientFactory
) -> None:
    """The registry asks for push/delete on another repository (then claims insufficient scope): the
    real token server records that the client only ever asked for pull on the repository it reads."""
    client = make_client(
        {HUB: fault.url, HUB_AUTH: fresh_tokens.url}, StaticCredentials({HUB: Credentials(*TOKEN_USER)})
    )
    widen = f"https://{HUB_AUTH}/token"
    seen: list[str | None] = []

    def registry(rec: Recorded) -> Reply:
        seen.append(rec.header("Authorization"))
        if rec.header("Authorization") is None:
            return Reply(
                401,
                {
                    "WWW-Authenticate": f'Bearer realm="{widen}",service="{fresh_tokens.service}",'
                    'scope="repository:other:push,pull,delete"'
                },
            )
        if len(seen) == 2:  # the first token: "insufficient", asking for more again
            return Reply(
                401,
                {
                    "WWW-Authenticate": f'Bearer realm="{widen}",service="{fresh_tokens.service}",'
                    f'scope="repository:{REPO}:pull,push",error="insufficient_scope"'
                },
            )
        return OK_HEAD

    fault.script(MANIFEST_PATH, registry)
    assert client.resolve_digest(hub_ref(REPO), "1.0").digest == DIGEST
    asked = [(r.scopes, r.user, r.status) for r in fresh_tokens.requests]
    assert asked == [((f"repository:{REPO}:pull",), TOKEN_USER[0], 200)] * 2


def test_redirect_target_token_is_pull_on_the_redirected_repository_only(
    fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory
) -> None:
    backend = "us-west1-docker.pkg.dev"
    k8s = UpstreamRef("registry.k8s.io", REPO, UpstreamKind.K8S, "k8s")
    client = make_client({"registry.k8s.io": fault.url, backend: other_fault.url})
    moved = f"/v2/k8s-artifacts-prod/images/{REPO}/manifests/1.0"
    fault.script(MANIFEST_PATH, Reply(307, {"Location": f"https://{backend}{moved}"}))

    def artifact_registry(rec: Recorded) -> Reply:
        if rec.path.startswith("/v2/token"):
            return json_reply(200, {"token": "tok-ar"})
        if rec.header("Authorization") == "Bearer tok-ar":
            return OK_HEAD
        return Reply(
            401,
            {
                "WWW-Authenticate": f'Bearer realm="https://{backend}/v2/token",service="{backend}",'
                'scope="repository:k8s-artifacts-prod/images/secret:push,pull,delete"'
            },
        )

    other_fault.script(moved, artifact_registry)
    other_fault.script("/v2/token", artifact_registry)
    assert client.resolve_digest(k8s, "1.0").digest == DIGEST
    (token_request,) = other_fault.requests_for("/v2/token")
    assert parse_qs(urlsplit(token_request.path).query)["scope"] == [
        f"repository:k8s-artifacts-prod/images/{REPO}:pull"
    ]
    assert token_request.header("Authorization") is None


def test_redirect_target_naming_a_link_local_realm_is_refused(
    fault: FaultServer, other_fault: FaultServer, make_client: ClientFactory, connects: ConnectLog
) -> None:
    mirror = "mirror.example.com"
    client = make_client({HUB: fault.url, mirror: other_fault.url})
    fault.script(MANIFEST_PATH, Reply(302, {"Location": f"https://{mirror}/v2/m/manifests/1.0"}))
    other_fault.script("/v2/m/manifests/1.0", challenge("https://169.254.169.254/token"))
    err = refused(client)
    assert (err.reason, err.realm_host) == ("ip_address", "169.254.169.254")
    assert connects.hosts() <= {"127.0.0.1"}


# -- the policy table and the error ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "realm"),
    [
        (UpstreamKind.DOCKER_HUB, "https://auth.docker.io/token"),
        (UpstreamKind.ECR_PUBLIC, "https://public.ecr.aws/token/"),
        (UpstreamKind.GITHUB, "https://ghcr.io/token"),
        (UpstreamKind.QUAY, "https://quay.io/v2/auth"),
        (UpstreamKind.CHAINGUARD, "https://cgr.dev/token"),
        (UpstreamKind.GITLAB, "https://gitlab.com/jwt/auth"),
        (UpstreamKind.K8S, "https://registry.k8s.io/token"),
        (UpstreamKind.K8S, "https://us-central1-docker.pkg.dev/v2/token"),
        (UpstreamKind.K8S, "https://europe-west2-docker.pkg.dev/v2/token"),
        (UpstreamKind.K8S, "https://asia.gcr.io/v2/token"),
    ],
)
def test_documented_realms_are_allowed_for_their_kind_only(kind: UpstreamKind, realm: str) -> None:
    assert realm_refusal(urlsplit(realm), upstream=FIXED_HOSTS[kind], kind=kind) is None
    for other in FIXED_HOSTS:
        host = urlsplit(realm).hostname
        if other is not kind and host != FIXED_HOSTS[other] and not REALM_HOSTS[other].allows(str(host)):
            refusal = realm_refusal(urlsplit(realm), upstream=FIXED_HOSTS[other], kind=other)
            assert refusal is not None
            assert refusal.reason == "foreign_host"


def test_every_kind_has_a_realm_entry() -> None:
    assert set(REALM_HOSTS) == set(UpstreamKind)


@pytest.mark.parametrize("host", ["docker.pkg.dev", "evil.com-docker.pkg.dev.example", "gcr.io.example.com"])
def test_k8s_backend_patterns_are_anchored(host: str) -> None:
    refusal = realm_refusal(urlsplit(f"https://{host}/t"), upstream="registry.k8s.io", kind=UpstreamKind.K8S)
    assert refusal is not None
    assert refusal.reason == "foreign_host"


def test_realm_refused_error_is_stable_and_survives_pickling() -> None:
    err = RealmRefusedError("x: refused", host=HUB, repository=REPO, realm_host=EVIL, reason="foreign_host")
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own object
    assert (copy.kind, copy.realm_host, copy.reason, copy.host, str(copy)) == (
        "realm_refused",
        EVIL,
        "foreign_host",
        HUB,
        "x: refused",
    )
    assert "realm_refused" in ERROR_KINDS
