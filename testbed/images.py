"""Pushes images to a registry over the distribution HTTP API, the way an upstream release happens.

Single-platform images (Docker v2 or OCI), multi-architecture images (Docker manifest list or OCI
index, each platform its own manifest, config and layers), retagging (a new release under an old
tag) and tag deletion. Layers are small real tar.gz files with random content.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urljoin

import urllib3

from ptc_sync import mediatypes as mt
from ptc_sync.models import sha256_digest

Flavor = Literal["docker", "oci"]
DEFAULT_PLATFORMS: tuple[str, ...] = ("linux/amd64", "linux/arm64")


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    digest: str  # sha256 of the exact manifest bytes pushed
    media_type: str
    manifest: bytes
    platform: str | None = None  # "os/arch" for a single-platform image
    config: Blob | None = None
    layers: tuple[Blob, ...] = ()
    children: tuple[PushedImage, ...] = field(default=())  # per platform, for an index

    @property
    def platforms(self) -> tuple[str, ...]:
        if self.children:
            return tuple(c.platform or "" for c in self.children)
        return (self.platform,) if self.platform else ()

    @property
    def all_layers(self) -> tuple[Blob, ...]:
        if self.children:
            return tuple(layer for c in self.children for layer in c.layers)
        return self.layers


class PushError(RuntimeError):
    pass


def random_layer(size: int = 512) -> tuple[bytes, str]:
    """A gzipped tar holding one file of random bytes; returns (compressed, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = os.urandom(size)
        info = tarfile.TarInfo(name=f"data-{data[:4].hex()}.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), sha256_digest(uncompressed)


class ImagePusher:
    """A small registry client for writing; ``auth`` is (user, password) for Basic or token realms."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))
        self._tokens: dict[str, str] = {}

    # -- HTTP with the registry's auth challenge answered --------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        repo: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        hdrs = dict(headers or {})
        if repo in self._tokens:
            hdrs["Authorization"] = self._tokens[repo]
        resp = self.http.request(method, url, body=body, headers=hdrs, redirect=False)
        if resp.status == 401:
            self._tokens[repo] = self._answer_challenge(resp.headers.get("WWW-Authenticate", ""), repo)
            hdrs["Authorization"] = self._tokens[repo]
            resp = self.http.request(method, url, body=body, headers=hdrs, redirect=False)
        return resp

    def _answer_challenge(self, challenge: str, repo: str) -> str:
        scheme, _, params = challenge.partition(" ")
        if self.auth is None:
            raise PushError(f"registry wants auth ({challenge}) and the pusher has no credentials")
        basic = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        if scheme.lower() == "basic":
            return basic
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = urlencode({"service": fields.get("service", ""), "scope": f"repository:{repo}:pull,push"})
        resp = self.http.request("GET", f"{fields['realm']}?{query}", headers={"Authorization": basic})
        if resp.status != 200:
            raise PushError(f"token request failed: {resp.status} {resp.data[:200]!r}")
        doc = json.loads(resp.data)
        return "Bearer " + (doc.get("token") or doc["access_token"])

    # -- blobs and manifests -------------------------------------------------------------------------

    def push_blob(self, repo: str, data: bytes, media_type: str) -> Blob:
        digest = sha256_digest(data)
        head = self._request("HEAD", f"{self.base_url}/v2/{repo}/blobs/{digest}", repo=repo)
        if head.status == 200:
            return Blob(digest, len(data), media_type)
        start = self._request("POST", f"{self.base_url}/v2/{repo}/blobs/uploads/", repo=repo)
        if start.status != 202:
            raise PushError(f"upload start {repo}: {start.status} {start.data[:200]!r}")
        location = urljoin(self.base_url + "/", start.headers["Location"])
        sep = "&" if "?" in location else "?"
        put = self._request(
            "PUT",
            f"{location}{sep}{urlencode({'digest': digest})}",
            repo=repo,
            body=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if put.status != 201:
            raise PushError(f"upload {repo} {digest}: {put.status} {put.data[:200]!r}")
        return Blob(digest, len(data), media_type)

    def put_manifest(self, repo: str, reference: str, manifest: bytes, media_type: str) -> str:
        resp = self._request(
            "PUT",
            f"{self.base_url}/v2/{repo}/manifests/{reference}",
            repo=repo,
            body=manifest,
            headers={"Content-Type": media_type},
        )
        if resp.status != 201:
            raise PushError(f"manifest {repo}:{reference}: {resp.status} {resp.data[:300]!r}")
        digest = sha256_digest(manifest)
        if resp.headers.get("Docker-Content-Digest") != digest:
            raise PushError(
                f"registry reports {resp.headers.get('Docker-Content-Digest')}, expected {digest}"
            )
        return digest

    # -- images --------------------------------------------------------------------------------------

    def _build_image(
        self, repo: str, platform: str, flavor: Flavor, layers: int, layer_size: int
    ) -> tuple[bytes, str, Blob, tuple[Blob, ...]]:
        os_name, _, arch = platform.partition("/")
        layer_type = mt.OCI_LAYER_GZIP if flavor == "oci" else mt.DOCKER_LAYER_GZIP
        blobs: list[Blob] = []
        diff_ids: list[str] = []
        for _ in range(layers):
            data, diff_id = random_layer(layer_size)
            blobs.append(self.push_blob(repo, data, layer_type))
            diff_ids.append(diff_id)
        config_doc = {
            "architecture": arch,
            "os": os_name,
            "config": {"Labels": {"ptc-sync.testbed": os.urandom(4).hex()}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_type = mt.OCI_CONFIG if flavor == "oci" else mt.DOCKER_CONFIG
        config = self.push_blob(repo, json.dumps(config_doc).encode(), config_type)
        manifest_type = mt.OCI_MANIFEST if flavor == "oci" else mt.DOCKER_MANIFEST
        doc = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in blobs],
        }
        return json.dumps(doc, indent=3).encode(), manifest_type, config, tuple(blobs)

    def push_image(
        self,
        repo: str,
        tag: str,
        *,
        flavor: Flavor = "docker",
        platform: str = "linux/amd64",
        layers: int = 2,
        layer_size: int = 512,
    ) -> PushedImage:
        """Push a single-platform image under ``tag`` (replacing whatever the tag pointed at)."""
        manifest, media_type, config, blobs = self._build_image(repo, platform, flavor, layers, layer_size)
        digest = self.put_manifest(repo, tag, manifest, media_type)
        return PushedImage(repo, tag, digest, media_type, manifest, platform, config, blobs)

    def push_index(
        self,
        repo: str,
        tag: str,
        *,
        flavor: Flavor = "docker",
        platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
        layers: int = 1,
        layer_size: int = 512,
    ) -> PushedImage:
        """Push a multi-architecture image: a Docker manifest list or an OCI index, one child per platform."""
        children: list[PushedImage] = []
        entries = []
        for platform in platforms:
            manifest, media_type, config, blobs = self._build_image(
                repo, platform, flavor, layers, layer_size
            )
            digest = self.put_manifest(repo, sha256_digest(manifest), manifest, media_type)
            children.append(PushedImage(repo, "", digest, media_type, manifest, platform, config, blobs))
            os_name, _, arch = platform.partition("/")
            entries.append(
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": os_name},
                }
            )
        index_type = mt.OCI_INDEX if flavor == "oci" else mt.DOCKER_MANIFEST_LIST
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}, indent=3
        ).encode()
        digest = self.put_manifest(repo, tag, index, index_type)
        return PushedImage(repo, tag, digest, index_type, index, None, None, (), tuple(children))

    def delete_tag(self, repo: str, tag: str) -> str:
        """Make ``tag`` disappear upstream. distribution 2.8 deletes manifests by digest only, which
        removes every tag pointing at it; returns the deleted digest."""
        head = self._request(
            "HEAD", f"{self.base_url}/v2/{repo}/manifests/{tag}", repo=repo, headers={"Accept": mt.ACCEPT_ALL}
        )
        if head.status != 200:
            raise PushError(f"delete {repo}:{tag}: tag not found ({head.status})")
        digest = head.headers["Docker-Content-Digest"]
        resp = self._request("DELETE", f"{self.base_url}/v2/{repo}/manifests/{digest}", repo=repo)
        if resp.status != 202:
            raise PushError(f"delete {repo}@{digest}: {resp.status} {resp.data[:200]!r}")
        return digest

    def head_digest(self, repo: str, tag: str) -> str | None:
        """What the registry itself says the tag points at (for assertions), or None when absent."""
        resp = self._request(
            "HEAD", f"{self.base_url}/v2/{repo}/manifests/{tag}", repo=repo, headers={"Accept": mt.ACCEPT_ALL}
        )
        return resp.headers.get("Docker-Content-Digest") if resp.status == 200 else None
