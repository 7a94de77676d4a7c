"""``history`` and ``runs``: what the deployed stack recorded in its state table, read back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ptc_sync.models import Outcome, TagResult, short_digest
from ptc_sync.state import StateStore
from tests.cli.conftest import STATE_TABLE, Bed

RUN = "20260215T120000Z-0a1b2c3d"
OTHER_RUN = "20260215T130000Z-4e5f6a7b"
OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def tag(repository: str, name: str, outcome: Outcome, reason: str = "") -> TagResult:
    return TagResult(repository, name, "docker-hub", outcome, OLD, NEW, reason=reason)


@pytest.fixture
def recorded(state: StateStore) -> StateStore:
    """Two runs as the checker records them: one with a refresh and a failure, one all fresh."""
    state.start_run(RUN, 1, datetime.now(UTC))  # one work item, three tags
    state.record_results(
        RUN,
        [
            tag("docker-hub/library/node", "lts", Outcome.REFRESHED),
            tag("docker-hub/library/alpine", "3.20", Outcome.REFRESH_FAILED, "import: UpstreamAccessDenied"),
            tag("docker-hub/library/redis", "7", Outcome.FRESH),
        ],
    )
    state.start_run(OTHER_RUN, 1, datetime.now(UTC))
    state.record_results(OTHER_RUN, [tag("docker-hub/library/redis", "7", Outcome.FRESH)])
    return state


def test_history_lists_refreshes_and_failures_from_the_state_table(bed: Bed, recorded: StateStore) -> None:
    result = bed.cli("history", "--table", STATE_TABLE)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["AT", "RUN", "OUTCOME", "IMAGE", "FROM", "TO", "NOTE"]
    node = [ln for ln in lines if "docker-hub/library/node:lts" in ln]
    assert len(node) == 1
    assert node[0].split()[2:7] == [
        RUN,
        "refreshed",
        "docker-hub/library/node:lts",
        short_digest(OLD),
        short_digest(NEW),
    ]
    assert "import: UpstreamAccessDenied" in result.out
    assert "redis" not in result.out  # fresh is no change
    assert lines[-1].startswith("1 refreshed, 1 refresh_failed since ")
    assert "dry run" not in result.out


def test_history_filters_by_repository_and_speaks_json_and_text(bed: Bed, recorded: StateStore) -> None:
    doc = bed.cli("history", "--table", STATE_TABLE, "--repository", "*/alpine", "--output", "json").json()
    assert doc["exit_code"] == 0
    assert [(c["image"], c["outcome"], c["run_id"]) for c in doc["changes"]] == [
        ("docker-hub/library/alpine:3.20", "refresh_failed", RUN)
    ]
    text = bed.cli("history", "--table", STATE_TABLE, "--since", "1h", "--output", "text")
    records = [line.split("\t") for line in text.out.splitlines()]
    assert len(records) == 2
    assert {r[3] for r in records} == {"docker-hub/library/node:lts", "docker-hub/library/alpine:3.20"}
    assert all(r[4:6] == [OLD, NEW] for r in records), "text carries full digests"


def test_history_of_a_quiet_day_says_so(bed: Bed, state: StateStore) -> None:
    result = bed.cli("history", "--table", STATE_TABLE)
    assert result.code == 0
    assert result.out.startswith("no refreshes or failures since ")


def test_runs_lists_the_runs_with_a_change_and_shows_one_runs_tags(bed: Bed, recorded: StateStore) -> None:
    listed = bed.cli("runs", "--table", STATE_TABLE)
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0].split() == ["RUN", "STARTED", "ITEMS", "STATE", "OUTCOMES"]
    (row,) = [ln for ln in lines if ln.startswith(RUN)]
    assert row.split()[3:6] == ["1/1", "complete", "1"]  # work items done/expected
    assert "1 fresh, 1 refresh_failed, 1 refreshed" in row
    assert "1 run with a refresh or a failure" in listed.out

    one = bed.cli("runs", RUN, "--table", STATE_TABLE, "--output", "json")
    assert one.code == 0, one.err
    doc = one.json()
    assert doc["run"]["run_id"] == RUN
    assert (doc["run"]["done"], doc["run"]["expected"], doc["run"]["complete"]) == (1, 1, True)  # work items
    assert doc["run"]["summary"] == {"fresh": 1, "refresh_failed": 1, "refreshed": 1}
    assert {t["image"]: t["outcome"] for t in doc["tags"]} == {
        "docker-hub/library/alpine:3.20": "refresh_failed",
        "docker-hub/library/node:lts": "refreshed",
    }
    table = bed.cli("runs", RUN, "--table", STATE_TABLE)
    assert "import: UpstreamAccessDenied" in table.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "20990101T000000Z-ffffffff", "--table", STATE_TABLE], "no run 20990101T000000Z-ffffffff"),
        (["runs", "not;a-run", "--table", STATE_TABLE], "is not a run id"),
        (["history", "--table", "no-such-table"], "ResourceNotFoundException"),
        (["history", "--table", STATE_TABLE, "--since", "soon"], "--since"),
    ],
)
def test_a_missing_run_or_table_exits_2(bed: Bed, state: StateStore, args: list[str], message: str) -> None:
    result = bed.cli(*args)
    assert result.code == 2
    assert message in result.err


def test_history_needs_a_table(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTC_TABLE_NAME", raising=False)
    result = bed.cli("history")
    assert result.code == 2
    assert "--table NAME" in result.err
