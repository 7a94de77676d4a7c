"""Run state in DynamoDB: per-tag history, alert decisions, refresh cooldowns, shared upstream pull
budgets, run progress for the planner/checker fan-out, and the checker's idempotency records.

One table, on-demand, string keys ``pk``/``sk``, TTL on ``expiresAt`` (epoch seconds):

    item                 pk                 sk                             expiresAt
    tag state            TAG#<repository>   TAG#<tag>                      last check + tag_ttl_days
    upstream budget      HOST#<host>        RATELIMIT                      none (one per host)
    run                  RUN#<run_id>       RUN                            start + ttl_days
    batch counted        RUN#<run_id>       BATCH#<sha256(batch_id)[:32]>  recorded + ttl_days
    result in a run      RUN#<run_id>       RESULT#<repository>:<tag>      recorded + ttl_days
    idempotency record   IDEMPOTENCY        <function>#<payload hash>      Powertools' expiry

Results that are changes (refreshed, refresh_failed, upstream_error) also carry ``changeDay``
(``YYYY-MM-DD``, UTC) and ``changedAt``: the keys of the sparse GSI ``ChangesByDay``, so "what
changed since" is one Query per day and nothing here ever Scans. ECR repository names and tags
cannot contain ``#``, so the separators are unambiguous.

Every write is a single-item atomic operation or a two-item transaction; nothing reads, decides
and writes without a condition that fails when another writer got there first:

- tag state: UpdateItem conditional on the version read (re-read on conflict), and no write at all
  when the result leaves the state as it was (see "Writes" below);
- budgets: ``SET remaining = remaining - n`` only ``IF remaining >= n + reserve``;
- runs: ``ADD`` counters (with a per-batch marker in the same transaction when the caller names
  the batch, so a retried batch is never counted twice), then ``SET summarised`` only
  ``IF attribute_not_exists(summarised) AND done >= expected``: exactly one caller sees True.

Result items are written before the counters they add to, so once ``done`` reaches ``expected``
every result of the run is readable. Times are stored as fixed-width UTC ISO-8601 strings (their
string order is time order), ``expiresAt`` as epoch seconds (what DynamoDB TTL reads).

Writes: a check that changes nothing but ``checkedAt`` and ``version`` (a fresh tag still fresh, a
stale one still stale in a dry run, …) writes nothing. The item's TTL must not run out under a
state that never changes, so such a check still writes (``checkedAt`` and ``expiresAt``) when the
stored ``checkedAt`` is older than ``TTL_REFRESH`` (a day): one write per tag a day, not one per
run. ``checkedAt`` is therefore the last check that changed the state or refreshed its TTL, at
most a day behind the last check. A skipped check never alerts (an alert changes
``alertedOutcome``), never ends or grows a failure streak and never touches the refresh backoff:
failing results always change the state (their streak grows) and are always written.

Reads, strongly consistent where a stale read would decide wrongly:

- the journal, the lease and the budget (``journal.py``, ``reserve_pulls``, ``rate_limit``), the
  runs (``done``/``summarised``, a run's results for its report) and every re-read after a failed
  version condition: strongly consistent;
- ``tag_states`` for the checker's refresh gate (cooldown, backoff) and its echo filter: strongly
  consistent by default, since a stale ``refreshedAt`` or ``failedAt`` would let a refresh through
  that the cooldown or the backoff holds back;
- the previous state a result is folded into (``record_tag``: the checker's one BatchGetItem per
  work item, or a GetItem when none is given): eventually consistent. A stale state cannot make a
  wrong write: the update is conditional on the version read, fails, and the state is re-read
  strongly. A stale state can make an unchanged result skip its write when a racing checker's
  write landed less than the replication lag (typically under a second) before the read: the
  racing result then stands until the next check, exactly as if it had been recorded after this
  one; and a result checked earlier than the skipped one but recorded after it is applied instead
  of ignored (the stored ``checkedAt`` is older). Both make the state one check late, never
  make an alert repeat while a failure persists, and the next check corrects them;
- "what changed" reads the ``ChangesByDay`` index, which is eventually consistent anyway.

Powertools idempotency shares the table (``idempotency_persistence``): its records sit under
``pk = IDEMPOTENCY``, expire through the same TTL attribute, and carry no GSI keys. One partition
takes a couple of writes per SQS record, far below a partition's 1,000 writes a second, and IAM
can confine the checker's DeleteItem (Powertools deletes the record of a failed call) to it with
``dynamodb:LeadingKeys``.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.models import Outcome, RateLimitStatus, TagResult

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    type Item = dict[str, AttributeValueTypeDef]

PK: Final = "pk"
SK: Final = "sk"
EXPIRES_AT: Final = "expiresAt"
CHANGES_INDEX: Final = "ChangesByDay"
CHANGE_DAY: Final = "changeDay"
CHANGED_AT: Final = "changedAt"
IDEMPOTENCY_PK: Final = "IDEMPOTENCY"

DEFAULT_TTL_DAYS: Final = 14
DEFAULT_TAG_TTL_DAYS: Final = 90  # a tag nobody checked for this long left ECR or the sync's scope

RUN_NOT_STARTED: Final = "RunNotStarted"
RUN_ALREADY_STARTED: Final = "RunAlreadyStarted"
TOO_MUCH_CONTENTION: Final = "TooMuchContention"
UNPROCESSED_ITEMS: Final = "UnprocessedItems"

FAILING_OUTCOMES: Final = frozenset({Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR})
# The tag matches upstream after this check: the end of a failure.
RECOVERED_OUTCOMES: Final = frozenset({Outcome.FRESH, Outcome.REFRESHED})
# Nothing was learned about the tag: a failure streak neither grows nor ends.
INCONCLUSIVE_OUTCOMES: Final = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.SKIPPED,
        Outcome.IN_PROGRESS,
        Outcome.NOT_A_CACHE,
        Outcome.NOT_COMPARABLE,
        Outcome.REPAIRED,
        Outcome.WARMING,
    }
)
# The cached digest differs from upstream's after this check.
DIFFERING_OUTCOMES: Final = frozenset({Outcome.STALE, Outcome.REFRESH_FAILED, Outcome.IMMUTABLE})
# What "what changed" lists: refreshes and failures.
CHANGE_OUTCOMES: Final = frozenset({Outcome.REFRESHED, Outcome.REPAIRED}) | FAILING_OUTCOMES

MAX_BACKOFF: Final = timedelta(hours=24)
# An unchanged state is written only to keep its TTL this far from running out (module docstring).
TTL_REFRESH: Final = timedelta(days=1)
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_ATTEMPTS: Final = 6  # for version conflicts, transaction conflicts and unprocessed batch items
_BATCH_WRITE: Final = 25
_BATCH_GET: Final = 100
_COUNT_PREFIX: Final = "count#"
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


# -- the pure core -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagState:
    """What the table remembers about one cached tag across runs."""

    repository: str
    tag: str
    outcome: Outcome | None = None  # of the last check
    upstream_digest: str | None = None  # last one upstream reported
    cached_digest: str | None = None  # what the cache held after the last check
    checked_at: datetime | None = None
    refreshed_at: datetime | None = None  # last successful refresh
    failure_streak: int = 0  # consecutive failing checks (inconclusive ones do not break it)
    stale_since: datetime | None = None  # first check that saw the cache differ from upstream
    alerted_outcome: Outcome | None = None  # the outcome of the last alert sent for this tag
    # failed refreshes in a row towards ``failed_upstream`` (a success or a new upstream digest ends
    # them) and when the last one failed: what the refresh backoff is computed from
    refresh_failures: int = 0
    failed_upstream: str | None = None
    failed_at: datetime | None = None
    version: int = 0  # optimistic-concurrency counter of the stored item

    @property
    def image(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True, slots=True)
class TagUpdate:
    previous: TagState | None
    current: TagState
    alert: bool  # send a per-tag alert for this result (decided against the state it replaced)
    applied: bool = True  # False: the result was older than the stored check and was ignored
    written: bool = True  # False: nothing was written (ignored, or the state did not change)


def unchanged(previous: TagState, current: TagState) -> bool:
    """``current`` is ``previous`` but for ``checked_at`` and ``version``: nothing to write but the TTL."""
    return replace(current, checked_at=previous.checked_at, version=previous.version) == previous


def should_alert(previous: TagState | None, result: TagResult) -> bool:
    """Alert on the first failure and on recovery, not again while a failure persists.

    Refresh failures and upstream errors are one kind of failure: switching between them is the
    same failure persisting. Recovery is the tag matching upstream again (fresh or refreshed);
    stale, missing upstream, immutable, rate limited or skipped neither fail nor recover.
    """
    last_alert = previous.alerted_outcome if previous is not None else None
    failing_was_told = last_alert in FAILING_OUTCOMES
    if result.outcome in FAILING_OUTCOMES:
        return not failing_was_told
    if result.outcome in RECOVERED_OUTCOMES:
        return failing_was_told
    return False


def in_cooldown(state: TagState | None, now: datetime, cooldown: timedelta) -> bool:
    """Whether the tag was refreshed less than ``cooldown`` ago (a zero cooldown never holds back)."""
    if state is None or state.refreshed_at is None or cooldown <= timedelta(0):
        return False
    return now - state.refreshed_at < cooldown


def backoff_until(
    state: TagState | None, upstream_digest: str | None, now: datetime, base: timedelta
) -> datetime | None:
    """Until when a refresh of the tag waits after failing (None: it may refresh now).

    After the n-th failed refresh towards one upstream digest the next one waits ``base * 2**(n-1)``
    (at most MAX_BACKOFF) plus half an interval: ``failed_at`` is when the failing check began, and
    the next scheduled check begins about one interval later, so without the half the first backoff
    would end exactly at the next run, held back or not by jitter. So one failure skips one run, two
    skip two, three skip four: a refresh that keeps failing costs a few imports a day, not one a run.
    A different upstream digest is a new chance at once.
    """
    if state is None or state.refresh_failures < 1 or state.failed_at is None:
        return None
    if upstream_digest is not None and upstream_digest != state.failed_upstream:
        return None
    delay = min(base * 2 ** (state.refresh_failures - 1), MAX_BACKOFF) + base / 2
    until = state.failed_at + delay
    return until if now < until else None


def next_tag_state(previous: TagState | None, result: TagResult, checked_at: datetime) -> TagState:
    """The state after ``result`` (checked at ``checked_at``); ``version`` is the previous one + 1."""
    base = previous or TagState(result.repository, result.tag)
    outcome = result.outcome
    if outcome in FAILING_OUTCOMES:
        streak = base.failure_streak + 1
    elif outcome in INCONCLUSIVE_OUTCOMES:
        streak = base.failure_streak
    else:
        streak = 0
    if outcome in DIFFERING_OUTCOMES:
        stale_since = base.stale_since or checked_at
    elif outcome in RECOVERED_OUTCOMES or outcome is Outcome.UPSTREAM_MISSING:
        stale_since = None
    else:
        stale_since = base.stale_since
    refreshed = outcome is Outcome.REFRESHED
    upstream = result.upstream_digest or base.upstream_digest
    failures, failed_upstream, failed_at = base.refresh_failures, base.failed_upstream, base.failed_at
    if outcome is Outcome.REFRESH_FAILED:
        same = failed_upstream is not None and failed_upstream == result.upstream_digest
        failures = failures + 1 if same else 1
        failed_upstream, failed_at = result.upstream_digest, checked_at
    elif outcome in RECOVERED_OUTCOMES:
        failures, failed_upstream, failed_at = 0, None, None
    # a refreshed tag holds what upstream had; the result's cached digest is the one it replaced
    cached = (result.upstream_digest if refreshed else result.cached_digest) or base.cached_digest
    return replace(
        base,
        outcome=outcome,
        upstream_digest=upstream,
        cached_digest=cached,
        checked_at=checked_at,
        refreshed_at=checked_at if refreshed else base.refreshed_at,
        failure_streak=streak,
        stale_since=stale_since,
        alerted_outcome=outcome if should_alert(previous, result) else base.alerted_outcome,
        refresh_failures=failures,
        failed_upstream=failed_upstream,
        failed_at=failed_at,
        version=base.version + 1,
    )


@dataclass(frozen=True, slots=True)
class RunProgress:
    run_id: str
    expected: int
    done: int
    started_at: datetime
    summarised: bool
    counts: Mapping[tuple[str, Outcome], int] = field(default_factory=dict)  # (rule prefix, outcome)

    @property
    def complete(self) -> bool:
        return self.done >= self.expected

    def count(self, outcome: Outcome) -> int:
        return sum(n for (_, o), n in self.counts.items() if o is outcome)

    def totals(self) -> dict[str, int]:
        """Outcome value → tags, over every rule (outcomes with none left out), sorted by outcome."""
        found = {outcome.value: self.count(outcome) for _, outcome in self.counts}
        return {name: n for name, n in sorted(found.items()) if n}


@dataclass(frozen=True, slots=True)
class Change:
    """A refresh or a failure, as "what changed" lists it."""

    at: datetime
    run_id: str
    result: TagResult


# -- the port ----------------------------------------------------------------------------------------


class Unread(Enum):
    """``record_tag(previous=UNREAD)``: the caller has not read the tag's state (None: it read none)."""

    UNREAD = "unread"


