"""CloudWatch alarm evaluation with the real semantics and timing, over the metrics stored in moto.

What an evaluation computes: the last EvaluationPeriods complete periods of the alarm's metric (or metric-math
expression), the Statistic or ExtendedStatistic per period, ComparisonOperator against Threshold,
DatapointsToAlarm out of EvaluationPeriods, TreatMissingData. A state change is written back to moto
(SetAlarmState, with AWS's reason text and reasonData) and its actions are delivered: SNS topics get the real
alarm message (the shape of tests/events/sns-cloudwatch-alarm.json).

When, and over what, as AWS does (each constant below names its source):

- Cadence: standard alarms are evaluated once a minute whatever their period, high-resolution alarms
  (Period 10, 20 or 30) every 10 seconds, on the stand-in's AWS clock (`TimeScale.now`, held time excluded).
- Periods are aligned to the clock (AWS seconds of the drill clock, whose 0 is a top of the minute): the
  window ends on the last minute boundary (10 s for high-resolution alarms) and is cut into periods from
  there, so 60 s periods are [k*60, (k+1)*60); the last EvaluationPeriods *complete* periods are evaluated.
- A datapoint belongs to the period of its own Timestamp (the time of what it measures, set by its
  publisher with `scale.timestamp(...)`), not to the period in which it was published.
- Ingestion lag: a datapoint counts only once it has been in CloudWatch for its namespace's lag, measured from
  the moment the stand-in first saw it in moto; a light sweep of moto's data every few AWS seconds records
  that moment. An alarm decides on what is visible when it is evaluated; data arriving later for a period
  does not change a past evaluation.

`evaluations` logs every evaluation (`EvaluationRecord`: the datapoints per period and how many were still in
their lag) for the drill's picture and JSON; `history` keeps the state changes.
"""

from __future__ import annotations

import ast
import bisect
import itertools
import json
import math
import operator
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self

from moto.cloudwatch import models as cloudwatch_models
from moto.cloudwatch.models import CloudWatchBackend, MetricAggregatedDatum, MetricDatum, cloudwatch_backends

from local.aws.moto_server import ACCOUNT_ID, REGION
from local.background import Lifecycle, Loop
from local.timescale import TimeScale

REGION_NAME = "US East (N. Virginia)"
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": operator.ge,
    "GreaterThanThreshold": operator.gt,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}
COMPARE_TEXT = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to",
    "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than",
    "LessThanOrEqualToThreshold": "less than or equal to",
}

# (alarm name, old state, new state, reason, drill seconds)
StateChange = tuple[str, str, str, str, float]
# One datum as statistics need it: (sum, minimum, maximum, sample count, raw values).
Sample = tuple[float, float, float, float, list[float]]

