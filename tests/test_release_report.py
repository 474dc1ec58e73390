"""The release-report function (lambdas/release_report.py): CodeDeploy's EventBridge state changes as readable
mails, and a scorecard per ended deployment in the artifact bucket; and the stand-in's part (the CodeDeploy
engine's state-change events, EventBridge's Lambda targets).

The event sample tests/events/codedeploy-deployment-state-change.json is AWS's documented "CodeDeploy
Deployment State-change Notification" (EventBridge events reference for CodeDeploy; the same sample is
aws-lambda-go's events/testdata/codedeploy-deployment-event.json) with this project's names.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.exceptions import ClientError

from local.aws.codedeploy import CodeDeployService
from local.aws.codedeploy.ecs_engine import EcsBlueGreenEngine
from local.aws.events import EventBus
from local.timescale import TimeScale
from scripts.stacks import LAMBDA
from tests import test_iam_authorization as iam
from tests.rollback_world import read_notifications, topic_with_queue
from tests.test_templates import lambda_variables, load_template

APP = "phoenix-dev"
GROUP = "phoenix-dev-sample-app"
BUCKET = "phoenix-artifacts"
HEALTH_ALARM = "phoenix-dev-health-check-failed"
RATE_ALARM = "phoenix-dev-green-5xx-rate"
SAMPLE = "codedeploy-deployment-state-change"
MARKER = "phoenix-auto-rollback"


def appspec(task_definition: str) -> str:
    """The AppSpec CodeDeployToECS registers (YAML, as pipeline-config/appspec.yml renders it)."""
    return (
        "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n"
        f'        TaskDefinition: "{task_definition}"\n        LoadBalancerInfo:\n'
        "          ContainerName: sample-app\n          ContainerPort: 8080\n"
    )


@dataclass
class ReportWorld:
    service: CodeDeployService
    queue_url: str
    env: dict[str, str]
    load: Callable[[str, dict[str, str]], ModuleType]
    load_event: Callable[[str], Any]

    def function(self, **extra: str) -> ModuleType:
        return self.load("release_report", {**self.env, **extra})

    def release(self, tag: str) -> str:
        """A task definition whose image is tagged `tag` (the commit's short id), as the build registers."""
        definition = boto3.client("ecs").register_task_definition(
            family="phoenix-dev-sample-app",
            containerDefinitions=[
                {
                    "name": "sample-app",
                    "image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/phoenix-dev-sample-app:{tag}",
                    "memory": 256,
                    "environment": [{"name": "APP_VERSION", "value": tag}],
                }
            ],
        )
        return str(definition["taskDefinition"]["taskDefinitionArn"])

    def seed(self, tag: str, age_s: float = 600, **kwargs: Any) -> str:
        return self.service.seed_deployment(
            APP, GROUP, appspec(self.release(tag)), create_time=time.time() - age_s, **kwargs
        )

    def passes(self, deployment_id: str, *lifecycle_events: str) -> None:
        """The deployment's ECS target through these lifecycle events (each in progress, then succeeded)."""
        for name in lifecycle_events:
            self.service.lifecycle_event(deployment_id, name, "InProgress")
            self.service.lifecycle_event(deployment_id, name, "Succeeded")

    def event(self, deployment_id: str, state: str) -> Any:
        event = self.load_event(SAMPLE)
        event["detail"].update(deploymentId=deployment_id, state=state)
        return event

    def notifications(self) -> list[dict[str, str]]:
        return read_notifications(self.queue_url)

    def objects(self) -> list[str]:
        listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def scorecard(self, deployment_id: str) -> dict[str, Any]:
        body = boto3.client("s3").get_object(
            Bucket=BUCKET, Key=f"release-reports/{GROUP}/{deployment_id}.json"
        )
        loaded: dict[str, Any] = json.loads(body["Body"].read())
        return loaded

    def page(self, deployment_id: str) -> str:
        body = boto3.client("s3").get_object(
            Bucket=BUCKET, Key=f"release-reports/{GROUP}/{deployment_id}.html"
        )
        return str(body["Body"].read().decode())


def triggers_only_engine(
    published: list[tuple[str, str, str]], put_event: Callable[..., Any] | None = None
) -> EcsBlueGreenEngine:
    """The ECS engine with nothing to deploy: only its notifications (SNS triggers, EventBridge events)."""
    return EcsBlueGreenEngine(
        elbv2=None,
        ecs=None,
        cloudwatch=None,
        runner=None,  # type: ignore[arg-type]
        target_states=lambda _tg: {},
        invoke=lambda _fn, _event: None,
        publish=lambda *args: published.append(args),
        scale=TimeScale(factor=1.0),
        emit=lambda *_a, **_k: None,
        put_event=put_event,
    )


@pytest.fixture
def report_world(
    moto: None,
    codedeploy: CodeDeployService,
    create_deployment_group: Callable[..., Any],
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
    load_event: Callable[[str], Any],
) -> ReportWorld:
    create_deployment_group(
        ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
        ecsServices=[{"serviceName": "phoenix-dev-sample-app", "clusterName": "phoenix-dev"}],
    )
    topic, queue_url = topic_with_queue()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    cw = boto3.client("cloudwatch")
    dimensions = [{"Name": "Service", "Value": "sample-app"}, {"Name": "Environment", "Value": "dev"}]
    cw.put_metric_alarm(
        AlarmName=HEALTH_ALARM,
        Namespace="Phoenix/Deployments",
        MetricName="HealthCheckFailed",
        Dimensions=dimensions,
        Statistic="Maximum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    # The template's 5xx-rate alarm: metric math over two ALB metrics.
    target = [{"Name": "TargetGroup", "Value": "targetgroup/phoenix-dev-green/0123456789abcdef"}]
    cw.put_metric_alarm(
        AlarmName=RATE_ALARM,
        Metrics=[
            {
                "Id": "errors",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApplicationELB",
                        "MetricName": "HTTPCode_Target_5XX_Count",
                        "Dimensions": target,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            },
            {
                "Id": "requests",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApplicationELB",
                        "MetricName": "RequestCount",
                        "Dimensions": target,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            },
            {
                "Id": "rate",
                "Label": "5xx percent",
                "Expression": "100 * FILL(errors, 0) / requests",
                "ReturnData": True,
            },
        ],
        EvaluationPeriods=2,
        Threshold=5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    now = time.time()
    for minutes_ago, failed in ((8, 0.0), (6, 1.0), (4, 1.0), (2, 0.0)):
        cw.put_metric_data(
            Namespace="Phoenix/Deployments",
            MetricData=[
                {
                    "MetricName": "HealthCheckFailed",
                    "Dimensions": dimensions,
                    "Value": failed,
                    "Timestamp": now - 60 * minutes_ago,
                }
            ],
        )
        cw.put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {
                    "MetricName": "RequestCount",
                    "Dimensions": target,
                    "Value": 60.0,
                    "Timestamp": now - 60 * minutes_ago,
                }
            ],
        )
    env = {
        "ENVIRONMENT": "dev",
        "SERVICE_NAME": "sample-app",
        "CODEDEPLOY_APPLICATION": APP,
        "CODEDEPLOY_DEPLOYMENT_GROUP": GROUP,
        "NOTIFICATIONS_TOPIC_ARN": topic,
        "REPORT_BUCKET": BUCKET,
        "ALARM_NAMES": f"{HEALTH_ALARM},{RATE_ALARM}",
    }
    return ReportWorld(codedeploy, queue_url, env, load_lambda, load_event)


def decision_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The function's decision records: the decision (the message) and its fields (the record's extras;
    or the fields of a JSON message, as DecisionLog wrote them before Lambda's JSON log format)."""
    lines = []
    for record in caplog.records:
        if record.name != "phoenix.release_report":
            continue
        try:
            lines.append(json.loads(record.getMessage()))
        except ValueError:
            lines.append({**vars(record), "decision": record.getMessage()})
    return lines


# ------------------------------------------------------------------------------------------- the decision
@pytest.mark.parametrize(
    ("state", "deployment", "expected"),
    [
        ("START", None, "STARTED"),
        ("READY", None, "READY"),
        ("FAILURE", {"status": "Failed"}, "FAILED"),
        ("STOP", {"status": "Stopped"}, "STOPPED"),
        ("SUCCESS", {"status": "Succeeded", "creator": "user"}, "SUCCESS"),
        ("SUCCESS", {"status": "Succeeded", "creator": "codeDeployRollback"}, "ROLLBACK COMPLETE"),
        (
            "SUCCESS",
            {"status": "Succeeded", "creator": "user", "description": f"{MARKER} alarm=1"},
            "RESURRECTED",
        ),
    ],
)
def test_each_state_gets_its_verdict(
    lambda_module: Callable[[str], ModuleType], state: str, deployment: Any, expected: str
) -> None:
    assert lambda_module("release_report").verdict(state, deployment) == expected


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: [], "not a JSON object"),
        (
            lambda e: {**e, "detail-type": "CodeDeploy Instance State-change Notification"},
            "not an EventBridge",
        ),
        (lambda e: {**e, "source": "aws.codepipeline"}, "not an EventBridge"),
        (lambda e: {**e, "detail": "SUCCESS"}, "event.detail is not a JSON object"),
        (
            lambda e: {**e, "detail": {**e["detail"], "deploymentId": "d-12"}},
            "not a CodeDeploy deployment id",
        ),
        (lambda e: {**e, "detail": {**e["detail"], "state": "ROLLBACK"}}, "detail.state is 'ROLLBACK'"),
        (lambda e: {**e, "detail": {**e["detail"], "state": 7}}, "detail.state is missing"),
        (
            lambda e: {**e, "detail": {k: v for k, v in e["detail"].items() if k != "deploymentGroup"}},
            "detail.deploymentGroup is missing",
        ),
    ],
)
def test_a_malformed_event_is_answered_with_why_and_changes_nothing(
    report_world: ReportWorld,
    lambda_context: Any,
    caplog: pytest.LogCaptureFixture,
    mutate: Callable[[Any], Any],
    message: str,
) -> None:
    fn = report_world.function()
    caplog.set_level(logging.INFO, logger="phoenix.release_report")
    answer = fn.lambda_handler(mutate(report_world.load_event(SAMPLE)), lambda_context)
    assert message in answer["rejected"]
    assert [line["decision"] for line in decision_lines(caplog)] == ["event rejected"]
    assert report_world.notifications() == []
    assert report_world.objects() == []


