"""Fixtures for the ECR pull-through cache emulation: moto with the emulator installed, a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from testbed.ecr_ptc import FakeClock, PullThroughCacheEmulator
from testbed.registry import RegistryServer

# A cross-account ECR upstream as an `ecr` rule names it.
UPSTREAM_ECR_HOST = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
PUBLIC_HOSTS = (
    "registry-1.docker.io",
    "public.ecr.aws",
    "quay.io",
    "registry.k8s.io",
    "ghcr.io",
    UPSTREAM_ECR_HOST,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 1, 6, 12, 0, tzinfo=UTC))


@pytest.fixture
def ptc(registry: RegistryServer, clock: FakeClock) -> Iterator[PullThroughCacheEmulator]:
    """moto with the emulator installed; every public upstream host maps to the shared registry."""
    with mock_aws(), PullThroughCacheEmulator(dict.fromkeys(PUBLIC_HOSTS, registry.url), clock) as emulator:
        yield emulator


@pytest.fixture
def ecr(ptc: PullThroughCacheEmulator) -> Any:
    return boto3.client("ecr", region_name="us-east-1")


@pytest.fixture
def secretsmanager(ptc: PullThroughCacheEmulator) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1")