# ---------------------------------------------------------------------------------------- AWS's timing
# Cadence. Standard alarms: "When CloudWatch evaluates an alarm, it does so every minute, even if the period
# for the alarm is longer than one minute" (CloudWatch User Guide, alarm-limits.html, said of alarms on
# connected data sources; alarms with Period 1800 are observed changing state on any minute).
STANDARD_EVALUATION_SECONDS = 60.0
# High resolution: "If the alarm period is 10 seconds or 30 seconds, the alarm is evaluated every 10 seconds"
# (CloudWatch User Guide, AlarmThatSendsEmail.html); "Specifying 10, 20, or 30 also sets this alarm as a
# high-resolution alarm" (botocore's cloudwatch model, PutMetricAlarmInput.Period).
HIGH_RESOLUTION_EVALUATION_SECONDS = 10.0
HIGH_RESOLUTION_PERIODS = frozenset({10.0, 20.0, 30.0})
# Evaluation times a late tick still evaluates, per cadence (a thread starved longer loses the older ones).
CATCH_UP = 12
# AWS does not document at which second of the minute an alarm is evaluated (one observed at :29 past,
# https://github.com/guardian/support-service-lambdas/pull/2663): the stand-in evaluates in the middle.
# The window: "SlidingWindow - the default. The window advances each time the alarm is evaluated" (CloudWatch
# User Guide, alarm-evaluation-window.html). It ends on a minute: an alarm with Period 1800 evaluated at
# 08:47:37 reported "[42.0 (22/09/21 08:17:00)]" (a StackOverflow question copied at
# https://codepudding.com/Mobile/135457.html), its one period [08:17, 08:47), not a multiple of 1800 s.
# WallClockWindow (aligned to multiples of Period) is not modelled: moto does not keep EvaluationWindow.
EVALUATION_PHASE_SECONDS = 30.0
# The evaluation range: "Whenever an alarm evaluates whether to change state, CloudWatch attempts to retrieve
# a higher number of data points than the number specified as Evaluation Periods"; with enough real
# datapoints in it, the alarm is evaluated on "the most recent real data points", else the real ones are
# completed with TreatMissingData (CloudWatch User Guide, alarms-and-missing-data.html, "How alarm state is
# evaluated when data is missing"). The exact number is not documented; the page's examples retrieve 5
# datapoints for 3 evaluation periods: EvaluationPeriods + 2.
EVALUATION_RANGE_EXTRA_PERIODS = 2
# Ingestion lag, from the moment CloudWatch has a datum to the moment an alarm sees it.
# AWS/ApplicationELB: the ALB "measures and sends its metrics in 60-second intervals" (ELB User Guide,
# load-balancer-cloudwatch-metrics.html) and the latest minute "can be incomplete and volatile" until about
# two minutes after its start (https://github.com/Netflix/atlas/pull/1300): a period is complete about a
# minute after it ends. The ALB stand-in publishes each period as it ends, so the lag is that minute (an alarm
# on the ALB seen changing state ~3 minutes after the breaching minute, https://cloudaffaire.com/aws/
# delay-in-aws-cloudwatch-alarm-state-change/, is slower still). Other AWS/ namespaces: the same.
ALB_LAG_SECONDS = 60.0
AWS_SERVICE_LAG_SECONDS = ALB_LAG_SECONDS
# Custom namespaces (PutMetricData): "a few seconds delay for the data to become available to the alarm"
# (AWS re:Post, https://repost.aws/questions/QUGIWUPlEYQWaCBm9x2WfnWA); "CloudWatch alarms evaluate metrics
# based on the datapoints that are immediately available" (https://repost.aws/knowledge-center/cloudwatch-trigger-metric).
CUSTOM_LAG_SECONDS = 5.0
DEFAULT_LAGS = {"AWS/ApplicationELB": ALB_LAG_SECONDS}
# How often the stand-in looks for new data in moto: first-seen (and evaluation times) accurate to this.
SWEEP_SECONDS = 5.0


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def statistic(  # noqa: PLR0911 - one answer per statistic
    samples: list[Sample], stat: str
) -> float | None:
    """One statistic over samples of (sum, min, max, count, raw values)."""
    if not samples:
        return None
    total = sum(s[0] for s in samples)
    count = sum(s[3] for s in samples)
    if stat == "Sum":
        return total
    if stat == "SampleCount":
        return count
    if stat == "Average":
        return total / count if count else None
    if stat == "Minimum":
        return min(s[1] for s in samples)
    if stat == "Maximum":
        return max(s[2] for s in samples)
    if stat.startswith("p"):
        values = sorted(v for s in samples for v in s[4])
        if not values:
            return None
        rank = max(0, math.ceil(float(stat[1:]) / 100 * len(values)) - 1)
        return values[rank]
    raise ValueError(f"unsupported statistic {stat}")


def _dims_key(dims: Any) -> frozenset[tuple[str, str]]:
    result = set()
    for d in dims or []:
        if isinstance(d, dict):
            result.add((str(d.get("Name") or d.get("name")), str(d.get("Value") or d.get("value"))))
        else:
            result.add((str(d.name), str(d.value)))
    return frozenset(result)


