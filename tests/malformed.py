"""Shared by the property-based malformed-event tests of the two Lambda functions: arbitrary JSON values,
a boto3 client stand-in that fails on any use, the function with its environment set while a module-scoped
fixture lives, and one invocation with every AWS client replaced that returns the result, the AWS calls and
the logged decisions."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import strategies as st

from local.aws.lambda_bootstrap import JsonFormatter

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
BASE_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "ENVIRONMENT": "dev",
    "CODEDEPLOY_APPLICATION": "phoenix-dev",
    "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
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
        # as Lambda's runtime writes it (LogFormat JSON): the decision is `message`
        self.decisions.append(json.loads(JsonFormatter().format(record)))


def function_with_env(
    lambda_module: Callable[[str], ModuleType], name: str, env: dict[str, str]
) -> Iterator[ModuleType]:
    """For a module-scoped fixture: lambdas/<name>.py with BASE_ENV plus `env` set while it lives (the
    configuration is read on first use, within an invocation)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**BASE_ENV, **env}.items():
            patch.setenv(key, value)
        yield lambda_module(name)
    lambda_module(name)  # forget what was built with that environment


def invoke_without_aws(
    function: ModuleType, clients: Iterable[str], event: Any, context: Any
) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """`function.lambda_handler(event, context)`, each named client a NoAws: (result, calls, decisions)."""
    calls: list[str] = []
    lines = Lines()
    with pytest.MonkeyPatch.context() as patch:
        for client in clients:
            patch.setattr(function, client, functools.partial(NoAws, calls))
        function.LOGGER.addHandler(lines)
        try:
            result = function.lambda_handler(event, context)
        finally:
            function.LOGGER.removeHandler(lines)
    return result, calls, lines.decisions
