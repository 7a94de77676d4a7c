"""The settings document: one validator (ptc_sync.settings.SettingsDocument) and one documented JSON
Schema (docs/settings.schema.json) that agree on every sample under events/ and on every field, its
default and its bounds; an invalid document is refused whole with each bad field named; the
container's App follows the document (Powertools Parameters, transform json, max_age) and nothing
is built from a half-valid one."""

from __future__ import annotations

import io
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from aws_lambda_powertools.utilities.parameters import base
from moto import mock_aws
from pydantic import BaseModel

from ptc_sync import metrics, wiring
from ptc_sync.logs import service_logger
from ptc_sync.settings import (
    MetricsDocument,
    SettingsDocument,
    SettingsError,
    SyncSettings,
    load_settings,
    parse_settings_document,
)
from ptc_sync.work import DiscoverySpec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "settings.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SAMPLES = sorted((ROOT / "events").glob("settings-*.json"))
PAGE = (ROOT / "docs" / "settings.md").read_text()


def sample(name: str) -> Any:
    return json.loads((ROOT / "events" / f"settings-{name}.json").read_text())


def schema_accepts(document: Any) -> bool:
    return not list(VALIDATOR.iter_errors(document))


def validator_accepts(document: Any) -> bool:
    try:
        parse_settings_document(document)
    except SettingsError:
        return False
    return True


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_there_are_minimal_full_and_invalid_samples() -> None:
    assert {p.stem for p in SAMPLES} >= {"settings-minimal", "settings-full", "settings-invalid"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_each_sample_gets_the_same_verdict_from_schema_and_validator(path: Path) -> None:
    document = json.loads(path.read_text())
    expected = "invalid" not in path.stem
    assert schema_accepts(document) is expected
    assert validator_accepts(document) is expected


def test_the_full_sample_sets_every_field() -> None:
    full = sample("full")
    assert set(full) == set(SCHEMA["properties"])
    assert set(full["metrics"]) == set(SCHEMA["properties"]["metrics"]["properties"])


def test_the_invalid_sample_is_refused_with_every_bad_field_named() -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings_document(sample("invalid"))
    message = str(info.value)
    assert message.startswith("invalid settings document: ")
    for named in (
        "settings.keep_generations: must be an integer 0..10",
        "settings.notify_always: must be true or false",
        "settings.discover[0].max_new: must be an integer 1..50",
        "settings.metrics.per_rulee: not a settings field",
        "settings.keep_generation: not a settings field",
    ):
        assert named in message
    schema_paths = {e.json_path for e in VALIDATOR.iter_errors(sample("invalid"))}
    assert {"$.keep_generations", "$.notify_always", "$.discover[0].max_new"} <= schema_paths


def _model_fields(model: type[BaseModel]) -> dict[str, Any]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


@pytest.mark.parametrize(
    ("model", "properties"),
    [
        (SettingsDocument, SCHEMA["properties"]),
        (MetricsDocument, SCHEMA["properties"]["metrics"]["properties"]),
        (DiscoverySpec, SCHEMA["$defs"]["discoverySpec"]["properties"]),
    ],
    ids=["document", "metrics", "discover"],
)
def test_every_validator_field_is_in_the_schema_and_back(
    model: type[BaseModel], properties: dict[str, Any]
) -> None:
    assert set(_model_fields(model)) == set(properties)


@pytest.mark.parametrize("name", sorted(set(SettingsDocument.model_fields) - {"schema_"}))
def test_schema_and_validator_agree_on_each_default_and_bound(name: str) -> None:
    info = SettingsDocument.model_fields[name]
    prop = SCHEMA["properties"][name]
    default = info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = default.model_dump()
    if isinstance(default, dict):
        assert prop["default"] == {}
        assert default == {k: p["default"] for k, p in prop["properties"].items()}
    else:
        assert prop["default"] == default, name
    if info.annotation is int:
        assert prop["type"] == "integer"
        lows = [m.ge for m in info.metadata if hasattr(m, "ge")]
        highs = [m.le for m in info.metadata if hasattr(m, "le")]
        assert (prop["minimum"], prop["maximum"]) == (lows[0], highs[0]), name
        for value, ok in ((lows[0], True), (highs[0], True), (lows[0] - 1, False), (highs[0] + 1, False)):
            assert schema_accepts({name: value}) is ok is validator_accepts({name: value}), (name, value)
        assert schema_accepts({name: str(lows[0])}) is False is validator_accepts({name: str(lows[0])})
    if info.annotation is bool:
        assert prop["type"] == "boolean"
        for value in (1, "true", None):
            assert schema_accepts({name: value}) is False is validator_accepts({name: value})


@pytest.mark.parametrize(
    "document",
    [
        {"unknown": 1},
        {"metrics": {"per_rule": 1}},
        {"log_level": "TRACE"},
        {"tag_include": "lts"},
        {"tag_include": ["lts;rm"]},
        {"discover": [{"repository": "docker-hub/library/python"}]},
        {"discover": [{"repository": "docker-hub/library/python", "semver": "^3", "pattern": "^3"}]},
        {"prewarm": ["docker-hub/library/python"]},
        {"prewarm": ["python:3.13", "python@sha256:abc"]},
        [],
        "{}",
    ],
)
def test_both_refuse_the_same_bad_documents(document: Any) -> None:
    assert schema_accepts(document) is False
    assert validator_accepts(document) is False


@pytest.mark.parametrize("name", sorted(set(SCHEMA["properties"]) - {"$schema"}))
def test_docs_settings_md_explains_every_field(name: str) -> None:
    assert f"`{name}`" in PAGE


def test_the_document_becomes_sync_settings() -> None:
    settings = load_settings({"PTC_DRY_RUN": "true"}, sample("full"))
    assert isinstance(settings, SyncSettings)
    assert settings.dry_run is True  # from the environment (a deploy-time parameter)
    assert settings.keep_generations == 2
    assert settings.repository_include == ("docker-hub/library/*", "quay/prometheus/*")
    assert settings.prewarm_images == ("docker-hub/library/python:3.13-slim", "docker-hub/library/node:lts")
    assert settings.discover[0].variant == "slim"
    assert settings.metrics_run_counts is True
    assert settings.metrics_per_rule is True
    assert settings.metrics_per_outcome is False
    assert settings.history_days == 30
    defaults = load_settings({}, sample("minimal"))
    assert defaults == load_settings({})


def test_a_variable_wins_over_the_document() -> None:
    """The stack sets no variable a document field also names; tests and the CLI may."""
    assert load_settings({"PTC_KEEP_GENERATIONS": "0"}, {"keep_generations": 3}).keep_generations == 0


def test_an_old_prewarm_document_is_a_settings_document() -> None:
    """{"prewarm": [...], "discover": [...]}: what PrewarmParameterName pointed at moves unchanged."""
    old = {
        "prewarm": ["ecr-public/nginx/nginx:1.27"],
        "discover": [{"repository": "ecr-public/a", "pattern": "^v"}],
    }
    settings = load_settings({}, old)
    assert settings.prewarm_images == ("ecr-public/nginx/nginx:1.27",)
    assert settings.discover[0].pattern == "^v"


# -- the container follows the document ------------------------------------------------------------


class FakeApp:
    def __init__(self, settings: SyncSettings) -> None:
        self.settings = settings


def container(
    documents: list[Any], environ: dict[str, str] | None = None
) -> tuple[wiring.SettingsContainer, list[SyncSettings]]:
    built: list[SyncSettings] = []

    def read(name: str) -> Any:
        assert name == "/ptc-sync/test/settings"
        return documents[0]

    def build(settings: SyncSettings) -> Any:
        built.append(settings)
        return FakeApp(settings)

    env = {"PTC_SETTINGS_PARAMETER": "/ptc-sync/test/settings", **(environ or {})}
    return wiring.SettingsContainer(env, read=read, build=build), built


def test_the_app_is_built_once_per_document_and_again_when_it_changes() -> None:
    documents: list[Any] = [{"keep_generations": 2}]
    box, built = container(documents)
    first = box.get()
    assert box.get() is first
    assert len(built) == 1
    assert first.settings.keep_generations == 2
    documents[0] = {"keep_generations": 3}
    assert box.get().settings.keep_generations == 3
    assert len(built) == 2


def test_an_invalid_document_builds_nothing_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    documents: list[Any] = [{"keep_generations": 2}]
    box, built = container(documents)
    box.get()
    documents[0] = sample("invalid")
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError, match=r"settings\.keep_generations"):
        box.get()
    with pytest.raises(SettingsError):  # every invocation until it is fixed: never the old settings
        box.get()
    assert len(built) == 1
    (record,) = [r for r in caplog.records if "settings rejected" in r.getMessage()][:1]
    assert "settings.keep_generations: must be an integer 0..10" in record.__dict__["reason"]
    documents[0] = {"keep_generations": 0}
    assert box.get().settings.keep_generations == 0


