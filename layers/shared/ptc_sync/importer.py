"""How ptc-sync makes ECR import a tag from upstream: one port, two adapters.

ECR's guide documents the cache filling on a pull by a registry client (``docker pull``): the registry
HTTP API of the account's endpoint (``https://<account>.dkr.ecr.<region>.amazonaws.com``,
``GET /v2/<repository>/manifests/<tag>`` and the blobs, with a ``GetAuthorizationToken`` credential).
That the ECR API (``BatchGetImage``, ``GetDownloadUrlForLayer``) does the same is only implied
(docs/ecr-behaviour.md). Both are behind ``CacheImporter``:

- ``ApiImporter``: BatchGetImage by tag with the index types accepted, GetDownloadUrlForLayer per blob.
- ``EndpointImporter``: the registry HTTP API with Basic ``AWS:<password>`` from GetAuthorizationToken,
  HTTPS only; a loopback URL (the testbed's endpoint) only through the ``endpoint_override`` argument,
  which nothing read from an event, a setting or the account can set (the registry client's policy).

Both raise ``EcrError`` with the codes the refresh already knows (``ImageNotFound``,
``AccessDeniedException``, ``UpstreamUnavailable``, …), so the protocol around them is the same.
Which one the refresh and pre-warm use is the setting ``PTC_IMPORT_PATH`` (``choose_import_path``):
``api``, ``endpoint``, or ``auto`` (the default): the API, unless the account's latest selftest found
that the API does not import and the registry endpoint does.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, Protocol
from urllib.parse import quote, urlsplit

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync import __version__
from ptc_sync import mediatypes as mt
from ptc_sync.ecr import EcrAdapter, EcrError, Manifest
from ptc_sync.models import sha256_digest
from ptc_sync.registry.transport import is_loopback

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

ImportPath = Literal["api", "endpoint"]
API: Final = "api"
ENDPOINT: Final = "endpoint"
AUTO: Final = "auto"
IMPORT_PATHS: Final = (API, ENDPOINT)
ECR_ENDPOINT_RE: Final = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
TOKEN_MARGIN: Final = timedelta(minutes=5)  # a token this close to expiry is fetched again
MAX_MANIFEST: Final = 4 * 1024 * 1024  # ECR's manifest size limit
_DIGEST_RE: Final = re.compile(r"^sha256:[a-f0-9]{64}$")


class CacheImporter(Protocol):
    """Makes ECR import a tag (and ask for its blobs) the way a pull does."""

    @property
    def path(self) -> ImportPath:
        """``api`` or ``endpoint``: which way this importer pulls."""
        ...

    def import_tag(self, repository: str, tag: str) -> Manifest:
        """Pull ``repository:tag`` by tag, which imports an absent tag under a pull-through cache rule;
        the manifest exactly as ECR serves it (bytes hashed against the digest ECR reports)."""
        ...

    def fetch_blob(self, repository: str, digest: str) -> str:
        """Ask ECR for one blob as a pull does, which starts ECR caching it; returns where ECR sends
        the client (a URL on upstream's host proves the blob is not warm: only
        BatchCheckLayerAvailability's AVAILABLE does)."""
        ...


class ApiImporter:
    """The ECR API: BatchGetImage by tag, GetDownloadUrlForLayer per blob (what ``ecr.py`` does)."""

    path: ImportPath = "api"

    def __init__(self, ecr: EcrAdapter) -> None:
        self.ecr = ecr

    def import_tag(self, repository: str, tag: str) -> Manifest:
        return self.ecr.get_manifest(repository, tag=tag)

    def fetch_blob(self, repository: str, digest: str) -> str:
        return self.ecr.warm_layer(repository, digest)


def endpoint_url(account_id: str, region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"https://{account_id}.dkr.ecr.{region}{suffix}"


def check_endpoint(url: str, *, override: bool) -> str:
    """The registry endpoint as a bare origin: HTTPS on an ECR host; with ``override`` (tests and the
    local testbed only) an http(s) loopback origin. ValueError otherwise."""
    parts = urlsplit(url.strip())
    bare = not (parts.username or parts.password or parts.query or parts.fragment) and parts.path in {"", "/"}
    host = parts.hostname or ""
    if override:
        if parts.scheme not in {"http", "https"} or not is_loopback(host) or not bare:
            raise ValueError(
                f"ECR endpoint override {url!r}: only a bare loopback http(s) URL (tests and the local "
                "testbed) may replace the account's registry endpoint"
            )
    elif parts.scheme != "https" or not ECR_ENDPOINT_RE.fullmatch(host) or not bare:
        raise ValueError(
            f"ECR registry endpoint {url!r}: must be https://<account>.dkr.ecr.<region>.amazonaws.com"
        )
    return f"{parts.scheme}://{parts.netloc}"


class EndpointImporter:
    """The registry HTTP API of the account's ECR endpoint, as ``docker pull`` uses it.

    The credential is ``GetAuthorizationToken``'s (Basic ``AWS:<password>``, valid 12 hours, fetched
    again 5 minutes before it expires). Manifests are read with every manifest and index type in
    ``Accept``; the body is hashed against ``Docker-Content-Digest``. A blob is asked for with a GET
    that follows no redirect: ECR answers with a redirect to its own storage or, for a blob it has not
    cached yet, to upstream's; the body is never downloaded."""

    path: ImportPath = "endpoint"

    def __init__(
        self,
        client: ECRClient,
        *,
        account_id: str = "",
        region: str = "",
        endpoint_override: str | None = None,
        timeout: float = 30.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.override = check_endpoint(endpoint_override, override=True) if endpoint_override else None
        self.base = self.override or (
            check_endpoint(endpoint_url(account_id, region), override=False)
            if account_id and region
            else None  # learnt from the token's proxyEndpoint
        )
        self.now = now
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(connect=5.0, read=timeout), maxsize=8
        )
        self._lock = threading.Lock()
        self._token: tuple[str, datetime] | None = None

    def close(self) -> None:
        self._http.clear()

    # -- the credential -----------------------------------------------------------------------------

    def _authorization(self) -> str:
        with self._lock:
            if self._token is not None and self._token[1] - TOKEN_MARGIN > self.now():
                return self._token[0]
            try:
                resp = self.client.get_authorization_token()
            except (ClientError, BotoCoreError) as exc:
                raise _ecr_error("GetAuthorizationToken", exc) from exc
            data = (resp.get("authorizationData") or [{}])[0]
            token = data.get("authorizationToken", "")
            try:
                user, _, _password = base64.b64decode(token, validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user = ""
            if user != "AWS":
                raise EcrError("GetAuthorizationToken", "BadResponse", "not a Basic AWS:<password> token")
            if self.base is None:
                self.base = check_endpoint(str(data.get("proxyEndpoint", "")), override=False)
            expires = data.get("expiresAt") or self.now()
            self._token = (f"Basic {token}", expires)
            return self._token[0]

    # -- requests -------------------------------------------------------------------------------------

    def _get(self, operation: str, path: str, accept: str, subject: str) -> urllib3.BaseHTTPResponse:
        headers = {
            "Authorization": self._authorization(),
            "Accept": accept,
            "User-Agent": f"ptc-sync/{__version__}",
        }
        url = f"{self.base}{path}"
        try:
            return self._http.request(
                "GET", url, headers=headers, redirect=False, preload_content=False, retries=False
            )
        except urllib3.exceptions.HTTPError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise EcrError(operation, "UpstreamUnavailable", reason, subject=subject) from exc

    def import_tag(self, repository: str, tag: str) -> Manifest:
        subject = f"{repository}:{tag}"
        op = "GET manifest"
        resp = self._get(op, f"/v2/{repository}/manifests/{quote(tag, safe='')}", _ACCEPT, subject)
        try:
            if resp.status != 200:
                raise _http_error(op, resp, subject)
            body = resp.read(MAX_MANIFEST + 1)
        finally:
            resp.release_conn()
        if len(body) > MAX_MANIFEST:
            raise EcrError(op, "BadResponse", "manifest larger than 4 MiB", subject=subject)
        reported = resp.headers.get("Docker-Content-Digest", "")
        if not _DIGEST_RE.fullmatch(reported) or sha256_digest(body) != reported:
            raise EcrError(
                op,
                "DigestMismatch",
                f"manifest bytes hash to {sha256_digest(body)}, the endpoint reports {reported or 'none'}",
                subject=subject,
            )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip() or _media_type_of(body)
        return Manifest(digest=reported, media_type=media_type, body=body)

    def fetch_blob(self, repository: str, digest: str) -> str:
        subject = f"{repository}@{digest}"
        op = "GET blob"
        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        resp = self._get(op, f"/v2/{repository}/blobs/{digest}", "*/*", subject)
        if resp.status == 200:
            resp.close()  # served by the endpoint itself: the bytes are not needed, only the ask
            return url
        try:
            if resp.status in {301, 302, 303, 307, 308}:
                location = resp.headers.get("Location", "")
                if not location:
                    raise EcrError(op, "BadResponse", "a redirect without a Location", subject=subject)
                return location
            raise _http_error(op, resp, subject)
        finally:
            resp.drain_conn()
            resp.release_conn()


_ACCEPT: Final = ", ".join(sorted(mt.MANIFEST_TYPES))

# Registry answers as the refresh's codes: a missing manifest is ImageNotFound (as BatchGetImage's
# failure), refused credentials or permissions end an import at once (AccessDeniedException), anything
# else may be an import still under way (UpstreamUnavailable): the refresh polls within its bound.
_BY_STATUS: Final = {
    401: "AccessDeniedException",
    403: "AccessDeniedException",
    429: "UpstreamTooManyRequests",
}


def _http_error(operation: str, resp: urllib3.BaseHTTPResponse, subject: str) -> EcrError:
    try:
        doc = json.loads(resp.read(64 * 1024) or b"{}")
        first = (doc.get("errors") or [{}])[0] if isinstance(doc, dict) else {}
        registry_code = str(first.get("code", ""))[:64]
        message = str(first.get("message", ""))[:300]
    except (ValueError, AttributeError, urllib3.exceptions.HTTPError):
        registry_code, message = "", ""
    if resp.status == 404:
        code = "RepositoryNotFoundException" if registry_code == "NAME_UNKNOWN" else "ImageNotFound"
        if registry_code == "BLOB_UNKNOWN":
            code = "LayersNotFoundException"
    else:
        code = _BY_STATUS.get(resp.status, "UpstreamUnavailable")
    detail = (
        f"HTTP {resp.status}"
        + (f" {registry_code}" if registry_code else "")
        + (f": {message}" if message else "")
    )
    return EcrError(operation, code, detail, subject=subject)


def _ecr_error(operation: str, exc: ClientError | BotoCoreError) -> EcrError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return EcrError(operation, err.get("Code", "Unknown"), err.get("Message", str(exc)))
    return EcrError(operation, type(exc).__name__, str(exc))


def _media_type_of(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    value = doc.get("mediaType", "") if isinstance(doc, dict) else ""
    return value if isinstance(value, str) else ""


class ChosenImporter:
    """The importer ``choose`` names, decided on first use and kept for the container's life (a
    Lambda container lives minutes to hours; a new selftest result applies from the next one)."""

    def __init__(
        self, importers: dict[str, Callable[[], CacheImporter]], choose: Callable[[], ImportPath]
    ) -> None:
        self._importers = importers
        self._choose = choose
        self._chosen: CacheImporter | None = None
        self._lock = threading.Lock()

    def _get(self) -> CacheImporter:
        with self._lock:
            if self._chosen is None:
                self._chosen = self._importers[self._choose()]()
            return self._chosen

    @property
    def path(self) -> ImportPath:
        return self._get().path

    def import_tag(self, repository: str, tag: str) -> Manifest:
        return self._get().import_tag(repository, tag)

    def fetch_blob(self, repository: str, digest: str) -> str:
        return self._get().fetch_blob(repository, digest)


def choose_import_path(setting: str, selftest_choice: Callable[[], ImportPath | None]) -> ImportPath:
    """``api`` or ``endpoint`` as set; ``auto``: what the latest selftest recorded, else the API."""
    if setting in IMPORT_PATHS:
        return setting  # type: ignore[return-value]
    try:
        chosen = selftest_choice()
    except Exception:  # noqa: BLE001 - an unreadable result must not stop a run: the default path
        chosen = None
    return chosen or API
