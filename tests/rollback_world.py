"""The auto-rollback function's world for its integration tests (the `world` fixture in conftest.py builds
it): moto's SNS topic with an SQS queue subscribed, the CodeDeploy stand-in with the deployment group, the
function's environment, revisions v1, v2, ... and alarm events stamped with the time of their state change."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3

from local.aws.codedeploy import CodeDeployService

APP = "phoenix-dev"
GROUP = "phoenix-dev-sample-app"
REGION = "us-east-1"
CODEDEPLOY_ALARM = "phoenix-dev-health-check-failed"


def topic_with_queue() -> tuple[str, str]:
    """moto's phoenix-dev-notifications topic with an SQS queue subscribed: (topic ARN, queue URL)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="phoenix-dev-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=attributes["QueueArn"])
    return topic, queue_url


def read_notifications(queue_url: str) -> list[dict[str, str]]:
    """Every mail the topic delivered to the queue since the last read (its subject and text), consumed."""
    sqs = boto3.client("sqs")
    found: list[dict[str, str]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            envelope = json.loads(message["Body"])
            found.append({"subject": envelope.get("Subject", ""), "body": envelope["Message"]})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def appspec(version: int) -> str:
    """The AppSpec of revision `version`: task definition phoenix-dev-sample-app:<version>."""
    task = f"arn:aws:ecs:{REGION}:123456789012:task-definition/phoenix-dev-sample-app:{version}"
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


def cloudwatch_time(when: float) -> str:
    """A time as CloudWatch writes it in alarm events: 2026-11-20T10:02:07.523+0000."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def stamp_alarm(event: Any, *, at: float, name: str | None = None) -> Any:
    """The alarm event with its state change at `at` (epoch seconds) and, if given, another alarm name."""
    if "Records" in event:
        for record in event["Records"]:
            message = json.loads(record["Sns"]["Message"])
            message["StateChangeTime"] = cloudwatch_time(at)
            message["AlarmName"] = name or message["AlarmName"]
            record["Sns"]["Message"] = json.dumps(message)
        return event
    detail = event["detail"] if "detail" in event else event["alarmData"]
    detail["state"]["timestamp"] = cloudwatch_time(at)
    detail["alarmName"] = name or detail["alarmName"]
    return event


@dataclass
class World:
    """moto (SNS + an SQS queue on the notifications topic) and the CodeDeploy stand-in with the group."""

    service: CodeDeployService
    queue_url: str
    env: dict[str, str]
    load: Callable[[str, dict[str, str]], ModuleType]
    load_event: Callable[[str], Any]

    def function(self, **extra: str) -> ModuleType:
        return self.load("auto_rollback", {**self.env, **extra})

    def event(self, sample: str, *, at: float | None = None, alarm: str | None = None) -> Any:
        """tests/events/<sample>.json, its state change now (or `at`), for `alarm` if given."""
        return stamp_alarm(self.load_event(sample), at=time.time() if at is None else at, name=alarm)

    def seed(self, version: int, age_s: float, **kwargs: Any) -> str:
        return self.service.seed_deployment(
            APP, GROUP, appspec(version), create_time=time.time() - age_s, **kwargs
        )

    def notifications(self) -> list[dict[str, str]]:
        return read_notifications(self.queue_url)

    def rollback_of(self, deployment_id: str) -> str:
        """The id of CodeDeploy's rollback deployment of `deployment_id`."""
        return str(self.service.get(deployment_id)["rollbackInfo"]["rollbackDeploymentId"])

    def created_by_function(self) -> list[dict[str, Any]]:
        infos = [self.service.get(i) for i in self.service.deployment_ids()]
        return [d for d in infos if str(d.get("description", "")).startswith("phoenix-auto-rollback")]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def sha(version: int) -> str:
    """The sha256 of revision `version`'s AppSpec: how CodeDeploy names it."""
    return hashlib.sha256(appspec(version).encode()).hexdigest()