def test_the_shared_sample_is_read_as_aws_sends_it(
    lambda_module: Callable[[str], ModuleType], load_event: Any
) -> None:
    change = lambda_module("release_report").parse_event(load_event(SAMPLE))
    assert (change.deployment_id, change.state, change.application, change.deployment_group) == (
        "d-123456789",
        "SUCCESS",
        APP,
        GROUP,
    )


# ------------------------------------------------------------------------------------------- ended
def test_a_successful_release_is_mailed_readably_with_its_scorecard(
    report_world: ReportWorld, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = report_world.seed("1a2b3c4d", status="Succeeded")
    caplog.set_level(logging.INFO, logger="phoenix.release_report")
    answer = report_world.function().lambda_handler(report_world.event(deployment, "SUCCESS"), lambda_context)

    key = f"release-reports/{GROUP}/{deployment}.html"
    assert answer == {"deployment": deployment, "verdict": "SUCCESS", "report": key, "notified": True}
    assert report_world.objects() == [key, key.replace(".html", ".json")]
    [mail] = report_world.notifications()
    assert mail["subject"] == f"[dev] sample-app: SUCCESS - deployment {deployment} of 1a2b3c4d"
    body = mail["body"]
    assert "Image tag:            1a2b3c4d\n" in body
    assert "Commit:               1a2b3c4d (the image tag is the commit's short id)\n" in body
    assert "task-definition/phoenix-dev-sample-app:1" in body
    assert (
        f"https://us-east-1.console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment}?region=us-east-1"
        in body
    )
    assert (
        f"https://us-east-1.console.aws.amazon.com/s3/object/{BUCKET}?region=us-east-1&bucketType=general"
        f"&prefix={quote(key, safe='')}" in body
    )
    assert f"s3://{BUCKET}/{key}" in body
    assert "{" not in body  # plain text, not CodeDeploy's JSON
    [line] = decision_lines(caplog)
    assert (line["decision"], line["verdict"], line["image_tag"], line["report"]) == (
        "deployment success",
        "SUCCESS",
        "1a2b3c4d",
        key,
    )


def test_the_scorecard_holds_the_gates_decisions_metrics_and_a_chart(
    report_world: ReportWorld, lambda_context: Any
) -> None:
    deployment = report_world.seed("1a2b3c4d", status="InProgress")
    report_world.passes(deployment, "Install", "AllowTestTraffic", "AfterAllowTestTraffic", "AllowTraffic")
    report_world.service.set_status(deployment, "Succeeded")
    report_world.function().lambda_handler(report_world.event(deployment, "SUCCESS"), lambda_context)

    card = report_world.scorecard(deployment)
    assert card["deployment"]["id"] == deployment
    assert card["release"]["image_tag"] == "1a2b3c4d"
    # The ECS target's eight lifecycle events, the product's gates labelled.
    status = {g["event"]: g["status"] for g in card["gates"]}
    assert {k: status[k] for k in ("Install", "AfterAllowTestTraffic", "AllowTraffic")} == dict.fromkeys(
        ("Install", "AfterAllowTestTraffic", "AllowTraffic"), "Succeeded"
    )
    assert next(g for g in card["gates"] if g["event"] == "AfterAllowTestTraffic")["gate"].startswith(
        "test-traffic"
    )
    assert card["decisions"][0] == {"by": "CodeDeploy", "what": "Succeeded", "why": "Succeeded"}
    health = next(s for s in card["metrics"] if s["alarm"] == HEALTH_ALARM)
    assert health["threshold"] == 1.0
    assert [p[1] for p in health["points"]] == [0.0, 1.0, 1.0, 0.0]
    # The rate alarm: every query of its metric math is asked for, the alarm's own one with its threshold.
    rate = {s["id"]: s for s in card["metrics"] if s["alarm"] == RATE_ALARM}
    assert set(rate) == {"errors", "requests", "rate"}
    assert rate["rate"]["threshold"] == 5.0
    assert [p[1] for p in rate["requests"]["points"]] == [60.0] * 4
    assert [a["name"] for a in card["alarms"]] == [RATE_ALARM, HEALTH_ALARM] or [
        a["name"] for a in card["alarms"]
    ] == [HEALTH_ALARM, RATE_ALARM]
    assert card["unavailable"] == {}
    page = report_world.page(deployment)
    assert "<svg" in page
    assert "<polyline" in page
    assert 'stroke-dasharray="4,3"' in page  # a threshold line
    assert f"Release scorecard: {deployment} - SUCCESS" in page


def test_a_failed_release_says_why_and_names_its_rollback(
    report_world: ReportWorld, lambda_context: Any
) -> None:
    report_world.seed("0000aaaa", age_s=3600, status="Succeeded")
    failed = report_world.seed("1a2b3c4d", status="InProgress")
    report_world.passes(failed, "Install", "AllowTestTraffic")
    report_world.service.lifecycle_event(failed, "AfterAllowTestTraffic", "InProgress")
    report_world.service.set_status(
        failed, "Failed", error_code="HOOK_EXECUTION_FAILURE", error_message="The hook answered Failed."
    )
    rollback = report_world.seed("0000aaaa", age_s=10, status="Succeeded", creator="codeDeployRollback")
    report_world.service.link_rollback(failed, rollback)

    report_world.function().lambda_handler(report_world.event(failed, "FAILURE"), lambda_context)
    [mail] = report_world.notifications()
    assert mail["subject"].startswith(
        f"[dev] sample-app: FAILED - deployment {failed} of 1a2b3c4d (HOOK_EXECUTION"
    )
    assert "Why:                  HOOK_EXECUTION_FAILURE: The hook answered Failed.\n" in mail["body"]
    assert f"Rollback:             rolled back by deployment {rollback}\n" in mail["body"]
    assert (
        "Gates:                Install Succeeded; AfterAllowTestTraffic Failed; AllowTraffic Skipped\n"
        in (mail["body"])
    )
    card = report_world.scorecard(failed)
    assert card["deployment"]["verdict"] == "FAILED"
    assert any(d["what"] == f"rolled back by deployment {rollback}" for d in card["decisions"])

    report_world.function().lambda_handler(report_world.event(rollback, "SUCCESS"), lambda_context)
    [mail] = report_world.notifications()
    assert mail["subject"] == f"[dev] sample-app: ROLLBACK COMPLETE - deployment {rollback} of 0000aaaa"
    assert f"Why:                  CodeDeploy's rollback of deployment {failed}\n" in mail["body"]


def test_a_stopped_release_names_the_alarm_that_fired(report_world: ReportWorld, lambda_context: Any) -> None:
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=HEALTH_ALARM, StateValue="ALARM", StateReason="Threshold Crossed: 2 datapoints were >= 1.0"
    )
    stopped = report_world.seed("1a2b3c4d", status="InProgress")
    report_world.service.set_status(stopped, "Stopped", error_code="ALARM_ACTIVE", error_message="alarm")

    report_world.function().lambda_handler(report_world.event(stopped, "STOP"), lambda_context)
    [mail] = report_world.notifications()
    assert mail["subject"].startswith(
        f"[dev] sample-app: STOPPED - deployment {stopped} of 1a2b3c4d (ALARM_ACTIVE"
    )
    assert f"Alarms in ALARM:      {HEALTH_ALARM}\n" in mail["body"]
    decisions = report_world.scorecard(stopped)["decisions"]
    assert {
        "by": f"alarm {HEALTH_ALARM}",
        "why": "Threshold Crossed: 2 datapoints were >= 1.0",
    }.items() <= next(d for d in decisions if d["by"].startswith("alarm")).items()


