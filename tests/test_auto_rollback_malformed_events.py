"""auto_rollback, property-based: malformed or truncated events touch no AWS, never raise, and log why."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ALARM = "phoenix-dev-health-check-failed"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
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


class NoAws:
    """Stands in for a boto3 client: any use is recorded and fails the test."""

    def __init__(self, calls: list[str]) -> None:
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        self._calls.append(name)
        raise AssertionError(f"AWS called: {name}")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.decisions.append(json.loads(record.getMessage()))


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
def function(lambda_importer: Callable[[str], ModuleType]) -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "ENVIRONMENT": "dev",
            "CODEDEPLOY_APPLICATION": "phoenix-dev",
            "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
            "ALARM_NAMES": ALARM,
            "NOTIFICATIONS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:phoenix-dev-notifications",
        }.items():
            patch.setenv(key, value)
        yield lambda_importer("auto_rollback")


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
    calls: list[str] = []
    lines = Lines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(function, "CODEDEPLOY", NoAws(calls))
        patch.setattr(function, "SNS", NoAws(calls))
        function.LOGGER.addHandler(lines)
        try:
            result = function.lambda_handler(event, lambda_context)
        finally:
            function.LOGGER.removeHandler(lines)
    assert calls == []
    assert result["outcomes"] == []
    [line] = lines.decisions
    assert line["decision"] in {
        "event rejected",
        "ignored: alarm not configured",
        "ignored: not a transition into ALARM",
    }
    if line["decision"] == "event rejected":
        assert line["reason"]
        assert result["rejected"] == line["reason"]
