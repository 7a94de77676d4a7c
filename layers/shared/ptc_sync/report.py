"""The per-run SNS message: an AWS Chatbot custom notification built from a RunReport.

Pure: no I/O. ``notify`` publishes what ``build_notification`` returns.

The chat description lists the notable tags section by section, the worst news first: tags that
failed for the same reason share one line, a section longer than ``max_lines_per_section`` ends with
"… and N more", and the whole description stays within ``MAX_DESCRIPTION_CHARS`` (Slack stops a text
block at 3,000 characters) whatever the run; when anything is left out, a next step names the CLI
command and the dashboard query that list every tag. Headings are plain text (``Refresh failed (3):``):
Chatbot renders one description in every chat's dialect, and ``*x*`` is bold in Slack but italic in
Teams; the webhook builders put each heading in their own dialect's bold.

``email_text`` is the same report as plain text: ``notify`` publishes with ``MessageStructure=json``,
the Chatbot JSON as ``default`` (what Chatbot, the chat notifier's Lambda subscription and queues
receive) and the plain text as ``email``.

``ReportKind.FIRST_RUN`` is the first run after a deploy: always published, it says how many tags
ptc-sync now watches under how many rules, so a new user sees it work on a fleet that is all fresh.

Text that came from outside (reasons, run errors, platforms, tag names) is redacted
(``ptc_sync.redact``), kept to one bounded line and escaped for the chats AWS Chatbot renders it in:
``&``, ``<`` and ``>`` as entities (Slack: ``<!channel>`` must not ping a whole channel) and markdown
links broken apart (Teams: a label must not hide where a link goes). ``parse_description`` undoes
the escaping, so the webhook builders escape for their own dialect.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from enum import StrEnum
from typing import Final, Literal, NamedTuple, TypedDict

from ptc_sync.models import (
    CHANGED_OUTCOMES,
    DIGEST_CHANGE_OUTCOMES,
    FAILED_OUTCOMES,
    NEW_IMAGE_OUTCOMES,
    Outcome,
    RunReport,
    TagResult,
    short_digest,
)
from ptc_sync.redact import defang_links, redact

SERVICE: Final = "ptc-sync"
EVENT_TYPE: Final = "SyncRunReport"
MAX_LINES_PER_SECTION: Final = 20
# Slack stops a section's text at 3,000 characters; Chatbot shows the description as one block.
MAX_DESCRIPTION_CHARS: Final = 3000
MAX_EMAIL_CHARS: Final = 30_000
MAX_EMAIL_LINES_PER_SECTION: Final = 200
FIRST_LINES_PER_SECTION: Final = 3  # what every section shows before any shows more
MAX_IMAGES_PER_GROUP: Final = 3  # a line for tags sharing one reason names this many of them
MAX_RELATED_RESOURCES: Final = 20
MAX_PLATFORMS_SHOWN: Final = 4
MAX_REASON_CHARS: Final = 200
# SNS: "less than 100 characters", ASCII, no line breaks (email subscribers see it).
MAX_SUBJECT_CHARS: Final = 99

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


class ReportKind(StrEnum):
    """What a message is about (``additionalContext.kind``)."""

    RUN = "run"
    FIRST_RUN = "first_run"  # the first run after a deploy: "watching N tags under M rules"


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


def should_publish(report: RunReport, always: bool, kind: ReportKind = ReportKind.RUN) -> bool:
    """True when the run did something worth telling (any non-fresh, non-skipped tag, any run error),
    and always for the first run after a deploy."""
    return always or kind is ReportKind.FIRST_RUN or report.notable


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
            "additionalContext": additional_context(report, kind=kind),
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
        _Phrase(report.count(Outcome.NOT_COMPARABLE), "not comparable"),
        _Phrase(report.count(Outcome.REPAIRED), "repaired"),
        *(
            _Phrase(report.count(outcome), outcome.value.replace("_", " "))
            for outcome in _unsectioned(report)
        ),
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


def _watching_phrase(report: RunReport) -> str:
    tags = len(report.results)
    rules = len({result.rule_prefix for result in report.results})
    return f"watching {tags} {_plural('tag', tags)} under {rules} {_plural('rule', rules)}"


def _headline_parts(report: RunReport, kind: ReportKind) -> list[str]:
    parts = _render_phrases(_phrases(report))
    if kind is ReportKind.FIRST_RUN:
        return [_watching_phrase(report), *(parts or ["all fresh"])]
    return parts or [_quiet_phrase(report)]


def headline(report: RunReport, *, kind: ReportKind = ReportKind.RUN) -> str:
    """``ptc-sync: 3 tags refreshed, 1 failed`` (plain text, ASCII)."""
    return f"{_service_label(report)}: {', '.join(_headline_parts(report, kind))}"


def title(report: RunReport, *, kind: ReportKind = ReportKind.RUN) -> str:
    return f"{_emoji(report)} {headline(report, kind=kind)}"


class Tone(StrEnum):
    """The emoji a title opens with, i.e. what kind of run it was. Chat renderers map it to their own
    colours and emoji (``tone_of`` reads it back from a title)."""

    CHANGED = ":arrows_counterclockwise:"
    ATTENTION = ":rotating_light:"
    WARNING = ":warning:"
    QUIET = ":white_check_mark:"


def _emoji(report: RunReport) -> Tone:
    """The worst news sets the tone: a failure outranks any number of refreshes."""
    present = {result.outcome for result in report.results}
    if report.errors or present & FAILED_OUTCOMES:
        return Tone.ATTENTION
    if any(outcome.notable and outcome not in CHANGED_OUTCOMES for outcome in present):
        return Tone.WARNING
    if present & CHANGED_OUTCOMES:
        return Tone.CHANGED
    return Tone.QUIET


def tone_of(title_text: str) -> Tone | None:
    """The Tone a ``title`` opens with; None for a title this module did not build."""
    first = title_text.split(" ", 1)[0]
    return Tone(first) if first in Tone else None


def subject(report: RunReport, *, kind: ReportKind = ReportKind.RUN) -> str:
    """The email subject: the headline, cut back to whole phrases when it would exceed SNS's limit."""
    prefix = f"{_service_label(report)}: "
    parts = _headline_parts(report, kind)
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
        _Section(Outcome.NOT_COMPARABLE, "Not comparable (upstream digest of another algorithm)"),
        _Section(Outcome.REPAIRED, "Repaired (an interrupted refresh finished or rolled back)"),
        _Section(Outcome.REFRESHED, "Refreshed"),
        _Section(Outcome.STALE, "Would refresh" if report.dry_run else "Stale (not refreshed)"),
        *(
            _Section(outcome, outcome.value.replace("_", " ").capitalize())
            for outcome in _unsectioned(report)
        ),
    ]


