"""The CLI's testbed: moto's server in this process, with the pull-through cache emulator installed.

The server answers on a free loopback port; the emulator patches moto's ECRResponse class in this
process, so the server's requests get pull-through cache behaviour. Each test gets a reset account with
the two rules of testbed/sandbox.py (``ecr-public`` anonymous, ``docker-hub`` with a Secrets Manager
secret), both upstreams served by the session's real loopback registry. ``bed.cli(...)`` runs
``ptc_sync.cli.main`` in-process and records every ECR action the server answered meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import urllib3
from moto.ecr.responses import ECRResponse

try:
    from moto.server import ThreadedMotoServer
except ImportError as exc:  # pragma: no cover - a dev install without moto's server extra
    raise ImportError(f"tests/cli need moto's server: install moto[server] (flask-cors) ({exc})") from exc

from ptc_sync import mediatypes as mt
from ptc_sync.cli import EndpointSession, main
from ptc_sync.settings import SyncSettings
from ptc_sync.state import StateStore
from ptc_sync.wiring import build_app
from testbed.ecr_ptc import FakeClock, PullThroughCacheEmulator
from testbed.images import ImagePusher
from testbed.registry import RegistryServer
from testbed.sandbox import HUB_HOST, HUB_SECRET, HUB_USER, PUBLIC_HOST, REGION
from tests.state.conftest import create_state_table

# What a command that must not write may ask ECR. BatchGetImage and GetDownloadUrlForLayer are reads
# in the API but import from upstream in a pull-through cache repository, so they count as writes.
READ_ACTIONS = frozenset({"DescribePullThroughCacheRules", "DescribeRepositories", "DescribeImages"})
PUSHED_DAYS_AGO = 3  # the emulated clock starts this far back, so cached images have a visible age


@dataclass
class Result:
    code: int
    out: str
    err: str
    ecr_actions: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def writes(self) -> list[str]:
        return [a for a in self.ecr_actions if a not in READ_ACTIONS]


class Bed:
    def __init__(self, endpoint: str, registry: RegistryServer, emulator: PullThroughCacheEmulator) -> None:
        self.endpoint = endpoint
        self.registry = registry
        self.emulator = emulator
        self.pusher = ImagePusher(registry.url)
        self.actions: list[str] = []
        self._lock = threading.Lock()

    @property
    def aws_args(self) -> list[str]:
        """The local-testbed options: moto's endpoint and both upstream hosts on the loopback registry."""
        return [
            "--region",
            REGION,
            "--endpoint-url",
            self.endpoint,
            "--upstream-override",
            f"{PUBLIC_HOST}={self.registry.url}",
            "--upstream-override",
            f"{HUB_HOST}={self.registry.url}",
        ]

    def record(self, action: str) -> None:
        with self._lock:
            self.actions.append(action)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)  # type: ignore[call-overload]

    def cli(self, *args: str) -> Result:
        """``ptc-sync ARGS`` in this process (testbed options after the command, as an operator types)."""
        out, err = io.StringIO(), io.StringIO()
        with self._lock:
            self.actions.clear()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, *self.aws_args])
        with self._lock:
            actions = list(self.actions)
        return Result(code, out.getvalue(), err.getvalue(), actions)

    # -- the cache, as people pulling and the account see it -------------------------------------------

    def cache(self, repository: str, tag: str) -> str:
        resp = self.client("ecr").batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=sorted(mt.MANIFEST_TYPES),
        )
        assert resp["images"], resp["failures"]
        return str(resp["images"][0]["imageId"]["imageDigest"])

    def tags(self, repository: str) -> dict[str, str]:
        ecr = self.client("ecr")
        try:
            pages = list(ecr.get_paginator("describe_images").paginate(repositoryName=repository))
        except ecr.exceptions.RepositoryNotFoundException:
            return {}
        return {
            tag: i["imageDigest"]
            for page in pages
            for i in page["imageDetails"]
            for tag in i.get("imageTags", [])
        }

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Every repository's tags and digests: what a command that writes nothing leaves as it was."""
        ecr = self.client("ecr")
        names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
        return {name: self.tags(name) for name in sorted(names)}


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """As tests/conftest.py's, but cut before trimming: a cut that ends in "-" would make "--", which
    ECR refuses in a repository name."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:48].strip("-")
    return f"t/{cleaned}-{os.urandom(3).hex()}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines in captured stderr
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bed(moto_endpoint: str, registry: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bed]:
    assert urllib3.request("POST", f"{moto_endpoint}/moto-api/reset", timeout=10).status == 200
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=PUSHED_DAYS_AGO))
    emulator = PullThroughCacheEmulator({PUBLIC_HOST: registry.url, HUB_HOST: registry.url}, clock)
    testbed = Bed(moto_endpoint, registry, emulator)
    original = ECRResponse.call_action

    def recording(response: ECRResponse) -> Any:
        testbed.record(response._get_action())
        return original(response)

    monkeypatch.setattr(ECRResponse, "call_action", recording)
    with emulator:
        secret = testbed.client("secretsmanager").create_secret(
            Name=HUB_SECRET, SecretString=json.dumps({"username": HUB_USER[0], "accessToken": HUB_USER[1]})
        )
        ecr = testbed.client("ecr")
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ecr-public", upstreamRegistryUrl=PUBLIC_HOST, upstreamRegistry="ecr-public"
        )
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="docker-hub",
            upstreamRegistryUrl=HUB_HOST,
            upstreamRegistry="docker-hub",
            credentialArn=secret["ARN"],
        )
        # the stack's state table, as an operator names it: refresh and rollback write their journal,
        # lease and backup ledger there (PTC_TABLE_NAME, read when the command line is parsed)
        create_state_table(testbed.client("dynamodb"), STATE_TABLE)
        monkeypatch.setenv("PTC_TABLE_NAME", STATE_TABLE)
        yield testbed


STATE_TABLE = "ptc-sync-cli-state"


@pytest.fixture
def state(bed: Bed) -> StateStore:
    """The stack's state table on the testbed's moto server (``bed`` creates it), written to as the
    checker writes it."""
    session = EndpointSession(bed.endpoint, region_name=REGION)
    app = build_app(SyncSettings(region=REGION, table_name=STATE_TABLE), session=session)
    assert app.state is not None
    return app.state
