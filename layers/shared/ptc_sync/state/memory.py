"""``MemoryStateStore``: the three state ports in one process's memory, on the same pure policy as the
table (``policy.next_tag_state``, ``should_alert``). A run of the CLI without a state table uses it, so
the CLI checks through the checker's own path (budget, cooldown, alert-once, run counts) rather than a
second way of running a sync; the fast tests use it as the state fake.

Nothing survives the process: across runs the cooldown and the backoff need the stack's table.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from ptc_sync.models import HISTORY_OUTCOMES, RateLimitStatus, TagResult
from ptc_sync.state.policy import Change, RunProgress, TagState, TagUpdate, next_tag_state, should_alert


class MemoryStateStore:
    """Tag history, pull budget and run ledger in memory (``StateStore``); thread-safe."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.now = now
        self.tags: dict[tuple[str, str], TagState] = {}
        self.limits: dict[str, RateLimitStatus] = {}
        self.spent: dict[str, int] = {}
        self.runs: dict[str, RunProgress] = {}
        self.results: dict[str, list[TagResult]] = {}
        self.changes: list[Change] = []
        self._seen: set[tuple[str, str]] = set()  # (run, batch or split key) already counted
        self._lock = threading.Lock()

    # -- TagHistory: always consistent, so the read options change nothing ------------------------------

    def tag_state(self, repository: str, tag: str, *, consistent: bool = True) -> TagState | None:
        return self.tags.get((repository, tag))

    def tag_states(
        self, keys: Iterable[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], TagState]:
        return {key: self.tags[key] for key in keys if key in self.tags}

    def repository_states(self, repositories: Iterable[str]) -> dict[tuple[str, str], TagState]:
        wanted = set(repositories)
        return {key: state for key, state in self.tags.items() if key[0] in wanted}

    def record_tag(self, result: TagResult, checked_at: datetime, **_read: object) -> TagUpdate:
        """Fold ``result`` into the tag's state (what the caller read before is not needed here)."""
        key = (result.repository, result.tag)
        with self._lock:
            previous = self.tags.get(key)
            current = next_tag_state(previous, result, checked_at)
            self.tags[key] = current
        return TagUpdate(previous, current, should_alert(previous, result))

    # -- PullBudget ----------------------------------------------------------------------------------

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        return self.limits.get(host)

    def observe_rate_limit(self, status: RateLimitStatus, observed_at: datetime | None = None) -> bool:
        with self._lock:
            self.limits[status.host] = status
            self.spent.pop(status.host, None)  # upstream's own count includes what was spent
        return True

    def reserve_pulls(self, host: str, n: int, reserve: int, now: datetime) -> bool:
        with self._lock:
            status = self.limits.get(host)
            if status is None or status.remaining is None:
                return True
            left = status.remaining - self.spent.get(host, 0)
            if left - n < reserve:
                return False
            self.spent[host] = self.spent.get(host, 0) + n
            return True

    # -- RunLedger -----------------------------------------------------------------------------------

    def start_run(self, run_id: str, expected_items: int, started_at: datetime) -> None:
        with self._lock:
            self.runs[run_id] = RunProgress(run_id, expected_items, 0, started_at, False)
            self.results[run_id] = []

    def extend_run(self, run_id: str, more_items: int, key: str) -> None:
        with self._lock:
            if (run_id, f"split:{key}") in self._seen:
                return
            self._seen.add((run_id, f"split:{key}"))
            progress = self.runs[run_id]
            self.runs[run_id] = dataclasses.replace(progress, expected=progress.expected + more_items)

    def record_results(
        self, run_id: str, results: Sequence[TagResult], *, batch_id: str | None = None
    ) -> bool:
        """Add a work item's results; True for the one call that completes the run."""
        recorded_at = self.now()
        with self._lock:
            if batch_id is not None:
                if (run_id, batch_id) in self._seen:
                    return False
                self._seen.add((run_id, batch_id))
            progress = self.runs.get(run_id)
            if progress is None:  # a run nobody started: it is this one work item
                progress = RunProgress(run_id, 1, 0, recorded_at, False)
                self.results[run_id] = []
            self.results[run_id].extend(results)
            self.changes.extend(
                Change(recorded_at, run_id, r) for r in results if r.outcome in HISTORY_OUTCOMES
            )
            done = progress.done + 1  # work items, as the table counts them
            won = done >= progress.expected and not progress.summarised
            self.runs[run_id] = dataclasses.replace(
                progress, done=done, summarised=won or progress.summarised
            )
            return won

    def run_progress(self, run_id: str) -> RunProgress | None:
        return self.runs.get(run_id)

    def run_results(self, run_id: str) -> list[TagResult]:
        return list(self.results.get(run_id, []))

    def changes_since(self, since: datetime, until: datetime | None = None) -> list[Change]:
        end = until or self.now()
        return sorted((c for c in self.changes if since <= c.at <= end), key=lambda c: c.at)
