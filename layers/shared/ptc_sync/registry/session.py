"""The session with upstream registries: every request the client makes goes through ``send``, which
answers challenges, attaches tokens or Basic credentials and follows redirects, so the manifest code
never sees a token.

- A 401 to a request without credentials is discovery: learn the challenge, authenticate, resend; a
  401 to a request with credentials is retried once with a fresh token or re-read credentials.
- Redirects followed (at most ``max_redirects``); ``Authorization`` is never sent to another host.
- Rate-limit headers recorded per upstream host.
- The transport underneath (``transport``) pools connections, retries and routes; the authorizer
  (``authorizer``) holds host auth state and tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Final, NoReturn
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger

from ptc_sync.models import UpstreamRef
from ptc_sync.registry.auth import (
    pull_scope,
)
from ptc_sync.registry.authorizer import Authorizer, CredentialsFn
from ptc_sync.registry.errors import (
    BadResponseError,
    RegistryError,
)
from ptc_sync.registry.ratelimit import RateLimitTracker
from ptc_sync.registry.responses import Responses, transport_error
from ptc_sync.registry.transport import (
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

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})

_STEP_NAMES: Final = {
    "manifest_head": "HEAD manifest",
    "manifest_get": "GET manifest",
    "tags": "GET tags",
}


class RegistrySession:
    """HTTP to upstream registries with auth answered and redirects followed. Thread-safe."""

    def __init__(
        self,
        credentials: CredentialsFn | None,
        *,
        host_override: Mapping[str, str] | None,
        connect_timeout: float,
        read_timeout: float,
        retry: RetryPolicy | None,
        max_per_host: int,
        scopes_per_token: int,
        max_redirects: int,
        clock: Clock | None,
        rng: Callable[[], float],
        user_agent: str,
    ) -> None:
        self.router = HostRouter(host_override)
        self.transport = Transport(
            router=self.router,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            clock=clock,
            max_per_host=max_per_host,
            user_agent=user_agent,
            rng=rng,
        )
        self.clock = self.transport.clock
        self.max_redirects = max_redirects
        self.rate_limits = RateLimitTracker()
        self.responses = Responses(self.clock, self.rate_limits)
        self._auth = Authorizer(
            credentials,
            transport=self.transport,
            router=self.router,
            responses=self.responses,
            scopes_per_token=scopes_per_token,
        )

    def close(self) -> None:
        self.transport.close()

    def prepare(self, host: str, refs: list[UpstreamRef]) -> RegistryError | None:
        """Learn ``host``'s auth scheme and fetch tokens for several of ``refs`` per request."""
        return self._auth.prepare(host, refs)

    def raise_for(self, resp: Response, ref: UpstreamRef, reference: str, what: str) -> NoReturn:
        """Raise the RegistryError ``resp`` means; a 401 says what upstream wanted."""
        hint = self._auth.auth_hint(resp, ref) if resp.status == 401 else ""
        self.responses.raise_for(resp, ref, reference, what, hint=hint)

    def send(
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
        auth, token = self._auth.authorization(ref, (scope,))
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
            challenge = self._auth.challenge(resp, ref, reference)
            if challenge is None:
                break
            state = self._auth.learn(ref.host, challenge)
            if auth is not None:
                if reauthenticated:
                    break
                reauthenticated = True
                self._auth.refused(ref, state, token)
            # pull on this repository only: a challenge's scope (another repository, push, delete)
            # is upstream's wish, not what ptc-sync needs
            failed = token
            auth, token = self._auth.authorization(ref, (scope,), failed=failed)
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
        self.rate_limits.update(ref.host, resp.headers)
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
                resp = self.transport.request(
                    method, current, headers=headers, category=category, max_body=max_body
                )
            except TransportError as exc:
                step = what if current == url else f"{what} (redirected to {safe_url(current)})"
                raise transport_error(exc, ref, reference, step) from None
            if resp.status in REDIRECT_STATUSES and resp.headers.get("Location"):
                hops += 1
                if hops > self.max_redirects:
                    raise BadResponseError(
                        f"{ref}: more than {self.max_redirects} redirects from {safe_url(url)}",
                        host=ref.host,
                        repository=ref.repository,
                        status=resp.status,
                    )
                self.transport.counters.add("redirects")
                current = self.router.resolve(resp.headers["Location"], current)
                continue
            if resp.status == 401 and not same_origin(current, url):
                host_key = urlsplit(current).netloc
                if host_key not in foreign_tried:
                    foreign_tried.add(host_key)
                    value = self._auth.foreign_token(resp, ref, current)
                    if value is not None:
                        foreign_auth[host_key] = value
                        continue
            return resp
