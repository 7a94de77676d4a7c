"""Switches tests flip to make upstream fail: an unreachable host, injected import failures, and imports
that finish in the background (the seed article's large image; docs/ecr-facts.md "Which calls reach
upstream" and "Still unknown": what ECR answers while a large image is still importing; the real
failure code is not documented).

``import_in_background`` makes the first pull answer a failure (default UpstreamUnavailable) or raise,
the repository exists, and the image appears after N later DescribeImages/BatchGetImage calls on it or
once the clock passes a time (the progression itself lives in ``pulls``). ``set_upstream_unreachable``
and ``fail_next_import`` inject upstream faults; at a 24 h re-check any failure serves the cache.
Faults use only codes of the ImageFailureCode enum or exceptions BatchGetImage's model lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from testbed.ecr_ptc.api import FAILURE_CODES
from testbed.ecr_ptc.upstream import UpstreamMixin

# Exceptions BatchGetImage's model lists that a fault may raise instead of returning a failure.
RAISABLE_CODES: Final = frozenset(
    {"UnableToGetUpstreamImageException", "ServerException", "LimitExceededException"}
)

BACKGROUND_REASON: Final = "Timed out while importing the image from the upstream registry"


@dataclass
class _Fault:
    code: str
    reason: str
    repository: str | None
    tag: str | None
    remaining: int


@dataclass
class _Background:
    repository: str | None
    tag: str | None
    ready_after_calls: int | None
    ready_after: timedelta | None
    failure_code: str
    failure_reason: str
    raise_code: str | None


class FaultsMixin(UpstreamMixin):
    """Injected upstream faults and background-import switches, and their matching."""

    _faults: list[_Fault]
    _background: list[_Background]

    def set_upstream_unreachable(self, host: str, unreachable: bool = True) -> None:
        """Make every request to ``host`` (manifests, blobs, tokens) fail as if the network were down."""
        if unreachable:
            self.unreachable_hosts.add(host)
        else:
            self.unreachable_hosts.discard(host)

    def fail_next_import(
        self,
        code: str,
        reason: str | None = None,
        *,
        repository: str | None = None,
        tag: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` upstream manifest fetches (first imports and 24 h re-checks) matching
        ``repository``/``tag`` fail without contacting upstream: ``code`` from the ImageFailureCode enum
        gives a failure entry; UnableToGetUpstreamImageException, ServerException or
        LimitExceededException is raised instead. At a 24 h re-check any failure serves the cache."""
        if code not in FAILURE_CODES and code not in RAISABLE_CODES:
            raise ValueError(f"unknown failure code {code!r}")
        self._faults.append(_Fault(code, reason or f"injected {code}", repository, tag, times))

    def import_in_background(
        self,
        repository: str | None = None,
        tag: str | None = None,
        *,
        ready_after_calls: int | None = None,
        ready_after: timedelta | None = None,
        failure_code: str = "UpstreamUnavailable",
        failure_reason: str = BACKGROUND_REASON,
        raise_code: str | None = None,
    ) -> None:
        """From now on, the first pull of a not-yet-cached tag (matching ``repository``/``tag``; None
        matches all) answers with ``failure_code`` (or raises ``raise_code``) while the import goes on:
        the image appears after ``ready_after_calls`` later DescribeImages/BatchGetImage calls on the
        repository, or once the clock has moved ``ready_after``, whichever comes first (default: 1 call)."""
        if raise_code is not None and raise_code not in RAISABLE_CODES:
            raise ValueError(f"raise_code must be one of {sorted(RAISABLE_CODES)}")
        if failure_code not in FAILURE_CODES:
            raise ValueError(f"unknown failure code {failure_code!r}")
        if ready_after_calls is None and ready_after is None:
            ready_after_calls = 1
        self._background.append(
            _Background(
                repository,
                tag,
                ready_after_calls,
                ready_after,
                failure_code,
                failure_reason,
                raise_code,
            )
        )

    def _take_fault(self, repository: str, tag: str) -> _Fault | None:
        for fault in self._faults:
            if fault.repository in (None, repository) and fault.tag in (None, tag) and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _background_for(self, repository: str, tag: str) -> _Background | None:
        return next(
            (b for b in self._background if b.repository in (None, repository) and b.tag in (None, tag)),
            None,
        )
