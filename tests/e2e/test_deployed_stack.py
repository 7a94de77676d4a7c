"""End to end in a real account (opt-in: ``make e2e``, docs/e2e.md; skipped otherwise, see conftest.py).

It creates an ECR Public pull-through cache rule of its own under a unique prefix
(``ptc-e2e-<random>``) and deploys a uniquely named stack (``ptc-sync-e2e-<random>``) that watches
only that prefix, its schedule disabled, so nothing of the account's own caches is read or written.
Then:

1. ``ptc-sync selftest`` under that rule (busybox, two throwaway tags), its result stored in the
   stack's state table;
2. one public image pulled through the cache (``busybox:1.36.1``), then one run of the sync (the
   planner invoked with the schedule's event, the checkers through the queue), waited for;
3. the invariants: the cached tag is still pullable and shows upstream's digest, the run completed,
   and no credential (the caller's secret key or session token, the registry password from
   GetAuthorizationToken) appears in anything the stack or the CLI printed or returned.

Whatever happens, the stack is deleted in a ``finally``, then the rule and what deleting the stack
leaves behind: the retained state table, the repositories the cache created under the prefix, the
functions' log groups.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from ptc_sync.selftest_store import SelftestResult

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("ptc-sync"))
IMAGE = "docker/library/busybox"
SYNC_TAG = "1.36.1"
DEPLOY_TIMEOUT = 30 * 60
RUN_TIMEOUT = 15 * 60


@dataclass
class Deployed:
    name: str
    prefix: str
    region: str
    session: boto3.Session
    outputs: dict[str, str] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)  # everything the stack and the CLI gave back
    rule_created: bool = False

    def run(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False, env=_env()
        )
        self.printed += [done.stdout, done.stderr]
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args[:3])} … exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(CLI, *args, "--stack-name", self.name, "--region", self.region, check=check)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["SAM_CLI_TELEMETRY"] = "0"
    env.pop("PTC_STACK_NAME", None)
    return env


def _parameters(prefix: str) -> list[str]:
    """Only this test's rule, the schedule off: the stack never sees the account's own caches."""
    template = (ROOT / "template.yaml").read_text()
    assert "\n  RulePrefixes:" in template, "template.yaml has no RulePrefixes parameter: update tests/e2e"
    found = [f"RulePrefixes={prefix}"]
    if "\n  ScheduleState:" in template:
        found.append("ScheduleState=DISABLED")
    else:  # ScheduleExpression takes `disabled`
        found.append("ScheduleExpression=disabled")
    if "\n  VerifyTimeoutSeconds:" in template:
        found.append("VerifyTimeoutSeconds=300")
    return found


def _create_rule(stack: Deployed) -> None:
    """An ECR Public rule of this test's own (anonymous upstream: no secret to create)."""
    stack.session.client("ecr").create_pull_through_cache_rule(
        ecrRepositoryPrefix=stack.prefix, upstreamRegistryUrl="public.ecr.aws", upstreamRegistry="ecr-public"
    )
    stack.rule_created = True


def _delete_rule(stack: Deployed) -> None:
    if stack.rule_created:
        stack.session.client("ecr").delete_pull_through_cache_rule(ecrRepositoryPrefix=stack.prefix)


def _clean_up(stack: Deployed) -> list[str]:
    """Delete the stack, then what it leaves: every step is tried, the problems are returned."""
    problems = []
    steps = [
        lambda: stack.run(
            "sam",
            "delete",
            "--stack-name",
            stack.name,
            "--region",
            stack.region,
            "--no-prompts",
            timeout=DEPLOY_TIMEOUT,
        ),
        lambda: _delete_rule(stack),
        lambda: _delete_repositories(stack),
        lambda: _delete_table(stack),
        lambda: _delete_log_groups(stack),
    ]
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - every step is tried; the problems are reported together
            problems.append(f"{type(exc).__name__}: {exc}")
    return problems


def _delete_repositories(stack: Deployed) -> None:
    ecr = stack.session.client("ecr")
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page["repositories"]:
            if repo["repositoryName"].startswith(f"{stack.prefix}/"):
                ecr.delete_repository(repositoryName=repo["repositoryName"], force=True)


def _delete_table(stack: Deployed) -> None:
    table = stack.outputs.get("StateTableName")
    if table:  # DeletionPolicy Retain: sam delete leaves it
        dynamodb = stack.session.client("dynamodb")
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=table)


