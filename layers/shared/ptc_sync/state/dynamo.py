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
changed since" is one Query per day and nothing here ever Scans. Tag states carry ``tagGroup`` (the
repository's first path segment) and ``tagKey`` (``<repository>#<tag>``): the keys of the sparse GSI
``TagStatesByGroup``, so a scan reads the states of its 50 repositories with one range Query per
segment, paying for the bytes returned (``repository_states``). A state stored before the index
has no keys; the index misses it until its next result, which then writes it (``record_tag``).
ECR repository names and tags cannot contain ``#``, so the separators are unambiguous.

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

- the journal, the lease and the budget (``ptc_sync.journal``, ``reserve_pulls``, ``rate_limit``), the
  runs (``done``/``summarised``, a run's results for its report) and every re-read after a failed
  version condition: strongly consistent;
- ``tag_states`` for the checker's refresh gate (cooldown, backoff) and its echo filter: strongly
  consistent by default, since a stale ``refreshedAt`` or ``failedAt`` would let a refresh through
  that the cooldown or the backoff holds back;
- the previous state a result is folded into (``record_tag``: for a scan, the index's range Query,
  ``repository_states``; for a check or warm item one BatchGetItem per 100 tags; a GetItem when
  none is given): eventually consistent (the index's replication lag, typically under a second, is
  of the same kind as the table's). A state the read misses is written with the condition that no
  item exists, which fails, and the state is re-read strongly. A stale state cannot make a
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

from ptc_sync.state.dynamo_budget import PullBudgetTable
from ptc_sync.state.dynamo_runs import RunLedgerTable
from ptc_sync.state.dynamo_tags import TagHistoryTable


class DynamoStateStore(TagHistoryTable, PullBudgetTable, RunLedgerTable):
    """``StateStore`` on one DynamoDB table (schema in the module docstring)."""
