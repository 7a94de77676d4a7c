"""What template.yaml creates for a set of parameters, and that what it gives the code is what the
code reads: every PTC_* variable a settings field, default values valid, rules and lifecycle policies
consistent with ptc_sync's own constants."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from ptc_sync.chat.settings import ChatSettings, load_chat_settings
from ptc_sync.models import PullThroughCacheRule, UpstreamKind
from ptc_sync.refresh import BACKUP_PREFIX, backup_tag_for
from ptc_sync.settings import ENV_PREFIX, SyncSettings, load_settings
from ptc_sync.upstream import upstream_host

from .cfn import ACCOUNT, REGION, Evaluator, environment, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
FUNCTIONS = sorted(n for n, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function")
NOTIFIER = "ChatNotifierFunction"
OPTIONAL_TYPES = {"AWS::ECR::PullThroughCacheRule", "AWS::ECR::RepositoryCreationTemplate"}
CHAT_RESOURCES = {NOTIFIER, "ChatDeliveryFailedQueue", "ChatNotifierLogGroup", "ChatDeliveryFailedAlarm"}

CHAT_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ptc-sync/chat-AbCdEf"
HUB_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
GHCR_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/ghcr-AbCdEf"
ALL_RULES = {
    "CreateDockerHubRule": "true",
    "DockerHubCredentialArn": HUB_SECRET,
    "CreateEcrPublicRule": "true",
    "CreateQuayRule": "true",
    "CreateK8sRule": "true",
    "CreateGhcrRule": "true",
    "GhcrCredentialArn": GHCR_SECRET,
}
EVERYTHING_ON = {**ALL_RULES, "ChatWebhookSecretArn": CHAT_SECRET}


def _of_type(kind: str) -> set[str]:
    return {n for n, r in RESOURCES.items() if r["Type"] == kind}


def test_optional_resources_are_conditional_and_off_by_default() -> None:
    optional = {n for n, r in RESOURCES.items() if r["Type"] in OPTIONAL_TYPES} | CHAT_RESOURCES
    assert len(optional) == 5 + 6 + len(CHAT_RESOURCES)
    for name in optional:
        assert "Condition" in RESOURCES[name], f"{name} is created in every account"
    created = Evaluator(TEMPLATE).created_resources()
    assert not created & optional, "a default deploy creates no rule, template or chat notifier"
    assert {"SyncFunction", "CheckerFunction", "RequestsFunction", "ReportTopic", "StateTable"} <= created


def test_everything_on_creates_every_rule_its_templates_and_the_notifier() -> None:
    created = Evaluator(TEMPLATE, EVERYTHING_ON).created_resources()
    rules = _of_type("AWS::ECR::PullThroughCacheRule")
    templates = _of_type("AWS::ECR::RepositoryCreationTemplate")
    assert rules <= created
    assert templates & created == templates - {"RootRepositoryTemplate"}
    assert created >= CHAT_RESOURCES


def test_root_template_instead_of_per_rule_templates() -> None:
    root = Evaluator(TEMPLATE, {**ALL_RULES, "RepositoryCreationTemplates": "ROOT"}).created_resources()
    assert root & _of_type("AWS::ECR::RepositoryCreationTemplate") == {"RootRepositoryTemplate"}
    none = Evaluator(TEMPLATE, {**ALL_RULES, "RepositoryCreationTemplates": "NONE"}).created_resources()
    assert not none & _of_type("AWS::ECR::RepositoryCreationTemplate")
    # a ROOT template needs no rule from this stack: it applies to the account's existing rules too
    alone = Evaluator(TEMPLATE, {"RepositoryCreationTemplates": "ROOT"}).created_resources()
    assert "RootRepositoryTemplate" in alone


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({}, False),
        ({"CreateDockerHubRule": "true"}, True),
        ({"CreateDockerHubRule": "true", "DockerHubCredentialArn": HUB_SECRET}, False),
        ({"CreateGhcrRule": "true"}, True),
        ({"CreateGhcrRule": "true", "GhcrCredentialArn": GHCR_SECRET}, False),
        ({"CreateEcrPublicRule": "true", "CreateQuayRule": "true", "CreateK8sRule": "true"}, False),
    ],
)
def test_rules_refuse_a_credentialed_upstream_without_credentials(
    overrides: dict[str, str], refused: bool
) -> None:
    assert bool(Evaluator(TEMPLATE, overrides).rule_failures()) is refused


def test_created_rules_point_where_ptc_sync_maps_them() -> None:
    """Each rule's upstream URL is the host ptc_sync.upstream accepts for its kind, and the stack's
    prefixes are prefixes the sync's settings accept (PTC_RULE_PREFIXES)."""
    evaluator = Evaluator(TEMPLATE, EVERYTHING_ON)
    kinds = set()
    for name in _of_type("AWS::ECR::PullThroughCacheRule"):
        props = evaluator.value(RESOURCES[name]["Properties"])
        kind = UpstreamKind(props["UpstreamRegistry"])
        kinds.add(kind)
        rule = PullThroughCacheRule(
            prefix=props["EcrRepositoryPrefix"],
            upstream_registry=kind,
            upstream_url=props["UpstreamRegistryUrl"],
            credential_arn=props.get("CredentialArn"),
        )
        assert upstream_host(rule)
        needs_credentials = kind in {UpstreamKind.DOCKER_HUB, UpstreamKind.GITHUB}
        assert ("CredentialArn" in props) is needs_credentials, name
    assert len(kinds) == 5
    prefixes = ",".join(
        evaluator.value(RESOURCES[n]["Properties"])["EcrRepositoryPrefix"]
        for n in _of_type("AWS::ECR::PullThroughCacheRule")
    )
    assert load_settings({"PTC_RULE_PREFIXES": prefixes}).rule_prefixes


