"""The whole stand-in assembled: moto, the stacks, CodeDeploy, the ALB, ECS tasks, Lambdas, alarms, schedules.

`World` is a context manager; on exit every process it started (tasks, Lambda workers) is stopped and every
server shut down, whatever happened.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from local.alb import LoadBalancer, forward_weights, registered_targets
from local.aws import ROOT, Stack, Stacks
from local.cloudwatch_alarms import AlarmEvaluator, StateChange
from local.codedeploy import CodeDeployServer, CodeDeployService
from local.codedeploy_engine import EcsBlueGreenEngine
from local.ecs_tasks import TaskRunner
from local.lambda_runtime import LambdaRuntime, Scheduler, SnsDelivery
from local.moto_server import ACCOUNT_ID, REGION, moto_server
from local.timescale import TimeScale
from scripts.deploy import LAMBDAS, lambda_sources, write_zip

PROJECT, ENVIRONMENT, SERVICE = "phoenix", "dev", "sample-app"
ARTIFACT_BUCKET = f"{PROJECT}-{ENVIRONMENT}-artifacts-{ACCOUNT_ID}"
APPLICATION = f"{PROJECT}-{ENVIRONMENT}"
GROUP = f"{PROJECT}-{ENVIRONMENT}-{SERVICE}"
IMAGE_REPO = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/{PROJECT}-{ENVIRONMENT}-{SERVICE}"
# Lambda environment values that are AWS durations: divided by the time-scale factor (whole seconds where the
# function wants an integer). Network timeouts are scaled with the floor. Everything else is the template's.
SCALED_SECONDS = {
    "VALIDATION_INTERVAL_SECONDS": False,
    "ROLLBACK_COOLDOWN_SECONDS": True,
    "DEPLOYMENT_TIMEOUT": True,
}
NETWORK_SECONDS = ("PROBE_CONNECT_TIMEOUT", "PROBE_READ_TIMEOUT")


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("phoenix_render", ROOT / "pipeline-config" / "render.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("pipeline-config/render.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DrillCodeDeployService(CodeDeployService):
    """The stand-in, plus the one group update the spec's literal rule needs."""

    def disable_alarm_polling(self, application: str, group: str) -> None:
        """UpdateDeploymentGroup(alarmConfiguration.enabled=false), for the spec's literal rule."""
        with self._lock:
            self._groups[(application, group)].setdefault("alarmConfiguration", {})["enabled"] = False


