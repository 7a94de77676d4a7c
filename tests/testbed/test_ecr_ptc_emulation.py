"""The pull-through cache emulation checked against docs/ecr-behaviour.md, fact by fact.

Upstreams are real distribution registries (tests/conftest.py); the emulator runs inside moto. A test
of a fact that came with a source names the source (AWS doc page, botocore, containers-roadmap issue).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.ecr.responses import ECRResponse

from ptc_sync import mediatypes as mt
from ptc_sync.models import sha256_digest
from testbed import ecr_ptc
from testbed.ecr_ptc import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    SYNC_FAILED,
    SYNC_SUCCESS,
    FakeClock,
    PullThroughCacheEmulator,
)
from testbed.images import ImagePusher, random_layer
from testbed.registry import RegistryServer
from tests.conftest import REGISTRY_USER
from tests.testbed.conftest import UPSTREAM_ECR_HOST

pytestmark = pytest.mark.registry

ALL_TYPES = [mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST]
ROLE_ARN = "arn:aws:iam::123456789012:role/ptc-upstream"
ANY_METADATA: Any = mock.ANY


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def public_rule(ecr: Any, prefix: str = "ecr-public") -> None:
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix, upstreamRegistryUrl="public.ecr.aws", upstreamRegistry="ecr-public"
    )


def make_secret(secretsmanager: Any, name: str, *credentials: str) -> str:
    user, token = credentials or ("user", "token")
    value = json.dumps({"username": user, "accessToken": token})
    return str(secretsmanager.create_secret(Name=f"ecr-pullthroughcache/{name}", SecretString=value)["ARN"])


def pull(ecr: Any, repo: str, tag: str, accept: list[str] | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"repositoryName": repo, "imageIds": [{"imageTag": tag}]}
    kwargs["acceptedMediaTypes"] = accept or ALL_TYPES
    return dict(ecr.batch_get_image(**kwargs))


def pulled_digest(response: dict[str, Any]) -> str:
    assert response["failures"] == [], response["failures"]
    return str(response["images"][0]["imageId"]["imageDigest"])


def describe(ecr: Any, repo: str, **kwargs: Any) -> list[dict[str, Any]]:
    return list(ecr.describe_images(repositoryName=repo, **kwargs)["imageDetails"])


def upload_blob(ecr: Any, repo: str, data: bytes) -> str:
    upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=len(data) - 1, layerPartBlob=data
    )
    done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256_digest(data)])
    return str(done["layerDigest"])


# -- rule APIs --------------------------------------------------------------------------------------------


def test_create_and_describe_rule_return_the_model_fields(
    ecr: Any, secretsmanager: Any, clock: FakeClock
) -> None:
    arn = make_secret(secretsmanager, "hub")
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="docker-hub",
        upstreamRegistryUrl="registry-1.docker.io",
        upstreamRegistry="docker-hub",
        credentialArn=arn,
    )
    assert created["ecrRepositoryPrefix"] == "docker-hub"
    assert created["upstreamRegistry"] == "docker-hub"
    assert created["credentialArn"] == arn
    assert created["registryId"] == "123456789012"
    assert created["createdAt"] == clock.now()
    [rule] = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert rule["upstreamRegistryUrl"] == "registry-1.docker.io"
    assert rule["createdAt"] == rule["updatedAt"] == clock.now()
    assert "upstreamRepositoryPrefix" not in rule


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("a", False),
        ("x" * 31, False),
        ("Upper", False),
        ("-lead", False),
        ("ROOT", True),
        ("a/b-c_d.e", True),
    ],
)
def test_prefix_must_be_2_to_30_chars_of_the_pattern_or_root(
    ptc: PullThroughCacheEmulator, prefix: str, ok: bool
) -> None:
    # the server's check, not botocore's client-side length check
    ecr = boto3.client("ecr", region_name="us-east-1", config=Config(parameter_validation=False))
    if ok:
        public_rule(ecr, prefix)
        prefixes = [
            r["ecrRepositoryPrefix"] for r in ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
        ]
        assert prefixes == [prefix]
    else:
        with pytest.raises(ClientError) as exc:
            public_rule(ecr, prefix)
        assert code_of(exc) == "ValidationException"


def test_duplicate_prefix_is_refused(ecr: Any) -> None:
    public_rule(ecr, "dup")
    with pytest.raises(ClientError) as exc:
        public_rule(ecr, "dup/")  # the trailing slash is implied: same rule
    assert code_of(exc) == "PullThroughCacheRuleAlreadyExistsException"


@pytest.mark.parametrize(
    "call",
    [
        lambda ecr: ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["nope"]),
        lambda ecr: ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="nope"),
        lambda ecr: ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="nope", customRoleArn=ROLE_ARN),
        lambda ecr: ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="nope"),
    ],
    ids=["describe", "delete", "update", "validate"],
)
def test_missing_rule_is_not_found(ecr: Any, call: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call(ecr)
    assert code_of(exc) == "PullThroughCacheRuleNotFoundException"


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("docker-hub", "registry-1.docker.io"),
        ("github-container-registry", "ghcr.io"),
        ("azure-container-registry", "myregistry.azurecr.io"),
        ("gitlab-container-registry", "registry.gitlab.com"),
        ("chainguard", "cgr.dev"),
    ],
)
def test_credential_arn_is_required_for_authenticated_upstreams(ecr: Any, kind: str, url: str) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="p1", upstreamRegistryUrl=url, upstreamRegistry=kind
        )
    assert code_of(exc) == "InvalidParameterException"


def test_credential_arn_must_match_the_pattern_and_name_an_existing_secret(
    ecr: Any, secretsmanager: Any
) -> None:
    bad = "arn:aws:secretsmanager:us-east-1:123456789012:secret:other-prefix/hub-AbCdEf"
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=bad
        )
    assert code_of(exc) == "ValidationException"
    absent = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/absent-AbCdEf"
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=absent
        )
    assert code_of(exc) == "SecretNotFoundException"
    elsewhere = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name="ecr-pullthroughcache/hub", SecretString="{}"
    )["ARN"]
    with pytest.raises(ClientError) as exc:  # same account and region as the rule
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io", credentialArn=elsewhere
        )
    assert code_of(exc) == "UnableToAccessSecretException"


def test_custom_role_is_for_ecr_upstreams_only(ecr: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="pub", upstreamRegistryUrl="quay.io", customRoleArn=ROLE_ARN
        )
    assert code_of(exc) == "InvalidParameterException"
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="up", upstreamRegistryUrl=UPSTREAM_ECR_HOST, customRoleArn=ROLE_ARN
    )
    assert created["upstreamRegistry"] == "ecr"
    assert created["customRoleArn"] == ROLE_ARN
    assert created["upstreamRepositoryPrefix"] == "ROOT"  # the documented default


def test_ecr_upstream_needs_custom_role_only_cross_account(ecr: Any) -> None:
    """A role is needed only to cache from another account's registry (ECR user guide,
    pull-through-cache-private: "IAM policies required for cross-account ECR to ECR pull through
    cache"); the role must be in the rule's own account (botocore, CreatePullThroughCacheRule)."""
    with pytest.raises(ClientError) as exc:  # UPSTREAM_ECR_HOST is account 111122223333
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="up", upstreamRegistryUrl=UPSTREAM_ECR_HOST)
    assert code_of(exc) == "InvalidParameterException"
    assert "another account" in str(exc.value)
    other_account_role = "arn:aws:iam::111122223333:role/ptc-upstream"
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="up", upstreamRegistryUrl=UPSTREAM_ECR_HOST, customRoleArn=other_account_role
        )
    assert code_of(exc) == "InvalidParameterException"
    same_account = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="other-region", upstreamRegistryUrl="123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    )
    assert same_account["upstreamRegistry"] == "ecr"
    assert "customRoleArn" not in same_account


