"""What a chat message says, as the sync published it in the SNS message (pure).

The sync publishes one AWS Chatbot custom notification per run (``ptc_sync.report``). The notifier
does not read its markdown back: the same message carries the report structured, as JSON in
``metadata.additionalContext["report"]`` (``report.structured_report``: tone, title, headline,
summary, sections with their lines, weights and hidden counts, next steps). Beside it:

- ``metadata.relatedResources`` are the ARNs of the repositories with notable tags (console links);
- ``metadata.additionalContext`` holds the run facts (run id, dry run, region, account, finish time).

A message without the structured report (another publisher's, or a ptc-sync's from before it) is
not a run report the notifier posts.

Every text read here passes ``ptc_sync.redact`` again (defence in depth: what the sync published
was redacted already) and has its markdown links broken apart and its control and bidi characters
removed; each builder then escapes it for its own dialect.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ptc_sync.redact import defang_links, redact
from ptc_sync.report import (
    EVENT_TYPE,
    STRUCTURED_KEY,
    STRUCTURED_VERSION,
    DescriptionSection,
    RepositoryRef,
    Tone,
    parse_repository_arn,
)

MORE_MARK: Final = "…"

# Unicode for the services that do not read Slack's :shortcodes: (Discord, Teams, Google Chat).
TONE_EMOJI: Final = {
    Tone.CHANGED: "\N{ANTICLOCKWISE DOWNWARDS AND UPWARDS OPEN CIRCLE ARROWS}",
    Tone.ATTENTION: "\N{POLICE CARS REVOLVING LIGHT}",
    Tone.WARNING: "\N{WARNING SIGN}\N{VARIATION SELECTOR-16}",
    Tone.QUIET: "\N{WHITE HEAVY CHECK MARK}",
}

_CONSOLE_HOSTS: Final = {"aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}


class ReportFormatError(ValueError):
    """The SNS message is not a ptc-sync run report; the message says which part is wrong."""


class _Content(BaseModel):
    model_config = ConfigDict(extra="ignore")

    textType: Literal["client-markdown"]
    title: str
    description: str = ""
    nextSteps: list[str] = Field(default_factory=list)


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = ""
    eventType: str = ""
    relatedResources: list[str] = Field(default_factory=list)
    additionalContext: dict[str, str] = Field(default_factory=dict)


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore")

    heading: str
    total: int = Field(ge=0)
    lines: list[str] = Field(default_factory=list)
    weights: list[int] = Field(default_factory=list)
    hidden: int = Field(default=0, ge=0)


class _Structured(BaseModel):
    """``report.StructuredReport``, validated."""

    model_config = ConfigDict(extra="ignore")

    version: Literal[1]
    tone: Tone | None = None
    title: str
    headline: str
    summary: str = ""
    sections: list[_Section] = Field(default_factory=list)
    nextSteps: list[str] = Field(default_factory=list)


class _Notification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["1.0"]
    source: Literal["custom"]
    content: _Content
    metadata: _Metadata


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class ChatReport:
    """One run report, ready for any chat service's builder."""

    title: str  # opens with a Slack :shortcode:
    headline: str  # plain text
    tone: Tone | None
    summary: str
    sections: tuple[DescriptionSection, ...]
    next_steps: tuple[str, ...]
    repositories: tuple[Link, ...]  # ECR console, one per repository with notable tags
    dashboard: Link | None
    run_id: str = ""
    dry_run: bool = False
    region: str = ""
    account_id: str = ""
    finished_at: str = ""

    @property
    def emoji(self) -> str:
        return TONE_EMOJI[self.tone] if self.tone else ""

    @property
    def facts(self) -> tuple[tuple[str, str], ...]:
        """Run, region, account (and dry run) as label/value pairs, for footers and fact sets."""
        facts = [("Run", self.run_id), ("Region", self.region), ("Account", self.account_id)]
        if self.dry_run:
            facts.append(("Mode", "dry run"))
        return tuple((label, value) for label, value in facts if value)


@dataclass(frozen=True, slots=True)
class Detail:
    """How much of a report a message shows: builders shrink it until the payload fits its service."""

    lines_per_section: int
    links: int


# Each level halves what the one before showed; the last is headline, summary, section counts and
# next steps only, which fits every service.
DETAIL_LEVELS: Final = (
    Detail(20, 20),
    Detail(10, 10),
    Detail(5, 5),
    Detail(3, 3),
    Detail(1, 1),
    Detail(0, 0),
)