_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate_expression(expression: str, values: dict[str, float | None]) -> float | None:
    """Metric math for one period: + - * /, numbers, query ids, FILL(id, n), IF(cond, a, b), MAX/MIN([..])."""

    def walk(node: ast.AST) -> float | None:  # noqa: PLR0911, PLR0912 - one branch per node type
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values.get(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Div) and right == 0:
                return None
            return _BINOPS[type(node.op)](left, right)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = walk(node.left), walk(node.comparators[0])
            if left is None or right is None:
                return None
            ops = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le}
            return 1.0 if ops[type(node.ops[0])](left, right) else 0.0
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id.upper()
            if name == "FILL":
                value = walk(node.args[0])
                return walk(node.args[1]) if value is None else value
            if name == "IF":
                cond = walk(node.args[0])
                if cond is None:
                    return None
                branch = node.args[1] if cond else (node.args[2] if len(node.args) > 2 else None)
                return walk(branch) if branch is not None else None
            if name in {"MAX", "MIN"} and node.args and isinstance(node.args[0], ast.List):
                items = [v for v in (walk(e) for e in node.args[0].elts) if v is not None]
                if not items:
                    return None
                return max(items) if name == "MAX" else min(items)
        raise ValueError(f"unsupported metric math in {expression!r}")

    return walk(ast.parse(expression.replace("AND", "and"), mode="eval"))


@dataclass(frozen=True)
class Window:
    """What one evaluation of an alarm sees."""

    periods: tuple[tuple[float, float | None], ...]  # (start in drill seconds, value or None), newest first
    pending: int  # datapoints of these periods still within their ingestion lag (not yet visible)

    @property
    def values(self) -> list[float | None]:
        return [value for _, value in self.periods]


@dataclass
class Evaluation:
    state: str
    reason: str
    reason_data: dict[str, Any]
    datapoints: list[float | None]  # newest first
    window: Window


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation of one alarm, for the drill's picture and its JSON report."""

    t: float  # drill seconds of the evaluation
    alarm: str
    state: str  # the alarm's state after the evaluation
    datapoints: tuple[
        tuple[float, float | None], ...
    ]  # (start in drill seconds, value or None), newest first
    pending: int  # datapoints of the evaluated periods still within their ingestion lag

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 3),
            "alarm": self.alarm,
            "state": self.state,
            "datapoints": [[round(start, 3), value] for start, value in self.datapoints],
            "pending": self.pending,
        }


# "Setting this to 60 specifies this metric as a regular-resolution metric, which CloudWatch stores at
# 1-minute resolution" (botocore PutMetricData.StorageResolution; 60 when absent): an alarm with a 10-30 s
# Period "does not receive data for the attempts that do not correspond to a one-minute data resolution"
# (PutMetricAlarm.Period). moto keeps no StorageResolution: the stand-in tags each datum with it as moto
# stores it, and files a regular-resolution datum at the start of its minute.
REGULAR_RESOLUTION_SECONDS = 60


def _datums_of(member: dict[str, Any]) -> int:
    """The datums moto's put_metric_data appends for one MetricData member: Values x Counts, else one."""
    if member.get("Values"):
        counts = member.get("Counts") or ["1"] * len(member["Values"])
        return sum(int(float(c)) for c in counts)
    return 1


@contextmanager
def storage_resolution_kept() -> Iterator[None]:
    """While it lasts, each datum moto stores carries its MetricData member's StorageResolution."""
    original = CloudWatchBackend.put_metric_data

    def put_metric_data(
        backend: CloudWatchBackend, namespace: str, metric_data: list[dict[str, Any]]
    ) -> None:
        start = len(backend.metric_data)
        original(backend, namespace, metric_data)
        added = iter(backend.metric_data[start:])
        for member in metric_data:
            resolution = int(member.get("StorageResolution") or REGULAR_RESOLUTION_SECONDS)
            for datum in itertools.islice(added, _datums_of(member)):
                setattr(datum, "storage_resolution", resolution)  # noqa: B010 - moto's datum has none

    CloudWatchBackend.put_metric_data = put_metric_data  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        CloudWatchBackend.put_metric_data = original  # type: ignore[method-assign]


