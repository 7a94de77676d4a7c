"""The upstream registry client: "what is this tag's digest now?", cheaply, correctly and politely.

(About 400 lines: resolve, list and parse; the session owns everything about auth.)

- ``resolve_digest``: one HEAD with the full Accept list (index types included, so an index or a
  manifest list resolves to its own digest, never a child's); the digest from
  ``Docker-Content-Digest``, validated. Only when HEAD gives no digest (or 405) does it GET and hash
  the exact body bytes (a GET counts as a pull on Docker Hub, a HEAD does not).
- ``get_manifest``, ``list_tags`` (``Link`` pagination on the same origin), ``resolve_many``.
- Parsing and checking what upstream answered: digests, media types, manifest bodies, tag lists.
- Everything about auth, tokens, redirects and rate-limit headers is the session's
  (``registry.session``): this module never sees a token or a credential.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Final
from urllib.parse import urlencode

from aws_lambda_powertools import Logger

from ptc_sync import __version__
from ptc_sync import mediatypes as mt
from ptc_sync.models import DIGEST_RE, RateLimitStatus, ResolvedDigest, UpstreamRef
from ptc_sync.names import is_tag, is_upstream_repository
from ptc_sync.registry.authorizer import CredentialsFn
from ptc_sync.registry.concurrency import ResolveResult, resolve_many
from ptc_sync.registry.errors import (
    BadResponseError,
    InvalidReferenceError,
    RegistryError,
    describe_target,
)
from ptc_sync.registry.session import RegistrySession
from ptc_sync.registry.transport import (
    HOST_RE,
    Clock,
    Response,
    RetryPolicy,
    safe_url,
    same_origin,
)

logger = Logger(child=True)


SCHEMA1_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)

_LINK_RE: Final = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL_NEXT_RE: Final = re.compile(r"""(?:^|;)\s*rel\s*=\s*"?([^";]*)"?""", re.IGNORECASE)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def next_link(values: Iterable[str]) -> str | None:
    """The target of ``rel="next"`` in ``Link`` header values (RFC 8288), or None."""
    for value in values:
        for match in _LINK_RE.finditer(value):
            params = match.group(2) or ""
            for rel in _REL_NEXT_RE.finditer(params):
                if "next" in rel.group(1).lower().split():
                    return match.group(1)
    return None


