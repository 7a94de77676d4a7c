"""Where a token request may go: the challenge comes from upstream, so its realm is not trusted.

A realm must be ``https``, name a host (no IP address literal, no user information, no local name, no
port but the upstream's own) and be the upstream host itself or a documented realm of the rule's kind
(``REALM_HOSTS``). ``realm_refusal`` says why not, with a stable reason code; nothing is sent to a
refused realm.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult

from ptc_sync.models import UpstreamKind


@dataclass(frozen=True, slots=True)
class RealmHosts:
    """Token realm hosts a kind of upstream documents, besides the upstream host itself."""

    exact: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()

    def allows(self, host: str) -> bool:
        return host in self.exact or any(p.fullmatch(host) for p in self.patterns)


# The one definition of where a rule's kind may send token requests (registry-facts.md, "Known realms").
# The upstream host itself is always allowed, which covers ACR (<name>.azurecr.io/oauth2/token) and
# private ECR (Basic credentials from GetAuthorizationToken, no realm).
REALM_HOSTS: Final[Mapping[UpstreamKind, RealmHosts]] = {
    UpstreamKind.DOCKER_HUB: RealmHosts(frozenset({"auth.docker.io"})),
    UpstreamKind.ECR_PUBLIC: RealmHosts(frozenset({"public.ecr.aws"})),
    UpstreamKind.GITHUB: RealmHosts(frozenset({"ghcr.io"})),
    UpstreamKind.QUAY: RealmHosts(frozenset({"quay.io"})),
    UpstreamKind.CHAINGUARD: RealmHosts(frozenset({"cgr.dev"})),
    UpstreamKind.GITLAB: RealmHosts(frozenset({"gitlab.com"})),  # registry.gitlab.com → gitlab.com/jwt/auth
    # registry.k8s.io (archeio) answers /token itself and redirects to the regional Artifact Registry
    # it fronts (kubernetes/registry.k8s.io cmd/archeio: UPSTREAM_REGISTRY_ENDPOINT, e.g.
    # https://us-central1-docker.pkg.dev; earlier deployments https://<region>.gcr.io), which
    # challenges with a realm on its own host.
    UpstreamKind.K8S: RealmHosts(
        frozenset({"registry.k8s.io"}),
        (
            re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*-docker\.pkg\.dev"),
            re.compile(r"(?:[a-z0-9-]+\.)?gcr\.io"),
        ),
    ),
    UpstreamKind.AZURE: RealmHosts(),
    UpstreamKind.ECR: RealmHosts(),
}


@dataclass(frozen=True, slots=True)
class RealmRefusal:
    """Why a token realm is refused: a stable ``reason`` code and an explanation naming the host."""

    reason: str
    realm_host: str
    detail: str


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells, in any form a resolver accepts (``2852039166``, ``0xa9fea9fe`` and
    ``127.1`` are IPv4 addresses to ``inet_aton``), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _address_class(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_private:
        return "a private address"
    return "an IP address"


def _port(realm: SplitResult) -> int | None:
    try:
        return realm.port
    except ValueError:
        return -1


def realm_refusal(
    realm: SplitResult,
    *,
    upstream: str,
    kind: UpstreamKind,
    aliases: Iterable[str] = (),
) -> RealmRefusal | None:
    """None when a token request may go to ``realm`` for an upstream ``upstream`` (host[:port]) of
    ``kind``; otherwise why not.

    ``aliases`` are the logical hosts a test or demo ``host_override`` maps to the realm's loopback
    origin: such a realm is judged as those hosts (and is plain http, as the override is).
    """
    hostname = realm.hostname or ""
    netloc = realm.netloc.rsplit("@", 1)[-1].lower()
    allowed = REALM_HOSTS.get(kind, RealmHosts())
    named = sorted(aliases)
    ip = _ip_literal(hostname) if hostname else None
    neither = f"neither the upstream host {upstream} nor a documented {kind.value} realm"
    subject, reason, detail = hostname, "", ""
    if not hostname:
        subject, reason, detail = netloc, "no_host", "the realm names no host"
    elif realm.username is not None or realm.password is not None:
        reason, detail = "user_info", "the realm URL carries user information"
    elif named:
        if not any(alias == upstream or allowed.allows(alias) for alias in named):
            subject, reason = netloc, "foreign_host"
            detail = f"{netloc} (the override of {', '.join(named)}) is {neither}"
    elif realm.scheme != "https":
        reason, detail = "not_https", f"refusing non-HTTPS URL {realm.scheme}://{netloc}{realm.path[:100]}"
    elif ip is not None:
        spelled = hostname if str(ip) == hostname else f"{hostname} ({ip})"
        reason, detail = "ip_address", f"{spelled} is {_address_class(ip)}, not a host name"
    elif hostname == "localhost" or hostname.endswith(".localhost"):
        reason, detail = "local_name", f"{hostname} is a local name"
    elif netloc.removesuffix(":443") == upstream:
        pass
    elif _port(realm) not in {None, 443}:
        reason, detail = "port", f"{netloc}: only the upstream's own origin may name a port"
    elif not allowed.allows(hostname):
        reason, detail = "foreign_host", f"{hostname} is {neither}"
    # upstream's text: bounded (a host name is at most 253 characters, a port and brackets add a few)
    return RealmRefusal(reason, subject[:260], detail[:600]) if reason else None
