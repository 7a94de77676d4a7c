"""Two ways to make ECR import, behind one port (issue 15 item 3).

ECR's guide documents the cache filling on a registry client's pull (the registry HTTP API of the
account's endpoint, with a GetAuthorizationToken credential); that BatchGetImage and
GetDownloadUrlForLayer do the same is only implied (docs/ecr-behaviour.md). The testbed serves the
emulated cache's registry endpoint on loopback with the same import semantics, so both adapters are
tested here, and shown to give the same manifests, the same imports and the same blob answers.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import pytest

from ptc_sync.ecr import EcrAdapter, EcrError
from ptc_sync.importer import (
    ApiImporter,
    CacheImporter,
    EndpointImporter,
    check_endpoint,
    choose_import_path,
)
from ptc_sync.models import CachedTag, sha256_digest
from ptc_sync.selftest_store import Behaviour, Check, SelftestResult, Status
from testbed.ecr_endpoint import EcrRegistryEndpoint
from testbed.sandbox import ACCOUNT, PUBLIC_HOST, REGION, Sandbox
from tests.selftest.conftest import BuildApp


def importers(endpoint: EcrRegistryEndpoint) -> tuple[ApiImporter, EndpointImporter]:
    client = boto3.client("ecr", region_name=REGION)
    return ApiImporter(EcrAdapter(client)), EndpointImporter(
        client, account_id=ACCOUNT, region=REGION, endpoint_override=endpoint.url
    )


@pytest.mark.parametrize("path", ["api", "endpoint"])
def test_a_pull_by_tag_of_an_absent_tag_imports_it(
    box: Sandbox, endpoint: EcrRegistryEndpoint, unique_repo: str, path: str
) -> None:
    pushed = box.pusher.push_index(unique_repo, "1.0")
    name = f"ecr-public/{unique_repo}"
    importer: CacheImporter = dict(zip(("api", "endpoint"), importers(endpoint), strict=True))[path]
    assert box.emulator.import_count(name) == 0

    manifest = importer.import_tag(name, "1.0")

    assert importer.path == path
    assert manifest.digest == pushed.digest == sha256_digest(manifest.body)
    assert manifest.body == pushed.manifest, "the exact bytes upstream serves"
    assert box.tag_digest(name, "1.0") == pushed.digest, "ECR imported the tag"
    assert box.emulator.import_count(name, "1.0") == 1
    assert endpoint.requests[("GET", "manifest")] == (1 if path == "endpoint" else 0)


def test_both_paths_give_the_same_manifests_imports_and_blob_answers(
    box: Sandbox, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    """One upstream image under two tags, each imported by one path: the same bytes, media type and
    digest, the same import (children included), and for each blob the same answer whichever path
    asks (upstream's URL while ECR caches it, ECR's own storage once it holds it)."""
    pushed = box.pusher.push_index(unique_repo, "by-api")
    box.pusher.put_manifest(unique_repo, "by-endpoint", pushed.manifest, pushed.media_type)
    api, end = importers(endpoint)
    name = f"ecr-public/{unique_repo}"

    by_api = api.import_tag(name, "by-api")
    by_endpoint = end.import_tag(name, "by-endpoint")

    assert by_api == by_endpoint
    assert by_api.digest == pushed.digest
    records = {r.tag: r for r in box.emulator.imports if r.repository == name}
    assert records["by-api"].digest == records["by-endpoint"].digest == pushed.digest
    assert records["by-api"].children == records["by-endpoint"].children
    assert end.import_tag(name, "by-api") == by_api, "cached now: served, not imported again"
    assert box.emulator.import_count(name) == 2

    child = pushed.children[0]
    digests = [d.digest for d in (child.config, *child.layers) if d is not None]
    first = [end.fetch_blob(name, digests[0]), *(api.fetch_blob(name, d) for d in digests[1:])]
    assert all(urlsplit(u).hostname == PUBLIC_HOST for u in first), "not cached yet: upstream's host"
    again_api = [api.fetch_blob(name, d) for d in digests]
    again_endpoint = [end.fetch_blob(name, d) for d in digests]
    assert again_api == again_endpoint, "ECR's own storage, whichever path asks"
    assert all((urlsplit(u).hostname or "").endswith(".amazonaws.com") for u in again_api)
    assert endpoint.requests[("GET", "blob")] == 1 + len(digests)


def test_the_same_failures_reach_the_refresh_as_the_same_codes(
    box: Sandbox, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "1.0")
    api, end = importers(endpoint)
    name = f"ecr-public/{unique_repo}"
    for importer in (api, end):
        with pytest.raises(EcrError) as missing:
            importer.import_tag(name, "no-such-tag")
        assert missing.value.code == "ImageNotFound", importer.path
    box.emulator.set_upstream_unreachable(PUBLIC_HOST)
    for importer in (api, end):
        with pytest.raises(EcrError) as down:
            importer.import_tag(name, "1.0")
        assert down.value.code == "UpstreamUnavailable", importer.path  # not definite: the refresh polls
    assert box.emulator.import_count(name) == 0


def test_a_background_import_is_waited_for_through_the_endpoint(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    """The seed article's large image: the first pull fails while ECR goes on importing. Through the
    endpoint the failure is a 503, which the pre-warm treats like BatchGetImage's UpstreamUnavailable."""
    pushed = box.pusher.push_image(unique_repo, "big")
    name = f"ecr-public/{unique_repo}"
    box.emulator.import_in_background(name, "big", ready_after_calls=2)
    refresher = build_app(import_path="endpoint").refresher

    result = refresher.prewarm(name, "big")

    assert result.ok, result.reason
    assert result.new_digest == pushed.digest
    assert endpoint.requests[("GET", "manifest")] == 1


