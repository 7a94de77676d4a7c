"""Run state: each tag's history, alert decisions, refresh cooldowns and backoffs, shared upstream pull
budgets, run progress for the planner/checker fan-out, and the checker's idempotency records.

One module per concern; every name importable from ``ptc_sync.state`` as before:

- ``policy``: the pure core (``TagState``, ``should_alert``, ``in_cooldown``, ``backoff_until``,
  ``next_tag_state``, ``RunProgress``), on the outcome groupings of ``ptc_sync.models``;
- ``ports``: the ``TagHistory``, ``PullBudget`` and ``RunLedger`` protocols (``StateStore``: all
  three) and ``StateError``;
- ``codec``: keys and the item encoding;
- ``table``: one DynamoDB call done safely, and the plumbing the adapters share;
- ``dynamo``: ``DynamoStateStore``, the three adapters (``dynamo_tags``, ``dynamo_budget``,
  ``dynamo_runs``) on one table; its docstring has the schema and the consistency rules;
- ``memory``: ``MemoryStateStore``, the three ports in memory (the CLI without a table, the fast tests);
- ``idempotency``: the Powertools persistence layer on the same table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptc_sync.state.codec import (
    CHANGE_DAY,
    CHANGED_AT,
    CHANGES_INDEX,
    EXPIRES_AT,
    IDEMPOTENCY_PK,
    PK,
    SK,
    iso,
    parse_iso,
)
from ptc_sync.state.dynamo import DynamoStateStore
from ptc_sync.state.dynamo_tags import TTL_REFRESH
from ptc_sync.state.idempotency import idempotency_persistence
from ptc_sync.state.memory import MemoryStateStore
from ptc_sync.state.policy import (
    MAX_BACKOFF,
    Change,
    RunProgress,
    TagState,
    TagUpdate,
    backoff_until,
    in_cooldown,
    judged,
    next_tag_state,
    should_alert,
    unchanged,
)
from ptc_sync.state.ports import (
    RUN_ALREADY_STARTED,
    RUN_NOT_STARTED,
    TOO_MUCH_CONTENTION,
    UNPROCESSED_ITEMS,
    UNREAD,
    PullBudget,
    RunLedger,
    StateError,
    StateStore,
    TagHistory,
    Unread,
)
from ptc_sync.state.table import DEFAULT_TAG_TTL_DAYS, DEFAULT_TTL_DAYS, ConditionFailedError, TableCaller

if TYPE_CHECKING:
    from ptc_sync.state.codec import Item as Item

__all__ = [
    "CHANGED_AT",
    "CHANGES_INDEX",
    "CHANGE_DAY",
    "DEFAULT_TAG_TTL_DAYS",
    "DEFAULT_TTL_DAYS",
    "EXPIRES_AT",
    "IDEMPOTENCY_PK",
    "MAX_BACKOFF",
    "PK",
    "RUN_ALREADY_STARTED",
    "RUN_NOT_STARTED",
    "SK",
    "TOO_MUCH_CONTENTION",
    "TTL_REFRESH",
    "UNPROCESSED_ITEMS",
    "UNREAD",
    "Change",
    "ConditionFailedError",
    "DynamoStateStore",
    "MemoryStateStore",
    "PullBudget",
    "RunLedger",
    "RunProgress",
    "StateError",
    "StateStore",
    "TableCaller",
    "TagHistory",
    "TagState",
    "TagUpdate",
    "Unread",
    "backoff_until",
    "idempotency_persistence",
    "in_cooldown",
    "iso",
    "judged",
    "next_tag_state",
    "parse_iso",
    "should_alert",
    "unchanged",
]
