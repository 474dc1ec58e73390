"""The stand-in's and the drill's pieces on their own: alarm semantics, metric math, deployment
configurations, CloudFormation of the types moto skips, the background loop, the scenario check, the table."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.cloudformation.exceptions import ValidationError

from local.aws.cloudformation import camel_case, cidr, skipped_resources
from local.aws.cloudwatch import evaluate_expression, statistic
from local.aws.codedeploy.ecs_engine import shift_steps
from local.aws.events import rate_seconds
from local.aws.moto_server import moto_server
from local.background import Loop
from local.drill.results import (
    LAMBDA_ACTIONS,
    Deployment,
    Gate,
    LambdaAction,
    Notification,
    PipelineAction,
    PipelineRun,
    Result,
    Scorecard,
    Users,
)
from local.drill.scenarios import ROLLED_BACK, SCENARIOS, SCORECARD_VERDICTS, Expected, Serving, check
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


TEMPLATE = """
Parameters:
  Prefix: {Type: String, Default: phoenix-dev}
Resources:
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      AlarmName: !Sub "${Prefix}-health"
      Namespace: Phoenix/Deployments
      MetricName: HealthCheckFailed
      Statistic: Maximum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${Alarm}-queue"
Outputs:
  AlarmName: {Value: !Ref Alarm}
  AlarmArn: {Value: !GetAtt Alarm.Arn}
"""


def test_moto_cloudformation_answers_ref_and_getatt_of_a_type_it_skips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        stack_id = cfn.create_stack(StackName="s", TemplateBody=TEMPLATE)["StackId"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks()["Stacks"][0]["Outputs"]}
        queues = boto3.client("sqs", region_name="us-east-1").list_queues()["QueueUrls"]
    assert outputs == {
        "AlarmName": "phoenix-dev-health",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:phoenix-dev-health",
    }
    assert [q.rsplit("/", 1)[1] for q in queues] == ["phoenix-dev-health-queue"]
    [alarm] = skipped_resources(stack_id)
    assert (alarm.logical_id, alarm.type, alarm.name) == (
        "Alarm",
        "AWS::CloudWatch::Alarm",
        "phoenix-dev-health",
    )
    assert (
        alarm.properties["AlarmName"] == "phoenix-dev-health"
    )  # resolved by moto, for the stand-in to create
    assert skipped_resources(stack_id) == []


@pytest.mark.parametrize(
    ("ip_block", "count", "cidr_bits", "expected"),
    [
        # The CloudFormation User Guide's Fn::Cidr example: six /27 blocks of a /24.
        ("192.168.0.0/24", "6", "5", [f"192.168.0.{32 * n}/27" for n in range(6)]),
        ("10.20.0.0/16", 12, 8, [f"10.20.{n}.0/24" for n in range(12)]),
        ("2001:db8:1234:1a00::/56", 1, 64, ["2001:db8:1234:1a00::/64"]),
    ],
)
def test_fn_cidr_cuts_consecutive_blocks_from_the_start(
    ip_block: str, count: Any, cidr_bits: Any, expected: list[str]
) -> None:
    assert cidr(ip_block, count, cidr_bits) == expected


@pytest.mark.parametrize(
    ("ip_block", "count", "cidr_bits"),
    [("10.0.0.0/16", 0, 8), ("10.0.0.0/16", 257, 8), ("10.0.0.0/21", 12, 8), ("10.0.0.0/24", 1, 9)],
)
def test_fn_cidr_refuses_what_cloudformation_refuses(ip_block: str, count: int, cidr_bits: int) -> None:
    with pytest.raises(ValidationError):
        cidr(ip_block, count, cidr_bits)


AWS_FORMS = """
Parameters:
  Interval: {Type: Number, Default: 60, AllowedValues: [60, 120]}
  InVpc: {Type: String, Default: "false", AllowedValues: ["true", "false"]}
Conditions:
  InVpc: !Equals [!Ref InVpc, "true"]
