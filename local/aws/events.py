"""EventBridge: schedules, and the events AWS services send to the default bus.

`Scheduler`: every enabled schedule rule in moto fires its event at its Lambda targets. The rule's
`rate(...)` is AWS time, scaled by the time-scale factor; each target gets the EventBridge "Scheduled Event"
as an asynchronous invocation, as EventBridge sends it.

`EventBus.put`: a service event (the CodePipeline and CodeDeploy stand-ins' state changes) goes to every
enabled rule of the default bus whose EventPattern matches it (moto's matcher) and on to the rule's SNS and
Lambda targets, through the target's Input or InputTransformer (moto's template parser; a string template
arrives as its JSON text, quotes included, as EventBridge delivers it). A Lambda target is invoked
asynchronously ("EventBridge invokes your function asynchronously", Lambda Developer Guide, "Invoking a
Lambda function with an EventBridge rule") with the event as JSON: the whole event (without moto's
`ingestion-time`), or the Input / transformed input parsed. moto itself delivers to no SNS or Lambda target,
hence this.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Self

from moto.events.models import EventPattern
from moto.events.utils import EventMessageType, EventTemplateParser

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


class EventBus:
    """The default event bus of moto's EventBridge, delivering to SNS targets, and to Lambda targets once
    `runtime` is set (the Lambda runtime starts after the stacks that hold the rules)."""

    def __init__(
        self, events: Any, sns: Any, clock: Any = None, runtime: LambdaRuntime | None = None
    ) -> None:
        self._events = events
        self._sns = sns
        self._clock = clock
        self.runtime = runtime

    def put(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> int:
        """Deliver one event; how many targets it reached."""
        now = datetime.fromtimestamp(self._clock(), UTC) if self._clock else datetime.now(UTC)
        event: EventMessageType = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT_ID,
            "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION,
            "resources": resources,
            "detail": detail,
            "ingestion-time": now.timestamp(),
        }
        delivered = 0
        for rule in self._events.list_rules()["Rules"]:
            pattern = rule.get("EventPattern")
            if (
                rule.get("State") != "ENABLED"
                or not pattern
                or not EventPattern.load(pattern).matches_event(event)
            ):
                continue
            for target in self._events.list_targets_by_rule(Rule=rule["Name"])["Targets"]:
                if ":sns:" in target["Arn"]:
                    self._sns.publish(TopicArn=target["Arn"], Message=_transformed(target, event))
                    delivered += 1
                elif ":lambda:" in target["Arn"] and self.runtime is not None:
                    payload = json.loads(_transformed(target, event))
                    self.runtime.invoke_async(target["Arn"], payload, source=f"events:{rule['Name']}")
                    delivered += 1
        return delivered


def _transformed(target: dict[str, Any], event: EventMessageType) -> str:
    transformer = target.get("InputTransformer")
    if transformer:
        value = EventTemplateParser.parse(
            input_template=transformer["InputTemplate"],
            input_paths_map=transformer.get("InputPathsMap") or {},
            event=event,
        )
        return json.dumps(value)
    if "Input" in target:
        return str(target["Input"])
    return json.dumps({k: v for k, v in event.items() if k != "ingestion-time"})
