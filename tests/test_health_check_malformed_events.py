"""health_check, property-based: malformed or truncated events touch no AWS, never raise, and log why."""

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

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
# (sample, field, corruptions that leave no valid trigger): any text is a valid hook execution id, so that
# field is only deleted or given a non-string; a truncated DeploymentId no longer matches d-XXXXXXXXX.
CORRUPTIONS: list[tuple[str, str, tuple[str, ...]]] = [
    ("codedeploy-lifecycle-hook", "DeploymentId", ("delete", "replace", "truncate")),
    ("codedeploy-lifecycle-hook", "LifecycleEventHookExecutionId", ("delete", "non-string", "empty")),
    ("eventbridge-scheduled", "detail-type", ("delete", "replace", "truncate")),
    ("eventbridge-scheduled", "source", ("delete", "replace", "truncate")),
]


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


SAMPLES: dict[str, Any] = {}


@st.composite
def malformed_events(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(JSON_VALUES)
    sample, key, ways = draw(st.sampled_from(CORRUPTIONS))
    event = copy.deepcopy(SAMPLES[sample])
    how = draw(st.sampled_from(ways))
    if how == "delete":
        del event[key]
    elif how == "truncate":
        event[key] = event[key][: draw(st.integers(0, len(event[key]) - 1))]
    elif how == "empty":
        event[key] = draw(st.sampled_from(["", "   "]))
    elif how == "non-string":
        event[key] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, str)))
    else:
        event[key] = draw(JSON_VALUES.filter(lambda v: v not in ("Scheduled Event", "aws.events")))
    return event


@pytest.fixture(scope="module")
def function(
    lambda_importer: Callable[[str], ModuleType], load_event: Callable[[str], Any]
) -> Iterator[ModuleType]:
    SAMPLES.update({name: load_event(name) for name, _, _ in CORRUPTIONS})
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "ENVIRONMENT": "dev",
            "PRODUCTION_URL": "http://127.0.0.1:9",
            "TEST_URL": "http://127.0.0.1:9",
            "CODEDEPLOY_APPLICATION": "phoenix-dev",
            "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
        }.items():
            patch.setenv(key, value)
        yield lambda_importer("health_check")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=malformed_events())
def test_malformed_events_touch_no_aws_raise_nothing_and_log_why(
    function: ModuleType, lambda_context: Any, event: Any
) -> None:
    calls: list[str] = []
    lines = Lines()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(function, "CODEDEPLOY", NoAws(calls))
        patch.setattr(function, "CLOUDWATCH", NoAws(calls))
        function.LOGGER.addHandler(lines)
        try:
            result = function.lambda_handler(event, lambda_context)
        finally:
            function.LOGGER.removeHandler(lines)
    assert calls == []
    assert result["trigger"] == "rejected"
    [line] = lines.decisions
    assert line["decision"] == "event rejected"
    assert line["reason"] == result["reason"]
