"""The per-run SNS message: an AWS Chatbot custom notification built from a RunReport.

Pure: no I/O. ``notify`` publishes what ``build_notification`` returns.

The chat description lists every notable tag one line each, section by section; a section longer
than ``max_lines_per_section`` ends with "… and N more" instead, so a run over thousands of tags
stays a short, readable message far below SNS's 256 KB.

Text that came from outside (reasons, run errors, platforms, tag names) is redacted
(``ptc_sync.redact``), kept to one bounded line and escaped for the chats AWS Chatbot renders it in:
``&``, ``<`` and ``>`` as entities (Slack: ``<!channel>`` must not ping a whole channel) and markdown
links broken apart (Teams: a label must not hide where a link goes). ``parse_description`` undoes
the escaping, so the webhook builders escape for their own dialect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, NamedTuple, TypedDict

from ptc_sync.models import Outcome, RunReport, TagResult, short_digest
from ptc_sync.redact import defang_links, redact

SERVICE: Final = "ptc-sync"
EVENT_TYPE: Final = "SyncRunReport"
MAX_LINES_PER_SECTION: Final = 20
MAX_RELATED_RESOURCES: Final = 20
MAX_PLATFORMS_SHOWN: Final = 4
MAX_REASON_CHARS: Final = 200
# SNS: "less than 100 characters", ASCII, no line breaks (email subscribers see it).
MAX_SUBJECT_CHARS: Final = 99

# Outcomes where "cached → upstream" digests say what changed (or would have).
_DIGEST_CHANGE_OUTCOMES: Final = frozenset(
    {Outcome.REFRESHED, Outcome.STALE, Outcome.REFRESH_FAILED, Outcome.IMMUTABLE}
)
_PLATFORM_OUTCOMES: Final = frozenset({Outcome.REFRESHED, Outcome.STALE})
_ATTENTION_OUTCOMES: Final = frozenset({Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR})
_CHANGE_OUTCOMES: Final = frozenset({Outcome.REFRESHED, Outcome.STALE})
RUN_ERROR_KIND: Final = "run_error"  # the `outcomes` attribute's value for run-level errors


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
    message: str
    attributes: Mapping[str, MessageAttribute]


def should_publish(report: RunReport, always: bool) -> bool:
    """True when the run did something worth telling (any non-fresh, non-skipped tag, any run error)."""
    return always or report.notable


def build_notification(
    report: RunReport, *, max_lines_per_section: int = MAX_LINES_PER_SECTION
) -> Notification:
    payload = chat_notification(report, max_lines_per_section=max_lines_per_section)
    return Notification(
        subject=subject(report),
        message=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        attributes=message_attributes(report),
    )


def chat_notification(
    report: RunReport, *, max_lines_per_section: int = MAX_LINES_PER_SECTION
) -> ChatNotification:
    return {
        "version": "1.0",
        "source": "custom",
        "id": report.run_id,
        "content": {
            "textType": "client-markdown",
            "title": title(report),
            "description": description(report, max_lines_per_section=max_lines_per_section),
            "nextSteps": next_steps(report),
            "keywords": keywords(report),
        },
        "metadata": {
            "threadId": thread_id(report),
            "summary": headline(report),
            "eventType": EVENT_TYPE,
            "relatedResources": related_resources(report),
            "additionalContext": additional_context(report),
        },
    }


# --- headline, title, subject ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Phrase:
    count: int
    text: str
    counts_tags: bool = True  # reads as "N tags <text>"


RECOVERED: Final = "recovered"  # TagResult.details key: "true" on a fresh tag whose failure ended


def is_recovery(result: TagResult) -> bool:
    """A fresh result that ends a failure the run state alerted on (worth telling, unlike fresh)."""
    return result.outcome is Outcome.FRESH and result.details.get(RECOVERED) == "true"


def _phrases(report: RunReport) -> list[_Phrase]:
    stale_text = "would be refreshed" if report.dry_run else "stale"
    candidates = [
        _Phrase(report.count(Outcome.REFRESHED), "refreshed"),
        _Phrase(report.count(Outcome.STALE), stale_text),
        _Phrase(report.count(Outcome.REFRESH_FAILED), "failed"),
        _Phrase(report.count(Outcome.UPSTREAM_ERROR), "upstream error", counts_tags=False),
        _Phrase(report.count(Outcome.UPSTREAM_MISSING), "missing upstream"),
        _Phrase(report.count(Outcome.RATE_LIMITED), "rate-limited"),
        _Phrase(report.count(Outcome.IMMUTABLE), "immutable"),
        _Phrase(sum(1 for r in report.results if is_recovery(r)), "recovered"),
        _Phrase(len(report.errors), "run error", counts_tags=False),
    ]
    return [phrase for phrase in candidates if phrase.count]


def _render_phrases(phrases: Sequence[_Phrase]) -> list[str]:
    """``3 tags refreshed, 1 failed``: the first phrase about tags names them, the rest read on."""
    rendered = []
    tags_named = False
    for phrase in phrases:
        if not phrase.counts_tags:
            rendered.append(f"{phrase.count} {_plural(phrase.text, phrase.count)}")
        elif not tags_named:
            rendered.append(f"{phrase.count} {_plural('tag', phrase.count)} {phrase.text}")
            tags_named = True
        else:
            rendered.append(f"{phrase.count} {phrase.text}")
    return rendered


def _plural(noun: str, count: int) -> str:
    return noun if count == 1 else f"{noun}s"


def _quiet_phrase(report: RunReport) -> str:
    checked = len(report.results)
    return f"{checked} {_plural('tag', checked)} checked, nothing to refresh"


def _service_label(report: RunReport) -> str:
    return f"{SERVICE} (dry run)" if report.dry_run else SERVICE


def headline(report: RunReport) -> str:
    """``ptc-sync: 3 tags refreshed, 1 failed`` (plain text, ASCII)."""
    parts = _render_phrases(_phrases(report)) or [_quiet_phrase(report)]
    return f"{_service_label(report)}: {', '.join(parts)}"


def title(report: RunReport) -> str:
    return f"{_emoji(report)} {headline(report)}"


class Tone(StrEnum):
    """The emoji a title opens with, i.e. what kind of run it was. Chat renderers map it to their own
    colours and emoji (``tone_of`` reads it back from a title)."""

    CHANGED = ":arrows_counterclockwise:"
    ATTENTION = ":rotating_light:"
    WARNING = ":warning:"
    QUIET = ":white_check_mark:"


def _emoji(report: RunReport) -> Tone:
    present = {result.outcome for result in report.results}
    if present & _CHANGE_OUTCOMES:
        return Tone.CHANGED
    if report.errors or present & _ATTENTION_OUTCOMES:
        return Tone.ATTENTION
    if report.notable:
        return Tone.WARNING
    return Tone.QUIET


def tone_of(title_text: str) -> Tone | None:
    """The Tone a ``title`` opens with; None for a title this module did not build."""
    first = title_text.split(" ", 1)[0]
    return Tone(first) if first in Tone else None


def subject(report: RunReport) -> str:
    """The email subject: the headline, cut back to whole phrases when it would exceed SNS's limit."""
    prefix = f"{_service_label(report)}: "
    parts = _render_phrases(_phrases(report)) or [_quiet_phrase(report)]
    ellipsis = ", ..."
    kept: list[str] = []
    for index, part in enumerate(parts):
        candidate = prefix + ", ".join([*kept, part])
        is_last = index == len(parts) - 1
        if len(candidate) + (0 if is_last else len(ellipsis)) > MAX_SUBJECT_CHARS:
            return prefix + ", ".join(kept) + ellipsis if kept else candidate[: MAX_SUBJECT_CHARS - 3] + "..."
        kept.append(part)
    return prefix + ", ".join(kept)


