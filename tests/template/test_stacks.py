"""Two stacks of ptc-sync in one account and region: the template, as CloudFormation receives it after
the SAM transform, names nothing the same in both (physical names, metric dimensions, the request
bus and its source), so a second deploy neither fails on a taken name nor mixes its metrics, alarms
and requests with the first one's."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from ptc_sync.ondemand import request_source

from .cfn import Evaluator, environment, load_template, sam_transform
from .test_resources import CHAT_SECRET

STACKS = ("ptc-sync", "ptc-sync-b")  # one name a prefix of the other: a "<stack>-*" pattern matches both
CUSTOM_NAMESPACE = "PtcSync"

# The property that sets each resource type's physical name (absent: CloudFormation generates one
# from the stack name, the logical id and a random suffix).
NAME_PROPERTY = {
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Role": "RoleName",
    "AWS::KMS::Key": None,
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SSM::Parameter": "Name",
    # account-level singletons by design: one rule and one creation template per prefix and account
    # (optional, off by default; test_account_setup_is_the_one_shared_part)
    "AWS::ECR::PullThroughCacheRule": "EcrRepositoryPrefix",
    "AWS::ECR::RepositoryCreationTemplate": "Prefix",
    # no physical name of their own
    # identified by its principal: the stack's own checker role, which carries the stack's name
    "AWS::ECR::PullTimeUpdateExclusion": None,
    "AWS::Lambda::EventInvokeConfig": None,
    "AWS::Lambda::EventSourceMapping": None,
    "AWS::Lambda::Permission": None,
    "AWS::SNS::Subscription": None,
    "AWS::SQS::QueuePolicy": None,
}
ACCOUNT_SINGLETONS = {"AWS::ECR::PullThroughCacheRule", "AWS::ECR::RepositoryCreationTemplate"}
VARIANTS = {"shipped": {}, "chat-on": {"ChatWebhookSecretArn": CHAT_SECRET}}


@cache
def transformed() -> dict[str, Any]:
    return sam_transform(load_template())


def physical_names(stack: str, overrides: dict[str, str]) -> dict[str, str]:
    """logical id → explicit physical name, for every created resource that sets one."""
    template = transformed()
    evaluator = Evaluator(template, overrides, stack_name=stack)
    names = {}
    for logical_id in sorted(evaluator.created_resources()):
        resource = template["Resources"][logical_id]
        prop = NAME_PROPERTY[resource["Type"]]
        if prop and prop in resource.get("Properties", {}) and resource["Type"] not in ACCOUNT_SINGLETONS:
            names[logical_id] = str(evaluator.value(resource["Properties"][prop]))
    return names


def test_every_resource_type_is_known() -> None:
    """A new resource type must say here how it is named, or the collision test cannot see it."""
    kinds = {r["Type"] for r in transformed()["Resources"].values()}
    assert kinds <= set(NAME_PROPERTY), sorted(kinds - set(NAME_PROPERTY))


def test_the_schedule_is_not_named_by_sam() -> None:
    """SAM names a ScheduleV2 schedule <Function><Event> unless OmitName: the same in every stack."""
    schedule = load_template()["Resources"]["SyncFunction"]["Properties"]["Events"]["Schedule"]
    assert schedule["Properties"]["OmitName"] is True
    (generated,) = [r for r in transformed()["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"]
    assert "Name" not in generated["Properties"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_two_stacks_name_nothing_the_same(variant: str) -> None:
    first, second = (physical_names(stack, VARIANTS[variant]) for stack in STACKS)
    assert first, "the stack names some resources (the request bus, the dashboard, the log groups)"
    assert set(first.values()).isdisjoint(second.values()), set(first.values()) & set(second.values())
    for stack, names in zip(STACKS, (first, second), strict=True):
        for logical_id, name in names.items():
            assert stack in name, f"{logical_id}: {name!r} does not carry the stack name"


def test_no_policy_matches_a_stack_name_pattern() -> None:
    """A "<stack>-*" pattern in a policy (the old dead-letter condition) also matches "<stack>-b"."""
    stack = STACKS[0]
    evaluator = Evaluator(transformed(), {"ChatWebhookSecretArn": CHAT_SECRET}, stack_name=stack)
    for logical_id in evaluator.created_resources():
        text = json.dumps(evaluator.value(transformed()["Resources"][logical_id].get("Properties", {})))
        assert f"{stack}-*" not in text, logical_id


def _alarms(evaluator: Evaluator) -> dict[str, dict[str, Any]]:
    template = evaluator.template
    return {
        n: template["Resources"][n]["Properties"]
        for n in evaluator.created_resources()
        if template["Resources"][n]["Type"] == "AWS::CloudWatch::Alarm"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_every_alarm_watches_its_own_stack(stack: str) -> None:
    """ptc-sync's own metrics carry the stack as their service dimension; AWS metrics name the
    stack's own function or queue."""
    template = transformed()
    evaluator = Evaluator(template, {"ChatWebhookSecretArn": CHAT_SECRET}, stack_name=stack)
    alarms = _alarms(evaluator)
    assert len(alarms) >= 7
    for name, props in alarms.items():
        dimensions = props["Dimensions"]
        if props["Namespace"] == CUSTOM_NAMESPACE:
            assert evaluator.value(dimensions) == [{"Name": "service", "Value": stack}], name
        else:
            assert props["Namespace"].startswith("AWS/"), name
            for dimension in dimensions:
                ref = dimension["Value"]
                target = ref.get("Ref") or ref.get("Fn::GetAtt", [None])[0]
                assert target in template["Resources"], f"{name}: {dimension} is not the stack's resource"


