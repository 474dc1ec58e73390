"""The CloudWatch alarm stand-in (local/aws/cloudwatch.py) as strict as AWS: evaluation cadence, periods
aligned to the clock, datapoints in the period of their own Timestamp, ingestion lag, the evaluation range,
M of N, TreatMissingData, and the evaluation log. Every time is chosen (no sleeping): `tick`, `sweep` and
`evaluate_all` take the drill time explicitly; the helpers below speak in AWS seconds of the drill clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from local.aws.cloudwatch import (
    ALB_LAG_SECONDS,
    CUSTOM_LAG_SECONDS,
    SWEEP_SECONDS,
    AlarmEvaluator,
    EvaluationRecord,
    StateChange,
    Window,
    storage_resolution_kept,
)
from local.timescale import TimeScale

CUSTOM = "Phoenix/Deployments"
ALB = "AWS/ApplicationELB"
DIMS = [{"Name": "Service", "Value": "sample-app"}, {"Name": "Environment", "Value": "dev"}]
TOPIC = "arn:aws:sns:us-east-1:123456789012:phoenix-dev-alarms"


class Drill:
    """An evaluator on moto's in-process backend, and the clock spoken in AWS seconds."""

    def __init__(self, lags: dict[str, float] | None = None) -> None:
        self.scale = TimeScale(factor=120)
        self.cw = boto3.client("cloudwatch", region_name="us-east-1")
        self.delivered: list[tuple[str, str, str]] = []
        self.changes: list[StateChange] = []
        self.evaluator = AlarmEvaluator(
            self.cw,
            self.scale,
            lambda *message: self.delivered.append(message),
            on_change=self.changes.append,
            lags=lags,
        )

    def t(self, aws_seconds: float) -> float:
        """Drill seconds at `aws_seconds` AWS seconds of the drill clock."""
        return self.scale.drill(aws_seconds)

    def put(
        self, aws_timestamp: float, value: float, *, namespace: str = CUSTOM, name: str = "HealthCheckFailed"
    ) -> None:
        """A datum whose Timestamp is `aws_timestamp`, as publishers set it (`scale.timestamp`)."""
        stamp = datetime.fromtimestamp(self.scale.timestamp(self.t(aws_timestamp)), UTC)
        datum = {"MetricName": name, "Dimensions": DIMS, "Value": value, "Timestamp": stamp}
        self.cw.put_metric_data(Namespace=namespace, MetricData=[datum])

    def publish(self, aws_seconds: float, aws_timestamp: float, value: float, **where: str) -> None:
        """Put a datum, and let the stand-in's sweep find it at `aws_seconds`."""
        self.put(aws_timestamp, value, **where)
        assert self.evaluator.sweep(self.t(aws_seconds)) == 1

    def alarm(self, name: str = "health", **properties: Any) -> None:
        settings: dict[str, Any] = {
            "AlarmName": name,
            "Namespace": CUSTOM,
            "MetricName": "HealthCheckFailed",
            "Dimensions": DIMS,
            "Statistic": "Maximum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "DatapointsToAlarm": 1,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": [TOPIC],
            "OKActions": [TOPIC],
        }
        self.cw.put_metric_alarm(**{**settings, **properties})

    def evaluate(self, aws_seconds: float) -> EvaluationRecord:
        """Evaluate every alarm at `aws_seconds`; the (last) alarm's record."""
        self.evaluator.evaluate_all(self.t(aws_seconds))
        return self.evaluator.evaluations[-1]

    def state(self, name: str = "health") -> str:
        return str(self.cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])

    def starts(self, record: EvaluationRecord) -> list[float]:
        """The record's period starts in AWS seconds, newest first."""
        return [round(self.scale.aws(start), 6) for start, _ in record.datapoints]


@pytest.fixture
def drill(moto: None) -> Drill:
    return Drill()


