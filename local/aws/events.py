"""EventBridge schedules: every enabled schedule rule in moto fires its event at its Lambda targets.

The rule's `rate(...)` is AWS time, scaled by the time-scale factor; each target gets the EventBridge
"Scheduled Event" as an asynchronous invocation, as EventBridge sends it.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Self

from local.aws.lambda_runtime import LambdaRuntime
from local.aws.moto_server import ACCOUNT_ID, REGION
from local.background import Lifecycle, Loop
from local.timescale import TimeScale

_RATE = re.compile(r"^rate\((\d+) (second|seconds|minute|minutes|hour|hours|day|days)\)$")
_UNIT = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """AWS seconds between two events of a `rate(...)` schedule expression."""
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(f"unsupported schedule expression {expression!r} (rate(...) only)")
    return int(match.group(1)) * _UNIT[match.group(2).rstrip("s")]


def scheduled_event(rule_arn: str) -> dict[str, Any]:
    """The EventBridge 'Scheduled Event' a schedule rule sends its targets."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    }


class Scheduler(Lifecycle):
    """Fires every enabled EventBridge schedule rule in moto at its Lambda targets, scaled in time."""

    def __init__(self, events: Any, runtime: LambdaRuntime, scale: TimeScale) -> None:
        self._events = events
        self._runtime = runtime
        self._scale = scale
        self._loops: list[Loop] = []

    def start(self) -> Self:
        for rule in self._events.list_rules()["Rules"]:
            if rule.get("State") != "ENABLED" or not rule.get("ScheduleExpression"):
                continue
            targets = self._events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            arns = [t["Arn"] for t in targets if ":lambda:" in t["Arn"]]
            every = self._scale.drill(rate_seconds(rule["ScheduleExpression"]))
            fire = functools.partial(self._fire, rule["Arn"], arns)
            loop = Loop(f"schedule-{rule['Name']}", fire, every, fixed_rate=True, clock=self._scale.now)
            self._loops.append(loop.start())
        return self

    def _fire(self, rule_arn: str, arns: list[str]) -> None:
        for arn in arns:
            self._runtime.invoke_async(arn, scheduled_event(rule_arn), source="schedule")

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
