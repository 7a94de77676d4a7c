"""Runs started by events instead of the schedule: ECR's own pull-through cache events and the
project's on-demand sync requests (for example from CI after an upstream release).

Both are EventBridge events validated with Powertools parser models. They select cached
repositories under existing rules and tags, by name or shell pattern; no field can name a host.
The selection becomes work items for the checker, under a run of their own.

ECR's events arrive on the default bus; Sync Requests on the stack's own request bus, whose policy
lets only the principals the operator named put them, with the source ``ptc-sync.<stack name>``
(template.yaml's rule matches that source and this account only). A request is bounded: patterns,
the repositories and tags they match, the tags it may pre-warm and its free text.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ptc_sync.discovery import Discovery
from ptc_sync.ecr import EcrAdapter, EcrError
from ptc_sync.planner import Plan, new_run_id
from ptc_sync.refresh import is_backup_tag
from ptc_sync.request_window import RequestWindow
from ptc_sync.settings import SyncSettings
from ptc_sync.upstream import rule_for_repository
from ptc_sync.work import MAX_TAGS_PER_ITEM, RepositoryName, TagName, WorkItem, WorkKind

logger = Logger(child=True)

REQUEST_SOURCE_PREFIX: Final = "ptc-sync."
# ptc-sync.<CloudFormation stack name>: a letter, then letters, digits and hyphens (128 at most)
REQUEST_SOURCE_RE: Final = r"^ptc-sync\.[A-Za-z][A-Za-z0-9-]{0,127}$"
REQUEST_DETAIL_TYPE: Final = "Sync Request"
ECR_SOURCE: Final = "aws.ecr"
ECR_PTC_DETAIL_TYPE: Final = "ECR Pull Through Cache Action"
SUCCESS: Final = "SUCCESS"

# what one request may ask for and start (the schedule covers the rest)
MAX_REQUEST_PATTERNS: Final = 20  # repositories[] entries
MAX_REQUEST_TAG_PATTERNS: Final = 50  # tags[] entries
MAX_MATCHED_REPOSITORIES: Final = 200
MAX_REQUEST_TAGS: Final = 1000  # cached tags checked or refreshed, over all matched repositories
MAX_REQUEST_PREWARM: Final = 10  # tags named but not cached yet, pre-warmed through the cache
MAX_REASON_LENGTH: Final = 256
# no control characters (C0, DEL, C1), no bidirectional overrides or isolates, no zero-width marks
_PLAIN_TEXT = r"^[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+$"


def request_source(stack_name: str) -> str:
    """The ``source`` of a Sync Request for the stack ``stack_name`` (its rule matches only that)."""
    source = f"{REQUEST_SOURCE_PREFIX}{stack_name}"
    if not re.fullmatch(REQUEST_SOURCE_RE, source):
        raise ValueError(f"{stack_name!r} is not a CloudFormation stack name")
    return source


def _path_segments(value: str) -> str:
    """ECR names are ``/``-separated components: no empty, ``.`` or ``..`` one (a path trick)."""
    for segment in value.split("/"):
        if segment in {"", ".", ".."}:
            raise ValueError(f"{segment!r} is not a repository path segment")
    return value


# names or shell patterns over ECR's name characters: '*', '?' and '[...]' only
RepositoryPattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256, pattern=r"^[a-z0-9._/*?\[\]-]+$"),
    AfterValidator(_path_segments),
]
TagPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.*?\[\]-]+$")
]
# the EventBridge envelope, bounded: an id is a UUID (36), an account 12 digits, a region short
EventId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
AccountId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Region = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]
ResourceArn = Annotated[str, StringConstraints(max_length=2048)]
PlainText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON_LENGTH, pattern=_PLAIN_TEXT)]


class BoundedEventBridgeModel(EventBridgeModel):
    """Powertools' EventBridge envelope with every identifier bounded."""

    id: EventId
    account: AccountId
    region: Region
    resources: list[ResourceArn] = Field(max_length=20)