Mappings:
  Schedule:
    "60": {Rate: rate(1 minute)}
    "120": {Rate: rate(2 minutes)}
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.20.0.0/16}
  PrivateSubnet:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      AvailabilityZone: us-east-1a
      CidrBlock: !Select [10, !Cidr [!GetAtt Vpc.CidrBlock, 12, 8]]
  LoadBalancer:
    Type: AWS::ElasticLoadBalancingV2::LoadBalancer
    Properties: {Name: phoenix-dev-alb, Subnets: [!Ref PrivateSubnet]}
  BlueTargetGroup:
    Type: AWS::ElasticLoadBalancingV2::TargetGroup
    Properties: {Name: phoenix-dev-blue, TargetType: ip, Protocol: HTTP, Port: 8080, VpcId: !Ref Vpc}
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement: [{Effect: Allow, Principal: {Service: lambda.amazonaws.com}, Action: sts:AssumeRole}]
      Policies:
        - PolicyName: always
          PolicyDocument:
            Version: "2012-10-17"
            Statement: [{Effect: Allow, Action: sqs:SendMessage, Resource: "*"}]
        - !If
          - InVpc
          - PolicyName: in-vpc
            PolicyDocument:
              Version: "2012-10-17"
              Statement: [{Effect: Allow, Action: ec2:DescribeSubnets, Resource: "*"}]
          - !Ref AWS::NoValue
Outputs:
  Rate: {Value: !FindInMap [Schedule, !Ref Interval, Rate]}
  LoadBalancerFullName: {Value: !GetAtt LoadBalancer.LoadBalancerFullName}
  BlueTargetGroupFullName: {Value: !GetAtt BlueTargetGroup.TargetGroupFullName}
  BlueTargetGroupName: {Value: !GetAtt BlueTargetGroup.TargetGroupName}
"""


@pytest.mark.parametrize(
    ("parameters", "rate", "policies"),
    [
        ({}, "rate(1 minute)", ["always"]),
        ({"Interval": "120", "InVpc": "true"}, "rate(2 minutes)", ["always", "in-vpc"]),
    ],
)
def test_moto_cloudformation_takes_the_forms_an_aws_author_writes(
    monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str], rate: str, policies: list[str]
) -> None:
    """Fn::Cidr, Fn::FindInMap keyed by a Number parameter, a list element !If [..., !Ref AWS::NoValue], and
    the ELBv2 attributes of the CloudFormation reference (local/aws/cloudformation.py teaches moto them)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        cfn.create_stack(
            StackName="s",
            TemplateBody=AWS_FORMS,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM"],
        )
        outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks()["Stacks"][0]["Outputs"]}
        [subnet] = boto3.client("ec2", region_name="us-east-1").describe_subnets(
            Filters=[{"Name": "tag:aws:cloudformation:logical-id", "Values": ["PrivateSubnet"]}]
        )["Subnets"]
        role = cfn.describe_stack_resource(StackName="s", LogicalResourceId="Role")["StackResourceDetail"]
        iam = boto3.client("iam", region_name="us-east-1")
        role_policies = iam.list_role_policies(RoleName=role["PhysicalResourceId"])["PolicyNames"]
        elb = boto3.client("elbv2", region_name="us-east-1")
        [alb] = elb.describe_load_balancers(Names=["phoenix-dev-alb"])["LoadBalancers"]
        [group] = elb.describe_target_groups(Names=["phoenix-dev-blue"])["TargetGroups"]
    assert subnet["CidrBlock"] == "10.20.10.0/24"
    assert outputs["Rate"] == rate
    assert sorted(role_policies) == policies
    # The formats of the CloudFormation reference's examples: app/my-load-balancer/50dc6c495c0c9188 and
    # targetgroup/my-target-group/cbf133c568e0d028, the dimension values of AWS/ApplicationELB metrics.
    assert outputs["LoadBalancerFullName"] == alb["LoadBalancerArn"].split(":loadbalancer/")[1]
    assert outputs["LoadBalancerFullName"].startswith("app/phoenix-dev-alb/")
    assert outputs["BlueTargetGroupFullName"] == group["TargetGroupArn"].split(":")[5]
    assert outputs["BlueTargetGroupFullName"].startswith("targetgroup/phoenix-dev-blue/")
    assert outputs["BlueTargetGroupName"] == "phoenix-dev-blue"