def test_upstream_prefix_with_a_root_cache_prefix_is_refused(ecr: Any) -> None:
    """ECR user guide, pull-through-cache-private-wildcards: the upstream repository prefix can be set
    "only when the Amazon ECR repository prefix has a non-ROOT value"; ROOT/ROOT is a row of its table."""
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ROOT",
            upstreamRegistryUrl=UPSTREAM_ECR_HOST,
            customRoleArn=ROLE_ARN,
            upstreamRepositoryPrefix="team",
        )
    assert code_of(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ROOT", upstreamRegistryUrl="quay.io", upstreamRepositoryPrefix="org"
        )
    assert code_of(exc) == "InvalidParameterException"
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ROOT",
        upstreamRegistryUrl=UPSTREAM_ECR_HOST,
        customRoleArn=ROLE_ARN,
        upstreamRepositoryPrefix="ROOT",
    )
    assert created["upstreamRepositoryPrefix"] == "ROOT"


def test_upstream_registry_enum_and_url_are_checked(ecr: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="x1", upstreamRegistryUrl="quay.io", upstreamRegistry="nope"
        )
    assert code_of(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="x1", upstreamRegistryUrl="registry.example.com"
        )
    assert code_of(exc) == "UnsupportedUpstreamRegistryException"
    with pytest.raises(ClientError) as exc:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="x1", upstreamRegistryUrl="quay.io", upstreamRegistry="k8s"
        )
    assert code_of(exc) == "InvalidParameterException"
    inferred = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="x1", upstreamRegistryUrl="registry.k8s.io"
    )
    assert inferred["upstreamRegistry"] == "k8s"


def test_describe_rules_paginates_with_max_results_1_to_1000(ecr: Any) -> None:
    for i in range(5):
        public_rule(ecr, f"rule-{i}")
    first = ecr.describe_pull_through_cache_rules(maxResults=2)
    assert len(first["pullThroughCacheRules"]) == 2
    assert "nextToken" in first
    pages = ecr.get_paginator("describe_pull_through_cache_rules").paginate(PaginationConfig={"PageSize": 2})
    prefixes = [r["ecrRepositoryPrefix"] for page in pages for r in page["pullThroughCacheRules"]]
    assert prefixes == [f"rule-{i}" for i in range(5)]
    with pytest.raises(ClientError) as exc:
        ecr.describe_pull_through_cache_rules(maxResults=1001)
    assert code_of(exc) == "ValidationException"


def test_update_rule_changes_the_credential_and_updated_at(
    ecr: Any, secretsmanager: Any, clock: FakeClock
) -> None:
    first, second = make_secret(secretsmanager, "one"), make_secret(secretsmanager, "two")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="gh",
        upstreamRegistryUrl="ghcr.io",
        upstreamRegistry="github-container-registry",
        credentialArn=first,
    )
    clock.advance(timedelta(hours=1))
    updated = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="gh", credentialArn=second)
    assert updated["credentialArn"] == second
    assert updated["updatedAt"] == clock.now()
    [rule] = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert rule["updatedAt"] > rule["createdAt"]
    assert rule["credentialArn"] == second


def test_delete_rule_returns_it_and_keeps_cached_repositories(
    ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    pulled_digest(pull(ecr, f"ecr-public/{unique_repo}", "v1"))
    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="ecr-public")
    assert deleted["upstreamRegistryUrl"] == "public.ecr.aws"
    assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
    assert len(describe(ecr, f"ecr-public/{unique_repo}")) == 1


def test_validate_rule_checks_the_secret_and_the_upstream(
    ptc: PullThroughCacheEmulator, ecr: Any, secretsmanager: Any, auth_registry: RegistryServer
) -> None:
    ptc.add_upstream("ghcr.io", auth_registry.url)
    good = make_secret(secretsmanager, "good", *REGISTRY_USER)
    wrong = make_secret(secretsmanager, "wrong", REGISTRY_USER[0], "not-the-password")
    for prefix, arn in (("good", good), ("wrong", wrong)):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl="ghcr.io", credentialArn=arn
        )
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="good")["isValid"] is True
    refused = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="wrong")
    assert refused["isValid"] is False
    assert "UpstreamAccessDenied" in refused["failure"]
    malformed = secretsmanager.create_secret(Name="ecr-pullthroughcache/bad", SecretString="not json")["ARN"]
    ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="wrong", credentialArn=malformed)
    unreadable = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="wrong")
    assert unreadable["isValid"] is False
    assert "username and accessToken" in unreadable["failure"]
    ptc.set_upstream_unreachable("ghcr.io")
    unreachable = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="good")
    assert unreachable["isValid"] is False
    assert "UpstreamUnavailable" in unreachable["failure"]


# -- import on pull ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["docker", "oci"])
def test_pull_by_tag_imports_the_exact_manifest_bytes_with_their_real_digest(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str, flavor: str
) -> None:
    image = pusher.push_image(unique_repo, "v1", flavor=flavor)  # type: ignore[arg-type]
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    with pytest.raises(ClientError):
        ecr.describe_repositories(repositoryNames=[repo])
    response = pull(ecr, repo, "v1")
    assert pulled_digest(response) == image.digest
    assert response["images"][0]["imageManifest"].encode() == image.manifest
    assert response["images"][0]["imageManifestMediaType"] == image.media_type
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryName"] == repo
    [detail] = describe(ecr, repo)
    assert detail["imageDigest"] == image.digest
    assert ptc.import_count(repo, "v1") == 1


