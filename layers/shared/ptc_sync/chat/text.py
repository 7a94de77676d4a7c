"""Text helpers shared by the payload builders (pure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ptc_sync.chat.model import DETAIL_LEVELS, MORE_MARK, ChatReport, Detail

Payload = dict[str, Any]


class PayloadTooLargeError(ValueError):
    """Even the shortest form of a report breaks a service's limits (names the limits, not the text)."""


def clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, cut after a whole word or phrase and marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(MORE_MARK)]
    for separator in (", ", " "):
        at = cut.rfind(separator)
        if at >= limit // 2:
            cut = cut[:at]
            break
    return cut.rstrip(" ,;:") + MORE_MARK


def code_spans(line: str) -> list[tuple[str, bool]]:
    """Split a description line into (text, is_code) runs at its backticks (an unpaired one is text)."""
    parts = line.split("`")
    if len(parts) % 2 == 0:  # an odd number of backticks: the last one is literal
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return [(part, index % 2 == 1) for index, part in enumerate(parts) if part]


def render_spans(line: str, *, text: Callable[[str], str], code: Callable[[str], str]) -> str:
    return "".join(code(run) if is_code else text(run) for run, is_code in code_spans(line))


def fit(
    report: ChatReport,
    build: Callable[[ChatReport, Detail], Payload],
    problems: Callable[[Payload], list[str]],
    *,
    service: str,
) -> Payload:
    """The most detailed payload that has no problems; sections lose whole lines, never half of one."""
    found: list[str] = []
    for detail in DETAIL_LEVELS:
        payload = build(report, detail)
        found = problems(payload)
        if not found:
            return payload
    raise PayloadTooLargeError(
        f"{service} payload breaks its limits at the shortest form: {'; '.join(found)}"
    )


def over(name: str, value: str | None, limit: int) -> list[str]:
    """``["name: 3012 > 3000"]`` when ``value`` is longer than ``limit`` characters."""
    if value is not None and len(value) > limit:
        return [f"{name}: {len(value)} > {limit} characters"]
    return []
