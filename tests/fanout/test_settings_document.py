"""The stack's settings document through the deployed wiring: the handlers get their App from a
container that reads the document from SSM (as in Lambda). A bad document stops the planner before
it queues anything and returns the checker's batch to the queue; once fixed, the same run goes on
with the document's settings. Nothing runs half-valid, nothing is lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ptc_sync import wiring
from ptc_sync.refresh import is_backup_tag
from ptc_sync.settings import SettingsDocument, SettingsError, SyncSettings
from testbed.lambdas import Stack
from testbed.runtime import Delivery
from testbed.sandbox import Sandbox
from tests.fanout.conftest import EVENTS, load_event

PARAMETER = "/ptc-sync/ptc-sync/settings"
DOCUMENT_FIELDS = frozenset(SettingsDocument().settings_values())


def lambda_container(box: Sandbox) -> wiring.SettingsContainer:
    """What a Lambda container does, on the sandbox: the document from SSM, the App from the sandbox."""

    def read(name: str) -> Any:
        return json.loads(box.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])

    def build(settings: SyncSettings) -> wiring.App:
        return box.build_app(**{k: v for k, v in settings.model_dump().items() if k in DOCUMENT_FIELDS})

    return wiring.SettingsContainer({"PTC_SETTINGS_PARAMETER": PARAMETER}, read=read, build=build)


def put(box: Sandbox, document: dict[str, Any]) -> None:
    box.client("ssm").put_parameter(Name=PARAMETER, Type="String", Value=json.dumps(document), Overwrite=True)


def visible(box: Sandbox) -> int:
    attrs = box.client("sqs").get_queue_attributes(
        QueueUrl=box.work_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


@pytest.fixture
def stale(box: Sandbox, unique_repo: str) -> tuple[str, str]:
    box.pusher.push_image(unique_repo, "1")
    name = f"ecr-public/{unique_repo}"
    box.cache(name, "1")
    new = box.pusher.push_image(unique_repo, "1")
    return name, new.digest


def test_a_bad_document_stops_the_planner_before_it_queues_anything(
    box: Sandbox, stack: Stack, stale: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, new = stale
    container = lambda_container(box)
    monkeypatch.setattr("ptc_sync.service.get_app", container.get)
    put(box, json.loads((EVENTS / "settings-invalid.json").read_text()))

    with pytest.raises(SettingsError, match=r"settings\.keep_generations: must be an integer 0\.\.10"):
        stack.schedule(load_event("scheduled.json"))
    assert visible(box) == 0, "nothing queued on half-valid settings"

    put(box, {"keep_generations": 0})
    planned = stack.schedule(load_event("scheduled.json"))
    assert planned["status"] == "planned"
    stack.drain()
    tags = {d["imageTag"]: d["imageDigest"] for d in _images(box, name)}
    assert tags["1"] == new
    assert not [t for t in tags if is_backup_tag(t)], "keep_generations 0 came from the document"


def test_a_bad_document_returns_the_checkers_batch_to_the_queue(
    box: Sandbox, stack: Stack, stale: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, new = stale
    container = lambda_container(box)
    monkeypatch.setattr("ptc_sync.service.get_app", container.get)
    put(box, {})
    planned = stack.schedule(load_event("scheduled.json"))
    queued = visible(box)
    assert planned["status"] == "planned"
    assert queued >= 1

    put(box, {"notify_always": "yes"})  # changed while the work waits in the queue
    delivery = Delivery()
    assert stack.work.poll_once(delivery)
    assert [type(e) for e in delivery.errors] == [SettingsError]
    assert "settings.notify_always: must be true or false" in str(delivery.errors[0])
    assert visible(box) == queued, "the batch is back on the queue, not lost"
    assert {d["imageTag"]: d["imageDigest"] for d in _images(box, name)}["1"] != new, "nothing refreshed"

    put(box, {"notify_always": True})
    stack.drain()
    assert visible(box) == 0
    assert {d["imageTag"]: d["imageDigest"] for d in _images(box, name)}["1"] == new


def _images(box: Sandbox, repository: str) -> list[dict[str, Any]]:
    pages = box.client("ecr").get_paginator("list_images").paginate(repositoryName=repository)
    return [image for page in pages for image in page["imageIds"] if "imageTag" in image]