def test_each_per_rule_template_has_its_rules_prefix() -> None:
    evaluator = Evaluator(TEMPLATE, EVERYTHING_ON)
    rule_prefixes = {
        evaluator.value(RESOURCES[n]["Properties"])["EcrRepositoryPrefix"]
        for n in _of_type("AWS::ECR::PullThroughCacheRule")
    }
    template_prefixes = {
        evaluator.value(RESOURCES[n]["Properties"])["Prefix"]
        for n in evaluator.created_resources() & _of_type("AWS::ECR::RepositoryCreationTemplate")
    }
    assert template_prefixes == rule_prefixes


@pytest.mark.parametrize("overrides", [{}, {"BackupRetentionDays": "7", "UntaggedRetentionDays": "1"}])
def test_creation_templates_keep_tags_mutable_and_expire_backups_and_untagged(
    overrides: dict[str, str],
) -> None:
    evaluator = Evaluator(TEMPLATE, {**EVERYTHING_ON, **overrides})
    for name in _of_type("AWS::ECR::RepositoryCreationTemplate"):
        props = evaluator.value(RESOURCES[name]["Properties"])
        assert props["AppliedFor"] == ["PULL_THROUGH_CACHE"]
        assert props["ImageTagMutability"] == "MUTABLE", "a refresh re-points tags"
        assert props["EncryptionConfiguration"] == {"EncryptionType": "AES256"}
        assert 100 <= len(props["LifecyclePolicy"]) <= 30720
        rules = json.loads(props["LifecyclePolicy"])["rules"]
        backups, untagged = sorted(rules, key=lambda r: r["rulePriority"])
        assert backups["selection"]["tagPatternList"] == [BACKUP_PREFIX + "*"]
        assert backups["selection"]["countNumber"] == int(evaluator.params["BackupRetentionDays"])
        assert untagged["selection"]["tagStatus"] == "untagged"
        assert untagged["selection"]["countNumber"] == int(evaluator.params["UntaggedRetentionDays"])
        for rule in rules:
            assert rule["selection"]["countType"] == "sinceImagePushed"
            assert rule["selection"]["countUnit"] == "days"
            assert rule["action"] == {"type": "expire"}
        pattern = backups["selection"]["tagPatternList"][0]
        assert pattern.count("*") <= 4
        tag = backup_tag_for("3.13-slim", datetime(2026, 11, 27, tzinfo=UTC))
        assert re.fullmatch(re.escape(pattern[:-1]) + ".*", tag), "the pattern matches the refresher's tags"


