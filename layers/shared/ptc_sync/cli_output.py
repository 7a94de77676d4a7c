"""Rendering for the operator CLI: exit codes, tables, JSON documents, ages, the progress line.

Formatting plus one small progress display on stderr; no AWS or registry calls. ``cli.py`` decides
what to show, this module decides how it looks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TextIO

from ptc_sync.models import NOT_FRESH_OUTCOMES, Outcome, RateLimitStatus, TagResult, short_digest

# -- exit codes ---------------------------------------------------------------------------------------

EXIT_OK = 0  # fresh: every tag in scope matches upstream, or the command did what it was asked
EXIT_STALE = 1  # stale or failed: a tag differs from upstream (--dry-run: would change), or a step failed
EXIT_USAGE = 2  # usage or missing: a refused argument, or what was named does not exist
EXIT_CRASH = 3  # an unexpected error in ptc-sync itself
EXIT_CODES = (
    (EXIT_OK, "fresh: every tag in scope matches upstream, or a write did what it was asked"),
    (EXIT_STALE, "stale or failed: something is stale (--dry-run: would change), or a step failed"),
    (
        EXIT_USAGE,
        "usage or missing: a refused argument, or the named rule, tag, backup, run or table is not there",
    ),
    (EXIT_CRASH, "crash: an unexpected error (one line on stderr; --debug adds the traceback)"),
)


def exit_code(results: Iterable[TagResult], errors: Sequence[str] = ()) -> int:
    """1 when anything is stale or failed (or the run had errors), else 0."""
    if errors or any(r.outcome in NOT_FRESH_OUTCOMES for r in results):
        return EXIT_STALE
    return EXIT_OK


def exit_codes_help() -> str:
    return "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)


# -- small formatters ---------------------------------------------------------------------------------


def age(seconds: float | None) -> str:
    """``42s``, ``17m``, ``5h03m``, ``12d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def digest(value: str | None) -> str:
    return short_digest(value) if value else "-"


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; trailing blanks trimmed."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def summary_counts(results: Iterable[TagResult]) -> dict[str, int]:
    """Outcome → count, in the Outcome enum's order, zero counts left out."""
    found = [r.outcome for r in results]
    return {o.value: found.count(o) for o in Outcome if o in found}


def summary_line(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"{total} tag{'s' if total != 1 else ''}" + (f": {parts}" if parts else "")


def outcome_label(result: TagResult, would_refresh: bool) -> str:
    if would_refresh and result.outcome is Outcome.STALE and result.reason == "dry run":
        return "stale (would refresh)"
    return result.outcome.value


def rate_limit_doc(status: RateLimitStatus) -> dict[str, Any]:
    return {
        "host": status.host,
        "limit": status.limit,
        "remaining": status.remaining,
        "window_seconds": status.window_seconds,
    }


def rate_limit_line(status: RateLimitStatus) -> str | None:
    if status.remaining is None:
        return None
    limit = f"/{status.limit}" if status.limit is not None else ""
    window = f" per {age(status.window_seconds)}" if status.window_seconds else ""
    return f"{status.host}: {status.remaining}{limit} pulls left{window}"


def result_doc(result: TagResult) -> dict[str, Any]:
    return {
        "image": result.image,
        "repository": result.repository,
        "tag": result.tag,
        "rule": result.rule_prefix,
        "outcome": result.outcome.value,
        "cached_digest": result.cached_digest,
        "upstream_digest": result.upstream_digest,
        "platforms": list(result.platforms),
        "reason": result.reason,
    }


def dump_json(doc: Mapping[str, Any], stream: TextIO) -> None:
    stream.write(json.dumps(doc, indent=2) + "\n")


def text_rows(rows: Sequence[Sequence[str]]) -> str:
    """``--output text``: one record a line, fields tab-separated, no header, for cut/awk/read."""
    return "\n".join("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row) for row in rows)


# -- progress -----------------------------------------------------------------------------------------


class Progress:
    """One line on stderr while a scan runs: ``comparing [######......] 12/40 3s``.

    Drawn only when the stream is a terminal and only once the scan has taken longer than ``delay``
    seconds, by a thread of its own (the scan only moves counters); the line is wiped at the end.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        delay: float = 0.5,
        interval: float = 0.1,
        width: int = 24,
        enabled: bool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.delay = delay
        self.interval = interval
        self.width = width
        self.enabled = _is_tty(stream) if enabled is None else enabled
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._label = "starting"
        self._done = 0
        self._total: int | None = None
        self._started = monotonic()
        self._drawn = 0  # length of the line on screen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def phase(self, label: str, total: int | None = None) -> None:
        with self._lock:
            self._label, self._done, self._total = label, 0, total

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._done += n

    def render(self) -> str:
        with self._lock:
            label, done, total = self._label, self._done, self._total
        elapsed = f"{self.monotonic() - self._started:.0f}s"
        if not total:
            return f"{label}... {elapsed}"
        filled = min(self.width, self.width * done // total)
        return f"{label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {elapsed}"

    def _draw(self) -> None:
        line = self.render()
        pad = " " * max(0, self._drawn - len(line))
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._drawn = len(line)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.monotonic() - self._started >= self.delay:
                self._draw()

    def __enter__(self) -> Self:
        self._started = self.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="ptc-sync-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False
