"""Run reports for payload tests, read as the notifier reads them: the structured report in the SNS
message (``chat.model.read_message``, the validator of the SNS event's ``Message``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ptc_sync.chat.model import ChatReport, NotAReport, ReportMessage, read_message
from ptc_sync.chat.model import chat_report as chat_report_of
from ptc_sync.models import Outcome, RateLimitStatus, RunReport, TagResult
from ptc_sync.report import build_notification
from tests.chat.sample import ACCOUNT, DASHBOARD_URL, FINISHED, REGION, digest, sample_report


def read(message: str) -> ReportMessage:
    """One SNS message read as the notifier reads it; fails the test when it is not a run report."""
    found = read_message(message)
    assert not isinstance(found, NotAReport), found.reason
    return found


def not_a_report(message: str) -> str:
    """Why the notifier skips ``message`` (fails the test when it is a run report)."""
    found = read_message(message)
    assert isinstance(found, NotAReport), "read as a run report"
    return found.reason


def parse_report(message: str, *, dashboard_url: str | None = None) -> ChatReport:
    return chat_report_of(read(message), dashboard_url=dashboard_url)


def chat_report(report: RunReport, *, dashboard: str | None = DASHBOARD_URL) -> ChatReport:
    return parse_report(build_notification(report).message, dashboard_url=dashboard)


def sample() -> ChatReport:
    return chat_report(sample_report())


def run(*results: TagResult, **fields: Any) -> RunReport:
    values: dict[str, Any] = {
        "run_id": "run-0001",
        "started_at": FINISHED - timedelta(seconds=30),
        "finished_at": FINISHED,
        "dry_run": False,
        "results": results,
        "region": REGION,
        "account_id": ACCOUNT,
    }
    values.update(fields)
    return RunReport(**values)


def huge_report(per_kind: int = 1500) -> RunReport:
    """Every kind of outcome many times over, with the longest names ECR allows and long reasons."""
    long_repo = "docker-hub/" + "/".join(f"team-{i:02d}-" + "x" * 40 for i in range(4))  # ~200 characters
    reason = "refresh: " + " ".join(["ThrottlingException <rate exceeded> & retried"] * 10)
    results: list[TagResult] = []
    for kind in (
        Outcome.REFRESH_FAILED,
        Outcome.UPSTREAM_ERROR,
        Outcome.RATE_LIMITED,
        Outcome.UPSTREAM_MISSING,
        Outcome.IMMUTABLE,
        Outcome.REFRESHED,
        Outcome.STALE,
    ):
        for index in range(per_kind):
            results.append(
                TagResult(
                    repository=f"{long_repo}-{index % 40}",
                    tag=f"v{index}-" + "t" * 100,
                    rule_prefix="docker-hub",
                    outcome=kind,
                    cached_digest=digest("a1"),
                    upstream_digest=digest("b2"),
                    platforms=tuple(f"linux/arch{n}" for n in range(9)),
                    reason=reason if kind in {Outcome.REFRESH_FAILED, Outcome.UPSTREAM_ERROR} else "",
                )
            )
    budgets = tuple(
        RateLimitStatus(host=f"registry-{n}.example.com", limit=200, remaining=n) for n in range(40)
    )
    errors = tuple(f"rule ghcr-{n}: discovery failed: AccessDeniedException " + "y" * 150 for n in range(60))
    return run(*results, rate_limits=budgets, errors=errors)
