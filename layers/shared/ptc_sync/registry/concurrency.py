"""Checking many tags at once: a bounded worker pool over one shared client.

The client's per-host semaphores cap concurrent requests to each upstream host, its token cache is
shared by all workers, and before any tag is checked each host is prepared once (auth scheme learnt,
Bearer tokens fetched for several repositories per request). A host that cannot be reached during
preparation fails its tags at once instead of retrying each of them.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from ptc_sync.models import ResolvedDigest, UpstreamRef
from ptc_sync.registry.errors import RegistryError, UpstreamUnavailableError, describe_target

ResolveResult = tuple[UpstreamRef, str, ResolvedDigest | RegistryError]


class Resolver(Protocol):
    """What the pool needs of a client (``RegistryClient``; this module does not import it)."""

    def resolve_digest(self, ref: UpstreamRef, tag: str) -> ResolvedDigest: ...

    def prepare_host(self, host: str, refs: Iterable[UpstreamRef]) -> RegistryError | None: ...


def _resolve_one(client: Resolver, ref: UpstreamRef, tag: str) -> ResolvedDigest | RegistryError:
    try:
        return client.resolve_digest(ref, tag)
    except RegistryError as exc:
        return exc


def _host_down(error: RegistryError, ref: UpstreamRef, tag: str) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(
        f"{describe_target(ref.host, ref.repository, tag)}: not checked, host unreachable ({error.message})",
        host=ref.host,
        repository=ref.repository,
        reference=tag,
        status=error.status,
    )


def _prepare(
    pool: ThreadPoolExecutor, client: Resolver, by_host: dict[str, list[UpstreamRef]]
) -> dict[str, RegistryError]:
    """Prepare every host in parallel; returns the hosts found unreachable."""
    futures = {pool.submit(client.prepare_host, host, refs): host for host, refs in by_host.items()}
    down: dict[str, RegistryError] = {}
    for future, host in futures.items():
        error = future.result()
        if error is not None:
            down[host] = error
    return down


def resolve_many(
    client: Resolver, items: Iterable[tuple[UpstreamRef, str]], *, max_workers: int = 32
) -> Iterator[ResolveResult]:
    """Yield ``(ref, tag, ResolvedDigest | RegistryError)`` for every item, in completion order.

    At most ``max_workers`` checks run at once and at most twice ``max_workers`` are queued, so a
    huge input does not become a huge backlog. Closing the iterator early cancels what is queued.
    """
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    work = list(items)
    if not work:
        return
    by_host: dict[str, list[UpstreamRef]] = {}
    for ref, _tag in work:
        by_host.setdefault(ref.host, []).append(ref)
    workers = min(max_workers, len(work))
    done: queue.SimpleQueue[Future[ResolvedDigest | RegistryError]] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ptc-registry") as pool:
        pending: dict[Future[ResolvedDigest | RegistryError], tuple[UpstreamRef, str]] = {}
        try:
            down = _prepare(pool, client, by_host)
            items_left = iter(work)
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * workers:
                    item = next(items_left, None)
                    if item is None:
                        exhausted = True
                        break
                    ref, tag = item
                    if ref.host in down:
                        yield ref, tag, _host_down(down[ref.host], ref, tag)
                        continue
                    future = pool.submit(_resolve_one, client, ref, tag)
                    pending[future] = (ref, tag)
                    future.add_done_callback(done.put)
                if not pending:
                    return
                finished = done.get()  # completion order, O(1) per result
                ref, tag = pending.pop(finished)
                yield ref, tag, finished.result()
        finally:
            for future in pending:
                future.cancel()
