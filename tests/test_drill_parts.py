"""The stand-in's pieces on their own: alarm semantics, metric math, deployment configurations, templates."""

from __future__ import annotations

from typing import Any

import pytest

from local.aws import TEMPLATES, Resolver, Stack, camel_case, load_template
from local.cloudwatch_alarms import AlarmEvaluator, evaluate_expression, statistic
from local.codedeploy_engine import shift_steps
from local.lambda_runtime import rate_seconds
from local.timescale import TimeScale


def sample(*values: float) -> list[tuple[float, float, float, float, list[float]]]:
    return [(v, v, v, 1.0, [v]) for v in values]


@pytest.mark.parametrize(
    ("stat", "expected"),
    [("Maximum", 3.0), ("Minimum", 1.0), ("Sum", 6.0), ("Average", 2.0), ("SampleCount", 3.0), ("p50", 2.0)],
)
def test_statistics_are_cloudwatch_statistics(stat: str, expected: float) -> None:
    assert statistic(sample(1, 2, 3), stat) == expected


def test_no_datapoints_is_no_statistic() -> None:
    assert statistic([], "Maximum") is None


def test_metric_math_fills_missing_errors_and_leaves_missing_requests_missing() -> None:
    assert evaluate_expression("100 * FILL(errors, 0) / requests", {"errors": None, "requests": 10.0}) == 0.0
    assert evaluate_expression("100 * FILL(errors, 0) / requests", {"errors": 5.0, "requests": 10.0}) == 50.0
    assert evaluate_expression("100 * FILL(errors, 0) / requests", {"errors": None, "requests": None}) is None


class FakeEvaluator(AlarmEvaluator):
    def __init__(self, data: list[float | None]) -> None:
        super().__init__(cloudwatch=None, scale=TimeScale(60), deliver_sns=lambda *_: None)
        self.data = data

    def series(self, alarm: dict[str, Any], now: float) -> list[float | None]:
        return self.data


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
    ],
)
def test_m_of_n_and_treat_missing_data(data: list[float | None], treat: str, state: str) -> None:
    evaluation = FakeEvaluator(data).evaluate({**ALARM, "TreatMissingData": treat}, 0.0)
    assert evaluation.state == state


def test_alarm_reason_reads_like_cloudwatch() -> None:
    reason = FakeEvaluator([1.0, 1.0]).evaluate({**ALARM, "TreatMissingData": "missing"}, 0.0).reason
    assert reason.startswith("Threshold Crossed: 2 out of the last 2 datapoints")
    assert "(minimum 2 datapoints for OK -> ALARM transition)" in reason


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("CodeDeployDefault.ECSAllAtOnce", [(100, 0.0)]),
        ("CodeDeployDefault.ECSCanary10Percent5Minutes", [(10, 300.0), (100, 0.0)]),
        (
            "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
            [*((p, 60.0) for p in range(10, 100, 10)), (100, 0.0)],
        ),
    ],
)
def test_deployment_configurations_shift_as_codedeploy_does(
    name: str, steps: list[tuple[int, float]]
) -> None:
    assert shift_steps(name) == steps


def test_schedule_rates_in_aws_seconds() -> None:
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300


def test_template_properties_resolve_with_parameters_imports_and_maps() -> None:
    stack = Stack("lambda-functions-stack", "lambda-functions.yaml")
    stack.template = load_template(TEMPLATES / "lambda-functions.yaml")
    stack.resolved_parameters = {
        name: str(spec.get("Default", "")) for name, spec in stack.template["Parameters"].items()
    }
    exports = {
        "ecs-cluster-stack-LoadBalancerFullName": "app/lb/1",
        "ecs-cluster-stack-BlueTargetGroupFullName": "tg",
    }
    resolver = Resolver(stack, exports, lambda _type, physical, _attr: f"arn:{physical}")
    assert resolver.resolve({"Fn::Sub": "${ProjectName}-${Environment}-x"}) == "phoenix-dev-x"
    assert (
        resolver.resolve({"Fn::FindInMap": ["Schedule", {"Ref": "HealthCheckInterval"}, "Rate"]})
        == "rate(1 minute)"
    )
    assert (
        resolver.resolve({"Fn::ImportValue": {"Fn::Sub": "${ClusterStackName}-LoadBalancerFullName"}})
        == "app/lb/1"
    )


def test_deployment_group_properties_become_api_members() -> None:
    converted = camel_case(
        {"ECSServices": [{"ClusterName": "c"}], "LoadBalancerInfo": {"TargetGroupPairInfoList": []}}
    )
    assert converted == {
        "ecsServices": [{"clusterName": "c"}],
        "loadBalancerInfo": {"targetGroupPairInfoList": []},
    }
