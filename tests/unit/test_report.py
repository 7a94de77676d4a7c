"""The per-run SNS message: chat notification, subject, attributes and when to publish."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ptc_sync.models import Outcome, RateLimitStatus, RunReport, TagResult
from ptc_sync.report import (
    MAX_DESCRIPTION_CHARS,
    MAX_REASON_CHARS,
    MAX_RELATED_RESOURCES,
    MAX_SUBJECT_CHARS,
    ReportKind,
    build_notification,
    chat_notification,
    decide_publish,
    headline,
    message_attributes,
    repository_arn,
    subject,
    tag_line,
    title,
)

FINISHED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
REGION = "eu-west-1"
SNS_MAX_BYTES = 256 * 1024


def digest(char: str) -> str:
    return "sha256:" + char * 64


def result(
    outcome: Outcome,
    repository: str = "docker-hub/library/node",
    tag: str = "lts",
    rule: str = "docker-hub",
    **fields: Any,
) -> TagResult:
    return TagResult(repository=repository, tag=tag, rule_prefix=rule, outcome=outcome, **fields)


def run(*results: TagResult, dry_run: bool = False, errors: tuple[str, ...] = (), **fields: Any) -> RunReport:
    values: dict[str, Any] = {
        "run_id": "run-0001",
        "started_at": FINISHED - timedelta(seconds=42),
        "finished_at": FINISHED,
        "dry_run": dry_run,
        "results": results,
        "errors": errors,
        "region": REGION,
        "account_id": ACCOUNT,
    }
    values.update(fields)
    return RunReport(**values)


def refreshed(tag: str, repository: str = "docker-hub/library/node") -> TagResult:
    return result(
        Outcome.REFRESHED,
        repository=repository,
        tag=tag,
        cached_digest=digest("a"),
        upstream_digest=digest("b"),
        platforms=("linux/amd64", "linux/arm64"),
    )


def description_of(report: RunReport, **kwargs: Any) -> str:
    return chat_notification(report, **kwargs)["content"]["description"]


def section(description: str, heading: str) -> list[str]:
    """The lines under ``heading (n):`` up to the next blank line."""
    for block in description.split("\n\n"):
        first, *rest = block.split("\n")
        if first.startswith(f"{heading} (") and first.endswith("):"):
            return rest
    raise AssertionError(f"no section {heading!r} in:\n{description}")


# --- headline and title -----------------------------------------------------------------------


def test_title_counts_refreshed_and_failed_tags() -> None:
    report = run(
        refreshed("lts"),
        refreshed("22"),
        refreshed("20"),
        result(Outcome.REFRESH_FAILED, tag="18", reason="verify: digest mismatch"),
        result(Outcome.FRESH, tag="16"),
    )

    # the worst news sets the icon: one failure outranks three refreshes
    assert title(report) == ":rotating_light: ptc-sync: 3 tags refreshed, 1 failed"


def test_headline_of_a_dry_run_says_so_and_counts_what_would_be_refreshed() -> None:
    report = run(result(Outcome.STALE, tag="lts"), result(Outcome.STALE, tag="22"), dry_run=True)

    assert headline(report) == "ptc-sync (dry run): 2 tags would be refreshed"


def test_headline_of_a_quiet_run_counts_the_checked_tags() -> None:
    report = run(result(Outcome.FRESH, tag="lts"), result(Outcome.SKIPPED, tag="22"))

    assert title(report) == ":white_check_mark: ptc-sync: 2 tags checked, nothing to refresh"


def test_headline_lists_every_notable_kind_in_a_fixed_order() -> None:
    report = run(
        result(Outcome.IMMUTABLE, tag="a"),
        result(Outcome.RATE_LIMITED, tag="b"),
        result(Outcome.RATE_LIMITED, tag="c"),
        result(Outcome.UPSTREAM_MISSING, tag="d"),
        result(Outcome.UPSTREAM_ERROR, tag="e"),
        result(Outcome.UPSTREAM_ERROR, tag="f"),
        errors=("rule quay: AccessDeniedException",),
    )

    assert headline(report) == (
        "ptc-sync: 2 upstream errors, 1 tag missing upstream, 2 rate-limited, 1 immutable, 1 run error"
    )


@pytest.mark.parametrize(
    ("results", "errors", "emoji"),
    [
        ((result(Outcome.REFRESHED),), (), ":arrows_counterclockwise:"),
        ((result(Outcome.REFRESH_FAILED),), (), ":rotating_light:"),
        ((result(Outcome.UPSTREAM_ERROR),), (), ":rotating_light:"),
        ((), ("discovery failed",), ":rotating_light:"),
        ((result(Outcome.RATE_LIMITED),), (), ":warning:"),
        ((result(Outcome.FRESH),), (), ":white_check_mark:"),
        ((result(Outcome.REFRESHED), result(Outcome.REFRESH_FAILED, tag="x")), (), ":rotating_light:"),
        ((result(Outcome.REFRESHED),), ("discovery failed",), ":rotating_light:"),
        ((result(Outcome.REFRESHED), result(Outcome.IMMUTABLE, tag="x")), (), ":warning:"),
        ((result(Outcome.REFRESHED), result(Outcome.NOT_COMPARABLE, tag="x")), (), ":warning:"),
        ((result(Outcome.REPAIRED),), (), ":arrows_counterclockwise:"),
    ],
)
def test_title_emoji_follows_what_happened(
    results: tuple[TagResult, ...], errors: tuple[str, ...], emoji: str
) -> None:
    assert title(run(*results, errors=errors)).startswith(emoji + " ptc-sync")


# --- description ------------------------------------------------------------------------------


def test_refreshed_tag_line_shows_short_digests_and_platforms() -> None:
    line = tag_line(refreshed("lts"))

    assert (
        line == "• `docker-hub/library/node:lts` `aaaaaaaaaaaa` → `bbbbbbbbbbbb` (linux/amd64, linux/arm64)"
    )


def test_tag_line_summarises_many_platforms() -> None:
    platforms = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/386")

    line = tag_line(result(Outcome.REFRESHED, cached_digest=digest("a"), platforms=platforms))

    assert line.endswith("(linux/amd64, linux/arm64, linux/arm/v7, linux/ppc64le +2 more)")


def test_failure_line_keeps_the_reason_on_one_bounded_line() -> None:
    failure = result(
        Outcome.REFRESH_FAILED,
        cached_digest=digest("c"),
        upstream_digest=digest("d"),
        reason="verify: digest mismatch\n  after 120 s " + "x" * 1000,
    )

    line = tag_line(failure)

    assert "\n" in failure.reason
    assert "\n" not in line
    assert line.startswith(
        "• `docker-hub/library/node:lts` `cccccccccccc` → `dddddddddddd`: verify: digest mismatch after"
    )
    reason = line.split(": ", 1)[1]
    assert len(reason) == MAX_REASON_CHARS
    assert reason.endswith("…")


def test_unknown_digest_is_shown_as_a_question_mark() -> None:
    line = tag_line(result(Outcome.REFRESH_FAILED, cached_digest=digest("c"), reason="import timed out"))

    assert line == "• `docker-hub/library/node:lts` `cccccccccccc` → `?`: import timed out"


def test_description_lists_each_kind_with_its_reason_failures_first() -> None:
    report = run(
        refreshed("lts"),
        result(Outcome.REFRESH_FAILED, tag="18", reason="import: timed out after 120 s"),
        result(Outcome.UPSTREAM_MISSING, tag="17", reason="upstream answered 404"),
        result(Outcome.RATE_LIMITED, tag="16", reason="429 from registry-1.docker.io"),
        result(Outcome.IMMUTABLE, tag="15", cached_digest=digest("e"), upstream_digest=digest("f")),
        result(Outcome.UPSTREAM_ERROR, tag="14", reason="TLS handshake failed"),
        result(Outcome.FRESH, tag="13"),
        errors=("rule ghcr: DescribeRepositories AccessDeniedException",),
    )

    text = description_of(report)

    headings = [block.split("\n")[0] for block in text.split("\n\n")[1:]]
    assert headings == [
        "Run errors (1):",
        "Refresh failed (1):",
        "Upstream errors (1):",
        "Rate-limited (1):",
        "Missing upstream (1):",
        "Immutable (not refreshed) (1):",
        "Refreshed (1):",
    ]
    assert section(text, "Run errors") == ["• rule ghcr: DescribeRepositories AccessDeniedException"]
    assert section(text, "Refresh failed") == [
        "• `docker-hub/library/node:18`: import: timed out after 120 s"
    ]
    assert section(text, "Missing upstream") == ["• `docker-hub/library/node:17`: upstream answered 404"]
    assert section(text, "Rate-limited") == ["• `docker-hub/library/node:16`: 429 from registry-1.docker.io"]
    assert section(text, "Immutable (not refreshed)") == [
        "• `docker-hub/library/node:15` `eeeeeeeeeeee` → `ffffffffffff`"
    ]
    assert section(text, "Upstream errors") == ["• `docker-hub/library/node:14`: TLS handshake failed"]
    assert "node:13" not in text


def test_description_opens_with_a_run_summary() -> None:
    report = run(
        refreshed("lts"), result(Outcome.FRESH, tag="22", rule="quay"), result(Outcome.FRESH, tag="20")
    )

    assert description_of(report).split("\n\n")[0] == "Checked 3 tags (2 fresh) under 2 rules in 42 s."


def test_dry_run_description_names_the_stale_tags_as_would_refresh() -> None:
    report = run(result(Outcome.STALE, cached_digest=digest("a"), upstream_digest=digest("b")), dry_run=True)

    text = description_of(report)

    assert text.split("\n\n")[0].endswith("Dry run: nothing was changed.")
    assert section(text, "Would refresh") == [
        "• `docker-hub/library/node:lts` `aaaaaaaaaaaa` → `bbbbbbbbbbbb`"
    ]


def test_long_section_is_summarised_with_whole_lines() -> None:
    report = run(*(refreshed(f"v{n}") for n in range(25)))

    lines = section(description_of(report), "Refreshed")

    assert len(lines) == 21
    assert lines[-1] == "… and 5 more"
    assert lines[:20] == [tag_line(refreshed(f"v{n}")) for n in range(20)]


def test_section_cap_is_configurable() -> None:
    report = run(*(result(Outcome.UPSTREAM_ERROR, tag=f"v{n}", reason=f"boom {n}") for n in range(4)))

    lines = section(description_of(report, max_lines_per_section=3), "Upstream errors")

    assert lines == [
        "• `docker-hub/library/node:v0`: boom 0",
        "• `docker-hub/library/node:v1`: boom 1",
        "• `docker-hub/library/node:v2`: boom 2",
        "… and 1 more",
    ]


def test_pull_budget_is_listed_for_hosts_that_reported_one() -> None:
    report = run(
        refreshed("lts"),
        rate_limits=(
            RateLimitStatus("registry-1.docker.io", limit=100, remaining=12, window_seconds=21600),
            RateLimitStatus("ghcr.io"),
        ),
    )

    assert section(description_of(report), "Upstream pull budget") == ["• `registry-1.docker.io` 12/100 left"]


def ten_thousand_results(repository_length: int, reason: str) -> RunReport:
    notable = [outcome for outcome in Outcome if outcome.notable]
    results = []
    for n in range(10_000):
        outcome = notable[(n // 2) % len(notable)] if n % 2 else Outcome.FRESH
        repository = f"rule{n % 50}/" + f"r{n}".rjust(repository_length - 7, "x")
        results.append(
            result(
                outcome,
                repository=repository,
                tag=f"t{n}",
                rule=f"rule{n % 50}",
                cached_digest=digest("a"),
                upstream_digest=digest("b"),
                platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
                reason=reason,
            )
        )
    return run(*results, errors=tuple(f"rule rule{n}: discovery failed" for n in range(300)))


def test_ten_thousand_results_make_a_short_description_that_names_every_kind() -> None:
    report = ten_thousand_results(40, "upstream answered 500 Internal Server Error")

    notification = build_notification(report)

    payload = json.loads(notification.message)
    description = payload["content"]["description"]
    assert len(description) <= MAX_DESCRIPTION_CHARS
    # the tags of each kind share one reason: one line each names how many and three of them
    for heading in ("Refresh failed", "Refreshed", "Stale (not refreshed)"):
        (line,) = section(description, heading)
        count = int(line.removeprefix("• ").split(" ", 1)[0])
        assert line.startswith(f"• {count} tags: upstream answered 500 Internal Server Error (`"), heading
        assert line.endswith(f" and {count - 3} more)"), heading
    errors = section(description, "Run errors")
    assert errors[0] == "• rule rule0: discovery failed"
    assert errors[-1] == f"… and {300 - len(errors) + 1} more"
    assert payload["content"]["nextSteps"][-1].startswith(
        "Not every tag is listed: `ptc-sync runs run-0001 --table STATE_TABLE` lists them all"
    )
    assert len(payload["metadata"]["relatedResources"]) == MAX_RELATED_RESOURCES


def test_ten_thousand_results_with_longest_names_and_reasons_stay_below_the_sns_limit() -> None:
    # ECR allows 256-character repository names; reasons may carry a whole error body.
    report = ten_thousand_results(256, "error body " * 2000)

    notification = build_notification(report)

    attribute_bytes = sum(
        len(name) + len(a.data_type) + len(a.value) for name, a in notification.attributes.items()
    )
    total = len(notification.message.encode()) + len(notification.subject) + attribute_bytes
    assert total < SNS_MAX_BYTES // 2, total


# --- envelope and metadata --------------------------------------------------------------------


def test_chat_notification_has_the_custom_notification_shape() -> None:
    payload = json.loads(build_notification(run(refreshed("lts"))).message)

    assert payload["version"] == "1.0"
    assert payload["source"] == "custom"
    assert payload["id"] == "run-0001"
    assert payload["content"]["textType"] == "client-markdown"
    assert payload["content"]["title"] == ":arrows_counterclockwise: ptc-sync: 1 tag refreshed"
    assert payload["metadata"]["summary"] == "ptc-sync: 1 tag refreshed"
    assert payload["metadata"]["eventType"] == "SyncRunReport"
    assert payload["content"]["keywords"] == ["ptc-sync", REGION, "refreshed"]


def test_one_thread_per_account_region_and_utc_day() -> None:
    first = chat_notification(run(refreshed("lts"), run_id="run-1"))
    second = chat_notification(run(result(Outcome.FRESH), run_id="run-2"))
    elsewhere = chat_notification(run(refreshed("lts"), region="us-east-1"))
    late = datetime(2026, 3, 1, 23, 59, tzinfo=timezone(timedelta(hours=-5)))  # 04:59 UTC on the 2nd
    next_day = chat_notification(run(refreshed("lts"), started_at=late, finished_at=late))

    assert first["metadata"]["threadId"] == "ptc-sync-123456789012-eu-west-1-2026-03-01"
    assert second["metadata"]["threadId"] == first["metadata"]["threadId"]
    assert elsewhere["metadata"]["threadId"] != first["metadata"]["threadId"]
    assert next_day["metadata"]["threadId"] == "ptc-sync-123456789012-eu-west-1-2026-03-02"


def test_related_resources_are_the_arns_of_repositories_with_notable_tags() -> None:
    report = run(
        refreshed("lts", repository="docker-hub/library/node"),
        refreshed("22", repository="docker-hub/library/node"),
        result(Outcome.UPSTREAM_MISSING, repository="quay/coreos/etcd", rule="quay"),
        result(Outcome.FRESH, repository="docker-hub/library/alpine"),
    )

    assert chat_notification(report)["metadata"]["relatedResources"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/library/node",
        "arn:aws:ecr:eu-west-1:123456789012:repository/quay/coreos/etcd",
    ]


def test_related_resources_are_left_out_without_account_or_region() -> None:
    report = run(refreshed("lts"), account_id="")

    assert chat_notification(report)["metadata"]["relatedResources"] == []


@pytest.mark.parametrize(
    ("region", "arn"),
    [
        ("us-east-1", "arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/nginx/nginx"),
        ("cn-north-1", "arn:aws-cn:ecr:cn-north-1:123456789012:repository/ecr-public/nginx/nginx"),
        ("us-gov-west-1", "arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/ecr-public/nginx/nginx"),
    ],
)
def test_repository_arn_uses_the_region_partition(region: str, arn: str) -> None:
    assert repository_arn(region, ACCOUNT, "ecr-public/nginx/nginx") == arn


def test_additional_context_holds_run_facts_as_strings() -> None:
    report = run(refreshed("lts"), result(Outcome.FRESH, tag="22"), errors=("boom",))

    context = chat_notification(report)["metadata"]["additionalContext"]

    assert context["runId"] == "run-0001"
    assert context["dryRun"] == "false"
    assert context["finishedAt"] == "2026-03-01T12:00:00+00:00"
    assert context["tagsChecked"] == "2"
    assert context["refreshed"] == "1"
    assert context["fresh"] == "1"
    assert context["run_error"] == "1"
    assert "stale" not in context
    assert all(isinstance(value, str) for value in context.values())


def test_next_steps_follow_the_outcomes_present() -> None:
    report = run(result(Outcome.IMMUTABLE), result(Outcome.RATE_LIMITED, tag="22"))

    steps = chat_notification(report)["content"]["nextSteps"]

    assert len(steps) == 2
    assert steps[0].startswith("Rate-limited:")
    assert steps[1].startswith("Immutable tags are never forced")


def test_next_steps_of_a_dry_run_say_how_to_refresh() -> None:
    steps = chat_notification(run(result(Outcome.STALE), dry_run=True))["content"]["nextSteps"]

    assert steps == ["Dry run: turn dry run off to refresh the stale tags."]


# --- subject ----------------------------------------------------------------------------------


def test_subject_is_the_plain_headline() -> None:
    report = run(refreshed("lts"), result(Outcome.REFRESH_FAILED, tag="22"))

    assert subject(report) == "ptc-sync: 1 tag refreshed, 1 failed"


def test_long_subject_is_cut_back_to_whole_phrases() -> None:
    kinds = [outcome for outcome in Outcome if outcome.notable]
    report = run(
        *(result(outcome, tag=f"{outcome.value}-{n}") for outcome in kinds for n in range(1000)),
        errors=tuple("e" for _ in range(1000)),
        dry_run=True,
    )

    text = subject(report)

    assert len(headline(report)) > MAX_SUBJECT_CHARS
    assert len(text) <= MAX_SUBJECT_CHARS
    assert text.isascii()
    assert "\n" not in text
    assert text.endswith(", ...")
    assert headline(report).startswith(text.removesuffix(", ..."))


# --- when to publish, and attributes ----------------------------------------------------------


@pytest.mark.parametrize("outcome", list(Outcome))
def test_a_result_judged_news_is_published(outcome: Outcome) -> None:
    decision = decide_publish(
        run(result(Outcome.FRESH, tag="a"), result(outcome, news=True)), notify_always=False
    )
    assert (decision.publish, decision.kind, decision.why) == (True, ReportKind.RUN, "1 tag with news")


@pytest.mark.parametrize("outcome", [outcome for outcome in Outcome if outcome.notable])
def test_a_notable_outcome_the_state_did_not_judge_news_is_not(outcome: Outcome) -> None:
    """A failure that persists is notable (the report lists it) but not news: no message."""
    assert not decide_publish(
        run(result(Outcome.FRESH, tag="a"), result(outcome)), notify_always=False
    ).publish


def test_quiet_run_is_published_only_when_always() -> None:
    quiet = run(result(Outcome.FRESH), result(Outcome.SKIPPED, tag="22"))

    assert not decide_publish(quiet, notify_always=False).publish
    assert decide_publish(quiet, notify_always=True).publish


def test_run_error_alone_is_published() -> None:
    decision = decide_publish(run(errors=("rule ghcr: discovery failed",)), notify_always=False)
    assert (decision.publish, decision.why) == (True, "1 run error")


def test_counts_carried_on_the_report_count_the_tags_not_named() -> None:
    """A fan-out run stores no plain fresh result: its counters say how many tags were checked."""
    report = run(
        result(Outcome.REFRESHED, news=True),
        counts={
            ("docker-hub", Outcome.REFRESHED): 1,
            ("docker-hub", Outcome.FRESH): 40,
            ("quay", Outcome.FRESH): 2,
        },
    )
    assert report.tags_checked == 43
    assert report.count(Outcome.FRESH) == 42
    assert report.rule_prefixes == {"docker-hub", "quay"}
    assert (
        json.loads(build_notification(report).message)["metadata"]["additionalContext"]["tagsChecked"] == "43"
    )


def test_message_attributes_describe_the_run_for_filter_policies() -> None:
    report = run(
        refreshed("lts"),
        refreshed("22"),
        result(Outcome.REFRESH_FAILED, tag="18", rule="quay", repository="quay/x"),
        result(Outcome.FRESH, rule="k8s", repository="k8s/pause"),
        errors=("boom",),
    )

    attributes = message_attributes(report)

    assert set(attributes) == {"outcomes", "rulePrefixes", "dryRun", "refreshed", "failed"}
    assert attributes["outcomes"].data_type == "String.Array"
    assert json.loads(attributes["outcomes"].value) == ["refreshed", "refresh_failed", "run_error"]
    assert attributes["rulePrefixes"].data_type == "String.Array"
    assert json.loads(attributes["rulePrefixes"].value) == ["docker-hub", "quay"]
    assert (attributes["dryRun"].data_type, attributes["dryRun"].value) == ("String", "false")
    assert (attributes["refreshed"].data_type, attributes["refreshed"].value) == ("Number", "2")
    assert (attributes["failed"].data_type, attributes["failed"].value) == ("Number", "1")


def test_quiet_run_attributes_name_every_checked_rule_and_no_outcome() -> None:
    attributes = message_attributes(
        run(result(Outcome.FRESH, rule="quay"), result(Outcome.FRESH), dry_run=True)
    )

    assert json.loads(attributes["outcomes"].value) == []
    assert json.loads(attributes["rulePrefixes"].value) == ["docker-hub", "quay"]
    assert attributes["dryRun"].value == "true"
    assert attributes["refreshed"].value == "0"


# --- issue 12: messages that read right in every channel ----------------------------------------


def mixed_bad_run() -> RunReport:
    """The run that got the "changed" icon and a 13,193-character description."""
    return run(
        *(refreshed(f"r{n}", repository=f"docker-hub/team/app-{n}") for n in range(50)),
        *(
            result(
                Outcome.REFRESH_FAILED,
                repository=f"docker-hub/team/svc-{n}",
                tag=f"f{n}",
                cached_digest=digest("c"),
                upstream_digest=digest("d"),
                reason=f"import: ThrottlingException after 3 attempts (request {n:04d})",
            )
            for n in range(50)
        ),
        *(
            result(
                Outcome.UPSTREAM_ERROR,
                repository=f"quay/org/tool-{n % 30}",
                tag=f"u{n}",
                rule="quay",
                reason="upstream answered 503 Service Unavailable",
            )
            for n in range(300)
        ),
    )


def test_the_worst_news_sets_the_icon_of_a_mixed_run() -> None:
    assert title(mixed_bad_run()).startswith(":rotating_light: ptc-sync: 50 tags refreshed, 50 failed")


def test_description_stays_within_3000_characters_whatever_the_run() -> None:
    payload = chat_notification(mixed_bad_run())

    text = payload["content"]["description"]
    assert len(text) <= MAX_DESCRIPTION_CHARS
    # the 300 upstream errors share one reason: one line names how many
    (errors,) = section(text, "Upstream errors")
    assert errors.startswith("• 300 tags: upstream answered 503 Service Unavailable (`quay/org/tool-0:u0`")
    assert errors.endswith(" and 297 more)")
    failed = section(text, "Refresh failed")
    assert failed[-1].startswith("… and ")
    assert int(failed[-1].split()[2]) + len(failed) - 1 == 50
    assert payload["content"]["nextSteps"][-1].startswith("Not every tag is listed: `ptc-sync runs run-0001")


@pytest.mark.parametrize("lines", [1, 20, 1000])
def test_description_bound_holds_for_any_section_cap(lines: int) -> None:
    report = ten_thousand_results(256, "error body " * 2000)

    assert len(description_of(report, max_lines_per_section=lines)) <= MAX_DESCRIPTION_CHARS


def test_identical_run_errors_share_a_line() -> None:
    text = description_of(run(errors=("rule quay: AccessDenied",) * 3 + ("rule ghcr: timeout",)))

    assert section(text, "Run errors") == ["• 3 times: rule quay: AccessDenied", "• rule ghcr: timeout"]


def test_headings_carry_no_markdown_emphasis() -> None:
    """Chatbot renders one description in Slack (``*x*`` bold) and Teams (``*x*`` italic): plain headings
    read the same in both."""
    text = description_of(mixed_bad_run())

    headings = [block.split("\n")[0] for block in text.split("\n\n")[1:]]
    assert headings == ["Refresh failed (50):", "Upstream errors (300):", "Refreshed (50):"]
    assert "*" not in text


def test_email_text_is_plain_and_complete() -> None:
    notification = build_notification(mixed_bad_run())

    text = notification.email
    assert text.startswith("ptc-sync: 50 tags refreshed, 50 failed, 300 upstream errors\n\n")
    assert "Refresh failed (50):\n  - docker-hub/team/svc-0:f0 cccccccccccc → dddddddddddd: import:" in text
    assert "`" not in text
    assert ":rotating_light:" not in text
    assert "&lt;" not in text
    assert "\nNext steps:\n  - Failed refreshes kept their previous image" in text
    assert text.rstrip().endswith(f"Run run-0001 · {REGION} · {ACCOUNT}")
    # email carries every failed tag (the chat description only some)
    assert all(f"svc-{n}:f{n}" in text for n in range(50))


def test_sns_message_is_chatbot_json_by_default_and_text_by_email() -> None:
    notification = build_notification(mixed_bad_run())

    structure = json.loads(notification.sns_message())

    assert set(structure) == {"default", "email"}
    assert json.loads(structure["default"]) == chat_notification(mixed_bad_run())
    assert structure["email"] == notification.email


def test_email_text_keeps_outside_text_plain_but_safe() -> None:
    text = build_notification(
        run(
            result(
                Outcome.REFRESH_FAILED,
                reason="<!channel> token=ghp_abcdefghijklmnopqrstuvwxyz0123456789\u202e",
            )
        )
    ).email

    assert "<!channel>" in text  # plain text: nothing to escape, nothing renders it
    assert "ghp_abcdefghijklmnopqrstuvwxyz0123456789" not in text
    assert "\u202e" not in text


def test_first_run_says_what_it_watches_even_when_all_is_fresh() -> None:
    report = run(
        result(Outcome.FRESH, tag="lts", first_seen=True),
        result(Outcome.FRESH, tag="22", first_seen=True),
        result(Outcome.FRESH, repository="quay/coreos/etcd", rule="quay", first_seen=True),
    )

    assert decide_publish(report, notify_always=False).kind is ReportKind.FIRST_RUN
    assert not decide_publish(
        run(*report.results, result(Outcome.FRESH, tag="old")), notify_always=False
    ).publish
    payload = chat_notification(report, kind=ReportKind.FIRST_RUN)
    assert payload["content"]["title"] == (
        ":white_check_mark: ptc-sync: watching 3 tags under 2 rules, all fresh"
    )
    assert payload["content"]["description"].startswith(
        "First run since the deploy: ptc-sync now watches 3 tags in 2 repositories under 2 rules."
    )
    assert payload["metadata"]["additionalContext"]["kind"] == "first_run"
    assert "first-run" in payload["content"]["keywords"]
    assert subject(report, kind=ReportKind.FIRST_RUN) == "ptc-sync: watching 3 tags under 2 rules, all fresh"


def test_first_run_with_news_keeps_the_news_and_its_icon() -> None:
    report = run(refreshed("lts"), result(Outcome.REFRESH_FAILED, tag="22", reason="boom"))

    assert title(report, kind=ReportKind.FIRST_RUN) == (
        ":rotating_light: ptc-sync: watching 2 tags under 1 rule, 1 tag refreshed, 1 failed"
    )


def test_repaired_and_not_comparable_have_sections_and_next_steps() -> None:
    report = run(
        result(
            Outcome.REPAIRED,
            tag="lts",
            cached_digest=digest("a"),
            upstream_digest=digest("b"),
            reason="refresh interrupted at put-image: finished",
        ),
        result(
            Outcome.NOT_COMPARABLE,
            tag="22",
            cached_digest=digest("c"),
            upstream_digest="sha512:" + "e" * 128,
            reason="upstream digest is sha512",
        ),
    )

    payload = chat_notification(report)
    text = payload["content"]["description"]

    assert headline(report) == "ptc-sync: 1 tag not comparable, 1 repaired"
    assert section(text, "Not comparable (upstream digest of another algorithm)") == [
        "• `docker-hub/library/node:22` `cccccccccccc` → `eeeeeeeeeeee`: upstream digest is sha512"
    ]
    assert section(text, "Repaired (an interrupted refresh finished or rolled back)") == [
        "• `docker-hub/library/node:lts` `aaaaaaaaaaaa` → `bbbbbbbbbbbb`: "
        "refresh interrupted at put-image: finished"
    ]
    steps = payload["content"]["nextSteps"]
    assert steps[0].startswith("Not comparable: upstream names these tags by a digest of another algorithm")
    assert steps[1].startswith("Repaired: a refresh an earlier run left half done")
    assert "ptc-sync runs run-0001" in steps[1]