@pytest.mark.parametrize(
    ("flavor", "index_type"),
    [("docker", mt.DOCKER_MANIFEST_LIST), ("oci", mt.OCI_INDEX)],
    ids=["docker", "oci"],
)
def test_index_import_caches_every_listed_manifest_untagged(
    ecr: Any, pusher: ImagePusher, unique_repo: str, flavor: str, index_type: str
) -> None:
    index = pusher.push_index(unique_repo, "multi", flavor=flavor)  # type: ignore[arg-type]
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    response = pull(ecr, repo, "multi")
    assert pulled_digest(response) == index.digest
    assert response["images"][0]["imageManifest"].encode() == index.manifest
    details = {d["imageDigest"]: d for d in describe(ecr, repo)}
    assert set(details) == {index.digest, *(c.digest for c in index.children)}
    assert details[index.digest]["imageTags"] == ["multi"]
    assert details[index.digest]["imageManifestMediaType"] == index_type
    for child in index.children:
        assert "imageTags" not in details[child.digest]
        by_digest = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": child.digest}])
        assert by_digest["images"][0]["imageManifest"].encode() == child.manifest
    child_sizes = [sum(layer.size for layer in c.layers) for c in index.children]
    assert details[index.digest]["imageSizeInBytes"] == max(child_sizes)


def test_index_is_only_returned_when_its_media_type_is_accepted(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    index = pusher.push_index(unique_repo, "multi", flavor="oci")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    refused = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])  # default types
    assert refused["images"] == []
    assert refused["failures"][0]["failureCode"] == "ImageNotFound"  # ImageFailureCode has nothing closer
    assert ptc.import_count(repo) == 0
    assert pulled_digest(pull(ecr, repo, "multi", [mt.OCI_INDEX])) == index.digest
    again = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "multi"}], acceptedMediaTypes=[mt.OCI_MANIFEST]
    )
    assert again["failures"][0]["failureCode"] == "ImageNotFound"


def test_docker_hub_official_images_need_library_and_without_it_answer_403(
    ptc: PullThroughCacheEmulator, ecr: Any, secretsmanager: Any, pusher: ImagePusher
) -> None:
    """Docker Hub official images are cached under ``library/`` (ECR user guide, pull-through-cache);
    asked for without it, Docker Hub answers 403 Forbidden, not "not found" (reported)."""
    name = f"ptc-official-{os.urandom(3).hex()}"
    image = pusher.push_image(f"library/{name}", "1.0")
    pusher.push_image(name, "1.0")  # exists on this registry, but Docker Hub has no namespace-less names
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="docker-hub",
        upstreamRegistryUrl="registry-1.docker.io",
        credentialArn=make_secret(secretsmanager, "hub"),
    )
    assert pulled_digest(pull(ecr, f"docker-hub/library/{name}", "1.0")) == image.digest
    failed = pull(ecr, f"docker-hub/{name}", "1.0")
    assert failed["failures"][0]["failureCode"] == "UpstreamAccessDenied"
    assert "403" in failed["failures"][0]["failureReason"]
    assert ecr.describe_repositories()["repositories"][0]["repositoryName"] == f"docker-hub/library/{name}"
    assert ptc.upstream_for(f"docker-hub/library/{name}") == ("registry-1.docker.io", f"library/{name}")


def test_root_prefix_maps_the_whole_name(ecr: Any, pusher: ImagePusher, unique_repo: str) -> None:
    image = pusher.push_image(unique_repo, "v1")
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="ROOT", upstreamRegistryUrl="quay.io")
    assert pulled_digest(pull(ecr, unique_repo, "v1")) == image.digest


def test_ecr_upstream_repository_prefix_is_put_in_front_of_the_path(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher
) -> None:
    suffix = f"app-{os.urandom(3).hex()}"
    image = pusher.push_image(f"team/{suffix}", "v1")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="mirror",
        upstreamRegistryUrl=UPSTREAM_ECR_HOST,
        customRoleArn=ROLE_ARN,
        upstreamRepositoryPrefix="team",
    )
    assert ptc.upstream_for(f"mirror/{suffix}") == (UPSTREAM_ECR_HOST, f"team/{suffix}")
    assert pulled_digest(pull(ecr, f"mirror/{suffix}", "v1")) == image.digest


def test_chainguard_upstream_repository_prefix_replaces_the_cache_prefix(
    ptc: PullThroughCacheEmulator, ecr: Any, secretsmanager: Any, pusher: ImagePusher
) -> None:
    """upstreamRepositoryPrefix is not only for ECR upstreams: a Chainguard rule scopes a cache prefix
    to one organisation (Chainguard's ECR guide); the prefix replaces the cache prefix in the path
    (ECR user guide, pull-through-cache-private-wildcards: ``my-app/image1`` → ``upstream-app/image1``)."""
    ptc.add_upstream("cgr.dev", ptc.upstreams["quay.io"])
    org = f"org-{os.urandom(3).hex()}"
    image = pusher.push_image(f"{org}/python", "latest")
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="cgr",
        upstreamRegistryUrl="cgr.dev",
        upstreamRegistry="chainguard",
        credentialArn=make_secret(secretsmanager, "chainguard"),
        upstreamRepositoryPrefix=org,
    )
    [rule] = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert rule["upstreamRepositoryPrefix"] == org
    assert ptc.upstream_for("cgr/python") == ("cgr.dev", f"{org}/python")
    assert pulled_digest(pull(ecr, "cgr/python", "latest")) == image.digest
    assert [(f.repository, f.outcome) for f in ptc.upstream_fetches] == [(f"{org}/python", "ok")]


def test_longest_prefix_wins(ptc: PullThroughCacheEmulator, ecr: Any) -> None:
    public_rule(ecr, "cache")
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="cache/quay", upstreamRegistryUrl="quay.io")
    assert ptc.upstream_for("cache/quay/org/app") == ("quay.io", "org/app")
    assert ptc.upstream_for("cache/org/app") == ("public.ecr.aws", "org/app")
    assert ptc.upstream_for("elsewhere/app") is None