_SECTIONED: Final = frozenset(
    {
        Outcome.REFRESH_FAILED,
        Outcome.UPSTREAM_ERROR,
        Outcome.RATE_LIMITED,
        Outcome.UPSTREAM_MISSING,
        Outcome.IMMUTABLE,
        Outcome.NOT_COMPARABLE,
        Outcome.REPAIRED,
        Outcome.REFRESHED,
        Outcome.STALE,
    }
)


def _unsectioned(report: RunReport) -> list[Outcome]:
    """Notable outcomes present without a section of their own (a new outcome is still reported)."""
    present = {result.outcome for result in report.results}
    return [outcome for outcome in Outcome if outcome.notable and outcome in present - _SECTIONED]


@dataclass(frozen=True, slots=True)
class _Dialect:
    """How a description line shows outside text and code: chat markdown or plain text (email)."""

    text: Callable[[str], str]
    code: Callable[[str], str]
    bullet: str
    heading: Callable[[str, int], str]


def _heading_line(heading: str, total: int) -> str:
    return f"{heading} ({total}):"


@dataclass(frozen=True, slots=True)
class _Block:
    heading: str
    total: int
    lines: tuple[str, ...]
    counts: tuple[int, ...]  # how many tags (or errors) each line stands for


def _blocks(report: RunReport, dialect: _Dialect) -> list[_Block]:
    blocks = []
    if report.errors:
        blocks.append(_grouped_errors(report.errors, dialect))
    for section in _sections(report):
        results = [result for result in report.results if result.outcome is section.outcome]
        if results:
            blocks.append(_grouped_results(section.heading, results, dialect))
    recovered = [result for result in report.results if is_recovery(result)]
    if recovered:
        lines = tuple(_tag_line(result, dialect) for result in recovered)
        blocks.append(_Block("Recovered", len(recovered), lines, (1,) * len(lines)))
    budget_lines = _rate_limit_lines(report, dialect)
    if budget_lines:
        blocks.append(
            _Block("Upstream pull budget", len(budget_lines), budget_lines, (1,) * len(budget_lines))
        )
    return blocks


def _grouped_errors(errors: Sequence[str], dialect: _Dialect) -> _Block:
    counts: dict[str, int] = {}
    for error in errors:
        key = dialect.text(error)
        counts[key] = counts.get(key, 0) + 1
    lines = tuple(
        f"{dialect.bullet}{count} times: {text}" if count > 1 else f"{dialect.bullet}{text}"
        for text, count in counts.items()
    )
    return _Block("Run errors", len(errors), lines, tuple(counts.values()))