class PullThroughCacheAction(BaseModel):
    """``detail`` of ECR's ``ECR Pull Through Cache Action`` event (fields as documented)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    sync_status: str = Field(alias="sync-status", max_length=64)
    ecr_repository_prefix: str = Field(alias="ecr-repository-prefix", max_length=256)
    repository_name: RepositoryName = Field(alias="repository-name")
    image_tag: TagName = Field(alias="image-tag")
    # informational only: the upstream is always taken from the account's rule, never from here
    upstream_registry_url: str | None = Field(default=None, alias="upstream-registry-url", max_length=256)
    image_digest: str | None = Field(default=None, alias="image-digest", max_length=200)
    failure_code: str | None = Field(default=None, alias="failure-code", max_length=256)
    failure_reason: str | None = Field(default=None, alias="failure-reason", max_length=2048)


class EcrPullThroughCacheEvent(BoundedEventBridgeModel):
    source: Literal["aws.ecr"]
    detail_type: Literal["ECR Pull Through Cache Action"] = Field(alias="detail-type")
    detail: PullThroughCacheAction


class SyncRequest(BaseModel):
    """``detail`` of an on-demand request: ``source: ptc-sync.<stack>``, ``detail-type: Sync Request``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repositories: tuple[RepositoryPattern, ...] = Field(min_length=1, max_length=MAX_REQUEST_PATTERNS)
    tags: tuple[TagPattern, ...] = Field(default=(), max_length=MAX_REQUEST_TAG_PATTERNS)
    action: Literal["check", "refresh"] = "refresh"
    dry_run: bool = False
    # who asked and why, for the log (e.g. "CI: node 22.12.0 released"); plain text, bounded
    reason: PlainText | None = None


class SyncRequestEvent(BoundedEventBridgeModel):
    source: Annotated[str, StringConstraints(pattern=REQUEST_SOURCE_RE)]
    detail_type: Literal["Sync Request"] = Field(alias="detail-type")
    detail: SyncRequest


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


@dataclass
class Selection:
    plan: Plan
    matched_repositories: list[str] = field(default_factory=list)