def test_upstream_credentials_come_from_the_rule_secret(
    ptc: PullThroughCacheEmulator,
    ecr: Any,
    auth_registry: RegistryServer,
    auth_pusher: ImagePusher,
    unique_repo: str,
) -> None:
    secretsmanager = boto3.client("secretsmanager", region_name="us-east-1")
    ptc.add_upstream("ghcr.io", auth_registry.url)
    image = auth_pusher.push_image(unique_repo, "v1")
    good = make_secret(secretsmanager, "gh", *REGISTRY_USER)
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="gh", upstreamRegistryUrl="ghcr.io", credentialArn=good
    )
    assert pulled_digest(pull(ecr, f"gh/{unique_repo}", "v1")) == image.digest

    wrong = make_secret(secretsmanager, "gh-wrong", REGISTRY_USER[0], "nope")
    ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="gh", credentialArn=wrong)
    denied = pull(ecr, f"gh/{unique_repo}", "absent-tag")
    assert denied["failures"][0]["failureCode"] == "UpstreamAccessDenied"

    secretsmanager.delete_secret(SecretId=wrong, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError) as exc:
        pull(ecr, f"gh/{unique_repo}", "absent-tag")
    assert code_of(exc) == "UnableToGetUpstreamImageException"


def test_bearer_challenge_is_answered_with_a_token_for_the_secret(
    ptc: PullThroughCacheEmulator, ecr: Any, tmp_path: Path
) -> None:
    token_server = pytest.importorskip("testbed.token_server")  # the token server of the auth tests
    user = ("ptc-token-user", "ptc-token-password")
    with (
        token_server.TokenServer(
            tmp_path / "tokens", users=dict([user]), private_prefixes=("private/",)
        ) as ts,
        RegistryServer(tmp_path / "registry", token=ts.token_auth()) as upstream,
    ):
        image = ImagePusher(upstream.url, auth=user).push_image("private/app", "v1")
        ptc.add_upstream("registry.gitlab.com", upstream.url)
        secret = make_secret(boto3.client("secretsmanager", region_name="us-east-1"), "gitlab", *user)
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="gitlab", upstreamRegistryUrl="registry.gitlab.com", credentialArn=secret
        )
        assert pulled_digest(pull(ecr, "gitlab/private/app", "v1")) == image.digest
        pulls = [r for r in ts.requests if r.scopes == ("repository:private/app:pull",)]
        assert [r.user for r in pulls] == [user[0]]


def test_failure_codes_are_exactly_botocores_image_failure_code_enum() -> None:
    """ImageFailureCode is exactly InvalidImageDigest … ImageInaccessible (botocore); the emulation must
    not invent others, so a test cannot inject one either."""
    model = boto3.client("ecr", region_name="us-east-1").meta.service_model
    shape: Any = model.shape_for("ImageFailureCode")
    assert set(shape.enum) == ecr_ptc.FAILURE_CODES
    emulator = PullThroughCacheEmulator({})
    with pytest.raises(ValueError, match="unknown failure code"):
        emulator.fail_next_import("UnsupportedImageType")
    assert not hasattr(ecr_ptc, "UNSUPPORTED_IMAGE_TYPE")


def test_missing_upstream_tag_is_an_image_not_found_failure(ecr: Any, unique_repo: str) -> None:
    public_rule(ecr)
    failed = pull(ecr, f"ecr-public/{unique_repo}", "never-pushed")
    assert failed["images"] == []
    assert failed["failures"][0]["failureCode"] == "ImageNotFound"


def test_first_pull_by_digest_is_not_found_and_never_reaches_upstream(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    other = pusher.push_image(unique_repo, "v2")
    by_digest = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": other.digest}])
    assert by_digest["failures"][0]["failureCode"] == "ImageNotFound"
    assert [f.reference for f in ptc.upstream_fetches] == ["v1"]
    cached = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": image.digest}])
    assert cached["images"][0]["imageId"] == {"imageDigest": image.digest}


# -- PutImage and BatchGetImage bytes ---------------------------------------------------------------------


def test_put_image_stores_the_sha256_of_the_exact_bytes(ecr: Any) -> None:
    ecr.create_repository(repositoryName="plain/app")
    layer, _ = random_layer()
    layer_digest = upload_blob(ecr, "plain/app", layer)
    config = b'{"architecture":"amd64","os":"linux"}'
    config_digest = upload_blob(ecr, "plain/app", config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP, "digest": layer_digest, "size": len(layer)}],
        },
        indent=7,  # unusual whitespace: any re-serialisation would change the digest
    )
    put = ecr.put_image(repositoryName="plain/app", imageManifest=manifest, imageTag="v1")
    assert put["image"]["imageId"]["imageDigest"] == sha256_digest(manifest.encode())
    got = ecr.batch_get_image(repositoryName="plain/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == manifest
    [detail] = describe(ecr, "plain/app")
    assert detail["imageSizeInBytes"] == len(layer)
    assert detail["artifactMediaType"] == mt.DOCKER_CONFIG


def test_put_image_refuses_a_wrong_digest_bad_json_and_missing_layers(ecr: Any) -> None:
    ecr.create_repository(repositoryName="plain/app")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": "sha256:" + "1" * 64, "size": 2},
            "layers": [],
        }
    )
    with pytest.raises(ClientError) as exc:
        ecr.put_image(repositoryName="plain/app", imageManifest=manifest, imageDigest="sha256:" + "0" * 64)
    assert code_of(exc) == "ImageDigestDoesNotMatchException"
    with pytest.raises(ClientError) as exc:
        ecr.put_image(repositoryName="plain/app", imageManifest="{not json", imageTag="x")
    assert code_of(exc) == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        ecr.put_image(repositoryName="plain/app", imageManifest=manifest, imageTag="x")
    assert code_of(exc) == "LayersNotFoundException"


def test_backup_tag_written_with_put_image_keeps_the_digest(
    ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    index = pusher.push_index(unique_repo, "latest")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    got = pull(ecr, repo, "latest")["images"][0]
    put = ecr.put_image(
        repositoryName=repo,
        imageManifest=got["imageManifest"],
        imageManifestMediaType=got["imageManifestMediaType"],
        imageTag="ptc-backup",
        imageDigest=index.digest,
    )
    assert put["image"]["imageId"]["imageDigest"] == index.digest
    [detail] = describe(ecr, repo, imageIds=[{"imageTag": "ptc-backup"}])
    assert sorted(detail["imageTags"]) == ["latest", "ptc-backup"]
    with pytest.raises(ClientError) as exc:  # the same tag on the same manifest again
        ecr.put_image(repositoryName=repo, imageManifest=got["imageManifest"], imageTag="ptc-backup")
    assert code_of(exc) == "ImageAlreadyExistsException"


# -- GetDownloadUrlForLayer -------------------------------------------------------------------------------


def test_layer_download_imports_the_blob_from_upstream_once(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1", layers=2)
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    for layer in image.layers:
        answer = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer.digest)
        assert answer["layerDigest"] == layer.digest
        assert answer["downloadUrl"].startswith("https://")
    ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=image.layers[0].digest)
    assert [(r.digest, r.size) for r in ptc.imported_layers] == [(b.digest, b.size) for b in image.layers]
    available = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[image.layers[0].digest])
    assert available["layers"][0]["layerAvailability"] == "AVAILABLE"


