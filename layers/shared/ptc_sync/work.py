"""Work items: what the planner and the request handler send the checker over SQS.

A message names a cached repository and tags, never a host: the checker re-reads the repository from
ECR and maps it to its upstream through the account's pull-through cache rules. Every field is
validated (Powertools Parser / pydantic); unknown fields are refused. Repository names and tags
follow ``ptc_sync.names``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from ptc_sync.names import (
    REPOSITORY_MAX,
    REPOSITORY_MIN,
    REPOSITORY_PATTERN,
    TAG_PATTERN,
    TAG_RE,  # noqa: F401 - re-exported: tests check backup names with it
)
from ptc_sync.semver import check_variant, parse_range

RUN_ID_RE: Final = r"^[A-Za-z0-9_-]{1,80}$"
MAX_TAGS_PER_ITEM: Final = 100  # DescribeImages takes 100 image ids; also keeps messages small
# a scan item names up to this many repositories: the per-item costs (idempotency record, the run
# counter) are shared by every tag of them, while the checker's share stays bounded (MAX_SCAN_TARGETS)
MAX_REPOSITORIES_PER_ITEM: Final = 50
MAX_SCAN_TARGETS: Final = 500  # tags one scan item checks itself; the rest go on as check items

RepositoryName = Annotated[
    str, StringConstraints(min_length=REPOSITORY_MIN, max_length=REPOSITORY_MAX, pattern=REPOSITORY_PATTERN)
]
TagName = Annotated[str, StringConstraints(pattern=TAG_PATTERN)]
RunId = Annotated[str, StringConstraints(pattern=RUN_ID_RE)]


class WorkKind(StrEnum):
    CHECK = "check"  # compare, and refresh when stale (unless refresh is false or dry run)
    # list the named repositories' tags in scope and check them (the schedule: the planner lists
    # repositories, never tags; a repository with more than MAX_SCAN_TARGETS tags goes on as checks)
    SCAN = "scan"
    WARM = "warm"  # make the tags cached and warm (pre-warm list, retry of a failed ECR sync)


class DiscoverySpec(BaseModel):
    """New-tag discovery for one cached repository: a regex or a semver range, bounded per run.

    With ``semver``, ``variant`` picks the image flavour (``"slim"``: ``3.13.2-slim``; ``"*"``: every
    flavour; unset: plain tags only) and ``include_prerelease`` admits pre-releases the range does not
    name (see ptc_sync.semver)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: RepositoryName
    pattern: str | None = Field(default=None, max_length=200)
    semver: str | None = Field(default=None, max_length=200)
    max_new: int = Field(default=3, ge=1, le=50)
    variant: str | None = Field(default=None, max_length=64)
    include_prerelease: bool = False

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("semver")
    @classmethod
    def _range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_range(value)  # raises ValueError with the reason
        return value

    @field_validator("variant")
    @classmethod
    def _variant(cls, value: str | None) -> str | None:
        return check_variant(value) if value is not None else None

    def model_post_init(self, __context: object) -> None:
        if (self.pattern is None) == (self.semver is None):
            raise ValueError(f"{self.repository}: give exactly one of pattern or semver")
        if self.pattern is not None and (self.variant is not None or self.include_prerelease):
            raise ValueError(f"{self.repository}: variant and include_prerelease go with semver, not pattern")


class WorkItem(BaseModel):
    """One SQS message body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    run_id: RunId
    kind: WorkKind
    repository: RepositoryName
    tags: tuple[TagName, ...] = Field(default=(), max_length=MAX_TAGS_PER_ITEM)
    refresh: bool = True
    dry_run: bool = False
    discovery: DiscoverySpec | None = None
    source: Literal["schedule", "ecr-event", "request", "prewarm"] = "schedule"
    # scan items only: the repositories after ``repository`` (together at most MAX_REPOSITORIES_PER_ITEM)
    more_repositories: tuple[RepositoryName, ...] = Field(
        default=(), max_length=MAX_REPOSITORIES_PER_ITEM - 1
    )
    # a check item a scan split off: which share of the scan it is (so a retried scan that queues its
    # shares again sends the same bodies, and idempotency on the body counts each share once)
    part: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,16}:[0-9]{1,6}$")] | None = None
    # scan items only: tags of its one repository this run handles in another item (pre-warms again)
    left_out: tuple[TagName, ...] = Field(default=(), max_length=MAX_TAGS_PER_ITEM)

    @model_validator(mode="after")
    def _scan_fields(self) -> WorkItem:
        if self.kind is WorkKind.SCAN and self.tags:
            raise ValueError("tags: a scan item names repositories only (the checker lists their tags)")
        if self.kind is not WorkKind.SCAN and (self.more_repositories or self.left_out):
            raise ValueError("more_repositories, left_out: only scan items carry them")
        if self.left_out and self.more_repositories:
            raise ValueError("left_out: a scan item that leaves tags out names one repository")
        return self

    @property
    def repositories(self) -> tuple[str, ...]:
        return (self.repository, *self.more_repositories)