def test_the_metric_opt_ins_follow_the_document() -> None:
    before = metrics.configured()
    try:
        box, _built = container([{"metrics": {"per_rule": True, "per_host": True}}])
        box.get()
        assert metrics.configured() == metrics.MetricOptions(per_rule=True, per_host=True)
        box, _built = container([{}])
        box.get()
        assert metrics.configured() == metrics.MetricOptions()
    finally:
        metrics.configure(before)


def test_the_documents_log_level_is_the_service_loggers() -> None:
    """The document's log_level lands on the function's Powertools Logger (``service_logger``)."""
    service = f"level-test-{uuid.uuid4().hex}"
    stream = io.StringIO()
    logger = service_logger(service=service, stream=stream)
    environ = {"POWERTOOLS_SERVICE_NAME": service}
    try:
        container([{"log_level": "DEBUG"}], environ)[0].get()
        logger.debug("shown")
        container([{"log_level": "WARNING"}], environ)[0].get()
        logger.info("hidden")
        logger.warning("shown too")
    finally:
        logger.setLevel("INFO")
    messages = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert messages == ["shown", "shown too"]


def test_a_pinned_app_reads_no_document() -> None:
    box, built = container([sample("invalid")])
    pinned: Any = FakeApp(load_settings({}))
    box.set(pinned)
    assert box.get() is pinned
    box.set(None)
    with pytest.raises(SettingsError):
        box.get()
    assert built == []


@mock_aws
def test_the_document_is_read_through_powertools_parameters_and_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    base.DEFAULT_PROVIDERS.clear()
    ssm = boto3.client("ssm", region_name="us-east-1")
    name = "/ptc-sync/test/settings"
    ssm.put_parameter(Name=name, Type="String", Value=json.dumps({"keep_generations": 4}))
    assert wiring.read_settings_document(name) == {"keep_generations": 4}
    ssm.put_parameter(Name=name, Type="String", Value="{not json", Overwrite=True)
    # cached for SETTINGS_MAX_AGE seconds: the container's next invocations reuse the document
    assert wiring.read_settings_document(name) == {"keep_generations": 4}
    assert wiring.SETTINGS_MAX_AGE == 300
    base.DEFAULT_PROVIDERS.clear()
    with pytest.raises(SettingsError, match="does not hold JSON"):
        wiring.read_settings_document(name)
    base.DEFAULT_PROVIDERS.clear()
