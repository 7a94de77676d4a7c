"""The table the tests create is the table template.yaml deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from samcli.yamlhelper import yaml_parse

from .conftest import ATTRIBUTE_DEFINITIONS, GLOBAL_SECONDARY_INDEXES, KEY_SCHEMA, TTL_ATTRIBUTE

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def state_table() -> dict[str, Any]:
    resources = yaml_parse(TEMPLATE.read_text())["Resources"]
    tables = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
    if not tables:
        pytest.skip("template.yaml declares no DynamoDB table yet")
    assert len(tables) == 1
    return dict(tables[0])


def test_template_table_matches_the_test_schema() -> None:
    table = state_table()
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == KEY_SCHEMA
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(ATTRIBUTE_DEFINITIONS, key=str)
    assert table["GlobalSecondaryIndexes"] == GLOBAL_SECONDARY_INDEXES
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
