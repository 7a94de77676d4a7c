"""Where a registry request may go: URL routing for the registry client.

- Production talks HTTPS only; a URL with user information is refused (``InsecureURLError``).
- ``host_override`` (test and demo wiring only) maps an upstream host to a loopback base URL; an
  override to anything but a loopback address is refused, and a server that names itself by its
  loopback address is mapped back to its logical host, so same-host checks compare logical origins.
- ``safe_url`` is what messages show of a URL (no query: a token request's query names the account).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

HOST_RE: Final = re.compile(
    r"^(?=.{1,253}(?::\d{1,5})?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"(?::\d{1,5})?$"
)


class InsecureURLError(ValueError):
    """A URL would leave HTTPS (or go to a loopback address nobody configured)."""


def is_loopback(hostname: str) -> bool:
    """``localhost`` or a loopback address (the only hosts plain http or an override may name)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_host(host: str) -> str:
    """``Registry-1.Docker.io:443`` → ``registry-1.docker.io``; raises ValueError for anything not a host."""
    value = host.strip().lower()
    if value.endswith(":443"):
        value = value[:-4]
    if not HOST_RE.fullmatch(value):
        raise ValueError(f"not a registry host: {host[:100]!r}")
    return value


def _origin(parts: SplitResult) -> tuple[str, str]:
    netloc = parts.netloc.lower()
    if parts.scheme == "https" and netloc.endswith(":443"):
        netloc = netloc[:-4]
    return parts.scheme, netloc


class HostRouter:
    """Maps logical URLs (``https://registry-1.docker.io/v2/…``) to the URL actually connected to.

    Without overrides only ``https://`` URLs pass. ``overrides`` maps a host to a loopback base URL
    (``http://127.0.0.1:PORT``); URLs for that host go there, and URLs already pointing at a
    configured loopback base (a registry's absolute Link or a token realm) are allowed as they are.
    """

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._map: dict[str, tuple[str, str]] = {}
        for host, base in (overrides or {}).items():
            key = normalize_host(host)
            parts = urlsplit(base.strip())
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"host_override for {key}: {base!r} is not an http(s) URL")
            if not is_loopback(parts.hostname):
                raise ValueError(
                    f"host_override for {key}: {parts.hostname!r} is not a loopback address; overrides "
                    "exist for tests and the local demo only"
                )
            if (
                parts.username
                or parts.password
                or parts.query
                or parts.fragment
                or parts.path not in {"", "/"}
            ):
                raise ValueError(f"host_override for {key}: give a bare base URL like http://127.0.0.1:5000")
            self._map[key] = _origin(parts)
        self._targets = frozenset(self._map.values())

    @property
    def overridden(self) -> bool:
        return bool(self._map)

    def target(self, parts: SplitResult) -> tuple[str, str]:
        """(scheme, netloc) to connect to for a logical URL; raises InsecureURLError."""
        if parts.username is not None or parts.password is not None:
            raise InsecureURLError("URLs with user information are refused")
        origin = _origin(parts)
        target = self._map.get(origin[1]) if origin[0] in {"https", "http"} else None
        if target is not None:
            return target
        if origin in self._targets:
            return origin
        if origin[0] != "https" or not parts.hostname:
            raise InsecureURLError(f"refusing non-HTTPS URL {urlunsplit((*origin, parts.path, '', ''))}")
        return origin

    def aliases(self, parts: SplitResult) -> frozenset[str]:
        """The logical hosts whose override points at this URL's origin: empty unless the URL names a
        configured loopback target itself (a test registry whose challenge gives its token server's
        loopback address). Anything else that is loopback was configured by nobody."""
        origin = _origin(parts)
        return frozenset(host for host, target in self._map.items() if target == origin)

    def physical(self, url: str) -> str:
        parts = urlsplit(url)
        scheme, netloc = self.target(parts)
        return urlunsplit((scheme, netloc, parts.path, parts.query, ""))

    def resolve(self, reference: str, base_logical: str) -> str:
        """Resolve a Location or Link value against the logical URL it came from.

        A server that names itself by its loopback address (the override target of ``base_logical``)
        is mapped back to the logical host, so same-host checks compare logical origins.
        """
        absolute = urljoin(base_logical, reference.strip())
        parts = urlsplit(absolute)
        base = urlsplit(base_logical)
        base_target = self._map.get(_origin(base)[1])
        if base_target is not None and _origin(parts) == base_target:
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))
        return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


def same_origin(a: str, b: str) -> bool:
    return a == b or _origin(urlsplit(a)) == _origin(urlsplit(b))


def safe_url(url: str) -> str:
    """scheme://host/path for messages (no query: a token request's query names the account)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
