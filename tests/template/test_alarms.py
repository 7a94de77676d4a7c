"""Every alarm fires and clears on a synthetic metric series, for an hourly and a 15-minute schedule.

``evaluate`` is a small model of CloudWatch metric alarm semantics: datapoints are aggregated per
``Period`` (aligned to the epoch) with the alarm's ``Statistic``; at the end of each period the alarm
looks at the last ``EvaluationPeriods`` complete periods, treats a period without data as
``TreatMissingData`` says, and is in ALARM when at least ``DatapointsToAlarm`` of them breach. It
leaves out CloudWatch's look-back "evaluation range" for missing data (which only delays a state
change) and evaluates complete periods only, as CloudWatch does not judge a period that is still
filling.

Each series is what the stack really emits: ptc-sync's metrics once per completed run (at the run's
finish time, a few minutes after the schedule fires), AWS metrics once a minute while something happens.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.template.cfn import Evaluator, load_template

TEMPLATE = load_template()
CHAT_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:chat-AbCdEf"
HOUR = 3600
DAY = 86400
SCHEDULES = {"rate(1 hour)": HOUR, "rate(15 minutes)": 900}
RUN_OFFSET = 170  # a run finishes (and emits) a little after the schedule fires

OK, ALARM, INSUFFICIENT = "OK", "ALARM", "INSUFFICIENT_DATA"

_COMPARE: Mapping[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
_STATISTICS: Mapping[str, Callable[[list[float]], float]] = {
    "Sum": sum,
    "Maximum": max,
    "Minimum": min,
    "Average": lambda values: sum(values) / len(values),
    "SampleCount": len,
}

Series = list[tuple[int, float]]  # (seconds since the epoch, value)


@dataclass(frozen=True)
class Alarm:
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    statistic: str
    missing: str

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> Alarm:
        return cls(
            period=int(props["Period"]),
            evaluation_periods=int(props["EvaluationPeriods"]),
            datapoints_to_alarm=int(props.get("DatapointsToAlarm", props["EvaluationPeriods"])),
            threshold=float(props["Threshold"]),
            comparison=props["ComparisonOperator"],
            statistic=props["Statistic"],
            missing=props.get("TreatMissingData", "missing"),
        )


def evaluate(alarm: Alarm, series: Series, until: int) -> list[tuple[int, str]]:
    """The alarm's state at the end of every period up to ``until`` (state changes only)."""
    buckets: dict[int, list[float]] = {}
    for at, value in series:
        buckets.setdefault(at // alarm.period, []).append(value)
    breaches = _COMPARE[alarm.comparison]
    state, changes = INSUFFICIENT, []
    for end in range(1, until // alarm.period + 1):  # period `end - 1` just completed
        window = range(end - alarm.evaluation_periods, end)
        present = [_STATISTICS[alarm.statistic](buckets[index]) for index in window if index in buckets]
        missing = alarm.evaluation_periods - len(present)
        breaching = sum(1 for value in present if breaches(value, alarm.threshold))
        if alarm.missing == "breaching":
            breaching += missing
        if not present and alarm.missing in ("ignore", "missing"):
            new = state if alarm.missing == "ignore" else INSUFFICIENT
        else:
            new = ALARM if breaching >= alarm.datapoints_to_alarm else OK
        if new != state:
            changes.append((end * alarm.period, new))
            state = new
    return changes


# --- the evaluator itself ---------------------------------------------------------------------


def test_evaluator_m_of_n_and_missing_data() -> None:
    two_of_three = Alarm(60, 3, 2, 0, "GreaterThanThreshold", "Sum", "notBreaching")
    assert evaluate(two_of_three, [(0, 1), (120, 1)], 600) == [(60, OK), (180, ALARM), (240, OK)]
    silent = Alarm(60, 2, 2, 1, "LessThanThreshold", "Sum", "breaching")
    assert evaluate(silent, [(0, 1), (60, 1)], 300) == [(60, OK), (240, ALARM)]
    kept = Alarm(60, 1, 1, 5, "GreaterThanThreshold", "Maximum", "ignore")
    assert evaluate(kept, [(0, 9), (180, 1)], 300) == [(60, ALARM), (240, OK)]


# --- the template's alarms --------------------------------------------------------------------


def alarms(overrides: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    evaluator = Evaluator(TEMPLATE, overrides)
    return {
        name: evaluator.value(resource["Properties"])
        for name, resource in TEMPLATE["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and evaluator.created(name)
    }


def runs(interval: int, values: Iterable[float]) -> Series:
    """One datapoint per completed run, ``interval`` apart."""
    return [(n * interval + RUN_OFFSET, value) for n, value in enumerate(values)]


def every_minute(start: int, end: int, value: float) -> Series:
    return [(at, value) for at in range(start, end, 60)]


@dataclass(frozen=True)
class Story:
    """A healthy stretch, an incident, a recovery: the series, and when the incident starts and ends."""

    series: Series
    incident: tuple[int, int]
    until: int


def per_run(interval: int, healthy: float, bad: float, bad_runs: int) -> Story:
    """Runs report ``healthy`` for a while, then ``bad`` for ``bad_runs`` runs, then ``healthy`` again."""
    before, after = 4, 4
    values = [healthy] * before + [bad] * bad_runs + [healthy] * after
    start, end = before * interval, (before + bad_runs) * interval
    return Story(runs(interval, values), (start, end), (before + bad_runs + after) * interval)


def run_gap(interval: int, missed: int) -> Story:
    """Runs complete every interval, then ``missed`` runs never complete, then they come back."""
    before, after = 4, 4
    series = runs(interval, [1.0] * before)
    resume = (before + missed) * interval
    series += [(resume + n * interval + RUN_OFFSET, 1.0) for n in range(after)]
    return Story(series, (before * interval, resume), resume + after * interval)


def aws_incident(minutes: int, value: float) -> Story:
    """An AWS metric quiet (or 0) for an hour, ``value`` for ``minutes``, then quiet again."""
    start = HOUR
    end = start + minutes * 60
    return Story(every_minute(0, start, 0) + every_minute(start, end, value), (start, end), end + HOUR)


def stale_tag(interval: int) -> Story:
    """Nothing stale, then a tag each run reports older (past one day) until a refresh lands."""
    ages = [0.0] * 2 + [float(n * interval) for n in range(1, DAY // interval + 4)] + [0.0] * 3
    series = runs(interval, ages)
    first_over = next(at for at, age in series if age > DAY)
    last_stale = max(at for at, age in series if age > 0)
    return Story(series, (first_over - RUN_OFFSET, last_stale + interval), series[-1][0] + interval)


# Each alarm's incident on a schedule of `interval` seconds (a new alarm without one fails below).
STORIES: Mapping[str, Callable[[int], Story]] = {
    "HeartbeatAlarm": lambda interval: run_gap(interval, missed=3),
    "RefreshFailuresAlarm": lambda interval: per_run(interval, 0, 2, bad_runs=1),
    "UpstreamErrorsAlarm": lambda interval: per_run(interval, 0, 300, bad_runs=3),
    "StaleTagAlarm": stale_tag,
    "SyncErrorsAlarm": lambda _: aws_incident(3, 1),
    "CheckerErrorsAlarm": lambda _: aws_incident(3, 1),
    "RequestsErrorsAlarm": lambda _: aws_incident(3, 1),
    "DeadLetterAlarm": lambda _: aws_incident(30, 2),
    "RequestsDeadLetterAlarm": lambda _: aws_incident(30, 2),
    "ChatDeliveryFailedAlarm": lambda _: aws_incident(30, 1),
}


def parameters(schedule: str) -> dict[str, str]:
    return {"ScheduleExpression": schedule, "ChatWebhookSecretArn": CHAT_SECRET}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_alarm_has_a_story(schedule: str) -> None:
    assert set(alarms(parameters(schedule))) == set(STORIES)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", sorted(STORIES))
def test_alarm_fires_during_its_incident_and_clears_after(schedule: str, name: str) -> None:
    interval = SCHEDULES[schedule]
    props = alarms(parameters(schedule))[name]
    alarm = Alarm.of(props)
    story = STORIES[name](interval)

    changes = evaluate(alarm, story.series, story.until)

    states = [state for _, state in changes]
    assert states[:1] == [OK], f"{name}: not OK while healthy: {changes}"
    fired = [at for at, state in changes if state == ALARM]
    cleared = [at for at, state in changes if state == OK and fired and at > fired[0]]
    assert fired, f"{name} never fired on {schedule}: {changes}"
    assert story.incident[0] < fired[0] <= story.incident[1] + 2 * alarm.period, (name, changes)
    assert cleared, f"{name} never cleared on {schedule}: {changes}"
    assert cleared[0] >= story.incident[1], (name, changes)
    topic = Evaluator(TEMPLATE).value({"Ref": "AlarmTopic"})
    assert props["OKActions"] == props["AlarmActions"] == [topic], name


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_heartbeat_fires_after_two_intervals_without_a_completed_run(schedule: str) -> None:
    interval = SCHEDULES[schedule]
    alarm = Alarm.of(alarms(parameters(schedule))["HeartbeatAlarm"])
    story = run_gap(interval, missed=2)

    changes = evaluate(alarm, story.series, story.until)

    assert alarm.period == interval
    fired = next(at for at, state in changes if state == ALARM)
    # the last run completed in period 3; periods 4 and 5 stay empty: ALARM when period 5 ends
    assert fired == story.incident[0] + 2 * interval


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_heartbeat_stays_quiet_when_run_times_drift(schedule: str) -> None:
    """A run finishing just before a period ends and the next just after the following one starts
    leaves one period empty: one missed datapoint is not two intervals without a run."""
    interval = SCHEDULES[schedule]
    alarm = Alarm.of(alarms(parameters(schedule))["HeartbeatAlarm"])
    series: Series = [(n * interval + RUN_OFFSET, 1.0) for n in range(3)]
    series += [(4 * interval - 1, 1.0), (5 * interval + 1, 1.0)]
    series += [(n * interval + RUN_OFFSET, 1.0) for n in range(6, 9)]

    assert [state for _, state in evaluate(alarm, series, 9 * interval)] == [OK]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_one_run_with_upstream_errors_is_a_blip_not_an_alarm(schedule: str) -> None:
    interval = SCHEDULES[schedule]
    alarm = Alarm.of(alarms(parameters(schedule))["UpstreamErrorsAlarm"])
    story = per_run(interval, 0, 300, bad_runs=1)

    assert [state for _, state in evaluate(alarm, story.series, story.until)] == [OK]


@pytest.mark.parametrize(
    ("schedule", "period"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(15 minutes)", 900),
        ("rate(60 minutes)", HOUR),
        ("rate(1 hour)", HOUR),
        ("rate(2 hours)", 2 * HOUR),
        ("rate(12 hours)", 12 * HOUR),
        ("rate(1 day)", DAY),
        ("rate(7 minutes)", DAY),
        ("cron(0 3 * * ? *)", DAY),
    ],
)
def test_run_metric_alarms_take_one_schedule_interval_as_their_period(schedule: str, period: int) -> None:
    """A rate CloudFormation cannot name falls back to a day: slower news, never a false alarm."""
    found = alarms(parameters(schedule))
    for name in ("HeartbeatAlarm", "RefreshFailuresAlarm", "UpstreamErrorsAlarm", "StaleTagAlarm"):
        props = found[name]
        assert props["Period"] == period, name
        # CloudWatch: Period x EvaluationPeriods at most a day below an hour's period, else a week
        limit = DAY if period < HOUR else 7 * DAY
        assert props["Period"] * props["EvaluationPeriods"] <= limit, name


def test_no_heartbeat_when_the_schedule_is_disabled() -> None:
    assert "HeartbeatAlarm" not in alarms({"ScheduleExpression": "disabled"})


# --- the dashboard ----------------------------------------------------------------------------


def dashboard(overrides: Mapping[str, str]) -> dict[str, Any]:
    evaluator = Evaluator(TEMPLATE, overrides)
    body: dict[str, Any] = json.loads(
        evaluator.value(TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    )
    return body


def _functions(rows: Sequence[Sequence[Any]]) -> list[str]:
    return [row[3] for row in rows]


@pytest.mark.parametrize("chat", [False, True])
def test_dashboard_shows_lambda_errors_duration_and_throttles_of_every_function(chat: bool) -> None:
    overrides = {"ChatWebhookSecretArn": CHAT_SECRET} if chat else {}
    widgets = dashboard(overrides)["widgets"]
    expected = [
        Evaluator(TEMPLATE, overrides).value({"Ref": name})
        for name, resource in TEMPLATE["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function" and Evaluator(TEMPLATE, overrides).created(name)
    ]
    assert len(expected) == (4 if chat else 3)
    for metric in ("Errors", "Duration", "Throttles"):
        (widget,) = [
            w
            for w in widgets
            if w["type"] == "metric" and w["properties"]["metrics"][0][:2] == ["AWS/Lambda", metric]
        ]
        assert sorted(_functions(widget["properties"]["metrics"])) == sorted(expected), metric


@pytest.mark.parametrize(
    "overrides", [{}, {"ChatWebhookSecretArn": CHAT_SECRET, "ScheduleExpression": "disabled"}]
)
def test_dashboard_alarm_widget_lists_every_alarm_the_stack_creates(overrides: dict[str, str]) -> None:
    (widget,) = [w for w in dashboard(overrides)["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(f"{name}.Arn" for name in alarms(overrides))


def test_dashboard_queries_the_checker_logs_for_tag_failures() -> None:
    (widget,) = [
        w for w in dashboard({})["widgets"] if w["type"] == "log" and w["properties"]["view"] == "table"
    ]
    query = widget["properties"]["query"]
    log_group = Evaluator(TEMPLATE).value({"Ref": "CheckerLogGroup"})
    assert query.startswith(f"SOURCE '{log_group}' | fields @timestamp, run_id, outcome")
    for outcome in ("refresh_failed", "upstream_error"):
        assert f'"{outcome}"' in query
    assert "sort @timestamp desc" in query


def test_the_dashboards_count_charts_query_the_planner_and_checker_logs() -> None:
    """The counts are not metrics by default: two time series from the run's log lines, over the
    checker's log group and the planner's (which logs the totals of a run with nothing to check)."""
    charts = [
        w for w in dashboard({})["widgets"] if w["type"] == "log" and w["properties"]["view"] == "timeSeries"
    ]
    evaluator = Evaluator(TEMPLATE)
    checker, planner = (evaluator.value({"Ref": name}) for name in ("CheckerLogGroup", "SyncLogGroup"))
    sources = f"SOURCE '{checker}' | SOURCE '{planner}' | "
    assert len(charts) == 2
    for chart in charts:
        assert chart["properties"]["query"].startswith(sources), chart
