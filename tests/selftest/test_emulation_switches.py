"""The two "unknown" behaviours the selftest settles in a real account, switchable both ways in the
emulation (docs/ecr-behaviour.md, "Still unknown" in the facts page of 2026-12-01), and the loopback
registry endpoint's own answers (testbed/ecr_endpoint.py)."""

from __future__ import annotations

import json

import pytest
import urllib3

from ptc_sync import mediatypes as mt
from testbed.ecr_endpoint import EcrRegistryEndpoint
from testbed.sandbox import Sandbox


def _put(box: Sandbox, repository: str, tag: str, manifest: str) -> None:
    box.client("ecr").put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)


def test_put_image_in_a_cache_repository_works_by_default_and_can_be_refused(
    box: Sandbox, unique_repo: str
) -> None:
    """Unknown: PutImage is not documented as restricted in a pull-through cache namespace (ECR's own
    proxy writes with it). Switched off, a backup cannot be written there; elsewhere it still can."""
    box.pusher.push_image(unique_repo, "1.0")
    name = f"ecr-public/{unique_repo}"
    box.cache(name, "1.0")
    (image,) = box.client("ecr").batch_get_image(repositoryName=name, imageIds=[{"imageTag": "1.0"}])[
        "images"
    ]
    _put(box, name, "backup-on", image["imageManifest"])
    assert box.tag_digest(name, "backup-on") == image["imageId"]["imageDigest"]

    box.emulator.put_image_in_cache = False
    ecr = box.client("ecr")
    with pytest.raises(ecr.exceptions.InvalidParameterException, match="pull through cache"):
        _put(box, name, "backup-off", image["imageManifest"])
    assert box.tag_digest(name, "backup-off") is None
    ecr.create_repository(repositoryName="pushed/app")  # no rule covers it: a plain repository
    config = {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": 2,
        "digest": "sha256:" + "0" * 64,
    }
    plain = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST, "config": config, "layers": []})
    box.emulator.strict_put_image_layers = False
    _put(box, "pushed/app", "1.0", plain)
    assert box.tag_digest("pushed/app", "1.0") is not None


def test_a_tag_removed_by_batch_delete_image_is_imported_again_unless_switched_off(
    box: Sandbox, unique_repo: str
) -> None:
    """Unknown: BatchDeleteImage of a cached tag then BatchGetImage by tag re-imports upstream's image
    (documented only for a tag absent from the cache, no public report of the API-only path)."""
    box.pusher.push_image(unique_repo, "1.0")
    box.pusher.push_image(unique_repo, "2.0")
    name = f"ecr-public/{unique_repo}"
    ecr = box.client("ecr")
    first = box.cache(name, "1.0")
    ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "1.0"}])
    assert box.cache(name, "1.0") == first, "on (the default): imported again"

    box.emulator.reimport_after_delete = False
    ecr.batch_delete_image(repositoryName=name, imageIds=[{"imageTag": "1.0"}])
    resp = ecr.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "1.0"}])
    assert resp["images"] == []
    assert resp["failures"][0]["failureCode"] == "ImageNotFound", "an ImageFailureCode value"
    assert box.tag_digest(name, "1.0") is None
    assert box.cache(name, "2.0"), "a tag never removed still imports on its first pull"


def test_the_endpoint_challenges_a_client_without_the_credential(endpoint: EcrRegistryEndpoint) -> None:
    http = urllib3.PoolManager()
    resp = http.request("GET", f"{endpoint.url}/v2/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith('Basic realm="https://')
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert json.loads(resp.data)["errors"][0]["code"] == "UNAUTHORIZED"


def test_the_endpoint_answers_like_a_registry(
    box: Sandbox, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    pushed = box.pusher.push_index(unique_repo, "1.0")
    token = box.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    auth = {"Authorization": f"Basic {token}"}
    http = urllib3.PoolManager()
    name = f"ecr-public/{unique_repo}"

    assert http.request("GET", f"{endpoint.url}/v2/", headers=auth).status == 200
    head = http.request(
        "HEAD", f"{endpoint.url}/v2/{name}/manifests/1.0", headers={**auth, "Accept": mt.DOCKER_MANIFEST_LIST}
    )
    assert head.status == 200
    assert head.headers["Docker-Content-Digest"] == pushed.digest
    assert head.headers["Content-Type"] == mt.DOCKER_MANIFEST_LIST
    only_single = http.request(
        "GET", f"{endpoint.url}/v2/{name}/manifests/1.0", headers={**auth, "Accept": mt.DOCKER_MANIFEST}
    )
    assert only_single.status == 404, "an index is not served to a client that does not accept one"
    child = pushed.children[0]
    by_digest = http.request(
        "GET",
        f"{endpoint.url}/v2/{name}/manifests/{child.digest}",
        headers={**auth, "Accept": child.media_type},
    )
    assert by_digest.status == 200
    assert by_digest.data == child.manifest
    blob = http.request(
        "GET", f"{endpoint.url}/v2/{name}/blobs/{child.layers[0].digest}", headers=auth, redirect=False
    )
    assert blob.status == 307
    assert blob.headers["Location"].startswith("https://public.ecr.aws/v2/")
    missing = http.request("GET", f"{endpoint.url}/v2/{name}/manifests/nope", headers=auth)
    assert (missing.status, json.loads(missing.data)["errors"][0]["code"]) == (404, "MANIFEST_UNKNOWN")
    nowhere = http.request("GET", f"{endpoint.url}/v2/no-rule/app/manifests/1.0", headers=auth)
    assert (nowhere.status, json.loads(nowhere.data)["errors"][0]["code"]) == (404, "NAME_UNKNOWN")
