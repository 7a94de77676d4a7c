"""Fixtures for the registry client tests: a token-auth registry, fault servers, a fake clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ptc_sync.credentials import CredentialProvider, registry_credentials
from ptc_sync.models import UpstreamKind, UpstreamRef
from ptc_sync.registry import RegistryClient, RetryPolicy
from testbed.fault_server import FaultServer
from testbed.images import ImagePusher
from testbed.registry import RegistryServer
from testbed.runtime import FakeClock
from testbed.token_server import TokenServer

HUB = "registry-1.docker.io"
HUB_AUTH = "auth.docker.io"
TOKEN_USER = ("token-user", "token-s3cret")
PRIVATE_PREFIX = "private/"


WALL = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


FAST_RETRY = RetryPolicy(
    max_attempts=4, base_delay=0.5, max_delay=4.0, max_retry_after=30.0, total_budget=60.0
)


def hub_ref(repository: str, **kw: Any) -> UpstreamRef:
    return UpstreamRef(
        host=HUB, repository=repository, kind=UpstreamKind.DOCKER_HUB, rule_prefix="docker-hub", **kw
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WALL)


ClientFactory = Callable[..., RegistryClient]


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[ClientFactory]:
    """Builds clients with a fake clock (backoff never really sleeps) and short timeouts; closes them."""
    clients: list[RegistryClient] = []

    def factory(
        override: dict[str, str], credentials: CredentialProvider | None = None, **kw: Any
    ) -> RegistryClient:
        kw.setdefault("retry", FAST_RETRY)
        kw.setdefault("clock", clock)
        kw.setdefault("connect_timeout", 2.0)
        kw.setdefault("read_timeout", 2.0)
        client = RegistryClient(registry_credentials(credentials), host_override=override, **kw)
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.close()


@pytest.fixture
def fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def other_fault() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    with TokenServer(
        tmp_path_factory.mktemp("token-server"), users=dict([TOKEN_USER]), private_prefixes=(PRIVATE_PREFIX,)
    ) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RegistryServer]:
    """A real distribution registry with ``auth: token`` trusting the test token server's certificate."""
    with RegistryServer(tmp_path_factory.mktemp("token-registry"), token=token_server.token_auth()) as server:
        yield server


@pytest.fixture(scope="session")
def token_pusher(token_registry: RegistryServer) -> ImagePusher:
    return ImagePusher(token_registry.url, auth=TOKEN_USER)


@pytest.fixture
def token_override(token_registry: RegistryServer, token_server: TokenServer) -> dict[str, str]:
    return {HUB: token_registry.url, HUB_AUTH: token_server.url}


@pytest.fixture
def fresh_tokens(token_server: TokenServer) -> Iterator[TokenServer]:
    """The session token server with its request log cleared and knobs reset around the test."""
    token_server.clear()
    token_server.single_scope = False
    yield token_server
    token_server.single_scope = False
