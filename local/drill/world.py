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
from typing import Any, Self

import yaml

from local.aws.cloudformation import Stacks
from local.aws.cloudwatch import AlarmEvaluator, StateChange
from local.aws.codebuild import BuildHost, CodeBuildServer, CodeBuildService
from local.aws.codedeploy import CodeDeployServer, CodeDeployService
from local.aws.codedeploy.ecs_engine import EcsBlueGreenEngine
from local.aws.codepipeline import CodePipelineServer, CodePipelineService, S3Location
from local.aws.codepipeline.actions import (
    CloneRef,
    artifact_files,
    connect_webhooks,
    providers,
    register_release,
)
from local.aws.codepipeline.connection import GitHubStandIn
from local.aws.docker_cli import write_docker_cli
from local.aws.ecs import TaskRunner
from local.aws.elbv2 import LoadBalancer, forward_weights, registered_targets
from local.aws.events import EventBus, Scheduler
from local.aws.images import Registry
from local.aws.lambda_runtime import LambdaRuntime
from local.aws.moto_server import ACCOUNT_ID, REGION, moto_server
from local.aws.sns import SnsDelivery
from local.background import Lifecycle, Loop
from local.drill.repository import WorkingCopy
from local.timescale import TimeScale
from scripts.deploy import LAMBDAS, Names, lambda_sources, traffic_parameter, write_zip
from scripts.stacks import CLUSTER, LAMBDA, PIPELINE, ROOT, load_template, tags