# ------------------------------------------------------------------------------------------ cadence
def test_a_breaching_datapoint_is_not_seen_before_the_next_minutes_evaluation(drill: Drill) -> None:
    """Standard alarms are evaluated once a minute (at :30 of each minute of the drill clock), over complete
    minutes: a breach in minute [60, 120) is seen by the evaluation at 150, not at 90 nor in between."""
    drill.alarm()
    drill.evaluator.tick(drill.t(1))  # the alarm is found; evaluated from its next evaluation time on
    assert drill.evaluator.evaluations == []
    drill.evaluator.tick(drill.t(31))
    drill.put(70, 1.0)
    drill.evaluator.tick(drill.t(72))
    drill.evaluator.tick(drill.t(90))
    assert drill.state() == "OK"  # minute [0, 60) had no data (notBreaching)
    for aws_seconds in (95, 100, 125, 145):
        drill.evaluator.tick(drill.t(aws_seconds))
    assert [round(drill.scale.aws(r.t)) for r in drill.evaluator.evaluations] == [31, 90]
    assert drill.state() == "OK"
    drill.evaluator.tick(drill.t(150))
    assert drill.state() == "ALARM"
    assert drill.changes[-1][1:3] == ("OK", "ALARM")
    assert drill.changes[-1][4] == drill.t(150)
    topic, subject, _message = drill.delivered[-1]
    assert topic == TOPIC
    assert subject.startswith('ALARM: "health"')


def test_high_resolution_alarms_are_evaluated_every_10_seconds_standard_ones_each_minute(
    drill: Drill,
) -> None:
    drill.alarm("standard")
    drill.alarm("high-resolution", Period=10)
    for aws_seconds in range(1, 122, 5):  # the loop's sweeps, every SWEEP_SECONDS
        drill.evaluator.tick(drill.t(aws_seconds))
    times: dict[str, list[int]] = {"standard": [], "high-resolution": []}
    for record in drill.evaluator.evaluations:
        times[record.alarm].append(round(drill.scale.aws(record.t)))
    assert times["standard"] == [31, 91]
    assert times["high-resolution"] == list(range(11, 122, 10))


def test_a_late_tick_still_evaluates_every_evaluation_time_it_passed_at_its_own_time(drill: Drill) -> None:
    """AWS evaluates each minute (10 s for high resolution) whatever happens to the stand-in's loop thread: a
    tick 2.5 minutes late evaluates the times it missed, each seeing only what was visible then."""
    drill.alarm("standard")
    drill.alarm("high-resolution", Period=10)
    drill.evaluator.tick(drill.t(1))
    drill.evaluator.tick(drill.t(6))
    drill.publish(95, 70.0, 1.0)  # breaching, seen at 95 (then a few seconds of custom-metric lag)
    drill.evaluator.tick(drill.t(160))  # the thread slept through the times at 30 and 90 (and 10 ... 150)
    times: dict[str, list[int]] = {"standard": [], "high-resolution": []}
    states: dict[int, str] = {}
    for record in drill.evaluator.evaluations:
        times[record.alarm].append(round(drill.scale.aws(record.t)))
        if record.alarm == "standard":
            states[round(drill.scale.aws(record.t))] = record.state
    assert times["standard"] == [30, 90, 160]
    # At most CATCH_UP (12) earlier times per cadence: 10, 20 and 30 are lost (a thread 2 minutes late).
    assert times["high-resolution"] == [*range(40, 151, 10), 160]
    # At 30 and 90 the datum was not visible yet; at 160 it is, and its period [60, 120) is complete.
    assert [states[30], states[90], states[160]] == ["OK", "OK", "ALARM"]


