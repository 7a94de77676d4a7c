"""Discord webhook payload: the headline as ``content``, the details in one embed (pure).

Limits (Discord developer docs, Execute Webhook and Embed Limits): ``content`` at most 2000
characters; at most 10 embeds; an embed's title 256, description 4096, footer text 2048, at most 25
fields; all embed text together at most 6000. ``allowed_mentions`` is empty, so nothing in a report
(a tag called ``@everyone``) can ping anyone; ``@everyone``/``@here`` are also broken with a zero-width
space and ``<@id>``-style mentions escaped, so they do not even look like mentions.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ptc_sync.chat.model import ChatReport, Detail, more_line, shown_links, shown_sections
from ptc_sync.chat.text import Payload, clip, fit, over, render_spans
from ptc_sync.report import Tone

MAX_CONTENT: Final = 2000
MAX_EMBEDS: Final = 10
MAX_TITLE: Final = 256
MAX_DESCRIPTION: Final = 4096
MAX_FOOTER: Final = 2048
MAX_FIELDS: Final = 25
MAX_EMBED_TOTAL: Final = 6000

COLORS: Final = {
    Tone.CHANGED: 0x2F80ED,
    Tone.ATTENTION: 0xD93025,
    Tone.WARNING: 0xF2A900,
    Tone.QUIET: 0x2DA44E,
}
NEUTRAL: Final = 0x808080
_MARKDOWN: Final = re.compile(r"([\\*_~|\[\]<>#`])")
_MASS_MENTION: Final = re.compile(r"@(everyone|here)\b", re.IGNORECASE)


def escape(text: str) -> str:
    """Discord markdown outside code spans: a reason's ``*`` or ``_`` must not start emphasis, ``[x](y)``
    must not become a masked link, ``<@id>`` and ``@everyone`` must not look like mentions."""
    return _MASS_MENTION.sub("@\u200b\\1", _MARKDOWN.sub(r"\\\1", text))


def _line(line: str) -> str:
    return render_spans(line, text=escape, code=lambda run: f"`{run}`")


def payload(report: ChatReport) -> Payload:
    return fit(report, _build, problems, service="discord")


def _build(report: ChatReport, detail: Detail) -> Payload:
    blocks = [escape(report.summary)] if report.summary else []
    for section in shown_sections(report, detail):
        lines = [f"**{escape(section.heading)}** ({section.total})"] if section.heading else []
        lines += [f"• {_line(line)}" for line in section.lines]
        if section.more:
            lines.append(more_line(section.more))
        blocks.append("\n".join(lines))
    if report.next_steps:
        blocks.append("\n".join(["**Next steps**", *(f"• {escape(step)}" for step in report.next_steps)]))
    links, more = shown_links(report, detail)
    link_lines = [f"• [{escape(link.label)}]({link.url})" for link in links]
    if more:
        link_lines.append(more_line(more, "repositories"))
    if report.dashboard:
        link_lines.append(f"[{report.dashboard.label}]({report.dashboard.url})")
    if link_lines:
        blocks.append("\n".join(["**Links**", *link_lines]))
    embed: dict[str, Any] = {
        "description": "\n\n".join(blocks),
        "color": COLORS[report.tone] if report.tone else NEUTRAL,
    }
    if report.facts:
        embed["footer"] = {"text": " · ".join(f"{label}: {value}" for label, value in report.facts)}
    if report.finished_at:
        embed["timestamp"] = report.finished_at
    content = f"{report.emoji} **{escape(report.headline)}**".strip()
    return {
        "content": clip(content, MAX_CONTENT),
        "embeds": [embed],
        "allowed_mentions": {"parse": []},
    }


def problems(message: Payload) -> list[str]:
    """Every documented limit the payload breaks (empty: Discord accepts it)."""
    found = over("content", message.get("content"), MAX_CONTENT)
    embeds = message.get("embeds", [])
    if len(embeds) > MAX_EMBEDS:
        found.append(f"embeds: {len(embeds)} > {MAX_EMBEDS}")
    total = 0
    for index, embed in enumerate(embeds):
        where = f"embeds[{index}]"
        texts = {
            "title": (embed.get("title"), MAX_TITLE),
            "description": (embed.get("description"), MAX_DESCRIPTION),
            "footer": (embed.get("footer", {}).get("text"), MAX_FOOTER),
        }
        for name, (text, limit) in texts.items():
            found += over(f"{where}.{name}", text, limit)
            total += len(text or "")
        fields = embed.get("fields", [])
        if len(fields) > MAX_FIELDS:
            found.append(f"{where}.fields: {len(fields)} > {MAX_FIELDS}")
        total += sum(len(field["name"]) + len(field["value"]) for field in fields)
    if total > MAX_EMBED_TOTAL:
        found.append(f"embeds: {total} > {MAX_EMBED_TOTAL} characters in total")
    return found
