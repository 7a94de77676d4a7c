"""Registry authentication: ``WWW-Authenticate`` challenges, Bearer token responses, the token cache.

The token flow (distribution ``docs/spec/auth/token.md``): a 401 carries
``Bearer realm="…",service="…",scope="repository:<name>:pull"``; the client GETs
``realm?service=…&scope=…`` (anonymously or with Basic credentials; ``scope`` may repeat so one token
covers many repositories) and gets ``token``/``access_token``, ``expires_in`` (default 60 s) and
``issued_at``. Tokens are cached per (realm, service, scope, principal) until shortly before expiry.

Where a token request may go is ``realms.py``'s (``realm_refusal``, ``REALM_HOSTS``, re-exported
here). The client asks for ``repository:<name>:pull`` only, whatever scope the challenge names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from ptc_sync.registry.realms import REALM_HOSTS, RealmHosts, RealmRefusal, realm_refusal

DEFAULT_EXPIRES_IN: Final = 60  # seconds, when the token response leaves expires_in out
MAX_EXPIRES_IN: Final = 24 * 3600  # a longer claimed lifetime is capped: re-auth at least daily
__all__ = [
    "DEFAULT_EXPIRES_IN",
    "MAX_EXPIRES_IN",
    "REALM_HOSTS",
    "BearerToken",
    "Challenge",
    "ChallengeParseError",
    "RealmHosts",
    "RealmRefusal",
    "TokenCache",
    "TokenKey",
    "TokenResponseError",
    "parse_challenges",
    "parse_token_response",
    "pick_challenge",
    "pull_scope",
    "realm_refusal",
]
_TCHAR: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ChallengeParseError(ValueError):
    pass


class TokenResponseError(ValueError):
    pass


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` lowercased, parameter names too."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")

    @property
    def error(self) -> str:
        return self.params.get("error", "")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        # at the opening quote
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise ChallengeParseError("unterminated quoted string in WWW-Authenticate")


def parse_challenges(values: Iterable[str]) -> list[Challenge]:
    """Parse one or more ``WWW-Authenticate`` header values (RFC 9110 §11.6.1) into challenges.

    Handles several challenges per header, quoted strings with escapes and commas inside quotes.
    A malformed header raises ChallengeParseError.
    """
    challenges: list[Challenge] = []
    for value in values:
        scan = _Scanner(value)
        scheme = ""
        params: dict[str, str] = {}
        while True:
            scan.skip_ws()
            if scan.peek() == ",":
                scan.pos += 1
                continue
            if scan.peek() == "":
                break
            name = scan.token()
            if not name:
                raise ChallengeParseError(f"unexpected {scan.peek()!r} in WWW-Authenticate")
            scan.skip_ws()
            if scan.peek() == "=" and scheme:
                scan.pos += 1
                scan.skip_ws()
                params[name.lower()] = scan.quoted() if scan.peek() == '"' else scan.token()
                continue
            if scan.peek() == "=" and not scheme:
                raise ChallengeParseError("WWW-Authenticate parameter before any scheme")
            # a new scheme (or token68 after a scheme, which no registry uses: treat as a scheme)
            if scheme:
                challenges.append(Challenge(scheme.lower(), params))
            scheme, params = name, {}
        if scheme:
            challenges.append(Challenge(scheme.lower(), params))
    return challenges


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """Bearer first (with a realm), then Basic; other schemes are not supported."""
    found = list(challenges)
    for ch in found:
        if ch.scheme == "bearer" and ch.realm:
            return ch
    for ch in found:
        if ch.scheme == "basic":
            return ch
    return None


@dataclass(frozen=True, slots=True)
class BearerToken:
    value: str = field(repr=False)
    scopes: frozenset[str]
    expires_at: float  # on the client's monotonic clock
    lifetime: float  # seconds the token was valid for when received

    def valid(self, now: float) -> bool:
        return now < self.expires_at


def _parse_issued_at(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # RFC 3339 allows nanoseconds; fromisoformat takes at most microseconds
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _valid_token_text(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if len(value) > 64 * 1024 or any(not (32 < ord(c) < 127) for c in value):
        return None
    return value


def parse_token_response(
    body: bytes, *, scopes: Iterable[str], monotonic_now: float, wall_now: datetime
) -> BearerToken:
    """Turn a token endpoint's JSON body into a cached token, honouring ``expires_in`` and ``issued_at``.

    Expiry: ``issued_at + expires_in`` measured on our clock (a token issued in the past by a
    skewed or slow issuer has less time left), never more than ``expires_in`` from now, refreshed a
    little early (10% of the lifetime, at most 30 s) so a request never carries an expiring token.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenResponseError(f"token response is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict):
        raise TokenResponseError("token response is not a JSON object")
    value = _valid_token_text(doc.get("token")) or _valid_token_text(doc.get("access_token"))
    if value is None:
        raise TokenResponseError("token response has no usable token or access_token")
    expires_in_raw = doc.get("expires_in", DEFAULT_EXPIRES_IN)
    if isinstance(expires_in_raw, bool) or not isinstance(expires_in_raw, int | float) or expires_in_raw <= 0:
        expires_in = float(DEFAULT_EXPIRES_IN)
    else:
        expires_in = float(min(expires_in_raw, MAX_EXPIRES_IN))
    lifetime = expires_in
    issued_at = _parse_issued_at(doc.get("issued_at"))
    if issued_at is not None:
        age = (wall_now - issued_at).total_seconds()
        if age > 0:  # an issued_at in the future (issuer clock ahead) costs nothing
            lifetime = max(0.0, expires_in - age)
    margin = min(30.0, 0.1 * lifetime)
    return BearerToken(
        value=value,
        scopes=frozenset(scopes),
        expires_at=monotonic_now + lifetime - margin,
        lifetime=lifetime,
    )


TokenKey = tuple[str, str, str, str]  # realm, service, scope, principal


class TokenCache:
    """Tokens shared by all workers, keyed by (realm, service, scope, principal).

    A token obtained for several scopes is stored under each of them. ``fetch_lock`` gives one lock
    per key so concurrent workers needing the same token fetch it once (single flight).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, BearerToken] = {}
        self._fetch_locks: dict[TokenKey, threading.Lock] = {}

    def get(self, key: TokenKey, now: float) -> BearerToken | None:
        with self._lock:
            token = self._tokens.get(key)
            if token is None:
                return None
            if not token.valid(now):
                del self._tokens[key]
                return None
            return token

    def put(self, realm: str, service: str, principal: str, token: BearerToken, now: float) -> None:
        if not token.valid(now):
            return  # usable once by the caller, not worth caching
        with self._lock:
            for scope in token.scopes:
                self._tokens[(realm, service, scope, principal)] = token

    def invalidate(self, realm: str, service: str, principal: str, token: BearerToken) -> None:
        """Drop ``token`` under every scope it was stored for (a 401 proved it no longer works)."""
        with self._lock:
            for scope in token.scopes:
                key = (realm, service, scope, principal)
                if self._tokens.get(key) is token:
                    del self._tokens[key]

    def fetch_lock(self, key: TokenKey) -> threading.Lock:
        with self._lock:
            lock = self._fetch_locks.get(key)
            if lock is None:
                lock = self._fetch_locks[key] = threading.Lock()
            return lock

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)
