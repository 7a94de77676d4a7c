"""Payload builders: each service's message says what the run did, within the service's documented
schema and limits, for a small run and for a huge one (summarised in whole lines, never cut)."""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import re
from typing import Any

import pytest

from ptc_sync.chat import discord, googlechat, slack, teams
from ptc_sync.chat.model import ChatReport, ChatSection, Detail
from ptc_sync.chat.payloads import PROBLEMS, build_payload
from ptc_sync.chat.text import PayloadTooLargeError, clip, fit
from ptc_sync.chat.webhooks import Channel
from ptc_sync.models import Outcome, TagResult
from ptc_sync.report import build_notification
from tests.chat.reports import chat_report, huge_report, not_a_report, parse_report, run, sample
from tests.chat.sample import ACCOUNT, DASHBOARD_URL, REGION, digest, sample_report
from tests.chat.schemas import violations

CHANNELS = list(Channel)
MORE_RE = re.compile(r"^… and (\d+) more$")
NODE_CONSOLE = (
    f"https://{REGION}.console.aws.amazon.com/ecr/repositories/private/{ACCOUNT}/docker-hub/library/node"
    f"?region={REGION}"
)


def rendered_sections(channel: Channel, payload: dict[str, Any]) -> dict[str, tuple[int, list[str]]]:
    """heading → (total, lines as plain text) from a payload, undoing the service's markup."""
    found: dict[str, tuple[int, list[str]]] = {}
    if channel is Channel.SLACK:
        for block in payload["blocks"]:
            if block["type"] == "section" and (
                m := re.match(r"^\*(.+)\* \((\d+)\)$", block["text"]["text"].split("\n")[0])
            ):
                lines = block["text"]["text"].split("\n")[1:]
                found[m[1]] = (
                    int(m[2]),
                    [html.unescape(line.removeprefix("• ")).replace("`", "") for line in lines],
                )
    elif channel is Channel.DISCORD:
        for part in payload["embeds"][0]["description"].split("\n\n"):
            first, *lines = part.split("\n")
            if m := re.match(r"^\*\*(.+)\*\* \((\d+)\)$", first):
                plain = [re.sub(r"\\(.)", r"\1", line.removeprefix("• ")).replace("`", "") for line in lines]
                found[m[1]] = (int(m[2]), plain)
    elif channel is Channel.TEAMS:
        body = payload["attachments"][0]["content"]["body"]
        for block, following in itertools.pairwise(body):
            if block["type"] == "TextBlock" and (m := re.match(r"^\*\*(.+)\*\* \((\d+)\)$", block["text"])):
                found[m[1]] = (int(m[2]), [line.removeprefix("- ") for line in following["text"].split("\n")])
    else:
        for section in payload["cardsV2"][0]["card"]["sections"]:
            if m := re.match(r"^(.+) \((\d+)\)$", html.unescape(section.get("header", ""))):
                text = section["widgets"][0]["textParagraph"]["text"]
                found[m[1]] = (
                    int(m[2]),
                    [html.unescape(line.removeprefix("• ")) for line in text.split("<br>")],
                )
    return found


def expected_sections(report: ChatReport) -> dict[str, tuple[int, dict[str, int]]]:
    """heading → (total, each line as plain text → how many tags or errors it stands for)."""
    return {
        section.heading: (
            section.total,
            {line.replace("`", ""): section.weight(index) for index, line in enumerate(section.lines)},
        )
        for section in report.sections
    }


def assert_whole_lines(channel: Channel, report: ChatReport, payload: dict[str, Any]) -> dict[str, int]:
    """Every section is there with its total; each line is a whole line of the report or '… and N more',
    and shown + N = total. Returns heading → lines shown."""
    expected = expected_sections(report)
    rendered = rendered_sections(channel, payload)
    assert set(rendered) == set(expected)
    shown_counts = {}
    for heading, (total, lines) in rendered.items():
        assert total == expected[heading][0]
        shown = [line for line in lines if not MORE_RE.match(line)]
        more = [int(m[1]) for line in lines if (m := MORE_RE.match(line))]
        weights = expected[heading][1]
        assert set(shown) <= set(weights), f"{heading}: a line was changed or cut"
        assert sum(weights[line] for line in shown) + sum(more) == total, heading
        shown_counts[heading] = len(shown)
    return shown_counts


