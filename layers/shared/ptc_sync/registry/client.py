"""The upstream registry client: "what is this tag's digest now?", cheaply, correctly and politely.

- ``resolve_digest``: one HEAD with the full Accept list (index types included, so an index or a
  manifest list resolves to its own digest, never a child's); the digest from
  ``Docker-Content-Digest``, validated. Only when HEAD gives no digest (or 405) does it GET and hash
  the exact body bytes (a GET counts as a pull on Docker Hub, a HEAD does not).
- Auth: Bearer challenge flow (anonymous or with the rule's Basic credentials), tokens cached per
  realm/service/scope/principal and shared by workers, several repository scopes per token request
  when preparing a batch, Basic registries, one re-authentication on a 401 with a cached token.
- A token request goes only to a realm the rule's upstream may name (``auth.realm_refusal``: https,
  a host name, the upstream itself or a documented realm of its kind) and asks for
  ``repository:<name>:pull`` only; a challenge's own scope is never asked for.
- Redirects followed; ``Authorization`` is never sent to another host.
- Rate-limit headers recorded per upstream host.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Final, NoReturn
from urllib.parse import urlencode, urlsplit, urlunsplit

from aws_lambda_powertools import Logger

from ptc_sync import __version__
from ptc_sync import mediatypes as mt
from ptc_sync.credentials import CredentialProvider, Credentials, CredentialsError
from ptc_sync.models import DIGEST_RE, RateLimitStatus, ResolvedDigest, UpstreamRef
from ptc_sync.names import is_tag, is_upstream_repository
from ptc_sync.registry.auth import (
    BearerToken,
    Challenge,
    ChallengeParseError,
    TokenCache,
    TokenResponseError,
    parse_challenges,
    parse_token_response,
    pick_challenge,
    pull_scope,
    realm_refusal,
)
from ptc_sync.registry.concurrency import ResolveResult, resolve_many
from ptc_sync.registry.errors import (
    BadResponseError,
    CredentialsUnavailableError,
    ForbiddenError,
    InvalidReferenceError,
    NotFoundError,
    RateLimitedError,
    RealmRefusedError,
    RegistryError,
    UnauthorizedError,
    UpstreamUnavailableError,
    describe_target,
)
from ptc_sync.registry.ratelimit import RateLimitTracker, reset_time
from ptc_sync.registry.transport import (
    HOST_RE,
    Clock,
    HostRouter,
    Response,
    RetryPolicy,
    Transport,
    TransportError,
    safe_url,
    same_origin,
)

logger = Logger(child=True)

MANIFEST_MAX_BYTES: Final = 4 * 1024 * 1024  # OCI distribution-spec: registries may refuse larger
TAGS_MAX_BYTES: Final = 16 * 1024 * 1024
TOKEN_MAX_BYTES: Final = 1024 * 1024
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
SCHEMA1_TYPES: Final = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
_STEP_NAMES: Final = {
    "manifest_head": "HEAD manifest",
    "manifest_get": "GET manifest",
    "tags": "GET tags",
}
_LINK_RE: Final = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL_NEXT_RE: Final = re.compile(r"""(?:^|;)\s*rel\s*=\s*"?([^";]*)"?""", re.IGNORECASE)
_API_PATH_RE: Final = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")