def test_deployment_group_properties_become_api_members() -> None:
    converted = camel_case(
        {"ECSServices": [{"ClusterName": "c"}], "LoadBalancerInfo": {"TargetGroupPairInfoList": []}}
    )
    assert converted == {
        "ecsServices": [{"clusterName": "c"}],
        "loadBalancerInfo": {"targetGroupPairInfoList": []},
    }


def test_a_background_loop_logs_a_failed_step_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    done = threading.Event()

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        done.set()

    finals: list[int] = []
    with Loop("test-loop", step, every=0.01, final=lambda: finals.append(1)) as loop:
        assert done.wait(5)
    loop.stop()  # a second stop is harmless
    assert len(calls) >= 2
    assert finals == [1]
    assert "test-loop: background step failed" in caplog.text
    assert "RuntimeError: boom" in caplog.text


def pipeline(*actions: tuple[str, str, str | None]) -> PipelineRun:
    """A pipeline execution of the release: (stage, status, external id) per action."""
    return PipelineRun(
        "e-1", "Succeeded", "c0ffee", "Webhook", [PipelineAction(st, st, s, ext) for st, s, ext in actions]
    )


DEPLOYED = pipeline(
    ("Source", "Succeeded", "c0ffee"), ("Build", "Succeeded", "b-1"), ("Deploy", "Succeeded", "d-1")
)
BUILD_FAILED = pipeline(("Source", "Succeeded", "c0ffee"), ("Build", "Failed", "b-1"))


def result(**fields: Any) -> Result:
    base: dict[str, Any] = {
        "scenario": "s",
        "title": "t",
        "expected": "e",
        "release": "v3",
        "pipeline": DEPLOYED,
        "deployment": Deployment("d-1", "Succeeded"),
        "serving_before": "v2",
        "serving_after": "v3",
    }
    merged = {**base, **fields}
    if "scorecards" not in merged and merged["deployment"] is not None:
        # What the release-report function writes for a deployment that ends so (a redeployment: RESURRECTED).
        ends = [(merged["deployment"].id, merged["deployment"].status)]
        if merged.get("redeployment") is not None:
            ends.append((merged["redeployment"].id, merged["redeployment"].status))
        merged["scorecards"] = [
            Scorecard(i, f"release-reports/g/{i}", verdict, picture=True, linked=True)
            for n, (i, status) in enumerate(ends)
            for verdict in ["RESURRECTED" if n else SCORECARD_VERDICTS.get(status, ("-",))[0]]
        ]
    return Result(**merged)


def test_a_deployment_whose_scorecard_is_missing_or_not_mailed_is_a_failed_claim() -> None:
    for cards, why in (
        ([], "d-1: not read"),
        ([Scorecard("d-1", "k", None)], "d-1: no scorecard"),
        (
            [Scorecard("d-1", "k", "SUCCESS", picture=True)],
            "d-1: verdict SUCCESS, picture True, linked False",
        ),
        (
            [Scorecard("d-1", "k", "FAILED", picture=True, linked=True)],
            "d-1: verdict FAILED, picture True, linked True",
        ),
    ):
        assert check(PROMOTED, result(scorecards=cards)) == [why]


# A release the alarm gate stops during its canary: CodeDeploy and the auto-rollback Lambda both react.
ALARM_GATE = replace(ROLLED_BACK, gate=Gate.ALARM, alarm_fires=True, lambda_actions=LAMBDA_ACTIONS)
PROMOTED = Expected("promoted", status=("Succeeded",), serving=Serving.RELEASE, gate=Gate.NONE, rollbacks=0)


