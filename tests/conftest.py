"""Shared fixtures: real registries on loopback, image pushers, Lambda handler loading."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

# No test reaches a real AWS account: credentials are fake and the region fixed before boto3 loads; and
# the service is named before ptc_sync loads (testbed imports it), so each module's child Logger is the
# service Logger's child (named after the service when it is created) and logs through its formatter,
# appended keys (run_id) included, as in Lambda.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",  # moto's fake
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_SERVICE_NAME": "ptc-sync",
        "POWERTOOLS_METRICS_NAMESPACE": "PtcSync",
    }
)
os.environ.pop("AWS_PROFILE", None)

from testbed import lambdas
from testbed.images import ImagePusher
from testbed.registry import RegistryServer

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_USER = ("ptc-user", "ptc-s3cret-password")


def _registry_children() -> list[str]:
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True, check=False
    )
    return [line.strip() for line in out.stdout.splitlines() if "docker-registry" in line]


@pytest.fixture(scope="session", autouse=True)
def no_registry_left_behind() -> Iterator[None]:
    """Set up first, torn down last: once every other fixture has stopped its registry, none may
    still run (a leaked server would outlive CI's run)."""
    yield
    leftovers = _registry_children()
    assert not leftovers, f"docker-registry processes left behind: {leftovers}"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """An anonymous distribution registry shared by the session (tests use their own repositories)."""
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry behind htpasswd Basic auth (user/password: REGISTRY_USER)."""
    with RegistryServer(tmp_path_factory.mktemp("auth-registry"), users=dict([REGISTRY_USER])) as server:
        yield server


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry of this test's own, for tests that need an empty or disposable upstream."""
    with RegistryServer(tmp_path / "registry") as server:
        yield server


@pytest.fixture(scope="session")
def pusher(registry: RegistryServer) -> ImagePusher:
    return ImagePusher(registry.url)


@pytest.fixture(scope="session")
def auth_pusher(auth_registry: RegistryServer) -> ImagePusher:
    return ImagePusher(auth_registry.url, auth=REGISTRY_USER)


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """A repository name of this test's own in the shared registry."""
    name = request.node.name.lower()
    cleaned = re.sub(r"[^a-z0-9]+", "-", name)[:60].strip("-")  # ECR refuses "--" in names
    return f"t/{cleaned}-{os.urandom(3).hex()}"


def load_handler(function: str) -> ModuleType:
    """Import ``functions/<function>/app.py`` the way Lambda does (module ``app``), under a unique name."""
    return lambdas.load_handler(function)
