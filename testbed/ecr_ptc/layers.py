"""Layers and warmth: GetDownloadUrlForLayer and BatchCheckLayerAvailability (docs/ecr-facts.md "Which
calls reach upstream" (GetDownloadUrlForLayer) and "Layers on a first pull"; reported:
aws/containers-roadmap #939, #2304).

GetDownloadUrlForLayer answers for a blob referenced by an image of the repository; unreferenced but
uploaded: LayerInaccessibleException; unknown: LayersNotFoundException. A PTC blob ECR has not cached
yet is not ECR's: GetDownloadUrlForLayer asks upstream for it (failure:
UnableToGetUpstreamLayerException), answers upstream's own blob URL
(``https://<upstream host>/v2/<path>/blobs/<digest>``) and caches the blob in the background, done
``layer_cache_delay`` later on ``clock`` (default 0: cached by the next call, but the first answer is
still upstream's URL). Once cached (``imported_layers``) the answer is an S3-shaped URL (not
fetchable). BatchCheckLayerAvailability (moto's replaced so it sees the same layers): AVAILABLE only
for a blob ECR holds itself, pushed or cached; a blob an image references but ECR has not cached
answers ``uncached_layer_answer`` (unknown: UNAVAILABLE by default, or the failure MissingLayerDigest);
anything else MissingLayerDigest; a malformed digest InvalidLayerDigest; 1 to 100 digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.models import Repository, ecr_backends

from testbed.ecr_ptc.api import LAYER_DIGEST_RE, _Call, _error
from testbed.ecr_ptc.rules import RulesMixin
from testbed.ecr_ptc.store import StoreMixin, _doc
from testbed.ecr_ptc.upstream import _UpstreamClient, _UpstreamError

LAYER_AVAILABLE: Final = "AVAILABLE"
LAYER_UNAVAILABLE: Final = "UNAVAILABLE"
# What BatchCheckLayerAvailability answers for a layer an image of the repository references but ECR has
# not cached yet (unknown: both are values of the model; the code must treat either as "not warm").
UNCACHED_LAYER_ANSWERS: Final = (LAYER_UNAVAILABLE, "MissingLayerDigest")
DEFAULT_LAYER_MEDIA_TYPE: Final = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MAX_LAYER_DIGESTS: Final = 100  # BatchedOperationLayerDigestList: 1 to 100


@dataclass(frozen=True, slots=True)
class ImportedLayer:
    """One blob imported from upstream by GetDownloadUrlForLayer (a warmed layer)."""

    repository: str
    digest: str
    size: int
    upstream: str
    at: datetime


@dataclass(frozen=True)
class _CachingLayer:
    """A blob ECR is caching in the background after a GetDownloadUrlForLayer sent the client upstream."""

    account: str
    region: str
    repository: str
    digest: str
    size: int
    upstream: str  # host/repository
    ready_at: datetime


class LayersMixin(RulesMixin, StoreMixin):
    """Which blobs ECR holds itself, and what it answers for the ones it does not yet."""

    layer_cache_delay: timedelta
    uncached_layer_answer: str
    imported_layers: list[ImportedLayer]
    _caching_layers: dict[tuple[str, str, str, str], _CachingLayer]

    @property
    def caching_layers(self) -> list[tuple[str, str]]:
        """(repository, digest) of every blob ECR is still caching in the background."""
        with self._lock:
            self._advance_layers()
            return [(c.repository, c.digest) for c in self._caching_layers.values()]

    def complete_layer_caching(self) -> int:
        """Finish caching every blob under way now; returns how many there were."""
        with self._lock:
            caching = list(self._caching_layers.values())
            self._caching_layers.clear()
            for layer in caching:
                self._cache_layer(layer)
            return len(caching)

    def _advance_layers(self) -> None:
        """Blobs whose background caching is due are now ECR's own (BatchCheckLayerAvailability:
        AVAILABLE; GetDownloadUrlForLayer: an S3 URL)."""
        now = self.clock.now()
        for key, layer in list(self._caching_layers.items()):
            if now >= layer.ready_at:
                del self._caching_layers[key]
                self._cache_layer(layer)

    def _cache_layer(self, layer: _CachingLayer) -> None:
        repository = ecr_backends[layer.account][layer.region].repositories.get(layer.repository)
        if repository is None:
            return  # the repository went while the blob was being cached
        repository.layers[layer.digest] = layer.size
        self.imported_layers.append(
            ImportedLayer(
                layer.repository,
                layer.digest,
                layer.size,
                layer.upstream,
                layer.ready_at,
            )
        )

    def _api_get_download_url_for_layer(self, call: _Call) -> ActionResult:
        name = call.param("repositoryName")
        digest = call.param("layerDigest")
        repository = call.repository(name)
        if not isinstance(digest, str) or not LAYER_DIGEST_RE.fullmatch(digest):
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'layerDigest': '{digest}'",
            )
        if digest not in self._referenced_blobs(repository):
            if digest in repository.layers:
                raise _error(
                    "LayerInaccessibleException",
                    f"The layer with digest '{digest}' is not associated with an image in '{name}'",
                )
            raise _error(
                "LayersNotFoundException",
                f"The layer with digest '{digest}' was not found in the repository '{name}'",
            )
        if digest not in repository.layers:
            url = self._upstream_layer_url(call, name, digest)
            return ActionResult({"downloadUrl": url, "layerDigest": digest})
        url = (
            f"https://prod-{call.region}-starport-layer-bucket.s3.{call.region}.amazonaws.com/"
            f"{call.account}/{name}/{digest}?X-Amz-Expires=3600&emulated=ptc-sync-testbed"
        )
        return ActionResult({"downloadUrl": url, "layerDigest": digest})

    def _upstream_layer_url(self, call: _Call, name: str, digest: str) -> str:
        """A blob ECR has not cached: the client is sent to upstream's own blob URL, and ECR caches the
        blob in the background, done ``layer_cache_delay`` later (reported: #939, #2304). Upstream is
        asked for the blob now (an unreachable upstream or a missing blob fails the call)."""
        match = self._match_rule(call.account, call.region, name)
        if match is None:
            raise _error(
                "LayersNotFoundException",
                f"The layer with digest '{digest}' was not found in the repository '{name}'",
            )
        rule, upstream = match
        key = (call.account, call.region, name, digest)
        if key not in self._caching_layers:
            try:
                credentials = self._credentials(rule)
                data = _UpstreamClient(self, rule.upstream_url, credentials).blob(upstream, digest)
            except (_UpstreamError, ServiceException) as exc:
                raise _error(
                    "UnableToGetUpstreamLayerException",
                    f"Unable to get layer {digest} from {rule.upstream_url}/{upstream}: {exc}",
                ) from exc
            self._caching_layers[key] = _CachingLayer(
                call.account,
                call.region,
                name,
                digest,
                len(data),
                f"{rule.upstream_url}/{upstream}",
                self.clock.now() + self.layer_cache_delay,
            )
        return f"https://{rule.upstream_url}/v2/{upstream}/blobs/{digest}"

    def _api_batch_check_layer_availability(self, call: _Call) -> ActionResult:
        """AVAILABLE only for a blob ECR stores itself (pushed, or cached from upstream); a blob an
        image references but ECR has not cached answers ``uncached_layer_answer``; any other digest is
        the failure MissingLayerDigest. Codes: botocore's LayerAvailability and LayerFailureCode."""
        name = call.param("repositoryName")
        repository = call.repository(name)
        digests = call.param("layerDigests")
        if not isinstance(digests, list) or not 1 <= len(digests) <= MAX_LAYER_DIGESTS:
            raise _error(
                "InvalidParameterException",
                f"Invalid parameter at 'layerDigests': between 1 and {MAX_LAYER_DIGESTS} digests",
            )
        described = self._referenced_descriptors(repository)
        layers: list[dict[str, Any]] = []
        failures: list[dict[str, str]] = []
        for digest in digests:
            if not isinstance(digest, str) or not LAYER_DIGEST_RE.fullmatch(digest):
                failures.append(
                    {
                        "layerDigest": str(digest),
                        "failureCode": "InvalidLayerDigest",
                        "failureReason": f"Invalid layer digest '{digest}'",
                    }
                )
                continue
            size, media_type = described.get(digest, (None, DEFAULT_LAYER_MEDIA_TYPE))
            if digest in repository.layers:
                availability = LAYER_AVAILABLE
                size = repository.layers[digest]
            elif digest in described and self.uncached_layer_answer == LAYER_UNAVAILABLE:
                availability = LAYER_UNAVAILABLE
            else:
                failures.append(
                    {
                        "layerDigest": digest,
                        "failureCode": "MissingLayerDigest",
                        "failureReason": f"Layer digest '{digest}' could not be found",
                    }
                )
                continue
            layer: dict[str, Any] = {
                "layerDigest": digest,
                "layerAvailability": availability,
                "mediaType": media_type,
            }
            if size is not None:
                layer["layerSize"] = size
            layers.append(layer)
        return ActionResult({"layers": layers, "failures": failures})

    def _referenced_descriptors(self, repository: Repository) -> dict[str, tuple[int | None, str]]:
        """digest -> (size, media type) of every blob an image of ``repository`` references."""
        out: dict[str, tuple[int | None, str]] = {}
        for image in repository.images:
            doc = _doc(image)
            for desc in [doc.get("config"), *(doc.get("layers") or [])]:
                if isinstance(desc, dict) and desc.get("digest") and not desc.get("urls"):
                    size = desc.get("size")
                    out[str(desc["digest"])] = (
                        int(size) if isinstance(size, int) else None,
                        str(desc.get("mediaType") or DEFAULT_LAYER_MEDIA_TYPE),
                    )
        return out
