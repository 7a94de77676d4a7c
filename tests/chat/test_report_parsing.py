"""The description grammar read back (parse_description), ARNs and tone; and the structured report the
notifier reads instead of the markdown."""

from __future__ import annotations

import json

import pytest

from ptc_sync.chat.model import ReportFormatError, parse_report
from ptc_sync.models import Outcome, TagResult
from ptc_sync.report import (
    STRUCTURED_KEY,
    DescriptionSection,
    RepositoryRef,
    Tone,
    build_notification,
    description,
    line_weight,
    parse_description,
    parse_repository_arn,
    repository_arn,
    title,
    tone_of,
)
from tests.chat.reports import huge_report, run
from tests.chat.sample import digest, sample_report


def test_description_reads_back_into_summary_and_sections() -> None:
    parsed = parse_description(description(sample_report()))

    assert parsed.summary == "Checked 9 tags (4 fresh) under 3 rules in 42 s."
    assert [(s.heading, s.total, len(s.lines), s.hidden) for s in parsed.sections] == [
        ("Refresh failed", 1, 1, 0),
        ("Missing upstream", 1, 1, 0),
        ("Refreshed", 3, 3, 0),
        ("Upstream pull budget", 1, 1, 0),
    ]
    assert parsed.sections[2].lines[1] == (
        "`docker-hub/library/python:3.13-slim` `51c0de51c0de` → `a77f42a77f42` (linux/amd64, linux/arm64)"
    )


def test_summarised_sections_read_back_with_their_hidden_count() -> None:
    report = huge_report(per_kind=30)

    parsed = parse_description(description(report, max_lines_per_section=4))

    failed = next(section for section in parsed.sections if section.heading == "Refresh failed")
    # the 30 failures share one reason: one line stands for all of them
    assert (failed.total, len(failed.lines), failed.hidden) == (30, 1, 0)
    assert failed.lines[0].startswith("30 tags: refresh: ThrottlingException <rate exceeded> & retried")
    refreshed = next(section for section in parsed.sections if section.heading == "Refreshed")
    assert refreshed.total == 30
    assert len(refreshed.lines) <= 4
    assert refreshed.hidden == 30 - len(refreshed.lines)
    errors = parsed.sections[0]
    assert (errors.heading, errors.total) == ("Run errors", 60)
    for section in parsed.sections:
        assert sum(map(line_weight, section.lines)) + section.hidden == section.total, section.heading
    assert all(not line.startswith("• ") for section in parsed.sections for line in section.lines)


def test_quiet_run_is_a_summary_without_sections() -> None:
    report = run(TagResult("docker-hub/library/node", "lts", "docker-hub", Outcome.FRESH))

    assert parse_description(description(report)).sections == ()


def test_headings_are_plain_text_and_the_old_starred_form_still_reads() -> None:
    """``*x*`` is bold in Slack and italic in Teams: the Chatbot description carries no emphasis."""
    text = description(sample_report())
    assert "*" not in text
    assert "\nRefresh failed (1):\n" in text

    old = parse_description("summary\n\n*Refresh failed* (2)\n• `a:1`\n… and 1 more")

    assert old.sections == (DescriptionSection("Refresh failed", 2, ("`a:1`",), 1),)


def test_a_block_outside_the_grammar_is_kept_whole() -> None:
    parsed = parse_description("summary\n\nsomething new\nsecond line")

    assert parsed.sections == (DescriptionSection("", 2, ("something new", "second line")),)


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
    message = json.loads(build_notification(sample_report()).message)
    from_structured = parse_report(json.dumps(message))
    message["content"]["description"] = ""
    message["content"]["nextSteps"] = []
    assert parse_report(json.dumps(message)) == from_structured
    described = parse_description(description(sample_report()))
    assert [(s.heading, s.total, s.lines, s.hidden) for s in from_structured.sections] == [
        (s.heading, s.total, s.lines, s.hidden) for s in described.sections
    ]
    assert from_structured.tone is Tone.ATTENTION


def test_a_message_without_the_structured_report_is_not_posted() -> None:
    message = json.loads(build_notification(sample_report()).message)
    del message["metadata"]["additionalContext"][STRUCTURED_KEY]
    with pytest.raises(ReportFormatError, match="no structured report"):
        parse_report(json.dumps(message))
