"""A realistic run report, and the SNS → Lambda event that carries it (events/sns-report.json).

Regenerate the event after a change to ptc_sync.report with ``python -m tests.chat.sample``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ptc_sync.models import Outcome, RateLimitStatus, RunReport, TagResult
from ptc_sync.report import build_notification

ACCOUNT = "123456789012"
REGION = "eu-west-1"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:ptc-sync-ReportTopic-1A2B3C4D5E6F"
MESSAGE_ID = "5b3f7a2e-8d1c-5f4e-9a6b-0c2d4e6f8a1b"
FINISHED = datetime(2026, 3, 1, 12, 0, 42, tzinfo=UTC)
DASHBOARD_URL = (
    "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/ptc-sync"
)
EVENT_PATH = Path(__file__).resolve().parents[2] / "events" / "sns-report.json"


def digest(seed: str) -> str:
    return "sha256:" + (seed * 64)[:64]


def tag(repository: str, name: str, outcome: Outcome, **fields: Any) -> TagResult:
    return TagResult(
        repository=repository, tag=name, rule_prefix=repository.split("/", 1)[0], outcome=outcome, **fields
    )


def sample_report() -> RunReport:
    """Three refreshed tags (one multi-platform), one failed refresh, one vanished upstream, fresh rest."""
    amd_arm = ("linux/amd64", "linux/arm64")
    results = (
        tag(
            "docker-hub/library/node",
            "lts",
            Outcome.REFRESHED,
            cached_digest=digest("3fa9c1"),
            upstream_digest=digest("9be27d"),
            platforms=(*amd_arm, "linux/arm/v7", "linux/ppc64le", "linux/s390x"),
        ),
        tag(
            "docker-hub/library/python",
            "3.13-slim",
            Outcome.REFRESHED,
            cached_digest=digest("51c0de"),
            upstream_digest=digest("a77f42"),
            platforms=amd_arm,
        ),
        tag(
            "ecr-public/nginx/nginx",
            "stable",
            Outcome.REFRESHED,
            cached_digest=digest("0d4e11"),
            upstream_digest=digest("c3b8a9"),
            platforms=amd_arm,
        ),
        tag(
            "ghcr/acme/api",
            "v2",
            Outcome.REFRESH_FAILED,
            cached_digest=digest("7e6d5c"),
            upstream_digest=digest("1f2e3d"),
            reason="warm: LayerInaccessibleException: layer sha256:4b7c… is not yet available <retry later>",
        ),
        tag(
            "ecr-public/docker/library/busybox",
            "1.36",
            Outcome.UPSTREAM_MISSING,
            cached_digest=digest("b0b0b0"),
        ),
        *(
            tag("docker-hub/library/alpine", f"3.{minor}", Outcome.FRESH, cached_digest=digest("aa"))
            for minor in range(18, 22)
        ),
    )
    return RunReport(
        run_id="8c1f0e2a9b7d4c3e8f6a5b4c3d2e1f0a",
        started_at=FINISHED - timedelta(seconds=42),
        finished_at=FINISHED,
        dry_run=False,
        results=results,
        rate_limits=(
            RateLimitStatus(host="registry-1.docker.io", limit=200, remaining=173, window_seconds=21600),
        ),
        region=REGION,
        account_id=ACCOUNT,
    )


def sns_event(message: str, *, message_id: str = MESSAGE_ID, subject: str | None = None) -> dict[str, Any]:
    """An SNS → Lambda event with one record, as Lambda delivers it."""
    attributes = {}
    if message == build_notification(sample_report()).message:
        attributes = {
            name: {"Type": attribute.data_type, "Value": attribute.value}
            for name, attribute in build_notification(sample_report()).attributes.items()
        }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{TOPIC_ARN}:0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": message_id,
                    "TopicArn": TOPIC_ARN,
                    "Subject": subject,
                    "Message": message,
                    "Timestamp": "2026-03-01T12:00:43.118Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQ==",
                    "SigningCertUrl": f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
                    "UnsubscribeUrl": (
                        f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC_ARN}"
                        ":0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
                    ),
                    "MessageAttributes": attributes,
                },
            }
        ]
    }


def sample_event() -> dict[str, Any]:
    notification = build_notification(sample_report())
    return sns_event(notification.message, subject=notification.subject)


if __name__ == "__main__":
    EVENT_PATH.write_text(json.dumps(sample_event(), indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {EVENT_PATH}")