def _delete_log_groups(stack: Deployed) -> None:
    logs = stack.session.client("logs")
    for page in logs.get_paginator("describe_log_groups").paginate(
        logGroupNamePrefix=f"/aws/lambda/{stack.name}"
    ):
        for group in page["logGroups"]:
            logs.delete_log_group(logGroupName=group["logGroupName"])


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    session = boto3.Session()
    suffix = secrets.token_hex(4)
    stack = Deployed(f"ptc-sync-e2e-{suffix}", f"ptc-e2e-{suffix}", str(session.region_name), session)
    try:
        _create_rule(stack)
        stack.run("make", "build", timeout=DEPLOY_TIMEOUT)
        stack.run(
            "sam", "deploy",
            "--stack-name", stack.name,
            "--region", stack.region,
            "--resolve-s3",
            "--s3-prefix", stack.name,
            "--capabilities", "CAPABILITY_IAM",
            "--no-confirm-changeset",
            "--no-fail-on-empty-changeset",
            "--tags", f"app=ptc-sync-e2e stack={stack.name}",
            "--parameter-overrides", *_parameters(stack.prefix),
            timeout=DEPLOY_TIMEOUT,
        )  # fmt: skip
        described = session.client("cloudformation").describe_stacks(StackName=stack.name)["Stacks"][0]
        stack.outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        stack.printed.append(json.dumps(stack.outputs))
        yield stack
    finally:
        problems = _clean_up(stack)
        assert not problems, f"clean-up of {stack.name} left something behind: {problems}"


def _pull(stack: Deployed, repository: str, tag: str) -> str:
    """A pull by tag through the cache (BatchGetImage), waiting out a background import."""
    ecr = stack.session.client("ecr")
    deadline = time.monotonic() + 300
    while True:
        resp = ecr.batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=[
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ],
        )
        stack.printed.append(json.dumps(resp, default=str))
        if resp["images"]:
            return str(resp["images"][0]["imageId"]["imageDigest"])
        assert time.monotonic() < deadline, f"{repository}:{tag} not pullable: {resp['failures']}"
        time.sleep(10)


def _secrets(session: boto3.Session) -> list[str]:
    credentials = session.get_credentials().get_frozen_credentials()
    found = [credentials.secret_key, credentials.token or ""]
    token = session.client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    found.append(base64.b64decode(token).decode().partition(":")[2])
    return [s for s in found if len(s) >= 16]


def _wait_for_run(stack: Deployed, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        done = stack.cli("runs", run_id, "--output", "json", check=False)
        if done.returncode == 0:
            doc: dict[str, Any] = json.loads(done.stdout)
            if doc["run"]["complete"]:
                return doc
        assert time.monotonic() < deadline, f"run {run_id} not complete after {RUN_TIMEOUT}s"
        time.sleep(15)


def test_a_deployed_stack_proves_itself_and_keeps_a_cached_tag_pullable(deployed: Deployed) -> None:
    stack = deployed
    repository = f"{stack.prefix}/{IMAGE}"

    selftest = stack.cli("selftest", "--rule", stack.prefix, "--output", "json", check=False)
    assert selftest.returncode in (0, 1), selftest.stderr  # 1: a behaviour failed here (a finding)
    result = json.loads(selftest.stdout)
    statuses = {c["behaviour"]: c["status"] for c in result["checks"]}
    print(json.dumps(result, indent=2))  # the account's answers, for the record
    assert len(statuses) == 6
    assert not any(n.startswith(("CLEANUP FAILED", "NOT STORED")) for n in result["notes"]), result["notes"]

    before = _pull(stack, repository, SYNC_TAG)
    invoked = stack.session.client("lambda").invoke(
        FunctionName=stack.outputs["SyncFunctionName"],
        Payload=(ROOT / "events" / "scheduled.json").read_bytes(),
        LogType="Tail",
    )
    payload = json.loads(invoked["Payload"].read())
    stack.printed += [json.dumps(payload), base64.b64decode(invoked.get("LogResult", "")).decode()]
    assert "FunctionError" not in invoked, payload
    assert payload["status"] == "planned", payload
    held = bool(SelftestResult.from_doc(result).report_only_reason())
    assert payload["dry_run"] is held, "report only exactly when the selftest found a relied-on failure"
    run = _wait_for_run(stack, payload["run_id"])

    after = _pull(stack, repository, SYNC_TAG)
    assert run["run"]["complete"]
    assert after == before, "the cached tag is still pullable, on upstream's digest"
    shown = stack.session.client("ecr").describe_images(
        repositoryName=repository, imageIds=[{"imageTag": SYNC_TAG}]
    )
    assert shown["imageDetails"][0]["imageDigest"] == after

    printed = "\n".join(stack.printed)
    for secret in _secrets(stack.session):
        assert secret not in printed, "a credential appears in the stack's or the CLI's output"