def test_every_ptc_variable_is_a_settings_field() -> None:
    """A typo in a PTC_* name in template.yaml fails here, not at the first cold start in an account."""
    globals_env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    sync_fields = set(SyncSettings.model_fields)
    for key in globals_env:
        if key.startswith(ENV_PREFIX):
            assert key[len(ENV_PREFIX) :].lower() in sync_fields, f"Globals: {key}"
    for name in FUNCTIONS:
        own = RESOURCES[name]["Properties"].get("Environment", {}).get("Variables", {})
        fields = set(ChatSettings.model_fields) if name == NOTIFIER else sync_fields
        for key in own:
            assert key.startswith(ENV_PREFIX) or key.startswith("POWERTOOLS_"), f"{name}: {key}"
            if key.startswith(ENV_PREFIX):
                assert key[len(ENV_PREFIX) :].lower() in fields, f"{name}: {key}"


@pytest.mark.parametrize("overrides", [{}, EVERYTHING_ON])
def test_sync_functions_start_with_the_default_environment(overrides: dict[str, str]) -> None:
    evaluator = Evaluator(TEMPLATE, overrides)
    for name in set(FUNCTIONS) - {NOTIFIER}:
        env = environment(evaluator, name)
        settings = load_settings({**env, "AWS_REGION": REGION})
        assert settings.topic_arn
        assert settings.queue_url
        assert settings.table_name
        assert settings.dry_run is False


@pytest.mark.parametrize(
    ("dashboard", "expected"),
    [
        ("", f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards:name="),
        ("https://grafana.example.com/d/ptc", "https://grafana.example.com/d/ptc"),
    ],
)
def test_notifier_starts_with_its_environment_and_links_the_dashboard(dashboard: str, expected: str) -> None:
    """The notifier also gets every Globals variable (the sync's settings): it must ignore those and
    accept its own; an empty ChatDashboardUrl links this stack's dashboard."""
    evaluator = Evaluator(TEMPLATE, {"ChatWebhookSecretArn": CHAT_SECRET, "ChatDashboardUrl": dashboard})
    env = environment(evaluator, NOTIFIER)
    assert {"PTC_TOPIC_ARN", "PTC_QUEUE_URL"} <= set(env)
    settings = load_chat_settings(env)
    assert settings.chat_secret_arn == CHAT_SECRET
    assert settings.dashboard_url is not None
    assert settings.dashboard_url.startswith(expected)


def test_notifier_reads_only_its_secret_and_gives_up_into_a_queue() -> None:
    props = Evaluator(TEMPLATE, {"ChatWebhookSecretArn": CHAT_SECRET}).value(
        RESOURCES[NOTIFIER]["Properties"]
    )
    [statement] = props["Policies"][0]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == CHAT_SECRET
    destination = props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert destination["Type"] == "SQS"
    assert destination["Destination"] == "ChatDeliveryFailedQueue.Arn"
    assert props["Events"]["Report"]["Type"] == "SNS"


def test_checker_concurrency_fits_the_sqs_event_source() -> None:
    """The SQS event source's MaximumConcurrency takes 2 to 1000 (CloudFormation refuses 1 at deploy
    time; cfn-lint does not see it through the transform), and reserved concurrency, when asked for,
    must not be below it or Lambda throttles the batches the poller hands over."""
    checker = RESOURCES["CheckerFunction"]["Properties"]
    scaling = checker["Events"]["Work"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert scaling == {"Ref": "CheckerConcurrency"}
    param = TEMPLATE["Parameters"]["CheckerConcurrency"]
    assert 2 <= param["MinValue"] <= param["MaxValue"] <= 1000
    reserved = Evaluator(TEMPLATE, {"ReserveCheckerConcurrency": "true", "CheckerConcurrency": "7"}).value(
        checker
    )
    assert (
        reserved["ReservedConcurrentExecutions"]
        == reserved["Events"]["Work"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        == "7"
    )


@pytest.mark.parametrize("overrides", [{}, EVERYTHING_ON, {"CheckerConcurrency": "2"}])
def test_no_function_reserves_concurrency_by_default(overrides: dict[str, str]) -> None:
    """Lambda refuses a reservation that leaves fewer than 10 unreserved executions, so any reservation
    fails in an account with the default quota of 10: the default deploy reserves none."""
    evaluator = Evaluator(TEMPLATE, overrides)
    for name in FUNCTIONS:
        if evaluator.created(name):
            assert "ReservedConcurrentExecutions" not in evaluator.value(RESOURCES[name]["Properties"]), name
