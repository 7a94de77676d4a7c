"""Google Chat incoming webhook payload: the headline as ``text``, the details in one ``cardsV2`` card
(pure).

Limits (developers.google.com/workspace/chat): ``text`` at most 4096 characters; at most 100 widgets
per card (widgets beyond are dropped silently); a whole message at most 32 000 bytes. Card text is
the small HTML subset Chat supports, so report text is HTML-escaped and code spans shown as plain text.
The ``text`` field is Chat's own markup, where ``<users/all>`` mentions everyone and ``<url|label>``
is a link, with no documented escape: ``<`` and ``>`` there become single angle quotation marks.
"""

from __future__ import annotations

import html
import json
from typing import Any, Final

from ptc_sync.chat.model import ChatReport, Detail, more_line, shown_links, shown_sections
from ptc_sync.chat.text import Payload, clip, fit, over, render_spans

MAX_TEXT: Final = 4096
MAX_WIDGETS: Final = 100
MAX_BYTES: Final = 32_000
CARD_ID: Final = "ptc-sync-run-report"


_ANGLES: Final = str.maketrans(
    {
        "<": "\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}",
        ">": "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}",
    }
)


def _chat_markup(text: str) -> str:
    return text.translate(_ANGLES)


def _html(text: str) -> str:
    return html.escape(text, quote=False)


def _line(line: str) -> str:
    return render_spans(line, text=_html, code=_html)


def _paragraph(lines: list[str]) -> dict[str, Any]:
    return {"textParagraph": {"text": "<br>".join(lines)}}


def payload(report: ChatReport) -> Payload:
    return fit(report, _build, problems, service="googlechat")


def _build(report: ChatReport, detail: Detail) -> Payload:
    sections: list[dict[str, Any]] = []
    if report.summary:
        sections.append({"widgets": [_paragraph([_html(report.summary)])]})
    for section in shown_sections(report, detail):
        lines = [f"• {_line(line)}" for line in section.lines]
        if section.more:
            lines.append(more_line(section.more))
        block: dict[str, Any] = {"widgets": [_paragraph(lines or ["none"])]}
        if section.heading:
            block["header"] = _html(f"{section.heading} ({section.total})")
        sections.append(block)
    if report.next_steps:
        steps = [f"• {_html(step)}" for step in report.next_steps]
        sections.append({"header": "Next steps", "widgets": [_paragraph(steps)]})
    links, more = shown_links(report, detail)
    widgets: list[dict[str, Any]] = []
    if links or more:
        lines = [f'• <a href="{html.escape(link.url)}">{_html(link.label)}</a>' for link in links]
        if more:
            lines.append(more_line(more, "repositories"))
        widgets.append(_paragraph(lines))
    if report.dashboard:
        button = {"text": report.dashboard.label, "onClick": {"openLink": {"url": report.dashboard.url}}}
        widgets.append({"buttonList": {"buttons": [button]}})
    if widgets:
        sections.append({"header": "Links", "widgets": widgets})
    header: dict[str, Any] = {"title": "ptc-sync"}
    if report.facts:
        header["subtitle"] = " · ".join(f"{label}: {value}" for label, value in report.facts)
    text = f"{report.emoji} *{_chat_markup(report.headline)}*".strip()
    return {
        "text": clip(text, MAX_TEXT),
        "cardsV2": [{"cardId": CARD_ID, "card": {"header": header, "sections": sections}}],
    }


def problems(message: Payload) -> list[str]:
    """Every documented limit the payload breaks (empty: Google Chat accepts it)."""
    found = over("text", message.get("text"), MAX_TEXT)
    for index, card in enumerate(message.get("cardsV2", [])):
        widgets = sum(len(section["widgets"]) for section in card["card"].get("sections", []))
        if widgets > MAX_WIDGETS:
            found.append(f"cardsV2[{index}]: {widgets} > {MAX_WIDGETS} widgets")
    size = len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_BYTES:
        found.append(f"message: {size} > {MAX_BYTES} bytes")
    return found