class _Seen(NamedTuple):
    """A datum of moto's, as the stand-in first saw it."""

    aws_at: float  # its Timestamp, in AWS seconds of the drill clock (to the millisecond)
    first_seen: float  # drill seconds when the sweep first found it in moto
    sample: Sample


class _Series:
    """One metric's data (namespace, name, dimensions), ordered by Timestamp."""

    __slots__ = ("seen", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.seen: list[_Seen] = []

    def add(self, seen: _Seen) -> None:
        at = bisect.bisect_right(self.times, seen.aws_at)  # the end, unless published out of order
        self.times.insert(at, seen.aws_at)
        self.seen.insert(at, seen)

    def between(self, start: float, end: float) -> list[_Seen]:
        """The data whose Timestamp is in [start, end) AWS seconds."""
        return self.seen[bisect.bisect_left(self.times, start) : bisect.bisect_left(self.times, end)]


_Key = tuple[str, str, frozenset[tuple[str, str]]]


def _period_index(aws_seconds: float, period: float) -> int:
    """The aligned period [k*P, (k+1)*P) that holds `aws_seconds` (rounded first: 0.1 + 0.2 is 0.3 here)."""
    return math.floor(round(aws_seconds / period, 9))


class AlarmEvaluator(Lifecycle):
    """Evaluates every alarm in moto at AWS's cadence; writes state changes back and delivers actions.

    `lags`: AWS seconds a datum spends in CloudWatch before alarms see it, per namespace (the defaults below
    for the others). `phase`: AWS seconds into each minute (and, modulo 10, into each 10 s) at which alarms
    are evaluated; AWS does not document its offset, the default is the middle of the minute so that no
    figure sits on the edge of a datum becoming visible. `sweep_every`: AWS seconds between sweeps of moto's
    data (the accuracy of first-seen, and of evaluation times).
    """

    def __init__(
        self,
        cloudwatch: Any,
        scale: TimeScale,
        deliver_sns: Callable[[str, str, str], None],
        on_change: Callable[[StateChange], None] | None = None,
        *,
        lags: dict[str, float] | None = None,
        phase: float = EVALUATION_PHASE_SECONDS,
        sweep_every: float = SWEEP_SECONDS,
    ) -> None:
        self._cw = cloudwatch
        self._scale = scale
        self._deliver = deliver_sns
        self._on_change = on_change
        self._lags = {**DEFAULT_LAGS, **(lags or {})}
        self._phase = phase
        self._lock = threading.RLock()
        # The sweep: moto's metric_data is append-only, so each sweep reads only what was appended since.
        self._swept: list[Any] | None = None
        self._swept_count = 0
        self._index: dict[_Key, _Series] = {}
        # The evaluation times passed, per cadence; whether the last listing had high-resolution alarms.
        self._last_slot = {STANDARD_EVALUATION_SECONDS: 0, HIGH_RESOLUTION_EVALUATION_SECONDS: 0}
        self._ticked = False
        self._high_resolution = True
        self._loop = Loop(
            "cloudwatch-alarms", self.tick, every=scale.drill(sweep_every), fixed_rate=True, clock=scale.now
        )
        self.history: list[StateChange] = []
        self.evaluations: list[EvaluationRecord] = []

    def start(self) -> Self:
        # CloudWatch stamps a datum that comes without a Timestamp when it receives it: on the AWS clock
        # (moto would use the wall clock, which runs ahead of it by the time the clock was held).
        self._moto_utcnow = getattr(cloudwatch_models, "utcnow")  # noqa: B009 - moto does not export it
        setattr(cloudwatch_models, "utcnow", self._aws_utcnow)  # noqa: B010 - patching moto's module
        self._resolution = storage_resolution_kept()
        self._resolution.__enter__()
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop(timeout=10)
        setattr(cloudwatch_models, "utcnow", self._moto_utcnow)  # noqa: B010 - patching moto's module
        self._resolution.__exit__(None, None, None)

    def _aws_utcnow(self) -> datetime:
        return datetime.fromtimestamp(self._scale.timestamp(), UTC).replace(tzinfo=None)

    def states(self) -> dict[str, str]:
        alarms = self._cw.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        return {a["AlarmName"]: a["StateValue"] for a in alarms}

    def lag(self, namespace: str) -> float:
        """AWS seconds a datum of `namespace` takes to become visible to alarms."""
        if namespace in self._lags:
            return self._lags[namespace]
        return AWS_SERVICE_LAG_SECONDS if namespace.startswith("AWS/") else CUSTOM_LAG_SECONDS

    # ------------------------------------------------------------------ the loop
    def tick(self, now: float | None = None) -> None:
        """One step of the loop: sweep moto's data, then evaluate the alarms whose evaluation time came.

        Evaluation times are phase + k * 60 AWS seconds for standard alarms and phase % 10 + k * 10 for
        high-resolution ones; the first tick only sets the clock going (an alarm is evaluated from its next
        time on). The alarms are listed only when some are due, and the 10 s times are only looked at while
        the last listing had high-resolution alarms (one created meanwhile waits for the next minute).
        """
        # CloudWatch evaluates at an instant: the stand-in's own time to sweep and evaluate is not AWS time.
        with self._lock, self._scale.hold("CloudWatch alarm evaluation", record=False):
            now = self._scale.now() if now is None else now
            self.sweep(now)
            slots = {cadence: self._slot(cadence, now) for cadence in self._last_slot}
            due: dict[float, list[float]] = {}
            if self._ticked:
                # Every evaluation time passed since the last tick: the last one now, as ever; any earlier one
                # (this loop's thread was late by more than a cadence) at its own time, as AWS evaluated it.
                due = {
                    c: [
                        *(
                            self._slot_time(c, k)
                            for k in range(max(self._last_slot[c] + 1, slot - CATCH_UP), slot)
                        ),
                        now,
                    ]
                    for c, slot in slots.items()
                    if slot > self._last_slot[c]
                }
                if not self._high_resolution:
                    due.pop(HIGH_RESOLUTION_EVALUATION_SECONDS, None)
            else:
                self._ticked = True
            self._last_slot.update(slots)
            if not due:
                return
            alarms = self._alarms()
            self._high_resolution = any(
                self._cadence(alarm) == HIGH_RESOLUTION_EVALUATION_SECONDS for alarm in alarms
            )
            for at in sorted({t for times in due.values() for t in times}):
                for alarm in alarms:
                    if at in due.get(self._cadence(alarm), ()):
                        self._evaluate_one(alarm, at)

    def evaluate_all(self, now: float | None = None) -> None:
        """Sweep, then evaluate every alarm at `now` (drill seconds; tests choose it), cadence or not."""
        with self._lock:
            now = self._scale.now() if now is None else now
            self.sweep(now)
            for alarm in self._alarms():
                self._evaluate_one(alarm, now)

    def sweep(self, now: float | None = None) -> int:
        """Record when each datum appended to moto since the last sweep was first seen; how many were new."""
        with self._lock:
            now = self._scale.now() if now is None else now
            data = cloudwatch_backends[ACCOUNT_ID][REGION].metric_data
            if data is not self._swept or len(data) < self._swept_count:  # moto's backend was reset
                self._swept, self._swept_count = data, 0
                self._index.clear()
            new = data[self._swept_count :]
            self._swept_count += len(new)
            epoch = self._scale.timestamp(0.0)
            for datum in new:
                if isinstance(datum, MetricDatum):
                    v = float(datum.value)
                    sample: Sample = (v, v, v, 1.0, [v])
                elif isinstance(datum, MetricAggregatedDatum):
                    sample = (datum.sum, datum.min, datum.max, datum.sample_count, [])
                else:
                    continue
                key = (datum.namespace, datum.name, _dims_key(datum.dimensions))
                # To the millisecond: a Timestamp set on a period boundary stays on it (float and datetime
                # rounding move it by microseconds).
                aws_at = round(self._scale.aws(_epoch(datum.timestamp) - epoch), 3)
                if getattr(datum, "storage_resolution", REGULAR_RESOLUTION_SECONDS) != 1:
                    aws_at = math.floor(aws_at / REGULAR_RESOLUTION_SECONDS) * REGULAR_RESOLUTION_SECONDS
                self._index.setdefault(key, _Series()).add(_Seen(aws_at, now, sample))
            return len(new)

    def _alarms(self) -> list[dict[str, Any]]:
        paginator = self._cw.get_paginator("describe_alarms")
        return [a for page in paginator.paginate(AlarmTypes=["MetricAlarm"]) for a in page["MetricAlarms"]]

    def _cadence(self, alarm: dict[str, Any]) -> float:
        """AWS seconds between two evaluations of the alarm."""
        if self._period(alarm) in HIGH_RESOLUTION_PERIODS:
            return HIGH_RESOLUTION_EVALUATION_SECONDS
        return STANDARD_EVALUATION_SECONDS

    def _slot_time(self, cadence: float, slot: int) -> float:
        """Drill seconds of evaluation time `slot` (AWS: phase % cadence + slot * cadence)."""
        return self._scale.drill(self._phase % cadence + slot * cadence)

    def _slot(self, cadence: float, now: float) -> int:
        """Which evaluation time of `cadence` `now` follows (evaluation times at phase + k * cadence)."""
        return _period_index(self._scale.aws(now) - self._phase % cadence, cadence)

    # ------------------------------------------------------------------ evaluation
    @staticmethod
    def _period(alarm: dict[str, Any]) -> float:
        """The alarm's Period in AWS seconds (a metric-math alarm's: its first MetricStat's)."""
        period = alarm.get("Period")
        if not period:
            for query in alarm.get("Metrics") or []:
                if query.get("MetricStat"):
                    period = query["MetricStat"]["Period"]
                    break
        return float(period or 60)

    def window(self, alarm: dict[str, Any], now: float) -> Window:
        """The alarm's value per period, newest first, over its evaluation range of complete periods.

        AWS's default SlidingWindow: the window ends at the last boundary of the alarm's evaluation grid
        (the minute; 10 s for a high-resolution alarm) and is cut into periods of Period back from there, so
        60 s periods are the clock's minutes [k*60, (k+1)*60) and a 300 s period ends on a minute, not on a
        multiple of 300.
        """
        with self._lock:
            period = self._period(alarm)
            count = int(alarm["EvaluationPeriods"]) + EVALUATION_RANGE_EXTRA_PERIODS
            grid = self._cadence(alarm)
            end = _period_index(self._scale.aws(now), grid) * grid  # AWS seconds: the window's end
            visible: dict[str, dict[int, list[Sample]]] = {}
            pending = 0
            for query_id, namespace, name, dims in self._metrics(alarm):
                per_period: dict[int, list[Sample]] = {j: [] for j in range(1, count + 1)}
                lag = self._scale.drill(self.lag(namespace))
                series = self._index.get((namespace, name, _dims_key(dims)))
                for seen in series.between(end - count * period, end) if series else []:
                    j = math.ceil(round((end - seen.aws_at) / period, 9))  # 1: the newest complete period
                    if j not in per_period:
                        continue
                    if seen.first_seen + lag <= now:
                        per_period[j].append(seen.sample)
                    else:
                        pending += 1
                visible[query_id] = per_period
            periods = tuple(
                (
                    self._scale.drill(end - j * period),
                    self._period_value(alarm, {q: v[j] for q, v in visible.items()}),
                )
                for j in range(1, count + 1)
            )
            return Window(periods, pending)

    def series(self, alarm: dict[str, Any], now: float) -> list[float | None]:
        """The alarm's value per period of its evaluation range, newest first (no period starts)."""
        return self.window(alarm, now).values

    @staticmethod
    def _metrics(alarm: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
        """(query id, namespace, metric name, dimensions) of each metric the alarm reads."""
        if alarm.get("MetricName"):
            return [("", alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions"))]
        out = []
        for query in alarm.get("Metrics") or []:
            if query.get("MetricStat"):
                metric = query["MetricStat"]["Metric"]
                out.append((query["Id"], metric["Namespace"], metric["MetricName"], metric.get("Dimensions")))
        return out

    @staticmethod
    def _period_value(alarm: dict[str, Any], samples: dict[str, list[Sample]]) -> float | None:
        """The alarm's value for one period from each metric's visible samples (keyed by query id)."""
        if alarm.get("MetricName"):
            stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic") or "Average"
            return statistic(samples[""], stat)
        values: dict[str, float | None] = {}
        result: float | None = None
        queries = alarm.get("Metrics") or []
        for query in queries:
            if query.get("MetricStat"):
                values[query["Id"]] = statistic(samples[query["Id"]], query["MetricStat"]["Stat"])
        for query in queries:
            if query.get("Expression"):
                values[query["Id"]] = evaluate_expression(query["Expression"], values)
        for query in queries:
            if query.get("ReturnData", True):
                result = values.get(query["Id"])
        return result

    def evaluate(self, alarm: dict[str, Any], now: float) -> Evaluation:
        window = self.window(alarm, now)
        periods = int(alarm["EvaluationPeriods"])
        real = [v for v in window.values if v is not None]
        # The most recent real datapoints of the range; fewer than EvaluationPeriods: all of them, and the
        # rest is missing data, treated as TreatMissingData says.
        data: list[float | None] = [*real[:periods], *([None] * (periods - len(real)))]
        needed = int(alarm.get("DatapointsToAlarm") or periods)
        threshold = float(alarm.get("Threshold", 0.0))
        compare = COMPARE[alarm["ComparisonOperator"]]
        treat = alarm.get("TreatMissingData") or "missing"
        breaching = 0
        present = 0
        for value in data:
            if value is None:
                if treat == "breaching":
                    breaching += 1
                    present += 1
                elif treat == "notBreaching":
                    present += 1
                continue
            present += 1
            if compare(value, threshold):
                breaching += 1
        words = COMPARE_TEXT[alarm["ComparisonOperator"]]
        shown = ", ".join(f"{v}" for v in data if v is not None)
        reason_data = {
            "version": "1.0",
            "queryDate": _ts(datetime.fromtimestamp(self._scale.timestamp(now), UTC)),
            "statistic": alarm.get("Statistic") or alarm.get("ExtendedStatistic") or "Expression",
            "period": alarm.get("Period") or 60,
            "recentDatapoints": [v for v in data if v is not None],
            "threshold": threshold,
        }
        if breaching >= needed:
            reason = (
                f"Threshold Crossed: {breaching} out of the last {periods} datapoints [{shown}] were {words} "
                f"the threshold ({threshold}) (minimum {needed} datapoints for OK -> ALARM transition)."
            )
            return Evaluation("ALARM", reason, reason_data, data, window)
        if present == 0:
            if treat == "ignore":
                return Evaluation(alarm["StateValue"], "", reason_data, data, window)
            reason = f"Insufficient Data: {periods} datapoints were unknown."
            return Evaluation("INSUFFICIENT_DATA", reason, reason_data, data, window)
        reason = (
            f"Threshold Crossed: no more than {breaching} out of the last {periods} datapoints [{shown}] "
            f"were {words} the threshold ({threshold}) "
            f"(minimum {needed} datapoints for ALARM -> OK transition)."
        )
        return Evaluation("OK", reason, reason_data, data, window)

    def _evaluate_one(self, alarm: dict[str, Any], now: float) -> None:
        result = self.evaluate(alarm, now)
        window = result.window
        self.evaluations.append(
            EvaluationRecord(now, alarm["AlarmName"], result.state, window.periods, window.pending)
        )
        old = alarm["StateValue"]
        if result.state == old:
            return
        self._cw.set_alarm_state(
            AlarmName=alarm["AlarmName"],
            StateValue=result.state,
            StateReason=result.reason[:1023],
            StateReasonData=json.dumps(result.reason_data),
        )
        # The change time is the evaluation's: scale.now() when the loop evaluates, the chosen time in tests.
        change: StateChange = (alarm["AlarmName"], old, result.state, result.reason, now)
        self.history.append(change)
        if self._on_change:
            self._on_change(change)
        if alarm.get("ActionsEnabled", True):
            actions = {
                "ALARM": alarm.get("AlarmActions"),
                "OK": alarm.get("OKActions"),
                "INSUFFICIENT_DATA": alarm.get("InsufficientDataActions"),
            }[result.state] or []
            message = alarm_message(alarm, old, result.state, result.reason)
            subject = f'{result.state}: "{alarm["AlarmName"]}" in {REGION_NAME}'[:100]
            for arn in actions:
                if arn.startswith("arn:aws:sns:"):
                    self._deliver(arn, subject, message)


def _ts(dt: Any) -> str:
    if isinstance(dt, datetime):
        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def alarm_message(alarm: dict[str, Any], old: str, new: str, reason: str) -> str:
    """The JSON message CloudWatch publishes to SNS for an alarm state change."""
    trigger: dict[str, Any]
    if alarm.get("MetricName"):
        trigger = {
            "MetricName": alarm["MetricName"],
            "Namespace": alarm["Namespace"],
            "StatisticType": "Statistic" if alarm.get("Statistic") else "ExtendedStatistic",
            "Statistic": (alarm.get("Statistic") or alarm.get("ExtendedStatistic") or "").upper(),
            "Unit": alarm.get("Unit"),
            "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in alarm.get("Dimensions", [])],
            "Period": alarm.get("Period"),
        }
    else:
        trigger = {"Metrics": alarm.get("Metrics", []), "Period": alarm.get("Period")}
    trigger.update(
        {
            "EvaluationPeriods": alarm["EvaluationPeriods"],
            "DatapointsToAlarm": alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]),
            "ComparisonOperator": alarm["ComparisonOperator"],
            "Threshold": alarm.get("Threshold"),
            "TreatMissingData": alarm.get("TreatMissingData", "missing"),
            "EvaluateLowSampleCountPercentile": alarm.get("EvaluateLowSampleCountPercentile", ""),
        }
    )
    return json.dumps(
        {
            "AlarmName": alarm["AlarmName"],
            "AlarmDescription": alarm.get("AlarmDescription"),
            "AWSAccountId": ACCOUNT_ID,
            "AlarmConfigurationUpdatedTimestamp": _ts(alarm.get("AlarmConfigurationUpdatedTimestamp")),
            "NewStateValue": new,
            "NewStateReason": reason,
            "StateChangeTime": _ts(None),
            "Region": REGION_NAME,
            "AlarmArn": alarm["AlarmArn"],
            "OldStateValue": old,
            "OKActions": alarm.get("OKActions", []),
            "AlarmActions": alarm.get("AlarmActions", []),
            "InsufficientDataActions": alarm.get("InsufficientDataActions", []),
            "Trigger": trigger,
        },
        default=str,
    )
