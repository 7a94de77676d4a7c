"""What a chat message says, as the sync published it in the SNS message (pure).

The sync publishes one AWS Chatbot custom notification per run (``ptc_sync.report``). The notifier
does not read its markdown back: the same message carries the report structured, as JSON in
``metadata.additionalContext["report"]`` (``report.structured_report``: tone, title, headline,
summary, sections with their lines, weights and hidden counts, next steps). Beside it:

- ``metadata.relatedResources`` are the ARNs of the repositories with notable tags (console links);
- ``metadata.additionalContext`` holds the run facts (run id, dry run, region, account, finish time).

The SNS event is validated in one pass, envelope and message together, with Powertools' own models
extended as its docs show (``ReportEventModel``: an ``SnsModel`` whose records' ``Message`` is read as
``Json[ReportMessage]``, and the structured report inside it as ``Json[...]`` too). The record's
``TopicArn`` (only the report topic is posted) and ``MessageId`` (a retry does not post twice to a
channel that took the message) stay in the model, which is why it is not ``SnsEnvelope`` (it keeps
the message only). A message that is not a ptc-sync run report (another publisher's, or a
ptc-sync's from before the structured report) does not fail the event: it is read as ``NotAReport``
with the reason, so the record is skipped (or refused) and logged, and the event's other records
are not lost with it.

Every text read here passes ``ptc_sync.redact`` again (defence in depth: what the sync published
was redacted already) and has its markdown links broken apart and its control and bidi characters
removed; each builder then escapes it for its own dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, Literal
from urllib.parse import quote

from aws_lambda_powertools.utilities.parser.models import SnsModel, SnsNotificationModel, SnsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, PlainValidator, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from ptc_sync.redact import defang_links, redact
from ptc_sync.report import (
    EVENT_TYPE,
    STRUCTURED_KEY,
    STRUCTURED_VERSION,
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


class _Content(BaseModel):
    model_config = ConfigDict(extra="ignore")

    textType: Literal["client-markdown"]
    title: str
    description: str = ""
    nextSteps: list[str] = Field(default_factory=list)


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


class _Context(BaseModel):
    """``metadata.additionalContext`` (Chatbot's map of strings): the structured report and run facts."""

    model_config = ConfigDict(extra="ignore")

    report: Json[_Structured] = Field(alias=STRUCTURED_KEY)
    runId: str = ""
    dryRun: str = ""
    region: str = ""
    account: str = ""
    finishedAt: str = ""


class _Metadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    summary: str = ""
    eventType: str = Field(default="", validate_default=True)
    relatedResources: list[str] = Field(default_factory=list)
    additionalContext: _Context

    @field_validator("eventType")
    @classmethod
    def _a_run_report(cls, value: str) -> str:
        if value != EVENT_TYPE:
            raise ValueError(f"eventType is {value[:80]!r}, not {EVENT_TYPE!r}")
        return value


class ReportMessage(BaseModel):
    """The SNS message of a run report: an AWS Chatbot custom notification carrying the structured report."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["1.0"]
    source: Literal["custom"]
    content: _Content
    metadata: _Metadata


@dataclass(frozen=True, slots=True)
class NotAReport:
    """An SNS message that is not a ptc-sync run report, and why (bounded: no input value echoed)."""

    reason: str


MAX_PROBLEMS: Final = 10  # a reason names this many validation problems at most
_CONTEXT: Final = ("metadata", "additionalContext")
_REPORT: Final = (*_CONTEXT, STRUCTURED_KEY)


def _problem(err: ErrorDetails, strip: int) -> str:
    where = ".".join(str(part) for part in err["loc"][strip:])[:64] or ("" if strip else "message")
    return f"{where}: {err['msg'][:200]}" if where else err["msg"][:200]


def _problems(errors: Sequence[ErrorDetails], *, strip: int = 0) -> str:
    """``where: what`` per problem (``where`` without its first ``strip`` parts), input values left out."""
    problems = "; ".join(_problem(err, strip) for err in errors[:MAX_PROBLEMS])
    if len(errors) > MAX_PROBLEMS:
        problems += f"; and {len(errors) - MAX_PROBLEMS} more problems"
    return problems


def _reason(exc: ValidationError) -> str:
    """Why a message is not a run report, the first that applies: not JSON; not a Chatbot custom
    notification; another event type; no (or a bad) structured report."""
    errors = exc.errors()
    unreadable = [err for err in errors if err["type"] == "json_invalid" and not err["loc"]]
    if unreadable:
        nested = "recursion limit" in unreadable[0]["msg"]
        return "the SNS message is not JSON" + (" a report could be (nested too deeply)" if nested else "")
    event_type = [err for err in errors if err["loc"] == ("metadata", "eventType")]
    structured = [err for err in errors if err["loc"][: len(_REPORT)] == _REPORT or err["loc"] == _CONTEXT]
    chatbot = [err for err in errors if err not in event_type and err not in structured]
    if chatbot:
        return f"not an AWS Chatbot custom notification: {_problems(chatbot)}"
    if event_type:
        return str(event_type[0].get("ctx", {}).get("error", event_type[0]["msg"]))
    return f"additionalContext.{STRUCTURED_KEY}: {_structured_problems(structured)}"


def _structured_problems(errors: Sequence[ErrorDetails]) -> str:
    if any(err["loc"] in (_CONTEXT, _REPORT) and err["type"] == "missing" for err in errors):
        return "missing (no structured report)"
    if any(err["loc"][len(_REPORT) :] == ("version",) for err in errors):
        return f"version: not {STRUCTURED_VERSION}"
    return _problems(errors, strip=len(_REPORT))


def read_message(message: object) -> ReportMessage | NotAReport:
    """One SNS ``Message`` read as a run report (``ReportMessage``: JSON and validation in one pass), or
    ``NotAReport`` with the reason. A Message that is not a string is the envelope's problem: it fails."""
    if not isinstance(message, str):
        raise PydanticCustomError("string_type", "Input should be a valid string")
    try:
        return ReportMessage.model_validate_json(message)
    except ValidationError as exc:
        return NotAReport(_reason(exc))


class ReportNotificationModel(SnsNotificationModel):
    """Powertools' SNS notification, its ``Message`` read as a run report in the same validation."""

    Message: Annotated[ReportMessage | NotAReport, PlainValidator(read_message)]  # type: ignore[assignment]


class ReportRecordModel(SnsRecordModel):
    Sns: ReportNotificationModel


class ReportEventModel(SnsModel):
    """The SNS → Lambda event of the report topic, envelope and messages validated in one pass."""

    Records: list[ReportRecordModel]  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class ChatSection:
    """One section of the structured report: its heading and total, the lines kept (plain text, each
    builder escapes it), how many tags (or errors) each line stands for, and how many were left out."""

    heading: str
    total: int
    lines: tuple[str, ...]
    hidden: int = 0
    weights: tuple[int, ...] = ()  # a line not named: 1

    def weight(self, index: int) -> int:
        return self.weights[index] if index < len(self.weights) else 1


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
    sections: tuple[ChatSection, ...]
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


def chat_report(message: ReportMessage, *, dashboard_url: str | None = None) -> ChatReport:
    """The run report a message carries, its outside text made safe for every builder."""
    context = message.metadata.additionalContext
    report = context.report
    repositories = [parse_repository_arn(arn) for arn in message.metadata.relatedResources]
    return ChatReport(
        title=safe_text(report.title),
        headline=safe_text(report.headline),
        tone=report.tone,
        summary=safe_text(report.summary),
        sections=tuple(
            ChatSection(
                safe_text(section.heading),
                section.total,
                tuple(map(safe_text, section.lines)),
                section.hidden,
                tuple(section.weights),
            )
            for section in report.sections
        ),
        next_steps=tuple(safe_text(step) for step in report.nextSteps),
        repositories=tuple(Link(ref.name, ecr_console_url(ref)) for ref in repositories if ref is not None),
        dashboard=Link("CloudWatch dashboard", dashboard_url) if dashboard_url else None,
        run_id=safe_text(context.runId),
        dry_run=context.dryRun == "true",
        region=safe_text(context.region),
        account_id=safe_text(context.account),
        finished_at=safe_text(context.finishedAt),
    )
