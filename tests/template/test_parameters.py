"""template.yaml's parameters are what `sam deploy --guided` asks: at most 12, each one described,
validated, grouped and labelled, with a default that passes its own validation and deploys a working
stack, and each one used. Everything else is the settings document (docs/settings.md)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .cfn import load_template

TEMPLATE = load_template()
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
INTERFACE = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]

SECRETS = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:"

# What `sam deploy --guided` asks, in this order (the template's): the settings most deploys set and
# the few a resource needs at deploy time. A new one must replace one of these or move into the
# settings document (ptc_sync.settings.SettingsDocument).
GUIDED = [
    "ScheduleExpression",
    "DryRun",
    "RulePrefixes",
    "NotificationEmail",
    "AlarmEmail",
    "ChatWebhookSecretArn",
    "CreateRules",
    "RepositoryCreationTemplates",
    "UpstreamCredentialArns",
    "UpstreamRoleArns",
    "RequestPrincipalArns",
    "CheckerConcurrency",
]
# a default a first deploy can take as it is: what each one deploys
SANE_DEFAULTS = {
    "ScheduleExpression": "rate(15 minutes)",  # every 15 minutes, the alarms' periods named for it
    "DryRun": "false",
    "RulePrefixes": "",  # every rule in the account and region
    "NotificationEmail": "",
    "AlarmEmail": "",
    "ChatWebhookSecretArn": "",  # no chat notifier
    "CreateRules": "",  # no rule created: the account's own
    "RepositoryCreationTemplates": "PER_RULE,30,14",  # only with rules the stack creates
    "UpstreamCredentialArns": "",
    "UpstreamRoleArns": "",
    "RequestPrincipalArns": "",  # every Sync Request refused
    "CheckerConcurrency": "5",  # not reserved: deploys in an account with the default quota of 10
}


def test_at_most_twelve_parameters_and_which() -> None:
    assert len(PARAMETERS) <= 12
    assert list(PARAMETERS) == GUIDED


def test_defaults_are_sane() -> None:
    """Every parameter has a default (nothing must be typed for a first deploy), and each default is
    the safe choice: no rule, template, email, chat or request principal unless asked for."""
    assert {name: str(p["Default"]) for name, p in PARAMETERS.items()} == SANE_DEFAULTS


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
    ("name", "value", "ok"),
    [
        ("ChatWebhookSecretArn", f"{SECRETS}ptc/chat-AbC12x", True),
        ("ChatWebhookSecretArn", f"{SECRETS}ptc/chat-AbC1", False),  # no random suffix: not a full ARN
        ("ChatWebhookSecretArn", "ptc/chat", False),  # a full ARN: the notifier's policy is scoped to it
        ("CreateRules", f"docker-hub={SECRETS}ecr-pullthroughcache/hub-AbC123", True),
        ("CreateRules", f"docker-hub={SECRETS}hub-AbC123", False),  # ECR reads ecr-pullthroughcache/ only
        ("CreateRules", f"ghcr={SECRETS}other/x-AbC123", False),
        ("CreateRules", "ROOT", False),
        ("UpstreamCredentialArns", f"{SECRETS}ecr-pullthroughcache/hub-AbC123", True),
        ("UpstreamCredentialArns", f"{SECRETS}hub-AbC123", False),
        ("ScheduleExpression", "rate(1 hour)", True),
        ("ScheduleExpression", "cron(0 6 * * ? *)", True),
        ("ScheduleExpression", "disabled", True),
        ("ScheduleExpression", "off", False),
        ("RepositoryCreationTemplates", "NONE", True),
        ("RepositoryCreationTemplates", "ROOT", True),
        ("RepositoryCreationTemplates", "PER_RULE,7,1", True),
        ("RepositoryCreationTemplates", "NONE,7,1", False),
        ("RepositoryCreationTemplates", "PER_RULE,0,14", False),
        ("RepositoryCreationTemplates", "PER_RULE,7", False),
        ("CheckerConcurrency", "1", False),
        ("CheckerConcurrency", "101", False),
    ],
)
def test_patterns_accept_and_refuse(name: str, value: str, ok: bool) -> None:
    param = PARAMETERS[name]
    if param["Type"] != "CommaDelimitedList":
        assert bool(re.fullmatch(param["AllowedPattern"], value)) is ok
    if param["Type"] == "CommaDelimitedList":  # CloudFormation applies the pattern to each element
        assert all(re.fullmatch(param["AllowedPattern"], part) for part in value.split(",")) is ok
        return
    if ok and "MaxLength" in param:
        assert len(value) <= param["MaxLength"]
