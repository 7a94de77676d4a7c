"""Microsoft Teams payload for a Workflows webhook ("When a Teams webhook request is received"):
a ``message`` with one Adaptive Card attachment (pure).

Workflows accept Adaptive Cards only (no legacy MessageCard) and reject card versions above 1.4.
Teams documents a message limit of about 28 KB; the card is kept under ``MAX_BYTES`` of UTF-8 JSON,
below that with room for what Teams adds. TextBlock markdown has bold, lists and links but no inline
code, so the backticks of a tag line are dropped. Report text arrives with its markdown links broken
apart (``model.safe_text``) and is broken apart again here: only the card's own console links are links.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ptc_sync.chat.model import ChatReport, Detail, more_line, shown_links, shown_sections
from ptc_sync.chat.text import Payload, fit, render_spans
from ptc_sync.redact import defang_links
from ptc_sync.report import Tone

CARD_VERSION: Final = "1.4"
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
MAX_BYTES: Final = 24_000

COLORS: Final = {
    Tone.CHANGED: "Accent",
    Tone.ATTENTION: "Attention",
    Tone.WARNING: "Warning",
    Tone.QUIET: "Good",
}


def _plain(line: str) -> str:
    return defang_links(render_spans(line, text=lambda run: run, code=lambda run: run))


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def payload(report: ChatReport) -> Payload:
    return fit(report, _build, problems, service="teams")


def _build(report: ChatReport, detail: Detail) -> Payload:
    headline = defang_links(f"{report.emoji} {report.headline}".strip())
    color = COLORS[report.tone] if report.tone else "Default"
    body: list[dict[str, Any]] = [_text(headline, weight="Bolder", size="Medium", color=color)]
    if report.summary:
        body.append(_text(defang_links(report.summary), isSubtle=True, spacing="None"))
    for section in shown_sections(report, detail):
        if section.heading:
            body.append(_text(f"**{_plain(section.heading)}** ({section.total})", spacing="Medium"))
        lines = [f"- {_plain(line)}" for line in section.lines]
        if section.more:
            lines.append(more_line(section.more))
        if lines:
            body.append(_text("\n".join(lines), spacing="Small"))
    if report.next_steps:
        body.append(_text("**Next steps**", spacing="Medium"))
        body.append(_text("\n".join(f"- {_plain(step)}" for step in report.next_steps), spacing="Small"))
    links, more = shown_links(report, detail)
    if links or more:
        lines = [f"- [{link.label}]({link.url})" for link in links]
        if more:
            lines.append(more_line(more, "repositories"))
        body.append(_text("**ECR console**", spacing="Medium"))
        body.append(_text("\n".join(lines), spacing="Small"))
    if report.facts:
        facts = [{"title": label, "value": value} for label, value in report.facts]
        body.append({"type": "FactSet", "facts": facts, "spacing": "Medium"})
    card: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if report.dashboard:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": report.dashboard.label, "url": report.dashboard.url}
        ]
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def encoded_size(message: Payload) -> int:
    return len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode())


def problems(message: Payload) -> list[str]:
    """Every limit the payload breaks (empty: a Teams workflow accepts it)."""
    found = []
    size = encoded_size(message)
    if size > MAX_BYTES:
        found.append(f"message: {size} > {MAX_BYTES} bytes")
    for attachment in message.get("attachments", []):
        version = attachment.get("content", {}).get("version")
        if version != CARD_VERSION:
            found.append(f"card version {version!r} is not {CARD_VERSION}")
    return found