@pytest.mark.parametrize(
    ("expected", "measured", "failures"),
    [
        (PROMOTED, result(), []),
        (
            PROMOTED,
            result(deployment=Deployment("d-1", "Stopped", "ALARM_ACTIVE"), serving_after="v2"),
            ["deployment Stopped (ALARM_ACTIVE), expected Succeeded", "serving v2 after, expected v3"],
        ),
        (
            PROMOTED,
            result(gate=Gate.ALARM, actor="CodeDeploy alarm rollback", rollback_deployments=["d-2"]),
            [
                "acted on by alarm gate (CodeDeploy alarm rollback), expected the none",
                "1 rollback deployments, expected 0",
            ],
        ),
        (
            SCENARIOS["degraded-health"].expected,
            result(
                deployment=Deployment("d-1", "Failed", "HOOK_EXECUTION_FAILURE"),
                gate=Gate.TEST_TRAFFIC,
                serving_after="v2",
                rollback_deployments=["d-2"],
                users=Users(total=10, answered=9, failed=1),
            ),
            [
                "1 user requests failed or timed out, at most 0 expected",
                "no notification naming FAILED or ROLLBACK",
            ],
        ),
        (
            ALARM_GATE,
            result(
                deployment=Deployment("d-1", "Stopped", "MANUAL_STOP"),
                gate=Gate.ALARM,
                serving_after="v2",
                rollback_deployments=["d-2"],
                auto_rollback_lambda=[LambdaAction(1.0, "none", "rollback already in progress", "a")],
                decision_at=2.0,
            ),
            ["no alarm fired"],
        ),
        (
            # "during the canary", when claimed: a decision after the shift to 100 % does not bear it out.
            replace(ALARM_GATE, decided_during_canary=True),
            result(
                deployment=Deployment("d-1", "Stopped", "ALARM_ACTIVE"),
                gate=Gate.ALARM,
                serving_after="v2",
                rollback_deployments=["d-2"],
                alarms_fired=["green-5xx-rate"],
                auto_rollback_lambda=[LambdaAction(1.0, "none", "rollback already in progress", "a")],
                decision_at=5.0,
                full_shift_at=3.0,
            ),
            ["decision at 5.00, production shifted to 100 % at 3.0"],
        ),
        (
            Expected("stopped", status=("Stopped",), serving=Serving.ORIGINAL, lambda_actions=("stopped",)),
            result(deployment=Deployment("d-1", "Stopped"), serving_after="v2"),
            ["the auto-rollback Lambda did not act (stopped)"],
        ),
        (
            Expected("reacts", status=("Succeeded",), serving=Serving.RELEASE, lambda_actions=LAMBDA_ACTIONS),
            result(),
            ["the auto-rollback Lambda did not react"],
        ),
        (
            PROMOTED,
            result(deployment=None, failures=["waited 90 s for deployment d-1"]),
            ["waited 90 s for deployment d-1"],
        ),
        (
            # Every release goes through the pipeline: a deployment nobody pushed is not one.
            PROMOTED,
            result(pipeline=None),
            ["pipeline missing, its deployment [], the release's d-1"],
        ),
        (
            PROMOTED,
            result(pipeline=pipeline(("Source", "Succeeded", "c0ffee"), ("Deploy", "Succeeded", "d-9"))),
            ["pipeline push -> Source ok -> Deploy ok, its deployment ['d-9'], the release's d-1"],
        ),
        (
            SCENARIOS["broken-build"].expected,
            result(
                pipeline=BUILD_FAILED,
                deployment=None,
                serving_after="v2",
                notifications=[
                    Notification(1.0, "", '"FAILED - p: the Build stage failed, nothing was deployed')
                ],
            ),
            [],
        ),
        (
            SCENARIOS["broken-build"].expected,
            result(serving_after="v2"),
            [
                "pipeline push -> Source ok -> Build ok -> Deploy ok, deployment d-1",
                "no notification naming FAILED",
            ],
        ),
    ],
)
def test_one_generic_check_reads_the_expected_outcome_as_data(
    expected: Expected, measured: Result, failures: list[str]
) -> None:
    assert check(expected, measured) == failures


