"""The emulated account's ECR registry endpoint on loopback: test and demo infrastructure.

Real ECR serves the registry HTTP API (what ``docker pull`` talks to) at
``https://<account>.dkr.ecr.<region>.amazonaws.com``, authenticated with Basic ``AWS:<password>`` from
``GetAuthorizationToken`` (ECR user guide, registry_auth.html). This server answers the same requests
on ``http://127.0.0.1:<port>`` from the emulation (``testbed.ecr_ptc``), while moto's ``mock_aws`` and
the emulator are installed in this process:

    with Sandbox(registry) as box, EcrRegistryEndpoint() as endpoint:
        endpoint.url   # http://127.0.0.1:PORT, for EndpointImporter(endpoint_override=...)

- ``GET /v2/``: 200 with the credential, else 401 and a Basic challenge.
- ``GET|HEAD /v2/<repository>/manifests/<tag or digest>``: the manifest BatchGetImage gives for the
  same image id with ``Accept``'s manifest types as ``acceptedMediaTypes``: the SAME import semantics,
  because it is the same call (a pull by tag of a tag absent under a rule imports it, the 24-hour
  re-check, background imports, faults, pull counts and ``lastRecordedPullTime``). ``Content-Type`` and
  ``Docker-Content-Digest`` as a registry sends them.
- ``GET /v2/<repository>/blobs/<digest>``: ``307`` to the URL GetDownloadUrlForLayer gives (ECR's S3
  storage once it holds the blob; upstream's own blob URL, with caching started in the background, for
  a blob it has not cached yet): again the same call.

Answers for failures (ECR's are not documented; chosen here, the adapter reads them back): the
registry error codes of the distribution spec, ImageNotFound → 404 MANIFEST_UNKNOWN, an unknown
repository → 404 NAME_UNKNOWN, an unknown blob → 404 BLOB_UNKNOWN, UpstreamAccessDenied → 403 DENIED,
UpstreamTooManyRequests → 429 TOOMANYREQUESTS, any other failure (an import still under way
included) → 503 UNAVAILABLE. The credential is checked against what the emulated
GetAuthorizationToken returned when the server started (moto's: ``AWS:<account>-auth-token``). Pulls
are made by this process's AWS identity (the token is not tied to a principal here).
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self

import boto3
from botocore.exceptions import ClientError

from ptc_sync import mediatypes as mt

SCHEMA1: Final = "application/vnd.docker.distribution.manifest.v1+json"
VALID_TYPES: Final = frozenset({*mt.MANIFEST_TYPES, SCHEMA1})
MANIFEST_RE: Final = re.compile(r"^/v2/(?P<name>[a-z0-9._/-]+)/manifests/(?P<ref>[A-Za-z0-9_.:+-]{1,128})$")
BLOB_RE: Final = re.compile(r"^/v2/(?P<name>[a-z0-9._/-]+)/blobs/(?P<digest>sha256:[a-f0-9]{64})$")
FAILURE_STATUS: Final = {
    "ImageNotFound": (404, "MANIFEST_UNKNOWN"),
    "UpstreamAccessDenied": (403, "DENIED"),
    "UpstreamTooManyRequests": (429, "TOOMANYREQUESTS"),
}
ERROR_STATUS: Final = {
    "RepositoryNotFoundException": (404, "NAME_UNKNOWN"),
    "LayersNotFoundException": (404, "BLOB_UNKNOWN"),
    "LayerInaccessibleException": (404, "BLOB_UNKNOWN"),
    "ImageNotFoundException": (404, "MANIFEST_UNKNOWN"),
    "AccessDeniedException": (403, "DENIED"),
}


class EcrRegistryEndpoint:
    """A ThreadingHTTPServer on a free loopback port, serving the emulation's registry API."""

    def __init__(self, *, region: str = "us-east-1") -> None:
        self.region = region
        self.requests: Counter[tuple[str, str]] = Counter()  # (method, kind) → count
        self.refused = 0  # requests without the right credential
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ecr: Any = None
        self._expected = ""
        self.proxy_endpoint = ""

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the endpoint is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        self._ecr = boto3.client("ecr", region_name=self.region)
        data = self._ecr.get_authorization_token()["authorizationData"][0]
        self._expected = f"Basic {data['authorizationToken']}"
        self.proxy_endpoint = data["proxyEndpoint"]
        endpoint = self

        class Handler(_Handler):
            owner = endpoint

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ecr-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- answers ------------------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        return header == self._expected

    def manifest(self, name: str, reference: str, accept: str) -> tuple[int, dict[str, str], bytes]:
        accepted = sorted({part.split(";")[0].strip() for part in accept.split(",")} & VALID_TYPES)
        image_id = {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
        kwargs: dict[str, Any] = {"repositoryName": name, "imageIds": [image_id]}
        if accepted:
            kwargs["acceptedMediaTypes"] = accepted
        try:
            resp = self._ecr.batch_get_image(**kwargs)
        except ClientError as exc:
            return _client_error(exc)
        if resp.get("images"):
            image = resp["images"][0]
            body = image["imageManifest"].encode()
            headers = {
                "Content-Type": image.get("imageManifestMediaType") or mt.DOCKER_MANIFEST,
                "Docker-Content-Digest": image["imageId"]["imageDigest"],
                "Content-Length": str(len(body)),
            }
            return 200, headers, body
        failure = (resp.get("failures") or [{}])[0]
        code = failure.get("failureCode", "ImageNotFound")
        status, registry_code = FAILURE_STATUS.get(code, (503, "UNAVAILABLE"))
        return _error(status, registry_code, f"{code}: {failure.get('failureReason', '')}")

    def blob(self, name: str, digest: str) -> tuple[int, dict[str, str], bytes]:
        try:
            resp = self._ecr.get_download_url_for_layer(repositoryName=name, layerDigest=digest)
        except ClientError as exc:
            return _client_error(exc)
        return 307, {"Location": resp["downloadUrl"], "Docker-Content-Digest": digest}, b""


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"errors": [{"code": code, "message": message[:300]}]}).encode()
    return status, {"Content-Type": "application/json"}, body


def _client_error(exc: ClientError) -> tuple[int, dict[str, str], bytes]:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    status, registry_code = ERROR_STATUS.get(code, (503, "UNAVAILABLE"))
    return _error(status, registry_code, f"{code}: {err.get('Message', '')}")


class _Handler(BaseHTTPRequestHandler):
    owner: EcrRegistryEndpoint
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests read ``requests``

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        owner = self.owner
        path = self.path.split("?", 1)[0]
        if not owner.authorized(self.headers.get("Authorization")):
            owner.refused += 1
            status, headers, body = _error(401, "UNAUTHORIZED", "authentication required")
            headers["WWW-Authenticate"] = f'Basic realm="{owner.proxy_endpoint}/",service="ecr.amazonaws.com"'
        elif path in ("/v2/", "/v2"):
            status, headers, body = 200, {"Content-Type": "application/json"}, b"{}"
        elif match := MANIFEST_RE.fullmatch(path):
            owner.requests[(self.command, "manifest")] += 1
            status, headers, body = owner.manifest(
                match["name"], match["ref"], self.headers.get("Accept", "")
            )
        elif (match := BLOB_RE.fullmatch(path)) and not head:
            owner.requests[(self.command, "blob")] += 1
            status, headers, body = owner.blob(match["name"], match["digest"])
        else:
            status, headers, body = _error(
                404, "NAME_UNKNOWN", "not a registry API path this endpoint serves"
            )
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        headers["Docker-Distribution-API-Version"] = "registry/2.0"
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