UNREAD: Final = Unread.UNREAD


class StateStore(Protocol):
    def tag_state(self, repository: str, tag: str) -> TagState | None: ...

    def tag_states(
        self, keys: Iterable[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], TagState]: ...

    def record_tag(
        self, result: TagResult, checked_at: datetime, *, previous: TagState | Unread | None = UNREAD
    ) -> TagUpdate: ...

    def rate_limit(self, host: str) -> RateLimitStatus | None: ...

    def observe_rate_limit(self, status: RateLimitStatus, observed_at: datetime | None = None) -> bool: ...

    def reserve_pulls(self, host: str, n: int, reserve: int, now: datetime) -> bool: ...

    def start_run(self, run_id: str, expected_items: int, started_at: datetime) -> None: ...

    def extend_run(self, run_id: str, more_items: int, key: str) -> None: ...

    def record_results(
        self, run_id: str, results: Sequence[TagResult], *, batch_id: str | None = None
    ) -> bool: ...

    def run_progress(self, run_id: str) -> RunProgress | None: ...

    def run_results(self, run_id: str) -> list[TagResult]: ...

    def changes_since(self, since: datetime, until: datetime | None = None) -> list[Change]: ...


# -- item encoding -----------------------------------------------------------------------------------


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
        "version": {"N": str(state.version)},
    }


