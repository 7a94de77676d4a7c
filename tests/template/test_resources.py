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
ALL_RULES = {"CreateRules": f"docker-hub={HUB_SECRET},ecr-public,quay,k8s,ghcr={GHCR_SECRET}"}
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


@pytest.mark.parametrize("mode", ["ROOT", "ROOT,7,1"])
def test_root_template_instead_of_per_rule_templates(mode: str) -> None:
    root = Evaluator(TEMPLATE, {**ALL_RULES, "RepositoryCreationTemplates": mode}).created_resources()
    assert root & _of_type("AWS::ECR::RepositoryCreationTemplate") == {"RootRepositoryTemplate"}
    none = Evaluator(TEMPLATE, {**ALL_RULES, "RepositoryCreationTemplates": "NONE"}).created_resources()
    assert not none & _of_type("AWS::ECR::RepositoryCreationTemplate")
    # a ROOT template needs no rule from this stack: it applies to the account's existing rules too
    alone = Evaluator(TEMPLATE, {"RepositoryCreationTemplates": mode}).created_resources()
    assert "RootRepositoryTemplate" in alone


RULE_KINDS = {
    "DockerHubCacheRule": "docker-hub",
    "EcrPublicCacheRule": "ecr-public",
    "QuayCacheRule": "quay",
    "K8sCacheRule": "k8s",
    "GhcrCacheRule": "ghcr",
}


@pytest.mark.parametrize(
    ("create", "created"),
    [
        ("", set()),
        ("quay", {"QuayCacheRule"}),
        ("ecr-public,k8s", {"EcrPublicCacheRule", "K8sCacheRule"}),
        (f"docker-hub={HUB_SECRET}", {"DockerHubCacheRule"}),
        (f"ghcr={GHCR_SECRET},quay", {"GhcrCacheRule", "QuayCacheRule"}),
        (ALL_RULES["CreateRules"], set(RULE_KINDS)),
    ],
)
def test_create_rules_creates_exactly_the_kinds_it_names(create: str, created: set[str]) -> None:
    """One list parameter, each kind with its own name as the prefix and, for docker-hub and ghcr,
    the credential after "="; the other kinds are not created (a kind is not a substring match)."""
    evaluator = Evaluator(TEMPLATE, {"CreateRules": create})
    assert evaluator.created_resources() & set(RULE_KINDS) == created
    for name in created:
        props = evaluator.value(RESOURCES[name]["Properties"])
        assert props["EcrRepositoryPrefix"] == RULE_KINDS[name]
        if name == "DockerHubCacheRule":
            assert props["CredentialArn"] == HUB_SECRET
        if name == "GhcrCacheRule":
            assert props["CredentialArn"] == GHCR_SECRET


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("ecr-public", True),
        (f"docker-hub={HUB_SECRET}", True),
        ("docker-hub", False),  # ECR's Docker Hub rules need credentials: refused before anything is created
        ("ghcr", False),
        (
            f"ghcr={HUB_SECRET.replace('ecr-pullthroughcache/', 'other/')}",
            False,
        ),  # ECR reads that prefix only
        ("quay=arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/q-AbCdEf", False),
        ("Docker-Hub", False),
        ("gcr", False),
    ],
)
def test_create_rules_pattern_refuses_a_credentialed_upstream_without_credentials(
    value: str, ok: bool
) -> None:
    """CloudFormation applies a CommaDelimitedList's AllowedPattern to each element."""
    pattern = TEMPLATE["Parameters"]["CreateRules"]["AllowedPattern"]
    assert all(re.fullmatch(pattern, part) for part in value.split(",")) is ok


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


@pytest.mark.parametrize(
    ("templates", "days"),
    [
        ("PER_RULE,30,14", (30, 14)),
        ("PER_RULE", (30, 14)),
        ("PER_RULE,7,1", (7, 1)),
        ("ROOT,9999,3", (9999, 3)),
    ],
)
def test_creation_templates_keep_tags_mutable_and_expire_backups_and_untagged(
    templates: str, days: tuple[int, int]
) -> None:
    evaluator = Evaluator(TEMPLATE, {**EVERYTHING_ON, "RepositoryCreationTemplates": templates})
    assert evaluator.created_resources() & _of_type("AWS::ECR::RepositoryCreationTemplate")
    for name in _of_type("AWS::ECR::RepositoryCreationTemplate") & evaluator.created_resources():
        props = evaluator.value(RESOURCES[name]["Properties"])
        assert props["AppliedFor"] == ["PULL_THROUGH_CACHE"]
        assert props["ImageTagMutability"] == "MUTABLE", "a refresh re-points tags"
        assert props["EncryptionConfiguration"] == {"EncryptionType": "AES256"}
        assert 100 <= len(props["LifecyclePolicy"]) <= 30720
        rules = json.loads(props["LifecyclePolicy"])["rules"]
        backups, untagged = sorted(rules, key=lambda r: r["rulePriority"])
        assert backups["selection"]["tagPatternList"] == [BACKUP_PREFIX + "*"]
        assert backups["selection"]["countNumber"] == days[0]
        assert untagged["selection"]["tagStatus"] == "untagged"
        assert untagged["selection"]["countNumber"] == days[1]
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


def test_notifier_starts_with_its_environment_and_links_the_dashboard() -> None:
    """The notifier also gets every Globals variable (the sync's settings): it must ignore those and
    accept its own; its messages link this stack's dashboard."""
    expected = f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#dashboards:name="
    evaluator = Evaluator(TEMPLATE, {"ChatWebhookSecretArn": CHAT_SECRET})
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
    time; cfn-lint does not see it through the transform), and reserved concurrency, when asked for
    ("N reserved"), is the same N: below it Lambda would throttle the batches the poller hands over."""
    checker = RESOURCES["CheckerFunction"]["Properties"]
    pattern = TEMPLATE["Parameters"]["CheckerConcurrency"]["AllowedPattern"]
    accepted = [n for n in range(1200) if re.fullmatch(pattern, str(n))]
    assert accepted == list(range(2, 101))
    assert re.fullmatch(pattern, "7 reserved")
    assert not re.fullmatch(pattern, "reserved")
    assert not re.fullmatch(pattern, "7reserved")
    for value, reserve in (("5", None), ("7", None), ("7 reserved", "7"), ("100 reserved", "100")):
        props = Evaluator(TEMPLATE, {"CheckerConcurrency": value}).value(checker)
        maximum = props["Events"]["Work"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        assert maximum == value.split()[0]
        assert props.get("ReservedConcurrentExecutions") == reserve


@pytest.mark.parametrize(
    "overrides", [{}, EVERYTHING_ON, {"CheckerConcurrency": "2"}, {"CheckerConcurrency": "100"}]
)
def test_no_function_reserves_concurrency_by_default(overrides: dict[str, str]) -> None:
    """Lambda refuses a reservation that leaves fewer than 10 unreserved executions, so any reservation
    fails in an account with the default quota of 10: the default deploy reserves none."""
    evaluator = Evaluator(TEMPLATE, overrides)
    for name in FUNCTIONS:
        if evaluator.created(name):
            assert "ReservedConcurrentExecutions" not in evaluator.value(RESOURCES[name]["Properties"]), name