@dataclass(frozen=True, slots=True)
class Shown:
    """A section (or the link list) as one message shows it: whole lines, then how many were left out."""

    heading: str
    total: int
    lines: tuple[str, ...]
    more: int  # tags (or errors) left out: a line for tags sharing one reason stands for all of them


def shown_sections(report: ChatReport, detail: Detail) -> list[Shown]:
    shown = []
    for section in report.sections:
        lines = section.lines[: detail.lines_per_section]
        dropped = sum(section.weight(index) for index in range(len(lines), len(section.lines)))
        shown.append(Shown(section.heading, section.total, lines, section.hidden + dropped))
    return shown


def shown_links(report: ChatReport, detail: Detail) -> tuple[tuple[Link, ...], int]:
    links = report.repositories[: detail.links]
    return links, len(report.repositories) - len(links)


def more_line(count: int, noun: str = "") -> str:
    return f"{MORE_MARK} and {count} more{' ' + noun if noun else ''}"


def ecr_console_url(repository: RepositoryRef) -> str:
    """The repository's page in the ECR console (the console host follows the ARN's partition)."""
    host = _CONSOLE_HOSTS.get(repository.partition, f"{repository.region}.console.aws.amazon.com")
    name = quote(repository.name, safe="/")
    return (
        f"https://{host}/ecr/repositories/private/{repository.account_id}/{name}?region={repository.region}"
    )


def safe_text(text: str) -> str:
    """Outside text as every builder may show it: redacted, no control or bidi characters, no links."""
    return defang_links(redact(text))


def _safe_section(section: DescriptionSection) -> DescriptionSection:
    return dataclasses.replace(
        section, heading=safe_text(section.heading), lines=tuple(map(safe_text, section.lines))
    )


MAX_PROBLEMS: Final = 10  # a refusal names this many validation problems at most


def _problems(exc: ValidationError) -> str:
    errors = exc.errors()
    problems = "; ".join(
        f"{('.'.join(str(part) for part in err['loc']) or 'message')[:64]}: {err['msg'][:200]}"
        for err in errors[:MAX_PROBLEMS]
    )
    if len(errors) > MAX_PROBLEMS:
        problems += f"; and {len(errors) - MAX_PROBLEMS} more problems"
    return problems


def parse_report(message: str, *, dashboard_url: str | None = None) -> ChatReport:
    """Read one SNS message body; ReportFormatError when it is not a ptc-sync run report."""
    try:
        notification = _Notification.model_validate(json.loads(message))
    except json.JSONDecodeError:
        raise ReportFormatError("the SNS message is not JSON") from None
    except RecursionError:
        raise ReportFormatError("the SNS message is not JSON a report could be (nested too deeply)") from None
    except ValidationError as exc:
        raise ReportFormatError(f"not an AWS Chatbot custom notification: {_problems(exc)}") from None
    metadata = notification.metadata
    if metadata.eventType != EVENT_TYPE:
        raise ReportFormatError(f"eventType is {metadata.eventType[:80]!r}, not {EVENT_TYPE!r}")
    context = metadata.additionalContext
    if STRUCTURED_KEY not in context:
        raise ReportFormatError(f"additionalContext.{STRUCTURED_KEY}: missing (no structured report)")
    try:
        report = _Structured.model_validate_json(context[STRUCTURED_KEY])
    except ValidationError as exc:
        problems = _problems(exc)
        if f"version: Input should be {STRUCTURED_VERSION}" in problems:
            problems = f"version: not {STRUCTURED_VERSION}"
        raise ReportFormatError(f"additionalContext.{STRUCTURED_KEY}: {problems}") from None
    repositories = [parse_repository_arn(arn) for arn in metadata.relatedResources]
    return ChatReport(
        title=safe_text(report.title),
        headline=safe_text(report.headline),
        tone=report.tone,
        summary=safe_text(report.summary),
        sections=tuple(
            _safe_section(
                DescriptionSection(
                    section.heading,
                    section.total,
                    tuple(section.lines),
                    section.hidden,
                    tuple(section.weights),
                )
            )
            for section in report.sections
        ),
        next_steps=tuple(safe_text(step) for step in report.nextSteps),
        repositories=tuple(Link(ref.name, ecr_console_url(ref)) for ref in repositories if ref is not None),
        dashboard=Link("CloudWatch dashboard", dashboard_url) if dashboard_url else None,
        run_id=safe_text(context.get("runId", "")),
        dry_run=context.get("dryRun") == "true",
        region=safe_text(context.get("region", "")),
        account_id=safe_text(context.get("account", "")),
        finished_at=safe_text(context.get("finishedAt", "")),
    )
