"""A deployed stack as the CLI sees it: its outputs, the settings its functions run with, its bus.

``ptc-sync --stack-name NAME …`` reads the stack once (CloudFormation DescribeStacks), the sync
function's configuration (Lambda GetFunctionConfiguration) and the settings document its
``PTC_SETTINGS_PARAMETER`` names (SSM GetParameter, validated as the functions validate it): together
exactly the settings the scheduled sync uses (keep_generations, the scope, the state table), so nothing
has to be typed again. The operator needs ``cloudformation:DescribeStacks`` on the stack,
``lambda:GetFunctionConfiguration`` on its SyncFunction and ``ssm:GetParameter`` on its settings
parameter; ``trigger`` also ``events:PutEvents`` on the request bus, which the bus's policy must allow
(RequestPrincipalArns).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ptc_sync.settings import ENV_PREFIX, SettingsError, parse_settings_document, prefixed

SYNC_REQUEST: Final = "Sync Request"
# settings the CLI takes from the stack: never where reports go or work is queued (the CLI notifies
# nobody and queues nothing), and not the pre-warm and discovery lists (the scheduled sync's work)
CLI_SETTINGS: Final = frozenset(
    {
        "table_name",
        "account_id",
        "dry_run",
        "rule_prefixes",
        "repository_include",
        "repository_exclude",
        "tag_include",
        "tag_exclude",
        "pulled_within_days",
        "keep_generations",
        "verify_timeout_seconds",
        "rate_limit_reserve",
        "refresh_cooldown_minutes",
        "schedule_expression",
        "history_days",
    }
)


class StackError(RuntimeError):
    """The stack could not be read (missing, no permission, not a ptc-sync stack)."""


@dataclass(frozen=True, slots=True)
class DeployedStack:
    name: str
    outputs: Mapping[str, str]
    environment: Mapping[str, str]  # the sync function's PTC_* variables
    # the settings document as SyncSettings values (SettingsDocument.settings_values)
    document: Mapping[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """SyncSettings values (field name → the stack's value) the CLI runs with."""
        values = {**self.document, **prefixed(self.environment)}
        return {k: v for k, v in values.items() if k in CLI_SETTINGS}

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise StackError(f"stack {self.name} has no output {key}: not a ptc-sync stack, or an older one")
        return value


def read_stack(session: boto3.Session, name: str) -> DeployedStack:
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {name}: {exc}") from exc
    if not stacks:
        raise StackError(f"no stack {name}")
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    stack = DeployedStack(name, outputs, {})
    function = stack.output("SyncFunctionName")
    try:
        config = session.client("lambda").get_function_configuration(FunctionName=function)
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {name}: the sync function's settings: {exc}") from exc
    variables = config.get("Environment", {}).get("Variables", {})
    environment = {k: v for k, v in variables.items() if k.startswith("PTC_")}
    return DeployedStack(name, outputs, environment, read_settings_document(session, name, environment))


def read_settings_document(
    session: boto3.Session, stack: str, environment: Mapping[str, str]
) -> dict[str, Any]:
    """The stack's settings document as SyncSettings values ({} for a stack without one)."""
    parameter = environment.get(f"{ENV_PREFIX}SETTINGS_PARAMETER")
    if not parameter:
        return {}
    try:
        text = session.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"stack {stack}: its settings document {parameter}: {exc}") from exc
    try:
        return parse_settings_document(json.loads(text)).settings_values()
    except SettingsError as exc:
        raise StackError(f"stack {stack}: {parameter}: {exc}") from None
    except ValueError:
        raise StackError(f"stack {stack}: {parameter} does not hold JSON") from None


def sync_request_detail(
    repositories: Sequence[str], tags: Sequence[str], *, check: bool, dry_run: bool, reason: str | None
) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "repositories": list(repositories),
        "tags": list(tags),
        "action": "check" if check else "refresh",
        "dry_run": dry_run,
    }
    if reason:
        detail["reason"] = reason
    return detail


def put_sync_request(session: boto3.Session, stack: DeployedStack, detail: Mapping[str, Any]) -> str:
    """A Sync Request on the stack's bus, as CI would put it: the event id."""
    entry = {
        "Source": stack.output("RequestSource"),
        "DetailType": SYNC_REQUEST,
        "Detail": json.dumps(detail),
        "EventBusName": stack.output("RequestBusName"),
    }
    try:
        resp = session.client("events").put_events(Entries=[entry])  # type: ignore[list-item]
    except (ClientError, BotoCoreError) as exc:
        raise StackError(f"PutEvents on {entry['EventBusName']}: {exc}") from exc
    (result,) = resp["Entries"]
    if resp.get("FailedEntryCount") or "EventId" not in result:
        raise StackError(
            f"PutEvents on {entry['EventBusName']}: {result.get('ErrorCode')}: {result.get('ErrorMessage')}"
        )
    return str(result["EventId"])