def test_unknown_or_unreferenced_layers_are_refused(ecr: Any, pusher: ImagePusher, unique_repo: str) -> None:
    pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    with pytest.raises(ClientError) as exc:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest="sha256:" + "2" * 64)
    assert code_of(exc) == "LayersNotFoundException"
    loose = upload_blob(ecr, repo, b"not referenced by any image")
    with pytest.raises(ClientError) as exc:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=loose)
    assert code_of(exc) == "LayerInaccessibleException"


def test_layer_upstream_failure_is_unable_to_get_upstream_layer(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    ptc.set_upstream_unreachable("public.ecr.aws")
    with pytest.raises(ClientError) as exc:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=image.layers[0].digest)
    assert code_of(exc) == "UnableToGetUpstreamLayerException"
    assert ptc.imported_layers == []


# -- the 24-hour rule -------------------------------------------------------------------------------------


def test_cached_tag_is_served_within_24_hours_even_if_upstream_moved(
    ptc: PullThroughCacheEmulator, ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    first = pusher.push_image(unique_repo, "latest")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    assert pulled_digest(pull(ecr, repo, "latest")) == first.digest
    pusher.push_image(unique_repo, "latest")
    clock.advance(timedelta(hours=24))  # exactly 24 h: not more than 24 h
    assert pulled_digest(pull(ecr, repo, "latest")) == first.digest
    assert len(ptc.upstream_fetches) == 1
    assert ptc.pull_count(repo, "latest") == 2


def test_cached_tag_is_rechecked_and_moved_after_24_hours(
    ptc: PullThroughCacheEmulator, ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    first = pusher.push_image(unique_repo, "latest")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "latest"))
    second = pusher.push_image(unique_repo, "latest")
    clock.advance(timedelta(hours=24, seconds=1))
    assert pulled_digest(pull(ecr, repo, "latest")) == second.digest
    assert ptc.last_checked(repo, "latest") == clock.now()
    untagged = describe(ecr, repo, filter={"tagStatus": "UNTAGGED"})
    assert [d["imageDigest"] for d in untagged] == [first.digest]  # the old image stays, untagged


def test_unreachable_upstream_at_recheck_still_serves_the_cache(
    ptc: PullThroughCacheEmulator, ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    first = pusher.push_image(unique_repo, "latest")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "latest"))
    second = pusher.push_image(unique_repo, "latest")
    clock.advance(timedelta(days=2))
    ptc.set_upstream_unreachable("public.ecr.aws")
    assert pulled_digest(pull(ecr, repo, "latest")) == first.digest
    assert ptc.events[-1]["detail"]["sync-status"] == SYNC_FAILED
    assert ptc.events[-1]["detail"]["failure-code"] == "UpstreamUnavailable"
    ptc.set_upstream_unreachable("public.ecr.aws", False)
    assert pulled_digest(pull(ecr, repo, "latest")) == second.digest  # the failed check was not counted


def test_absent_tag_is_fetched_from_upstream_on_the_next_pull(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    """The refresh path the sync engine uses: delete the cached tag, then pull it."""
    pusher.push_image(unique_repo, "latest")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "latest"))
    second = pusher.push_image(unique_repo, "latest")
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    assert pulled_digest(pull(ecr, repo, "latest")) == second.digest  # no clock advance needed
    assert ptc.import_count(repo, "latest") == 2


def test_immutable_repository_keeps_the_cached_tag_after_24_hours(
    ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    first = pusher.push_image(unique_repo, "latest")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    ecr.create_repository(
        repositoryName=repo, imageTagMutability="IMMUTABLE"
    )  # created before the first pull
    pulled_digest(pull(ecr, repo, "latest"))
    pusher.push_image(unique_repo, "latest")
    clock.advance(timedelta(days=2))
    assert pulled_digest(pull(ecr, repo, "latest")) == first.digest


@pytest.mark.parametrize("case", [("MUTABLE_WITH_EXCLUSION", False), ("IMMUTABLE_WITH_EXCLUSION", True)])
def test_mutability_exclusion_filters_are_wildcards(
    ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str, case: tuple[str, bool]
) -> None:
    """A tag matching a filter of MUTABLE_WITH_EXCLUSION is immutable; of IMMUTABLE_WITH_EXCLUSION mutable."""
    mutability, moves = case
    pusher.push_image(unique_repo, "release-1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    ecr.create_repository(
        repositoryName=repo,
        imageTagMutability=mutability,
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}],
    )
    first = pulled_digest(pull(ecr, repo, "release-1"))
    second = pusher.push_image(unique_repo, "release-1")
    clock.advance(timedelta(days=2))
    assert pulled_digest(pull(ecr, repo, "release-1")) == (second.digest if moves else first)


# -- DescribeImages ---------------------------------------------------------------------------------------


def test_describe_images_reports_push_and_pull_times_from_the_clock(
    ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1", layers=2)
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pushed_at = clock.now()
    pulled_digest(pull(ecr, repo, "v1"))
    clock.advance(timedelta(hours=3))
    pulled_digest(pull(ecr, repo, "v1"))
    [detail] = describe(ecr, repo)
    assert detail["imagePushedAt"] == pushed_at
    assert detail["lastRecordedPullTime"] == clock.now()
    assert detail["imageManifestMediaType"] == mt.DOCKER_MANIFEST
    assert detail["imageSizeInBytes"] == sum(layer.size for layer in image.layers)
    assert detail["imageTags"] == ["v1"]


def test_describe_images_filters_by_tag_status_and_paginates(
    ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    index = pusher.push_index(unique_repo, "multi", platforms=("linux/amd64", "linux/arm64", "linux/s390x"))
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "multi"))
    assert [d["imageDigest"] for d in describe(ecr, repo, filter={"tagStatus": "TAGGED"})] == [index.digest]
    assert len(describe(ecr, repo, filter={"tagStatus": "UNTAGGED"})) == 3
    pages = list(
        ecr.get_paginator("describe_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 3})
    )
    assert [len(p["imageDetails"]) for p in pages] == [3, 1]
    with pytest.raises(ClientError) as exc:
        describe(ecr, repo, imageIds=[{"imageTag": "absent"}])
    assert code_of(exc) == "ImageNotFoundException"


def test_describe_images_reports_image_status_active(ecr: Any, pusher: ImagePusher, unique_repo: str) -> None:
    """ImageDetail.imageStatus is ACTIVE / ARCHIVED / ACTIVATING and DescribeImagesFilter has an
    imageStatus (botocore, archive storage class); the emulation archives nothing, so every image is
    ACTIVE and an ARCHIVED filter finds none."""
    pusher.push_index(unique_repo, "multi")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "multi"))
    details = describe(ecr, repo)
    assert {d["imageStatus"] for d in details} == {"ACTIVE"}
    assert len(describe(ecr, repo, filter={"imageStatus": "ACTIVE"})) == len(details)
    assert len(describe(ecr, repo, filter={"imageStatus": "ANY"})) == len(details)
    assert describe(ecr, repo, filter={"imageStatus": "ARCHIVED"}) == []
    assert describe(ecr, repo, filter={"imageStatus": "ARCHIVED", "tagStatus": "TAGGED"}) == []