# Lambda environment values that are AWS durations: divided by the time-scale factor (whole seconds where the
# function wants an integer). Network timeouts are scaled, never below their floor (wall seconds). Everything
# else is the template's.
SCALED_SECONDS = {
    "VALIDATION_INTERVAL_SECONDS": False,
    "PRODUCTION_CHECK_SECONDS": False,
    "TARGET_READY_SECONDS": False,
    "ROLLBACK_COOLDOWN_SECONDS": True,
    "DEPLOYMENT_TIMEOUT": True,
    "INSTALL_TIMEOUT": True,
}
# The read timeout's floor is higher: the hook's test traffic sends 120 requests at once, which the ALB
# stand-in answers over about half a wall second on an idle machine (0.5 s failed some on a busy one). Those
# requests are served with the AWS clock held (`elbv2.ListenerProxy.handle`), so the longer wait costs no AWS
# time unless no target answers, and the ALB's idle timeout (0.5 wall s) answers that first. A loopback
# connect needs no more than 0.5 s. A hook round's budget (`health_check.Config.round_budget_s`: the two
# timeouts, twice with test traffic, and a second) stays within DEPLOYMENT_TIMEOUT at x300 (3 wall s).
NETWORK_FLOOR_SECONDS = {"PROBE_CONNECT_TIMEOUT": 0.5, "PROBE_READ_TIMEOUT": 1.0}
# The ALB's idle timeout (AWS's default, 60 s: the template does not change it).
ALB_IDLE_TIMEOUT_SECONDS = 60.0
USER_TIMEOUT_FLOOR_SECONDS = 2.0
# The pipeline's source: the repository and branch the drill pushes to, through a connection whose ARN has the
# template's form (its AllowedPattern).
GITHUB_REPO = "example/phoenix-pipeline"
GITHUB_BRANCH = "main"
CONNECTION_ARN = (
    f"arn:aws:codestar-connections:{REGION}:{ACCOUNT_ID}:connection/00000000-0000-4000-8000-0000000d0d0e"
)
# A build's commands run at this machine's pace: its 30-minute timeout is never below 2 wall minutes.
BUILD_TIMEOUT_FLOOR_SECONDS = 120.0
# The image placeholder of the pipeline's CodeDeployToECS action (Image1ContainerName) and the build output.
IMAGE_PLACEHOLDER = "<IMAGE1_NAME>"
BUILD_FILES = ("imageDetail.json", "taskdef.json", "appspec.yml")


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("phoenix_render", ROOT / "pipeline-config" / "render.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("pipeline-config/render.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Event:
    t: float
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class World(Lifecycle):
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
        self.labels: dict[str, str] = {}  # a commit's short id (APP_VERSION) -> the drill's release label
        self.baseline_output: dict[str, str] = {}
        self._events_lock = threading.Lock()
        self._exit = ExitStack()
        self._release = 0
        # Users wait longer than the ALB's idle timeout (a target that never answers costs them its 504), and
        # at least 2 wall seconds: a request the machine was too busy to take in is not a user's failure.
        self.user_timeout = max(1.5 * scale.network(ALB_IDLE_TIMEOUT_SECONDS), USER_TIMEOUT_FLOOR_SECONDS)
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
            if "function" in record and "decision" not in record:  # a decision in Lambda's JSON log format
                record = {**record, "decision": record.get("message")}
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
    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def stop(self) -> None:
        if hasattr(self, "engine"):
            self.engine.abort_all()
            self.engine.wait_idle(timeout=15)
        self._exit.close()

    def _start(self) -> None:  # noqa: PLR0915 - the stand-in, piece by piece
        aws = self._exit.enter_context(moto_server(scale=self.scale))
        work = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="phoenix-drill-")))
        self.service = CodeDeployService(clock=self.scale.timestamp)  # AWS-clock times (json_api.TIME_KEYS)
        server = self._exit.enter_context(CodeDeployServer(self.service, scale=self.scale))
        # The developer's side: GitHub (the connection's repositories) and a clone of this project.
        self.github = self._exit.enter_context(GitHubStandIn(work / "github"))
        self.working_copy = WorkingCopy.create(
            work / "working-copy",
            self.github.create_repository(GITHUB_REPO),
            GITHUB_BRANCH,
            changes=self._literal_appspec() if self.literal else {},
        )
        # CodePipeline (executions start on pushes) and CodeBuild (the buildspec run for real).
        self.pipelines = CodePipelineService(clock=self.scale.timestamp, start_on_create=False)
        pipeline_server = self._exit.enter_context(CodePipelineServer(self.pipelines, scale=self.scale))
        # Builds run on this machine with a docker stand-in whose images are their build contexts, pushed to
        # the ECR stand-in (moto's ECR and the registry's blobs) and pulled from it by the ECS task runner.
        registry = work / "registry"
        host = BuildHost(
            tools=lambda ws: (
                write_docker_cli(ws / "bin", registry_dir=registry, daemon_dir=ws / "docker").parent
            ),
            cli_dir=ROOT / ".venv" / "bin",  # the AWS CLI
            cached_paths={".venv": ROOT / ".venv"},  # CodeBuild's cache: see local/README.md
            work_dir=work,
            timeout_floor=BUILD_TIMEOUT_FLOOR_SECONDS,
            hold_clock=True,  # the machine's build work is not AWS time (see local/README.md)
        )
        self.builds = CodeBuildService(aws, host, clock=self.scale.timestamp, scale=self.scale)
        build_server = self._exit.enter_context(CodeBuildServer(self.builds, scale=self.scale))
        self.aws = (
            aws.with_endpoint("codedeploy", server.endpoint_url)
            .with_endpoint("codepipeline", pipeline_server.endpoint_url)
            .with_endpoint("codebuild", build_server.endpoint_url)
        )
        self.builds.aws = self.aws  # builds start with every endpoint known
        self.registry = Registry(registry, self.aws.client("ecr"))
        self.cloudwatch = self.aws.client("cloudwatch")
        self.elbv2 = self.aws.client("elbv2")
        self.ecs = self.aws.client("ecs")
        self.codedeploy = self.aws.client("codedeploy")
        self.sns = self.aws.client("sns")
        self.sqs = self.aws.client("sqs")
        self.s3 = self.aws.client("s3")
        self.pipelines.providers = providers(
            github=self.github,
            builds=self.builds,
            s3=self.s3,
            ecs=self.ecs,
            codedeploy=self.codedeploy,
            sleep=lambda aws_seconds: self.scale.sleep(self.scale.drill(aws_seconds)),
        )
        connect_webhooks(self.pipelines, self.github)
        self.event_bus = EventBus(self.aws.client("events"), self.sns, clock=self.scale.timestamp)
        self.pipelines.on_event = self._pipeline_event

        self.emit(
            "setup",
            f"moto on {aws.endpoint}; stand-ins: CodeDeploy {server.endpoint_url}, CodePipeline "
            f"{pipeline_server.endpoint_url}, CodeBuild {build_server.endpoint_url}",
        )
        # The README's order: the cluster stack (it owns the artifact bucket), the Lambda zips uploaded to
        # that bucket, the Lambda stack, then the CI/CD stack.
        names = Names()
        self.stacks = Stacks(
            self.aws, tags=tags(names.project, names.environment), log=lambda msg: self.emit("setup", msg)
        )
        overrides = self._stack_overrides
        self.stacks.create(
            CLUSTER, {"DesiredCount": str(self._desired_count), **overrides.get(CLUSTER.name, {})}
        )
        bucket = self.stacks.exports[CLUSTER.export("ArtifactBucketName")]
        code_root = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="phoenix-lambdas-")))
        self.code_dirs = self._package_lambdas(code_root, bucket)
        self.stacks.create(
            LAMBDA,
            {
                "ArtifactBucket": bucket,
                "TestTraffic": traffic_parameter(),
                # The spec's literal rule checks production once every HEALTH_CHECK_INTERVAL.
                **({"ProductionCheckSeconds": "60"} if self.literal else {}),
                **overrides.get(LAMBDA.name, {}),
            },
        )
        pipeline_params = {
            "GitHubRepo": GITHUB_REPO,
            "GitHubBranch": GITHUB_BRANCH,
            "GitHubConnectionArn": CONNECTION_ARN,
            "ArtifactBucket": bucket,
            **overrides.get(PIPELINE.name, {}),
        }
        if self._deployment_config:
            pipeline_params["DeploymentConfigName"] = self._deployment_config
        self.stacks.create(PIPELINE, pipeline_params)
        for stack in self.stacks.stacks.values():
            self.emit("setup", f"stack {stack.spec.name}: {stack.status}")
        exports = self.exports = self.stacks.exports
        self.pipeline = exports[PIPELINE.export("PipelineName")]
        self.aws.client("codepipeline").get_pipeline(name=self.pipeline)  # created in the stand-in, or raise
        self.artifact_bucket = bucket
        self.build_project = exports[PIPELINE.export("BuildProjectName")]
        self.application = exports[PIPELINE.export("CodeDeployApplicationName")]
        self.group = exports[PIPELINE.export("DeploymentGroupName")]
        self.prod_listener = exports[CLUSTER.export("ProductionListenerArn")]
        self.test_listener = exports[CLUSTER.export("TestListenerArn")]
        self.lb_arn = self.elbv2.describe_listeners(ListenerArns=[self.prod_listener])["Listeners"][0][
            "LoadBalancerArn"
        ]
        self.lb_dns = exports[CLUSTER.export("LoadBalancerDnsName")]
        self.target_groups = {
            colour: self._target_group_arn(exports[CLUSTER.export(f"{colour}TargetGroupName")])
            for colour in ("Blue", "Green")
        }
        self.notifications_topic = exports[LAMBDA.export("NotificationsTopicArn")]
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
                scale=self.scale,
                idle_timeout=self.scale.network(ALB_IDLE_TIMEOUT_SECONDS),
            )
        )
        self.production_url = self.alb.url(80)
        self.test_url = self.alb.url(8080)
        self.runner = self._exit.enter_context(
            TaskRunner(self.ecs, self.elbv2, self.scale, emit=self.emit, images=self.registry.pull)
        )
        self.runtime = self._exit.enter_context(
            LambdaRuntime(
                self.aws,
                self.code_dirs,
                log=self._lambda_log,
                env_overrides=self._lambda_env,
                scale=self.scale,
                dead_letters=self._dead_letters(),
            )
        )
        self.runtime.load()
        self.event_bus.runtime = self.runtime  # rules with Lambda targets (the release report)
        self.sns_delivery = SnsDelivery(self.aws, self.runtime)
        self.engine = EcsBlueGreenEngine(
            elbv2=self.elbv2,
            ecs=self.ecs,
            cloudwatch=self.cloudwatch,
            runner=self.runner,
            target_states=self.alb.target_states,
            invoke=lambda fn, event: self.runtime.invoke_async(fn, event, source="codedeploy-hook"),
            publish=self.sns_delivery.publish,
            scale=self.scale,
            emit=self.emit,
            put_event=self.event_bus.put,
        )
        self.service.engine = self.engine
        if self.literal:
            self._turn_off_alarm_polling()
        self._bootstrap()
        self.alarms = self._exit.enter_context(
            AlarmEvaluator(
                self.cloudwatch, self.scale, self.sns_delivery.publish, on_change=self._alarm_change
            )
        )
        self.scheduler = self._exit.enter_context(
            Scheduler(self.aws.client("events"), self.runtime, self.scale)
        )
        self._exit.enter_context(Loop("inbox", self._read_inbox, every=0.05))

    def _dead_letters(self) -> dict[str, str]:
        """Function name -> its DeadLetterConfig TargetArn, from the Lambda stack's template (moto keeps no
        DeadLetterConfig; the runtime delivers failed asynchronous events there)."""
        summaries = self.aws.client("cloudformation").list_stack_resources(StackName=LAMBDA.name)
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries["StackResourceSummaries"]
        }
        out = {}
        for logical, resource in load_template(LAMBDA.template)["Resources"].items():
            target = (resource.get("Properties", {}).get("DeadLetterConfig") or {}).get("TargetArn")
            if resource["Type"] != "AWS::Lambda::Function" or not isinstance(target, dict):
                continue
            get_att = target["Fn::GetAtt"]  # !GetAtt Queue.Arn (a string) or [Queue, Arn]
            queue = str(get_att[0] if isinstance(get_att, list) else get_att.split(".")[0])
            arn = self.sqs.get_queue_attributes(QueueUrl=physical[queue], AttributeNames=["QueueArn"])
            out[physical[logical]] = arn["Attributes"]["QueueArn"]
        return out

    def _target_group_arn(self, name: str) -> str:
        return str(self.elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"])

    def _turn_off_alarm_polling(self) -> None:
        """The spec's literal rule has no CodeDeploy alarm rollback: UpdateDeploymentGroup turns the group's
        alarm polling off (its alarms stay listed), as an operator would."""
        group = self.codedeploy.get_deployment_group(
            applicationName=self.application, deploymentGroupName=self.group
        )["deploymentGroupInfo"]
        self.codedeploy.update_deployment_group(
            applicationName=self.application,
            currentDeploymentGroupName=self.group,
            alarmConfiguration={**group["alarmConfiguration"], "enabled": False},
        )

    def deployment_config(self, name: str | None = None) -> str:
        """The group's deployment configuration; with `name`, UpdateDeploymentGroup sets it first (as an
        operator would) and the one before is returned."""
        group = self.codedeploy.get_deployment_group(
            applicationName=self.application, deploymentGroupName=self.group
        )["deploymentGroupInfo"]
        if name is not None:
            self.codedeploy.update_deployment_group(
                applicationName=self.application,
                currentDeploymentGroupName=self.group,
                deploymentConfigName=name,
            )
        return str(group["deploymentConfigName"])

    def _package_lambdas(self, root: Path, bucket: str) -> dict[str, Path]:
        """`make package`'s zips uploaded to the artifact bucket (README order), unpacked for the runtime."""
        s3 = self.aws.client("s3")
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
            if key in NETWORK_FLOOR_SECONDS:
                value = f"{self.scale.network(float(value), floor=NETWORK_FLOOR_SECONDS[key]):.3f}"
            out[key] = value
        if self.literal and "ALARM_NAMES" in out:
            # The spec's literal rule: the auto-rollback Lambda acts on the health alarm alone (no deployment
            # timeout, which would have to be one of ALARM_NAMES).
            out["ALARM_NAMES"] = self.exports[LAMBDA.export("HealthCheckAlarmName")]
            out["DEPLOYMENT_TIMEOUT_ALARM_NAME"] = ""
        return out

    def _read_inbox(self) -> None:
        """The drill's own subscriber of the notifications topic: what the team would read."""
        messages = self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for message in messages.get("Messages", []):
            body = json.loads(message["Body"])
            note = {
                "t": self.scale.now(),
                "subject": body.get("Subject") or "",
                "message": body.get("Message", ""),
            }
            self.notifications.append(note)
            first_line = note["message"].strip().split("\n")[0]
            self.emit("notification", note["subject"] or first_line[:160], message=note["message"])
            self.sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])

    # ------------------------------------------------------------------ releases
    def _literal_appspec(self) -> dict[str, str]:
        """The spec's literal rule has no test-traffic gate: its baseline's appspec has no hooks."""
        spec = yaml.safe_load((ROOT / "pipeline-config" / "appspec.yml").read_text())
        spec.pop("Hooks", None)
        return {"pipeline-config/appspec.yml": yaml.safe_dump(spec, sort_keys=False)}

    def _pipeline_event(self, detail_type: str, detail: dict[str, Any]) -> None:
        """A CodePipeline state change: on the timeline, and to EventBridge (the pipeline-failed rule)."""
        stage, action, state = detail.get("stage"), detail.get("action"), detail["state"]
        execution = str(detail["execution-id"])
        if action is None:  # stages and the execution itself; actions are the stages' detail
            where = f"stage {stage}" if stage else "execution"
            self.emit(
                "pipeline",
                f"{where} {state} ({execution[:8]})",
                execution=execution,
                stage=stage,
                state=state,
            )
        arn = f"arn:aws:codepipeline:{REGION}:{ACCOUNT_ID}:{detail['pipeline']}"
        self.event_bus.put("aws.codepipeline", detail_type, detail, [arn])

    def version_of(self, address: str) -> str | None:
        """The release label of the task at `ip:port` (its APP_VERSION is the commit's short id)."""
        version = self.runner.version_of(address)
        return self.labels.get(version, version) if version else None

    def ship(self, label: str, files: dict[str, str], what: str) -> str:
        """`git commit` the baseline plus `files` and `git push`: the commit id. The pipeline takes it from
        there (its webhook starts an execution)."""
        commit = self.working_copy.release(f"release {label}: {what}", files)
        self.labels[commit[:8]] = label
        self.emit("push", f"git push {commit[:8]} ({label}: {what})", commit=commit, label=label)
        return commit

    def release_files(self, fault_env: dict[str, str]) -> dict[str, str]:
        """The change that switches faults on: pipeline-config/taskdef.json with them in the container's
        environment (empty when there is none: the release is the baseline again)."""
        if not fault_env:
            return {}
        name = "pipeline-config/taskdef.json"
        taskdef = json.loads(self.working_copy.read_baseline(name))
        container = taskdef["containerDefinitions"][0]
        container["environment"] += [{"name": k, "value": v} for k, v in fault_env.items()]
        return {name: json.dumps(taskdef, indent=2) + "\n"}

    def execution_of(self, commit: str, timeout: float) -> str:
        """The pipeline execution the push of `commit` started."""
        found: list[str] = []

        def started() -> bool:
            found[:] = [
                e["pipelineExecutionId"]
                for e in self.pipelines.executions(self.pipeline)
                if any(r.get("revisionId") == commit for r in e["sourceRevisions"])
            ]
            return bool(found)

        self.wait_for(started, timeout, f"a pipeline execution of {commit[:8]}")
        return found[0]

    def deployment_of(self, execution: str, timeout: float) -> str | None:
        """The deployment the execution's Deploy action created; None when the execution ended without one."""
        found: list[str | None] = []

        def known() -> bool:
            actions = self.pipelines.action_executions(self.pipeline, execution)
            ids = [
                a["output"]["executionResult"].get("externalExecutionId")
                for a in actions
                if a["input"]["actionTypeId"]["category"] == "Deploy"
            ]
            if ids and ids[0]:
                found[:] = ids[:1]
                return True
            ended = [
                e for e in self.pipelines.executions(self.pipeline) if e["pipelineExecutionId"] == execution
            ]
            if ended and ended[0]["status"] != "InProgress":
                found[:] = [None]
                return True
            return False

        self.wait_for(known, timeout, f"the deployment of pipeline execution {execution[:8]}")
        return found[0]

    def pipeline_run(self, execution: str) -> dict[str, Any]:
        """The execution as ListPipelineExecutions and ListActionExecutions tell it (the report's record)."""
        summary = next(
            e for e in self.pipelines.executions(self.pipeline) if e["pipelineExecutionId"] == execution
        )
        actions = self.pipelines.action_executions(self.pipeline, execution)
        deployed = [
            a["output"]["executionResult"].get("externalExecutionId")
            for a in actions
            if a["stageName"] == "Deploy"
        ]
        return {
            "execution_id": execution,
            "status": summary["status"],
            "commit": (summary["sourceRevisions"] or [{}])[0].get("revisionId"),
            "trigger": summary["trigger"]["triggerType"],
            **self._registered(deployed[0] if deployed else None),
            "actions": [
                {
                    "stage": a["stageName"],
                    "action": a["actionName"],
                    "status": a["status"],
                    "external_id": a["output"]["executionResult"].get("externalExecutionId"),
                    "error": (a["output"]["executionResult"].get("errorDetails") or {}).get("message"),
                    "aws_seconds": round(a["lastUpdateTime"] - a["startTime"], 1),
                }
                for a in actions
            ],
        }

    def _registered(self, deployment_id: str | None) -> dict[str, str | None]:
        """What CodeDeployToECS registered for a deployment: the task definition its appspec names (read back
        with GetApplicationRevision, as AWS gives it) and that task definition's image."""
        if not deployment_id:
            return {"task_definition": None, "image": None}
        info = self.deployment(deployment_id)
        revision = self.codedeploy.get_application_revision(
            applicationName=self.application, revision=info["revision"]
        )["revision"]
        appspec = yaml.safe_load(revision["appSpecContent"]["content"])
        arn = str(appspec["Resources"][0]["TargetService"]["Properties"]["TaskDefinition"])
        definition = self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return {"task_definition": arn, "image": str(definition["containerDefinitions"][0]["image"])}

    def build_baseline(self, commit: str) -> dict[str, str]:
        """v1's image and build output: the pipeline's build project run on the baseline commit, as a build
        started by hand would; the output artifact's S3 location."""
        output = {"bucket": self.artifact_bucket, "key": "drill-bootstrap/BuildOutput.zip"}
        source = CloneRef(
            str(self.github.remote_url(GITHUB_REPO)), commit, GITHUB_BRANCH, GITHUB_REPO, CONNECTION_ARN
        )
        build_id = self.builds.start_pipeline_build(
            self.build_project, source=source, output=S3Location(**output), initiator="drill/bootstrap"
        )
        build = self.builds.wait(
            build_id, timeout=BUILD_TIMEOUT_FLOOR_SECONDS + self.scale.drill(30 * 60) + 30
        )
        if build["buildStatus"] != "SUCCEEDED":
            tail = "\n".join(self.builds.log_lines(build_id)[-20:])
            raise RuntimeError(f"the baseline commit's build {build['buildStatus']}:\n{tail}")
        self.emit("setup", f"v1 built from {commit[:8]} by {build_id}")
        return output

    def build_output(self, location: dict[str, str]) -> dict[str, str]:
        """The three files of a BuildOutput artifact in the artifact bucket."""
        files = artifact_files(self.s3, S3Location(**location))
        return {name: files[name].decode() for name in BUILD_FILES}

    def register_release(self, label: str, fault_env: dict[str, str] | None = None) -> tuple[str, str]:
        """Engine tests only (the drill ships through the pipeline): v1's build output registered as
        CodeDeployToECS registers it, with `fault_env` added and APP_VERSION set to `label`."""
        taskdef = json.loads(self.baseline_output["taskdef.json"])
        container = taskdef["containerDefinitions"][0]
        env = {e["name"]: e["value"] for e in container["environment"]}
        env.update({"APP_VERSION": label, **(fault_env or {})})
        container["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        files = {**self.baseline_output, "taskdef.json": json.dumps(taskdef)}
        return register_release(self.ecs, files, IMAGE_PLACEHOLDER)

    def deploy(self, label: str, fault_env: dict[str, str] | None = None) -> str:
        """Engine tests only: CreateDeployment of v1's image with `fault_env`, bypassing the pipeline."""
        _arn, appspec = self.register_release(label, fault_env)
        return str(
            self.codedeploy.create_deployment(
                applicationName=self.application,
                deploymentGroupName=self.group,
                revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec}},
                description=f"release {label}",
            )["deploymentId"]
        )

    def _bootstrap(self) -> None:
        """The first release, v1, serving: the baseline commit built by the pipeline's build project, its
        tasks in the blue target group (as the cluster stack's InitialImage would run them) and its deployment
        in history. The pipeline's own first execution (CreatePipeline) is not run: see local/README.md."""
        commit = self.working_copy.baseline
        self.labels[commit[:8]] = "v1"
        output = self.build_baseline(commit)
        self.baseline_output = self.build_output(output)
        arn, appspec = register_release(self.ecs, self.baseline_output, IMAGE_PLACEHOLDER)
        tasks = self.runner.run(arn, self._desired_count, "bootstrap")
        self.runner.register(tasks, self.target_groups["Blue"])
        self.wait_for(
            lambda: self.alb.all_healthy(self.target_groups["Blue"], [t.address for t in tasks]),
            30,
            "v1's targets healthy in the ALB",
        )
        for listener in (self.prod_listener, self.test_listener):
            self.elbv2.modify_listener(
                ListenerArn=listener,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": self.target_groups["Blue"]}],
            )
        self.service.seed_deployment(
            self.application, self.group, appspec, status="Succeeded", description="release v1"
        )
        self.emit("setup", f"v1 ({commit[:8]}) serving: {len(tasks)} tasks in the blue target group")

    # ------------------------------------------------------------------ observation
    def serving_versions(self) -> dict[str, int]:
        """Production listener weight per version (percent)."""
        out: dict[str, int] = {}
        weights = forward_weights(self.prod_listener)
        total = sum(w for _, w in weights) or 1
        for tg, weight in weights:
            versions = {self.version_of(f"{ip}:{port}") for ip, port in registered_targets(tg)}
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
