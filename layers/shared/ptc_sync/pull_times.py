"""People's pulls only: which pull times ECR reports are ptc-sync's own (issue 15 item 5).

``PTC_PULLED_WITHIN_DAYS`` keeps a tag in scope while people pull it. ECR's evidence is per image:
``lastRecordedPullTime`` (every pull, ptc-sync's BatchGetImage included, unless the puller is
registered with RegisterPullTimeUpdateExclusion; refreshed at least once every 24 hours, so coarse) and
the push time (an import is a first pull). Both lie after a refresh: the new image was imported by
ptc-sync and has no person's pull yet. So:

- a time within one of ptc-sync's own pull windows for the tag (``OWN_PULL_WINDOW`` after each time
  the tag state says ptc-sync pulled it: a refresh, a failed refresh, a pre-warm) is ptc-sync's;
- the tag state keeps the last person's pull ptc-sync saw (``TagState.pulled_at``), so a refresh does
  not erase it, and a tag nobody pulls leaves the scope N days after its last person's pull, however
  often ptc-sync refreshed it.

The stack registers the checker's role as an exclusion (template.yaml), so ECR records none of its
pulls; the windows are the fallback where it is not in place (an older stack, a local run).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final, Protocol

from ptc_sync.models import Outcome

# ptc-sync's pulls of a tag all happen within one checker invocation (Timeout 900 s in template.yaml)
# after the check time its tag state records; a minute either side for the clocks of Lambda and ECR
OWN_PULL_WINDOW: Final = timedelta(seconds=900 + 60)
OWN_PULL_SKEW: Final = timedelta(seconds=60)
# outcomes whose check pulled the tag through ECR (BatchGetImage): its checked_at is a pull of ours
PULLING_OUTCOMES: Final = frozenset(
    {Outcome.REFRESHED, Outcome.REFRESH_FAILED, Outcome.WARMING, Outcome.REPAIRED, Outcome.SKIPPED}
)


class PullRecord(Protocol):
    """What the tag state says of ptc-sync's own pulls (``ptc_sync.state.TagState``)."""

    @property
    def outcome(self) -> Outcome | None: ...

    @property
    def checked_at(self) -> datetime | None: ...

    @property
    def refreshed_at(self) -> datetime | None: ...

    @property
    def failed_at(self) -> datetime | None: ...


def own_pull_times(state: PullRecord | None) -> tuple[datetime, ...]:
    """When ptc-sync pulled the tag, as far as its state says."""
    if state is None:
        return ()
    times = [state.refreshed_at, state.failed_at]
    if state.outcome in PULLING_OUTCOMES:
        times.append(state.checked_at)
    return tuple(t for t in times if t is not None)


def is_own(moment: datetime, own: Iterable[datetime]) -> bool:
    return any(t - OWN_PULL_SKEW <= moment <= t + OWN_PULL_WINDOW for t in own)


def people_pulled_at(
    last_pulled_at: datetime | None, pushed_at: datetime | None, own: Iterable[datetime]
) -> datetime | None:
    """The last sign of a person's pull in what ECR says of the image: its pull time, else its push,
    each ignored when it falls within one of ptc-sync's own pull windows."""
    own = tuple(own)
    for moment in (last_pulled_at, pushed_at):
        if moment is not None and not is_own(moment, own):
            return moment
    return None


def latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None
