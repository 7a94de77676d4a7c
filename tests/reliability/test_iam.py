"""Least privilege, checked: every AWS operation each function performs, against what template.yaml
grants that function.

A recorder wraps botocore's ``BaseClient._make_api_call`` (every client, however and whenever it was
created: the handlers' own, Powertools' Parameters and idempotency clients, the ECR client made with
assumed-role credentials) and attributes each call to the handler running at that moment (the four
handlers are wrapped; refresh threads inherit the attribution). The scenarios below run here, in this
module, so the recording never depends on which tests ran before.

Each recorded call becomes IAM actions and resources (TransactWriteItems is the actions of its
parts; SendMessageBatch is sqs:SendMessage) and, for DynamoDB, the partition keys it touches. The
function's Policies (resolved with the tests' CloudFormation evaluator, the optional parts switched
on, the scope narrowed to the scenarios' rule prefixes and credentials) must allow every one of them,
``dynamodb:LeadingKeys`` conditions included, and no Deny of theirs may refuse one; and every action
they grant must be used, except the documented ones below. The work queue's own policy must let
exactly the functions that send to it send.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.client import BaseClient

from ptc_sync import mediatypes as mt
from ptc_sync.chat import wiring as chat_wiring
from ptc_sync.chat.settings import ChatSettings
from ptc_sync.queue import QueueError
from ptc_sync.report import build_notification
from testbed.fault_server import Reply
from testbed.registry import RegistryServer
from testbed.runtime import FakeContext
from testbed.sandbox import ACCOUNT, REGION
from tests.chat.conftest import WEBHOOK_URLS, WebhookServer, overrides
from tests.chat.sample import sample_report, sns_event
from tests.reliability import harness
from tests.reliability.harness import World
from tests.template.cfn import Evaluator, load_template

FUNCTIONS = {
    "sync": "SyncFunction",
    "checker": "CheckerFunction",
    "requests": "RequestsFunction",
    "notifier": "ChatNotifierFunction",
}
UPSTREAM_ECR = "210987654321.dkr.ecr.us-west-2.amazonaws.com"
# the rule's customRoleArn: ECR assumes it, ptc-sync never does
UPSTREAM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ptc-sync-upstream-reader"
# ptc-sync's own read role in the upstream account (UpstreamRoleArns): the one it assumes
READ_ROLE = "arn:aws:iam::210987654321:role/ptc-sync-reader"
# the stack's settings document (template SettingsParameter for stack "ptc-sync"); a pre-warm document
# {"prewarm", "discover"} is a valid settings document, read here through the planner's prewarm_parameter
PREWARM_PARAMETER = "/ptc-sync/ptc-sync/settings"
# the rule prefixes the scenarios use (the sandbox's two rules and the ECR-to-ECR one below): the
# checker's ECR writes are granted under these only
RULE_PREFIXES = "ecr-public,docker-hub,ecr-up"

# Granted but never called through the API: IAM checks them on the function's behalf.
PERMISSION_ONLY = {
    "ecr:BatchImportUpstreamImage": "ECR checks it when a pull by tag imports from upstream (no such API)",
    "ecr:CreateRepository": "ECR checks it when the first pull through a rule creates the repository",
    "kms:GenerateDataKey": "SNS asks KMS for a data key on the publisher's behalf (KMS-encrypted topic)",
    "kms:Decrypt": "SNS decrypts with the publisher's permission to check the data key (encrypted topic)",
}
# Granted for a code path the scenarios cannot reach.
FALLBACK_ONLY = {
    ("requests", "dynamodb:GetItem"): (
        "Powertools idempotency reads the record when a conditional put returns no item (DynamoDB returns "
        "it with ReturnValuesOnConditionCheckFailure, so only a fallback); confined to pk IDEMPOTENCY"
    ),
    **{
        (function, "ssm:GetParameter"): (
            "a container reads the settings document before it builds (wiring.SettingsContainer); the "
            "scenarios install prebuilt apps, so only the planner's pre-warm read of it is recorded "
            "(tests/unit/test_settings_document.py reads it through Powertools Parameters)"
        )
        for function in ("checker", "requests")
    },
}
# Used, and deliberately not granted by the template as shipped (none since UpstreamRoleArns).
NOT_GRANTED: dict[str, str] = {}
# Actions that have no resource-level permissions: Resource "*" is the only way to grant them.
NO_RESOURCE_LEVEL = {
    "ecr:GetAuthorizationToken": "registry-wide token; IAM documents no resource type for it",
    "ecr:DescribePullThroughCacheRules": "lists the registry's rules; IAM documents no resource type for it",
}


# -- recording -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    function: str
    service: str
    operation: str
    region: str
    params: Mapping[str, Any] = field(hash=False, compare=False)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.current: str | None = None
        self._lock = threading.Lock()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = BaseClient._make_api_call
        recorder = self

        def recording(client: BaseClient, operation: str, params: Mapping[str, Any]) -> Any:
            function = recorder.current
            if function is not None:
                with recorder._lock:
                    recorder.calls.append(
                        Call(
                            function,
                            client.meta.service_model.service_name,
                            operation,
                            client.meta.region_name,
                            dict(params),
                        )
                    )
            return real(client, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", recording)

    def attributed(self, function: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kw: Any) -> Any:
            self.current = function
            try:
                return handler(*args, **kw)
            finally:
                self.current = None

        return run


# -- the scenarios -------------------------------------------------------------------------------------


@dataclass
class Recorded:
    calls: list[Call]
    world: World
    chat_secret_arn: str
    hub_secret_arn: str  # the docker-hub rule's credential secret (moto gives it a random suffix)


@pytest.fixture(scope="module")
def recorded(registry: RegistryServer) -> Iterator[Recorded]:
    monkeypatch = pytest.MonkeyPatch()
    recorder = Recorder()
    try:
        for world in harness.world_of(registry):
            recorder.install(monkeypatch)
            chat_arn = run_scenarios(world, recorder)
            rules = world.client("ecr").describe_pull_through_cache_rules()["pullThroughCacheRules"]
            (hub_arn,) = [r["credentialArn"] for r in rules if r["ecrRepositoryPrefix"] == "docker-hub"]
            yield Recorded(list(recorder.calls), world, chat_arn, hub_arn)
    finally:
        monkeypatch.undo()
        chat_wiring.set_notifier(None)


def run_scenarios(world: World, recorder: Recorder) -> str:
    box, stack = world.box, world.stack
    ecr, ssm, secrets = world.client("ecr"), world.client("ssm"), world.client("secretsmanager")
    stack.sync = recorder.attributed("sync", stack.sync)
    stack.work.handler = recorder.attributed("checker", stack.work.handler)
    stack.checker = stack.work.handler
    for tap in stack.taps:
        tap.handler = recorder.attributed("requests", tap.handler)

    # an ECR-to-ECR rule whose upstream ptc-sync reads as its own read role of the upstream account
    # (sts:AssumeRole, GetAuthorizationToken); the rule's customRoleArn is ECR's
    box.emulator.add_upstream(UPSTREAM_ECR, world.upstream.url)
    box.upstreams[UPSTREAM_ECR] = world.upstream.url
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ecr-up",
        upstreamRegistryUrl=UPSTREAM_ECR,
        upstreamRegistry="ecr",
        customRoleArn=UPSTREAM_ROLE,
    )
    public = harness.cache_repo(
        world, "iam-public", stale=("stable", "broken"), fresh=("pinned",), multi=True
    )
    hub = harness.cache_repo(world, "iam-hub", stale=("3",), fresh=(), prefix="docker-hub")
    upstream_ecr = harness.cache_repo(world, "iam-ecr", stale=(), fresh=("1",), prefix="ecr-up")
    box.pusher.push_image(public.upstream_repo, "v9.9", layers=1)  # a new tag for discovery
    ssm.put_parameter(
        Name=PREWARM_PARAMETER,
        Type="String",
        # one image under no rule: a planning problem, which the planner publishes
        Value=json.dumps({"prewarm": [f"{public.name}:v9.9", "nowhere/app:1"], "discover": []}),
    )
    # the upstream hosts ask for credentials (Basic): the rule's secret and the ECR token are read
    basic = Reply(401, {"WWW-Authenticate": 'Basic realm="upstream"'})
    world.upstream.inject(lambda path: path == "/v2/", basic)
    for cached in (hub, upstream_ecr):  # the planner's tag listing meets the challenge too
        tags_list = f"/v2/{cached.upstream_repo}/tags/list"
        world.upstream.inject(lambda path, p=tags_list: path.startswith(p), basic, times=1)
    scope = ",".join(c.name for c in (public, hub, upstream_ecr))
    specs = [{"repository": c.name, "pattern": "^v.*"} for c in (hub, upstream_ecr)]
    settings = {
        "repository_include": scope,
        "prewarm_parameter": PREWARM_PARAMETER,
        "discover": json.dumps(specs),
        "keep_generations": 0,  # a verified refresh drops its backup: BatchDeleteImage of backup tags
        "refresh_cooldown_minutes": 0,
        "upstream_role_arns": READ_ROLE,
    }
    # the planner's parameter cache is per container: start with none
    from aws_lambda_powertools.utilities.parameters import base

    base.DEFAULT_PROVIDERS.clear()

    # 1. the scheduled run: discovery (with SSM pre-warm list and upstream tag discovery), refreshes
    #    (one fails and rolls back: PutImage of the old manifest), pre-warm of a new tag, the report
    planner, checker = harness.build(world, **settings), harness.build(world, **settings)
    checker.faults.fail(
        "ecr",
        "BatchGetImage",
        "AccessDeniedException",
        when=lambda p: p.get("imageIds", [{}])[0].get("imageTag") == "broken",
    )
    # one checker's share is two tags here: the scan of the three repositories queues its rest
    # (sqs:SendMessage by the checker), as a big repository's scan does
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ptc_sync.checker.MAX_SCAN_TARGETS", 2)
        out = harness.run_fanout(world, planner, checker, lambda: [])
    assert out.planned is not None
    assert out.planned["status"] == "planned", out.planned
    outcomes = {r.image: r.outcome.value for r in out.results}
    assert outcomes.get(f"{public.name}:stable") == "refreshed", out.text()
    assert outcomes.get(f"{public.name}:broken") == "refresh_failed", out.text()

    # 2. a checker retry after a failure: Powertools deletes the in-progress idempotency record
    again = harness.build(world, **settings)
    again.faults.fail("dynamodb", "BatchGetItem", "ProvisionedThroughputExceededException", times=1)
    harness.run_fanout(world, harness.build(world, **settings), again, lambda: [])

    # 3. on-demand requests and ECR events through the EventBridge rules (the request handler),
    #    one delivered twice (idempotency: the second is answered from the record)
    requests_app = harness.build(world, repository_include=scope)
    harness.wiring.set_app(requests_app.app)
    events = world.client("events")
    request = {
        "Source": stack.request_source,
        "DetailType": "Sync Request",
        "Detail": json.dumps({"repositories": [public.name, "ecr-public/no-such-repository"]}),
        "EventBusName": stack.request_bus_name,
    }
    ecr_event = {
        "Source": "aws.ecr",
        "DetailType": "ECR Pull Through Cache Action",
        "Detail": json.dumps(
            {
                "rule-version": "1",
                "sync-status": "SUCCESS",
                "ecr-repository-prefix": "ecr-public",
                "repository-name": public.name,
                "upstream-registry-url": "public.ecr.aws",
                "image-tag": "pinned",
            }
        ),
    }
    events.put_events(Entries=[request, ecr_event])
    answers = stack.deliver_events()
    assert len(answers) >= 2, answers  # and the emulated ECR's own events, one per import
    tap = next(t for t in stack.taps if t.queue_url.endswith("tap-SyncRequest"))
    duplicate = {
        "version": "0",
        "id": "11111111-2222-4333-8444-555555555555",
        "detail-type": "Sync Request",
        "source": stack.request_source,
        "account": ACCOUNT,
        "time": "2026-03-01T12:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {"repositories": [public.name], "action": "check"},
    }
    tap.handler(duplicate, FakeContext("requests"))
    tap.handler(duplicate, FakeContext("requests"))
    # a request whose work cannot be queued: the handler fails, Powertools deletes its record
    requests_app.faults.fail("sqs", "SendMessageBatch", "AWS.SimpleQueueService.NonExistentQueue", times=3)
    with pytest.raises(QueueError):
        tap.handler({**duplicate, "id": "99999999-2222-4333-8444-555555555555"}, FakeContext("requests"))
    requests_app.faults.heal()
    harness.run_fanout(world, requests_app, requests_app, lambda: [], event={"source": "ptc-sync.manual"})

    # 4. the chat notifier: the report topic's message to the webhooks
    chat_arn = secrets.create_secret(
        Name="ptc-sync/chat-webhooks", SecretString=json.dumps({str(k): v for k, v in WEBHOOK_URLS.items()})
    )["ARN"]
    server = WebhookServer()
    server.start()
    try:
        chat_wiring.set_notifier(
            chat_wiring.build_notifier(
                ChatSettings(chat_secret_arn=chat_arn, chat_secret_max_age=0),
                session=harness.new_session(),
                host_override=overrides(server.url),
                sleep=lambda _s: None,
            )
        )
        notify = recorder.attributed("notifier", harness.notifier_handler())
        summary = notify(sns_event(build_notification(sample_report()).message), FakeContext("notifier"))
        assert summary["status"] == "ok", summary
    finally:
        server.stop()
    return chat_arn


# -- from calls to IAM ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    action: str
    resource: str
    leading_keys: tuple[str, ...] = ()  # DynamoDB partition keys the call touches


def repository_arn(name: str) -> str:
    return f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}"


def partition_keys(value: Any) -> tuple[str, ...]:
    """Every ``pk`` string in a DynamoDB request (Key, Item, RequestItems, key conditions)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            pk = node.get("pk")
            if isinstance(pk, dict) and "S" in pk:
                found.append(pk["S"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(value)
    if ":pk" in (value.get("ExpressionAttributeValues") or {}):
        found.append(value["ExpressionAttributeValues"][":pk"]["S"])
    return tuple(sorted(set(found)))


def needs(call: Call, world: World) -> list[Need]:  # noqa: PLR0911 - one return per service
    p = call.params
    if call.service == "ecr":
        if call.operation in {"DescribePullThroughCacheRules", "GetAuthorizationToken"}:
            return [Need(f"ecr:{call.operation}", "*")]
        names = p.get("repositoryNames") or ([p["repositoryName"]] if "repositoryName" in p else ["*"])
        return [Need(f"ecr:{call.operation}", repository_arn(n)) for n in names]
    if call.service == "dynamodb":
        table = "StateTable.Arn"
        if call.operation == "TransactWriteItems":
            parts = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            return [
                Need(f"dynamodb:{parts[kind]}", table, partition_keys(body))
                for item in p["TransactItems"]
                for kind, body in item.items()
            ]
        if "IndexName" in p:  # a Query on an index: the index's ARN (its keys are not the table's)
            return [Need(f"dynamodb:{call.operation}", f"{table}/index/{p['IndexName']}")]
        return [Need(f"dynamodb:{call.operation}", table, partition_keys(p))]
    if call.service == "sqs":
        assert p["QueueUrl"] == world.box.work_queue_url, p["QueueUrl"]
        return [
            Need(
                "sqs:SendMessage" if "SendMessage" in call.operation else f"sqs:{call.operation}",
                "WorkQueue.Arn",
            )
        ]
    if call.service == "sns":
        assert p["TopicArn"] == world.box.topic_arn
        return [Need(f"sns:{call.operation}", "REPORT_TOPIC")]
    if call.service == "secretsmanager":
        return [Need(f"secretsmanager:{call.operation}", p["SecretId"])]
    if call.service == "ssm":
        return [
            Need(f"ssm:{call.operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{p['Name'].lstrip('/')}")
        ]
    if call.service == "sts":
        return [Need(f"sts:{call.operation}", p["RoleArn"])]
    raise AssertionError(f"unexpected service {call.service} ({call.operation})")


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    leading_keys: tuple[str, ...] | None  # ForAllValues:StringLike dynamodb:LeadingKeys, if any
    effect: str = "Allow"
    not_resources: tuple[str, ...] = ()  # NotResource (the Deny confining ECR writes to rule prefixes)

    def matches(self, need: Need) -> bool:
        if not any(fnmatch.fnmatchcase(need.action, a) for a in self.actions):
            return False
        if self.not_resources:
            return not any(fnmatch.fnmatchcase(need.resource, r) for r in self.not_resources)
        return any(fnmatch.fnmatchcase(need.resource, r) for r in self.resources)

    def allows(self, need: Need) -> bool:
        if self.effect != "Allow" or not self.matches(need):
            return False
        if self.leading_keys is not None:
            return bool(need.leading_keys) and all(
                any(fnmatch.fnmatchcase(key, pattern) for pattern in self.leading_keys)
                for key in need.leading_keys
            )
        return True


def as_list(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def evaluator_for(recorded: Recorded, **overrides: str) -> Evaluator:
    return Evaluator(
        load_template(),
        {
            "ChatWebhookSecretArn": recorded.chat_secret_arn,
            # sts:AssumeRole is granted for exactly ptc-sync's read roles in upstream accounts
            "UpstreamRoleArns": READ_ROLE,
            # writes under the rules in scope, secrets of the rules in scope
            "RulePrefixes": RULE_PREFIXES,
            "UpstreamCredentialArns": recorded.hub_secret_arn,
            **overrides,
        },
    )


def statements_of(evaluator: Evaluator, documents: list[Any], where: str) -> list[Statement]:
    """The statements of policy documents, as the evaluator resolves them for its parameters."""
    topic = evaluator.value({"Ref": "ReportTopic"})
    statements = []
    for policy in documents:
        assert isinstance(policy, dict), f"{where}: only inline policy documents ({policy!r})"
        for st in policy["Statement"]:
            assert st["Effect"] in {"Allow", "Deny"}
            assert st["Effect"] == "Allow" or "NotResource" in st, (
                f"{st['Sid']}: a Deny confines by NotResource"
            )
            condition = st.get("Condition", {})
            keys = condition.get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")
            assert set(condition) <= {"ForAllValues:StringLike"}, f"{st['Sid']}: unexpected condition"
            resources = tuple("REPORT_TOPIC" if r == topic else r for r in as_list(st.get("Resource", [])))
            statements.append(
                Statement(
                    st["Sid"],
                    as_list(st["Action"]),
                    resources,
                    as_list(keys) if keys else None,
                    effect=st["Effect"],
                    not_resources=as_list(st.get("NotResource", [])),
                )
            )
    return statements


def granted(function_id: str, recorded: Recorded, **overrides: str) -> list[Statement]:
    evaluator = evaluator_for(recorded, **overrides)
    policies = evaluator.value(evaluator.template["Resources"][function_id]["Properties"]["Policies"])
    return statements_of(evaluator, policies, function_id)


def permitted(statements: list[Statement], need: Need) -> bool:
    """IAM's answer for one request: an Allow matches and no Deny does."""
    denied = any(s.effect == "Deny" and s.matches(need) for s in statements)
    return not denied and any(s.allows(need) for s in statements)


# -- the checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_call_is_granted(recorded: Recorded, function: str) -> None:
    statements = granted(FUNCTIONS[function], recorded)
    used = {n for c in recorded.calls if c.function == function for n in needs(c, recorded.world)}
    assert used, f"the scenarios exercise {function}"
    missing = sorted(
        f"{n.action} on {n.resource} {list(n.leading_keys) or ''}"
        for n in used
        if n.action not in NOT_GRANTED and not permitted(statements, n)
    )
    assert not missing, f"{function} uses what its role does not grant:\n" + "\n".join(missing)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_grant_is_used(recorded: Recorded, function: str) -> None:
    statements = granted(FUNCTIONS[function], recorded)
    used = {n.action for c in recorded.calls if c.function == function for n in needs(c, recorded.world)}
    unused = sorted(
        f"{s.sid}: {action}"
        for s in statements
        if s.effect == "Allow"
        for action in s.actions
        if action not in used and action not in PERMISSION_ONLY and (function, action) not in FALLBACK_ONLY
    )
    assert not unused, f"{function}'s role grants what it never uses:\n" + "\n".join(unused)


def test_exceptions_are_real(recorded: Recorded) -> None:
    """The documented exceptions are what the recording shows: AssumeRole happens (only for the rule with
    a role), and no permission-only action is ever called."""
    actions = {n.action for c in recorded.calls for n in needs(c, recorded.world)}
    assert not actions & set(PERMISSION_ONLY)
    assume = [c for c in recorded.calls if c.operation == "AssumeRole"]
    assert assume, "the read role of the ECR upstream's account is assumed"
    assert {c.params["RoleArn"] for c in assume} == {READ_ROLE}  # never the rule's customRoleArn


def test_resources_are_scoped(recorded: Recorded) -> None:
    """Every statement names ARNs (or template resources), except for actions without resource-level
    permissions, listed with the reason in NO_RESOURCE_LEVEL."""
    for function_id in FUNCTIONS.values():
        for s in granted(function_id, recorded):
            if s.effect == "Deny":
                continue
            if "*" in s.resources:
                assert set(s.actions) <= set(NO_RESOURCE_LEVEL), (
                    f"{function_id} {s.sid}: Resource * for {s.actions}"
                )
            for action in s.actions:
                assert "*" not in action, f"{function_id} {s.sid}: wildcard action {action}"


def test_dynamodb_writes_are_confined_by_leading_keys(recorded: Recorded) -> None:
    """Every DynamoDB statement of every function is conditioned on the partition keys it may touch,
    but one that names only an index (TagStatesByGroup, tag states only), which may only Query it."""
    for function_id in FUNCTIONS.values():
        for s in granted(function_id, recorded):
            index_only = all("/index/" in r for r in s.resources)  # an index of tag states only
            if any(a.startswith("dynamodb:") for a in s.actions) and not index_only:
                assert s.leading_keys, f"{function_id} {s.sid}: no dynamodb:LeadingKeys condition"
            if index_only and any(a.startswith("dynamodb:") for a in s.actions):
                only_read = tuple(s.actions) == ("dynamodb:Query",)
                assert only_read, f"{function_id} {s.sid}: an index is only read"


def test_ecr_writes_are_confined_to_the_rule_prefixes(recorded: Recorded) -> None:
    """With RulePrefixes set, the checker may write under those prefixes of this account and region
    only; with it empty (every rule) or ROOT, no prefix exists and writes stay on every repository."""
    writes = ("ecr:PutImage", "ecr:BatchDeleteImage", "ecr:CreateRepository", "ecr:BatchImportUpstreamImage")
    elsewhere = [
        repository_arn("other/app"),
        repository_arn("ecr-publicity/app"),  # a prefix of a prefix is not the prefix
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/ecr-public/app",  # another region
        f"arn:aws:ecr:{REGION}:210987654321:repository/ecr-public/app",  # another account
    ]
    narrowed = granted("CheckerFunction", recorded)
    for action in writes:
        for prefix in RULE_PREFIXES.split(","):
            assert permitted(narrowed, Need(action, repository_arn(f"{prefix}/team/app")))
        for arn in elsewhere:
            assert not permitted(narrowed, Need(action, arn)), f"{action} on {arn}"
        # reads are not confined: discovery lists every repository (DescribeRepositories on *)
    assert permitted(narrowed, Need("ecr:DescribeImages", repository_arn("other/app")))
    for prefixes in ("", "ROOT"):
        wide = granted("CheckerFunction", recorded, RulePrefixes=prefixes)
        assert permitted(wide, Need("ecr:PutImage", repository_arn("other/app")))
        assert not any(s.effect == "Deny" for s in wide)


def test_secrets_readable_are_the_credentials_of_the_rules_in_scope(recorded: Recorded) -> None:
    """Not every ecr-pullthroughcache/ secret: the named ones and those of the rules the stack creates."""
    other = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/other-AbCdEf"
    stack_hub = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/stack-hub-AbCdEf"
    for function_id in ("SyncFunction", "CheckerFunction"):
        named = granted(function_id, recorded)
        assert permitted(named, Need("secretsmanager:GetSecretValue", recorded.hub_secret_arn))
        assert not permitted(named, Need("secretsmanager:GetSecretValue", other))
        none = granted(function_id, recorded, UpstreamCredentialArns="")
        assert not any("secretsmanager:GetSecretValue" in s.actions for s in none), function_id
        created = granted(
            function_id,
            recorded,
            UpstreamCredentialArns="",
            CreateRules=f"docker-hub={stack_hub}",
        )
        assert permitted(created, Need("secretsmanager:GetSecretValue", stack_hub))
        assert not permitted(created, Need("secretsmanager:GetSecretValue", other))


def test_only_the_functions_that_queue_work_may_send_to_the_work_queue(recorded: Recorded) -> None:
    """The work queue's policy denies sqs:SendMessage to every principal but the roles of the functions
    the recording shows sending (an identity policy elsewhere in the account is not enough)."""
    senders = {
        c.function for c in recorded.calls if c.service == "sqs" and c.operation.startswith("SendMessage")
    }
    assert senders == {"sync", "requests", "checker"}
    roles = sorted(f"{FUNCTIONS[f]}Role.Arn" for f in senders)
    evaluator = evaluator_for(recorded)
    policy = evaluator.value(evaluator.template["Resources"]["WorkQueuePolicy"]["Properties"])
    assert policy["Queues"] == [evaluator.value({"Ref": "WorkQueue"})]
    deny, allow = policy["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:SendMessage")
    assert deny["Resource"] == allow["Resource"] == "WorkQueue.Arn"
    assert sorted(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]) == roles
    assert (allow["Effect"], allow["Action"]) == ("Allow", "sqs:SendMessage")
    assert sorted(allow["Principal"]["AWS"]) == roles


# -- the consumer policy: what the roles that pull through the cache are given --------------------------


def consumer_statements(recorded: Recorded, **overrides: str) -> list[Statement]:
    evaluator = evaluator_for(recorded, **overrides)
    document = evaluator.value(evaluator.template["Resources"]["CacheConsumerPolicy"]["Properties"])
    return statements_of(evaluator, [document["PolicyDocument"]], "CacheConsumerPolicy")


def pull_needs(recorded: Recorded, repository: str, tag: str) -> list[Need]:
    """A pull as docker makes it through the emulated cache (login, manifest by tag, every blob), in a
    session of its own, turned into what IAM is asked for."""
    session = harness.new_session()
    faults = harness.SessionFaults(session)
    ecr = session.client("ecr")
    ecr.get_authorization_token()
    image = ecr.batch_get_image(
        repositoryName=repository, imageIds=[{"imageTag": tag}], acceptedMediaTypes=sorted(mt.MANIFEST_TYPES)
    )["images"][0]
    manifest = json.loads(image["imageManifest"])
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    ecr.batch_check_layer_availability(repositoryName=repository, layerDigests=blobs)
    for blob in blobs:
        ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=blob)
    calls = [Call("consumer", service, op, REGION, params) for service, op, params in faults.calls]
    return [need for call in calls for need in needs(call, recorded.world)]


def test_the_consumer_policy_lets_a_role_pull_through_the_cache_first_and_later(recorded: Recorded) -> None:
    world = recorded.world
    upstream = world.name("consumer")
    world.box.pusher.push_image(upstream, "1.0", layers=2)
    name = f"ecr-public/{upstream}"
    # a first pull imports: ECR also asks for the two permission-only actions on the caller's behalf
    first = [
        *pull_needs(recorded, name, "1.0"),
        Need("ecr:BatchImportUpstreamImage", repository_arn(name)),
        Need("ecr:CreateRepository", repository_arn(name)),
    ]
    later = pull_needs(recorded, name, "1.0")
    policy = consumer_statements(recorded)

    assert {n.action for n in first} >= {
        "ecr:GetAuthorizationToken",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    }
    assert [n for n in first if not permitted(policy, n)] == []
    assert [n for n in later if not permitted(policy, n)] == []

    without_import = [
        dataclasses.replace(s, actions=tuple(a for a in s.actions if a != "ecr:BatchImportUpstreamImage"))
        for s in policy
    ]
    assert [n.action for n in first if not permitted(without_import, n)] == ["ecr:BatchImportUpstreamImage"]
    assert all(permitted(without_import, n) for n in later), "a later pull reads the cache only"


def test_the_consumer_policy_imports_only_under_the_rule_prefixes(recorded: Recorded) -> None:
    policy = consumer_statements(recorded)
    outside = repository_arn("team/app")
    assert not permitted(policy, Need("ecr:BatchImportUpstreamImage", outside))
    assert not permitted(policy, Need("ecr:CreateRepository", outside))
    assert permitted(policy, Need("ecr:BatchImportUpstreamImage", repository_arn("docker-hub/library/node")))
    assert not any(s.effect == "Allow" and "ecr:PutImage" in s.actions for s in policy), "no writes"