@pytest.mark.parametrize("channel", CHANNELS)
def test_sample_run_message_matches_the_documented_schema(channel: Channel) -> None:
    assert violations(channel, build_payload(channel, sample())) == []


@pytest.mark.parametrize("channel", CHANNELS)
def test_sample_run_message_shows_every_line(channel: Channel) -> None:
    report = sample()

    shown = assert_whole_lines(channel, report, build_payload(channel, report))

    assert shown == {"Refresh failed": 1, "Missing upstream": 1, "Refreshed": 3, "Upstream pull budget": 1}


@pytest.mark.parametrize("channel", CHANNELS)
def test_message_has_headline_digests_platforms_reason_and_links(channel: Channel) -> None:
    text = json.dumps(build_payload(channel, sample()), ensure_ascii=False)

    assert "ptc-sync: 3 tags refreshed, 1 failed, 1 missing upstream" in text
    assert "3fa9c13fa9c1 → 9be27d9be27d" in text.replace("`", "")
    assert "(linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le +1 more)" in text
    assert "LayerInaccessibleException" in text
    assert NODE_CONSOLE in text
    assert DASHBOARD_URL in text
    assert "Failed refreshes kept their previous image" in text


@pytest.mark.parametrize("channel", CHANNELS)
def test_huge_run_is_summarised_within_the_limits(channel: Channel) -> None:
    report = chat_report(huge_report())
    payload = build_payload(channel, report)

    assert violations(channel, payload) == []
    shown = assert_whole_lines(channel, report, payload)
    assert set(shown) == {section.heading for section in report.sections}
    assert shown["Refresh failed"] >= 1
    assert shown["Run errors"] >= 1


@pytest.mark.parametrize("channel", CHANNELS)
def test_quiet_run_without_account_or_dashboard_is_just_the_headline_and_summary(channel: Channel) -> None:
    report = chat_report(
        run(
            TagResult("docker-hub/library/node", "lts", "docker-hub", Outcome.FRESH), region="", account_id=""
        ),
        dashboard=None,
    )
    payload = build_payload(channel, report)
    text = json.dumps(payload, ensure_ascii=False)

    assert violations(channel, payload) == []
    assert "1 tag checked, nothing to refresh" in text
    assert "console.aws.amazon.com" not in text
    assert "Checked 1 tag (1 fresh)" in text


@pytest.mark.parametrize("channel", CHANNELS)
def test_dry_run_message_says_what_would_be_refreshed(channel: Channel) -> None:
    stale = TagResult(
        "docker-hub/library/node",
        "lts",
        "docker-hub",
        Outcome.STALE,
        cached_digest=digest("1"),
        upstream_digest=digest("2"),
    )
    payload = build_payload(channel, chat_report(run(stale, dry_run=True)))
    text = json.dumps(payload, ensure_ascii=False)

    assert violations(channel, payload) == []
    assert "ptc-sync (dry run): 1 tag would be refreshed" in text
    assert "Would refresh" in text
    assert "dry run" in text.lower()


def test_slack_escapes_its_control_characters_and_keeps_code_spans() -> None:
    section = next(
        block["text"]["text"]
        for block in slack.payload(sample())["blocks"]
        if block["type"] == "section" and block["text"]["text"].startswith("*Refresh failed*")
    )

    assert "&lt;retry later&gt;" in section
    assert "<retry" not in section
    assert "`ghcr/acme/api:v2` `7e6d5c7e6d5c` → `1f2e3d1f2e3d`" in section


def test_slack_header_keeps_the_emoji_shortcode_and_its_limit() -> None:
    header = slack.payload(sample())["blocks"][0]

    assert header["text"]["text"].startswith(":rotating_light: ptc-sync:")  # a failure outranks refreshes
    assert header["text"]["emoji"] is True


