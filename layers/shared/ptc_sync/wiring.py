"""The one place that builds adapters from validated settings, cached per Lambda container.

Handlers call ``get_app()``; tests and the local demo call ``build_app()`` with their own boto3
session and an upstream host override (loopback registries). Nothing read from an event or from the
account can set that override: it is a Python argument only.

In Lambda, ``get_app()`` builds from the environment and the stack's settings document (the SSM
parameter ``PTC_SETTINGS_PARAMETER``), read through Powertools Parameters as JSON and cached for
``SETTINGS_MAX_AGE`` seconds: a changed document rebuilds the container's objects at the next
invocation after that, an invalid one is logged with every bad field named and fails the invocation
(the planner queues nothing; the checker's batch is retried, then dead-lettered: nothing is lost).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters.exceptions import TransformParameterError
from botocore.config import Config

from ptc_sync.checker import Checker
from ptc_sync.credentials import (
    EcrAuthorizationCredentials,
    RuleCredentialProvider,
    SecretsManagerCredentials,
    registry_credentials,
    session_ecr_factory,
)
from ptc_sync.discovery import Discovery
from ptc_sync.ecr import EcrAdapter
from ptc_sync.importer import ApiImporter, CacheImporter, ChosenImporter, EndpointImporter, choose_import_path
from ptc_sync.journal import BackupLedger, DynamoJournal, LocalJournal, RefreshJournal
from ptc_sync.logs import set_service_level
from ptc_sync.metrics import MetricOptions
from ptc_sync.metrics import configure as configure_metrics
from ptc_sync.notify import Notifier, SnsNotifier
from ptc_sync.ondemand import RequestPlanner
from ptc_sync.planner import Planner
from ptc_sync.queue import SqsWorkQueue, WorkQueue
from ptc_sync.refresh import Refresher
from ptc_sync.registry import RegistryClient
from ptc_sync.repair import Repairer
from ptc_sync.request_window import DynamoRequestWindow, RequestWindow
from ptc_sync.selftest_store import DynamoSelftestStore, SelftestStore, report_only_reason
from ptc_sync.settings import ENV_PREFIX, SettingsError, SyncSettings, load_settings
from ptc_sync.state import DynamoStateStore, StateStore, idempotency_persistence
from ptc_sync.sync import Comparer, UpstreamResolver
from ptc_sync.upstream_access import ExplainingResolver

# ECR throttles around 20 TPS per account and region: adaptive retries back off on throttling.
AWS_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=5, read_timeout=30)


@dataclass(frozen=True)
class App:
    settings: SyncSettings
    now: Callable[[], datetime]
    ecr: EcrAdapter
    resolver: UpstreamResolver  # the registry client, its refusals explained (upstream_access)
    discovery: Discovery
    refresher: Refresher
    notifier: Notifier | None
    registry: RegistryClient
    metrics_namespace: str
    session: boto3.Session
    journal: RefreshJournal
    ledger: BackupLedger
    repairer: Repairer
    state: StateStore | None = None
    queue: WorkQueue | None = None
    request_window: RequestWindow | None = None
    selftest: SelftestStore | None = None  # the account's latest selftest result (selftest_store.py)

    def report_only_reason(self) -> str:
        """'' or why a scheduled run must only report: the selftest found a behaviour the refresh
        relies on failing in this account."""
        return report_only_reason(self.selftest, self.settings.import_path)

    def fanout(
        self, state: StateStore | None = None, queue: WorkQueue | None = None
    ) -> tuple[StateStore, WorkQueue]:
        """The run state and the work queue, which the planner/checker/request functions need: the
        given ones (a local run's), else the stack's."""
        state, queue = state or self.state, queue or self.queue
        if state is None or queue is None:
            missing = [n for n, v in (("PTC_TABLE_NAME", state), ("PTC_QUEUE_URL", queue)) if v is None]
            raise SettingsError(f"invalid settings: {', '.join(missing)} must be set for this function")
        return state, queue

    def planner(self, *, state: StateStore | None = None, queue: WorkQueue | None = None) -> Planner:
        """The planner on the stack's table and queue (a local run gives its own)."""
        state, queue = self.fanout(state, queue)
        return Planner(
            queue,
            state,
            settings=self.settings,
            now=self.now,
            discovery=self.discovery,
            repairs=self.repairer,
            upstream=self.resolver,
            parameters=_ssm_json,
        )

    def checker(
        self,
        *,
        state: StateStore | None = None,
        queue: WorkQueue | None = None,
        resolver: UpstreamResolver | None = None,
        local: bool = False,
    ) -> Checker:
        """The checker on the stack's table and queue; ``local``: a CLI run's (its own state, queue and
        resolver given; no notifier, no metrics: the CLI prints the report)."""
        state, queue = self.fanout(state, queue)
        resolver = resolver or self.resolver
        return Checker(
            settings=self.settings,
            now=self.now,
            comparer=Comparer(resolver, self.refresher, self.settings),
            ecr=self.ecr,
            state=state,
            notifier=None if local else self.notifier,
            discovery=self.discovery,
            refresher=self.refresher,
            repairer=self.repairer,
            journal=self.journal,
            registry=resolver,
            queue=queue,
            metrics_namespace=None if local else self.metrics_namespace,
        )

    def request_planner(self) -> RequestPlanner:
        return RequestPlanner(
            settings=self.settings,
            now=self.now,
            discovery=self.discovery,
            ecr=self.ecr,
            window=self.request_window,
        )

    def idempotency(self) -> DynamoDBPersistenceLayer:
        if self.settings.table_name is None:
            raise SettingsError("invalid settings: PTC_TABLE_NAME must be set for idempotency")
        return idempotency_persistence(self.settings.table_name, client=self.session.client("dynamodb"))


def _ssm_json(name: str) -> Any:
    """An SSM parameter holding JSON, cached by Powertools Parameters for five minutes."""
    return parameters.get_parameter(name, transform="json", max_age=300)


SETTINGS_MAX_AGE: Final = 300  # seconds a container reuses the settings document before reading it again
_log = Logger(child=True)


def read_settings_document(name: str) -> Any:
    """The settings document, parsed: Powertools Parameters, ``transform="json"``, cached per container."""
    try:
        return parameters.get_parameter(name, transform="json", max_age=SETTINGS_MAX_AGE)
    except TransformParameterError:
        raise SettingsError(f"invalid settings document: settings: {name} does not hold JSON") from None


def apply_log_level(level: str, environ: Mapping[str, str] = os.environ) -> None:
    """The document's log_level on the function's Powertools Logger (named after the service)."""
    service = environ.get("POWERTOOLS_SERVICE_NAME")
    if service:
        set_service_level(service, level)


class SettingsContainer:
    """The container's App, built from the environment and the settings document, and built again
    when the document changes. ``set`` pins a prebuilt App (tests and the local demo)."""

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        read: Callable[[str], Any] = read_settings_document,
        build: Callable[[SyncSettings], App] | None = None,
    ) -> None:
        self._environ = environ
        self._read = read
        self._build = build or build_app
        self._app: App | None = None
        self._key: str | None = None
        self._pinned = False
        self._lock = threading.Lock()

    def get(self) -> App:
        with self._lock:
            if self._pinned and self._app is not None:
                return self._app
            name = self._environ.get(f"{ENV_PREFIX}SETTINGS_PARAMETER") or None
            document = self._read(name) if name else None
            key = json.dumps(document, sort_keys=True)
            if self._app is None or key != self._key:
                try:
                    settings = load_settings(self._environ, document)
                except SettingsError as exc:
                    _log.error(
                        "settings rejected: nothing runs until they are fixed",
                        extra={"settings_parameter": name, "reason": str(exc)},
                    )
                    raise
                self._app = self._build(settings)
                self._key = key
                apply_log_level(settings.log_level, self._environ)
                configure_metrics(
                    MetricOptions(
                        run_counts=settings.metrics_run_counts,
                        per_rule=settings.metrics_per_rule,
                        per_host=settings.metrics_per_host,
                        per_outcome=settings.metrics_per_outcome,
                    )
                )
            return self._app

    def set(self, value: App | None) -> None:
        """Install a prebuilt App (tests and the local demo), or clear the cache with None."""
        with self._lock:
            self._app, self._key, self._pinned = value, None, value is not None


