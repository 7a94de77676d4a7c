"""What a run report says, before any rendering: whether to publish it, its kind and tone, the headline
(``ptc-sync: 3 tags refreshed, 1 failed``), title and email subject, the sections notable tags are
listed under (the worst news first) and the notable kinds present. Pure; the renderers (``text``,
``message``) and the chat notifier build on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ptc_sync.models import (
    CHANGED_OUTCOMES,
    FAILED_OUTCOMES,
    Outcome,
    RunReport,
    TagResult,
)

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


class ReportKind(StrEnum):
    """What a message is about (``additionalContext.kind``)."""

    RUN = "run"
    FIRST_RUN = "first_run"  # the first run after a deploy: "watching N tags under M rules"


@dataclass(frozen=True, slots=True)
class PublishDecision:
    """Whether a run's report is sent, as which kind, and why (the "run complete" log line says it)."""

    publish: bool
    kind: ReportKind
    why: str


def decide_publish(report: RunReport, *, notify_always: bool) -> PublishDecision:
    """The one rule of what a run tells: its news (results the run state judged news:
    ``state.policy.judged``) and run errors; the first run after a deploy ("watching N tags under M
    rules") when every tag it checked was seen for the first time; everything with ``notify_always``."""
    news = sum(1 for result in report.results if result.news)
    if news or report.errors:
        why = ", ".join(
            part
            for part in (
                f"{news} {_plural('tag', news)} with news" if news else "",
                f"{len(report.errors)} run {_plural('error', len(report.errors))}" if report.errors else "",
            )
            if part
        )
        return PublishDecision(True, ReportKind.RUN, why)
    first_seen = sum(1 for result in report.results if result.first_seen)
    if first_seen and first_seen == report.tags_checked:
        return PublishDecision(True, ReportKind.FIRST_RUN, "first run after a deploy: every tag seen first")
    if notify_always:
        return PublishDecision(True, ReportKind.RUN, "no news; PTC_NOTIFY_ALWAYS")
    return PublishDecision(False, ReportKind.RUN, "no news")


@dataclass(frozen=True, slots=True)
class _Phrase:
    count: int
    text: str
    counts_tags: bool = True  # reads as "N tags <text>"


def is_recovery(result: TagResult) -> bool:
    """A fresh result that ends a failure the run state alerted on (worth telling, unlike fresh)."""
    return result.outcome is Outcome.FRESH and result.recovered


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
    checked = report.tags_checked
    return f"{checked} {_plural('tag', checked)} checked, nothing to refresh"


def _service_label(report: RunReport) -> str:
    return f"{SERVICE} (dry run)" if report.dry_run else SERVICE


def _watching_phrase(report: RunReport) -> str:
    tags = report.tags_checked
    rules = len(report.rule_prefixes)
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
    return sorted(notable or report.rule_prefixes)
