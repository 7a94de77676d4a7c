"""ECR-to-ECR upstreams through ptc-sync's own read path (issue 15 item 4), on the testbed with STS trust
and upstream repository policies emulated (testbed/ecr_ptc/access.py).

Facts (docs/ecr-facts.md, "Roles for ECR-to-ECR rules"): a rule's ``customRoleArn`` is assumed by ECR
and its documented trust policy names only ``pullthroughcache.ecr.amazonaws.com`` (ECR user guide,
pull-through-cache-private.html); a role is needed only cross-account. So ptc-sync reads an ECR
upstream as a read role of its own in the upstream account (``UpstreamRoleArns``) that trusts its
function, or as the function's own role when the upstream repository's policy grants it, and says
precisely which trust or policy is missing when the read is refused, without touching the tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ptc_sync.credentials import EcrAuthorizationCredentials, UpstreamRoleTrustError
from ptc_sync.local_run import run_locally
from ptc_sync.models import Outcome, TagResult, UpstreamKind, UpstreamRef
from ptc_sync.registry.errors import ForbiddenError
from ptc_sync.settings import SyncSettings
from ptc_sync.upstream_access import UpstreamPolicyMissing, UpstreamTrustMissing, explain
from ptc_sync.wiring import App, build_app
from testbed.ecr_ptc import FakeClock, PullThroughCacheEmulator
from testbed.ecr_ptc.access import ECR_SERVICE_PRINCIPAL, AccessEmulation
from testbed.images import ImagePusher
from testbed.registry import RegistryServer

ACCOUNT = "123456789012"
UPSTREAM_ACCOUNT = "111122223333"
REGION = "us-east-1"
CROSS_HOST = f"{UPSTREAM_ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
SAME_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
CHECKER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ptc-sync-checker"
READ_ROLE = f"arn:aws:iam::{UPSTREAM_ACCOUNT}:role/ptc-sync-reader"
RULE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-pull-through-cache"  # ECR's, never ptc-sync's


@dataclass
class Bed:
    ptc: PullThroughCacheEmulator
    access: AccessEmulation
    registry: RegistryServer
    pusher: ImagePusher
    session: boto3.Session  # the checker's role
    clock: FakeClock

    def app(self, gate_host: str, **settings: Any) -> App:
        gate = self.access.gate(gate_host, self.registry.url)
        values: dict[str, Any] = {"region": REGION, "account_id": ACCOUNT, "verify_timeout_seconds": 5}
        values.update(settings)
        return build_app(
            SyncSettings.model_validate(values),
            session=self.session,
            upstream_override={gate_host: gate.url},
            sleep=lambda s: self.clock.advance(timedelta(seconds=s)),
            monotonic=lambda: self.clock.now().timestamp(),
            now=self.clock.now,
        )

    def cache(self, prefix: str, repo: str, tags: tuple[str, ...]) -> dict[str, str]:
        """Push ``tags`` upstream and pull them through the rule: the cached digests."""
        ecr = boto3.client("ecr", region_name=REGION)
        for tag in tags:
            self.pusher.push_image(repo, tag, layers=1)
            ecr.batch_get_image(repositoryName=f"{prefix}/{repo}", imageIds=[{"imageTag": tag}])
        return self.cached(f"{prefix}/{repo}")

    @staticmethod
    def cached(name: str) -> dict[str, str]:
        ecr = boto3.client("ecr", region_name=REGION)
        images = ecr.describe_images(repositoryName=name)["imageDetails"]
        return {tag: i["imageDigest"] for i in images for tag in i.get("imageTags", [])}


@pytest.fixture
def testbed(registry: RegistryServer, pusher: ImagePusher) -> Iterator[Bed]:
    clock = FakeClock(datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    hosts = {CROSS_HOST: registry.url, SAME_HOST: registry.url}  # ECR's own import path
    with mock_aws(), PullThroughCacheEmulator(hosts, clock) as ptc, AccessEmulation() as access:
        access.create_role(CHECKER_ROLE, [f"arn:aws:iam::{ACCOUNT}:root"])
        access.create_role(RULE_ROLE, services=[ECR_SERVICE_PRINCIPAL])
        creds = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=CHECKER_ROLE, RoleSessionName="checker"
        )["Credentials"]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=REGION,
        )
        ecr = boto3.client("ecr", region_name=REGION)
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ecr-up",
            upstreamRegistryUrl=CROSS_HOST,
            upstreamRegistry="ecr",
            customRoleArn=RULE_ROLE,
        )
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ecr-same", upstreamRegistryUrl=SAME_HOST, upstreamRegistry="ecr"
        )
        yield Bed(ptc, access, registry, pusher, session, clock)


def results_of(app: App, repository: str) -> dict[str, TagResult]:
    report = run_locally(app)
    return {r.tag: r for r in report.results if r.repository == repository}


def test_a_role_that_does_not_trust_the_caller_is_refused_by_the_emulation(testbed: Bed) -> None:
    """Emulated fact: AssumeRole checks the role's trust policy against the caller (moto alone does
    not); ECR's service principal in a rule role's trust never lets ptc-sync in."""
    sts = testbed.session.client("sts")
    with pytest.raises(sts.exceptions.ClientError, match="not authorized to perform: sts:AssumeRole"):
        sts.assume_role(RoleArn=RULE_ROLE, RoleSessionName="probe")
    testbed.access.create_role(READ_ROLE, [CHECKER_ROLE])
    assert sts.assume_role(RoleArn=READ_ROLE, RoleSessionName="probe")["Credentials"]["AccessKeyId"]


def test_cross_account_upstream_through_a_read_role(testbed: Bed, unique_repo: str) -> None:
    """A read role in the upstream account trusting the checker: the checker reads upstream's digests
    as that role, never as the rule's customRoleArn, and sees the moved tag."""
    testbed.access.create_role(READ_ROLE, [CHECKER_ROLE])
    before = testbed.cache("ecr-up", unique_repo, ("1",))
    moved = testbed.pusher.push_image(unique_repo, "1", layers=1)
    app = testbed.app(CROSS_HOST, upstream_role_arns=READ_ROLE, dry_run=True)

    result = results_of(app, f"ecr-up/{unique_repo}")["1"]
    assert result.outcome is Outcome.STALE, result
    assert result.upstream_digest == moved.digest
    assert result.cached_digest == before["1"]
    assert testbed.access.refused == []  # the rule's role was never tried


