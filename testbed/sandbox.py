"""The AWS side of a deployment, locally: moto + the pull-through cache emulator + a report topic.

    with RegistryServer(tmp) as registry, Sandbox(registry) as box:
        pushed = box.pusher.push_image("t/app", "1.0")
        box.cache("ecr-public/t/app", "1.0")           # a first pull: ECR caches it
        app = box.build_app(dry_run=False)               # ptc_sync wired to moto and the registry
        box.messages()                                   # what the report topic delivered

Two rules are created, as a real account would have them: ``ecr-public`` (anonymous, upstream
public.ecr.aws) and ``docker-hub`` (credentials in Secrets Manager, upstream registry-1.docker.io).
Both upstream hosts are served by the given loopback registry through explicit host overrides.
Test and demo infrastructure only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
from moto import mock_aws
from samcli.yamlhelper import yaml_parse

from ptc_sync import mediatypes as mt
from ptc_sync.settings import SyncSettings
from ptc_sync.wiring import App, build_app
from testbed.ecr_ptc import LAYER_UNAVAILABLE, FakeClock, PullThroughCacheEmulator
from testbed.images import ImagePusher
from testbed.registry import RegistryServer

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
PUBLIC_HOST = "public.ecr.aws"
HUB_HOST = "registry-1.docker.io"
HUB_SECRET = "ecr-pullthroughcache/docker-hub"
HUB_USER = ("ptc-demo", "dckr_pat_not-a-real-token")


def template_resources() -> dict[str, Any]:
    """template.yaml's resources: the testbed creates its queues and table from them."""
    parsed: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return dict(parsed["Resources"])


class Sandbox:
    def __init__(
        self,
        registry: RegistryServer,
        *,
        clock: FakeClock | None = None,
        describe_lag: timedelta = timedelta(0),
        layer_cache_delay: timedelta = timedelta(0),
        uncached_layer_answer: str = LAYER_UNAVAILABLE,
        put_image_rate: int | None = None,
    ) -> None:
        """The emulator's switches (testbed/ecr_ptc.py): ``describe_lag``, how long DescribeImages still
        shows a removed tag's old digest (off by default; refresh tests switch it on);
        ``layer_cache_delay``, how long ECR takes to cache a blob after sending a client upstream for it;
        ``uncached_layer_answer``, BatchCheckLayerAvailability's answer meanwhile; ``put_image_rate``,
        PutImage calls a second before ThrottlingException (off by default)."""
        self.registry = registry
        self.clock = clock or FakeClock()
        self.upstreams = {PUBLIC_HOST: registry.url, HUB_HOST: registry.url}
        self.pusher = ImagePusher(registry.url)
        self._mock = mock_aws()
        self.emulator = PullThroughCacheEmulator(
            self.upstreams,
            self.clock,
            account_id=ACCOUNT,
            region=REGION,
            describe_lag=describe_lag,
            layer_cache_delay=layer_cache_delay,
            uncached_layer_answer=uncached_layer_answer,
            put_image_rate=put_image_rate,
        )
        self.topic_arn = ""
        self.queue_url = ""
        self.work_queue_url = ""
        self.dlq_url = ""
        self.table_name = "ptc-sync-state"

    def __enter__(self) -> Self:
        self._mock.start()
        try:
            self.emulator.install()
            self._create_account()
        except BaseException:
            self.emulator.uninstall()
            self._mock.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.emulator.uninstall()
        self._mock.stop()

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]

    def _create_account(self) -> None:
        ecr, secrets, sns, sqs = (self.client(s) for s in ("ecr", "secretsmanager", "sns", "sqs"))
        secret = secrets.create_secret(
            Name=HUB_SECRET, SecretString=json.dumps({"username": HUB_USER[0], "accessToken": HUB_USER[1]})
        )
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="ecr-public", upstreamRegistryUrl=PUBLIC_HOST, upstreamRegistry="ecr-public"
        )
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="docker-hub",
            upstreamRegistryUrl=HUB_HOST,
            upstreamRegistry="docker-hub",
            credentialArn=secret["ARN"],
        )
        self.topic_arn = sns.create_topic(Name="ptc-sync-reports")["TopicArn"]
        self.queue_url = sqs.create_queue(QueueName="chat")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        self._create_fanout(sqs)

    def _create_fanout(self, sqs: Any) -> None:
        """The work queue, its DLQ and the state table, as template.yaml declares them."""
        resources = template_resources()
        work = resources["WorkQueue"]["Properties"]
        self.dlq_url = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = {
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": str(work["RedrivePolicy"]["maxReceiveCount"]),
        }
        self.work_queue_url = sqs.create_queue(
            QueueName="work",
            Attributes={
                "VisibilityTimeout": str(work["VisibilityTimeout"]),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        table = resources["StateTable"]["Properties"]
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=self.table_name,
            BillingMode=table["BillingMode"],
            KeySchema=table["KeySchema"],
            AttributeDefinitions=table["AttributeDefinitions"],
            GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        )
        ttl = table["TimeToLiveSpecification"]
        dynamodb.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": ttl["Enabled"], "AttributeName": ttl["AttributeName"]},
        )

    # -- the cache -----------------------------------------------------------------------------------

    def cache(self, repository: str, tag: str) -> str:
        """Pull ``repository:tag`` through ECR (as ``docker pull`` would) and return the cached digest."""
        resp = self.client("ecr").batch_get_image(
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=sorted(mt.MANIFEST_TYPES),
        )
        if not resp["images"]:
            raise RuntimeError(f"caching {repository}:{tag} failed: {resp['failures']}")
        return str(resp["images"][0]["imageId"]["imageDigest"])

    def tag_digest(self, repository: str, tag: str) -> str | None:
        try:
            resp = self.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
        except self.client("ecr").exceptions.ImageNotFoundException:
            return None
        return str(resp["imageDetails"][0]["imageDigest"])

    def tags(self, repository: str) -> dict[str, str]:
        """Every tag of ``repository`` and the digest it points at."""
        out: dict[str, str] = {}
        pages = self.client("ecr").get_paginator("describe_images").paginate(repositoryName=repository)
        for page in pages:
            for image in page["imageDetails"]:
                for tag in image.get("imageTags", []):
                    out[tag] = image["imageDigest"]
        return out

    # -- the application -----------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> SyncSettings:
        values: dict[str, Any] = {
            "topic_arn": self.topic_arn,
            "region": REGION,
            "account_id": ACCOUNT,
            "verify_timeout_seconds": 30,
            "verify_poll_seconds": 1,
            "queue_url": self.work_queue_url,
            "table_name": self.table_name,
        }
        values.update(overrides)
        return SyncSettings.model_validate(values)

    def build_app(self, **overrides: Any) -> App:
        """ptc_sync wired to moto and the loopback registry; waiting advances the emulated clock."""
        return build_app(
            self.settings(**overrides),
            session=boto3.Session(region_name=REGION),
            upstream_override=self.upstreams,
            sleep=lambda seconds: self.clock.advance(timedelta(seconds=seconds)),
            monotonic=lambda: self.clock.now().timestamp(),
            now=self.clock.now,
        )

    def messages(self) -> list[dict[str, Any]]:
        """SNS envelopes delivered to the subscribed queue since the last call (Message is JSON text)."""
        sqs = self.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            resp = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = resp.get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
