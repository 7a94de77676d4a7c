"""template.yaml's parameters are what `sam deploy --guided` asks: each one described, validated,
grouped and labelled, with a default that passes its own validation, and each one used."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .cfn import load_template

TEMPLATE = load_template()
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
INTERFACE = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]

SECRETS = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"

# Declared but not wired to any function yet: listed here so a new unused parameter fails the suite,
# and so this list fails it once the parameter is used (then remove it here).
UNWIRED: set[str] = set()


def _refs(node: Any) -> set[str]:
    """Names a subtree refers to: Ref, Fn::Sub ${Name} and Fn::If/Condition names alike."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                found |= _refs(value if isinstance(value, list) else [])
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_parameter_is_described_and_validated(name: str) -> None:
    param = PARAMETERS[name]
    description = param.get("Description", "")
    assert isinstance(description, str)
    assert description.strip(), f"{name}: no Description (sam deploy --guided shows it)"
    assert len(description) <= 4000
    assert "Default" in param, f"{name}: no Default, so every deploy must type it"
    validated = {"AllowedValues", "AllowedPattern"} & set(param) or (
        param["Type"] == "Number" and "MinValue" in param and "MaxValue" in param
    )
    assert validated, f"{name}: no AllowedValues, AllowedPattern or MinValue/MaxValue"


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_default_passes_its_own_validation(name: str) -> None:
    param = PARAMETERS[name]
    default = str(param["Default"])
    if "AllowedValues" in param:
        assert default in [str(v) for v in param["AllowedValues"]]
    if "AllowedPattern" in param:
        assert re.fullmatch(param["AllowedPattern"], default), f"{name}: {default!r}"
    if "MinValue" in param:
        assert param["MinValue"] <= float(default) <= param["MaxValue"]
    if "MinLength" in param:
        assert param["MinLength"] <= len(default) <= param["MaxLength"]


def test_every_parameter_is_in_one_group_and_labelled() -> None:
    grouped = [p for group in INTERFACE["ParameterGroups"] for p in group["Parameters"]]
    assert sorted(grouped) == sorted(PARAMETERS), "each parameter exactly once in ParameterGroups"
    assert set(INTERFACE["ParameterLabels"]) == set(PARAMETERS)
    for name, label in INTERFACE["ParameterLabels"].items():
        assert label["default"].strip(), name


def test_every_parameter_is_used() -> None:
    used = _refs({k: v for k, v in TEMPLATE.items() if k not in {"Parameters", "Metadata"}})
    unused = set(PARAMETERS) - used
    assert unused == UNWIRED, "a parameter nothing uses (or one of UNWIRED got wired: update UNWIRED)"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ('[{"repository":"docker-hub/library/python","semver":">=3.13.0 <3.14.0","max_new":3}]', True),
        ("docker-hub/library/python", False),
    ],
)
def test_discover_tags_pattern_takes_a_json_list(value: str, ok: bool) -> None:
    assert bool(re.fullmatch(PARAMETERS["DiscoverTags"]["AllowedPattern"], value)) is ok
    if ok and value:
        assert isinstance(json.loads(value), list)


@pytest.mark.parametrize(
    ("name", "value", "ok"),
    [
        ("ChatWebhookSecretArn", f"{SECRETS}ptc/chat-AbC12x", True),
        ("ChatWebhookSecretArn", f"{SECRETS}ptc/chat-AbC1", False),  # no random suffix: not a full ARN
        ("ChatWebhookSecretArn", "ptc/chat", False),  # a full ARN: the notifier's policy is scoped to it
        ("DockerHubCredentialArn", f"{SECRETS}ecr-pullthroughcache/hub-AbC123", True),
        ("DockerHubCredentialArn", f"{SECRETS}hub-AbC123", False),  # ECR reads ecr-pullthroughcache/ only
        ("GhcrCredentialArn", f"{SECRETS}other/x-AbC123", False),
        ("DockerHubPrefix", "docker-hub", True),
        ("DockerHubPrefix", "ROOT", False),
        ("DockerHubPrefix", "Docker", False),
        ("ChatDashboardUrl", "http://example.com", False),
        ("RepositoryInclude", "docker-hub/library/*, quay/prometheus/[a-m]*", True),
        ("TagInclude", "3.13-*,lts", True),
        ("TagInclude", "lts;rm", False),
    ],
)
def test_patterns_accept_and_refuse(name: str, value: str, ok: bool) -> None:
    param = PARAMETERS[name]
    assert bool(re.fullmatch(param["AllowedPattern"], value)) is ok
    if ok and "MaxLength" in param:
        assert len(value) <= param["MaxLength"]
