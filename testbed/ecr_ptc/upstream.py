"""ECR's side of the network: the emulated ECR reaches upstream registries over the distribution HTTP
API with its own small urllib3 client (Basic and Bearer challenges answered with the rule's secret,
redirects followed without forwarding credentials to another host). ``upstreams`` maps real-looking
hosts to loopback registries; nothing else is contacted (an unmapped host, token realm or redirect
target is unreachable).

Facts that live here (docs/ecr-facts.md): how upstream answers map to ``ImageFailureCode`` values
(404 ImageNotFound, 401/403 UpstreamAccessDenied, 429 UpstreamTooManyRequests, else
UpstreamUnavailable; "Upstream pull quotas": Quay and Docker Hub answer 429); manifest bytes must match
their digest.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from ptc_sync import mediatypes as mt
from ptc_sync.models import sha256_digest
from testbed.ecr_ptc.base import EmulatorCore

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class _UpstreamError(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass
class _Fetched:
    manifest: str
    media_type: str
    digest: str
    children: list[_Fetched] = field(default_factory=list)


class UpstreamMixin(EmulatorCore):
    """The upstream hosts the emulation can reach and the HTTP pool it reaches them with."""

    upstreams: dict[str, str]
    unreachable_hosts: set[str]
    _http: urllib3.PoolManager

    def add_upstream(self, host: str, base_url: str) -> None:
        """Map an upstream host (as a rule's upstreamRegistryUrl names it) to a loopback registry."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"upstream {host} must map to a loopback http(s) URL, not {base_url!r}")
        self.upstreams[host] = base_url.rstrip("/")

    def _base_url(self, host: str) -> str:
        if host in self.unreachable_hosts:
            raise _UpstreamError("UpstreamUnavailable", f"{host} is unreachable")
        if host not in self.upstreams:
            raise _UpstreamError("UpstreamUnavailable", f"{host} is not reachable from the emulation")
        return self.upstreams[host]


class _UpstreamClient:
    """Just enough of the registry HTTP API for ECR's side of a pull: manifests, blobs and auth."""

    def __init__(self, emulator: UpstreamMixin, host: str, credentials: tuple[str, str] | None) -> None:
        self.emulator = emulator
        self.host = host
        self.credentials = credentials
        self.base = emulator._base_url(host)
        self._authorization: dict[str, str] = {}  # scope (repository or "") -> Authorization value

    def _resolve(self, url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in self.emulator.upstreams:
            if host in self.emulator.unreachable_hosts:
                raise _UpstreamError("UpstreamUnavailable", f"{host} is unreachable")
            base = self.emulator.upstreams[host]
            return base + parts.path + (f"?{parts.query}" if parts.query else "")
        if host in LOOPBACK_HOSTS:
            return url
        raise _UpstreamError("UpstreamUnavailable", f"{host} is not reachable from the emulation")

    def _http(self, method: str, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        hdrs = dict(headers)
        for _ in range(5):
            target = self._resolve(url)
            try:
                resp = self.emulator._http.request(method, target, headers=hdrs, redirect=False)
            except urllib3.exceptions.HTTPError as exc:
                raise _UpstreamError("UpstreamUnavailable", f"{self.host}: {type(exc).__name__}") from exc
            if resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            next_url = urljoin(url, resp.headers["Location"])
            if urlsplit(next_url).netloc != urlsplit(url).netloc:
                hdrs.pop("Authorization", None)  # never forward credentials to another host
            url = next_url
        raise _UpstreamError("UpstreamUnavailable", f"{self.host}: too many redirects")

    def _request(
        self, path: str, scope: str, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        url = f"https://{self.host}{path}"
        hdrs = dict(headers or {})
        if scope in self._authorization:
            hdrs["Authorization"] = self._authorization[scope]
        resp = self._http("GET", url, hdrs)
        if resp.status == 401 and "Authorization" not in hdrs:
            self._authorization[scope] = self._answer(resp.headers.get("WWW-Authenticate", ""), scope)
            hdrs["Authorization"] = self._authorization[scope]
            resp = self._http("GET", url, hdrs)
        return resp

    def _basic(self) -> str:
        assert self.credentials is not None
        user, token = self.credentials
        return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()

    def _answer(self, challenge: str, scope: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise _UpstreamError("UpstreamAccessDenied", f"{self.host} requires authentication")
            return self._basic()
        if scheme.lower() != "bearer":
            raise _UpstreamError(
                "UpstreamAccessDenied",
                f"{self.host} answered 401 without a usable challenge",
            )
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            raise _UpstreamError("UpstreamAccessDenied", f"{self.host}: bearer challenge without realm")
        query: dict[str, str] = {}
        if fields.get("service"):
            query["service"] = fields["service"]
        if scope:
            query["scope"] = f"repository:{scope}:pull"
        headers = {"Authorization": self._basic()} if self.credentials else {}
        realm = fields["realm"] + ("?" + urlencode(query) if query else "")
        resp = self._http("GET", realm, headers)
        if resp.status in (401, 403):
            raise _UpstreamError(
                "UpstreamAccessDenied",
                f"{self.host}: token request refused ({resp.status})",
            )
        if resp.status != 200:
            raise _UpstreamError(
                "UpstreamUnavailable",
                f"{self.host}: token request failed ({resp.status})",
            )
        try:
            doc = json.loads(resp.data)
            return "Bearer " + str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError) as exc:
            raise _UpstreamError("UpstreamUnavailable", f"{self.host}: malformed token response") from exc

    def _check(self, resp: urllib3.BaseHTTPResponse, what: str) -> None:
        if resp.status == 200:
            return
        if resp.status in (401, 403):
            raise _UpstreamError(
                "UpstreamAccessDenied",
                f"{self.host} denied access to {what} ({resp.status})",
            )
        if resp.status == 404:
            raise _UpstreamError("ImageNotFound", f"{what} not found upstream")
        if resp.status == 429:
            raise _UpstreamError("UpstreamTooManyRequests", f"{self.host} rate-limited {what}")
        raise _UpstreamError("UpstreamUnavailable", f"{self.host} answered {resp.status} for {what}")

    def ping(self) -> None:
        self._check(self._request("/v2/", ""), "/v2/")

    def manifest(self, repository: str, reference: str) -> _Fetched:
        what = f"{self.host}/{repository}:{reference}"
        resp = self._request(
            f"/v2/{repository}/manifests/{reference}",
            repository,
            {"Accept": mt.ACCEPT_ALL},
        )
        self._check(resp, what)
        body = resp.data
        digest = sha256_digest(body)
        announced = resp.headers.get("Docker-Content-Digest")
        if (announced and announced != digest) or (reference.startswith("sha256:") and reference != digest):
            raise _UpstreamError(
                "UpstreamUnavailable",
                f"{what}: manifest bytes do not match their digest",
            )
        try:
            text = body.decode("utf-8")
            doc = json.loads(text)
        except ValueError as exc:
            raise _UpstreamError("ImageInaccessible", f"{what}: manifest is not UTF-8 JSON") from exc
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type in ("", "application/json", "application/octet-stream"):
            media_type = str(doc.get("mediaType", ""))
        return _Fetched(text, media_type, digest)

    def blob(self, repository: str, digest: str) -> bytes:
        resp = self._request(f"/v2/{repository}/blobs/{digest}", repository)
        self._check(resp, f"{self.host}/{repository}@{digest}")
        if sha256_digest(resp.data) != digest:
            raise _UpstreamError("UpstreamUnavailable", f"blob {digest} does not match its digest")
        return bytes(resp.data)
