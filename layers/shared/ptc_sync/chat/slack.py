"""Slack incoming webhook payload: Block Kit blocks plus a ``text`` fallback for notifications (pure).

Limits (docs.slack.dev, Block Kit reference): 50 blocks per message; a section's text at most 3000
characters; a header's plain text at most 150; a context block at most 10 elements; a button's text
at most 75 and its URL at most 3000. Slack also refuses messages whose blocks hold much more than
about 12 000 characters in total (``msg_blocks_too_long``, reported well below the documented 40 000),
so the whole is kept under that too.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ptc_sync.chat.model import ChatReport, Detail, more_line, shown_links, shown_sections
from ptc_sync.chat.text import Payload, clip, fit, over

MAX_BLOCKS: Final = 50
MAX_SECTION_TEXT: Final = 3000
MAX_HEADER_TEXT: Final = 150
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_BUTTON_TEXT: Final = 75
MAX_BUTTON_URL: Final = 3000
MAX_FALLBACK_TEXT: Final = 3000
MAX_TOTAL_TEXT: Final = 12_000


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn (``<`` and ``>`` open links and mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(report: ChatReport) -> Payload:
    return fit(report, _build, problems, service="slack")


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _build(report: ChatReport, detail: Detail) -> Payload:
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(report.title, MAX_HEADER_TEXT), "emoji": True},
        }
    ]
    if report.summary:
        blocks.append(_mrkdwn(escape(report.summary)))
    for section in shown_sections(report, detail):
        lines = [f"*{escape(section.heading)}* ({section.total})"] if section.heading else []
        lines += [f"• {escape(line)}" for line in section.lines]
        if section.more:
            lines.append(more_line(section.more))
        blocks.append(_mrkdwn("\n".join(lines)))
    if report.next_steps:
        blocks.append(_mrkdwn("\n".join(["*Next steps*", *(f"• {escape(s)}" for s in report.next_steps)])))
    links, more = shown_links(report, detail)
    if links or more:
        lines = ["*ECR console*", *(f"• <{link.url}|{escape(link.label)}>" for link in links)]
        if more:
            lines.append(more_line(more, "repositories"))
        blocks.append(_mrkdwn("\n".join(lines)))
    if report.dashboard:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": clip(report.dashboard.label, MAX_BUTTON_TEXT)},
            "url": report.dashboard.url,
        }
        blocks.append({"type": "actions", "elements": [button]})
    if report.facts:
        facts = [{"type": "mrkdwn", "text": f"{label}: {escape(value)}"} for label, value in report.facts]
        blocks.append({"type": "context", "elements": facts[:MAX_CONTEXT_ELEMENTS]})
    # the fallback is mrkdwn too (notifications, screen readers): escaped like every other text
    return {"text": escape(clip(report.title, MAX_FALLBACK_TEXT)), "blocks": blocks}


def problems(message: Payload) -> list[str]:
    """Every documented limit the payload breaks (empty: Slack accepts it)."""
    found: list[str] = []
    blocks = message.get("blocks", [])
    if len(blocks) > MAX_BLOCKS:
        found.append(f"blocks: {len(blocks)} > {MAX_BLOCKS}")
    found += over("text", message.get("text"), MAX_FALLBACK_TEXT)
    total = 0
    for index, block in enumerate(blocks):
        kind = block["type"]
        where = f"blocks[{index}] ({kind})"
        if kind == "header":
            found += over(where, block["text"]["text"], MAX_HEADER_TEXT)
        elif kind == "section":
            found += over(where, block["text"]["text"], MAX_SECTION_TEXT)
        elif kind == "context":
            if len(block["elements"]) > MAX_CONTEXT_ELEMENTS:
                found.append(f"{where}: {len(block['elements'])} > {MAX_CONTEXT_ELEMENTS} elements")
        elif kind == "actions":
            for button in block["elements"]:
                found += over(f"{where} button text", button["text"]["text"], MAX_BUTTON_TEXT)
                found += over(f"{where} button url", button["url"], MAX_BUTTON_URL)
        total += len(json.dumps(block, ensure_ascii=False))
    if total > MAX_TOTAL_TEXT:
        found.append(f"blocks: {total} > {MAX_TOTAL_TEXT} characters in total")
    return found
