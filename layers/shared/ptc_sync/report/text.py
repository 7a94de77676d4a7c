"""The renderers of a report's text: the chat description in Chatbot's markdown (``description``,
``tag_line``) and the same report as plain text for email (``email_text``), one dialect each, plus
the next steps both show.

The chat description lists the notable tags section by section, the worst news first: tags that
failed for the same reason share one line, a section longer than ``max_lines_per_section`` ends with
"… and N more", and the whole description stays within ``MAX_DESCRIPTION_CHARS`` (Slack stops a text
block at 3,000 characters) whatever the run; when anything is left out, a next step names the CLI
command and the dashboard query that list every tag. Headings are plain text (``Refresh failed (3):``):
Chatbot renders one description in every chat's dialect, and ``*x*`` is bold in Slack but italic in
Teams; the webhook builders put each heading in their own dialect's bold.

Text that came from outside (reasons, run errors, platforms, tag names) is redacted
(``ptc_sync.redact``), kept to one bounded line and escaped for the chats AWS Chatbot renders it in:
``&``, ``<`` and ``>`` as entities (Slack: ``<!channel>`` must not ping a whole channel) and markdown
links broken apart (Teams: a label must not hide where a link goes). The structured report the chat
notifier reads (``message.structured_report``) carries the same lines unescaped, so the webhook
builders escape for their own dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ptc_sync.models import (
    DIGEST_CHANGE_OUTCOMES,
    NEW_IMAGE_OUTCOMES,
    Outcome,
    RunReport,
    TagResult,
    short_digest,
)
from ptc_sync.redact import defang_links, redact
from ptc_sync.report.model import (
    FIRST_LINES_PER_SECTION,
    MAX_DESCRIPTION_CHARS,
    MAX_EMAIL_CHARS,
    MAX_EMAIL_LINES_PER_SECTION,
    MAX_IMAGES_PER_GROUP,
    MAX_LINES_PER_SECTION,
    MAX_PLATFORMS_SHOWN,
    MAX_REASON_CHARS,
    ReportKind,
    _plural,
    _sections,
    headline,
    is_recovery,
)


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


@dataclass(frozen=True, slots=True)
class Section:
    """One block of a report as a message shows it: its heading and total, the lines kept (in the
    dialect they were rendered in, without the bullet), how many tags (or errors) each stands for,
    and how many were left out. What the chat notifier receives (``message.structured_report``)."""

    heading: str
    total: int
    lines: tuple[str, ...]
    weights: tuple[int, ...]
    hidden: int = 0


def _fitted(
    summary: str, blocks: Sequence[_Block], dialect: _Dialect, max_lines: int, limit: int
) -> tuple[list[Section], bool]:
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
    sections = [
        Section(
            block.heading,
            block.total,
            tuple(line.removeprefix(dialect.bullet) for line in block.lines[:count]),
            block.counts[:count],
            block.total - sum(block.counts[:count]),
        )
        for block, count in zip(blocks, shown, strict=True)
    ]
    return sections, any(section.hidden for section in sections)


def _fit(
    summary: str, blocks: Sequence[_Block], dialect: _Dialect, max_lines: int, limit: int
) -> tuple[str, bool]:
    """The text of ``_fitted``'s sections, within ``limit`` characters."""
    sections, truncated = _fitted(summary, blocks, dialect, max_lines, limit)
    texts = [summary]
    for section in sections:
        lines = [dialect.bullet + line for line in section.lines]
        if section.hidden:
            lines.append(_more_line(section.hidden))
        texts.append("\n".join([dialect.heading(section.heading, section.total), *lines]))
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


def chat_sections(
    report: RunReport,
    *,
    max_lines_per_section: int = MAX_LINES_PER_SECTION,
    kind: ReportKind = ReportKind.RUN,
) -> tuple[str, list[Section]]:
    """The run summary and the sections the chat description shows (markdown lines, escaped)."""
    summary = _run_summary(report, kind)
    blocks = _blocks(report, _MARKDOWN)
    return summary, _fitted(summary, blocks, _MARKDOWN, max_lines_per_section, MAX_DESCRIPTION_CHARS)[0]


def description(
    report: RunReport,
    *,
    max_lines_per_section: int = MAX_LINES_PER_SECTION,
    kind: ReportKind = ReportKind.RUN,
) -> str:
    """The chat description: at most ``MAX_DESCRIPTION_CHARS`` characters, whatever the run."""
    return _description(report, _MARKDOWN, max_lines_per_section, MAX_DESCRIPTION_CHARS, kind)[0]


def _run_summary(report: RunReport, kind: ReportKind = ReportKind.RUN) -> str:
    checked = report.tags_checked
    fresh = report.count(Outcome.FRESH)
    rules = len(report.rule_prefixes)
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
