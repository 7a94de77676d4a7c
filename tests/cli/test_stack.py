"""``--stack-name`` and ``trigger`` against a stack on the testbed's moto server: the CLI reads the
stack's outputs and its sync function's settings, and puts Sync Requests on the stack's bus."""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import pytest

from ptc_sync.refresh import is_backup_tag
from ptc_sync.state import DynamoStateStore
from tests.cli.conftest import STATE_TABLE, Bed
from tests.cli.test_cli_commands import make_stale

STACK = "ptc-sync-cli"
BUS = f"{STACK}-requests"
SOURCE = f"ptc-sync.{STACK}"
FUNCTION = f"{STACK}-SyncFunction"


def deploy(bed: Bed, **environment: str) -> None:
    """The parts of a deployed stack the CLI reads: outputs, the sync function's PTC_* variables, the bus."""
    iam = bed.client("iam")
    role = iam.create_role(
        RoleName=f"{STACK}-sync",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def lambda_handler(event, context):\n    return {}\n")
    bed.client("lambda").create_function(
        FunctionName=FUNCTION,
        Runtime="python3.13",
        Role=role,
        Handler="app.lambda_handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": {"PTC_TABLE_NAME": STATE_TABLE, **environment}},
    )
    outputs = {
        "SyncFunctionName": FUNCTION,
        "StateTableName": STATE_TABLE,
        "RequestBusName": BUS,
        "RequestSource": SOURCE,
    }
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    bed.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    bed.client("events").create_event_bus(Name=BUS)


def capture_requests(bed: Bed) -> str:
    """A rule on the stack's bus matching its Sync Requests, delivering to a queue the test reads."""
    sqs, events = bed.client("sqs"), bed.client("events")
    url = sqs.create_queue(QueueName="cli-trigger-tap")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="sync-request",
        EventBusName=BUS,
        EventPattern=json.dumps({"source": [SOURCE], "detail-type": ["Sync Request"]}),
    )
    events.put_targets(Rule="sync-request", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": arn}])
    return str(url)


def test_trigger_puts_a_sync_request_on_the_stacks_bus(bed: Bed) -> None:
    deploy(bed)
    url = capture_requests(bed)

    result = bed.cli(
        "trigger",
        "ecr-public/app",
        "--tag",
        "1.*",
        "--check",
        "--stack-name",
        STACK,
        "--reason",
        "CI: 1.2 out",
    )

    assert result.code == 0, result.err
    (message,) = bed.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    event: dict[str, Any] = json.loads(message["Body"])
    assert (event["source"], event["detail-type"]) == (SOURCE, "Sync Request")
    assert event["detail"] == {
        "repositories": ["ecr-public/app"],
        "tags": ["1.*"],
        "action": "check",
        "dry_run": False,
        "reason": "CI: 1.2 out",
    }
    assert event["id"] in result.out
    assert BUS in result.out


def test_runs_and_history_read_the_stacks_table(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    """--stack-name alone is enough: the state table is the stack's (no --table, no PTC_TABLE_NAME)."""
    table = os.environ["PTC_TABLE_NAME"]
    monkeypatch.delenv("PTC_TABLE_NAME")
    assert bed.cli("runs").code == 2
    deploy(bed)
    for command in ("runs", "history"):
        result = bed.cli(command, "--stack-name", STACK, "--output", "json")
        assert result.code == 0, result.err
    assert table in str(bed.cli("runs", "no-such-run", "--stack-name", STACK).err)


def test_trigger_without_a_stack_is_a_usage_error(bed: Bed) -> None:
    result = bed.cli("trigger", "ecr-public/app")
    assert result.code == 2
    assert "needs --stack-name" in result.err


SETTINGS = f"/ptc-sync/{STACK}/settings"


@pytest.mark.parametrize(
    "where", ["document", "environment"], ids=["settings document", "function environment"]
)
def test_refresh_with_stack_name_uses_the_stacks_table_and_settings(
    bed: Bed, unique_repo: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """No --table, no PTC_TABLE_NAME: the stack's state table holds the journal; its keep_generations
    0 (not the CLI's default 1; in the settings document, as the stack keeps it) leaves no backup."""
    monkeypatch.delenv("PTC_TABLE_NAME")
    if where == "document":
        bed.client("ssm").put_parameter(
            Name=SETTINGS, Type="String", Value=json.dumps({"keep_generations": 0}), Overwrite=True
        )
        deploy(bed, PTC_SETTINGS_PARAMETER=SETTINGS)
    else:
        deploy(bed, PTC_KEEP_GENERATIONS="0")
    name, _old, new = make_stale(bed, unique_repo, "v")

    without = bed.cli("refresh", f"{name}:v")
    assert without.code == 2
    assert "needs the stack's state table" in without.err

    result = bed.cli("refresh", f"{name}:v", "--stack-name", STACK)
    assert result.code == 0, result.err + result.out
    tags = bed.tags(name)
    assert tags["v"] == new.digest
    assert not [t for t in tags if is_backup_tag(t)], "the stack keeps no generation"
    # the refresh is one of the stack's runs: listed by `runs`, its tag's state recorded
    runs = bed.cli("runs", "--stack-name", STACK, "--output", "json")
    assert runs.code == 0, runs.err
    assert "refreshed" in runs.out
    state = DynamoStateStore(bed.client("dynamodb"), STATE_TABLE)
    recorded = state.tag_state(name, "v")
    assert recorded is not None
    assert recorded.upstream_digest == new.digest


def test_a_missing_stack_is_named_in_a_usage_error(bed: Bed) -> None:
    result = bed.cli("status", "--stack-name", "no-such-stack")
    assert result.code == 2
    assert "no-such-stack" in result.err


def test_an_invalid_settings_document_is_a_usage_error_naming_the_field(bed: Bed) -> None:
    bed.client("ssm").put_parameter(
        Name=SETTINGS, Type="String", Value=json.dumps({"keep_generations": 11}), Overwrite=True
    )
    deploy(bed, PTC_SETTINGS_PARAMETER=SETTINGS)
    result = bed.cli("status", "--stack-name", STACK)
    assert result.code == 2
    assert "settings.keep_generations: must be an integer 0..10" in result.err