# -- pull-time exclusions ---------------------------------------------------------------------------------

EXCLUDED_ROLE = "arn:aws:iam::123456789012:role/ptc-sync-checker"


def ecr_as_role(role_arn: str) -> Any:
    """An ECR client whose requests moto attributes to an assumed-role session of ``role_arn``."""
    sts = boto3.client("sts", region_name="us-east-1")
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="checker")["Credentials"]
    return boto3.client(
        "ecr",
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def test_pull_time_update_exclusions_register_list_deregister(ecr: Any, clock: FakeClock) -> None:
    """RegisterPullTimeUpdateExclusion / DeregisterPullTimeUpdateExclusion / ListPullTimeUpdateExclusions
    (botocore 1.43): principalArn must be an IAM role or user ARN of the model's pattern, a second
    registration is ExclusionAlreadyExistsException, removing an absent one ExclusionNotFoundException."""
    assert ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == []
    registered = ecr.register_pull_time_update_exclusion(principalArn=EXCLUDED_ROLE)
    assert registered["principalArn"] == EXCLUDED_ROLE
    assert registered["createdAt"] == clock.now()
    with pytest.raises(ClientError) as exc:
        ecr.register_pull_time_update_exclusion(principalArn=EXCLUDED_ROLE)
    assert code_of(exc) == "ExclusionAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        ecr.register_pull_time_update_exclusion(principalArn="arn:aws:sts::123456789012:assumed-role/r/s")
    assert code_of(exc) == "ValidationException"
    users = [f"arn:aws:iam::123456789012:user/u{i}" for i in range(3)]
    for user in users:
        ecr.register_pull_time_update_exclusion(principalArn=user)
    first = ecr.list_pull_time_update_exclusions(maxResults=2)
    assert first["pullTimeUpdateExclusions"] == [EXCLUDED_ROLE, users[0]]
    rest = ecr.list_pull_time_update_exclusions(maxResults=2, nextToken=first["nextToken"])
    assert rest["pullTimeUpdateExclusions"] == users[1:]
    assert "nextToken" not in rest
    assert ecr.deregister_pull_time_update_exclusion(principalArn=EXCLUDED_ROLE) == {
        "principalArn": EXCLUDED_ROLE,
        "ResponseMetadata": ANY_METADATA,
    }
    with pytest.raises(ClientError) as exc:
        ecr.deregister_pull_time_update_exclusion(principalArn=EXCLUDED_ROLE)
    assert code_of(exc) == "ExclusionNotFoundException"
    assert ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == users


def test_pull_by_an_excluded_principal_does_not_update_last_recorded_pull_time(
    ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    """Every pull updates lastRecordedPullTime, ptc-sync's BatchGetImage included, unless the puller is
    registered with RegisterPullTimeUpdateExclusion: "Amazon ECR will not record the pull time if an
    excluded principal pulls an image" (botocore 1.43)."""
    pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    checker = ecr_as_role(EXCLUDED_ROLE)
    pulled_digest(pull(ecr, repo, "v1"))  # a person's pull
    people_pulled_at = clock.now()
    clock.advance(timedelta(hours=2))
    pulled_digest(pull(checker, repo, "v1"))  # not excluded yet: recorded
    assert describe(ecr, repo)[0]["lastRecordedPullTime"] == clock.now()

    ecr.register_pull_time_update_exclusion(principalArn=EXCLUDED_ROLE)
    recorded = clock.now()
    clock.advance(timedelta(hours=2))
    pulled_digest(pull(checker, repo, "v1"))
    assert describe(ecr, repo)[0]["lastRecordedPullTime"] == recorded
    clock.advance(timedelta(hours=1))
    pulled_digest(pull(ecr, repo, "v1"))  # anyone else is still recorded
    assert describe(ecr, repo)[0]["lastRecordedPullTime"] == clock.now() != people_pulled_at

    ecr.deregister_pull_time_update_exclusion(principalArn=EXCLUDED_ROLE)
    clock.advance(timedelta(hours=1))
    pulled_digest(pull(checker, repo, "v1"))
    assert describe(ecr, repo)[0]["lastRecordedPullTime"] == clock.now()


def test_an_excluded_principal_first_pull_imports_without_recording_a_pull_time(
    ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    """The exclusion stops only the pull-time record (botocore 1.43), not the import: moto's default
    caller, excluded, imports a tag and DescribeImages shows no lastRecordedPullTime."""
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    ecr.register_pull_time_update_exclusion(principalArn="arn:aws:iam::123456789012:user/moto")
    repo = f"ecr-public/{unique_repo}"
    assert pulled_digest(pull(ecr, repo, "v1")) == image.digest
    [detail] = describe(ecr, repo)
    assert "lastRecordedPullTime" not in detail


# -- BatchDeleteImage -------------------------------------------------------------------------------------


def test_deleting_the_only_tag_deletes_the_image(ecr: Any, pusher: ImagePusher, unique_repo: str) -> None:
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert deleted["imageIds"] == [{"imageDigest": image.digest, "imageTag": "v1"}]
    assert describe(ecr, repo) == []


def test_deleting_one_of_several_tags_keeps_the_image(
    ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    got = pull(ecr, repo, "v1")["images"][0]
    ecr.put_image(repositoryName=repo, imageManifest=got["imageManifest"], imageTag="backup")
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    [detail] = describe(ecr, repo)
    assert detail["imageDigest"] == image.digest
    assert detail["imageTags"] == ["backup"]


def test_an_index_child_cannot_be_deleted_by_digest(ecr: Any, pusher: ImagePusher, unique_repo: str) -> None:
    index = pusher.push_index(unique_repo, "multi")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "multi"))
    refused = ecr.batch_delete_image(
        repositoryName=repo, imageIds=[{"imageDigest": index.children[0].digest}]
    )
    assert refused["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    gone = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": index.children[0].digest}])
    assert gone["imageIds"] == [{"imageDigest": index.children[0].digest}]


