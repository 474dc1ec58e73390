"""CloudWatch alarm evaluation with the real semantics, over the metrics stored in moto.

Every alarm in moto is evaluated on each tick: the last EvaluationPeriods complete periods (Period scaled by
the time-scale factor) of its metric (or metric-math expression), the Statistic or ExtendedStatistic per
period, ComparisonOperator against Threshold, DatapointsToAlarm out of EvaluationPeriods, TreatMissingData.
A state change is written back to moto (SetAlarmState, with AWS's reason text and reasonData) and its actions
are delivered: SNS topics get the real alarm message (the shape of tests/events/sns-cloudwatch-alarm.json).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum, cloudwatch_backends

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


def _epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def statistic(  # noqa: PLR0911 - one answer per statistic
    samples: list[tuple[float, float, float, float, list[float]]], stat: str
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


@dataclass
class Evaluation:
    state: str
    reason: str
    reason_data: dict[str, Any]
    datapoints: list[float | None]


class AlarmEvaluator(Lifecycle):
    """Evaluates every alarm in moto on a tick; writes state changes back and delivers actions."""

    def __init__(
        self,
        cloudwatch: Any,
        scale: TimeScale,
        deliver_sns: Callable[[str, str, str], None],
        on_change: Callable[[StateChange], None] | None = None,
        tick: float | None = None,
    ) -> None:
        self._cw = cloudwatch
        self._scale = scale
        self._deliver = deliver_sns
        self._on_change = on_change
        self._origin = datetime.now(UTC).timestamp()
        # Standard alarms are evaluated once a minute, whatever their period.
        self._loop = Loop("cloudwatch-alarms", self.evaluate_all, every=tick or scale.drill(60))
        self._lock = threading.Lock()
        self.history: list[StateChange] = []

    def start(self) -> Self:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop(timeout=10)

    def states(self) -> dict[str, str]:
        alarms = self._cw.describe_alarms(AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        return {a["AlarmName"]: a["StateValue"] for a in alarms}

    def evaluate_all(self, now: float | None = None) -> None:
        with self._lock:
            now = datetime.now(UTC).timestamp() if now is None else now
            paginator = self._cw.get_paginator("describe_alarms")
            for page in paginator.paginate(AlarmTypes=["MetricAlarm"]):
                for alarm in page["MetricAlarms"]:
                    self._evaluate_one(alarm, now)

    # ------------------------------------------------------------------ evaluation
    def _period(self, alarm: dict[str, Any]) -> float:
        period = alarm.get("Period")
        if not period:
            for query in alarm.get("Metrics") or []:
                if query.get("MetricStat"):
                    period = query["MetricStat"]["Period"]
                    break
        return self._scale.drill(float(period or 60))

    def _samples(
        self, namespace: str, name: str, dims: Any, start: float, end: float
    ) -> list[tuple[float, float, float, float, list[float], float]]:
        wanted = _dims_key(dims)
        backend = cloudwatch_backends[ACCOUNT_ID][REGION]
        result = []
        for datum in list(backend.metric_data):
            if datum.namespace != namespace or datum.name != name:
                continue
            ts = _epoch(datum.timestamp)
            if not start <= ts < end or _dims_key(datum.dimensions) != wanted:
                continue
            if isinstance(datum, MetricDatum):
                v = float(datum.value)
                result.append((v, v, v, 1.0, [v], ts))
            elif isinstance(datum, MetricAggregatedDatum):
                result.append((datum.sum, datum.min, datum.max, datum.sample_count, [], ts))
        return result

    def series(self, alarm: dict[str, Any], now: float) -> list[float | None]:
        """The alarm's value per period, newest first, over its last EvaluationPeriods complete periods."""
        period = self._period(alarm)
        periods = int(alarm["EvaluationPeriods"])
        current = math.floor((now - self._origin) / period)
        out: list[float | None] = []
        for k in range(current - 1, current - 1 - periods, -1):
            start, end = self._origin + k * period, self._origin + (k + 1) * period
            out.append(self._period_value(alarm, start, end))
        return out

    def _period_value(self, alarm: dict[str, Any], start: float, end: float) -> float | None:
        if alarm.get("MetricName"):
            samples = self._samples(
                alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions"), start, end
            )
            stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic") or "Average"
            return statistic([s[:5] for s in samples], stat)
        values: dict[str, float | None] = {}
        result: float | None = None
        queries = alarm.get("Metrics") or []
        for query in queries:
            if query.get("MetricStat"):
                stat_def = query["MetricStat"]
                metric = stat_def["Metric"]
                samples = self._samples(
                    metric["Namespace"], metric["MetricName"], metric.get("Dimensions"), start, end
                )
                values[query["Id"]] = statistic([s[:5] for s in samples], stat_def["Stat"])
        for query in queries:
            if query.get("Expression"):
                values[query["Id"]] = evaluate_expression(query["Expression"], values)
        for query in queries:
            if query.get("ReturnData", True):
                result = values.get(query["Id"])
        return result

    def evaluate(self, alarm: dict[str, Any], now: float) -> Evaluation:
        data = self.series(alarm, now)
        periods = len(data)
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
            "queryDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
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
            return Evaluation("ALARM", reason, reason_data, data)
        if present == 0:
            if treat == "ignore":
                return Evaluation(alarm["StateValue"], "", reason_data, data)
            reason = f"Insufficient Data: {periods} datapoints were unknown."
            return Evaluation("INSUFFICIENT_DATA", reason, reason_data, data)
        reason = (
            f"Threshold Crossed: no more than {breaching} out of the last {periods} datapoints [{shown}] "
            f"were {words} the threshold ({threshold}) "
            f"(minimum {needed} datapoints for ALARM -> OK transition)."
        )
        return Evaluation("OK", reason, reason_data, data)

    def _evaluate_one(self, alarm: dict[str, Any], now: float) -> None:
        result = self.evaluate(alarm, now)
        old = alarm["StateValue"]
        if result.state == old:
            return
        self._cw.set_alarm_state(
            AlarmName=alarm["AlarmName"],
            StateValue=result.state,
            StateReason=result.reason[:1023],
            StateReasonData=json.dumps(result.reason_data),
        )
        change: StateChange = (alarm["AlarmName"], old, result.state, result.reason, self._scale.now())
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