@pytest.mark.parametrize(("resolution", "period_start"), [(1, 40.0), (60, 0.0)])
def test_a_high_resolution_alarm_sees_a_regular_resolution_datum_only_at_the_start_of_its_minute(
    drill: Drill, resolution: int, period_start: float
) -> None:
    """botocore: StorageResolution 60 (the default) is stored "at 1-minute resolution", and a 10-30 s alarm on
    such a metric "does not receive data for the attempts that do not correspond to a one-minute data
    resolution". A health check publishing every 20 s must say StorageResolution 1."""
    drill.alarm(Period=20)
    with storage_resolution_kept():
        stamp = datetime.fromtimestamp(drill.scale.timestamp(drill.t(45.0)), UTC)
        datum = {"MetricName": "HealthCheckFailed", "Dimensions": DIMS, "Value": 1.0, "Timestamp": stamp}
        drill.cw.put_metric_data(Namespace=CUSTOM, MetricData=[{**datum, "StorageResolution": resolution}])
    assert drill.evaluator.sweep(drill.t(46)) == 1
    record = drill.evaluate(60)  # periods [40, 60), [20, 40), [0, 20) and older
    found = [start for start, value in zip(drill.starts(record), record.datapoints, strict=True) if value[1]]
    assert found == [period_start]


def test_the_loop_sweeps_every_few_aws_seconds_on_the_aws_clock() -> None:
    scale = TimeScale(factor=120)
    evaluator = AlarmEvaluator(cloudwatch=None, scale=scale, deliver_sns=lambda *_: None)
    assert evaluator._loop._every == scale.drill(SWEEP_SECONDS)
    assert evaluator._loop._clock == scale.now
    assert SWEEP_SECONDS <= 5


# ------------------------------------------------------------------------------------------ periods
def test_periods_are_aligned_to_the_clock(drill: Drill) -> None:
    """A 60 s period is [k*60, (k+1)*60) AWS seconds of the drill clock, wherever the evaluation falls."""
    drill.alarm(Statistic="Sum", Threshold=100.0)
    drill.publish(1, 59.9, 1.0)
    drill.publish(2, 60.0, 2.0)
    drill.publish(3, 119.9, 4.0)
    record = drill.evaluate(170)
    assert drill.starts(record) == [60.0, 0.0, -60.0]
    assert [value for _, value in record.datapoints] == [6.0, 1.0, None]
    assert drill.starts(drill.evaluate(180)) == [120.0, 60.0, 0.0]


def test_a_period_longer_than_a_minute_slides_with_the_minute(drill: Drill) -> None:
    """AWS's default SlidingWindow: a 120 s period ends on the last minute, not on a multiple of 120."""
    drill.alarm(Period=120, Statistic="Sum", Threshold=100.0)
    drill.publish(1, 70, 1.0)
    drill.publish(2, 130, 2.0)
    assert drill.starts(drill.evaluate(150)) == [0.0, -120.0, -240.0]
    record = drill.evaluate(210)
    assert drill.starts(record) == [60.0, -60.0, -180.0]
    assert record.datapoints[0][1] == 3.0


def test_a_datum_published_late_counts_in_the_period_of_its_timestamp(drill: Drill) -> None:
    drill.alarm(Statistic="Sum", Threshold=100.0)
    drill.publish(100, 50, 7.0)  # measured in [0, 60), published in [60, 120)
    record = drill.evaluate(130)
    assert dict(zip(drill.starts(record), [v for _, v in record.datapoints], strict=True)) == {
        60.0: None,
        0.0: 7.0,
        -60.0: None,
    }


# ------------------------------------------------------------------------------------------ ingestion lag
def test_a_datum_in_its_lag_is_invisible_and_becomes_visible_after_it(moto: None) -> None:
    drill = Drill(lags={CUSTOM: 30})
    drill.alarm()
    drill.publish(61, 50, 1.0)  # first seen at 61: visible from 91
    record = drill.evaluate(90)
    assert (record.state, record.pending, record.datapoints[0][1]) == ("OK", 1, None)
    record = drill.evaluate(92)
    assert (record.state, record.pending, record.datapoints[0][1]) == ("ALARM", 0, 1.0)