# -- background import and faults -------------------------------------------------------------------------


def test_background_import_fails_first_and_appears_after_polls(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "big")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    ptc.import_in_background(ready_after_calls=2)
    first = pull(ecr, repo, "big")
    assert first["images"] == []
    assert first["failures"][0]["failureCode"] == "UpstreamUnavailable"
    assert ptc.pending_imports == [(repo, "big")]
    assert describe(ecr, repo) == []  # poll 1 of 2: the repository exists, the image not yet
    [detail] = describe(ecr, repo)  # poll 2: the import finished
    assert detail["imageDigest"] == image.digest
    assert pulled_digest(pull(ecr, repo, "big")) == image.digest


def test_background_import_ready_after_clock_advance_and_raise_mode(
    ptc: PullThroughCacheEmulator, ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "big")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    ptc.import_in_background(repo, "big", ready_after=timedelta(minutes=5), raise_code="ServerException")
    with pytest.raises(ClientError) as exc:
        pull(ecr, repo, "big")
    assert code_of(exc) == "ServerException"
    with pytest.raises(ClientError):
        pull(ecr, repo, "big")  # still importing
    clock.advance(timedelta(minutes=5))
    assert pulled_digest(pull(ecr, repo, "big")) == image.digest
    assert ptc.import_count(repo, "big") == 1


def test_fail_next_import_injects_one_failure(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    ptc.fail_next_import("UpstreamTooManyRequests", "429 from upstream", repository=repo)
    failed = pull(ecr, repo, "v1")
    assert failed["failures"][0] == {
        "imageId": {"imageTag": "v1"},
        "failureCode": "UpstreamTooManyRequests",
        "failureReason": "429 from upstream",
    }
    assert pulled_digest(pull(ecr, repo, "v1")) == image.digest


# -- EventBridge ------------------------------------------------------------------------------------------


def test_sync_events_reach_the_default_bus(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    image = pusher.push_image(unique_repo, "v1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events = boto3.client("events", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="ptc-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="ptc", EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": [EVENT_DETAIL_TYPE]})
    )
    events.put_targets(Rule="ptc", Targets=[{"Id": "q", "Arn": queue_arn}])
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    pull(ecr, repo, "missing")
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert [b["source"] for b in bodies] == [EVENT_SOURCE] * 2
    assert [b["detail-type"] for b in bodies] == [EVENT_DETAIL_TYPE] * 2
    success, failure = (b["detail"] for b in bodies)
    assert success == {
        "rule-version": "1",
        "sync-status": SYNC_SUCCESS,
        "ecr-repository-prefix": "ecr-public",
        "repository-name": repo,
        "upstream-registry-url": "public.ecr.aws",
        "image-tag": "v1",
        "image-digest": image.digest,
    }
    assert failure["sync-status"] == SYNC_FAILED
    assert failure["failure-code"] == "ImageNotFound"
    assert failure["failure-reason"]
    assert failure["image-tag"] == "missing"
    assert len(ptc.events) == 2


# -- installation -----------------------------------------------------------------------------------------


def test_uninstall_restores_moto_exactly(registry: RegistryServer) -> None:
    before = dict(ECRResponse.__dict__)
    with mock_aws(), PullThroughCacheEmulator({"public.ecr.aws": registry.url}):
        assert ECRResponse.__dict__["batch_get_image"] is not before["batch_get_image"]
        with pytest.raises(RuntimeError), PullThroughCacheEmulator({}):
            pass  # one emulator at a time
    assert dict(ECRResponse.__dict__) == before


def test_upstreams_must_be_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        PullThroughCacheEmulator({"registry-1.docker.io": "https://registry-1.docker.io"})


def test_fake_clock_only_moves_forward() -> None:
    clock = FakeClock(datetime(2025, 1, 1, tzinfo=UTC))
    clock.advance(timedelta(hours=25))
    assert clock.now() == datetime(2025, 1, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))


# -- layers on a first pull (reported: aws/containers-roadmap #939, #2304) -------------------------------


def availability(ecr: Any, repo: str, digests: list[str]) -> dict[str, str]:
    """digest -> layerAvailability, or the failure code for a digest ECR answered with a failure."""
    resp = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=digests)
    out = {layer["layerDigest"]: layer["layerAvailability"] for layer in resp["layers"]}
    out.update({failure["layerDigest"]: failure["failureCode"] for failure in resp["failures"]})
    return out


def test_first_pull_layer_url_is_on_the_upstream_host_until_ecr_cached_it_in_the_background(
    ptc: PullThroughCacheEmulator, ecr: Any, clock: FakeClock, pusher: ImagePusher, unique_repo: str
) -> None:
    """Reported (containers-roadmap #939, #2304; ecr-facts 2026-12-01 "Layers on a first pull"): for a
    layer not yet cached GetDownloadUrlForLayer answers a URL on upstream's own storage and ECR caches
    the layer in the background; BatchCheckLayerAvailability says AVAILABLE only once it is ECR's."""
    ptc.layer_cache_delay = timedelta(seconds=30)
    image = pusher.push_image(unique_repo, "v1", layers=2)
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    blobs = [b.digest for b in image.layers]
    assert availability(ecr, repo, blobs) == dict.fromkeys(blobs, "UNAVAILABLE"), (
        "pulling the manifest caches no blob"
    )

    first = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=blobs[0])["downloadUrl"]
    assert first == f"https://public.ecr.aws/v2/{unique_repo}/blobs/{blobs[0]}"
    clock.advance(timedelta(seconds=29))
    again = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=blobs[0])["downloadUrl"]
    assert urlsplit(again).hostname == "public.ecr.aws", "still caching: still upstream's"
    assert availability(ecr, repo, blobs) == dict.fromkeys(blobs, "UNAVAILABLE")
    assert ptc.caching_layers == [(repo, blobs[0])]

    clock.advance(timedelta(seconds=1))
    assert availability(ecr, repo, blobs) == {blobs[0]: "AVAILABLE", blobs[1]: "UNAVAILABLE"}
    cached = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=blobs[0])["downloadUrl"]
    assert urlsplit(cached).hostname == "prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com"
    assert [(r.digest, r.at) for r in ptc.imported_layers] == [(blobs[0], clock.now())]