def test_discord_never_pings_and_escapes_markdown_outside_code() -> None:
    failed = TagResult(
        "docker-hub/library/node",
        "lts",
        "docker-hub",
        Outcome.REFRESH_FAILED,
        reason="ask @everyone about *this*_now",
    )
    message = discord.payload(chat_report(run(failed)))

    assert message["allowed_mentions"] == {"parse": []}
    assert "ask @\u200beveryone about \\*this\\*\\_now" in message["embeds"][0]["description"]
    assert "`docker-hub/library/node:lts`" in message["embeds"][0]["description"]
    assert (
        message["embeds"][0]["color"]
        == discord.COLORS[parse_report(build_notification(run(failed)).message).tone]
    )


def test_teams_card_is_version_1_4_without_backticks() -> None:
    message = teams.payload(sample())
    card = message["attachments"][0]["content"]

    assert card["version"] == "1.4"
    assert "`" not in json.dumps(card["body"])
    assert card["actions"] == [
        {"type": "Action.OpenUrl", "title": "CloudWatch dashboard", "url": DASHBOARD_URL}
    ]


def test_teams_huge_run_stays_under_its_byte_budget() -> None:
    assert teams.encoded_size(teams.payload(chat_report(huge_report()))) <= teams.MAX_BYTES


def test_google_chat_card_escapes_html_and_links_each_repository() -> None:
    message = googlechat.payload(sample())
    card_text = json.dumps(message["cardsV2"], ensure_ascii=False)

    assert "&lt;retry later&gt;" in card_text
    assert f'<a href=\\"{NODE_CONSOLE}\\">docker-hub/library/node</a>' in card_text
    emoji = "\N{POLICE CARS REVOLVING LIGHT}"
    assert message["text"] == f"{emoji} *ptc-sync: 3 tags refreshed, 1 failed, 1 missing upstream*"


def oversized(report: ChatReport) -> ChatReport:
    """``report`` with 1500 long lines in every section: more than any description carries (it stays
    within 3,000 characters), so the builders' limits are what must hold."""
    sections = tuple(
        ChatSection(
            section.heading, 1500, tuple(f"`docker-hub/team/app-{n}:v{n}` " + "y" * 150 for n in range(1500))
        )
        for section in report.sections
    )
    return dataclasses.replace(report, sections=sections)


@pytest.mark.parametrize("channel", CHANNELS)
def test_problems_finds_what_the_schema_finds(channel: Channel) -> None:
    """The builders' own limit checks agree with the documented limits on a payload that breaks them."""
    report = oversized(chat_report(huge_report()))
    build = {
        "slack": slack._build,
        "teams": teams._build,
        "discord": discord._build,
        "googlechat": googlechat._build,
    }
    too_big = build[channel.value](report, Detail(10_000, 10_000))

    assert violations(channel, too_big)
    assert PROBLEMS[channel](too_big)


def test_fit_raises_when_even_the_shortest_form_breaks_a_limit() -> None:
    with pytest.raises(PayloadTooLargeError, match="slack payload breaks its limits"):
        fit(sample(), slack._build, lambda payload: ["always too big"], service="slack")