def test_every_demo_scenario_expects_what_its_gate_implies() -> None:
    for scenario in SCENARIOS.values():
        expected = scenario.expected
        if expected.gate in (Gate.NONE, Gate.RESURRECTION):
            assert expected.status == ("Succeeded",), scenario.name
        if expected.gate is Gate.RESURRECTION:
            assert (expected.redeployments, expected.serving) == (1, Serving.ORIGINAL)


@pytest.mark.parametrize(
    ("resource_type", "properties", "has_arn"),
    [
        ("AWS::CodeDeploy::Application", {"ApplicationName": "a", "ComputePlatform": "ECS"}, False),
        ("AWS::CodeBuild::Project", {"Name": "b"}, True),
    ],
)
def test_the_types_moto_skips_answer_only_the_get_att_attributes_aws_documents(
    moto: None, resource_type: str, properties: dict[str, Any], has_arn: bool
) -> None:
    """AWS::CodeDeploy::Application has no Fn::GetAtt attribute on AWS; a CodeBuild project has Arn."""
    body = {
        "Resources": {"R": {"Type": resource_type, "Properties": properties}},
        "Outputs": {"X": {"Value": {"Fn::GetAtt": ["R", "Arn"]}}},
    }
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    if has_arn:
        cfn.create_stack(StackName="s", TemplateBody=json.dumps(body))
        assert cfn.describe_stacks(StackName="s")["Stacks"][0]["Outputs"][0]["OutputValue"].startswith("arn:")
    else:
        with pytest.raises(cfn.exceptions.ClientError, match="does not support attribute type Arn"):
            cfn.create_stack(StackName="s", TemplateBody=json.dumps(body))


def test_a_loop_on_the_aws_clock_is_not_late_after_a_hold() -> None:
    """A hold that ends while a loop waits out a long interval: the step still comes when the clock reaches
    it (within the loop's wait cap), not a whole interval later (the alarm evaluator's minute)."""
    scale = TimeScale(factor=120)
    fired: list[float] = []
    with Loop("minute", lambda: fired.append(scale.now()), every=0.5, clock=scale.now):
        time.sleep(0.1)
        with scale.hold("a build"):
            time.sleep(0.3)
        due = 0.5  # drill seconds after the loop started, held time excluded
        deadline = time.monotonic() + 5
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
    assert fired
    assert fired[0] - due < 0.15, fired


def test_a_callers_metric_query_is_answered_on_its_own_clock_as_the_codedeploy_stand_in_answers_times() -> (
    None
):
    """Datapoints are stamped on the AWS clock; a caller (a Lambda, the drill) asks on a clock that runs ahead
    of it by the time held, as the CodeDeploy stand-in's times are given to it (json_api.shift_times). Its
    GetMetricData from "just before now" must still find what was published just now, stamped on its clock."""
    scale = TimeScale(40.0)
    with moto_server(scale=scale) as aws:
        cloudwatch = aws.client("cloudwatch")
        with scale.hold("the test"):
            time.sleep(2.0)  # the caller's clock is now 2 s ahead of the AWS clock
        stamped = datetime.fromtimestamp(scale.timestamp(), UTC)
        cloudwatch.put_metric_data(
            Namespace="Test", MetricData=[{"MetricName": "m", "Value": 7.0, "Timestamp": stamped}]
        )
        asked = math.floor(time.time() - 0.5)  # after the datum on the AWS clock, before it on the caller's
        [result] = cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {"Namespace": "Test", "MetricName": "m"},
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
            ],
            StartTime=asked,
            EndTime=asked + 60,
        )["MetricDataResults"]
    assert result["Values"] == [7.0]
    assert [t.timestamp() for t in result["Timestamps"]] == [asked]