def test_a_resurrection_is_reported_as_such(report_world: ReportWorld, lambda_context: Any) -> None:
    redeployed = report_world.seed(
        "0000aaaa", status="Succeeded", description=f"{MARKER} alarm=0123456789abcdef from=a to=b"
    )
    report_world.function().lambda_handler(report_world.event(redeployed, "SUCCESS"), lambda_context)
    [mail] = report_world.notifications()
    assert mail["subject"] == f"[dev] sample-app: RESURRECTED - deployment {redeployed} of 0000aaaa"
    assert (
        "Why:                  the auto-rollback function redeployed the last known-good revision"
        in mail["body"]
    )


# ------------------------------------------------------------------------------------------- no action needed
@pytest.mark.parametrize("state", ["START", "READY"])
def test_a_start_is_logged_not_mailed_and_reads_nothing(
    report_world: ReportWorld, lambda_context: Any, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    caplog.set_level(logging.INFO, logger="phoenix.release_report")
    # A deployment id CodeDeploy does not know: reading it would fail, so nothing was read.
    answer = report_world.function().lambda_handler(report_world.event("d-AAAAAAAAA", state), lambda_context)
    assert answer["notified"] is False
    assert answer["report"] is None
    assert report_world.notifications() == []
    assert report_world.objects() == []
    [line] = decision_lines(caplog)
    assert line["decision"].startswith("no action needed")
    assert line["mailed"] is False


def test_a_start_is_mailed_with_notify_no_action(report_world: ReportWorld, lambda_context: Any) -> None:
    fn = report_world.function(NOTIFY_NO_ACTION="true")
    fn.lambda_handler(report_world.event("d-AAAAAAAAA", "START"), lambda_context)
    [mail] = report_world.notifications()
    assert mail["subject"] == "[dev] sample-app: STARTED - deployment d-AAAAAAAAA"
    assert "Scorecard" not in mail["body"]
    assert report_world.objects() == []


def test_another_groups_event_is_ignored(report_world: ReportWorld, lambda_context: Any) -> None:
    event = report_world.event("d-AAAAAAAAA", "FAILURE")
    event["detail"]["deploymentGroup"] = "someone-elses-group"
    answer = report_world.function().lambda_handler(event, lambda_context)
    assert "is not this service's group" in answer["ignored"]
    assert report_world.notifications() == []


# ------------------------------------------------------------------------------------------- failures
def test_an_unreadable_deployment_is_logged_raised_and_changes_nothing(
    report_world: ReportWorld, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phoenix.release_report")
    with pytest.raises(ClientError, match="DeploymentDoesNotExistException"):
        report_world.function().lambda_handler(report_world.event("d-AAAAAAAAA", "FAILURE"), lambda_context)
    [line] = decision_lines(caplog)
    assert line["decision"] == "aws error"
    assert "DeploymentDoesNotExistException" in line["error"]
    assert report_world.notifications() == []
    assert report_world.objects() == []


def test_a_scorecard_that_cannot_be_written_is_said_in_the_mail(
    report_world: ReportWorld, lambda_context: Any
) -> None:
    deployment = report_world.seed("1a2b3c4d", status="Succeeded")
    answer = report_world.function(REPORT_BUCKET="no-such-bucket").lambda_handler(
        report_world.event(deployment, "SUCCESS"), lambda_context
    )
    assert answer["report"] is None
    [mail] = report_world.notifications()
    assert "Note:                 the scorecard could not be written: " in mail["body"]
    assert "NoSuchBucket" in mail["body"]
    assert "Scorecard:" not in mail["body"]


def test_a_mail_that_cannot_be_sent_is_logged_and_raised_for_lambdas_retry(
    report_world: ReportWorld, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = report_world.seed("1a2b3c4d", status="Succeeded")
    caplog.set_level(logging.INFO, logger="phoenix.release_report")
    fn = report_world.function(NOTIFICATIONS_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:no-such-topic")
    with pytest.raises(ClientError, match="NotFound"):
        fn.lambda_handler(report_world.event(deployment, "SUCCESS"), lambda_context)
    [line] = decision_lines(caplog)
    assert line["decision"] == "notification failed"
    assert line["report"] == f"release-reports/{GROUP}/{deployment}.html"


def test_a_part_that_cannot_be_read_is_named_in_the_scorecard(
    report_world: ReportWorld, lambda_context: Any
) -> None:
    # A revision whose task definition ECS does not know.
    deployment = report_world.service.seed_deployment(
        APP, GROUP, appspec("arn:aws:ecs:us-east-1:123456789012:task-definition/gone:9"), status="Succeeded"
    )
    report_world.function().lambda_handler(report_world.event(deployment, "SUCCESS"), lambda_context)
    card = report_world.scorecard(deployment)
    assert set(card["unavailable"]) == {"release"}
    [mail] = report_world.notifications()
    assert "Image tag:            unknown\n" in mail["body"]


def test_one_alarms_metrics_failing_leaves_the_others(
    report_world: ReportWorld, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = report_world.seed("1a2b3c4d", status="Succeeded")
    fn = report_world.function()
    client = fn.cloudwatch()
    answer = client.get_metric_data

    def get_metric_data(**kwargs: Any) -> Any:
        if any(q["Id"] == "rate" for q in kwargs["MetricDataQueries"]):
            raise ClientError(
                {"Error": {"Code": "InternalServiceError", "Message": "try later"}}, "GetMetricData"
            )
        return answer(**kwargs)

    monkeypatch.setattr(client, "get_metric_data", get_metric_data)
    fn.lambda_handler(report_world.event(deployment, "SUCCESS"), lambda_context)
    card = report_world.scorecard(deployment)
    assert list(card["unavailable"]) == [f"metrics of {RATE_ALARM}"]
    assert {s["alarm"] for s in card["metrics"]} == {HEALTH_ALARM}


def test_a_bad_variable_is_logged_and_answered(
    report_world: ReportWorld, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phoenix.release_report")
    answer = report_world.function(REPORT_PREFIX="no-slash").lambda_handler(
        report_world.event("d-AAAAAAAAA", "SUCCESS"), lambda_context
    )
    assert "REPORT_PREFIX must be" in answer["error"]
    assert decision_lines(caplog)[0]["decision"] == "configuration error"
    assert report_world.notifications() == []


def test_the_mail_fits_sns_whatever_codedeploy_says(report_world: ReportWorld, lambda_context: Any) -> None:
    failed = report_world.seed("1a2b3c4d", status="InProgress")
    report_world.service.set_status(
        failed, "Failed", error_code="HOOK_EXECUTION_FAILURE", error_message="\u00e9\n" * 400
    )
    fn = report_world.function()
    fn.lambda_handler(report_world.event(failed, "FAILURE"), lambda_context)
    [mail] = report_world.notifications()
    assert len(mail["subject"]) < 100
    assert all(32 <= ord(c) < 127 for c in mail["subject"])


# ------------------------------------------------------------------------------------------- the stand-in
class RecordingRuntime:
    def __init__(self) -> None:
        self.invocations: list[tuple[str, Any, str]] = []

    def invoke_async(self, arn: str, event: Any, source: str = "") -> None:
        self.invocations.append((arn, event, source))


def test_the_codedeploy_engine_sends_state_changes_in_awss_shape(
    report_world: ReportWorld, lambda_context: Any
) -> None:
    """The engine's triggers become EventBridge events; the template's rule routes them to the function."""
    events = boto3.client("events")
    rule = load_template(LAMBDA.template)["Resources"]["ReleaseReportRule"]["Properties"]
    pattern = json.loads(
        json.dumps(rule["EventPattern"])
        .replace('{"Fn::Sub": "${ProjectName}-${Environment}"}', f'"{APP}"')
        .replace('{"Fn::Sub": "${ProjectName}-${Environment}-${ServiceName}"}', f'"{GROUP}"')
    )
    events.put_rule(Name="phoenix-dev-release-report", EventPattern=json.dumps(pattern), State="ENABLED")
    function_arn = "arn:aws:lambda:us-east-1:123456789012:function:phoenix-dev-release-report"
    events.put_targets(
        Rule="phoenix-dev-release-report", Targets=[{"Id": "release-report", "Arn": function_arn}]
    )
    runtime = RecordingRuntime()
    bus = EventBus(events, boto3.client("sns"), runtime=runtime)  # type: ignore[arg-type]
    published: list[tuple[str, str, str]] = []
    engine = triggers_only_engine(published, put_event=bus.put)
    group = boto3.client("codedeploy").get_deployment_group(applicationName=APP, deploymentGroupName=GROUP)[
        "deploymentGroupInfo"
    ]
    deployment = report_world.seed("1a2b3c4d", status="Succeeded")
    engine._trigger(group, deployment, "DeploymentSuccess", "SUCCESS")
    engine._trigger(group, deployment, "DeploymentRollback", "ROLLBACK")  # no state of its own on EventBridge

    [(arn, event, source)] = runtime.invocations
    assert (arn, source) == (function_arn, "events:phoenix-dev-release-report")
    sample = report_world.load_event(SAMPLE)
    assert set(event) == set(sample)
    assert set(event["detail"]) == set(sample["detail"])
    assert event["detail"]["state"] == "SUCCESS"
    assert event["detail"]["instanceGroupId"] == group["deploymentGroupId"]
    assert event["resources"] == [
        f"arn:aws:codedeploy:us-east-1:123456789012:application:{APP}",
        f"arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:{APP}/{GROUP}",
    ]
    assert published == []  # the group has no TriggerConfigurations
    # What the rule delivers, the function reads and reports.
    answer = report_world.function().lambda_handler(event, lambda_context)
    assert answer["verdict"] == "SUCCESS"
    assert report_world.objects()


def test_sns_triggers_still_fire_for_a_group_that_has_them(codedeploy: CodeDeployService) -> None:
    published: list[tuple[str, str, str]] = []
    engine = triggers_only_engine(published)
    topic = "arn:aws:sns:us-east-1:123456789012:t"
    group = {
        "applicationName": APP,
        "deploymentGroupName": GROUP,
        "triggerConfigurations": [
            {"triggerName": "x", "triggerTargetArn": topic, "triggerEvents": ["DeploymentFailure"]}
        ],
    }
    engine._trigger(group, "d-AAAAAAAAA", "DeploymentFailure", "FAILED")
    [(arn, subject, message)] = published
    assert arn == topic
    assert subject.startswith("FAILED: AWS CodeDeploy d-AAAAAAAAA")
    assert json.loads(message)["status"] == "FAILED"


# ------------------------------------------------------------------------------------------- the template
def test_the_function_gets_every_variable_it_reads_and_no_other() -> None:
    function = load_template(LAMBDA.template)["Resources"]["ReleaseReportFunction"]["Properties"]
    variables = set(function["Environment"]["Variables"])
    assert lambda_variables("release_report") == variables
    assert function["Handler"] == "release_report.lambda_handler"


def test_the_role_grants_exactly_what_the_function_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/test_iam_authorization.py's check, for this function, with S3 and ECS checked too."""
    monkeypatch.setattr(iam, "CHECKED_PREFIXES", (*iam.CHECKED_PREFIXES, "s3", "ecs"))
    template = LAMBDA.template
    role = iam.role_of(load_template(template)["Resources"]["ReleaseReportFunction"])
    needed = iam.needed_actions(template, "ReleaseReportFunction", "release_report")
    for action in needed:
        assert iam.privilege(action), f"{action} is not an IAM action"
    assert {a for a in needed if a not in iam.role_grants(template, role)} == set()
    assert iam.role_grants(template, role) - set(needed) == set()
    assert {"s3:PutObject", "ecs:DescribeTaskDefinition", "cloudwatch:GetMetricData"} <= set(needed)
