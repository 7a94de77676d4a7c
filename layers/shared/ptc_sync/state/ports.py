"""The run state's ports, small ``typing.Protocol`` classes the planner, checker and CLI depend on:
``TagHistory`` (each tag's state across runs), ``PullBudget`` (upstream pull budgets shared by every
checker) and ``RunLedger`` (run progress and results for the fan-out and its report). ``StateStore``
is all three on one table (``DynamoStateStore`` in ``ptc_sync.state.dynamo``). ``StateError`` is what
every adapter call raises, with the codes below or DynamoDB's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Final, Protocol

from ptc_sync.models import (
    RateLimitStatus,
    TagResult,
)
from ptc_sync.state.policy import Change, RunProgress, TagState, TagUpdate

if TYPE_CHECKING:
    from ptc_sync.models import RateLimitStatus, TagResult


RUN_NOT_STARTED: Final = "RunNotStarted"
RUN_ALREADY_STARTED: Final = "RunAlreadyStarted"
TOO_MUCH_CONTENTION: Final = "TooMuchContention"
UNPROCESSED_ITEMS: Final = "UnprocessedItems"

_THROTTLE_CODES: Final = frozenset(
    # ThrottlingError: a transaction's cancellation reason
    {
        "ThrottlingException",
        "ThrottlingError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)


class StateError(RuntimeError):
    """A state-table call failed; names the operation, the table and DynamoDB's (or our) error code."""

    def __init__(self, operation: str, table: str, code: str, message: str) -> None:
        self.operation = operation
        self.table = table
        self.code = code
        super().__init__(f"{operation} on {table}: {code}: {message}")

    @property
    def throttled(self) -> bool:
        return self.code in _THROTTLE_CODES

    @property
    def access_denied(self) -> bool:
        return self.code in {"AccessDeniedException", "UnrecognizedClientException"}


class Unread(Enum):
    """``record_tag(previous=UNREAD)``: the caller has not read the tag's state (None: it read none)."""

    UNREAD = "unread"


UNREAD: Final = Unread.UNREAD


class TagHistory(Protocol):
    """Each cached tag's state across runs: read it, and fold a check's result into it."""

    def tag_state(self, repository: str, tag: str) -> TagState | None: ...

    def tag_states(
        self, keys: Iterable[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], TagState]: ...

    def repository_states(self, repositories: Iterable[str]) -> dict[tuple[str, str], TagState]:
        """Every stored tag state of each repository (eventually consistent: what a scan folds into)."""
        ...

    def record_tag(
        self, result: TagResult, checked_at: datetime, *, previous: TagState | Unread | None = UNREAD
    ) -> TagUpdate: ...


class PullBudget(Protocol):
    """Upstream pull budgets shared by every checker: what upstream reported, and reservations."""

    def rate_limit(self, host: str) -> RateLimitStatus | None: ...

    def observe_rate_limit(self, status: RateLimitStatus, observed_at: datetime | None = None) -> bool: ...

    def reserve_pulls(self, host: str, n: int, reserve: int, now: datetime) -> bool: ...


class RunLedger(Protocol):
    """Runs of the fan-out: how many work items a run waits for, their results, and the history."""

    def start_run(self, run_id: str, expected_items: int, started_at: datetime) -> None: ...

    def extend_run(self, run_id: str, more_items: int, key: str) -> None: ...

    def record_results(
        self, run_id: str, results: Sequence[TagResult], *, batch_id: str | None = None
    ) -> bool: ...

    def run_progress(self, run_id: str) -> RunProgress | None: ...

    def run_results(self, run_id: str) -> list[TagResult]: ...

    def changes_since(self, since: datetime, until: datetime | None = None) -> list[Change]: ...


class StateStore(TagHistory, PullBudget, RunLedger, Protocol):
    """The three ports together, as one table serves them."""
