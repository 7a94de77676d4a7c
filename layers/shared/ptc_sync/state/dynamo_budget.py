"""``PullBudget`` on the state table: one item per upstream host, spent by conditional decrements so
concurrent checkers never overspend, restarted when upstream's window has passed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from ptc_sync.models import (
    RateLimitStatus,
)
from ptc_sync.state.codec import _host_key, _int, _number, _str, _time, iso
from ptc_sync.state.ports import TOO_MUCH_CONTENTION
from ptc_sync.state.table import _ATTEMPTS, ConditionFailedError, StateTable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    from ptc_sync.state.codec import Item


class PullBudgetTable(StateTable):
    """Upstream budgets: what upstream reported, and reservations against it."""

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
        observed, or upstream sends no limits) allows the pulls, as the local budget does; a budget
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