def _stored(result: TagResult) -> bool:
    """Fresh results are only counted, unless they tell of a recovery (``details.recovered``) or of
    a tag seen for the first time (``details.first_seen``: once per tag, what the first-run message
    after a deploy counts)."""
    if result.outcome is not Outcome.FRESH:
        return True
    return result.details.get("recovered") == "true" or result.details.get("first_seen") == "true"


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
    if result.outcome in CHANGE_OUTCOMES:
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
    )


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


class ConditionFailedError(Exception):
    """A ConditionExpression did not hold (internal: callers turn it into a decision or a StateError)."""

    def __init__(self, item: Item | None) -> None:
        super().__init__("condition failed")
        self.item = item


class _CancelledError(Exception):
    """A transaction was cancelled; ``reasons`` line up with its items (``"None"``: that item was fine)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons


# -- the adapter -------------------------------------------------------------------------------------


class TableCaller:
    """One DynamoDB call on one table. Conflicts with an ongoing transaction are retried; a failed
    condition raises ConditionFailedError (with the item when asked for); every other failure raises
    StateError (throttling is botocore's to retry, then the caller's to decide)."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def __call__[R](self, operation: str, call: Callable[[], R]) -> R:
        for attempt in range(_ATTEMPTS):
            try:
                return call()
            except ClientError as exc:
                err = exc.response.get("Error", {})
                code = err.get("Code", "Unknown")
                if code == "ConditionalCheckFailedException":
                    raw: Any = exc.response
                    raise ConditionFailedError(raw.get("Item")) from exc
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                conflict = code == "TransactionConflictException" or "TransactionConflict" in reasons
                if conflict and attempt < _ATTEMPTS - 1:
                    _backoff(attempt)
                    continue
                if code == "TransactionCanceledException" and not conflict:
                    raise _CancelledError(reasons) from exc
                raise StateError(operation, self.table_name, code, err.get("Message", str(exc))) from exc
            except BotoCoreError as exc:
                raise StateError(operation, self.table_name, type(exc).__name__, str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def query(self, client: DynamoDBClient, request: Mapping[str, Any]) -> list[Item]:
        """Every page of one Query."""
        items: list[Item] = []
        page_request: dict[str, Any] = {"TableName": self.table_name, **request}
        while True:
            page = self("Query", partial(client.query, **page_request))
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            page_request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class DynamoStateStore:
    """``StateStore`` on one DynamoDB table (schema in the module docstring)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        ttl_days: int = DEFAULT_TTL_DAYS,
        tag_ttl_days: int = DEFAULT_TAG_TTL_DAYS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ttl_days < 1 or tag_ttl_days < 1:
            raise ValueError("ttl_days and tag_ttl_days must be at least 1")
        self.client = client
        self.table_name = table_name
        self.ttl = timedelta(days=ttl_days)
        self.tag_ttl = timedelta(days=tag_ttl_days)
        self.now = now
        self._call = TableCaller(table_name)

    # -- plumbing ------------------------------------------------------------------------------------

    def _error(self, operation: str, code: str, message: str) -> StateError:
        return StateError(operation, self.table_name, code, message)

    def _get(self, key: Item, *, consistent: bool = True) -> Item | None:
        response = self._call(
            "GetItem",
            partial(self.client.get_item, TableName=self.table_name, Key=key, ConsistentRead=consistent),
        )
        return response.get("Item")

    def _update(
        self,
        key: Item,
        fields: Mapping[str, AttributeValueTypeDef | None],
        condition: str,
        names: Mapping[str, str],
        values: Mapping[str, AttributeValueTypeDef],
    ) -> None:
        """SET/REMOVE ``fields`` on one item if ``condition`` holds (else ConditionFailedError)."""
        expression, field_names, field_values = _set_and_remove(fields)
        self._call(
            "UpdateItem",
            partial(
                self.client.update_item,
                TableName=self.table_name,
                Key=key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={**field_names, **names},
                ExpressionAttributeValues={**field_values, **values},
            ),
        )

    def _query(self, request: Mapping[str, Any]) -> list[Item]:
        return self._call.query(self.client, request)

    # -- tags ----------------------------------------------------------------------------------------

    def tag_state(self, repository: str, tag: str, *, consistent: bool = True) -> TagState | None:
        item = self._get(_tag_key(repository, tag), consistent=consistent)
        return _tag_state_from(item) if item is not None else None

    def tag_states(
        self, keys: Iterable[tuple[str, str]], *, consistent: bool = True
    ) -> dict[tuple[str, str], TagState]:
        """The stored state of each (repository, tag) that has one (BatchGetItem, 100 keys a call);
        ``consistent=False`` where a stale state cannot decide wrongly (module docstring)."""
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

    def record_tag(
        self, result: TagResult, checked_at: datetime, *, previous: TagState | Unread | None = UNREAD
    ) -> TagUpdate:
        """Fold one result into the tag's state with one conditional UpdateItem (re-read on a race),
        or with no write when the state does not change and its TTL is not due (``written`` False).

        ``previous`` is the state the caller read (None: no item), from an eventually consistent
        BatchGetItem say; when not given it is read here, eventually consistent too. A stale one
        fails the version condition, and the state is re-read strongly (module docstring).

        The alert decision is stored with the state it was made against, so two checkers racing on
        one tag never both alert; delivery is the caller's (a failed publish is not re-decided).
        A result older than the stored check changes nothing.
        """
        known = (
            self.tag_state(result.repository, result.tag, consistent=False)
            if previous is UNREAD
            else previous
        )
        for _ in range(_ATTEMPTS):
            if known is not None and known.checked_at is not None and checked_at < known.checked_at:
                return TagUpdate(known, known, alert=False, applied=False, written=False)
            current = next_tag_state(known, result, checked_at)
            if known is not None and unchanged(known, current) and not self._ttl_due(known, checked_at):
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
                known = self.tag_state(result.repository, result.tag)  # someone wrote since: strongly
                continue
            return TagUpdate(known, current, alert=should_alert(known, result))
        raise self._error("UpdateItem", TOO_MUCH_CONTENTION, f"{result.image}: state changed under every try")

    @staticmethod
    def _ttl_due(state: TagState, checked_at: datetime) -> bool:
        """An unchanged state is rewritten (its TTL pushed on) once its check is TTL_REFRESH old."""
        return state.checked_at is None or checked_at - state.checked_at >= TTL_REFRESH

    # -- upstream pull budgets -----------------------------------------------------------------------

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        """What the shared budget holds now (``remaining`` net of reservations since the observation)."""
        item = self._get(_host_key(host))
        if item is None:
            return None
        return RateLimitStatus(
            host=host,
            limit=_int(item, "limit"),
            remaining=_int(item, "remaining"),
            window_seconds=_int(item, "windowSeconds"),
            source=_str(item, "source"),
        )

    def observe_rate_limit(self, status: RateLimitStatus, observed_at: datetime | None = None) -> bool:
        """Store what upstream reported; an observation not newer than the stored one is ignored (False).

        An observation replaces the budget: pulls reserved but not yet made when upstream counted
        are spent from the reserve, which is what the reserve is for.
        """
        at = observed_at or self.now()
        window = status.window_seconds
        fields: dict[str, AttributeValueTypeDef | None] = {
            "host": {"S": status.host},
            "observedAt": {"S": iso(at)},
            "limit": _number(status.limit) if status.limit is not None else None,
            "remaining": _number(status.remaining) if status.remaining is not None else None,
            "windowSeconds": _number(window) if window else None,
            "windowEndsAt": {"S": iso(at + timedelta(seconds=window))} if window else None,
            "source": {"S": status.source} if status.source else None,
        }
        try:
            self._update(
                _host_key(status.host),
                fields,
                "attribute_not_exists(#observed) OR #observed < :at",
                {"#observed": "observedAt"},
                {":at": {"S": iso(at)}},
            )
        except ConditionFailedError:
            return False
        return True

    def reserve_pulls(self, host: str, n: int, reserve: int, now: datetime) -> bool:
        """Take ``n`` pulls from ``host``'s shared budget if ``reserve`` pulls stay left for people.

        One conditional decrement, so concurrent checkers never overspend. No known budget (never
        observed, or upstream sends no limits) allows the pulls, as the sync engine does; a budget
        whose window has passed starts again from the full limit.
        """
        if n < 0 or reserve < 0:
            raise ValueError("pulls and reserve cannot be negative")
        if n == 0:
            return True
        for _ in range(_ATTEMPTS):
            try:
                self._take(host, n, reserve, now)
                return True
            except ConditionFailedError as failed:
                old = failed.item
            if old is None or "remaining" not in old:
                return True
            ends = _time(old, "windowEndsAt")
            if ends is None or ends > now:
                return False  # not enough left in this window
            restarted = self._restart_window(host, n, reserve, now, old)
            if restarted is not None:
                return restarted
        raise self._error("UpdateItem", TOO_MUCH_CONTENTION, f"{host}: budget changed under every try")

    def _restart_window(self, host: str, n: int, reserve: int, now: datetime, old: Item) -> bool | None:
        """The stored window has passed: take ``n`` from a full one. None: someone else changed it first."""
        limit, window, ends = _int(old, "limit"), _int(old, "windowSeconds"), _str(old, "windowEndsAt")
        if limit is None or not window or ends is None:
            return True  # nothing says how big the next window is: no known budget
        if limit - n < reserve:
            return False
        try:
            self._update(
                _host_key(host),
                {
                    "remaining": _number(limit - n),
                    "windowEndsAt": {"S": iso(now + timedelta(seconds=window))},
                },
                "#ends = :seen",
                {"#ends": "windowEndsAt"},
                {":seen": {"S": ends}},
            )
        except ConditionFailedError:
            return None
        return True

    def _take(self, host: str, n: int, reserve: int, now: datetime) -> None:
        self._call(
            "UpdateItem",
            partial(
                self.client.update_item,
                TableName=self.table_name,
                Key=_host_key(host),
                UpdateExpression="SET #remaining = #remaining - :n",
                ConditionExpression="#remaining >= :needed AND (attribute_not_exists(#ends) OR #ends > :now)",
                ExpressionAttributeNames={"#remaining": "remaining", "#ends": "windowEndsAt"},
                ExpressionAttributeValues={
                    ":n": _number(n),
                    ":needed": _number(n + reserve),
                    ":now": {"S": iso(now)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ),
        )

    # -- runs ----------------------------------------------------------------------------------------

    def start_run(self, run_id: str, expected_items: int, started_at: datetime) -> None:
        """Create the run before any of its work is sent; a run id starts once."""
        if expected_items < 1:
            raise ValueError("a run with no work has nothing to wait for: summarise it directly")
        item: Item = {
            **_run_key(run_id),
            "runId": {"S": run_id},
            "expected": _number(expected_items),
            "done": _number(0),
            "startedAt": {"S": iso(started_at)},
            EXPIRES_AT: _number(_epoch(started_at + self.ttl)),
        }
        try:
            self._call(
                "PutItem",
                partial(
                    self.client.put_item,
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": PK},
                ),
            )
        except ConditionFailedError:
            raise self._error("PutItem", RUN_ALREADY_STARTED, f"run {run_id} exists") from None

    def extend_run(self, run_id: str, more_items: int, key: str) -> None:
        """A scan splits: the run waits for ``more_items`` more work items. Once per ``key`` (a
        retried scan extends nothing twice), in one transaction with its marker, and before the
        items are sent, so the run cannot complete without them."""
        split: Any = {
            "TableName": self.table_name,
            "Item": {
                **_batch_key(run_id, f"split:{key}"),
                EXPIRES_AT: _number(_epoch(self.now() + self.ttl)),
            },
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PK},
        }
        more: Any = {
            "TableName": self.table_name,
            "Key": _run_key(run_id),
            "UpdateExpression": "ADD #expected :more",
            "ConditionExpression": "attribute_exists(#expected)",
            "ExpressionAttributeNames": {"#expected": "expected"},
            "ExpressionAttributeValues": {":more": _number(more_items)},
        }
        try:
            self._call(
                "TransactWriteItems",
                partial(self.client.transact_write_items, TransactItems=[{"Put": split}, {"Update": more}]),
            )
        except _CancelledError as cancelled:
            split_reason, run_reason = [*cancelled.reasons, "None", "None"][:2]
            if run_reason == "ConditionalCheckFailed":
                raise self._error("UpdateItem", RUN_NOT_STARTED, f"run {run_id} was never started") from None
            if split_reason != "ConditionalCheckFailed":
                code = next((r for r in cancelled.reasons if r != "None"), "TransactionCanceledException")
                raise self._error("TransactWriteItems", code, f"transaction cancelled: {cancelled}") from None
            # extended by an earlier try of this scan

    def record_results(
        self, run_id: str, results: Sequence[TagResult], *, batch_id: str | None = None
    ) -> bool:
        """Store one work item's results and count them (``done`` counts items, the outcome
        counters tags). True for exactly one call: the one that completes
        the run (``done`` reaches ``expected``), however many batches race.

        ``batch_id`` (the SQS messageId the results came from) makes a retried batch count once:
        its marker and the counters are written in one transaction, and a retry only finishes what
        the first try left undone. Without it a retried batch is counted again. Raises StateError
        ``RunNotStarted`` for a run ``start_run`` never created.
        """
        recorded_at = self.now()
        self._write_results(run_id, results, recorded_at)
        counts = Counter(_counter_name(r.rule_prefix, r.outcome) for r in results)
        names = {"#done": "done", "#expected": "expected"}
        # ``done`` counts work items (one per call), the per-outcome counters count tags
        values: dict[str, AttributeValueTypeDef] = {":total": _number(1)}
        adds = ["#done :total"]
        for i, (counter, count) in enumerate(sorted(counts.items())):
            names[f"#c{i}"] = counter
            values[f":c{i}"] = _number(count)
            adds.append(f"#c{i} :c{i}")
        count_update: Any = {
            "TableName": self.table_name,
            "Key": _run_key(run_id),
            "UpdateExpression": "ADD " + ", ".join(adds),
            "ConditionExpression": "attribute_exists(#expected)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        not_started = self._error("UpdateItem", RUN_NOT_STARTED, f"run {run_id} was never started")
        if batch_id is None:
            try:
                response = self._call(
                    "UpdateItem", partial(self.client.update_item, **count_update, ReturnValues="ALL_NEW")
                )
            except ConditionFailedError:
                raise not_started from None
            return self._summarise_if_done(run_id, response.get("Attributes", {}))
        marker: Item = {
            **_batch_key(run_id, batch_id),
            "batchId": {"S": batch_id},
            EXPIRES_AT: _number(_epoch(recorded_at + self.ttl)),
        }
        put_marker: Any = {
            "TableName": self.table_name,
            "Item": marker,
            "ConditionExpression": "attribute_not_exists(#pk)",
            "ExpressionAttributeNames": {"#pk": PK},
        }
        try:
            self._call(
                "TransactWriteItems",
                partial(
                    self.client.transact_write_items,
                    TransactItems=[{"Put": put_marker}, {"Update": count_update}],
                ),
            )
        except _CancelledError as cancelled:
            marker_reason, count_reason = [*cancelled.reasons, "None", "None"][:2]
            if count_reason == "ConditionalCheckFailed":
                raise not_started from None
            if marker_reason != "ConditionalCheckFailed":
                code = next((r for r in cancelled.reasons if r != "None"), "TransactionCanceledException")
                raise self._error("TransactWriteItems", code, f"transaction cancelled: {cancelled}") from None
            # counted by an earlier try of this batch: finish what that try may have left undone
        item = self._get(_run_key(run_id))
        if item is None:
            raise not_started
        return self._summarise_if_done(run_id, item)

    def _write_results(self, run_id: str, results: Sequence[TagResult], recorded_at: datetime) -> None:
        """Put every result but the plain fresh ones (a report names no fresh tag but a recovered
        one; counters carry the rest)."""
        expires = _epoch(recorded_at + self.ttl)
        by_tag = {(r.repository, r.tag): r for r in results if _stored(r)}
        items = [_result_item(run_id, r, recorded_at, expires) for r in by_tag.values()]
        for start in range(0, len(items), _BATCH_WRITE):
            pending: Any = [{"PutRequest": {"Item": item}} for item in items[start : start + _BATCH_WRITE]]
            for attempt in range(_ATTEMPTS):
                request: Any = {self.table_name: pending}
                response = self._call(
                    "BatchWriteItem", partial(self.client.batch_write_item, RequestItems=request)
                )
                unprocessed: Any = response.get("UnprocessedItems", {})
                pending = unprocessed.get(self.table_name, [])
                if not pending:
                    break
                if attempt == _ATTEMPTS - 1:
                    raise self._error(
                        "BatchWriteItem", UNPROCESSED_ITEMS, f"{len(pending)} results not written"
                    )
                _backoff(attempt)

    def _summarise_if_done(self, run_id: str, item: Item) -> bool:
        done, expected = _int(item, "done"), _int(item, "expected")
        if done is None or expected is None or done < expected or "summarised" in item:
            return False
        try:
            self._update(
                _run_key(run_id),
                {"summarised": {"BOOL": True}, "summarisedAt": {"S": iso(self.now())}},
                "attribute_not_exists(#summarised) AND #done >= #expected",
                {"#summarised": "summarised", "#done": "done", "#expected": "expected"},
                {},
            )
        except ConditionFailedError:
            return False
        return True

    def run_progress(self, run_id: str) -> RunProgress | None:
        item = self._get(_run_key(run_id))
        return _progress_from(run_id, item) if item is not None else None

    def run_results(self, run_id: str) -> list[TagResult]:
        """Every result of the run, for its RunReport: the stored ones, plus one nameless FRESH result
        (with its rule prefix) per fresh tag counted, so counts, per-rule metrics and "tags checked"
        add up. Complete once ``record_results`` returned True: results are stored before counted.
        """
        results = [
            _result_from(item)
            for item in self._query(
                {
                    "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
                    "ExpressionAttributeNames": {"#pk": PK, "#sk": SK},
                    "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}, ":prefix": {"S": "RESULT#"}},
                    "ConsistentRead": True,
                }
            )
        ]
        progress = self.run_progress(run_id)
        if progress is not None:
            stored_fresh = Counter(r.rule_prefix for r in results if r.outcome is Outcome.FRESH)
            for (rule, outcome), count in sorted(progress.counts.items()):
                if outcome is Outcome.FRESH:
                    unnamed = count - stored_fresh[rule]
                    results.extend(TagResult("", "", rule, Outcome.FRESH) for _ in range(unnamed))
        return results

    # -- history -------------------------------------------------------------------------------------

    def changes_since(self, since: datetime, until: datetime | None = None) -> list[Change]:
        """Refreshes and failures recorded in [since, until], oldest first: one Query per UTC day."""
        end = until or self.now()
        window = {":since": {"S": iso(since)}, ":until": {"S": iso(end)}}
        changes: list[Change] = []
        day, last = since.astimezone(UTC).date(), end.astimezone(UTC).date()
        while day <= last:
            for item in self._query(
                {
                    "IndexName": CHANGES_INDEX,
                    "KeyConditionExpression": "#day = :day AND #at BETWEEN :since AND :until",
                    "ExpressionAttributeNames": {"#day": CHANGE_DAY, "#at": CHANGED_AT},
                    "ExpressionAttributeValues": {":day": {"S": day.isoformat()}, **window},
                }
            ):
                at = _time(item, CHANGED_AT) or since
                changes.append(Change(at, _str(item, "runId") or "", _result_from(item)))
            day += timedelta(days=1)
        changes.sort(key=lambda change: change.at)
        return changes


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.02 * 2**attempt))  # noqa: S311 - jitter, not security


# -- idempotency -------------------------------------------------------------------------------------


def idempotency_persistence(
    table_name: str, *, client: DynamoDBClient | None = None
) -> DynamoDBPersistenceLayer:
    """Powertools idempotency records in the state table: ``pk = IDEMPOTENCY``, ``sk`` = Powertools'
    key (``<function>#<payload hash>``), expiring through the table's TTL attribute ``expiresAt``
    (Powertools writes epoch seconds there, what TTL reads). The other attributes are prefixed so
    an idempotency item is never mistaken for state; none is a GSI key.
    """
    return DynamoDBPersistenceLayer(
        table_name=table_name,
        key_attr=PK,
        sort_key_attr=SK,
        static_pk_value=IDEMPOTENCY_PK,
        expiry_attr=EXPIRES_AT,
        in_progress_expiry_attr="idempotencyInProgressExpiresAt",
        status_attr="idempotencyStatus",
        data_attr="idempotencyData",
        validation_key_attr="idempotencyValidation",
        boto3_client=client,
    )
