"""`make demo` keeps working and shows what issue 12 promises: the first run after a deploy says what
it watches, a run's chat message appears as the chat renders it (not its markdown), one CLI table
reads the state table; it refreshes what changed upstream, then finds everything fresh, and leaves no
registry process behind. The terminal renderer (testbed/render.py) is checked on its own too."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from testbed.render import BOLD, mrkdwn, slack_blocks
from tests.conftest import ROOT

# Slack mrkdwn a renderer must not leave behind: *bold*, _italic_, `code`, <url|label>, escapes
RAW_MARKDOWN = re.compile(r"(?<![\w*])\*[^*\s][^*\n]*\*(?![\w*])|`|<[^<>\s]+\|[^<>]+>|&(?:amp|lt|gt);")


def _between(text: str, start: str, end: str) -> str:
    assert start in text, f"{start!r} not in the demo's output"
    return text.split(start, 1)[1].split(end, 1)[0]


def _message(section: str) -> str:
    """The rendered message of one run's section of the output: the lines behind the rule."""
    return "\n".join(line.split("│", 1)[1] for line in section.splitlines() if line.startswith("  │"))


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "NO_COLOR"}}
    proc = subprocess.run(
        [sys.executable, "-m", "testbed.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout

    # (2) the first run after the deploy: everything fresh, and one message saying what it watches
    first = _between(out, "=== first run after the deploy", "=== second run")
    assert "{'fresh': 6}" in first
    assert "SNS message (first_run" in first
    assert "ptc-sync: watching 6 tags under 2 rules, all fresh" in _message(first)

    # (1) the run after upstream releases: the chat message as Slack shows it, no raw markdown
    second = _between(out, "=== second run", "=== third run")
    assert "{'fresh': 2, 'refreshed': 3, 'upstream_missing': 1}" in second
    message = _message(second)
    assert "ptc-sync: 3 tags refreshed, 1 missing upstream" in message
    assert "Refreshed (3)" in message
    assert "• ecr-public/library/node:lts" in message  # a bullet, the tag without its code span
    assert re.search(r"docker-hub/team/api <https://\S+/ecr/repositories/private/\S+>", message)  # a link
    assert "[CloudWatch dashboard] <https://" in message  # the dashboard button
    assert not RAW_MARKDOWN.search(message), RAW_MARKDOWN.search(message)
    assert "\033[" not in message  # not a terminal: plain text, no ANSI styles

    third = _between(out, "=== third run: everything fresh ===", "=== the operator's view")
    assert "{'fresh': 6}" in third
    assert "SNS: nothing published" in third

    # (3) a CLI table read from the state table
    operator = out.split("=== the operator's view (ptc-sync CLI) ===", 1)[1]
    assert re.search(r"^RUN +STARTED +[A-Z]+ +STATE +OUTCOMES$", operator, re.MULTILINE)  # TAGS or ITEMS
    assert re.search(r"complete +2 fresh, 3 refreshed, 1 upstream_missing$", operator, re.MULTILINE)
    assert re.search(r"^AT +RUN +OUTCOME +IMAGE +FROM +TO +NOTE$", operator, re.MULTILINE)
    assert "3 refreshed since" in operator
    assert "(exit 0)" in operator

    pid = int(out.split("docker-registry pid ", 1)[1].split()[0])
    alive = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    assert alive.stdout.strip() == "", "the demo's registry is stopped"


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("*Refreshed* (3)", "Refreshed (3)"),
        ("• `docker-hub/team/api:stable` `1de5` → `2556`", "• docker-hub/team/api:stable 1de5 → 2556"),
        (
            "• <https://example.com/r?region=us-east-1|docker-hub/team/api>",
            "• docker-hub/team/api <https://example.com/r?region=us-east-1>",
        ),
        ("a &lt;b&gt; &amp; `*not bold*`", "a <b> & *not bold*"),
        ("run_id and snake_case stay", "run_id and snake_case stay"),
        ("_italic_ and ~struck~", "italic and struck"),
        (
            ":warning: ptc-sync: 1 missing upstream",
            "\N{WARNING SIGN}\N{VARIATION SELECTOR-16} ptc-sync: 1 missing upstream",
        ),
    ],
)
def test_mrkdwn_renders_as_slack_shows_it(text: str, plain: str) -> None:
    assert mrkdwn(text) == plain


def test_bold_is_ansi_bold_on_a_terminal() -> None:
    assert mrkdwn("*Next steps*", ansi=True) == f"{BOLD[0]}Next steps{BOLD[1]}"


def test_blocks_render_top_to_bottom() -> None:
    payload = {
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": ":white_check_mark: ptc-sync: all fresh"},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Next steps*\n• look"}},
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"text": "Dashboard"}, "url": "https://d"}],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "Run: r1"}, {"type": "mrkdwn", "text": "Region: x"}],
            },
        ]
    }
    assert slack_blocks(payload) == [
        "\N{WHITE HEAVY CHECK MARK} ptc-sync: all fresh",
        "",
        "Next steps",
        "• look",
        "",
        "[Dashboard] <https://d>",
        "",
        "Run: r1 · Region: x",
    ]