def _hash(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class RegistryClient:
    """Talks to upstream registries for ptc-sync. Thread-safe: one client is shared by all workers.

    ``host_override`` maps an upstream host to a loopback base URL; only test and demo wiring pass it.
    """

    def __init__(
        self,
        credentials: CredentialsFn | None = None,
        *,
        host_override: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        max_per_host: int = 8,
        scopes_per_token: int = 16,
        max_redirects: int = 5,
        clock: Clock | None = None,
        rng: Callable[[], float] = random.random,
        user_agent: str = f"ptc-sync/{__version__}",
    ) -> None:
        if scopes_per_token < 1:
            raise ValueError("scopes_per_token must be at least 1")
        self._session = RegistrySession(
            credentials,
            host_override=host_override,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            max_per_host=max_per_host,
            scopes_per_token=scopes_per_token,
            max_redirects=max_redirects,
            clock=clock,
            rng=rng,
            user_agent=user_agent,
        )
        self._transport = self._session.transport  # its counters are the client's
        self._clock = self._session.clock
        self.max_per_host = max_per_host
        self.scopes_per_token = scopes_per_token
        self.max_redirects = max_redirects
        self._state_lock = threading.Lock()
        self._head_unsupported: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- counters and rate limits --------------------------------------------------------------------

    @property
    def request_count(self) -> int:
        """HTTP requests sent upstream (every attempt, token and probe requests included)."""
        return self._transport.counters.get("requests")

    @property
    def manifest_get_count(self) -> int:
        return self._transport.counters.get("manifest_get")

    @property
    def manifest_head_count(self) -> int:
        return self._transport.counters.get("manifest_head")

    @property
    def token_request_count(self) -> int:
        return self._transport.counters.get("token")

    def counts(self) -> dict[str, int]:
        """Snapshot: requests, manifest_head, manifest_get, token, tags, ping, retries, redirects."""
        return self._transport.counters.snapshot()

    def rate_limit(self, host: str) -> RateLimitStatus | None:
        return self._session.rate_limits.get(host)

    def rate_limits(self) -> tuple[RateLimitStatus, ...]:
        return self._session.rate_limits.all()

    # -- public operations ---------------------------------------------------------------------------

    def resolve_digest(self, ref: UpstreamRef, tag: str) -> ResolvedDigest:
        """The digest and media type ``tag`` points at upstream now (an index's own digest for multi-arch).

        One HEAD when upstream reports the digest; a GET (hashing the exact bytes) only when it does not.
        """
        self._check(ref, tag)
        url = self._manifest_url(ref, tag)
        if ref.host not in self._head_unsupported:
            resp = self._session.send(
                "HEAD", url, ref=ref, reference=tag, category="manifest_head", accept=mt.ACCEPT_ALL
            )
            if resp.status == 200:
                raw = resp.headers.get("Docker-Content-Digest")
                if raw:
                    digest = self._valid_digest(raw.strip(), ref, tag, "HEAD manifest")
                    if DIGEST_RE.fullmatch(tag) and digest != tag:
                        raise BadResponseError(
                            f"{describe_target(ref.host, ref.repository, tag)}: HEAD manifest reports "
                            f"digest {digest}, not the digest asked for",
                            host=ref.host,
                            repository=ref.repository,
                            reference=tag,
                            status=200,
                        )
                    media_type = _media_type(resp.headers.get("Content-Type"))
                    self._check_head_media_type(media_type, ref, tag)
                    return ResolvedDigest(digest=digest, media_type=media_type)
                logger.debug(
                    "HEAD gave no Docker-Content-Digest, falling back to GET", extra={"image": f"{ref}:{tag}"}
                )
            elif resp.status == 405:
                with self._state_lock:
                    self._head_unsupported.add(ref.host)
            else:
                self._session.raise_for(resp, ref, tag, "HEAD manifest")
        _body, media_type, digest = self._fetch_manifest(ref, tag)
        return ResolvedDigest(digest=digest, media_type=media_type)

    def get_manifest(self, ref: UpstreamRef, reference: str) -> tuple[bytes, str]:
        """The manifest's exact bytes and media type (a GET: counts as a pull on Docker Hub)."""
        self._check(ref, reference)
        body, media_type, _digest = self._fetch_manifest(ref, reference)
        return body, media_type

    def list_tags(self, ref: UpstreamRef, page_size: int = 1000) -> Iterator[str]:
        """Every tag of the repository, following ``Link: <…>; rel="next"`` pagination."""
        self._check(ref, None)
        if not 1 <= page_size <= 10000:
            raise ValueError("page_size must be between 1 and 10000")
        first = f"https://{ref.host}/v2/{ref.repository}/tags/list?{urlencode({'n': page_size})}"
        url: str | None = first
        seen: set[str] = set()
        while url is not None:
            if url in seen:
                raise BadResponseError(
                    f"{ref}: tag list pagination loops back to {safe_url(url)}",
                    host=ref.host,
                    repository=ref.repository,
                )
            seen.add(url)
            resp = self._session.send(
                "GET", url, ref=ref, reference="", category="tags", accept="application/json"
            )
            if resp.status != 200:
                self._session.raise_for(resp, ref, "", "GET tags")
            yield from self._parse_tags(resp, ref)
            link = next_link(resp.headers.getlist("Link"))
            if link is None:
                return
            url = self._session.router.resolve(link, url)
            if not same_origin(url, first):
                raise BadResponseError(
                    f"{ref}: tag list pagination points at another host ({safe_url(url)})",
                    host=ref.host,
                    repository=ref.repository,
                )

    def resolve_many(
        self, items: Iterable[tuple[UpstreamRef, str]], max_workers: int = 32
    ) -> Iterator[ResolveResult]:
        """Resolve many tags with a bounded worker pool; yields ``(ref, tag, digest or error)`` as they
        complete. Hosts are probed once and tokens fetched for several repositories per request first."""
        return resolve_many(self, items, max_workers=max_workers)

    def prepare_host(self, host: str, refs: Iterable[UpstreamRef]) -> RegistryError | None:
        """Learn ``host``'s auth scheme (one ``/v2/`` probe when unknown) and fetch Bearer tokens covering
        several of ``refs`` per request; an UpstreamUnavailableError when the host is unreachable."""
        refs = [r for r in refs if r.host == host]
        if not refs:
            return None
        try:
            self._check(refs[0], None)
        except InvalidReferenceError:
            return None  # each item reports it
        return self._session.prepare(host, refs)

    # -- checks --------------------------------------------------------------------------------------

    @staticmethod
    def _manifest_url(ref: UpstreamRef, reference: str) -> str:
        return f"https://{ref.host}/v2/{ref.repository}/manifests/{reference}"

    def _check(self, ref: UpstreamRef, reference: str | None) -> None:
        problem = ""
        if not HOST_RE.fullmatch(ref.host):
            problem = f"invalid upstream host {ref.host[:100]!r}"
        elif not is_upstream_repository(ref.repository):
            problem = f"invalid repository name {ref.repository[:100]!r}"
        elif reference is not None and not (is_tag(reference) or DIGEST_RE.fullmatch(reference)):
            problem = f"invalid tag or digest {reference[:140]!r}"
        if problem:
            raise InvalidReferenceError(
                f"{ref.host[:100]}: {problem}",
                host=ref.host,
                repository=ref.repository,
                reference=reference or "",
            )

    # -- manifests -----------------------------------------------------------------------------------

    def _valid_digest(self, raw: str, ref: UpstreamRef, reference: str, what: str) -> str:
        if not DIGEST_RE.fullmatch(raw):
            raise BadResponseError(
                f"{describe_target(ref.host, ref.repository, reference)}: {what}: malformed "
                f"Docker-Content-Digest {raw[:100]!r}",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=200,
            )
        return raw

    def _check_head_media_type(self, media_type: str, ref: UpstreamRef, tag: str) -> None:
        if not media_type or media_type in mt.MANIFEST_TYPES or media_type in SCHEMA1_TYPES:
            return
        if media_type.startswith("application/") and media_type.endswith("json"):
            return
        raise BadResponseError(
            f"{describe_target(ref.host, ref.repository, tag)}: HEAD manifest answered Content-Type "
            f"{media_type[:100]!r}, not a manifest",
            host=ref.host,
            repository=ref.repository,
            reference=tag,
            status=200,
        )

    def _fetch_manifest(self, ref: UpstreamRef, reference: str) -> tuple[bytes, str, str]:
        url = self._manifest_url(ref, reference)
        resp = self._session.send(
            "GET", url, ref=ref, reference=reference, category="manifest_get", accept=mt.ACCEPT_ALL
        )
        if resp.status != 200:
            self._session.raise_for(resp, ref, reference, "GET manifest")
        target = describe_target(ref.host, ref.repository, reference)
        body = resp.body
        header = (resp.headers.get("Docker-Content-Digest") or "").strip()
        if header:
            self._valid_digest(header, ref, reference, "GET manifest")
            computed = _hash(header.split(":", 1)[0], body)
            if computed != header:
                raise BadResponseError(
                    f"{target}: GET manifest body hashes to {computed}, "
                    f"but Docker-Content-Digest says {header}",
                    host=ref.host,
                    repository=ref.repository,
                    reference=reference,
                    status=200,
                )
            digest = header
        else:
            digest = _hash("sha256", body)
        if DIGEST_RE.fullmatch(reference):
            asked = _hash(reference.split(":", 1)[0], body)
            if asked != reference:
                raise BadResponseError(
                    f"{target}: GET manifest body hashes to {asked}, not the digest asked for",
                    host=ref.host,
                    repository=ref.repository,
                    reference=reference,
                    status=200,
                )
            digest = reference
        media_type = self._manifest_media_type(resp, body, target, ref, reference)
        return body, media_type, digest

    @staticmethod
    def _manifest_media_type(
        resp: Response, body: bytes, target: str, ref: UpstreamRef, reference: str
    ) -> str:
        def bad(why: str) -> BadResponseError:
            return BadResponseError(
                f"{target}: GET manifest: {why}",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=resp.status,
            )

        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise bad(f"body is not JSON ({len(body)} bytes)") from None
        if not isinstance(doc, dict):
            raise bad("body is not a JSON object")
        header_type = _media_type(resp.headers.get("Content-Type"))
        if header_type in mt.MANIFEST_TYPES or header_type in SCHEMA1_TYPES:
            return header_type
        body_type = doc.get("mediaType")
        if isinstance(body_type, str) and body_type in mt.MANIFEST_TYPES:
            return body_type
        if doc.get("schemaVersion") == 2:  # OCI allows mediaType to be left out
            if isinstance(doc.get("manifests"), list):
                return mt.OCI_INDEX
            if isinstance(doc.get("config"), dict):
                return mt.OCI_MANIFEST
        if doc.get("schemaVersion") == 1:
            return "application/vnd.docker.distribution.manifest.v1+json"
        raise bad(f"not a manifest (Content-Type {header_type[:80]!r})")

    @staticmethod
    def _parse_tags(resp: Response, ref: UpstreamRef) -> list[str]:
        try:
            doc = json.loads(resp.body)
        except (ValueError, UnicodeDecodeError):
            doc = None
        tags = doc.get("tags") if isinstance(doc, dict) else None
        if doc is None or not isinstance(doc, dict) or not isinstance(tags, list | None):
            raise BadResponseError(
                f"{ref}: GET tags: body is not a tag list",
                host=ref.host,
                repository=ref.repository,
                status=200,
            )
        out = [t for t in (tags or []) if isinstance(t, str) and is_tag(t)]
        if len(out) != len(tags or []):
            logger.warning(
                "ignored malformed tag names",
                extra={"upstream": str(ref), "ignored": len(tags or []) - len(out)},
            )
        return out