# --- description ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Section:
    outcome: Outcome
    heading: str


def _sections(report: RunReport) -> list[_Section]:
    """Most urgent first: what needs a human, then what changed."""
    return [
        _Section(Outcome.REFRESH_FAILED, "Refresh failed"),
        _Section(Outcome.UPSTREAM_ERROR, "Upstream errors"),
        _Section(Outcome.RATE_LIMITED, "Rate-limited"),
        _Section(Outcome.UPSTREAM_MISSING, "Missing upstream"),
        _Section(Outcome.IMMUTABLE, "Immutable (not refreshed)"),
        _Section(Outcome.REFRESHED, "Refreshed"),
        _Section(Outcome.STALE, "Would refresh" if report.dry_run else "Stale (not refreshed)"),
    ]


def description(report: RunReport, *, max_lines_per_section: int = MAX_LINES_PER_SECTION) -> str:
    blocks = [_run_summary(report)]
    if report.errors:
        blocks.append(
            _section_block(
                "Run errors", [f"• {outside_text(error)}" for error in report.errors], max_lines_per_section
            )
        )
    for section in _sections(report):
        results = [result for result in report.results if result.outcome is section.outcome]
        if results:
            blocks.append(_section_block(section.heading, map(tag_line, results), max_lines_per_section))
    recovered = [result for result in report.results if is_recovery(result)]
    if recovered:
        blocks.append(_section_block("Recovered", map(tag_line, recovered), max_lines_per_section))
    budget_lines = _rate_limit_lines(report)
    if budget_lines:
        blocks.append(_section_block("Upstream pull budget", budget_lines, max_lines_per_section))
    return "\n\n".join(blocks)