def build_app(
    settings: SyncSettings,
    *,
    session: boto3.Session | None = None,
    upstream_override: Mapping[str, str] | None = None,
    ecr_endpoint_override: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics_namespace: str | None = None,
    registry: RegistryClient | None = None,
) -> App:
    """Every adapter from ``settings``; ``registry`` replaces the upstream registry client (tests give
    one with short timeouts and a virtual clock; its credentials are then the caller's)."""
    session = session or boto3.Session(region_name=settings.region or None)
    ecr_client = session.client("ecr", config=AWS_CONFIG)
    # ECR upstreams through ptc-sync's own read path (UpstreamRoleArns), never a rule's customRoleArn
    ecr_reader = EcrAuthorizationCredentials(
        sts_client=session.client("sts", config=AWS_CONFIG),
        ecr_client_factory=session_ecr_factory(session, AWS_CONFIG),
        read_roles=settings.upstream_role_arns,
    )
    credentials = RuleCredentialProvider(
        secrets=SecretsManagerCredentials(session.client("secretsmanager", config=AWS_CONFIG)),
        ecr=ecr_reader,
    )
    registry = registry or RegistryClient(registry_credentials(credentials), host_override=upstream_override)
    ecr = EcrAdapter(ecr_client)
    selftest: SelftestStore | None = (
        DynamoSelftestStore(session.client("dynamodb", config=AWS_CONFIG), settings.table_name)
        if settings.table_name
        else None
    )
    importers: dict[str, Callable[[], CacheImporter]] = {
        "api": lambda: ApiImporter(ecr),
        "endpoint": lambda: EndpointImporter(
            ecr_client,
            account_id=settings.account_id,
            region=settings.region or session.region_name or "",
            endpoint_override=ecr_endpoint_override,
            now=now,
        ),
    }
    latest = selftest.latest if selftest is not None else lambda: None
    importer = ChosenImporter(
        importers,
        lambda: choose_import_path(
            settings.import_path, lambda: r.preferred_import_path() if (r := latest()) else None
        ),
    )
    journal: DynamoJournal | LocalJournal = (
        DynamoJournal(session.client("dynamodb", config=AWS_CONFIG), settings.table_name)
        if settings.table_name
        else LocalJournal(now)
    )
    owner = f"{os.environ.get('AWS_LAMBDA_LOG_STREAM_NAME', 'local')}/{uuid.uuid4().hex[:12]}"
    refresher = Refresher(
        ecr,
        journal,
        journal,
        owner=owner,
        verify_timeout=settings.verify_timeout_seconds,
        poll_interval=settings.verify_poll_seconds,
        keep_generations=settings.keep_generations,
        sleep=sleep,
        monotonic=monotonic,
        now=now,
        importer=importer,
    )
    notifier: Notifier | None = None
    if settings.topic_arn:
        notifier = SnsNotifier(
            session.client("sns", config=AWS_CONFIG), settings.topic_arn, always=settings.notify_always
        )
    state: StateStore | None = None
    if settings.table_name:
        state = DynamoStateStore(
            session.client("dynamodb", config=AWS_CONFIG),
            settings.table_name,
            ttl_days=settings.history_days,
            now=now,
        )
    request_window: RequestWindow | None = None
    if settings.table_name:
        request_window = DynamoRequestWindow(
            session.client("dynamodb", config=AWS_CONFIG), settings.table_name
        )
    queue: WorkQueue | None = None
    if settings.queue_url:
        queue = SqsWorkQueue(session.client("sqs", config=AWS_CONFIG), settings.queue_url)
    # PulledWithinDays: the tag state says when ptc-sync pulled a tag itself (discovery.py)
    discovery = Discovery(ecr, journal, settings, now=now, pulls=state)
    return App(
        settings=settings,
        now=now,
        ecr=ecr,
        resolver=ExplainingResolver(registry, ecr_reader),
        discovery=discovery,
        refresher=refresher,
        journal=journal,
        ledger=journal,
        repairer=Repairer(ecr, journal, journal, refresher, owner=owner, now=now),
        notifier=notifier,
        registry=registry,
        metrics_namespace=metrics_namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PtcSync"),
        session=session,
        state=state,
        queue=queue,
        request_window=request_window,
        selftest=selftest,
    )


_app = SettingsContainer()
get_app = _app.get
set_app = _app.set