def test_lag_runs_from_when_the_stand_in_first_saw_the_datum_not_from_its_timestamp(drill: Drill) -> None:
    """ALB metrics of a minute are published when it ends and take ALB_LAG_SECONDS more to reach alarms."""
    assert drill.evaluator.lag(ALB) == ALB_LAG_SECONDS
    drill.alarm(Namespace=ALB, MetricName="HTTPCode_Target_5XX_Count", Statistic="Sum", Threshold=5.0)
    drill.put(30, 10.0, namespace=ALB, name="HTTPCode_Target_5XX_Count")
    drill.evaluator.sweep(drill.t(60.5))  # the ALB published minute [0, 60) as it ended
    assert drill.evaluate(90).pending == 1
    assert drill.state() == "OK"
    assert drill.evaluate(119).pending == 1  # 60.5 + 60 > 119
    record = drill.evaluate(125)
    # The evaluation range: minute [60, 120) has no data yet, the most recent real datapoint is [0, 60)'s.
    assert (record.state, record.pending) == ("ALARM", 0)
    assert record.datapoints[:2] == ((drill.t(60), None), (0.0, 10.0))


def test_custom_metrics_reach_alarms_within_seconds(drill: Drill) -> None:
    assert drill.evaluator.lag(CUSTOM) == CUSTOM_LAG_SECONDS
    drill.alarm()
    drill.publish(120, 59, 1.0)
    assert drill.evaluate(120 + CUSTOM_LAG_SECONDS - 1).pending == 1
    assert drill.evaluate(120 + CUSTOM_LAG_SECONDS + 1).state == "ALARM"


# ------------------------------------------------------------------------------------------ M of N
def test_m_of_n_over_aligned_periods(drill: Drill) -> None:
    drill.alarm(EvaluationPeriods=3, DatapointsToAlarm=2, TreatMissingData="missing")
    drill.publish(11, 10, 1.0)
    drill.publish(71, 70, 0.0)
    drill.publish(131, 130, 0.0)
    assert drill.evaluate(190).state == "OK"  # minutes 0, 1, 2: one breaching out of three
    drill.publish(191, 190, 1.0)
    drill.publish(192, 200, 1.0)
    record = drill.evaluate(250)  # minutes 1, 2, 3: [0, 0, max(1, 1)]
    assert record.state == "OK"
    drill.publish(251, 250, 1.0)
    record = drill.evaluate(310)  # minutes 2, 3, 4: [0, 1, 1]
    assert record.state == "ALARM"
    reason = drill.cw.describe_alarms(AlarmNames=["health"])["MetricAlarms"][0]["StateReason"]
    assert reason.startswith("Threshold Crossed: 2 out of the last 3 datapoints [1.0, 1.0, 0.0]")


class FakeEvaluator(AlarmEvaluator):
    """An evaluator whose evaluation range holds `data` (newest first)."""

    def __init__(self, data: list[float | None]) -> None:
        super().__init__(cloudwatch=None, scale=TimeScale(60), deliver_sns=lambda *_: None)
        self.data = data

    def window(self, alarm: dict[str, Any], now: float) -> Window:
        return Window(tuple((-60.0 * i, v) for i, v in enumerate(self.data)), 0)


ALARM = {
    "AlarmName": "a",
    "EvaluationPeriods": 2,
    "DatapointsToAlarm": 2,
    "Threshold": 1.0,
    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    "StateValue": "OK",
}


@pytest.mark.parametrize(
    ("data", "treat", "state"),
    [
        ([1.0, 1.0], "missing", "ALARM"),
        ([1.0, 0.0], "missing", "OK"),
        ([1.0, None], "notBreaching", "OK"),
        ([1.0, None], "breaching", "ALARM"),
        ([None, None], "missing", "INSUFFICIENT_DATA"),
        ([None, None], "notBreaching", "OK"),
        ([None, None], "ignore", "OK"),
        # The evaluation range: enough real datapoints further back, and TreatMissingData is not needed.
        ([None, 1.0, 1.0, 0.0], "notBreaching", "ALARM"),
        ([None, 1.0, None, None], "breaching", "ALARM"),
        ([None, 1.0, None, None], "notBreaching", "OK"),
    ],
)
def test_m_of_n_and_treat_missing_data(data: list[float | None], treat: str, state: str) -> None:
    evaluation = FakeEvaluator(data).evaluate({**ALARM, "TreatMissingData": treat}, 0.0)
    assert evaluation.state == state