@pytest.mark.parametrize("stack", STACKS)
def test_every_function_emits_metrics_as_its_stack(stack: str) -> None:
    """Powertools takes the service dimension of every metric from POWERTOOLS_SERVICE_NAME."""
    evaluator = Evaluator(load_template(), {"ChatWebhookSecretArn": CHAT_SECRET}, stack_name=stack)
    functions = [
        n for n, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    ]
    for name in functions:
        env = environment(evaluator, name)
        assert env["POWERTOOLS_SERVICE_NAME"] == stack, name
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == CUSTOM_NAMESPACE


@pytest.mark.parametrize("stack", STACKS)
def test_the_dashboard_shows_its_own_stack_only(stack: str) -> None:
    template = transformed()
    evaluator = Evaluator(template, {}, stack_name=stack)
    body = json.loads(evaluator.value(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]))
    metrics = [m for w in body["widgets"] for m in w["properties"].get("metrics", [])]
    searches = [m[0]["expression"] for m in metrics if isinstance(m[0], dict)]
    assert searches
    for expression in searches:
        assert f'service="{stack}"' in expression, expression
    series = [m for m in metrics if isinstance(m[0], str)]
    namespace = None
    for row in series:  # "." repeats the row above's value
        namespace = namespace if row[0] == "." else row[0]
        if namespace == CUSTOM_NAMESPACE:
            assert row[2:4] in (["service", stack], [".", "."]), row


def test_requests_are_per_stack() -> None:
    """Each stack has its own request bus and request source: a request for one never runs the other."""
    template = load_template()
    seen = set()
    for stack in STACKS:
        evaluator = Evaluator(template, {}, stack_name=stack)
        rule = evaluator.value(
            template["Resources"]["RequestsFunction"]["Properties"]["Events"]["SyncRequest"]
        )
        bus = rule["Properties"]["EventBusName"]
        (source,) = rule["Properties"]["Pattern"]["source"]
        assert (
            source == request_source(stack) == evaluator.value(template["Outputs"]["RequestSource"]["Value"])
        )
        assert bus == evaluator.value({"Ref": "RequestBus"})
        seen |= {bus, source}
    assert len(seen) == 2 * len(STACKS)


def test_account_setup_is_the_one_shared_part() -> None:
    """Pull-through cache rules and creation templates exist once per prefix in an account: they are
    off by default, so only one stack (or none) creates them."""
    template = load_template()
    evaluator = Evaluator(template)
    for name, resource in template["Resources"].items():
        if resource["Type"] in ACCOUNT_SINGLETONS:
            assert not evaluator.created(name), name


def test_stack_name_patterns_accept_what_cloudformation_does() -> None:
    assert request_source("a") == "ptc-sync.a"
    assert request_source("A" + "b-1" * 42) == f"ptc-sync.A{'b-1' * 42}"
    for bad in ("", "1stack", "my_stack", "a" * 129, "x.y"):
        with pytest.raises(ValueError, match="not a CloudFormation stack name"):
            request_source(bad)
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", STACKS[1])