@dataclass(slots=True)
class _HostAuth:
    """What a host wants, learnt from its challenge: nothing, Basic, or Bearer with a token realm."""

    scheme: str  # "none" | "basic" | "bearer"
    realm: str = ""
    service: str = ""
    multi_scope: bool = True  # set False when a several-scope token proved not to work there


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _error_detail(body: bytes) -> str:
    """`` (MANIFEST_UNKNOWN: manifest unknown)`` from a distribution error body, or ''."""
    if not body or len(body) > 64 * 1024:
        return ""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    code = str(errors[0].get("code", ""))[:60]
    message = str(errors[0].get("message", ""))[:160]
    text = ": ".join(p for p in (code, message) if p)
    return f" ({text})" if text else ""


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
        credentials: CredentialProvider | None = None,
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
        self._credentials = credentials
        self._router = HostRouter(host_override)
        self._transport = Transport(
            router=self._router,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            clock=clock,
            max_per_host=max_per_host,
            user_agent=user_agent,
            rng=rng,
        )
        self._clock = self._transport.clock
        self.max_per_host = max_per_host
        self.scopes_per_token = scopes_per_token
        self.max_redirects = max_redirects
        self._tokens = TokenCache()
        self._rate_limits = RateLimitTracker()
        self._state_lock = threading.Lock()
        self._host_auth: dict[str, _HostAuth] = {}
        self._head_unsupported: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

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
        return self._rate_limits.get(host)

    def rate_limits(self) -> tuple[RateLimitStatus, ...]:
        return self._rate_limits.all()

    # -- public operations ---------------------------------------------------------------------------

    def resolve_digest(self, ref: UpstreamRef, tag: str) -> ResolvedDigest:
        """The digest and media type ``tag`` points at upstream now (an index's own digest for multi-arch).

        One HEAD when upstream reports the digest; a GET (hashing the exact bytes) only when it does not.
        """
        self._check(ref, tag)
        url = self._manifest_url(ref, tag)
        if ref.host not in self._head_unsupported:
            resp = self._send(
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
                self._raise_for(resp, ref, tag, "HEAD manifest")
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
            resp = self._send("GET", url, ref=ref, reference="", category="tags", accept="application/json")
            if resp.status != 200:
                self._raise_for(resp, ref, "", "GET tags")
            yield from self._parse_tags(resp, ref)
            link = next_link(resp.headers.getlist("Link"))
            if link is None:
                return
            url = self._router.resolve(link, url)
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
        state = self._host_state(host)
        if state is None:
            try:
                state = self._probe(refs[0])
            except UpstreamUnavailableError as exc:
                return exc
            except RegistryError as exc:
                logger.info(
                    "probe failed; resolving without preparation", extra={"host": host, "reason": str(exc)}
                )
                return None
        if state is None or state.scheme != "bearer" or not state.multi_scope:
            return None
        self._prefetch_tokens(state, refs)
        return None

    # -- requests with auth and redirects ------------------------------------------------------------

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

    def _host_state(self, host: str) -> _HostAuth | None:
        with self._state_lock:
            return self._host_auth.get(host)

    def _learn(self, host: str, challenge: Challenge) -> _HostAuth:
        with self._state_lock:
            previous = self._host_auth.get(host)
            if challenge.scheme == "bearer":
                keep_multi = (
                    previous is None
                    or previous.scheme != "bearer"
                    or previous.realm != challenge.realm
                    or previous.multi_scope
                )
                state = _HostAuth("bearer", challenge.realm, challenge.service, multi_scope=keep_multi)
            else:
                state = _HostAuth("basic")
            self._host_auth[host] = state
            return state

    def _probe(self, ref: UpstreamRef) -> _HostAuth | None:
        url = f"https://{ref.host}/v2/"
        try:
            resp = self._transport.request("GET", url, category="ping", max_body=64 * 1024)
        except TransportError as exc:
            raise self._transport_error(exc, ref, "", "GET /v2/") from None
        if resp.status == 200:
            with self._state_lock:
                return self._host_auth.setdefault(ref.host, _HostAuth("none"))
        if resp.status == 401:
            challenge = self._challenge(resp, ref, "")
            return self._learn(ref.host, challenge) if challenge else None
        if resp.status in {408, 429} or resp.status >= 500:
            self._raise_for(resp, ref, "", "GET /v2/")
        return None

    def _challenge(self, resp: Response, ref: UpstreamRef, reference: str) -> Challenge | None:
        try:
            return pick_challenge(parse_challenges(resp.headers.getlist("WWW-Authenticate")))
        except ChallengeParseError as exc:
            raise BadResponseError(
                f"{describe_target(ref.host, ref.repository, reference)}: "
                f"unparseable WWW-Authenticate ({exc})",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=resp.status,
            ) from None

    def _principal(self, ref: UpstreamRef) -> tuple[str, Credentials | None]:
        """Who we authenticate as for ``ref``: a key for the token cache (never the secret itself)."""
        if self._credentials is None:
            return "anonymous", None
        try:
            creds = self._credentials.credentials_for(ref)
        except CredentialsError as exc:
            raise CredentialsUnavailableError(
                f"{ref}: credentials unavailable: {exc}", host=ref.host, repository=ref.repository
            ) from None
        if creds is None:
            return "anonymous", None
        fingerprint = hashlib.sha256(f"{creds.username}\0{creds.secret}".encode()).hexdigest()[:16]
        return f"credentials:{fingerprint}", creds

    def _authorization(
        self,
        ref: UpstreamRef,
        scopes: tuple[str, ...],
        *,
        failed: BearerToken | None = None,
    ) -> tuple[str | None, BearerToken | None]:
        """The Authorization value for a request to ``ref``'s host, fetching a token if needed."""
        state = self._host_state(ref.host)
        if state is None or state.scheme == "none":
            return None, None
        principal, creds = self._principal(ref)
        if state.scheme == "basic":
            return (creds.basic_header() if creds else None), None
        key = (state.realm, state.service, scopes[0], principal)
        token = self._tokens.get(key, self._clock.monotonic())
        if token is not None and token is not failed:
            return f"Bearer {token.value}", token
        with self._tokens.fetch_lock(key):
            token = self._tokens.get(key, self._clock.monotonic())
            if token is None or token is failed:
                token = self._fetch_token(state, scopes, creds, ref)
                self._tokens.put(state.realm, state.service, principal, token, self._clock.monotonic())
        return f"Bearer {token.value}", token

    def _check_realm(self, realm: str, ref: UpstreamRef, owner: str) -> None:
        """Raise RealmRefusedError unless a token request for ``ref`` may go to ``realm``; ``owner`` is
        the host that challenged (the upstream, or a redirect target asking for an anonymous token)."""
        parts = urlsplit(realm.strip())
        refusal = realm_refusal(parts, upstream=owner, kind=ref.kind, aliases=self._router.aliases(parts))
        if refusal is None:
            return
        logger.warning(
            "refused token realm",
            extra={"upstream": str(ref), "realm_host": refusal.realm_host, "reason": refusal.reason},
        )
        raise RealmRefusedError(
            f"{ref}: token realm on {refusal.realm_host} refused: {refusal.detail}; nothing was sent there",
            host=ref.host,
            repository=ref.repository,
            realm_host=refusal.realm_host,
            reason=refusal.reason,
        )

    def _fetch_token(
        self,
        state: _HostAuth,
        scopes: Iterable[str],
        creds: Credentials | None,
        ref: UpstreamRef,
        *,
        owner: str | None = None,
    ) -> BearerToken:
        self._check_realm(state.realm, ref, owner or ref.host)
        scope_list = list(dict.fromkeys(scopes))
        query: list[tuple[str, str]] = []
        if state.service:
            query.append(("service", state.service))
        query += [("scope", s) for s in scope_list]
        if creds is not None:
            query.append(("account", creds.username))
        realm = urlsplit(state.realm.strip())
        own_query = f"{realm.query}&" if realm.query else ""
        url = urlunsplit((realm.scheme, realm.netloc, realm.path, own_query + urlencode(query), ""))
        headers = {"Authorization": creds.basic_header()} if creds else {}
        try:
            resp = self._transport.request(
                "GET", url, headers=headers, category="token", max_body=TOKEN_MAX_BYTES
            )
        except TransportError as exc:
            raise self._transport_error(exc, ref, "", f"token request to {safe_url(state.realm)}") from None
        what = f"token request to {safe_url(state.realm)} ({'with credentials' if creds else 'anonymous'})"
        if resp.status != 200:
            self._raise_for(resp, ref, "", what, token_endpoint=True)
        try:
            return parse_token_response(
                resp.body,
                scopes=scope_list,
                monotonic_now=self._clock.monotonic(),
                wall_now=self._clock.now(),
            )
        except TokenResponseError as exc:
            raise BadResponseError(
                f"{ref}: {what}: {exc}", host=ref.host, repository=ref.repository, status=200
            ) from None

    def _prefetch_tokens(self, state: _HostAuth, refs: list[UpstreamRef]) -> None:
        """One token request per ``scopes_per_token`` repositories (and principal) lacking a token."""
        groups: dict[str, tuple[Credentials | None, UpstreamRef, list[str]]] = {}
        now = self._clock.monotonic()
        for ref in refs:
            try:
                principal, creds = self._principal(ref)
            except RegistryError:
                continue  # the item itself reports it
            scope = pull_scope(ref.repository)
            if self._tokens.get((state.realm, state.service, scope, principal), now) is not None:
                continue
            entry = groups.setdefault(principal, (creds, ref, []))
            if scope not in entry[2]:
                entry[2].append(scope)
        for principal, (creds, ref, scopes) in groups.items():
            for i in range(0, len(scopes), self.scopes_per_token):
                chunk = scopes[i : i + self.scopes_per_token]
                try:
                    token = self._fetch_token(state, chunk, creds, ref)
                except RegistryError as exc:
                    if len(chunk) > 1 and exc.status == 400:
                        state.multi_scope = False  # this realm refuses several scopes: fetch one by one
                        return
                    logger.info("token prefetch failed", extra={"host": ref.host, "reason": str(exc)})
                    continue
                self._tokens.put(state.realm, state.service, principal, token, self._clock.monotonic())

    def _send(
        self,
        method: str,
        url: str,
        *,
        ref: UpstreamRef,
        reference: str,
        category: str,
        accept: str,
        max_body: int | None = None,
    ) -> Response:
        """A request to ``ref``'s host with auth answered and redirects followed.

        A 401 to a request without credentials is discovery: learn the challenge, authenticate, resend.
        A 401 to a request with credentials is retried once: a cached token is dropped and a fresh
        single-repository token fetched; Basic credentials are read again (a rotated secret).
        A second 401 is returned (and becomes UnauthorizedError).
        """
        limit = max_body or (MANIFEST_MAX_BYTES if category != "tags" else TAGS_MAX_BYTES)
        scope = pull_scope(ref.repository)
        auth, token = self._authorization(ref, (scope,))
        reauthenticated = False
        send = partial(
            self._follow,
            method,
            url,
            accept=accept,
            ref=ref,
            reference=reference,
            category=category,
            max_body=limit,
        )
        while True:
            resp = send(auth=auth)
            if resp.status != 401 or not same_origin(resp.url, url):
                break
            challenge = self._challenge(resp, ref, reference)
            if challenge is None:
                break
            state = self._learn(ref.host, challenge)
            if auth is not None:
                if reauthenticated:
                    break
                reauthenticated = True
                if token is not None:
                    self._tokens.invalidate(state.realm, state.service, self._principal(ref)[0], token)
                elif state.scheme == "basic" and self._credentials is not None:
                    self._credentials.invalidate(ref)
            # pull on this repository only: a challenge's scope (another repository, push, delete)
            # is upstream's wish, not what ptc-sync needs
            failed = token
            auth, token = self._authorization(ref, (scope,), failed=failed)
            if auth is None:
                break
            if (
                failed is not None
                and len(failed.scopes) > 1
                and state.multi_scope
                and challenge.error == "insufficient_scope"
            ):
                # a valid token for several repositories lacked this one (an expired token says
                # invalid_token): if a single-repository token works, the realm does not honour
                # several scopes; stop asking it for them
                resp = send(auth=auth)
                if resp.status != 401:
                    logger.info(
                        "several-scope token refused: one token per repository from now",
                        extra={"host": ref.host},
                    )
                    state.multi_scope = False
                break
        self._rate_limits.update(ref.host, resp.headers)
        return resp

    def _follow(
        self,
        method: str,
        url: str,
        *,
        accept: str,
        auth: str | None,
        ref: UpstreamRef,
        reference: str,
        category: str,
        max_body: int,
    ) -> Response:
        """Send, following redirects. Authorization goes only to the origin of ``url``; a redirect
        target that challenges gets an anonymous token of its own, never the upstream's credentials."""
        what = _STEP_NAMES.get(category, f"{method} {category}")
        current = url
        foreign_auth: dict[str, str] = {}
        foreign_tried: set[str] = set()
        hops = 0
        while True:
            headers = {"Accept": accept}
            if same_origin(current, url):
                if auth is not None:
                    headers["Authorization"] = auth
            else:
                host_key = urlsplit(current).netloc
                if host_key in foreign_auth:
                    headers["Authorization"] = foreign_auth[host_key]
            try:
                resp = self._transport.request(
                    method, current, headers=headers, category=category, max_body=max_body
                )
            except TransportError as exc:
                step = what if current == url else f"{what} (redirected to {safe_url(current)})"
                raise self._transport_error(exc, ref, reference, step) from None
            if resp.status in REDIRECT_STATUSES and resp.headers.get("Location"):
                hops += 1
                if hops > self.max_redirects:
                    raise BadResponseError(
                        f"{ref}: more than {self.max_redirects} redirects from {safe_url(url)}",
                        host=ref.host,
                        repository=ref.repository,
                        status=resp.status,
                    )
                self._transport.counters.add("redirects")
                current = self._router.resolve(resp.headers["Location"], current)
                continue
            if resp.status == 401 and not same_origin(current, url):
                host_key = urlsplit(current).netloc
                if host_key not in foreign_tried:
                    foreign_tried.add(host_key)
                    value = self._foreign_token(resp, ref, current)
                    if value is not None:
                        foreign_auth[host_key] = value
                        continue
            return resp

    def _foreign_token(self, resp: Response, ref: UpstreamRef, current: str) -> str | None:
        """An anonymous Bearer token for a redirect target that challenged: from a realm that target
        may name, for pull on the repository the redirect points at (never the challenge's scope)."""
        challenge = self._challenge(resp, ref, "")
        if challenge is None or challenge.scheme != "bearer":
            return None
        target = urlsplit(current)
        match = _API_PATH_RE.match(target.path)
        repository = match.group(1) if match and is_upstream_repository(match.group(1)) else ref.repository
        scope = pull_scope(repository)
        owner = target.netloc.lower().removesuffix(":443")
        state = _HostAuth("bearer", challenge.realm, challenge.service)
        key = (state.realm, state.service, scope, "anonymous")
        token = self._tokens.get(key, self._clock.monotonic())
        if token is None:
            token = self._fetch_token(state, (scope,), None, ref, owner=owner)
            self._tokens.put(state.realm, state.service, "anonymous", token, self._clock.monotonic())
        return f"Bearer {token.value}"

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
        resp = self._send(
            "GET", url, ref=ref, reference=reference, category="manifest_get", accept=mt.ACCEPT_ALL
        )
        if resp.status != 200:
            self._raise_for(resp, ref, reference, "GET manifest")
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

    # -- errors --------------------------------------------------------------------------------------

    def _transport_error(
        self, exc: TransportError, ref: UpstreamRef, reference: str, what: str
    ) -> RegistryError:
        target = describe_target(ref.host, ref.repository, reference)
        cls: type[RegistryError] = (
            BadResponseError if exc.reason in {"too_large", "insecure"} else UpstreamUnavailableError
        )
        return cls(
            f"{target}: {what}: {exc}",
            host=ref.host,
            repository=ref.repository,
            reference=reference,
        )

    def _raise_for(
        self, resp: Response, ref: UpstreamRef, reference: str, what: str, *, token_endpoint: bool = False
    ) -> NoReturn:
        status = resp.status
        target = describe_target(ref.host, ref.repository, reference)
        detail = _error_detail(resp.body)
        tries = f" after {resp.attempts} attempts" if resp.attempts > 1 else ""

        def err(cls: type[RegistryError], text: str) -> RegistryError:
            return cls(
                f"{target}: {what}: HTTP {status} {text}{detail}",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=status,
            )

        if status == 404:
            raise err(NotFoundError, "not found")
        if status == 401:
            raise err(
                UnauthorizedError, "unauthorized" + ("" if token_endpoint else self._auth_hint(resp, ref))
            )
        if status == 403:
            raise err(ForbiddenError, "forbidden")
        if status == 429:
            reset_at = reset_time(resp.retry_after, self._clock.now())
            when = f", resets at {reset_at.isoformat(timespec='seconds')}" if reset_at else ""
            raise RateLimitedError(
                f"{target}: {what}: HTTP 429 rate limited{tries}{when}{detail}",
                host=ref.host,
                repository=ref.repository,
                reference=reference,
                status=429,
                reset_at=reset_at,
                rate_limit=self._rate_limits.update(ref.host, resp.headers)
                or self._rate_limits.get(ref.host),
            )
        if status == 408 or status >= 500:
            raise err(UpstreamUnavailableError, f"upstream unavailable{tries}")
        raise err(BadResponseError, "unexpected status")

    def _auth_hint(self, resp: Response, ref: UpstreamRef) -> str:
        hint = ""
        try:
            challenge = pick_challenge(parse_challenges(resp.headers.getlist("WWW-Authenticate")))
        except ChallengeParseError:
            challenge = None
        if challenge is not None and challenge.error:
            hint = f" [{challenge.error[:60]}]"
        state = self._host_state(ref.host)
        if state is not None and state.scheme == "basic":
            try:
                has_credentials = self._principal(ref)[1] is not None
            except RegistryError:
                has_credentials = False
            if not has_credentials:
                hint += " (upstream wants Basic credentials and none are configured for this rule)"
        return hint
