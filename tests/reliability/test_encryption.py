"""Encryption at rest and log retention, read from template.yaml for every resource of each kind (a
resource added later is checked without touching this file): topics under KMS, queues with SQS SSE,
the table with SSE, KMS keys rotated, and every function's log group declared with a retention."""

from __future__ import annotations

from typing import Any

import pytest

from tests.template.cfn import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(kind: str) -> list[str]:
    found = sorted(name for name, r in RESOURCES.items() if r["Type"] == kind)
    assert found, f"the template has no {kind}"
    return found


@pytest.mark.parametrize("topic", of_type("AWS::SNS::Topic"))
def test_topics_are_encrypted_with_kms(topic: str) -> None:
    key = RESOURCES[topic]["Properties"].get("KmsMasterKeyId")
    assert key, f"{topic} has no KmsMasterKeyId"
    if isinstance(key, dict) and "Ref" in key:
        assert RESOURCES[key["Ref"]]["Type"] == "AWS::KMS::Key"


@pytest.mark.parametrize("queue", of_type("AWS::SQS::Queue"))
def test_queues_are_encrypted(queue: str) -> None:
    props = RESOURCES[queue]["Properties"]
    assert props.get("SqsManagedSseEnabled") is True or props.get("KmsMasterKeyId"), f"{queue}: no SSE"


@pytest.mark.parametrize("table", of_type("AWS::DynamoDB::Table"))
def test_tables_are_encrypted(table: str) -> None:
    assert RESOURCES[table]["Properties"].get("SSESpecification", {}).get("SSEEnabled") is True


@pytest.mark.parametrize("key", of_type("AWS::KMS::Key"))
def test_keys_rotate(key: str) -> None:
    assert RESOURCES[key]["Properties"].get("EnableKeyRotation") is True


@pytest.mark.parametrize("function", of_type("AWS::Serverless::Function"))
def test_every_function_has_a_log_group_with_retention(function: str) -> None:
    groups = [
        r["Properties"]
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Logs::LogGroup"
        and function in str(r["Properties"].get("LogGroupName", ""))
        and "/aws/lambda/" in str(r["Properties"].get("LogGroupName", ""))
    ]
    assert len(groups) == 1, f"{function}: {len(groups)} log groups named /aws/lambda/${{{function}}}"
    assert isinstance(groups[0].get("RetentionInDays"), int), f"{function}: the log group keeps logs forever"


@pytest.mark.parametrize("group", of_type("AWS::Logs::LogGroup"))
def test_every_log_group_has_retention(group: str) -> None:
    assert isinstance(RESOURCES[group]["Properties"].get("RetentionInDays"), int)


def test_every_scanner_suppression_gives_its_reason() -> None:
    """`make scan` runs checkov; what it may not flag is listed in each resource's Metadata, reason
    included (a bare id would hide a finding without saying why)."""
    skipped = 0
    for name, resource in RESOURCES.items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV_"), f"{name}: {skip}"
            assert len(skip.get("comment", "")) > 40, f"{name} {skip['id']}: say why"
            skipped += 1
    assert skipped
