"""``TagHistory`` on the state table: one item per tag, folded with a version-conditional UpdateItem,
and no write when nothing changed but the check time (reads and writes: ``ptc_sync.state.dynamo``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ptc_sync.models import (
    TagResult,
)
from ptc_sync.state.codec import (
    EXPIRES_AT,
    PK,
    TAG_GROUP,
    TAG_KEY,
    TAGS_INDEX,
    _epoch,
    _number,
    _tag_key,
    _tag_state_from,
    _tag_state_values,
    tag_group,
    tag_index_key,
)
from ptc_sync.state.policy import TagState, TagUpdate, next_tag_state, should_alert, unchanged
from ptc_sync.state.ports import TOO_MUCH_CONTENTION, UNPROCESSED_ITEMS, UNREAD, Unread
from ptc_sync.state.table import _ATTEMPTS, ConditionFailedError, StateTable, _backoff

if TYPE_CHECKING:
    pass


# An unchanged state is written only to keep its TTL this far from running out (``ptc_sync.state.dynamo``).
TTL_REFRESH: Final = timedelta(days=1)

_BATCH_GET: Final = 100


class TagHistoryTable(StateTable):
    """Tag states: read one or many, record a result."""

    def tag_state(self, repository: str, tag: str, *, consistent: bool = True) -> TagState | None:
        item = self._get(_tag_key(repository, tag), consistent=consistent)
        return _tag_state_from(item) if item is not None else None

    def tag_states(
        self, keys: Iterable[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], TagState]:
        """The stored state of each (repository, tag) that has one (BatchGetItem, 100 keys a call);
        ``consistent=False`` where a stale state cannot decide wrongly (``ptc_sync.state.dynamo``)."""
        unique = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], TagState] = {}
        for start in range(0, len(unique), _BATCH_GET):
            pending: Any = [
                _tag_key(repository, tag) for repository, tag in unique[start : start + _BATCH_GET]
            ]
            for attempt in range(_ATTEMPTS):
                request: Any = {self.table_name: {"Keys": pending, "ConsistentRead": consistent}}
                response = self._call(
                    "BatchGetItem", partial(self.client.batch_get_item, RequestItems=request)
                )
                for item in response.get("Responses", {}).get(self.table_name, []):
                    state = _tag_state_from(item)
                    found[(state.repository, state.tag)] = state
                unprocessed: Any = response.get("UnprocessedKeys", {})
                pending = unprocessed.get(self.table_name, {}).get("Keys", [])
                if not pending:
                    break
                if attempt == _ATTEMPTS - 1:
                    raise self._error("BatchGetItem", UNPROCESSED_ITEMS, f"{len(pending)} keys never read")
                _backoff(attempt)
        return found

    def repository_states(self, repositories: Iterable[str]) -> dict[tuple[str, str], TagState]:
        """Every stored tag state of the repositories: per first path segment, one range Query on the
        TagStatesByGroup index from the first repository to the last (in name order; a scan's are
        consecutive), so a scan of 50 repositories pays for the bytes of its states, rounded up to
        4 KB once a page, not half a unit per repository or per tag. Index reads are eventually
        consistent, as this read may be (``ptc_sync.state.dynamo``); a state the index does not
        have yet is written on its next result (``record_tag``)."""
        groups: dict[str, list[str]] = {}
        for repository in dict.fromkeys(repositories):
            groups.setdefault(tag_group(repository), []).append(repository)
        found: dict[tuple[str, str], TagState] = {}
        for group, names in groups.items():
            wanted = set(names)
            for item in self._query(
                {
                    "IndexName": TAGS_INDEX,
                    "KeyConditionExpression": "#group = :group AND #key BETWEEN :low AND :high",
                    "ExpressionAttributeNames": {"#group": TAG_GROUP, "#key": TAG_KEY},
                    "ExpressionAttributeValues": {
                        ":group": {"S": group},
                        ":low": {"S": tag_index_key(min(names), "")},
                        ":high": {"S": tag_index_key(max(names), "~")},
                    },
                }
            ):
                state = _tag_state_from(item)
                if state.repository in wanted:
                    found[(state.repository, state.tag)] = state
        return found

    def record_tag(
        self, result: TagResult, checked_at: datetime, *, previous: TagState | Unread | None = UNREAD
    ) -> TagUpdate:
        """Fold one result into the tag's state with one conditional UpdateItem (re-read on a race),
        or with no write when the state does not change and its TTL is not due (``written`` False).

        ``previous`` is the state the caller read (None: no item), from an eventually consistent
        BatchGetItem say; when not given it is read here, eventually consistent too. A stale one
        fails the version condition, and the state is re-read strongly (``ptc_sync.state.dynamo``).

        The alert decision is stored with the state it was made against, so two checkers racing on
        one tag never both alert; delivery is the caller's (a failed publish is not re-decided).
        A result older than the stored check changes nothing.
        """
        known = (
            self.tag_state(result.repository, result.tag, consistent=False)
            if previous is UNREAD
            else previous
        )
        unindexed = False  # read as absent, but there: written whatever, so the index gets it
        for _ in range(_ATTEMPTS):
            if known is not None and known.checked_at is not None and checked_at < known.checked_at:
                return TagUpdate(known, known, alert=False, applied=False, written=False)
            current = next_tag_state(known, result, checked_at)
            if (
                known is not None
                and not unindexed
                and unchanged(known, current)
                and not self._ttl_due(known, checked_at)
            ):
                return TagUpdate(known, known, alert=False, written=False)
            if known is None:
                condition, names, values = "attribute_not_exists(#pk)", {"#pk": PK}, {}
            else:
                condition, names = "#version = :seen", {"#version": "version"}
                values = {":seen": _number(known.version)}
            fields = {**_tag_state_values(current), EXPIRES_AT: _number(_epoch(checked_at + self.tag_ttl))}
            try:
                self._update(
                    _tag_key(result.repository, result.tag),
                    fields,
                    condition,
                    names,
                    values,
                )
            except ConditionFailedError:
                # someone wrote since (or the index lacked the item: stored before the index or not
                # replicated to it yet): re-read strongly
                unindexed = unindexed or known is None
                known = self.tag_state(result.repository, result.tag)
                continue
            return TagUpdate(known, current, alert=should_alert(known, result))
        raise self._error("UpdateItem", TOO_MUCH_CONTENTION, f"{result.image}: state changed under every try")

    @staticmethod
    def _ttl_due(state: TagState, checked_at: datetime) -> bool:
        """An unchanged state is rewritten (its TTL pushed on) once its check is TTL_REFRESH old."""
        return state.checked_at is None or checked_at - state.checked_at >= TTL_REFRESH
