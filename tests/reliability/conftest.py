"""The reliability suite's bookkeeping: cells, examples and corpus entries counted, printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class Tally:
    cells: set[str] = field(default_factory=set)
    failures: dict[str, list[str]] = field(default_factory=dict)
    examples: int = 0
    corpus: int = 0
    corpus_crashed: list[str] = field(default_factory=list)  # an exception escaped the handler
    corpus_accepted: list[str] = field(default_factory=list)  # not refused cleanly (the judgement failed)
    kills: set[str] = field(default_factory=set)
    kill_failures: dict[str, list[str]] = field(default_factory=dict)


MATRIX = Tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (MATRIX.cells or MATRIX.examples or MATRIX.corpus or MATRIX.kills):
        return
    terminalreporter.section("reliability")
    terminalreporter.write_line(f"fault matrix: {len(MATRIX.cells)} cells, {len(MATRIX.failures)} failed")
    for cell, problems in sorted(MATRIX.failures.items()):
        terminalreporter.write_line(f"  {cell}: {problems[0].splitlines()[0]}")
    if MATRIX.kills:
        terminalreporter.write_line(
            f"kill matrix: {len(MATRIX.kills)} cells, {len(MATRIX.kill_failures)} failed"
        )
        for cell, problems in sorted(MATRIX.kill_failures.items()):
            terminalreporter.write_line(f"  {cell}: {problems[0].splitlines()[0]}")
    terminalreporter.write_line(f"property examples run: {MATRIX.examples}")
    if MATRIX.corpus:
        terminalreporter.write_line(
            f"{MATRIX.corpus} events, {len(MATRIX.corpus_crashed)} crashed, "
            f"{len(MATRIX.corpus_accepted)} accepted wrongly"
        )
        for name in MATRIX.corpus_crashed:
            terminalreporter.write_line(f"  crashed: {name}")
        for name in MATRIX.corpus_accepted:
            terminalreporter.write_line(f"  accepted wrongly: {name}")
