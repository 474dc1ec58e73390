"""health_check, property-based: malformed or truncated events touch no AWS, never raise, and log why."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.malformed import JSON_VALUES, function_with_env, invoke_without_aws

# (sample, field, corruptions that leave no valid trigger): any text is a valid hook execution id, so that
# field is only deleted or given a non-string; a truncated DeploymentId no longer matches d-XXXXXXXXX.
CORRUPTIONS: list[tuple[str, str, tuple[str, ...]]] = [
    ("codedeploy-lifecycle-hook", "DeploymentId", ("delete", "replace", "truncate")),
    ("codedeploy-lifecycle-hook", "LifecycleEventHookExecutionId", ("delete", "non-string", "empty")),
    ("eventbridge-scheduled", "detail-type", ("delete", "replace", "truncate")),
    ("eventbridge-scheduled", "source", ("delete", "replace", "truncate")),
]


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
    lambda_module: Callable[[str], ModuleType], load_event: Callable[[str], Any]
) -> Iterator[ModuleType]:
    SAMPLES.update({name: load_event(name) for name, _, _ in CORRUPTIONS})
    yield from function_with_env(
        lambda_module,
        "health_check",
        {"PRODUCTION_URL": "http://127.0.0.1:9", "TEST_URL": "http://127.0.0.1:9"},
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=malformed_events())
def test_malformed_events_touch_no_aws_raise_nothing_and_log_why(
    function: ModuleType, lambda_context: Any, event: Any
) -> None:
    clients = ["codedeploy", "cloudwatch"]
    result, calls, decisions = invoke_without_aws(function, clients, event, lambda_context)
    assert calls == []
    assert result["trigger"] == "rejected"
    [line] = decisions
    assert line["message"] == "event rejected"
    assert line["reason"] == result["reason"]
