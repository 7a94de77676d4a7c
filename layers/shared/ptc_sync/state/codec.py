"""The item codec of the state table: key layout, attribute names and types, times as fixed-width UTC
ISO-8601 strings, and the conversion of tag states, results and run progress to and from DynamoDB
items (schema in ``ptc_sync.state.dynamo``). Pure: no calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from ptc_sync.models import (
    HISTORY_OUTCOMES,
    Outcome,
    TagResult,
)
from ptc_sync.state.policy import RunProgress, TagState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    type Item = dict[str, AttributeValueTypeDef]


PK: Final = "pk"
SK: Final = "sk"
EXPIRES_AT: Final = "expiresAt"
CHANGES_INDEX: Final = "ChangesByDay"
CHANGE_DAY: Final = "changeDay"
CHANGED_AT: Final = "changedAt"
# the tag states of a scan's repositories in one range Query (``repository_states``): the sparse GSI
# TagStatesByGroup, keyed by the repository's first path segment and "<repository>#<tag>"
TAGS_INDEX: Final = "TagStatesByGroup"
TAG_GROUP: Final = "tagGroup"
TAG_KEY: Final = "tagKey"
IDEMPOTENCY_PK: Final = "IDEMPOTENCY"

_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

_COUNT_PREFIX: Final = "count#"


def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: state times must be timezone-aware")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _number(value: int) -> AttributeValueTypeDef:
    return {"N": str(value)}


def _str(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value.get("S") if value is not None else None


def _int(item: Item, name: str) -> int | None:
    value = item.get(name)
    number = value.get("N") if value is not None else None
    return int(number) if number is not None else None


def _time(item: Item, name: str) -> datetime | None:
    text = _str(item, name)
    return parse_iso(text) if text is not None else None


def _outcome(item: Item, name: str) -> Outcome | None:
    text = _str(item, name)
    return Outcome(text) if text is not None else None


def _tag_key(repository: str, tag: str) -> Item:
    return {PK: {"S": f"TAG#{repository}"}, SK: {"S": f"TAG#{tag}"}}


def tag_group(repository: str) -> str:
    """The index partition of a repository's tag states: its first path segment (the rule prefix)."""
    return repository.split("/", 1)[0]


def tag_index_key(repository: str, tag: str) -> str:
    """The index sort key. ``#`` sorts below every character a repository name or tag may hold, so
    the keys of repositories A..B (in name order) are exactly those between ``A#`` and ``B#~``."""
    return f"{repository}#{tag}"


def _host_key(host: str) -> Item:
    return {PK: {"S": f"HOST#{host}"}, SK: {"S": "RATELIMIT"}}


def _run_key(run_id: str) -> Item:
    return {PK: {"S": f"RUN#{run_id}"}, SK: {"S": "RUN"}}


def _batch_key(run_id: str, batch_id: str) -> Item:
    digest = hashlib.sha256(batch_id.encode()).hexdigest()[:32]
    return {PK: {"S": f"RUN#{run_id}"}, SK: {"S": f"BATCH#{digest}"}}


def _result_key(run_id: str, result: TagResult) -> Item:
    return {PK: {"S": f"RUN#{run_id}"}, SK: {"S": f"RESULT#{result.repository}:{result.tag}"}}


def _counter_name(rule_prefix: str, outcome: Outcome) -> str:
    return f"{_COUNT_PREFIX}{outcome.value}#{rule_prefix}"


def _set_and_remove(
    fields: Mapping[str, AttributeValueTypeDef | None],
) -> tuple[str, dict[str, str], dict[str, AttributeValueTypeDef]]:
    """``SET`` the attributes that have a value, ``REMOVE`` the None ones: expression, names, values."""
    names: dict[str, str] = {}
    values: dict[str, AttributeValueTypeDef] = {}
    sets: list[str] = []
    removes: list[str] = []
    for i, (attribute, value) in enumerate(fields.items()):
        names[f"#f{i}"] = attribute
        if value is None:
            removes.append(f"#f{i}")
        else:
            values[f":f{i}"] = value
            sets.append(f"#f{i} = :f{i}")
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    return expression, names, values


def _tag_state_from(item: Item) -> TagState:
    return TagState(
        repository=_str(item, "repository") or "",
        tag=_str(item, "tag") or "",
        outcome=_outcome(item, "outcome"),
        upstream_digest=_str(item, "upstreamDigest"),
        cached_digest=_str(item, "cachedDigest"),
        checked_at=_time(item, "checkedAt"),
        refreshed_at=_time(item, "refreshedAt"),
        failure_streak=_int(item, "failureStreak") or 0,
        stale_since=_time(item, "staleSince"),
        alerted_outcome=_outcome(item, "alertedOutcome"),
        refresh_failures=_int(item, "refreshFailures") or 0,
        failed_upstream=_str(item, "failedUpstream"),
        failed_at=_time(item, "failedAt"),
        pulled_at=_time(item, "pulledAt"),
        version=_int(item, "version") or 0,
    )


