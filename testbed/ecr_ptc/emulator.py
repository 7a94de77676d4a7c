"""The emulator: one class composed of the concerns' mixins, its switches set at construction, and the
installation that patches moto's ``ECRResponse`` (moto dispatches actions by method name);
``uninstall()`` restores the class exactly. One emulator at a time, one lock around every emulated
call; each call first finishes the background imports and layer caching that are due.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Final, Self

import urllib3
from moto.core.responses import ActionResult
from moto.ecr.responses import ECRResponse

from testbed.ecr_ptc.api import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, _Call
from testbed.ecr_ptc.clock import Clock, FakeClock
from testbed.ecr_ptc.faults import _Background, _Fault
from testbed.ecr_ptc.images import ImagesMixin, _LaggingTag
from testbed.ecr_ptc.layers import (
    LAYER_UNAVAILABLE,
    UNCACHED_LAYER_ANSWERS,
    ImportedLayer,
    LayersMixin,
    _CachingLayer,
)
from testbed.ecr_ptc.pulls import ImportRecord, PullsMixin, UpstreamFetch, _Pending
from testbed.ecr_ptc.rules import _Rule

_ACTIONS: Final = (
    "create_pull_through_cache_rule",
    "describe_pull_through_cache_rules",
    "delete_pull_through_cache_rule",
    "update_pull_through_cache_rule",
    "validate_pull_through_cache_rule",
    "batch_get_image",
    "put_image",
    "describe_images",
    "batch_delete_image",
    "get_download_url_for_layer",
    "batch_check_layer_availability",
    "register_pull_time_update_exclusion",
    "deregister_pull_time_update_exclusion",
    "list_pull_time_update_exclusions",
)
_MISSING: Final = object()


class PullThroughCacheEmulator(PullsMixin, ImagesMixin, LayersMixin):
    """Makes moto's ECR behave like ECR pull-through cache while installed (a context manager).

    ``upstreams`` maps real upstream hosts (``registry-1.docker.io``, ``ghcr.io``, ...) to loopback
    base URLs (``http://127.0.0.1:PORT``). Use inside ``mock_aws()``; only one emulator at a time.
    """

    _installed: ClassVar[PullThroughCacheEmulator | None] = None

    def __init__(
        self,
        upstreams: Mapping[str, str],
        clock: Clock | None = None,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        strict_put_image_layers: bool = True,
        upstream_timeout: float = 5.0,
        layer_cache_delay: timedelta = timedelta(0),
        uncached_layer_answer: str = LAYER_UNAVAILABLE,
        describe_lag: timedelta = timedelta(0),
        put_image_rate: int | None = None,
    ) -> None:
        """``layer_cache_delay``: how long ECR takes to cache a blob after the first GetDownloadUrlForLayer
        sent the client upstream (reported: #939, #2304). ``uncached_layer_answer``: what
        BatchCheckLayerAvailability says for a referenced blob not cached yet, ``UNAVAILABLE`` or the
        failure ``MissingLayerDigest`` (unknown). ``describe_lag``: how long DescribeImages keeps showing
        a removed tag's old digest (unknown; zero: off). ``put_image_rate``: PutImage calls accepted per
        second of ``clock`` before ThrottlingException (documented quota: 10; None: off)."""
        if uncached_layer_answer not in UNCACHED_LAYER_ANSWERS:
            raise ValueError(f"uncached_layer_answer must be one of {UNCACHED_LAYER_ANSWERS}")
        self.layer_cache_delay = layer_cache_delay
        self.uncached_layer_answer = uncached_layer_answer
        self.describe_lag = describe_lag
        self.put_image_rate = put_image_rate
        self.upstreams: dict[str, str] = {}
        for host, url in upstreams.items():
            self.add_upstream(host, url)
        self.clock: Clock = clock or FakeClock()
        self.account_id = account_id
        self.region = region
        self.strict_put_image_layers = strict_put_image_layers
        self.unreachable_hosts: set[str] = set()
        self.imports: list[ImportRecord] = []
        self.imported_layers: list[ImportedLayer] = []
        self.upstream_fetches: list[UpstreamFetch] = []
        self.events: list[dict[str, Any]] = []  # every event also put on the moto default bus
        self.pulls: Counter[tuple[str, str]] = Counter()  # (repository, tag or digest) -> BatchGetImage count
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=2.0, read=upstream_timeout)
        )
        self._lock = threading.RLock()
        self._rules: dict[tuple[str, str], dict[str, _Rule]] = {}
        self._last_checked: dict[tuple[str, str, str, str], datetime] = {}
        self._faults: list[_Fault] = []
        self._background: list[_Background] = []
        self._pending: dict[tuple[str, str, str, str], _Pending] = {}
        self._exclusions: dict[tuple[str, str], dict[str, datetime]] = {}  # principalArn -> createdAt
        self._caching_layers: dict[tuple[str, str, str, str], _CachingLayer] = {}
        self._lagging: dict[tuple[str, str, str, str], _LaggingTag] = {}
        self._put_times: dict[tuple[str, str], deque[datetime]] = {}
        self._saved: dict[str, object] = {}
        # two unknowns switchable both ways (images.py, pulls.py): PutImage into a repository under a
        # rule, and a pull by tag importing again a tag that BatchDeleteImage removed
        self.put_image_in_cache = True
        self.reimport_after_delete = True
        # unknown (docs/ecr-facts.md, "Still unknown"): whether ECR imports into a repository under a
        # ROOT rule that it did not create (one the team pushes to); pulls.py
        self.import_into_pushed_repositories = True
        self._removed_tags: set[tuple[str, str, str, str]] = set()

    # -- installation ---------------------------------------------------------------------------------

    def install(self) -> Self:
        """Patch moto's ECRResponse; uninstall() puts back exactly what was there."""
        if PullThroughCacheEmulator._installed is not None:
            raise RuntimeError("a PullThroughCacheEmulator is already installed")
        for action in _ACTIONS:
            self._saved[action] = ECRResponse.__dict__.get(action, _MISSING)
            setattr(ECRResponse, action, self._handler(getattr(self, f"_api_{action}")))
        PullThroughCacheEmulator._installed = self
        return self

    def uninstall(self) -> None:
        if PullThroughCacheEmulator._installed is not self:
            return
        for action, original in self._saved.items():
            if original is _MISSING:
                delattr(ECRResponse, action)
            else:
                setattr(ECRResponse, action, original)
        self._saved.clear()
        PullThroughCacheEmulator._installed = None

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def _handler(self, impl: Callable[[_Call], ActionResult]) -> Callable[[ECRResponse], ActionResult]:
        def handler(response: ECRResponse) -> ActionResult:
            with self._lock:
                call = _Call(response)
                self._advance_background(call.account, call.region, None)
                self._advance_layers()
                return impl(call)

        handler.__name__ = impl.__name__.removeprefix("_api_")
        return handler