def test_a_layer_asked_for_while_upstream_is_down_fails_and_is_not_cached(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    """botocore GetDownloadUrlForLayer lists UnableToGetUpstreamLayerException: ECR asks upstream for a
    layer it has not cached."""
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    ptc.set_upstream_unreachable("public.ecr.aws")
    with pytest.raises(ClientError) as exc:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=image.layers[0].digest)
    assert code_of(exc) == "UnableToGetUpstreamLayerException"
    assert availability(ecr, repo, [image.layers[0].digest]) == {image.layers[0].digest: "UNAVAILABLE"}


def test_uncached_layer_can_answer_missing_layer_digest_instead_of_unavailable(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    """Unknown (no public evidence): what BatchCheckLayerAvailability answers for a layer a cached
    manifest references but ECR has not cached. Both of the model's answers (LayerAvailability
    UNAVAILABLE, LayerFailureCode MissingLayerDigest) can be emulated; neither is AVAILABLE."""
    ptc.uncached_layer_answer = "MissingLayerDigest"
    image = pusher.push_image(unique_repo, "v1")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    pulled_digest(pull(ecr, repo, "v1"))
    digest = image.layers[0].digest
    assert availability(ecr, repo, [digest]) == {digest: "MissingLayerDigest"}
    ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=digest)
    assert availability(ecr, repo, [digest]) == {digest: "AVAILABLE"}, "cached by the next call (delay 0)"
    with pytest.raises(ValueError, match="uncached_layer_answer"):
        PullThroughCacheEmulator({}, uncached_layer_answer="GONE")


def test_batch_check_layer_availability_answers_the_models_codes(
    ecr: Any, pusher: ImagePusher, unique_repo: str
) -> None:
    """botocore BatchCheckLayerAvailability: 1 to 100 digests; LayerFailureCode InvalidLayerDigest and
    MissingLayerDigest; an uploaded blob of a repository pushed to directly is AVAILABLE with its size."""
    ecr.create_repository(repositoryName="pushed/app")
    uploaded = upload_blob(ecr, "pushed/app", b"a blob pushed the usual way")
    unknown = "sha256:" + "3" * 64
    resp = ecr.batch_check_layer_availability(
        repositoryName="pushed/app", layerDigests=[uploaded, unknown, "not-a-digest"]
    )
    assert resp["layers"] == [
        {
            "layerDigest": uploaded,
            "layerAvailability": "AVAILABLE",
            "layerSize": 27,
            "mediaType": ANY_METADATA,
        }
    ]
    assert [(f["layerDigest"], f["failureCode"]) for f in resp["failures"]] == [
        (unknown, "MissingLayerDigest"),
        ("not-a-digest", "InvalidLayerDigest"),
    ]
    with pytest.raises(ClientError) as exc:
        ecr.batch_check_layer_availability(repositoryName="pushed/app", layerDigests=[unknown] * 101)
    assert code_of(exc) in {"InvalidParameterException", "ValidationException"}
    with pytest.raises(ClientError) as exc:
        ecr.batch_check_layer_availability(repositoryName="pushed/none", layerDigests=[unknown])
    assert code_of(exc) == "RepositoryNotFoundException"


# -- read-after-delete consistency (unknown: ecr-facts 2026-12-01 "Still unknown") ------------------------


@pytest.mark.parametrize("lag", [timedelta(0), timedelta(seconds=20)], ids=["off", "on"])
def test_describe_images_may_show_a_removed_tags_old_digest_for_a_while(
    ptc: PullThroughCacheEmulator, ecr: Any, pusher: ImagePusher, unique_repo: str, lag: timedelta
) -> None:
    """Unknown (no public evidence; ecr-facts 2026-12-01): right after BatchDeleteImage, DescribeImages
    may still show the old digest. Emulated both ways: off, the read is exact at once; on, for ``lag``
    the removed tag reads (by imageIds and in listings) as it was, even once it is back on another
    image, while BatchGetImage sees the truth."""
    ptc.describe_lag = lag
    pusher.push_image(unique_repo, "v")
    public_rule(ecr)
    repo = f"ecr-public/{unique_repo}"
    old = pulled_digest(pull(ecr, repo, "v"))
    ecr.put_image(
        repositoryName=repo, imageManifest=pull(ecr, repo, "v")["images"][0]["imageManifest"], imageTag="keep"
    )
    new = pusher.push_image(unique_repo, "v").digest
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v"}])

    def shown() -> str | None:
        try:
            return str(describe(ecr, repo, imageIds=[{"imageTag": "v"}])[0]["imageDigest"])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ImageNotFoundException":
                raise
            return None

    def listed() -> dict[str, str]:
        return {t: d["imageDigest"] for d in describe(ecr, repo) for t in d.get("imageTags", [])}

    if not lag:
        assert shown() is None
        assert listed() == {"keep": old}
        return
    assert shown() == old
    assert listed() == {"keep": old, "v": old}
    assert pulled_digest(pull(ecr, repo, "v")) == new, "BatchGetImage is not lagging: it imports"
    assert shown() == old, "the read still lags behind the import"
    assert listed() == {"keep": old, "v": old}
    ptc.clock.advance(lag)
    assert shown() == new
    assert listed() == {"keep": old, "v": new}


# -- PutImage throttling (documented: ECR service quotas, service-quotas.html) ----------------------------


@pytest.mark.filterwarnings("ignore:.*ThrottlingException does not match an error shape")
@pytest.mark.parametrize("rate", [None, 10], ids=["off", "on"])
def test_put_image_is_throttled_above_10_a_second(
    ptc: PullThroughCacheEmulator, clock: FakeClock, rate: int | None
) -> None:
    """Documented (ECR service quotas, service-quotas.html; ecr-facts 2026-12-01): PutImage is limited
    to 10 requests a second per account and region. Emulated on the emulator's clock when switched on;
    a throttled call does not count."""
    ptc.put_image_rate = rate
    ecr = boto3.client(
        "ecr", region_name="us-east-1", config=Config(retries={"mode": "standard", "max_attempts": 1})
    )
    ecr.create_repository(repositoryName="pushed/app")
    config = upload_blob(ecr, "pushed/app", b"{}")

    def put(n: int) -> None:
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {"mediaType": mt.DOCKER_CONFIG, "digest": config, "size": 2},
            "layers": [],
            "annotations": {"n": str(n)},
        }
        ecr.put_image(repositoryName="pushed/app", imageManifest=json.dumps(manifest), imageTag=f"t{n}")

    for n in range(10):
        put(n)
    if rate is None:
        put(10)
        return
    with pytest.raises(ClientError) as exc:
        put(10)
    assert code_of(exc) == "ThrottlingException"
    clock.advance(timedelta(milliseconds=999))
    with pytest.raises(ClientError):
        put(10)
    clock.advance(timedelta(milliseconds=1))
    put(10)