def test_missing_trust_is_one_precise_error_and_the_tag_is_untouched(testbed: Bed, unique_repo: str) -> None:
    """The read role exists but trusts someone else: every tag of the upstream account reports the
    same reason, which names the role, the caller and the fix; STS is asked once; nothing is written."""
    testbed.access.create_role(READ_ROLE, [f"arn:aws:iam::{ACCOUNT}:role/someone-else"])
    before = testbed.cache("ecr-up", unique_repo, ("1", "2"))
    testbed.pusher.push_image(unique_repo, "1", layers=1)  # stale: a refresh would be due
    app = testbed.app(CROSS_HOST, upstream_role_arns=READ_ROLE)

    results = results_of(app, f"ecr-up/{unique_repo}")
    assert {r.outcome for r in results.values()} == {Outcome.UPSTREAM_ERROR}
    reasons = {r.reason for r in results.values()}
    assert len(reasons) == 1, reasons  # reported once: one reason for the repository's tags
    (reason,) = reasons
    assert reason.startswith(f"role {READ_ROLE} does not trust {CHECKER_ROLE}: add {CHECKER_ROLE}")
    assert "trust policy" in reason
    assert [role for _caller, role in testbed.access.refused] == [READ_ROLE]  # STS asked once
    assert testbed.cached(f"ecr-up/{unique_repo}") == before  # the tag is not touched


def test_missing_repository_policy_is_named_then_granting_it_works(testbed: Bed, unique_repo: str) -> None:
    """No read role: the checker reads as its own role, which the upstream repository's policy must
    grant. Refused, the reason names the repository, the action and the principal to add; granted, it
    reads."""
    before = testbed.cache("ecr-up", unique_repo, ("1",))
    app = testbed.app(CROSS_HOST)

    result = results_of(app, f"ecr-up/{unique_repo}")["1"]
    assert result.outcome is Outcome.UPSTREAM_ERROR
    assert result.reason.startswith(
        f"repository policy of {UPSTREAM_ACCOUNT}/{unique_repo} does not grant ecr:BatchGetImage to "
        f"{CHECKER_ROLE}: add a statement"
    ), result.reason
    assert testbed.cached(f"ecr-up/{unique_repo}") == before

    testbed.access.set_repository_policy(
        UPSTREAM_ACCOUNT, unique_repo, AccessEmulation.pull_policy(CHECKER_ROLE)
    )
    app = testbed.app(CROSS_HOST)
    result = results_of(app, f"ecr-up/{unique_repo}")["1"]
    assert result.outcome is Outcome.FRESH, result