def test_the_endpoint_refuses_a_pull_without_the_authorization_token(
    box: Sandbox, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "1.0")
    client = boto3.client("ecr", region_name=REGION)
    importer = EndpointImporter(client, endpoint_override=endpoint.url)
    importer._token = (  # a stale or forged credential
        "Basic " + base64.b64encode(b"AWS:not-the-password").decode(),
        datetime(2999, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(EcrError) as refused:
        importer.import_tag(f"ecr-public/{unique_repo}", "1.0")
    assert refused.value.code == "AccessDeniedException"  # ends an import wait at once
    assert endpoint.refused == 1
    assert box.emulator.import_count(f"ecr-public/{unique_repo}") == 0


def test_refresh_through_the_endpoint_replaces_a_stale_tag(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    box.pusher.push_image(unique_repo, "1.0")
    name = f"ecr-public/{unique_repo}"
    old = box.cache(name, "1.0")
    newer = box.pusher.push_image(unique_repo, "1.0")
    app = build_app(import_path="endpoint")
    cached = CachedTag(repository=name, tag="1.0", digest=old, media_type="")

    result = app.refresher.refresh(cached, newer.digest)

    assert result.ok, result.reason
    assert box.tag_digest(name, "1.0") == newer.digest
    assert endpoint.requests[("GET", "manifest")] == 1, "the import went through the endpoint"
    assert endpoint.requests[("GET", "blob")] >= 1


# -- which path, and the URL policy -----------------------------------------------------------------


def _result(api: Status, endpoint: Status) -> SelftestResult:
    return SelftestResult(
        at=datetime(2026, 12, 1, tzinfo=UTC),
        account_id=ACCOUNT,
        region=REGION,
        rule="ecr-public",
        repository="ecr-public/docker/library/busybox",
        tags=(),
        checks=(Check(Behaviour.IMPORT_API, api), Check(Behaviour.IMPORT_ENDPOINT, endpoint)),
    )


@pytest.mark.parametrize(
    ("setting", "api", "endpoint", "chosen"),
    [
        ("auto", None, None, "api"),  # no selftest yet: the API
        ("auto", Status.VERIFIED, Status.VERIFIED, "api"),
        ("auto", Status.FAILED, Status.VERIFIED, "endpoint"),
        ("auto", Status.FAILED, Status.FAILED, "api"),
        ("api", Status.FAILED, Status.VERIFIED, "api"),  # an explicit setting wins
        ("endpoint", Status.VERIFIED, Status.VERIFIED, "endpoint"),
    ],
)
def test_the_setting_and_the_latest_selftest_choose_the_path(
    setting: str, api: Status | None, endpoint: Status | None, chosen: str
) -> None:
    result = _result(api, endpoint) if api and endpoint else None
    assert choose_import_path(setting, lambda: result.preferred_import_path() if result else None) == chosen


def test_an_unreadable_selftest_result_leaves_the_default_path() -> None:
    def broken() -> None:
        raise RuntimeError("table gone")

    assert choose_import_path("auto", broken) == "api"


def test_auto_uses_the_endpoint_when_the_stored_selftest_says_only_it_imports(
    box: Sandbox, build_app: BuildApp, endpoint: EcrRegistryEndpoint, unique_repo: str
) -> None:
    pushed = box.pusher.push_image(unique_repo, "1.0")
    app = build_app()
    assert app.selftest is not None
    app.selftest.save(_result(Status.FAILED, Status.VERIFIED))

    result = build_app().refresher.prewarm(f"ecr-public/{unique_repo}", "1.0")

    assert result.ok, result.reason
    assert result.new_digest == pushed.digest
    assert endpoint.requests[("GET", "manifest")] == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:5000",  # not loopback
        "https://example.com",
        "http://127.0.0.1:5000/v2/",  # not a bare origin
        "http://user:pw@127.0.0.1:5000",
        "ftp://127.0.0.1:21",
    ],
)
def test_an_override_must_be_a_bare_loopback_url(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EndpointImporter(boto3.client("ecr", region_name=REGION), endpoint_override=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://123456789012.dkr.ecr.us-east-1.amazonaws.com",  # plain http
        "https://127.0.0.1:5000",  # loopback without the explicit override
        "https://evil.example.com",
        "https://123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
    ],
)
def test_without_the_override_only_https_to_an_ecr_host(url: str) -> None:
    with pytest.raises(ValueError, match="must be https"):
        check_endpoint(url, override=False)
    assert (
        check_endpoint("https://123456789012.dkr.ecr.us-east-1.amazonaws.com", override=False)
        == "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"
    )
