"""A chat message as the chat shows it, in a terminal: Slack's Block Kit payload rendered to text.

The demo prints what a channel would show, not the payload: a header in bold, ``*bold*`` as ANSI bold
(or plain text when the output is not a terminal), ``_italic_`` as ANSI italic, ``~strike~`` and
`` `code` `` as their text, ``<url|label>`` as ``label <url>``, Slack's ``&amp;``/``&lt;``/``&gt;``
escapes undone, and the four ``:shortcodes:`` ptc-sync opens titles with as the emoji Slack draws.
Buttons read ``[label] <url>``; a context block is one line of facts. Test and demo code only.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TextIO

from ptc_sync.chat.model import TONE_EMOJI

BOLD: Final = ("\033[1m", "\033[0m")
ITALIC: Final = ("\033[3m", "\033[0m")
DIM: Final = ("\033[2m", "\033[0m")

SHORTCODES: Final[Mapping[str, str]] = {tone.value: emoji for tone, emoji in TONE_EMOJI.items()}
_SHORTCODE_RE: Final = re.compile(r":[a-z0-9_+-]+:")
_CODE_RE: Final = re.compile(r"`([^`]+)`")
_LINK_RE: Final = re.compile(r"<([^<>|]+)(?:\|([^<>]+))?>")
# Slack's emphasis: the marker opens after a start, space or punctuation and closes before one
_EMPHASIS: Final = {
    "*": re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"),
    "_": re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"),
    "~": re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"),
}


def use_ansi(stream: TextIO = sys.stdout) -> bool:
    """ANSI styles on a terminal, unless NO_COLOR says otherwise (FORCE_COLOR forces them)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


def _style(text: str, style: tuple[str, str], ansi: bool) -> str:
    return f"{style[0]}{text}{style[1]}" if ansi and text else text


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def emoji(text: str) -> str:
    """ptc-sync's title shortcodes as the emoji Slack shows (other shortcodes stay as typed)."""
    return _SHORTCODE_RE.sub(lambda match: SHORTCODES.get(match.group(0), match.group(0)), text)


def mrkdwn(text: str, *, ansi: bool = False) -> str:
    """One Slack ``mrkdwn`` text as Slack renders it, for a terminal."""
    rendered: list[str] = []
    last = 0
    for match in _CODE_RE.finditer(text):  # nothing inside a code span is formatting
        rendered.append(_inline(text[last : match.start()], ansi))
        rendered.append(_unescape(match.group(1)))
        last = match.end()
    rendered.append(_inline(text[last:], ansi))
    return "".join(rendered)


def _inline(text: str, ansi: bool) -> str:
    def link(match: re.Match[str]) -> str:
        url, label = match.group(1), match.group(2)
        return f"{label} <{url}>" if label else url

    text = _LINK_RE.sub(link, text)
    styles: dict[str, Callable[[str], str]] = {
        "*": lambda inner: _style(inner, BOLD, ansi),
        "_": lambda inner: _style(inner, ITALIC, ansi),
        "~": lambda inner: inner,
    }
    for marker, pattern in _EMPHASIS.items():
        text = pattern.sub(lambda match, m=marker: styles[m](match.group(1)), text)
    return emoji(_unescape(text))


def slack_blocks(payload: Mapping[str, Any], *, ansi: bool = False) -> list[str]:
    """The message's lines, top to bottom, as a Slack channel shows the payload's blocks."""
    lines: list[str] = []
    for block in payload.get("blocks", []):
        kind = block.get("type")
        if lines:
            lines.append("")
        if kind == "header":
            lines.append(_style(emoji(block["text"]["text"]), BOLD, ansi))
        elif kind == "section":
            lines.extend(mrkdwn(block["text"]["text"], ansi=ansi).splitlines())
        elif kind == "actions":
            lines.append(
                "  ".join(f"[{button['text']['text']}] <{button['url']}>" for button in block["elements"])
            )
        elif kind == "context":
            facts = " · ".join(mrkdwn(element["text"]) for element in block["elements"])
            lines.append(_style(facts, DIM, ansi))
        else:  # a block type ptc-sync does not send: say so rather than drop it
            lines.append(f"[{kind} block]")
    return lines


def boxed(lines: Iterable[str], *, indent: str = "  ", width: int = 100) -> str:
    """The message set off from the demo's own output by a rule on its left, long prose wrapped as a
    chat window wraps it (a bullet's continuation under its text)."""
    out: list[str] = []
    for line in lines:
        if "<http" in line:  # a link stays on one line with its label: the terminal wraps it
            out.append(f"{indent}│ {line}".rstrip())
            continue
        hanging = "  " if line.startswith("• ") else ""
        wrapped = textwrap.wrap(
            line, width, subsequent_indent=hanging, break_on_hyphens=False, break_long_words=False
        ) or [""]
        out.extend(f"{indent}│ {part}".rstrip() for part in wrapped)
    return "\n".join(out)
