"""The registry fixture is a real distribution process, and the pusher writes what it claims."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import urllib3

from ptc_sync import mediatypes as mt
from ptc_sync.models import sha256_digest
from testbed.images import ImagePusher, PushError
from testbed.registry import RegistryServer
from tests.conftest import REGISTRY_USER

http = urllib3.PoolManager()


def get_manifest(
    base: str, repo: str, ref: str, accept: str = mt.ACCEPT_ALL, auth: dict[str, str] | None = None
):
    return http.request(
        "GET", f"{base}/v2/{repo}/manifests/{ref}", headers={"Accept": accept, **(auth or {})}
    )


def test_registry_is_a_real_process_that_answers_v2(registry: RegistryServer) -> None:
    assert registry.pid is not None
    out = subprocess.run(
        ["ps", "-o", "args=", "-p", str(registry.pid)], capture_output=True, text=True, check=False
    )
    assert "docker-registry serve" in out.stdout
    assert http.request("GET", f"{registry.url}/v2/").status == 200


def test_stop_ends_the_process(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path).start()
    pid = server.pid
    assert pid is not None
    server.stop()
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    assert out.stdout.strip() in {"", "Z"}  # gone (or a zombie already reaped by wait)
    assert server.proc is None


@pytest.mark.parametrize(("flavor", "media_type"), [("docker", mt.DOCKER_MANIFEST), ("oci", mt.OCI_MANIFEST)])
def test_single_platform_push_round_trips_exact_bytes(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, flavor: str, media_type: str
) -> None:
    image = pusher.push_image(unique_repo, "v1", flavor=flavor)  # type: ignore[arg-type]
    resp = get_manifest(registry.url, unique_repo, "v1")
    assert resp.status == 200
    assert resp.data == image.manifest
    assert resp.headers["Content-Type"] == media_type
    assert resp.headers["Docker-Content-Digest"] == image.digest == sha256_digest(resp.data)
    for layer in image.layers:
        blob = http.request("GET", f"{registry.url}/v2/{unique_repo}/blobs/{layer.digest}")
        assert sha256_digest(blob.data) == layer.digest


@pytest.mark.parametrize(
    ("flavor", "media_type"), [("docker", mt.DOCKER_MANIFEST_LIST), ("oci", mt.OCI_INDEX)]
)
def test_multi_arch_push_creates_index_with_one_manifest_per_platform(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str, flavor: str, media_type: str
) -> None:
    image = pusher.push_index(unique_repo, "multi", flavor=flavor, platforms=("linux/amd64", "linux/arm64"))  # type: ignore[arg-type]
    resp = get_manifest(registry.url, unique_repo, "multi")
    assert resp.headers["Docker-Content-Digest"] == image.digest
    doc = json.loads(resp.data)
    assert doc["mediaType"] == media_type
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "arm64"]
    assert image.platforms == ("linux/amd64", "linux/arm64")
    layer_sets = [set(c.layers) for c in image.children]
    assert not layer_sets[0] & layer_sets[1], "each platform has layers of its own"
    for child in image.children:
        assert get_manifest(registry.url, unique_repo, child.digest).data == child.manifest


def test_docker_list_without_index_accept_is_rewritten_to_a_child(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str
) -> None:
    """The registry fact the digest check depends on: omit the list types and you get another digest."""
    image = pusher.push_index(unique_repo, "multi", flavor="docker")
    resp = get_manifest(registry.url, unique_repo, "multi", accept=mt.DOCKER_MANIFEST)
    assert resp.headers["Docker-Content-Digest"] != image.digest
    assert resp.headers["Docker-Content-Digest"] in {c.digest for c in image.children}


def test_retag_is_an_upstream_release(
    registry: RegistryServer, pusher: ImagePusher, unique_repo: str
) -> None:
    first = pusher.push_image(unique_repo, "latest")
    second = pusher.push_image(unique_repo, "latest")
    assert first.digest != second.digest
    assert pusher.head_digest(unique_repo, "latest") == second.digest


def test_delete_tag(pusher: ImagePusher, unique_repo: str) -> None:
    pusher.push_image(unique_repo, "gone")
    pusher.delete_tag(unique_repo, "gone")
    assert pusher.head_digest(unique_repo, "gone") is None
    with pytest.raises(PushError, match="tag not found"):
        pusher.delete_tag(unique_repo, "gone")


def test_htpasswd_registry_refuses_anonymous_and_accepts_basic(
    auth_registry: RegistryServer, auth_pusher: ImagePusher, unique_repo: str
) -> None:
    assert http.request("GET", f"{auth_registry.url}/v2/").status == 401
    image = auth_pusher.push_image(unique_repo, "v1")
    assert get_manifest(auth_registry.url, unique_repo, "v1").status == 401
    basic = urllib3.make_headers(basic_auth=":".join(REGISTRY_USER))
    assert get_manifest(auth_registry.url, unique_repo, "v1", auth=basic).data == image.manifest
    with pytest.raises(PushError, match="no credentials"):
        ImagePusher(auth_registry.url).push_image(unique_repo, "v2")
