"""The structured report the chat notifier reads (``metadata.additionalContext["report"]``) instead of
the markdown: its summary, sections, line weights and hidden counts, and that they are the chat
description's, line for line; ARNs and tone."""

from __future__ import annotations

import json

import pytest

from ptc_sync.models import Outcome, TagResult
from ptc_sync.report import (
    STRUCTURED_KEY,
    RepositoryRef,
    Tone,
    build_notification,
    description,
    escape,
    parse_repository_arn,
    repository_arn,
    structured_report,
    title,
    tone_of,
)
from tests.chat.reports import huge_report, not_a_report, parse_report, run
from tests.chat.sample import digest, sample_report


def test_the_structured_report_has_the_summary_and_sections() -> None:
    structured = structured_report(sample_report())

    assert structured["summary"] == "Checked 9 tags (4 fresh) under 3 rules in 42 s."
    assert [(s["heading"], s["total"], len(s["lines"]), s["hidden"]) for s in structured["sections"]] == [
        ("Refresh failed", 1, 1, 0),
        ("Missing upstream", 1, 1, 0),
        ("Refreshed", 3, 3, 0),
        ("Upstream pull budget", 1, 1, 0),
    ]
    assert structured["sections"][2]["lines"][1] == (
        "`docker-hub/library/python:3.13-slim` `51c0de51c0de` → `a77f42a77f42` (linux/amd64, linux/arm64)"
    )


def test_summarised_sections_carry_their_weights_and_hidden_count() -> None:
    structured = structured_report(huge_report(per_kind=30), max_lines_per_section=4)
    sections = {section["heading"]: section for section in structured["sections"]}

    failed = sections["Refresh failed"]
    # the 30 failures share one reason: one line stands for all of them
    assert (failed["total"], len(failed["lines"]), failed["weights"], failed["hidden"]) == (30, 1, [30], 0)
    assert failed["lines"][0].startswith("30 tags: refresh: ThrottlingException <rate exceeded> & retried")
    refreshed = sections["Refreshed"]
    assert refreshed["total"] == 30
    assert len(refreshed["lines"]) <= 4
    assert refreshed["hidden"] == 30 - len(refreshed["lines"])
    errors = structured["sections"][0]
    assert (errors["heading"], errors["total"]) == ("Run errors", 60)
    for section in structured["sections"]:
        assert len(section["weights"]) == len(section["lines"]), section["heading"]
        assert sum(section["weights"]) + section["hidden"] == section["total"], section["heading"]
    assert all(not line.startswith("• ") for section in structured["sections"] for line in section["lines"])


def test_quiet_run_is_a_summary_without_sections() -> None:
    report = run(TagResult("docker-hub/library/node", "lts", "docker-hub", Outcome.FRESH))

    assert structured_report(report)["sections"] == []
    assert parse_report(build_notification(report).message).sections == ()


def test_headings_are_plain_text() -> None:
    """``*x*`` is bold in Slack and italic in Teams: the Chatbot description carries no emphasis."""
    text = description(sample_report())
    assert "*" not in text
    assert "\nRefresh failed (1):\n" in text


def test_repository_arn_reads_back() -> None:
    arn = repository_arn("cn-north-1", "123456789012", "ecr-public/nginx/nginx")

    assert parse_repository_arn(arn) == RepositoryRef(
        "aws-cn", "cn-north-1", "123456789012", "ecr-public/nginx/nginx"
    )
    assert parse_repository_arn("arn:aws:sns:us-east-1:123456789012:topic") is None
    assert parse_repository_arn("arn:aws:ecr:us-east-1:123456789012:repository/UPPER") is None


@pytest.mark.parametrize(
    ("outcome", "tone"),
    [
        (Outcome.REFRESHED, Tone.CHANGED),
        (Outcome.REFRESH_FAILED, Tone.ATTENTION),
        (Outcome.UPSTREAM_MISSING, Tone.WARNING),
        (Outcome.FRESH, Tone.QUIET),
    ],
)
def test_title_tone_reads_back(outcome: Outcome, tone: Tone) -> None:
    result = TagResult("r", "t", "p", outcome, cached_digest=digest("1"), upstream_digest=digest("2"))

    assert tone_of(title(run(result))) is tone


def test_a_title_without_a_known_emoji_has_no_tone() -> None:
    assert tone_of(":tada: something") is None
    assert tone_of("") is None


def test_the_notifier_reads_the_structured_report_not_the_markdown() -> None:
    """The chat notifier's report comes from ``additionalContext.report``: the description is for
    Chatbot only (emptied, nothing changes), and the sections are the description's, line for line."""
    report = huge_report(per_kind=30)
    message = json.loads(build_notification(report, max_lines_per_section=4).message)
    from_structured = parse_report(json.dumps(message))
    text = message["content"]["description"]
    message["content"]["description"] = ""
    message["content"]["nextSteps"] = []
    assert parse_report(json.dumps(message)) == from_structured
    blocks = text.split("\n\n")[1:]
    assert len(blocks) == len(from_structured.sections)
    for block, section in zip(blocks, from_structured.sections, strict=True):
        expected = [f"{section.heading} ({section.total}):", *(f"• {escape(line)}" for line in section.lines)]
        if section.hidden:
            expected.append(f"… and {section.hidden} more")
        assert block.split("\n") == expected
    assert from_structured.tone is Tone.ATTENTION
    assert parse_report(build_notification(sample_report()).message).tone is Tone.ATTENTION


def test_a_message_without_the_structured_report_is_not_posted() -> None:
    message = json.loads(build_notification(sample_report()).message)
    del message["metadata"]["additionalContext"][STRUCTURED_KEY]
    assert not_a_report(json.dumps(message)) == "additionalContext.report: missing (no structured report)"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda structured: structured | {"version": 2}, "additionalContext.report: version: not 1"),
        (
            lambda structured: structured | {"sections": "x"},
            "additionalContext.report: sections: Input should",
        ),
        (lambda structured: None, "additionalContext.report: JSON input should be string"),
    ],
)
def test_a_bad_structured_report_is_not_posted(change: object, reason: str) -> None:
    message = json.loads(build_notification(sample_report()).message)
    context = message["metadata"]["additionalContext"]
    changed = change(json.loads(context[STRUCTURED_KEY]))  # type: ignore[operator]
    context[STRUCTURED_KEY] = changed if changed is None else json.dumps(changed)
    assert not_a_report(json.dumps(message)).startswith(reason)