@dataclass
class Event:
    t: float
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class World:
    """Everything `make demo` runs, on loopback; `events` is the timeline source."""

    def __init__(
        self,
        scale: TimeScale,
        *,
        on_event: Callable[[Event], None] | None = None,
        deployment_config: str | None = None,
        stack_overrides: dict[str, dict[str, str]] | None = None,
        desired_count: int = 2,
        literal: bool = False,
    ) -> None:
        self.scale = scale
        self._on_event = on_event
        self._deployment_config = deployment_config
        self._stack_overrides = stack_overrides or {}
        self._desired_count = desired_count
        # The spec's literal rule: no test-traffic gate, all-at-once shift, and only the auto-rollback Lambda
        # acting on ALARM_THRESHOLD failed one-minute health checks (no CodeDeploy alarm rollback).
        self.literal = literal
        if literal:
            self._deployment_config = "CodeDeployDefault.ECSAllAtOnce"
        self.events: list[Event] = []
        self._events_lock = threading.Lock()
        self._exit = ExitStack()
        self._release = 0
        self.user_timeout = 2.0
        self._render = _render_module()

    # ------------------------------------------------------------------ timeline
    def emit(self, kind: str, text: str, **data: Any) -> None:
        event = Event(self.scale.now(), kind, text, data)
        with self._events_lock:
            self.events.append(event)
        if self._on_event:
            self._on_event(event)

    def _lambda_log(self, function: str, line: str) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            if line.strip():
                self.emit("lambda-log", f"{function}: {line.strip()[:200]}", function=function, raw=True)
            return
        if isinstance(record, dict):
            self.emit(
                "lambda",
                f"{function}: {record.get('decision') or record.get('message') or ''}",
                function=function,
                record=record,
            )

    def _alarm_change(self, change: StateChange) -> None:
        name, old, new, reason, _t = change
        self.emit("alarm", f"{name}: {old} -> {new}", alarm=name, old=old, new=new, reason=reason)

    # ------------------------------------------------------------------ set-up
    def __enter__(self) -> World:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if hasattr(self, "engine"):
            self.engine.abort_all()
            self.engine.wait_idle(timeout=15)
        self._exit.close()

    def _start(self) -> None:  # noqa: PLR0915 - the stand-in, piece by piece
        aws = self._exit.enter_context(moto_server())
        self.service = DrillCodeDeployService(clock=time.time)
        server = self._exit.enter_context(CodeDeployServer(self.service))
        self.aws = aws.with_codedeploy(server.endpoint_url)
        self.cloudwatch = self.aws.client("cloudwatch")
        self.elbv2 = self.aws.client("elbv2")
        self.ecs = self.aws.client("ecs")
        self.codedeploy = self.aws.client("codedeploy")
        self.sns = self.aws.client("sns")
        self.sqs = self.aws.client("sqs")

        self.emit("setup", f"moto on {aws.endpoint}, CodeDeploy stand-in on {server.endpoint_url}")
        # The README's order: the cluster stack (it owns the artifact bucket), the Lambda zips uploaded to
        # that bucket, the Lambda stack, then the CI/CD stack.
        self.stacks = Stacks(self.aws, log=lambda msg: self.emit("setup", msg))
        self.stacks.create(
            Stack(
                "ecs-cluster-stack",
                "ecs-cluster.yaml",
                {
                    "DesiredCount": str(self._desired_count),
                    **self._stack_overrides.get("ecs-cluster-stack", {}),
                },
            )
        )
        bucket = self.stacks.exports.get("ecs-cluster-stack-ArtifactBucketName", ARTIFACT_BUCKET)
        code_root = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="phoenix-lambdas-")))
        self.code_dirs = self._package_lambdas(code_root, bucket)
        self.stacks.create(
            Stack(
                "lambda-functions-stack",
                "lambda-functions.yaml",
                {"ArtifactBucket": bucket, **self._stack_overrides.get("lambda-functions-stack", {})},
            )
        )
        pipeline_params = {
            "GitHubRepo": "example/phoenix-pipeline",
            "GitHubConnectionArn": f"arn:aws:codestar-connections:{REGION}:{ACCOUNT_ID}:connection/drill",
            "ArtifactBucket": bucket,
            **self._stack_overrides.get("cicd-pipeline-stack", {}),
        }
        if self._deployment_config:
            pipeline_params["DeploymentConfigName"] = self._deployment_config
        self.stacks.create(Stack("cicd-pipeline-stack", "cicd-pipeline.yaml", pipeline_params))
        for stack in self.stacks.stacks.values():
            self.emit("setup", f"stack {stack.name}: {stack.status} {stack.reason}".strip())
        exports = self.stacks.exports
        self.exports = exports
        self.prod_listener = exports["ecs-cluster-stack-ProductionListenerArn"]
        self.test_listener = exports["ecs-cluster-stack-TestListenerArn"]
        self.lb_arn = self.elbv2.describe_listeners(ListenerArns=[self.prod_listener])["Listeners"][0][
            "LoadBalancerArn"
        ]
        self.lb_dns = exports["ecs-cluster-stack-LoadBalancerDnsName"]
        self.target_groups = {
            name: self.elbv2.describe_target_groups(
                Names=[exports[f"ecs-cluster-stack-{name}TargetGroupName"]]
            )["TargetGroups"][0]["TargetGroupArn"]
            for name in ("Blue", "Green")
        }
        self.notifications_topic = exports["lambda-functions-stack-NotificationsTopicArn"]
        inbox = self.sqs.create_queue(QueueName="phoenix-drill-inbox")["QueueUrl"]
        self.inbox = inbox
        inbox_arn = self.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.sns.subscribe(TopicArn=self.notifications_topic, Protocol="sqs", Endpoint=inbox_arn)
        self.notifications: list[dict[str, Any]] = []

        self.alb = self._exit.enter_context(
            LoadBalancer(
                self.cloudwatch,
                self.lb_arn,
                {80: self.prod_listener, 8080: self.test_listener},
                metric_period=self.scale.drill(60),
                idle_timeout=max(self.scale.network(60), 2 * self.user_timeout),
            )
        )
        self.production_url = self.alb.url(80)
        self.test_url = self.alb.url(8080)
        self.runner = self._exit.enter_context(TaskRunner(self.ecs, self.elbv2))
        self.runtime = self._exit.enter_context(
            LambdaRuntime(self.aws, self.code_dirs, log=self._lambda_log, env_overrides=self._lambda_env)
        )
        self.runtime.load()
        self.sns_delivery = SnsDelivery(self.aws, self.runtime)
        self.engine = EcsBlueGreenEngine(
            elbv2=self.elbv2,
            ecs=self.ecs,
            cloudwatch=self.cloudwatch,
            runner=self.runner,
            invoke=lambda fn, event: self.runtime.invoke_async(fn, event, source="codedeploy-hook"),
            publish=self.sns_delivery.publish,
            scale=self.scale,
            emit=self.emit,
        )
        self.service.engine = self.engine
        if self.literal:
            self.service.disable_alarm_polling(APPLICATION, GROUP)
        self._bootstrap()
        self.alarms = self._exit.enter_context(
            AlarmEvaluator(
                self.cloudwatch, self.scale, self.sns_delivery.publish, on_change=self._alarm_change
            )
        )
        self.scheduler = self._exit.enter_context(
            Scheduler(self.aws.client("events"), self.runtime, self.scale)
        )
        self._inbox_stop = threading.Event()
        self._inbox_thread = threading.Thread(target=self._read_inbox, name="inbox", daemon=True)
        self._inbox_thread.start()
        self._exit.callback(self._stop_inbox)

    def _stop_inbox(self) -> None:
        self._inbox_stop.set()
        self._inbox_thread.join(timeout=5)

    def _package_lambdas(self, root: Path, bucket: str) -> dict[str, Path]:
        """`make package`'s zips uploaded to the artifact bucket (README order), unpacked for the runtime."""
        s3 = self.aws.client("s3")
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
        dirs = {}
        for module in LAMBDAS:
            buffer = io.BytesIO()
            write_zip(buffer, lambda_sources(module))  # `make package`'s code, without the requirements
            s3.put_object(Bucket=bucket, Key=f"{module}.zip", Body=buffer.getvalue())
            target = root / module
            with zipfile.ZipFile(
                io.BytesIO(s3.get_object(Bucket=bucket, Key=f"{module}.zip")["Body"].read())
            ) as archive:
                archive.extractall(target)
            dirs[module] = target
        return dirs

    def _lambda_env(self, _function: str, env: dict[str, str]) -> dict[str, str]:
        out = {}
        for key, raw in env.items():
            value = raw.replace(f"http://{self.lb_dns}:8080", self.test_url).replace(
                f"http://{self.lb_dns}", self.production_url
            )
            if key in SCALED_SECONDS:
                seconds = self.scale.drill(float(value))
                value = str(max(1, math.ceil(seconds))) if SCALED_SECONDS[key] else f"{seconds:.3f}"
            if key in NETWORK_SECONDS:
                value = f"{self.scale.network(float(value)):.3f}"
            out[key] = value
        if self.literal and "ALARM_NAMES" in out:
            out["ALARM_NAMES"] = f"{PROJECT}-{ENVIRONMENT}-health-check-failed"
        return out

    def _read_inbox(self) -> None:
        while not self._inbox_stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.inbox, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
            except Exception:
                return
            for message in messages.get("Messages", []):
                body = json.loads(message["Body"])
                note = {
                    "t": self.scale.now(),
                    "subject": body.get("Subject") or "",
                    "message": body.get("Message", ""),
                }
                self.notifications.append(note)
                self.emit("notification", note["subject"], message=note["message"])
                self.sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])
            self._inbox_stop.wait(0.05)

    # ------------------------------------------------------------------ releases
    def register_release(self, version: str, fault_env: dict[str, str] | None = None) -> tuple[str, str]:
        """What the build does: taskdef.json and appspec.yml rendered, the task definition registered."""
        env = {
            "IMAGE_URI": f"{IMAGE_REPO}:{version}",
            "TASK_FAMILY": self.exports["ecs-cluster-stack-TaskFamily"],
            "TASK_EXECUTION_ROLE_ARN": self.exports["ecs-cluster-stack-TaskExecutionRoleArn"],
            "TASK_ROLE_ARN": self.exports["ecs-cluster-stack-TaskRoleArn"],
            "CONTAINER_NAME": self.exports["ecs-cluster-stack-ContainerName"],
            "APP_VERSION": version,
            "LOG_GROUP": self.exports["ecs-cluster-stack-AppLogGroupName"],
            "AWS_REGION": REGION,
            "HEALTH_CHECK_FUNCTION": self.exports["lambda-functions-stack-HealthCheckFunctionName"],
        }
        files = self._render.render(env)
        taskdef = json.loads(files["taskdef.json"].replace("<IMAGE1_NAME>", env["IMAGE_URI"]))
        container = taskdef["containerDefinitions"][0]
        container["environment"] += [{"name": k, "value": v} for k, v in (fault_env or {}).items()]
        arn = self.ecs.register_task_definition(**taskdef)["taskDefinition"]["taskDefinitionArn"]
        appspec = files["appspec.yml"].replace("<TASK_DEFINITION>", arn)
        if self.literal:
            spec = yaml.safe_load(appspec)
            spec.pop("Hooks", None)
            appspec = yaml.safe_dump(spec, sort_keys=False)
        return arn, appspec

    def deploy(self, version: str, fault_env: dict[str, str] | None = None) -> str:
        """What CodePipeline's CodeDeployToECS action does: CreateDeployment with the appspec."""
        _arn, appspec = self.register_release(version, fault_env)
        return str(
            self.codedeploy.create_deployment(
                applicationName=APPLICATION,
                deploymentGroupName=GROUP,
                revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
                description=f"release {version}",
            )["deploymentId"]
        )

    def _bootstrap(self) -> None:
        """The first release, v1, serving: its tasks in the blue target group, its deployment in history."""
        arn, appspec = self.register_release("v1")
        tasks = self.runner.start(arn, self._desired_count)
        self.runner.register(tasks, self.target_groups["Blue"])
        for listener in (self.prod_listener, self.test_listener):
            self.elbv2.modify_listener(
                ListenerArn=listener,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": self.target_groups["Blue"]}],
            )
        self.service.seed_deployment(
            APPLICATION, GROUP, appspec, status="Succeeded", description="release v1"
        )
        self.emit("setup", f"v1 serving: {len(tasks)} tasks in the blue target group")

    # ------------------------------------------------------------------ observation
    def serving_versions(self) -> dict[str, int]:
        """Production listener weight per version (percent)."""
        out: dict[str, int] = {}
        weights = forward_weights(self.prod_listener)
        total = sum(w for _, w in weights) or 1
        for tg, weight in weights:
            versions = {self.runner.version_of(f"{ip}:{port}") for ip, port in registered_targets(tg)}
            for version in versions:
                if version and weight:
                    out[version] = out.get(version, 0) + round(100 * weight / total / max(1, len(versions)))
        return out

    def alarm_states(self) -> dict[str, str]:
        return self.alarms.states()

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return dict(self.codedeploy.get_deployment(deploymentId=deployment_id)["deploymentInfo"])

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(poll)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}")
