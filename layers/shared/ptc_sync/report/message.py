"""The per-run SNS message: an AWS Chatbot custom notification built from a RunReport (``chat_notification``:
content and metadata), the plain-text email beside it, and the message attributes subscription filter
policies read. Pure: no I/O.

The chat notifier reads the report structured, not the markdown back: ``structured_report`` (tone,
title, headline, summary, sections with their lines, weights and hidden counts, next steps; text
unescaped) travels as JSON in ``metadata.additionalContext["report"]``. Chatbot's schema defines no
top-level field of our own, and ``additionalContext`` is its map of customer-provided string keys and
values (the documented place for data of our own), so the message stays a valid custom notification.

``notify`` publishes what ``build_notification`` returns, with ``MessageStructure=json``: the Chatbot
JSON as ``default`` (what Chatbot, the chat notifier's Lambda subscription and queues receive) and
the plain text as ``email``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Final, Literal, NamedTuple, TypedDict

from ptc_sync.models import (
    Outcome,
    RunReport,
)
from ptc_sync.report.model import (
    EVENT_TYPE,
    MAX_DESCRIPTION_CHARS,
    MAX_LINES_PER_SECTION,
    MAX_RELATED_RESOURCES,
    RUN_ERROR_KIND,
    SERVICE,
    ReportKind,
    _emoji,
    _rule_prefixes,
    headline,
    notable_kinds,
    subject,
    title,
)
from ptc_sync.report.text import (
    _MARKDOWN,
    _description,
    chat_sections,
    email_text,
    next_steps,
    unescape,
)

STRUCTURED_KEY: Final = "report"  # additionalContext key of ``structured_report``'s JSON
STRUCTURED_VERSION: Final = 1


class StructuredSection(TypedDict):
    heading: str
    total: int
    lines: list[str]
    weights: list[int]  # how many tags (or run errors) each line stands for
    hidden: int  # left out of the lines


class StructuredReport(TypedDict):
    """What a chat message shows of a run, as data: nothing a reader has to parse back."""

    version: int
    kind: str
    tone: str  # a Tone value
    title: str
    headline: str
    summary: str
    sections: list[StructuredSection]
    nextSteps: list[str]


def structured_report(
    report: RunReport,
    *,
    max_lines_per_section: int = MAX_LINES_PER_SECTION,
    kind: ReportKind = ReportKind.RUN,
) -> StructuredReport:
    """The report the chat notifier receives: the chat description's summary and sections (the same
    lines, unescaped: each webhook builder escapes for its own dialect) and the next steps."""
    summary, sections = chat_sections(report, max_lines_per_section=max_lines_per_section, kind=kind)
    truncated = any(section.hidden for section in sections)
    return {
        "version": STRUCTURED_VERSION,
        "kind": kind.value,
        "tone": _emoji(report).value,
        "title": title(report, kind=kind),
        "headline": headline(report, kind=kind),
        "summary": unescape(summary),
        "sections": [
            {
                "heading": section.heading,
                "total": section.total,
                "lines": [unescape(line) for line in section.lines],
                "weights": list(section.weights),
                "hidden": section.hidden,
            }
            for section in sections
        ],
        "nextSteps": [unescape(step) for step in next_steps(report, truncated=truncated)],
    }


class ChatContent(TypedDict):
    textType: Literal["client-markdown"]
    title: str
    description: str
    nextSteps: list[str]
    keywords: list[str]


class ChatMetadata(TypedDict):
    threadId: str
    summary: str
    eventType: str
    relatedResources: list[str]
    additionalContext: dict[str, str]


class ChatNotification(TypedDict):
    version: Literal["1.0"]
    source: Literal["custom"]
    id: str
    content: ChatContent
    metadata: ChatMetadata


@dataclass(frozen=True, slots=True)
class MessageAttribute:
    """One SNS message attribute; ``value`` is already in SNS's string form (JSON for String.Array)."""

    data_type: Literal["String", "String.Array", "Number"]
    value: str


@dataclass(frozen=True, slots=True)
class Notification:
    """Everything one SNS Publish call needs."""

    subject: str
    message: str  # the Chatbot custom notification (JSON)
    attributes: Mapping[str, MessageAttribute]
    email: str = ""  # the plain-text rendering for email subscribers

    def sns_message(self) -> str:
        """The Message of a ``MessageStructure=json`` publish: Chatbot JSON by default, text by email."""
        return json.dumps({"default": self.message, "email": self.email or self.message}, ensure_ascii=False)


