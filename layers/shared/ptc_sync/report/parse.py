"""The description read back (``parse_description``, the inverse of ``text.description``) for other readers
of the SNS message: the grammar lives next to the writer. The chat notifier does not parse it: it
receives the report structured (``message.structured_report``) and keeps its sections as
``DescriptionSection``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ptc_sync.report.text import (
    unescape,
)


@dataclass(frozen=True, slots=True)
class DescriptionSection:
    """One ``heading (total):`` block of a description, read back: its lines without the bullet, and how
    many more tags (or errors) the sync left out (``… and N more``)."""

    heading: str
    total: int
    lines: tuple[str, ...]
    hidden: int = 0
    weights: tuple[int, ...] = ()  # how many tags (or errors) each line stands for; a line not named: 1

    def weight(self, index: int) -> int:
        return self.weights[index] if index < len(self.weights) else 1


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