def test_same_account_upstream_needs_no_role(testbed: Bed, unique_repo: str) -> None:
    """An upstream registry in the stack's own account: no role, no repository policy; the checker's
    own role reads it (ECR needs a customRoleArn only cross-account, too)."""
    testbed.cache("ecr-same", unique_repo, ("1",))
    moved = testbed.pusher.push_image(unique_repo, "1", layers=1)
    app = testbed.app(SAME_HOST, dry_run=True)
    result = results_of(app, f"ecr-same/{unique_repo}")["1"]
    assert result.outcome is Outcome.STALE, result
    assert result.upstream_digest == moved.digest


def test_the_errors_are_typed_not_matched_by_text() -> None:
    """``explain`` decides by the error's type and the remembered refusal, never by its message."""

    class Path:
        def __init__(self, refused: UpstreamRoleTrustError | None) -> None:
            self.refused = refused

        def principal_for(self, ref: UpstreamRef) -> str:
            return CHECKER_ROLE

        def caller_arn(self) -> str:
            return CHECKER_ROLE

        def refusal(self, ref: UpstreamRef) -> UpstreamRoleTrustError | None:
            return self.refused

    ref = UpstreamRef(CROSS_HOST, "team/app", UpstreamKind.ECR, "ecr-up")
    forbidden = ForbiddenError("anything at all", host=CROSS_HOST, repository="team/app", status=403)
    policy = explain(ref, forbidden, Path(None))
    assert isinstance(policy, UpstreamPolicyMissing)
    assert CHECKER_ROLE in policy.remedy

    from ptc_sync.registry.errors import CredentialsUnavailableError

    unavailable = CredentialsUnavailableError("whatever the text", host=CROSS_HOST, repository="team/app")
    trust = explain(ref, unavailable, Path(UpstreamRoleTrustError(READ_ROLE, CHECKER_ROLE, UPSTREAM_ACCOUNT)))
    assert isinstance(trust, UpstreamTrustMissing)
    assert explain(ref, unavailable, Path(None)) is unavailable  # no refusal remembered: unchanged
    hub = UpstreamRef("registry-1.docker.io", "library/alpine", UpstreamKind.DOCKER_HUB, "hub")
    assert explain(hub, forbidden, Path(None)) is forbidden  # not an ECR upstream


def test_the_refusal_is_remembered_for_failure_ttl(testbed: Bed) -> None:
    """STS is asked once per account per ``failure_ttl``; after it, once more."""
    testbed.access.create_role(READ_ROLE, [])
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    provider = EcrAuthorizationCredentials(
        sts_client=testbed.session.client("sts"), read_roles=[READ_ROLE], failure_ttl=300, now=lambda: now[0]
    )
    ref = UpstreamRef(CROSS_HOST, "team/app", UpstreamKind.ECR, "ecr-up", custom_role_arn=RULE_ROLE)
    for _ in range(3):
        with pytest.raises(UpstreamRoleTrustError) as raised:
            provider.credentials_for(ref)
    assert raised.value.caller_arn == CHECKER_ROLE
    assert len(testbed.access.refused) == 1
    assert {role for _caller, role in testbed.access.refused} == {READ_ROLE}
    now[0] += timedelta(seconds=301)
    with pytest.raises(UpstreamRoleTrustError):
        provider.credentials_for(ref)
    assert len(testbed.access.refused) == 2


def test_ecr_imports_only_through_a_rule_role_that_trusts_its_service(testbed: Bed, unique_repo: str) -> None:
    """Emulated fact (pull-through-cache-private.html): ECR assumes the rule's customRoleArn, whose
    trust must name pullthroughcache.ecr.amazonaws.com; a role trusting only ptc-sync's checker lets
    ptc-sync in, not ECR, and the first pull fails UpstreamAccessDenied."""
    wrong = f"arn:aws:iam::{ACCOUNT}:role/trusts-the-checker-only"
    testbed.access.create_role(wrong, [CHECKER_ROLE])
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ecr-wrong",
        upstreamRegistryUrl=CROSS_HOST,
        upstreamRegistry="ecr",
        customRoleArn=wrong,
    )
    testbed.pusher.push_image(unique_repo, "1", layers=1)
    out = ecr.batch_get_image(repositoryName=f"ecr-wrong/{unique_repo}", imageIds=[{"imageTag": "1"}])
    assert out["images"] == []
    assert [f["failureCode"] for f in out["failures"]] == ["UpstreamAccessDenied"]
    assert ECR_SERVICE_PRINCIPAL in out["failures"][0]["failureReason"]
    # the stack's rule, whose role trusts the service, imports (the fixture's RULE_ROLE)
    assert testbed.cache("ecr-up", unique_repo, ("1",))