def _grouped_results(heading: str, results: Sequence[TagResult], dialect: _Dialect) -> _Block:
    """Tags that share a reason on one line (largest group first), then one line per other tag."""
    by_reason: dict[str, list[TagResult]] = {}
    for result in results:
        if result.reason:
            by_reason.setdefault(_one_line(result.reason), []).append(result)
    shared = sorted(
        ((reason, group) for reason, group in by_reason.items() if len(group) > 1),
        key=lambda item: -len(item[1]),
    )
    grouped = {id(result) for _, group in shared for result in group}
    lines: list[str] = []
    counts: list[int] = []
    for reason, group in shared:
        images = ", ".join(dialect.code(result.image) for result in group[:MAX_IMAGES_PER_GROUP])
        rest = len(group) - MAX_IMAGES_PER_GROUP
        named = f"{images} and {rest} more" if rest > 0 else images
        lines.append(f"{dialect.bullet}{len(group)} tags: {dialect.text(reason)} ({named})")
        counts.append(len(group))
    for result in results:
        if id(result) not in grouped:
            lines.append(_tag_line(result, dialect))
            counts.append(1)
    return _Block(heading, len(results), tuple(lines), tuple(counts))


def _more_line(hidden: int) -> str:
    return f"… and {hidden} more"


def _fit(
    summary: str, blocks: Sequence[_Block], dialect: _Dialect, max_lines: int, limit: int
) -> tuple[str, bool]:
    """The summary and every block's heading always; lines as the limit allows, a few of every block
    first, then more of the most urgent; "… and N more" (N tags or errors) where lines were left out.
    True when any were."""
    skeleton = len(summary) + sum(
        2 + len(dialect.heading(block.heading, block.total)) + 1 + len(_more_line(block.total))
        for block in blocks
    )
    room = limit - skeleton
    shown = [0] * len(blocks)
    # a few lines of every block first (each kind of news gets examples), then the rest in order
    for cap in (min(FIRST_LINES_PER_SECTION, max_lines), max_lines):
        for index, block in enumerate(blocks):
            for line in block.lines[shown[index] : cap]:
                if len(line) + 1 > room:
                    break
                shown[index] += 1
                room -= len(line) + 1
    texts = [summary]
    truncated = False
    for block, count in zip(blocks, shown, strict=True):
        lines = list(block.lines[:count])
        hidden = block.total - sum(block.counts[:count])
        if hidden:
            lines.append(_more_line(hidden))
            truncated = True
        texts.append("\n".join([dialect.heading(block.heading, block.total), *lines]))
    text = "\n\n".join(texts)
    if len(text) > limit:  # only a report with more blocks than any run has: keep whole blocks
        while len(texts) > 1 and len("\n\n".join(texts)) > limit:
            texts.pop()
        text, truncated = "\n\n".join(texts)[:limit], True
    return text, truncated


def _description(
    report: RunReport, dialect: _Dialect, max_lines: int, limit: int, kind: ReportKind = ReportKind.RUN
) -> tuple[str, bool]:
    return _fit(_run_summary(report, kind), _blocks(report, dialect), dialect, max_lines, limit)


def description(
    report: RunReport,
    *,
    max_lines_per_section: int = MAX_LINES_PER_SECTION,
    kind: ReportKind = ReportKind.RUN,
) -> str:
    """The chat description: at most ``MAX_DESCRIPTION_CHARS`` characters, whatever the run."""
    return _description(report, _MARKDOWN, max_lines_per_section, MAX_DESCRIPTION_CHARS, kind)[0]


def _run_summary(report: RunReport, kind: ReportKind = ReportKind.RUN) -> str:
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
    if kind is ReportKind.FIRST_RUN:
        repositories = len({result.repository for result in report.results})
        summary = (
            f"First run since the deploy: ptc-sync now watches {checked} {_plural('tag', checked)} in "
            f"{repositories} {_plural('repository', repositories).replace('repositorys', 'repositories')} "
            f"under {rules} {_plural('rule', rules)}. From now on it writes only when a tag changes or "
            f"fails. {summary}"
        )
    return summary


def email_text(report: RunReport, *, kind: ReportKind = ReportKind.RUN) -> str:
    """The report as plain text for email subscribers: no markdown, no emoji shortcodes."""
    body, truncated = _description(report, _PLAIN, MAX_EMAIL_LINES_PER_SECTION, MAX_EMAIL_CHARS, kind)
    parts = [headline(report, kind=kind), body]
    steps = next_steps(report, truncated=truncated)
    if steps:
        parts.append(
            "\n".join(["Next steps:", *(f"  - {unescape(step).replace('`', '')}" for step in steps)])
        )
    facts = [f"Run {report.run_id}"]
    facts += [value for value in (report.region, report.account_id) if value]
    parts.append(" · ".join(facts))
    return "\n\n".join(parts) + "\n"