def _run_summary(report: RunReport) -> str:
    checked = len(report.results)
    fresh = report.count(Outcome.FRESH)
    rules = len({result.rule_prefix for result in report.results})
    seconds = max(0, round((report.finished_at - report.started_at).total_seconds()))
    summary = (
        f"Checked {checked} {_plural('tag', checked)} ({fresh} fresh) "
        f"under {rules} {_plural('rule', rules)} in {seconds} s."
    )
    if report.dry_run:
        summary += " Dry run: nothing was changed."
    return summary


def _section_block(heading: str, lines: Iterable[str], max_lines: int) -> str:
    all_lines = list(lines)
    shown = all_lines[:max_lines]
    hidden = len(all_lines) - len(shown)
    if hidden:
        shown.append(f"… and {hidden} more")
    return "\n".join([f"*{heading}* ({len(all_lines)})", *shown])


@dataclass(frozen=True, slots=True)
class DescriptionSection:
    """One ``*heading* (total)`` block of a description, read back: its lines without the bullet, and how
    many more the sync left out (``… and N more``)."""

    heading: str
    total: int
    lines: tuple[str, ...]
    hidden: int = 0


@dataclass(frozen=True, slots=True)
class ParsedDescription:
    summary: str
    sections: tuple[DescriptionSection, ...]


_HEADING_RE: Final = re.compile(r"^\*(?P<heading>[^*\n]+)\* \((?P<total>\d+)\)$")
_MORE_RE: Final = re.compile(r"^… and (?P<hidden>\d+) more$")
_BULLET: Final = "• "


def parse_description(text: str) -> ParsedDescription:
    """The inverse of ``description``, for readers of the SNS message (the chat notifier).

    The grammar lives here, next to the writer: blocks separated by a blank line, the first the run
    summary, each other a heading line, bullet lines and an optional ``… and N more``. A block that does
    not follow it is kept as a section without heading, its lines as they are, so nothing is dropped.
    """
    summary, *blocks = text.split("\n\n")
    return ParsedDescription(
        summary=unescape(summary), sections=tuple(_parse_block(block) for block in blocks)
    )


def _parse_block(block: str) -> DescriptionSection:
    first, *rest = block.split("\n")
    heading = _HEADING_RE.fullmatch(first)
    if heading is None:
        return DescriptionSection(heading="", total=len(rest) + 1, lines=tuple(map(unescape, (first, *rest))))
    hidden = 0
    if rest and (more := _MORE_RE.fullmatch(rest[-1])):
        hidden = int(more["hidden"])
        rest = rest[:-1]
    bullets = tuple(unescape(line.removeprefix(_BULLET)) for line in rest)
    return DescriptionSection(heading["heading"], int(heading["total"]), bullets, hidden)


def tag_line(result: TagResult) -> str:
    """``• `repo:tag` `0123456789ab` → `fedcba987654` (linux/amd64, linux/arm64)``, then ``: reason``."""
    parts = [f"`{escape(result.image)}`"]
    if result.outcome in _DIGEST_CHANGE_OUTCOMES and (result.cached_digest or result.upstream_digest):
        parts.append(f"{_short(result.cached_digest)} → {_short(result.upstream_digest)}")
    if result.outcome in _PLATFORM_OUTCOMES and result.platforms:
        parts.append(f"({_platform_list(result.platforms)})")
    line = "• " + " ".join(parts)
    reason = outside_text(result.reason)
    return f"{line}: {reason}" if reason else line


def _short(digest: str | None) -> str:
    return f"`{short_digest(digest)}`" if digest else "`?`"