def build_notification(
    report: RunReport,
    *,
    max_lines_per_section: int = MAX_LINES_PER_SECTION,
    kind: ReportKind = ReportKind.RUN,
) -> Notification:
    payload = chat_notification(report, max_lines_per_section=max_lines_per_section, kind=kind)
    return Notification(
        subject=subject(report, kind=kind),
        message=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        attributes=message_attributes(report),
        email=email_text(report, kind=kind),
    )


def chat_notification(
    report: RunReport,
    *,
    max_lines_per_section: int = MAX_LINES_PER_SECTION,
    kind: ReportKind = ReportKind.RUN,
) -> ChatNotification:
    text, truncated = _description(report, _MARKDOWN, max_lines_per_section, MAX_DESCRIPTION_CHARS, kind)
    return {
        "version": "1.0",
        "source": "custom",
        "id": report.run_id,
        "content": {
            "textType": "client-markdown",
            "title": title(report, kind=kind),
            "description": text,
            "nextSteps": next_steps(report, truncated=truncated),
            "keywords": keywords(report, kind=kind),
        },
        "metadata": {
            "threadId": thread_id(report),
            "summary": headline(report, kind=kind),
            "eventType": EVENT_TYPE,
            "relatedResources": related_resources(report),
            "additionalContext": {
                **additional_context(report, kind=kind),
                STRUCTURED_KEY: json.dumps(
                    structured_report(report, max_lines_per_section=max_lines_per_section, kind=kind),
                    ensure_ascii=False,
                    separators=(",", ":"),
                ),
            },
        },
    }


def keywords(report: RunReport, *, kind: ReportKind = ReportKind.RUN) -> list[str]:
    words = [SERVICE]
    if report.region:
        words.append(report.region)
    if report.dry_run:
        words.append("dry-run")
    if kind is ReportKind.FIRST_RUN:
        words.append("first-run")
    words.extend(notable_kinds(report))
    return words


def thread_id(report: RunReport) -> str:
    """One thread per account, region and UTC day (a constant id would make one endless thread)."""
    day = report.finished_at.astimezone(UTC).date().isoformat()
    return "-".join(part for part in (SERVICE, report.account_id, report.region, day) if part)


def repository_arn(region: str, account_id: str, repository: str) -> str:
    return f"arn:{_partition(region)}:ecr:{region}:{account_id}:repository/{repository}"


class RepositoryRef(NamedTuple):
    partition: str
    region: str
    account_id: str
    name: str


_REPOSITORY_ARN_RE: Final = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):ecr:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):repository/(?P<name>[a-z0-9._/-]+)$"
)


def parse_repository_arn(arn: str) -> RepositoryRef | None:
    """The inverse of ``repository_arn`` (None for anything that is not an ECR repository ARN)."""
    match = _REPOSITORY_ARN_RE.fullmatch(arn)
    if match is None:
        return None
    return RepositoryRef(match["partition"], match["region"], match["account"], match["name"])


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def related_resources(report: RunReport) -> list[str]:
    """ARNs of the repositories with notable tags (none when the report lacks account or region)."""
    if not (report.region and report.account_id):
        return []
    repositories = sorted({result.repository for result in report.results if result.outcome.notable})
    return [
        repository_arn(report.region, report.account_id, name)
        for name in repositories[:MAX_RELATED_RESOURCES]
    ]


def additional_context(report: RunReport, *, kind: ReportKind = ReportKind.RUN) -> dict[str, str]:
    context = {
        "kind": kind.value,
        "runId": report.run_id,
        "dryRun": _bool(report.dry_run),
        "startedAt": report.started_at.isoformat(),
        "finishedAt": report.finished_at.isoformat(),
        "tagsChecked": str(report.tags_checked),
    }
    if report.account_id:
        context["account"] = report.account_id
    if report.region:
        context["region"] = report.region
    for outcome in Outcome:
        count = report.count(outcome)
        if count:
            context[outcome.value] = str(count)
    if report.errors:
        context[RUN_ERROR_KIND] = str(len(report.errors))
    return context


# --- SNS message attributes (for subscription filter policies) ------------------------------


def message_attributes(report: RunReport) -> dict[str, MessageAttribute]:
    return {
        "outcomes": MessageAttribute("String.Array", json.dumps(notable_kinds(report))),
        "rulePrefixes": MessageAttribute("String.Array", json.dumps(_rule_prefixes(report))),
        "dryRun": MessageAttribute("String", _bool(report.dry_run)),
        "refreshed": MessageAttribute("Number", str(report.count(Outcome.REFRESHED))),
        "failed": MessageAttribute("Number", str(report.count(Outcome.REFRESH_FAILED))),
    }


def _bool(value: bool) -> str:
    return "true" if value else "false"
