"""Who may start a refresh and put work on the queue, and which services may use the report key: the
resource policies of template.yaml, evaluated the way IAM evaluates them (an explicit Deny wins over
any Allow, so an identity policy granting an action on ``*`` is never enough where a Deny applies)."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest

from ptc_sync.ondemand import REQUEST_DETAIL_TYPE, request_source

from .cfn import ACCOUNT, REGION, STACK_NAME, Evaluator, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{STACK_NAME}-requests"
CI_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci-deployer"
OPERATOR = f"arn:aws:iam::{ACCOUNT}:role/platform/operator"
ATTACKER = f"arn:aws:iam::{ACCOUNT}:role/some-app-with-events-star"
REQUEST_EVENTS = RESOURCES["RequestsFunction"]["Properties"]["Events"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict[str, Any], principal_arn: str) -> bool:
    """The two ARN operators the policies use, on aws:PrincipalArn (the other keys do not vary here)."""
    for operator, keys in condition.items():
        for key, patterns in keys.items():
            if key != "aws:PrincipalArn":
                continue
            like = any(fnmatch.fnmatchcase(principal_arn, p) for p in _as_list(patterns))
            if operator in {"ArnLike", "ArnEquals"} and not like:
                return False
            if operator in {"ArnNotLike", "ArnNotEquals"} and like:
                return False
    return True


def may_put_request(overrides: dict[str, str], principal_arn: str, *, identity_allows: bool = True) -> bool:
    """Whether ``principal_arn`` (of this account) may PutEvents on the request bus: no Deny of the
    bus policy applies, and the identity policy allows it (the bus's Allow names the account, which
    delegates to IAM)."""
    policy = Evaluator(TEMPLATE, overrides).value(RESOURCES["RequestBus"]["Properties"]["Policy"])
    statements = [
        s
        for s in policy["Statement"]
        if "events:PutEvents" in _as_list(s["Action"]) and BUS_ARN in _as_list(s["Resource"])
    ]
    for s in statements:
        if s["Effect"] == "Deny" and _condition_holds(s.get("Condition", {}), principal_arn):
            return False
    allowed = any(
        s["Effect"] == "Allow"
        and s["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
        and _condition_holds(s.get("Condition", {}), principal_arn)
        for s in statements
    )
    return allowed and identity_allows


def test_requests_are_refused_until_principals_are_named() -> None:
    """By default nobody may put a request, whatever their identity policy says."""
    for principal in (CI_ROLE, OPERATOR, ATTACKER, f"arn:aws:iam::{ACCOUNT}:root"):
        assert not may_put_request({}, principal)


@pytest.mark.parametrize(
    ("named", "principal", "allowed"),
    [
        (CI_ROLE, CI_ROLE, True),
        (CI_ROLE, ATTACKER, False),  # events:PutEvents on * in its own policy: the Deny still applies
        (CI_ROLE, OPERATOR, False),
        (f"{CI_ROLE},{OPERATOR}", OPERATOR, True),
        (f"arn:aws:iam::{ACCOUNT}:role/ci-*", CI_ROLE, True),
        (f"arn:aws:iam::{ACCOUNT}:role/ci-*", ATTACKER, False),
        (CI_ROLE, CI_ROLE.replace(ACCOUNT, "210987654321"), False),  # the same name in another account
    ],
)
def test_only_named_principals_may_put_requests(named: str, principal: str, allowed: bool) -> None:
    assert may_put_request({"RequestPrincipalArns": named}, principal) is allowed


def test_a_named_principal_still_needs_its_own_identity_policy() -> None:
    """The bus's Allow names the account, not the role: the role's policy must grant PutEvents too
    (README shows it)."""
    assert not may_put_request({"RequestPrincipalArns": CI_ROLE}, CI_ROLE, identity_allows=False)


@pytest.mark.parametrize(
    "value",
    [CI_ROLE, f"{CI_ROLE},{OPERATOR}", f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-deployer/*", ""],
)
def test_request_principals_pattern_accepts(value: str) -> None:
    pattern = TEMPLATE["Parameters"]["RequestPrincipalArns"]["AllowedPattern"]
    assert all(re.fullmatch(pattern, part) for part in value.split(","))


def test_the_request_rule_listens_on_the_bus_for_this_stack_and_account_only() -> None:
    rule = Evaluator(TEMPLATE).value(REQUEST_EVENTS["SyncRequest"]["Properties"])
    assert rule["EventBusName"] == f"{STACK_NAME}-requests"
    assert rule["Pattern"] == {
        "source": [request_source(STACK_NAME)],
        "detail-type": [REQUEST_DETAIL_TYPE],
        "account": [ACCOUNT],
    }


def test_ecr_events_stay_on_the_default_bus_and_this_account() -> None:
    rule = Evaluator(TEMPLATE).value(REQUEST_EVENTS["EcrPullThroughCacheAction"]["Properties"])
    assert "EventBusName" not in rule, "ECR puts its events on the default bus"
    assert rule["Pattern"]["source"] == ["aws.ecr"]
    assert rule["Pattern"]["account"] == [ACCOUNT]


def test_dead_letters_come_from_the_two_rules_by_arn() -> None:
    """Not a pattern over generated rule names (those are capped at 64 characters)."""
    policy = Evaluator(TEMPLATE).value(RESOURCES["RequestsDeadLetterQueuePolicy"]["Properties"])
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        f"RequestsFunction{event}.Arn" for event in REQUEST_EVENTS
    ]
    for event in Evaluator(TEMPLATE).value(REQUEST_EVENTS).values():
        assert event["Properties"]["DeadLetterConfig"]["Arn"] == "RequestsDeadLetterQueue.Arn"


def test_only_the_stack_functions_that_queue_work_may_send_to_the_work_queue() -> None:
    """The planner and the request function queue runs; the checker queues the rest of a big
    repository's scan. No other principal may send, whatever its identity policy says."""
    policy = Evaluator(TEMPLATE).value(RESOURCES["WorkQueuePolicy"]["Properties"])
    senders = ["SyncFunctionRole.Arn", "RequestsFunctionRole.Arn", "CheckerFunctionRole.Arn"]
    deny, allow = policy["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:SendMessage")
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": senders}}
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == (
        "Allow",
        {"AWS": senders},
        "sqs:SendMessage",
    )
    assert deny["Resource"] == allow["Resource"] == "WorkQueue.Arn"
    checker = Evaluator(TEMPLATE).value(RESOURCES["CheckerFunction"]["Properties"]["Policies"])
    sends = [s for doc in checker for s in doc.get("Statement", []) if "sqs:SendMessage" in str(s)]
    assert [(s["Sid"], s["Resource"]) for s in sends] == [("QueueScanRest", "WorkQueue.Arn")]