def test_clip_cuts_after_a_whole_phrase() -> None:
    assert (
        clip("ptc-sync: 3 tags refreshed, 1 failed, 1 missing upstream", 40)
        == "ptc-sync: 3 tags refreshed, 1 failed…"
    )
    assert clip("short", 40) == "short"
    assert len(clip("x" * 500, 150)) == 150


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("us-east-1", "us-east-1.console.aws.amazon.com"),
        ("cn-north-1", "console.amazonaws.cn"),
        ("us-gov-west-1", "console.amazonaws-us-gov.com"),
    ],
)
def test_console_links_follow_the_partition(region: str, host: str) -> None:
    missing = TagResult("ecr-public/nginx/nginx", "1", "ecr-public", Outcome.UPSTREAM_MISSING)
    report = chat_report(run(missing, region=region))

    (link,) = report.repositories
    assert (
        link.url
        == f"https://{host}/ecr/repositories/private/{ACCOUNT}/ecr-public/nginx/nginx?region={region}"
    )
    assert link.label == "ecr-public/nginx/nginx"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "not JSON"),
        (json.dumps({"AlarmName": "x"}), "not an AWS Chatbot custom notification"),
        (
            json.dumps(
                {
                    "version": "1.0",
                    "source": "custom",
                    "content": {"textType": "client-markdown", "title": "x"},
                    "metadata": {"eventType": "SomethingElse"},
                }
            ),
            "eventType is 'SomethingElse'",
        ),
    ],
)
def test_other_messages_are_not_run_reports(message: str, error: str) -> None:
    assert error in not_a_report(message)


def test_report_facts_come_from_the_additional_context() -> None:
    report = chat_report(sample_report())

    assert report.facts == (
        ("Run", "8c1f0e2a9b7d4c3e8f6a5b4c3d2e1f0a"),
        ("Region", REGION),
        ("Account", ACCOUNT),
    )
    assert report.finished_at == "2026-03-01T12:00:42+00:00"
    assert [link.label for link in report.repositories] == [
        "docker-hub/library/node",
        "docker-hub/library/python",
        "ecr-public/docker/library/busybox",
        "ecr-public/nginx/nginx",
        "ghcr/acme/api",
    ]


def mixed_bad_run() -> ChatReport:
    """50 refreshed, 50 failed, 300 upstream errors: once the "changed" icon and colour."""
    results = [
        *(
            TagResult(f"docker-hub/app-{n}", "lts", "docker-hub", Outcome.REFRESHED, digest("a"), digest("b"))
            for n in range(50)
        ),
        *(
            TagResult(f"docker-hub/svc-{n}", "lts", "docker-hub", Outcome.REFRESH_FAILED, reason=f"boom {n}")
            for n in range(50)
        ),
        *(
            TagResult(
                f"quay/tool-{n}", "v1", "quay", Outcome.UPSTREAM_ERROR, reason="503 Service Unavailable"
            )
            for n in range(300)
        ),
    ]
    return chat_report(run(*results))


def test_the_worst_news_sets_the_teams_colour_and_every_channels_icon() -> None:
    report = mixed_bad_run()

    card = teams.payload(report)["attachments"][0]["content"]
    assert card["body"][0]["color"] == "Attention"
    assert card["body"][0]["text"].startswith("\N{POLICE CARS REVOLVING LIGHT} ptc-sync: 50 tags refreshed")
    assert slack.payload(report)["blocks"][0]["text"]["text"].startswith(":rotating_light:")
    assert discord.payload(report)["embeds"][0]["color"] == discord.COLORS[discord.Tone.ATTENTION]


def test_each_channel_renders_headings_in_its_own_bold() -> None:
    """The Chatbot description has plain headings; Slack's bold is ``*x*``, Teams' ``**x**``."""
    report = mixed_bad_run()

    slack_text = json.dumps(slack.payload(report), ensure_ascii=False)
    teams_texts = [
        block.get("text", "") for block in teams.payload(report)["attachments"][0]["content"]["body"]
    ]
    discord_text = discord.payload(report)["embeds"][0]["description"]

    assert "*Refresh failed* (50)" in slack_text
    assert "**Refresh failed** (50)" in teams_texts
    assert "**Refresh failed** (50)" in discord_text
    assert "Refresh failed (50):" not in slack_text


def test_a_grouped_line_counts_every_tag_it_stands_for() -> None:
    report = mixed_bad_run()

    (errors,) = [section for section in report.sections if section.heading == "Upstream errors"]
    assert errors.lines[0].startswith("300 tags: 503 Service Unavailable (`quay/tool-0:v1`")
    for channel in CHANNELS:
        assert_whole_lines(channel, report, build_payload(channel, report))
