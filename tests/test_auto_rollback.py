"""auto_rollback: alarm shapes, stop in flight, resurrection rules, notifications, AWS errors, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.codedeploy import CodeDeployService

APP = "phoenix-dev"
GROUP = "phoenix-dev-sample-app"
ALARM = "phoenix-dev-health-check-failed"


def appspec(version: int) -> str:
    task = f"arn:aws:ecs:us-east-1:123456789012:task-definition/phoenix-dev-sample-app:{version}"
    return json.dumps(
        {
            "version": 0.0,
            "Resources": [
                {
                    "TargetService": {
                        "Type": "AWS::ECS::Service",
                        "Properties": {
                            "TaskDefinition": task,
                            "LoadBalancerInfo": {"ContainerName": "sample-app", "ContainerPort": 8080},
                        },
                    }
                }
            ],
        }
    )


@dataclass
class World:
    """moto (SNS + an SQS queue on the notifications topic) and the CodeDeploy stand-in with the group."""

    service: CodeDeployService
    queue_url: str
    env: dict[str, str]
    load: Callable[[str, dict[str, str]], ModuleType]
    event: Callable[[str], Any]

    def function(self, **extra: str) -> ModuleType:
        return self.load("auto_rollback", {**self.env, **extra})

    def seed(self, version: int, age_s: float, **kwargs: Any) -> str:
        return self.service.seed_deployment(
            APP, GROUP, appspec(version), create_time=time.time() - age_s, **kwargs
        )

    def notifications(self) -> list[dict[str, str]]:
        sqs = boto3.client("sqs")
        found: list[dict[str, str]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                return found
            for message in messages:
                envelope = json.loads(message["Body"])
                found.append({"subject": envelope.get("Subject", ""), "body": envelope["Message"]})
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def created_by_function(self) -> list[dict[str, Any]]:
        infos = [self.service.get(i) for i in self.service.deployment_ids()]
        return [d for d in infos if str(d.get("description", "")).startswith("phoenix-auto-rollback")]


@pytest.fixture
def world(
    moto: None,
    codedeploy: CodeDeployService,
    create_deployment_group: Callable[..., Any],
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
    load_event: Callable[[str], Any],
) -> World:
    create_deployment_group(["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"])
    topic = boto3.client("sns").create_topic(Name="phoenix-dev-notifications")["TopicArn"]
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    env = {
        "ENVIRONMENT": "dev",
        "SERVICE_NAME": "sample-app",
        "CODEDEPLOY_APPLICATION": APP,
        "CODEDEPLOY_DEPLOYMENT_GROUP": GROUP,
        "ALARM_NAMES": f"{ALARM}, phoenix-dev-blue-5xx",
        "NOTIFICATIONS_TOPIC_ARN": topic,
        "ROLLBACK_COOLDOWN_SECONDS": "900",
    }
    return World(codedeploy, queue_url, env, load_lambda, load_event)


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALARM_NAMES", "", "ALARM_NAMES is required"),
        ("ALARM_NAMES", " , ", "ALARM_NAMES must list at least one alarm"),
        (
            "NOTIFICATIONS_TOPIC_ARN",
            "phoenix-dev-notifications",
            "NOTIFICATIONS_TOPIC_ARN must be an SNS topic ARN",
        ),
        ("ROLLBACK_COOLDOWN_SECONDS", "soon", "ROLLBACK_COOLDOWN_SECONDS must be a whole number"),
        ("ENVIRONMENT", "production", "ENVIRONMENT must be one of"),
    ],
)
def test_bad_configuration_names_the_variable(world: World, variable: str, value: str, message: str) -> None:
    module = world.function()
    with pytest.raises(module.ConfigError, match=message):
        module.load_config({**world.env, variable: value})


def test_cooldown_defaults_to_deployment_timeout(world: World) -> None:
    env = {k: v for k, v in world.env.items() if k != "ROLLBACK_COOLDOWN_SECONDS"}
    module = world.function()
    assert module.load_config({**env, "DEPLOYMENT_TIMEOUT": "1200"}).rollback_cooldown_seconds == 1200


# --------------------------------------------------------------------------------------------- event shapes
@pytest.mark.parametrize(
    ("sample", "source"),
    [
        ("sns-cloudwatch-alarm", "sns"),
        ("eventbridge-alarm-state-change", "eventbridge"),
        ("cloudwatch-alarm-direct-invoke", "direct"),
    ],
)
def test_the_three_alarm_shapes_parse_to_the_same_transition(world: World, sample: str, source: str) -> None:
    [alarm] = world.function().parse_alarms(world.event(sample))
    assert (alarm.name, alarm.previous_state, alarm.state, alarm.source) == (ALARM, "OK", "ALARM", source)
    assert alarm.reason.startswith("Threshold Crossed")


@pytest.mark.parametrize("sample", ["sns-cloudwatch-alarm-ok", "eventbridge-alarm-state-change"])
def test_ok_transitions_and_other_alarms_take_no_action(
    world: World, lambda_context: Any, sample: str
) -> None:
    world.seed(1, 300)
    in_flight = world.seed(2, 10, status="InProgress")
    event = world.event(sample)
    if "detail" in event:
        event["detail"]["alarmName"] = "someone-elses-alarm"
    assert world.function().lambda_handler(event, lambda_context) == {"outcomes": []}
    assert world.service.get(in_flight)["status"] == "InProgress"
    assert world.notifications() == []


# --------------------------------------------------------------------------------------------- in flight
@pytest.mark.parametrize("status", ["Created", "InProgress", "Baking", "Ready"])
def test_alarm_during_a_deployment_stops_it_and_codedeploy_rolls_back(
    world: World, lambda_context: Any, status: str
) -> None:
    world.seed(1, 300)
    in_flight = world.seed(2, 10, status=status)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert [o["action"] for o in result["outcomes"]] == ["stopped"]
    stopped = world.service.get(in_flight)
    assert stopped["status"] == "Stopped"
    rollback = world.service.get(stopped["rollbackInfo"]["rollbackDeploymentId"])
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["rollbackInfo"]["rollbackTriggeringDeploymentId"] == in_flight
    assert rollback["revision"]["appSpecContent"]["content"] == appspec(1)
    [mail] = world.notifications()
    assert mail["subject"].startswith("[dev] sample-app: ROLLED BACK - stopped deployment")
    assert len(mail["subject"]) <= 100
    assert in_flight in mail["body"]
    assert "phoenix-dev-sample-app:2" in mail["body"]
    assert "phoenix-dev-sample-app:1" in mail["body"]
    assert ALARM in mail["body"]
    assert "Threshold Crossed" in mail["body"]


def test_a_deployment_codedeploy_already_stopped_is_left_alone(world: World) -> None:
    world.seed(1, 300)
    in_flight = world.seed(2, 10, status="InProgress")
    module = world.function()
    snapshot = world.service.get(in_flight)
    boto3.client("codedeploy").stop_deployment(deploymentId=in_flight, autoRollbackEnabled=True)
    [alarm] = module.parse_alarms(world.event("sns-cloudwatch-alarm"))
    outcome = module.stop_in_flight(snapshot, alarm)
    assert outcome.action == "none"
    assert outcome.headline == f"deployment {in_flight} already stopped by CodeDeploy"
    assert (
        len([d for d in map(world.service.get, world.service.deployment_ids()) if d["creator"] != "user"])
        == 1
    )


def test_a_rollback_in_flight_is_not_stopped(world: World, lambda_context: Any) -> None:
    world.seed(1, 300)
    world.seed(2, 200, status="Stopped")
    rollback = world.seed(1, 100, status="InProgress", creator="codeDeployRollback")
    result = world.function().lambda_handler(world.event("eventbridge-alarm-state-change"), lambda_context)
    assert result["outcomes"][0]["headline"] == f"rollback {rollback} already in progress"
    assert world.service.get(rollback)["status"] == "InProgress"
    assert world.notifications()[0]["subject"].startswith("[dev] sample-app: NO ACTION")


# --------------------------------------------------------------------------------------------- resurrection
def test_alarm_after_completion_redeploys_the_last_known_good_revision(
    world: World, lambda_context: Any
) -> None:
    good = world.seed(1, 3000)
    serving = world.seed(2, 100)
    result = world.function().lambda_handler(world.event("cloudwatch-alarm-direct-invoke"), lambda_context)
    [outcome] = result["outcomes"]
    assert outcome["action"] == "redeployed"
    [created] = world.created_by_function()
    assert created["deploymentId"] == outcome["redeployment"]
    assert created["revision"]["appSpecContent"]["content"] == appspec(1)
    assert created["status"] == "Created"
    assert created["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"
    assert created["overrideAlarmConfiguration"]["enabled"] is False
    assert f"replaces={serving}" in created["description"]
    assert f"restores={good}" in created["description"]
    [mail] = world.notifications()
    assert "ROLLED BACK - redeployed the last known-good revision" in mail["subject"]
    assert (
        "From revision:        arn:aws:ecs:us-east-1:123456789012:task-definition/phoenix-dev-sample-app:2"
        in (mail["body"])
    )
    assert (
        "To revision:          arn:aws:ecs:us-east-1:123456789012:task-definition/phoenix-dev-sample-app:1"
        in (mail["body"])
    )


def test_resurrection_skips_revisions_that_were_rolled_back_or_failed(
    world: World, lambda_context: Any
) -> None:
    world.seed(1, 5000)
    world.seed(2, 4000)
    # v2 was replaced by an automatic redeployment of v1 before, and v3 failed: neither is "known-good".
    world.seed(1, 3000, description=f"phoenix-auto-rollback alarm=x alarm-time=t from-revision={_sha(2)} ...")
    world.seed(2, 2000)
    world.seed(3, 1500, status="Failed")
    world.seed(4, 100)
    world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    [_, created] = world.created_by_function()
    assert created["revision"]["appSpecContent"]["content"] == appspec(1)


def test_no_action_when_the_stable_revision_already_serves(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000, status="Stopped")
    world.seed(1, 1990, creator="codeDeployRollback")
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert result["outcomes"][0]["headline"].startswith("the stable revision already serves")
    assert world.created_by_function() == []


def test_no_action_and_a_clear_notification_without_an_earlier_good_revision(
    world: World, lambda_context: Any
) -> None:
    world.seed(1, 100)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert result["outcomes"][0]["headline"] == "no earlier known-good revision: nothing redeployed"
    [mail] = world.notifications()
    assert (
        mail["subject"] == "[dev] sample-app: NO ACTION - no earlier known-good revision: nothing redeployed"
    )


def test_at_most_one_redeployment_per_cooldown(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 2000)
    world.seed(1, 300, description=f"phoenix-auto-rollback alarm=other alarm-time=t from-revision={_sha(2)}")
    world.seed(3, 100)
    result = world.function().lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    assert result["outcomes"][0]["headline"].startswith("cooldown: automatic redeployment")
    assert len(world.created_by_function()) == 1


def test_duplicate_deliveries_give_one_redeployment(world: World, lambda_context: Any) -> None:
    world.seed(1, 3000)
    world.seed(2, 100)
    module = world.function(ROLLBACK_COOLDOWN_SECONDS="0")
    event = world.event("sns-cloudwatch-alarm")
    first = module.lambda_handler(event, lambda_context)["outcomes"][0]
    second = module.lambda_handler(event, lambda_context)["outcomes"][0]
    world.service.set_status(first["redeployment"], "Succeeded")
    third = module.lambda_handler(event, lambda_context)["outcomes"][0]
    assert [first["action"], second["action"], third["action"]] == ["redeployed", "none", "none"]
    assert second["headline"] == f"rollback {first['redeployment']} already in progress"
    assert third["headline"] == "this alarm was already handled (duplicate delivery)"
    assert len(world.created_by_function()) == 1


@pytest.mark.parametrize("in_flight", [True, False], ids=["stop", "resurrect"])
def test_the_same_alarm_ten_times_at_once_gives_one_rollback(
    world: World, lambda_context: Any, in_flight: bool
) -> None:
    world.seed(1, 3000)
    world.seed(2, 100 if not in_flight else 2000)
    if in_flight:
        world.seed(3, 10, status="InProgress")
    module = world.function()
    event = world.event("sns-cloudwatch-alarm")
    barrier = threading.Barrier(10)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            results.extend(module.lambda_handler(event, lambda_context)["outcomes"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    actions = sorted(o["action"] for o in results)
    assert actions == ["none"] * 9 + ["stopped" if in_flight else "redeployed"]
    infos = [world.service.get(i) for i in world.service.deployment_ids()]
    rollbacks = [d for d in infos if d["creator"] == "codeDeployRollback" or d in world.created_by_function()]
    assert len(rollbacks) == 1


# --------------------------------------------------------------------------------------------- AWS failures
def test_a_remaining_aws_error_is_notified_then_raised(world: World, lambda_context: Any) -> None:
    module = world.function(CODEDEPLOY_DEPLOYMENT_GROUP="no-such-group")
    with pytest.raises(ClientError, match="DeploymentGroupDoesNotExistException"):
        module.lambda_handler(world.event("sns-cloudwatch-alarm"), lambda_context)
    [mail] = world.notifications()
    assert mail["subject"].startswith("[dev] sample-app: FAILED")
    assert "DeploymentGroupDoesNotExistException" in mail["body"]


def test_clients_use_botocore_standard_retries(world: World) -> None:
    module = world.function()
    assert module.CODEDEPLOY.meta.config.retries["mode"] == "standard"
    assert module.SNS.meta.config.retries["mode"] == "standard"


def _sha(version: int) -> str:
    return hashlib.sha256(appspec(version).encode()).hexdigest()