def test_the_report_key_serves_cloudwatch_alarms_of_this_account_only() -> None:
    """The only service principal is CloudWatch (alarms publish to AlarmTopic), conditioned on the
    account and on alarm ARNs; no EventBridge rule targets a topic, so events.amazonaws.com is not there."""
    statements = Evaluator(TEMPLATE).value(RESOURCES["ReportKey"]["Properties"]["KeyPolicy"])["Statement"]
    services = [s for s in statements if "Service" in s["Principal"]]
    assert [s["Principal"]["Service"] for s in services] == ["cloudwatch.amazonaws.com"]
    (alarms,) = services
    assert alarms["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*"},
    }
    topics = {n for n, r in RESOURCES.items() if r["Type"] == "AWS::SNS::Topic"}
    for name, resource in RESOURCES.items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            assert resource["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    for event in REQUEST_EVENTS.values():
        assert not {t for t in topics if t in str(event)}, "an EventBridge rule would need the key"


def _statements(function_id: str, overrides: dict[str, str]) -> list[dict[str, Any]]:
    evaluator = Evaluator(TEMPLATE, overrides)
    policies = evaluator.value(RESOURCES[function_id]["Properties"]["Policies"])
    return [s for p in policies for s in p["Statement"]]


@pytest.mark.parametrize("function_id", ["SyncFunction", "CheckerFunction"])
def test_no_function_reads_every_pull_through_cache_secret(function_id: str) -> None:
    hub = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/hub-AbCdEf"
    named = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/quay-AbCdEf"
    cases = {
        "default": ({}, []),
        "stack rule": ({"CreateRules": f"docker-hub={hub}"}, [hub]),
        "stack rules": ({"CreateRules": f"ecr-public,ghcr={named},docker-hub={hub},quay"}, [hub, named]),
        "named": ({"UpstreamCredentialArns": named}, [named]),
        "both": ({"CreateRules": f"docker-hub={hub}", "UpstreamCredentialArns": named}, [hub, named]),
    }
    for label, (overrides, expected) in cases.items():
        readable = [
            r
            for s in _statements(function_id, overrides)
            if "secretsmanager:GetSecretValue" in _as_list(s["Action"])
            for r in _as_list(s["Resource"])
        ]
        assert readable == expected, label


def test_checker_writes_only_under_the_rule_prefixes() -> None:
    (deny,) = [
        s
        for s in _statements("CheckerFunction", {"RulePrefixes": "docker-hub,quay"})
        if s["Effect"] == "Deny"
    ]
    assert set(deny["Action"]) == {
        "ecr:PutImage",
        "ecr:BatchDeleteImage",
        "ecr:CreateRepository",
        "ecr:BatchImportUpstreamImage",
    }
    assert deny["NotResource"] == [
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/docker-hub/*",
        "arn:*:ecr:*:*:repository/quay/*",  # wider than the Allow: the exception to the Deny only
    ]
    for prefixes in ("", "ROOT"):
        assert not [
            s for s in _statements("CheckerFunction", {"RulePrefixes": prefixes}) if s["Effect"] == "Deny"
        ]


ECR_READS = {"ecr:DescribeRepositories", "ecr:DescribeImages"}


@pytest.mark.parametrize(
    ("prefixes", "scope"),
    [("", "*"), ("ROOT", "*"), ("docker-hub", "docker-hub/*"), ("docker-hub,quay", "*"), ("a/b", "a/b/*")],
)
@pytest.mark.parametrize("function_id", ["SyncFunction", "CheckerFunction", "RequestsFunction"])
def test_one_rule_prefix_scopes_the_ecr_reads(function_id: str, prefixes: str, scope: str) -> None:
    """RepositoryScope is derived: one rule prefix scopes the reads to its repositories (several are
    confined for writes by the checker's Deny; ROOT and every rule need every repository)."""
    resources = {
        r
        for s in _statements(function_id, {"RulePrefixes": prefixes})
        if s["Effect"] == "Allow" and ECR_READS & set(_as_list(s["Action"]))
        for r in _as_list(s["Resource"])
    }
    assert resources == {f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{scope}"}
    consumer = Evaluator(TEMPLATE, {"RulePrefixes": prefixes}).value(
        RESOURCES["CacheConsumerPolicy"]["Properties"]
    )
    (pull,) = [s for s in consumer["PolicyDocument"]["Statement"] if s["Sid"] == "PullThroughTheCache"]
    assert pull["Resource"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{scope}"


@pytest.mark.parametrize("function_id", ["SyncFunction", "CheckerFunction", "RequestsFunction"])
def test_functions_read_only_their_stacks_settings_parameter(function_id: str) -> None:
    evaluator = Evaluator(TEMPLATE)
    name = evaluator.value({"Ref": "SettingsParameter"})
    ssm = [
        s for s in _statements(function_id, {}) if any(a.startswith("ssm:") for a in _as_list(s["Action"]))
    ]
    assert [(s["Action"], s["Resource"]) for s in ssm] == [
        ("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ptc-sync/{STACK_NAME}/settings")
    ]
    assert (
        evaluator.value(RESOURCES["SettingsParameter"]["Properties"])["Name"]
        == f"/ptc-sync/{STACK_NAME}/settings"
    )
    assert name
