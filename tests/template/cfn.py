"""A small CloudFormation evaluator for template tests: parameters, conditions, rules and the few
intrinsic functions the environment variables, lifecycle policies and list parameters use.

It knows what template.yaml uses and refuses anything else (an unknown function is an error, so a
new construct cannot be skipped silently). ``Ref`` to a resource gives a fake physical id shaped like
the real one (a topic ARN, a queue URL, a table name), enough for the settings validators, and
named after the stack as CloudFormation names it (so two stacks' values can be compared). Resources
SAM generates from a function (its role, the rules of its events) can be named in GetAtt.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK_NAME = "ptc-sync"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()


def load_template() -> dict[str, Any]:
    return dict(yaml_parse(TEMPLATE.read_text()))


def defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Every parameter's default as CloudFormation passes it (a string)."""
    return {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}


def fake_physical_id(logical_id: str, resource: Mapping[str, Any], stack_name: str = STACK_NAME) -> str:
    kind = resource["Type"]
    if kind == "AWS::SNS::Topic":
        return f"arn:aws:sns:{REGION}:{ACCOUNT}:{stack_name}-{logical_id}-ABC123"
    if kind == "AWS::SQS::Queue":
        return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{stack_name}-{logical_id}-ABC123"
    return f"{stack_name}-{logical_id}-ABC123"


def sam_generated(template: Mapping[str, Any], logical_id: str) -> str | None:
    """The function a SAM-generated logical id belongs to (``<Function>Role``, ``<Function><Event>``)."""
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function" or not logical_id.startswith(name):
            continue
        rest = logical_id[len(name) :]
        if rest == "Role" or rest in resource["Properties"].get("Events", {}):
            return str(name)
    return None


class Evaluator:
    """Conditions and values of ``template`` for one set of parameter values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        overrides: Mapping[str, str] | None = None,
        *,
        stack_name: str = STACK_NAME,
    ) -> None:
        self.template = template
        self.stack_name = stack_name
        self.pseudo = {**PSEUDO, "AWS::StackName": stack_name}
        self.params = {**defaults(template), **dict(overrides or {})}
        unknown = set(overrides or {}) - set(template["Parameters"])
        if unknown:
            raise KeyError(f"not parameters of the template: {sorted(unknown)}")
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = self.truth(self.template["Conditions"][name])
        return self._conditions[name]

    def created(self, logical_id: str) -> bool:
        if logical_id not in self.template["Resources"]:
            owner = sam_generated(self.template, logical_id)
            if owner is None:
                raise KeyError(f"no resource {logical_id} (nor one SAM generates)")
            return self.created(owner)
        name = self.template["Resources"][logical_id].get("Condition")
        return name is None or self.condition(name)

    def created_resources(self) -> set[str]:
        return {r for r in self.template["Resources"] if self.created(r)}

    def truth(self, node: Any) -> bool:
        """A condition expression (Fn::Equals / Not / And / Or, Condition)."""
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"not a condition expression: {node!r}")
        ((fn, arg),) = node.items()
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::Equals":
            left, right = (self.value(a) for a in arg)
            return str(left) == str(right)
        if fn == "Fn::Not":
            return not self.truth(arg[0])
        if fn == "Fn::And":
            return all(self.truth(a) for a in arg)
        if fn == "Fn::Or":
            return any(self.truth(a) for a in arg)
        raise ValueError(f"unsupported condition function {fn}")

    def rule_failures(self) -> list[str]:
        """AssertDescriptions of the template's Rules whose assertions fail for these parameters."""
        failures = []
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.truth(rule["RuleCondition"]):
                continue
            failures += [a["AssertDescription"] for a in rule["Assertions"] if not self.truth(a["Assert"])]
        return failures

    def value(self, node: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per intrinsic function
        """A property value with Ref, Fn::If, Fn::Sub and Fn::GetAtt resolved (NO_VALUE for AWS::NoValue)."""
        if isinstance(node, list):
            return [v for v in (self.value(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, arg),) = node.items()
            if fn == "Ref":
                return self._ref(arg)
            if fn == "Fn::If":
                name, then, other = arg
                return self.value(then if self.condition(name) else other)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::Join":
                separator, items = arg
                return separator.join(str(v) for v in self.value(items))
            if fn == "Fn::Split":
                separator, text = arg
                return str(self.value(text)).split(separator)
            if fn == "Fn::Select":
                index, items = arg
                values = self.value(items)
                position = int(self.value(index))
                if not 0 <= position < len(values):
                    raise ValueError(f"Fn::Select index {position} of {len(values)} values (deploy fails)")
                return values[position]
            if fn == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if not self.created(logical_id):
                    raise ValueError(f"GetAtt of {logical_id}, which these parameters do not create")
                return f"{logical_id}.{attribute}"  # a token: tests compare it, nothing parses it
            if fn.startswith("Fn::") or fn == "Condition":
                raise ValueError(f"unsupported function {fn}")
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            declared = self.template["Parameters"].get(name, {})
            if declared.get("Type") == "CommaDelimitedList":
                return [part.strip() for part in str(self.params[name]).split(",")]
            return self.params[name]
        resource = self.template["Resources"][name]
        if not self.created(name):
            raise ValueError(f"Ref to {name}, which these parameters do not create")
        if resource["Type"] == "AWS::Events::EventBus":  # Ref of a bus is its name
            return self.value(resource["Properties"]["Name"])
        return fake_physical_id(name, resource, self.stack_name)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.value(variables[name]))
            if "." in name:
                return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def environment(evaluator: Evaluator, function_id: str) -> dict[str, str]:
    """The environment CloudFormation gives ``function_id``: Globals merged with its own variables."""
    template = evaluator.template
    merged: dict[str, Any] = {}
    merged.update(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    props = template["Resources"][function_id]["Properties"]
    merged.update(props.get("Environment", {}).get("Variables", {}))
    return {k: str(v) for k, v in evaluator.value(merged).items()}


def sam_transform(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` as CloudFormation receives it: the SAM transform applied offline (no AWS call; the
    code locations replaced by S3 placeholders, as ``sam validate`` does). Parameters and Conditions
    stay, so ``Evaluator`` resolves the result for any parameter values and stack name."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    source = copy.deepcopy(dict(template))
    for resource in source["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    return dict(translator.translate(source, {}, get_managed_policy_map=lambda: {}))
