"""The one place that builds adapters from validated settings, cached per Lambda container.

Handlers call ``get_app()``; tests and the local demo call ``build_app()`` with their own boto3
session and an upstream host override (loopback registries). Nothing read from an event or from the
account can set that override: it is a Python argument only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
from botocore.config import Config

from ptc_sync.credentials import (
    EcrAuthorizationCredentials,
    RuleCredentialProvider,
    SecretsManagerCredentials,
)
from ptc_sync.ecr import EcrAdapter
from ptc_sync.notify import Notifier, SnsNotifier
from ptc_sync.refresh import Refresher
from ptc_sync.registry import RegistryClient
from ptc_sync.settings import SyncSettings, load_settings
from ptc_sync.sync import SyncEngine

# ECR throttles around 20 TPS per account and region: adaptive retries back off on throttling.
AWS_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=5, read_timeout=30)


@dataclass(frozen=True)
class App:
    settings: SyncSettings
    engine: SyncEngine
    notifier: Notifier | None
    registry: RegistryClient
    metrics_namespace: str


def build_app(
    settings: SyncSettings,
    *,
    session: boto3.Session | None = None,
    upstream_override: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics_namespace: str | None = None,
) -> App:
    session = session or boto3.Session(region_name=settings.region or None)
    ecr_client = session.client("ecr", config=AWS_CONFIG)
    credentials = RuleCredentialProvider(
        secrets=SecretsManagerCredentials(session.client("secretsmanager", config=AWS_CONFIG)),
        ecr=EcrAuthorizationCredentials(sts_client=session.client("sts", config=AWS_CONFIG)),
    )
    registry = RegistryClient(credentials, host_override=upstream_override)
    ecr = EcrAdapter(ecr_client)
    refresher = Refresher(
        ecr,
        verify_timeout=settings.verify_timeout_seconds,
        poll_interval=settings.verify_poll_seconds,
        keep_generations=settings.keep_generations,
        sleep=sleep,
        monotonic=monotonic,
        now=now,
    )
    notifier: Notifier | None = None
    if settings.topic_arn:
        notifier = SnsNotifier(
            session.client("sns", config=AWS_CONFIG), settings.topic_arn, always=settings.notify_always
        )
    return App(
        settings=settings,
        engine=SyncEngine(ecr, registry, refresher, settings, now=now),
        notifier=notifier,
        registry=registry,
        metrics_namespace=metrics_namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PtcSync"),
    )


_lock = threading.Lock()
_app: App | None = None


def get_app() -> App:
    """The container's App, built (and its settings validated) on first use."""
    global _app  # noqa: PLW0603 - one App per Lambda container is the point
    with _lock:
        if _app is None:
            _app = build_app(load_settings(os.environ))
        return _app


def set_app(app: App | None) -> None:
    """Install a prebuilt App (tests and the local demo), or clear the cache with None."""
    global _app  # noqa: PLW0603
    with _lock:
        _app = app