@dataclass(frozen=True, slots=True)
class DescriptionSection:
    """One ``heading (total):`` block of a description, read back: its lines without the bullet, and how
    many more tags (or errors) the sync left out (``… and N more``)."""

    heading: str
    total: int
    lines: tuple[str, ...]
    hidden: int = 0


@dataclass(frozen=True, slots=True)
class ParsedDescription:
    summary: str
    sections: tuple[DescriptionSection, ...]


# ``Refresh failed (3):``; ``*Refresh failed* (3)`` is what earlier versions wrote (a message published
# before an upgrade and retried after it still reads)
_HEADING_RE: Final = re.compile(
    r"^(?:(?P<plain>[^*\n•…][^\n]*?) \((?P<total>\d+)\):|\*(?P<starred>[^*\n]+)\* \((?P<old_total>\d+)\))$"
)
_MORE_RE: Final = re.compile(r"^… and (?P<hidden>\d+) more$")
_BULLET: Final = "• "
_WEIGHT_RE: Final = re.compile(r"^(?P<count>\d+) (?:tags|times): ")


def line_weight(line: str) -> int:
    """How many tags (or run errors) one description line stands for: ``48 tags: reason (…)`` is 48."""
    match = _WEIGHT_RE.match(line.removeprefix(_BULLET))
    return int(match["count"]) if match else 1


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
    name = heading["plain"] or heading["starred"]
    return DescriptionSection(name, int(heading["total"] or heading["old_total"]), bullets, hidden)


def tag_line(result: TagResult) -> str:
    """``• `repo:tag` `0123456789ab` → `fedcba987654` (linux/amd64, linux/arm64)``, then ``: reason``."""
    return _tag_line(result, _MARKDOWN)


def _tag_line(result: TagResult, dialect: _Dialect) -> str:
    parts = [dialect.code(result.image)]
    if result.outcome in DIGEST_CHANGE_OUTCOMES and (result.cached_digest or result.upstream_digest):
        parts.append(f"{_short(result.cached_digest, dialect)} → {_short(result.upstream_digest, dialect)}")
    if result.outcome in NEW_IMAGE_OUTCOMES and result.platforms:
        parts.append(f"({_platform_list(result.platforms, dialect)})")
    line = dialect.bullet + " ".join(parts)
    reason = dialect.text(result.reason)
    return f"{line}: {reason}" if reason else line


def _short(digest: str | None, dialect: _Dialect) -> str:
    return dialect.code(short_digest(digest) if digest else "?")


def _platform_list(platforms: Sequence[str], dialect: _Dialect) -> str:
    shown = ", ".join(dialect.text(platform) for platform in platforms[:MAX_PLATFORMS_SHOWN])
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


_MARKDOWN: Final = _Dialect(
    text=lambda text: escape(_one_line(text)),
    code=lambda text: f"`{escape(text)}`",
    bullet="• ",
    heading=_heading_line,
)
_PLAIN: Final = _Dialect(
    text=_one_line,
    code=_one_line,
    bullet="  - ",
    heading=_heading_line,
)


def _rate_limit_lines(report: RunReport, dialect: _Dialect) -> tuple[str, ...]:
    return tuple(
        f"{dialect.bullet}{dialect.code(status.host)} "
        f"{status.remaining}/{'?' if status.limit is None else status.limit} left"
        for status in sorted(report.rate_limits, key=lambda status: status.host)
        if status.remaining is not None
    )


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
    Outcome.NOT_COMPARABLE: lambda _: (
        "Not comparable: upstream names these tags by a digest of another algorithm (sha512) than "
        "ECR's sha256, so ptc-sync cannot tell whether they are stale and leaves them as cached; "
        "`ptc-sync refresh REPO:TAG` refreshes one by hand."
    ),
    Outcome.REPAIRED: lambda report: (
        "Repaired: a refresh an earlier run left half done (a timeout or a crash) was finished or "
        f"rolled back, no image lost; `ptc-sync runs {outside_text(report.run_id)}` shows which. "
        "If it repeats, the checker's timeout is too short for these images."
    ),
}


def next_steps(report: RunReport, *, truncated: bool = False) -> list[str]:
    """What to do about each kind of news; ``truncated``: the description left tags out."""
    steps = []
    if report.errors:
        steps.append(f"Run errors: see the function logs of run {outside_text(report.run_id)}.")
    present = {result.outcome for result in report.results}
    steps.extend(step(report) for outcome, step in _NEXT_STEPS.items() if outcome in present)
    if report.dry_run and Outcome.STALE in present:
        steps.append("Dry run: turn dry run off to refresh the stale tags.")
    if truncated:
        steps.append(
            f"Not every tag is listed: `ptc-sync runs {outside_text(report.run_id)} --table STATE_TABLE` "
            "lists them all (`ptc-sync history` the last day's), as does the dashboard's "
            '"Tag failures" log query.'
        )
    return steps


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
