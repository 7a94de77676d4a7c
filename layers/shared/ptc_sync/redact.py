"""One redactor for every text that leaves the process: logs, state items, reports, chat, the CLI.

``redact(text)`` removes

- the credential values this process has obtained (``register_credentials`` / ``register_secret``,
  called where they are fetched), in every form a server might echo: raw, base64 of
  ``user:password`` and of the password alone (standard and URL-safe), percent- and JSON-escaped,
  and any cut-off prefix of at least ``MIN_PREFIX_CHARS`` of the longer ones (an echo truncated by a
  bound);
- ``Basic …`` / ``Bearer …`` credentials, JWTs, well-known token formats (GitHub, GitLab, Docker
  Hub, Slack, AWS access keys) and long mixed-case base64 or hex runs that look like tokens;
- ``token=``, ``password=``, ``sig=``, ``key=`` … values in query strings, JSON and Python reprs;
- user information in URLs (``https://user:pw@host`` → ``https://***@host``) and the secret part
  of chat webhook URLs (Slack, Teams/Power Automate, Discord, Google Chat);
- control characters (newline and tab kept) and bidirectional or invisible formatting characters;

and bounds the length. It is idempotent: redacting redacted text changes nothing.

The known values live in one process-wide, thread-safe, bounded registry, so every layer redacts
with the same knowledge without passing it around.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote

MASK: Final = "***"
ELLIPSIS: Final = "…"
DEFAULT_LIMIT: Final = 2000
# Raw values shorter than this are not registered: they would mask ordinary words everywhere
# (their base64 forms, which are longer, still are).
MIN_SECRET_CHARS: Final = 6
# A cut-off echo is recognised from this many leading characters of a known value (of at least
# MIN_PREFIXED_VALUE_CHARS: a short value's start is too likely to be ordinary text).
MIN_PREFIX_CHARS: Final = 8
MIN_PREFIXED_VALUE_CHARS: Final = 16
MAX_KNOWN_VALUES: Final = 512

_SENSITIVE_NAME: Final = (
    r"[\w.-]*?(?:token|password|passwd|secret|signature|credential|api[_-]?key)|sig|key|pwd|auth"
)
_SENSITIVE_NAME_RE: Final = re.compile(rf"(?i)(?:{_SENSITIVE_NAME}|authorization)")

# Characters that reorder or hide text (Trojan Source, CVE-2021-42574) or break lines in viewers.
_INVISIBLE: Final = "\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
_UNSAFE_CHARS_RE: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")

_WEBHOOK_RE: Final = re.compile(
    r"(?i)\b(https?://)("
    r"hooks\.slack\.com|"
    r"(?:[\w-]+\.)*discord(?:app)?\.com(?=/api/webhooks/)|"
    r"chat\.googleapis\.com(?=/v1/spaces/)|"
    r"[\w.-]+\.(?:webhook\.office\.com|logic\.azure\.com|powerplatform\.com)"
    r")(?::\d+)?/[^\s\"'<>()\[\]{}`]*"
)
_URL_USERINFO_RE: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"'<>]+@")
_AUTH_SCHEME_RE: Final = re.compile(
    # a credential has a capital, a digit or base64 punctuation: "Basic credentials" is prose
    r"(?i)\b(Basic|Bearer)(\s+)(?!(?:realm|service|scope|error|charset)\b)"
    r"(?=(?-i:[a-z._~-]*[A-Z0-9+/=]))[A-Za-z0-9+/._~-]{6,}=*"
)
_JWT_RE: Final = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")
_TOKEN_FORMATS_RE: Final = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|dckr_pat_[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16})\b"
)
_QUERY_VALUE_RE: Final = re.compile(rf"(?i)(?<![\w.-])({_SENSITIVE_NAME})=(?!\*\*\*)[^&\s\"'<>]+")
_QUOTED_VALUE_RE: Final = re.compile(
    rf"""(?i)(["'])({_SENSITIVE_NAME}|authorization)\1(\s*:\s*)(["'])(?:(?!\4)[^\\]|\\.)*\4"""
)
# Long runs of token alphabet; hex after ``:`` (``sha256:…``, ``repo:<commit>``) is left alone, so
# are repository paths (lowercase) and tags (after ``:``).
_BASE64_RUN_RE: Final = re.compile(r"(?<![A-Za-z0-9+/_=:-])[A-Za-z0-9+/_-]{40,}=*(?![A-Za-z0-9+/_=-])")
_LINK_JOIN_RE: Final = re.compile(r"\](?=[(\[])")
_HEX_RUN_RE: Final = re.compile(r"(?<![A-Za-z0-9_:-])[0-9a-fA-F]{40,}(?![A-Za-z0-9_-])")


class _KnownSecrets:
    """The credential values obtained by this process, newest kept when the bound is reached."""

    def __init__(self, capacity: int = MAX_KNOWN_VALUES) -> None:
        self._capacity = capacity
        self._values: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._snapshot: tuple[str, ...] = ()

    def add(self, values: set[str]) -> None:
        with self._lock:
            for value in values:
                self._values[value] = None
                self._values.move_to_end(value)
            while len(self._values) > self._capacity:
                self._values.popitem(last=False)
            self._snapshot = tuple(sorted(self._values, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._snapshot = ()

    def snapshot(self) -> tuple[str, ...]:
        """Longest first, so a value is masked whole before a shorter one inside it is looked for."""
        return self._snapshot


_KNOWN: Final = _KnownSecrets()


def _b64(raw: str) -> set[str]:
    data = raw.encode()
    return {base64.b64encode(data).decode("ascii"), base64.urlsafe_b64encode(data).decode("ascii")}


def _forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1], *_b64(secret)}
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


def register_secret(value: str | None) -> None:
    """Remember a credential value (a token, a key, a webhook URL) so that it is masked everywhere."""
    if value:
        _KNOWN.add(_forms(value))


def register_credentials(username: str, secret: str) -> None:
    """Remember a user's secret, and the ``Basic`` encoding of the pair (``username`` itself is not
    secret and stays readable)."""
    if not secret:
        return
    _KNOWN.add(_forms(secret) | _b64(f"{username}:{secret}"))


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    _KNOWN.clear()


def _mask_whole(text: str, values: tuple[str, ...]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def _mask_cut_off(text: str, values: tuple[str, ...]) -> str:
    """What is left of a known value cut off after its start (after every pattern had its turn, so a
    well-known start like ``dckr_pat_`` does not hide the rest from its pattern)."""
    for value in values:
        # an all-digit start (an account id, a timestamp) is too likely to be ordinary text
        if len(value) < MIN_PREFIXED_VALUE_CHARS or value[:MIN_PREFIX_CHARS].isdigit():
            continue
        anchor = value[:MIN_PREFIX_CHARS]
        start = text.find(anchor)
        if start < 0:
            continue
        out: list[str] = []
        done = 0
        while start >= 0:
            end = start + len(anchor)
            while end - start < len(value) and end < len(text) and text[end] == value[end - start]:
                end += 1
            out += [text[done:start], MASK]
            done = end
            start = text.find(anchor, end)
        out.append(text[done:])
        text = "".join(out)
    return text


def _mixed(match: re.Match[str]) -> str:
    run = match.group(0)
    looks_random = (
        any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
    )
    return MASK if looks_random else run


def strip_unsafe(text: str) -> str:
    """``text`` without control characters (newline and tab kept) and bidi/invisible formatting."""
    return _UNSAFE_CHARS_RE.sub("", text)


def defang_links(text: str) -> str:
    """Markdown links and images (``[text](url)``, ``[text][ref]``) made plain text: a space after the
    ``]`` (CommonMark allows none there), so a label can never hide where a link goes."""
    return _LINK_JOIN_RE.sub("] ", text)


def bound(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS


def redact(text: str, *, limit: int | None = DEFAULT_LIMIT) -> str:
    """``text`` with credentials, tokens and secret URLs masked as ``***``, unsafe characters
    removed, and at most ``limit`` characters long (None: unbounded)."""
    if not text:
        return text
    text = strip_unsafe(str(text))
    known = _KNOWN.snapshot()
    text = _mask_whole(text, known)
    text = _WEBHOOK_RE.sub(rf"\1\2/{MASK}", text)
    text = _URL_USERINFO_RE.sub(rf"\1{MASK}@", text)
    text = _AUTH_SCHEME_RE.sub(rf"\1\2{MASK}", text)
    text = _JWT_RE.sub(MASK, text)
    text = _TOKEN_FORMATS_RE.sub(MASK, text)
    text = _QUOTED_VALUE_RE.sub(rf"\1\2\1\3\4{MASK}\4", text)
    text = _QUERY_VALUE_RE.sub(rf"\1={MASK}", text)
    text = _BASE64_RUN_RE.sub(_mixed, text)
    text = _HEX_RUN_RE.sub(MASK, text)
    text = _mask_cut_off(text, known)
    return text if limit is None else bound(text, limit)


def is_secret_name(name: str) -> bool:
    """A field called ``password``, ``accessToken``, ``authorization``, …: its value is masked whole."""
    return _SENSITIVE_NAME_RE.fullmatch(name) is not None


def redact_value(value: object, *, limit: int | None = DEFAULT_LIMIT, depth: int = 0) -> object:
    """``redact`` applied to every string inside ``value`` (dicts, lists, tuples; numbers, booleans and
    None kept, anything else redacted as its text); a string under a secret-named key is masked whole.
    Nesting below 20 levels is cut off."""
    if isinstance(value, str):
        return redact(value, limit=limit)
    if depth >= 20:
        return MASK
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and isinstance(item, str) and item and is_secret_name(key)
            else redact_value(item, limit=limit, depth=depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(item, limit=limit, depth=depth + 1) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), limit=limit)  # an exception, a datetime: as text, like a JSON default=str
