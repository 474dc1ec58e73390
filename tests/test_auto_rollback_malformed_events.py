"""auto_rollback, property-based: malformed or truncated events touch no AWS, never raise, and log why."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.malformed import JSON_VALUES, function_with_env, invoke_without_aws

ALARM = "phoenix-dev-health-check-failed"
# The fields that make an event an alarm transition this function acts on; anything else about it is optional.
REQUIRED: dict[str, list[tuple[Any, ...]]] = {
    "sns-cloudwatch-alarm": [
        ("Records",),
        ("Records", 0),
        ("Records", 0, "Sns"),
        ("Records", 0, "Sns", "Message"),
        ("Records", 0, "Sns", "Message", "AlarmName"),
        ("Records", 0, "Sns", "Message", "NewStateValue"),
        ("Records", 0, "Sns", "Message", "OldStateValue"),
    ],
    "eventbridge-alarm-state-change": [
        ("detail-type",),
        ("detail",),
        ("detail", "alarmName"),
        ("detail", "state"),
        ("detail", "state", "value"),
        ("detail", "previousState"),
        ("detail", "previousState", "value"),
    ],
    "cloudwatch-alarm-direct-invoke": [
        ("alarmData",),
        ("alarmData", "alarmName"),
        ("alarmData", "state"),
        ("alarmData", "state", "value"),
        ("alarmData", "previousState", "value"),
    ],
}


def _corrupt(event: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    """Apply one corruption at `path`; an SNS Message is decoded, corrupted and encoded again."""
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(event, str):  # the SNS Message: JSON inside a string
        return json.dumps(_corrupt(json.loads(event), path, how, value))
    container = copy.copy(event)
    if not rest:
        if how == "delete":
            del container[key]
        elif how == "truncate" and isinstance(container[key], str):
            container[key] = container[key][: len(container[key]) // 2]
        else:
            container[key] = value
        return container
    container[key] = _corrupt(container[key], rest, how, value)
    return container


@st.composite
def malformed_events(draw: st.DrawFn, samples: dict[str, Any]) -> Any:
    if draw(st.booleans()):
        return draw(JSON_VALUES)
    name = draw(st.sampled_from(sorted(REQUIRED)))
    path = draw(st.sampled_from(REQUIRED[name]))
    how = draw(st.sampled_from(["delete", "replace", "truncate"]))
    replacement = draw(JSON_VALUES.filter(lambda v: v not in ("OK", "ALARM", "INSUFFICIENT_DATA", ALARM)))
    return _corrupt(samples[name], path, how, replacement)


@pytest.fixture(scope="module")
def function(lambda_module: Callable[[str], ModuleType]) -> Iterator[ModuleType]:
    yield from function_with_env(
        lambda_module,
        "auto_rollback",
        {
            "ALARM_NAMES": ALARM,
            "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:phoenix-dev-notifications",
        },
    )


SAMPLES: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _samples(load_event: Callable[[str], Any]) -> None:
    SAMPLES.update({name: load_event(name) for name in REQUIRED})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_malformed_events_touch_no_aws_raise_nothing_and_log_why(
    function: ModuleType, lambda_context: Any, data: st.DataObject
) -> None:
    event = data.draw(malformed_events(SAMPLES))
    result, calls, decisions = invoke_without_aws(function, ["codedeploy", "sns"], event, lambda_context)
    assert calls == []
    assert result["outcomes"] == []
    [line] = decisions
    assert line["message"] in {
        "event rejected",
        "ignored: alarm not configured",
        "ignored: not a transition into ALARM",
    } or line["message"].startswith("ignored: the alarm's actions are suppressed")
    if line["message"] == "event rejected":
        assert line["reason"]
        assert result["rejected"] == line["reason"]