def _tag_state_values(state: TagState) -> dict[str, AttributeValueTypeDef | None]:
    """Attribute → value for the tag-state item; None means REMOVE."""

    def opt_s(value: str | None) -> AttributeValueTypeDef | None:
        return {"S": value} if value is not None else None

    def opt_t(value: datetime | None) -> AttributeValueTypeDef | None:
        return {"S": iso(value)} if value is not None else None

    return {
        "repository": {"S": state.repository},
        "tag": {"S": state.tag},
        TAG_GROUP: {"S": tag_group(state.repository)},
        TAG_KEY: {"S": tag_index_key(state.repository, state.tag)},
        "outcome": opt_s(state.outcome.value if state.outcome else None),
        "upstreamDigest": opt_s(state.upstream_digest),
        "cachedDigest": opt_s(state.cached_digest),
        "checkedAt": opt_t(state.checked_at),
        "refreshedAt": opt_t(state.refreshed_at),
        "failureStreak": {"N": str(state.failure_streak)},
        "staleSince": opt_t(state.stale_since),
        "alertedOutcome": opt_s(state.alerted_outcome.value if state.alerted_outcome else None),
        "refreshFailures": {"N": str(state.refresh_failures)} if state.refresh_failures else None,
        "failedUpstream": opt_s(state.failed_upstream),
        "failedAt": opt_t(state.failed_at),
        "pulledAt": opt_t(state.pulled_at),
        "version": {"N": str(state.version)},
    }


def _stored(result: TagResult) -> bool:
    """Fresh results are only counted, unless they tell of a recovery (``recovered``) or of a tag
    seen for the first time (``first_seen``: once per tag, what the first-run message after a
    deploy counts)."""
    return result.outcome is not Outcome.FRESH or result.recovered or result.first_seen


# the judgement of a stored result (``state.policy.judged``): attribute → TagResult field, written
# only when true (an item without them reads back False, as items stored before them did)
_FLAGS: Final = {"news": "news", "recovered": "recovered", "firstSeen": "first_seen"}


def _result_item(run_id: str, result: TagResult, recorded_at: datetime, expires_at: int) -> Item:
    item: Item = {
        **_result_key(run_id, result),
        "runId": {"S": run_id},
        "repository": {"S": result.repository},
        "tag": {"S": result.tag},
        "rulePrefix": {"S": result.rule_prefix},
        "outcome": {"S": result.outcome.value},
        "recordedAt": {"S": iso(recorded_at)},
        EXPIRES_AT: {"N": str(expires_at)},
    }
    if result.cached_digest is not None:
        item["cachedDigest"] = {"S": result.cached_digest}
    if result.upstream_digest is not None:
        item["upstreamDigest"] = {"S": result.upstream_digest}
    if result.platforms:
        item["platforms"] = {"L": [{"S": p} for p in result.platforms]}
    if result.reason:
        item["reason"] = {"S": result.reason}
    if result.stale_since is not None:
        item["staleSince"] = {"S": iso(result.stale_since)}
    if result.details:
        item["details"] = {"M": {k: {"S": v} for k, v in result.details.items()}}
    for attribute, name in _FLAGS.items():
        if getattr(result, name):
            item[attribute] = {"BOOL": True}
    if result.outcome in HISTORY_OUTCOMES:
        item[CHANGE_DAY] = {"S": recorded_at.astimezone(UTC).date().isoformat()}
        item[CHANGED_AT] = {"S": iso(recorded_at)}
    return item


def _result_from(item: Item) -> TagResult:
    platforms = item.get("platforms", {}).get("L", [])
    details = item.get("details", {}).get("M", {})
    return TagResult(
        repository=_str(item, "repository") or "",
        tag=_str(item, "tag") or "",
        rule_prefix=_str(item, "rulePrefix") or "",
        outcome=Outcome(_str(item, "outcome") or Outcome.SKIPPED),
        cached_digest=_str(item, "cachedDigest"),
        upstream_digest=_str(item, "upstreamDigest"),
        platforms=tuple(p["S"] for p in platforms),
        reason=_str(item, "reason") or "",
        stale_since=_time(item, "staleSince"),
        details={k: v["S"] for k, v in details.items()},
        news=_flag(item, "news"),
        recovered=_flag(item, "recovered"),
        first_seen=_flag(item, "firstSeen"),
    )


def _flag(item: Item, name: str) -> bool:
    return bool(item.get(name, {}).get("BOOL", False))


def _progress_from(run_id: str, item: Item) -> RunProgress:
    counts: dict[tuple[str, Outcome], int] = {}
    for name, value in item.items():
        if name.startswith(_COUNT_PREFIX):
            outcome, _, rule = name.removeprefix(_COUNT_PREFIX).partition("#")
            counts[(rule, Outcome(outcome))] = int(value.get("N", "0"))
    started = _time(item, "startedAt")
    return RunProgress(
        run_id=run_id,
        expected=_int(item, "expected") or 0,
        done=_int(item, "done") or 0,
        started_at=started or datetime.min.replace(tzinfo=UTC),
        summarised=item.get("summarised", {}).get("BOOL", False),
        counts=counts,
    )