def test_alarm_reason_reads_like_cloudwatch() -> None:
    reason = FakeEvaluator([1.0, 1.0]).evaluate({**ALARM, "TreatMissingData": "missing"}, 0.0).reason
    assert reason.startswith("Threshold Crossed: 2 out of the last 2 datapoints")
    assert "(minimum 2 datapoints for OK -> ALARM transition)" in reason


# ------------------------------------------------------------------------------------------ metric math
def test_a_metric_math_alarm_counts_the_pending_data_of_each_metric(drill: Drill) -> None:
    def stat(name: str) -> dict[str, Any]:
        metric = {"Namespace": ALB, "MetricName": name, "Dimensions": DIMS}
        return {"Metric": metric, "Period": 60, "Stat": "Sum"}

    drill.cw.put_metric_alarm(
        AlarmName="rate",
        Metrics=[
            {"Id": "errors", "ReturnData": False, "MetricStat": stat("HTTPCode_Target_5XX_Count")},
            {"Id": "requests", "ReturnData": False, "MetricStat": stat("RequestCount")},
            {"Id": "rate", "Expression": "100 * FILL(errors, 0) / requests", "ReturnData": True},
        ],
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    drill.put(10, 5.0, namespace=ALB, name="HTTPCode_Target_5XX_Count")
    drill.put(20, 20.0, namespace=ALB, name="RequestCount")
    drill.evaluator.sweep(drill.t(60))
    assert drill.evaluate(90).pending == 2
    record = drill.evaluate(121)
    assert (record.state, record.pending, record.datapoints[1]) == ("ALARM", 0, (0.0, 25.0))


# ------------------------------------------------------------------------------------------ the log
def test_the_evaluation_log_records_every_evaluation_with_datapoints_and_pending_counts(drill: Drill) -> None:
    drill.alarm("first")
    drill.alarm("second", EvaluationPeriods=2, DatapointsToAlarm=2)
    drill.publish(61, 50, 1.0)
    drill.publish(62, 61, 0.0)  # minute [60, 120): in progress at 90
    drill.evaluator.evaluate_all(drill.t(63))
    drill.evaluator.evaluate_all(drill.t(90))
    log = drill.evaluator.evaluations
    assert [(r.alarm, round(drill.scale.aws(r.t))) for r in log] == [
        ("first", 63),
        ("second", 63),
        ("first", 90),
        ("second", 90),
    ]
    first_at_63, second_at_63, first_at_90, _ = log
    assert first_at_63.pending == 1  # in its lag until 66
    assert first_at_63.datapoints[0] == (0.0, None)
    assert first_at_90 == EvaluationRecord(
        drill.t(90), "first", "ALARM", ((0.0, 1.0), (drill.t(-60), None), (drill.t(-120), None)), 0
    )
    assert len(second_at_63.datapoints) == 4  # EvaluationPeriods + the evaluation range's extra periods
    assert first_at_90.to_json()["datapoints"][0] == [0.0, 1.0]
    # History keeps the changes only (moto creates alarms in OK).
    assert [(c[0], c[2], c[4]) for c in drill.evaluator.history] == [("first", "ALARM", drill.t(90))]


def test_the_alarms_are_listed_only_when_some_are_due(drill: Drill, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop sweeps every 5 AWS seconds; with standard alarms only, it lists them once a minute (and once
    at the first 10 s time, which finds there are no high-resolution alarms)."""
    drill.alarm()
    ticks: list[int] = []
    listed: list[int] = []
    list_alarms = drill.evaluator._alarms

    def counting() -> list[dict[str, Any]]:
        listed.append(ticks[-1])
        return list_alarms()

    monkeypatch.setattr(drill.evaluator, "_alarms", counting)
    for aws_seconds in range(1, 182, 5):
        ticks.append(aws_seconds)
        drill.evaluator.tick(drill.t(aws_seconds))
    assert listed == [11, 31, 91, 151]
    assert [round(drill.scale.aws(r.t)) for r in drill.evaluator.evaluations] == [31, 91, 151]
