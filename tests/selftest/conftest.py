"""Fixtures for the import port and the selftest: the sandbox (moto + emulated pull-through cache + a
real registry) and the emulated account's registry endpoint on loopback (testbed/ecr_endpoint.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from ptc_sync import wiring
from testbed.ecr_endpoint import EcrRegistryEndpoint
from testbed.registry import RegistryServer
from testbed.sandbox import REGION, Sandbox

BuildApp = Callable[..., wiring.App]


@pytest.fixture
def box(registry: RegistryServer) -> Iterator[Sandbox]:
    with Sandbox(registry) as sandbox:
        yield sandbox
    wiring.set_app(None)


@pytest.fixture
def endpoint(box: Sandbox) -> Iterator[EcrRegistryEndpoint]:
    with EcrRegistryEndpoint(region=REGION) as server:
        yield server


@pytest.fixture
def build_app(box: Sandbox, endpoint: EcrRegistryEndpoint) -> BuildApp:
    """``box.build_app`` with the registry endpoint on loopback (the explicit test override)."""

    def build(**overrides: Any) -> wiring.App:
        return wiring.build_app(
            box.settings(**overrides),
            session=boto3.Session(region_name=REGION),
            upstream_override=box.upstreams,
            ecr_endpoint_override=endpoint.url,
            sleep=lambda seconds: box.clock.advance(timedelta(seconds=seconds)),
            monotonic=lambda: box.clock.now().timestamp(),
            now=box.clock.now,
        )

    return build