def _platform_list(platforms: Sequence[str]) -> str:
    shown = ", ".join(outside_text(platform) for platform in platforms[:MAX_PLATFORMS_SHOWN])
    hidden = len(platforms) - MAX_PLATFORMS_SHOWN
    return f"{shown} +{hidden} more" if hidden > 0 else shown


def _one_line(text: str) -> str:
    """Collapse whitespace (a reason must not break the one-line-per-tag layout) and bound its length."""
    flat = " ".join(redact(text, limit=None).split())
    return flat if len(flat) <= MAX_REASON_CHARS else flat[: MAX_REASON_CHARS - 1].rstrip() + "…"


_ESCAPES: Final = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as the entities Slack's markdown wants, markdown links broken apart."""
    for char, entity in _ESCAPES:
        text = text.replace(char, entity)
    return defang_links(text)


def unescape(text: str) -> str:
    """The inverse of ``escape``'s entities (readers render the text in their own dialect)."""
    for char, entity in reversed(_ESCAPES):
        text = text.replace(entity, char)
    return text


def outside_text(text: str) -> str:
    """Text from outside as the description carries it: redacted, one bounded line, escaped."""
    return escape(_one_line(text))


def _rate_limit_lines(report: RunReport) -> list[str]:
    return [
        f"• `{escape(status.host)}` {status.remaining}/{'?' if status.limit is None else status.limit} left"
        for status in sorted(report.rate_limits, key=lambda status: status.host)
        if status.remaining is not None
    ]


# --- next steps, keywords, metadata ---------------------------------------------------------

_NEXT_STEPS: Final[Mapping[Outcome, Callable[[RunReport], str]]] = {
    Outcome.REFRESH_FAILED: lambda report: (
        "Failed refreshes kept their previous image; the function logs of run "
        f"{outside_text(report.run_id)} (outcome refresh_failed) show the failing step."
    ),
    Outcome.UPSTREAM_ERROR: lambda _: (
        "Upstream errors: check the rule's upstream credentials and the upstream registry's status."
    ),
    Outcome.RATE_LIMITED: lambda _: (
        "Rate-limited: give the pull-through cache rule authenticated credentials or check less often."
    ),
    Outcome.UPSTREAM_MISSING: lambda _: (
        "Missing upstream: the tag was deleted or renamed upstream; update whatever still pulls it."
    ),
    Outcome.IMMUTABLE: lambda _: (
        "Immutable tags are never forced: add them to the repository's mutability exclusion filters "
        "to let ptc-sync refresh them, or pin by digest."
    ),
}


def next_steps(report: RunReport) -> list[str]:
    steps = []
    if report.errors:
        steps.append(f"Run errors: see the function logs of run {outside_text(report.run_id)}.")
    present = {result.outcome for result in report.results}
    steps.extend(step(report) for outcome, step in _NEXT_STEPS.items() if outcome in present)
    if report.dry_run and Outcome.STALE in present:
        steps.append("Dry run: turn dry run off to refresh the stale tags.")
    return steps


def keywords(report: RunReport) -> list[str]:
    words = [SERVICE]
    if report.region:
        words.append(report.region)
    if report.dry_run:
        words.append("dry-run")
    words.extend(notable_kinds(report))
    return words


def thread_id(report: RunReport) -> str:
    """Stable per account and region, so every run lands in the same chat thread."""
    return "-".join(part for part in (SERVICE, report.account_id, report.region) if part)


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


def additional_context(report: RunReport) -> dict[str, str]:
    context = {
        "runId": report.run_id,
        "dryRun": _bool(report.dry_run),
        "startedAt": report.started_at.isoformat(),
        "finishedAt": report.finished_at.isoformat(),
        "tagsChecked": str(len(report.results)),
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


def notable_kinds(report: RunReport) -> list[str]:
    """Notable outcome values present in the run, in Outcome order, plus ``run_error``."""
    present = {result.outcome for result in report.results}
    kinds = [outcome.value for outcome in Outcome if outcome.notable and outcome in present]
    if report.errors:
        kinds.append(RUN_ERROR_KIND)
    return kinds


def _rule_prefixes(report: RunReport) -> list[str]:
    """The rules this message is about: those with notable tags, else (a quiet run) every rule checked."""
    notable = {result.rule_prefix for result in report.results if result.outcome.notable}
    return sorted(notable or {result.rule_prefix for result in report.results})


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