class RequestPlanner:
    """Turns an event into a run: work items for the checker, the run created in the state table."""

    def __init__(
        self,
        *,
        settings: SyncSettings,
        now: Callable[[], datetime],
        discovery: Discovery,
        ecr: EcrAdapter,
        window: RequestWindow | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.discovery = discovery
        self.ecr = ecr
        self.window = window

    def _foreign(self, account: str) -> str | None:
        """Why an event of ``account`` is refused (the stack's rules match its own account only)."""
        own = self.settings.account_id
        if own and account != own:
            return f"event of account {account}, not this stack's ({own})"
        return None

    def from_ecr_event(self, event: EcrPullThroughCacheEvent) -> Plan:
        action = event.detail
        plan = Plan(new_run_id(self.now()))
        foreign = self._foreign(event.account)
        if foreign:
            plan.errors.append(foreign)
            return plan
        if action.sync_status == SUCCESS:
            # a newly cached (or re-checked) tag: track it from now on and check it at once
            kind = WorkKind.CHECK
        else:
            logger.error(
                "ECR pull-through cache sync failed",
                extra={
                    "repository": action.repository_name,
                    "tag": action.image_tag,
                    "failure_code": action.failure_code,
                    "failure_reason": action.failure_reason,
                },
            )
            kind = WorkKind.WARM  # retry the import (and warm it) through the cache
        if not self.discovery.in_scope(action.repository_name):
            plan.errors.append(f"{action.repository_name}: outside PTC_REPOSITORY_INCLUDE/EXCLUDE")
            return plan
        if rule_for_repository(self.discovery.rules(), action.repository_name) is None:
            plan.errors.append(f"{action.repository_name}: not under any pull-through cache rule in scope")
            return plan
        plan.items.append(
            WorkItem(
                run_id=plan.run_id,
                kind=kind,
                repository=action.repository_name,
                tags=(action.image_tag,),
                source="ecr-event",
            )
        )
        return plan

    def from_request_event(self, event: SyncRequestEvent) -> Selection:
        """``from_request`` for a request of this stack's account only."""
        foreign = self._foreign(event.account)
        limit = self.settings.requests_per_hour
        if not foreign and self.window is not None and not self.window.admit(self.now(), limit):
            foreign = f"more than {limit} Sync Requests this hour (PTC_REQUESTS_PER_HOUR): refused"
        if foreign:
            selection = Selection(Plan(new_run_id(self.now())))
            selection.plan.errors.append(foreign)
            logger.warning("sync request refused", extra={"reason": foreign})
            return selection
        return self.from_request(event.detail)

    def from_request(self, request: SyncRequest) -> Selection:
        plan = Plan(new_run_id(self.now()))
        selection = Selection(plan)
        if request.reason:
            logger.info("sync request", extra={"run_id": plan.run_id, "reason": request.reason})
        rules = self.discovery.rules()
        try:
            repos = [r for r in self.ecr.cached_repositories(rules) if self.discovery.in_scope(r.name)]
        except EcrError as exc:
            plan.errors.append(str(exc))
            return selection
        chosen = [r for r in repos if any(fnmatch.fnmatchcase(r.name, p) for p in request.repositories)]
        selection.matched_repositories = [r.name for r in chosen]
        if len(chosen) > MAX_MATCHED_REPOSITORIES:
            plan.errors.append(
                f"the request matches {len(chosen)} repositories, more than {MAX_MATCHED_REPOSITORIES}: "
                "narrow its patterns (the schedule checks every repository)"
            )
            return selection
        for pattern in request.repositories:
            if not _is_pattern(pattern) and pattern not in selection.matched_repositories:
                plan.errors.append(
                    f"{pattern}: not a cached repository under a pull-through cache rule in scope"
                )
        for repo in chosen:
            try:
                cached = [c.tag for c in self.ecr.tagged_images(repo.name) if not is_backup_tag(c.tag)]
            except EcrError as exc:
                plan.errors.append(str(exc))
                continue
            if request.tags:
                tags = [t for t in cached if any(fnmatch.fnmatchcase(t, p) for p in request.tags)]
                missing = [t for t in request.tags if not _is_pattern(t) and t not in cached]
            else:
                tags, missing = cached, []
            for start in range(0, len(tags), MAX_TAGS_PER_ITEM):
                plan.items.append(
                    WorkItem(
                        run_id=plan.run_id,
                        kind=WorkKind.CHECK,
                        repository=repo.name,
                        tags=tuple(tags[start : start + MAX_TAGS_PER_ITEM]),
                        refresh=request.action == "refresh",
                        dry_run=request.dry_run,
                        source="request",
                    )
                )
            if missing and request.action == "refresh" and not request.dry_run:
                # asked for by name and not cached yet: pre-cache it
                plan.items.append(
                    WorkItem(
                        run_id=plan.run_id,
                        kind=WorkKind.WARM,
                        repository=repo.name,
                        tags=tuple(missing),
                        source="request",
                    )
                )
        return _within_bounds(selection)


def _within_bounds(selection: Selection) -> Selection:
    """The selection, or none of it (with the reason) when it asks for more than one request may."""
    plan = selection.plan
    warm = sum(len(i.tags) for i in plan.items if i.kind == WorkKind.WARM)
    checked = sum(len(i.tags) for i in plan.items if i.kind != WorkKind.WARM)
    problems = []
    if checked > MAX_REQUEST_TAGS:
        problems.append(f"{checked} tags to check, more than {MAX_REQUEST_TAGS}")
    if warm > MAX_REQUEST_PREWARM:
        problems.append(f"{warm} uncached tags to pre-warm, more than {MAX_REQUEST_PREWARM}")
    if problems:
        plan.items.clear()
        plan.errors.append("request refused: " + "; ".join(problems) + " (narrow it)")
    return selection


def parse_request_event(raw: dict[str, Any]) -> EcrPullThroughCacheEvent | SyncRequestEvent:
    """The event as one of the two models (pydantic ValidationError when it is neither)."""
    if raw.get("source") == ECR_SOURCE:
        return EcrPullThroughCacheEvent.model_validate(raw)
    return SyncRequestEvent.model_validate(raw)
