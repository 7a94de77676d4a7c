"""Who a request is made as, and with what: the session's side of challenges and tokens.

- Each host's auth scheme is learnt from its challenge (``WWW-Authenticate``): nothing, Basic, or
  Bearer with a token realm; a ``/v2/`` probe learns it before a batch.
- Bearer tokens are fetched anonymously or with the rule's Basic credentials, cached per
  realm/service/scope/principal and shared by workers, several repository scopes per token request
  when preparing a batch (until the realm shows it does not honour them).
- A token request goes only to a realm the rule's upstream may name (``auth.realm_refusal``: https,
  a host name, the upstream itself or a documented realm of its kind) and asks for
  ``repository:<name>:pull`` only; a challenge's own scope is never asked for. A redirect target
  that challenges gets an anonymous token of its own, never the upstream's credentials.
- Credentials are a plain function (``CredentialsFn``) the composition root passes in: this package
  never reads a secret store itself (``ptc_sync.credentials.registry_credentials`` adapts its
  providers). Only the principal's fingerprint keys the token cache, never the secret.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from aws_lambda_powertools import Logger

from ptc_sync.models import UpstreamRef
from ptc_sync.names import is_upstream_repository
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
from ptc_sync.registry.errors import (
    BadResponseError,
    RealmRefusedError,
    RegistryError,
    UpstreamUnavailableError,
    describe_target,
)
from ptc_sync.registry.responses import Responses, transport_error
from ptc_sync.registry.transport import (
    HostRouter,
    Response,
    Transport,
    TransportError,
    safe_url,
)

logger = Logger(child=True)


TOKEN_MAX_BYTES: Final = 1024 * 1024
_API_PATH_RE: Final = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")


class BasicCredentials(Protocol):
    """What a credentials function returns: a user name and its secret (``credentials.Credentials``)."""

    @property
    def username(self) -> str: ...

    @property
    def secret(self) -> str: ...

    def basic_header(self) -> str: ...


# Credentials for ``ref``'s upstream (None: anonymous). The flag is True when upstream refused the ones
# given: read them again (a rotated secret). Raises CredentialsUnavailableError when they cannot be had.
type CredentialsFn = Callable[[UpstreamRef, bool], BasicCredentials | None]


@dataclass(slots=True)
class _HostAuth:
    """What a host wants, learnt from its challenge: nothing, Basic, or Bearer with a token realm."""

    scheme: str  # "none" | "basic" | "bearer"
    realm: str = ""
    service: str = ""
    multi_scope: bool = True  # set False when a several-scope token proved not to work there


class Authorizer:
    """Host auth state, the token cache and the credentials function, for one session."""

    def __init__(
        self,
        credentials: CredentialsFn | None,
        *,
        transport: Transport,
        router: HostRouter,
        responses: Responses,
        scopes_per_token: int,
    ) -> None:
        self._credentials = credentials
        self._transport = transport
        self._router = router
        self._responses = responses
        self._clock = transport.clock
        self.scopes_per_token = scopes_per_token
        self._tokens = TokenCache()
        self._state_lock = threading.Lock()
        self._host_auth: dict[str, _HostAuth] = {}

    def prepare(self, host: str, refs: list[UpstreamRef]) -> RegistryError | None:
        """Learn ``host``'s auth scheme (one ``/v2/`` probe when unknown) and fetch Bearer tokens covering
        several of ``refs`` (all on ``host``, already checked) per request; an UpstreamUnavailableError
        when the host is unreachable."""
        state = self.host_state(host)
        if state is None:
            try:
                state = self.probe(refs[0])
            except UpstreamUnavailableError as exc:
                return exc
            except RegistryError as exc:
                logger.info(
                    "probe failed; resolving without preparation", extra={"host": host, "reason": str(exc)}
                )
                return None
        if state is None or state.scheme != "bearer" or not state.multi_scope:
            return None
        self.prefetch_tokens(state, refs)
        return None

    def host_state(self, host: str) -> _HostAuth | None:
        with self._state_lock:
            return self._host_auth.get(host)

    def learn(self, host: str, challenge: Challenge) -> _HostAuth:
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

    def probe(self, ref: UpstreamRef) -> _HostAuth | None:
        url = f"https://{ref.host}/v2/"
        try:
            resp = self._transport.request("GET", url, category="ping", max_body=64 * 1024)
        except TransportError as exc:
            raise transport_error(exc, ref, "", "GET /v2/") from None
        if resp.status == 200:
            with self._state_lock:
                return self._host_auth.setdefault(ref.host, _HostAuth("none"))
        if resp.status == 401:
            challenge = self.challenge(resp, ref, "")
            return self.learn(ref.host, challenge) if challenge else None
        if resp.status in {408, 429} or resp.status >= 500:
            self._responses.raise_for(resp, ref, "", "GET /v2/")
        return None

    def challenge(self, resp: Response, ref: UpstreamRef, reference: str) -> Challenge | None:
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

    def principal(self, ref: UpstreamRef) -> tuple[str, BasicCredentials | None]:
        """Who we authenticate as for ``ref``: a key for the token cache (never the secret itself)."""
        if self._credentials is None:
            return "anonymous", None
        creds = self._credentials(ref, False)
        if creds is None:
            return "anonymous", None
        fingerprint = hashlib.sha256(f"{creds.username}\0{creds.secret}".encode()).hexdigest()[:16]
        return f"credentials:{fingerprint}", creds

    def authorization(
        self,
        ref: UpstreamRef,
        scopes: tuple[str, ...],
        *,
        failed: BearerToken | None = None,
    ) -> tuple[str | None, BearerToken | None]:
        """The Authorization value for a request to ``ref``'s host, fetching a token if needed."""
        state = self.host_state(ref.host)
        if state is None or state.scheme == "none":
            return None, None
        principal, creds = self.principal(ref)
        if state.scheme == "basic":
            return (creds.basic_header() if creds else None), None
        key = (state.realm, state.service, scopes[0], principal)
        token = self._tokens.get(key, self._clock.monotonic())
        if token is not None and token is not failed:
            return f"Bearer {token.value}", token
        with self._tokens.fetch_lock(key):
            token = self._tokens.get(key, self._clock.monotonic())
            if token is None or token is failed:
                token = self.fetch_token(state, scopes, creds, ref)
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

    def fetch_token(
        self,
        state: _HostAuth,
        scopes: Iterable[str],
        creds: BasicCredentials | None,
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
            raise transport_error(exc, ref, "", f"token request to {safe_url(state.realm)}") from None
        what = f"token request to {safe_url(state.realm)} ({'with credentials' if creds else 'anonymous'})"
        if resp.status != 200:
            self._responses.raise_for(resp, ref, "", what)
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

    def prefetch_tokens(self, state: _HostAuth, refs: list[UpstreamRef]) -> None:
        """One token request per ``scopes_per_token`` repositories (and principal) lacking a token."""
        groups: dict[str, tuple[BasicCredentials | None, UpstreamRef, list[str]]] = {}
        now = self._clock.monotonic()
        for ref in refs:
            try:
                principal, creds = self.principal(ref)
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
                    token = self.fetch_token(state, chunk, creds, ref)
                except RegistryError as exc:
                    if len(chunk) > 1 and exc.status == 400:
                        state.multi_scope = False  # this realm refuses several scopes: fetch one by one
                        return
                    logger.info("token prefetch failed", extra={"host": ref.host, "reason": str(exc)})
                    continue
                self._tokens.put(state.realm, state.service, principal, token, self._clock.monotonic())

    def foreign_token(self, resp: Response, ref: UpstreamRef, current: str) -> str | None:
        """An anonymous Bearer token for a redirect target that challenged: from a realm that target
        may name, for pull on the repository the redirect points at (never the challenge's scope)."""
        challenge = self.challenge(resp, ref, "")
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
            token = self.fetch_token(state, (scope,), None, ref, owner=owner)
            self._tokens.put(state.realm, state.service, "anonymous", token, self._clock.monotonic())
        return f"Bearer {token.value}"

    def refused(self, ref: UpstreamRef, state: _HostAuth, token: BearerToken | None) -> None:
        """Upstream refused what was sent: drop the cached token, or read Basic credentials again."""
        if token is not None:
            self._tokens.invalidate(state.realm, state.service, self.principal(ref)[0], token)
        elif state.scheme == "basic" and self._credentials is not None:
            self._credentials(ref, True)

    def auth_hint(self, resp: Response, ref: UpstreamRef) -> str:
        hint = ""
        try:
            challenge = pick_challenge(parse_challenges(resp.headers.getlist("WWW-Authenticate")))
        except ChallengeParseError:
            challenge = None
        if challenge is not None and challenge.error:
            hint = f" [{challenge.error[:60]}]"
        state = self.host_state(ref.host)
        if state is not None and state.scheme == "basic":
            try:
                has_credentials = self.principal(ref)[1] is not None
            except RegistryError:
                has_credentials = False
            if not has_credentials:
                hint += " (upstream wants Basic credentials and none are configured for this rule)"
        return hint
