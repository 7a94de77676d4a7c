"""EventBridge events from the emulated ECR (docs/ecr-facts.md "EventBridge events from ECR").

One ``ECR Pull Through Cache Action`` (source ``aws.ecr``) on moto's default bus per import and per
failed import or failed re-check, detail: rule-version, sync-status, ecr-repository-prefix,
repository-name, upstream-registry-url, image-tag, image-digest, failure-code, failure-reason
(documented fields). Inferred: sync-status ``FAILED`` on failure; image-digest only on success,
failure-* only on failure; rule-version counts rule updates from "1"; no event when a re-check finds
nothing new or an immutable tag. moto's delivery to SQS writes ``time`` as epoch seconds and drops
``account``; ``events`` keeps the full event with an ISO time. ECR Image Action and Referrer Action
events are not emulated.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from testbed.ecr_ptc.base import EmulatorCore
from testbed.ecr_ptc.rules import _Target

EVENT_SOURCE: Final = "aws.ecr"
EVENT_DETAIL_TYPE: Final = "ECR Pull Through Cache Action"
SYNC_SUCCESS: Final = "SUCCESS"
SYNC_FAILED: Final = "FAILED"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventsMixin(EmulatorCore):
    """Puts each import's event on moto's default bus and keeps it in ``events``."""

    events: list[dict[str, Any]]

    def _emit(
        self,
        target: _Target,
        *,
        digest: str | None = None,
        failure: tuple[str, str] | None = None,
    ) -> None:
        account, region, rule, repository = (
            target.account,
            target.region,
            target.rule,
            target.repository,
        )
        detail: dict[str, str] = {
            "rule-version": str(rule.version),
            "sync-status": SYNC_SUCCESS if failure is None else SYNC_FAILED,
            "ecr-repository-prefix": rule.prefix,
            "repository-name": repository,
            "upstream-registry-url": rule.upstream_url,
            "image-tag": target.tag,
        }
        if digest is not None:
            detail["image-digest"] = digest
        if failure is not None:
            detail["failure-code"], detail["failure-reason"] = failure
        arn = f"arn:aws:ecr:{region}:{account}:repository/{repository}"
        time = _iso(self.clock.now())
        self.events.append(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": EVENT_DETAIL_TYPE,
                "source": EVENT_SOURCE,
                "account": account,
                "time": time,
                "region": region,
                "resources": [arn],
                "detail": detail,
            }
        )
        from moto.events.models import events_backends

        events_backends[account][region].put_events(
            [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(detail),
                    "Resources": [arn],
                    "Time": int(self.clock.now().timestamp()),  # moto's SQS delivery writes it unquoted
                }
            ]
        )
