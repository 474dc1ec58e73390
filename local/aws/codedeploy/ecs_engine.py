"""CodeDeploy's ECS blue/green engine, plugged into the CodeDeploy API stand-in (local/aws/codedeploy).

For each deployment (one thread each), the lifecycle events in AWS's order: BeforeInstall hooks; Install
(start the replacement task set from the appspec's task definition, register it in the target group the
production listener is *not* serving, and wait until the task set is steady: every task RUNNING, its container
health check HEALTHY and its target healthy in the ALB, as ECS's TaskSet STEADY_STATE requires; at most 60
minutes, then the deployment fails as CodeDeploy's does); AfterInstall hooks; AllowTestTraffic (the test
listener to the replacement); AfterAllowTestTraffic (the hook Lambda is invoked with the real event and
CodeDeploy waits for PutLifecycleEventHookExecutionStatus, at most an hour); BeforeAllowTraffic; AllowTraffic
(canary, linear or all at once); AfterAllowTraffic; the bake (TerminationWaitTimeInMinutes); then the original
task set is deregistered, drained for its target group's deregistration delay and stopped, and only then does
the deployment succeed. All along it polls the alarms of the deployment's alarm configuration (the group's, or
the deployment's overrideAlarmConfiguration) and honours StopDeployment. Replacement tasks that fail to start
are started again every TASK_RETRY_AWS_SECONDS, as ECS's service scheduler does. DEPLOYMENT_TIMEOUT is the
product's to enforce (the health check's DeploymentOverdue metric and the auto-rollback Lambda).
On hook failure, alarm or stop, the status and errorInformation are what CodeDeploy reports
(Failed/HOOK_EXECUTION_FAILURE, Stopped/ALARM_ACTIVE or MANUAL_STOP) and, when the AutoRollbackConfiguration
asks for it, AWS's rollback deployment runs: both listeners back to the original, then the replacement task
set drained and deleted; the rollback deployment stays InProgress until that is done. Deployment-group
triggers are published to their SNS topics. Every wait is on the stand-in's AWS clock.

What BatchGetDeploymentTargets answers for the deployment's ECS target is recorded as it happens: each
lifecycle event goes InProgress when the engine enters it and Succeeded when done
(`CodeDeployService.lifecycle_event`; Install spans `_start_tasks` through `_wait_steady`, AllowTraffic every
shift step and its wait; an event whose hook the appspec does not name passes at once, startTime == endTime);
on abort the service marks the event in progress Failed and the rest Skipped. The target's taskSetsInfo is
the engine's view of the two task sets, refreshed at every check (`CodeDeployService.set_task_sets`). The
rollback deployments the engine runs record no lifecycle events: their target keeps its eight Pending events.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from local.aws.codedeploy.service import CodeDeployService
from local.aws.ecs import START_RETRY_SECONDS, Emit, Task, TaskFailedToStart, TaskRunner
from local.aws.elbv2 import deregistration_delay_seconds, forward_weights
from local.aws.moto_server import ACCOUNT_ID, REGION
from local.timescale import TimeScale

HOOK_TIMEOUT_SECONDS = 3600
# "The deployment timed out while waiting for the replacement task set to become healthy. This time out period
# is 60 minutes." (CodeDeploy's error for an ECS replacement task set that never becomes healthy.)
INSTALL_TIMEOUT_SECONDS = 3600
# ECS starts a failed task's replacement after a pause (its service scheduler throttles repeated failures).
TASK_RETRY_AWS_SECONDS = START_RETRY_SECONDS
# CodeDeploy's EventBridge event ("CodeDeploy Deployment State-change Notification": AWS's sample in the
# EventBridge events reference; states as aws-lambda-go's events/codedeploy.go names them) per trigger event.
# DeploymentRollback has none: the rollback is a deployment of its own, with its own events, which this engine
# does not send (its rollback deployments run inside the rolled-back one's thread): a known difference.
STATE_CHANGE = "CodeDeploy Deployment State-change Notification"
EVENTBRIDGE_STATES = {
    "DeploymentStart": "START",
    "DeploymentSuccess": "SUCCESS",
    "DeploymentFailure": "FAILURE",
    "DeploymentStop": "STOP",
    "DeploymentReady": "READY",
}
# EventBus.put(source, detail_type, detail, resources) of local/aws/events.py.
PutEvent = Callable[[str, str, dict[str, Any], list[str]], Any]
# AWS does not document how often CodeDeploy polls a deployment's alarms; every 5 AWS seconds here (a slower
# poll would delay the alarm gate by at most its period).
ALARM_POLL_AWS_SECONDS = 5.0


def task_set_identifier(task_set: str) -> str:
    """An ECS task set id as CodeDeploy reports it (ecs-svc/ and 19 digits), the same for a task set in every
    deployment that sees it (derived from the runner's task set name: the deployment id that created it)."""
    digits = int(hashlib.sha256(task_set.encode()).hexdigest(), 16) % 10**19
    return f"ecs-svc/{digits:019d}"


class Abort(Exception):
    """Stops a deployment: CodeDeploy's status and error code."""

    def __init__(self, status: str, code: str, message: str, *, auto_rollback: bool | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.auto_rollback = auto_rollback


def shift_steps(config_name: str) -> list[tuple[int, float]]:
    """[(percent on the replacement, AWS seconds to wait after)] of an ECS deployment configuration."""
    canary = re.search(r"Canary(\d+)Percent(\d+)Minutes?", config_name)
    if canary:
        return [(int(canary.group(1)), int(canary.group(2)) * 60.0), (100, 0.0)]
    linear = re.search(r"Linear(\d+)PercentEvery(\d+)Minutes?", config_name)
    if linear:
        step, minutes = int(linear.group(1)), int(linear.group(2))
        steps = [(p, minutes * 60.0) for p in range(step, 100, step)]
        return [*steps, (100, 0.0)]
    return [(100, 0.0)]


@dataclass
class Run:
    deployment_id: str
    stop: threading.Event = field(default_factory=threading.Event)
    stop_auto_rollback: bool = False
    hooks: dict[str, tuple[threading.Event, list[str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False
    original_tg: str | None = None
    replacement_tg: str | None = None
    prod_listener: str | None = None
    test_listener: str | None = None
    replacement_tasks: list[Task] = field(default_factory=list)
    routed: bool = False
    thread: threading.Thread | None = None
    # What taskSetsInfo reports (`_publish_task_sets`): the original (Blue) and replacement (Green) task sets.
    tg_names: dict[str, str] = field(default_factory=dict)  # target group ARN -> name
    original_set: str | None = None  # the runner's task set name of the tasks serving at the start
    original_count: int = 0
    count: int = 0  # the replacement's desired count, once Install has begun
    percent: int = 0  # production traffic on the replacement
    replacement_primary: bool = False  # AllowTraffic done: ECS's primary task set is the replacement
    draining: str | None = None  # "original" or "replacement" while it is drained and deleted
    deleted: set[str] = field(default_factory=set)


class EcsBlueGreenEngine:
    """The DeploymentEngine of local/aws/codedeploy for ECS blue/green deployments behind the ALB stand-in."""

    def __init__(
        self,
        *,
        elbv2: Any,
        ecs: Any,
        cloudwatch: Any,
        runner: TaskRunner,
        target_states: Callable[[str], dict[str, str]],
        invoke: Callable[[str, Any], Any],
        publish: Callable[[str, str, str], None],
        scale: TimeScale,
        emit: Emit,
        put_event: PutEvent | None = None,
    ) -> None:
        self._put_event = put_event
        self._elbv2 = elbv2
        self._ecs = ecs
        self._cw = cloudwatch
        self._runner = runner
        self._target_states = target_states
        self._invoke = invoke
        self._publish = publish
        self._scale = scale
        self._emit = emit
        self._tick = scale.drill(ALARM_POLL_AWS_SECONDS)
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the seam
    def on_created(self, service: CodeDeployService, deployment_id: str) -> None:
        dep = service.get(deployment_id)
        if dep.get("creator") == "codeDeployRollback":
            return  # recorded by the rolled-back deployment's thread, which did the rerouting
        run = Run(deployment_id)
        with self._lock:
            self._runs[deployment_id] = run
        run.thread = threading.Thread(
            target=self._run, args=(service, run), name=f"deploy-{deployment_id}", daemon=True
        )
        run.thread.start()

    def on_stop(self, service: CodeDeployService, deployment_id: str, auto_rollback: bool) -> None:
        run = self._runs.get(deployment_id)
        if run is None:
            return
        run.stop_auto_rollback = auto_rollback
        run.stop.set()

    def on_hook_status(
        self, service: CodeDeployService, deployment_id: str, execution_id: str, status: str
    ) -> None:
        run = self._runs.get(deployment_id)
        if run is None or execution_id not in run.hooks:
            return
        event, result = run.hooks[execution_id]
        result.append(status)
        event.set()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no deployment thread runs (used when the drill shuts down)."""
        deadline = time.monotonic() + timeout
        for run in list(self._runs.values()):
            if run.thread is not None:
                run.thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def abort_all(self) -> None:
        for run in list(self._runs.values()):
            run.stop.set()

    # ------------------------------------------------------------------ lifecycle
    def _run(self, service: CodeDeployService, run: Run) -> None:
        dep = service.get(run.deployment_id)
        group = service.call(
            "GetDeploymentGroup",
            {"applicationName": dep["applicationName"], "deploymentGroupName": dep["deploymentGroupName"]},
        )["deploymentGroupInfo"]
        try:
            self._deploy(service, run, dep, group)
        except Abort as abort:
            self._roll_back(service, run, dep, group, abort)
        except Exception as exc:
            self._roll_back(service, run, dep, group, Abort("Failed", "INTERNAL_ERROR", repr(exc)))

    def _deploy(  # noqa: PLR0915 - CodeDeploy's lifecycle, step by step
        self, service: CodeDeployService, run: Run, dep: dict[str, Any], group: dict[str, Any]
    ) -> None:
        dep_id = run.deployment_id
        service.set_status(dep_id, "InProgress")
        self._trigger(group, dep_id, "DeploymentStart", "START")
        appspec = yaml.safe_load(dep["revision"]["appSpecContent"]["content"])
        props = appspec["Resources"][0]["TargetService"]["Properties"]
        task_definition = str(props["TaskDefinition"])
        hooks = [(name, fn) for entry in appspec.get("Hooks") or [] for name, fn in entry.items()]
        alarms = self._alarm_names(dep, group)
        pair = group["loadBalancerInfo"]["targetGroupPairInfoList"][0]
        names = [tg["name"] for tg in pair["targetGroups"]]
        arns = [
            self._elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
            for name in names
        ]
        run.tg_names = dict(zip(arns, names, strict=True))
        run.prod_listener = pair["prodTrafficRoute"]["listenerArns"][0]
        run.test_listener = (pair.get("testTrafficRoute") or {}).get("listenerArns", [None])[0]
        serving = sorted(forward_weights(run.prod_listener), key=lambda item: -item[1])
        run.original_tg = serving[0][0] if serving else arns[0]
        run.replacement_tg = next(arn for arn in arns if arn != run.original_tg)
        original = self._tasks_in(run.original_tg)
        run.original_set = original[0].task_set if original else None
        run.original_count = len(original)
        alarm_check = self._checker(run, alarms)

        def check() -> None:
            self._publish_task_sets(service, run)
            alarm_check()

        version = self._version(task_definition)
        self._emit(
            "deployment", f"{dep_id} started: {version} ({dep['deploymentConfigName']})", deployment=dep_id
        )
        check()

        self._hook_event(service, run, "BeforeInstall", hooks, check)
        # Install: the replacement task set created and steady (a release that never is stays InProgress).
        service.lifecycle_event(dep_id, "Install", "InProgress")
        count = run.count = self._desired_count(group) or max(1, len(self._tasks_in(run.original_tg)))
        run.replacement_tasks = self._start_tasks(run, task_definition, count, check)
        self._runner.register(run.replacement_tasks, run.replacement_tg)
        self._emit(
            "install",
            f"replacement task set {version}: {count} task(s) RUNNING, registered; waiting for steady state",
            deployment=dep_id,
        )
        self._wait_steady(run, count, check)
        self._emit("install", f"replacement task set {version}: steady, targets healthy", deployment=dep_id)
        service.lifecycle_event(dep_id, "Install", "Succeeded")
        self._hook_event(service, run, "AfterInstall", hooks, check)
        run.routed = True
        if run.test_listener:
            service.lifecycle_event(dep_id, "AllowTestTraffic", "InProgress")
            self._route(run.test_listener, run.original_tg, run.replacement_tg, 100)
            self._emit(
                "traffic", "test listener -> replacement", deployment=dep_id, listener="test", percent=100
            )
        service.lifecycle_event(dep_id, "AllowTestTraffic", "Succeeded")
        self._hook_event(service, run, "AfterAllowTestTraffic", hooks, check)
        self._hook_event(service, run, "BeforeAllowTraffic", hooks, check)
        # AllowTraffic spans the whole shift: every canary or linear step and its wait.
        service.lifecycle_event(dep_id, "AllowTraffic", "InProgress")
        for percent, wait in shift_steps(dep["deploymentConfigName"]):
            self._route(run.prod_listener, run.original_tg, run.replacement_tg, percent)
            run.percent = percent
            self._emit(
                "traffic",
                f"production listener: {percent}% -> replacement",
                deployment=dep_id,
                listener="production",
                percent=percent,
            )
            self._wait(self._scale.drill(wait), check)
        service.lifecycle_event(dep_id, "AllowTraffic", "Succeeded")
        run.replacement_primary = True  # CodeDeploy makes the replacement ECS's primary task set
        self._hook_event(service, run, "AfterAllowTraffic", hooks, check)
        service.start_termination_wait(dep_id)
        bake = float(
            (
                (group.get("blueGreenDeploymentConfiguration") or {}).get(
                    "terminateBlueInstancesOnDeploymentSuccess"
                )
                or {}
            ).get("terminationWaitTimeInMinutes", 0)
        )
        self._emit("bake", f"bake: original kept {bake:g} min", deployment=dep_id)
        self._wait(self._scale.drill(bake * 60), check)
        with run.lock:
            check()
            run.finished = True  # terminating the original: nothing left to roll back to
        original = self._tasks_in(run.original_tg)
        self._retire(original)
        run.draining = "original"
        self._publish_task_sets(service, run)
        self._emit("deployment", f"{dep_id}: original task set draining, then terminated", deployment=dep_id)
        self._drain_and_stop(original, run.original_tg)
        run.draining = None
        run.deleted.add("original")
        self._publish_task_sets(service, run)
        service.set_status(dep_id, "Succeeded")
        self._emit(
            "deployment", f"{dep_id} Succeeded: original terminated, {version} serves", deployment=dep_id
        )
        self._trigger(group, dep_id, "DeploymentSuccess", "SUCCESS")

    def _roll_back(
        self, service: CodeDeployService, run: Run, dep: dict[str, Any], group: dict[str, Any], abort: Abort
    ) -> None:
        dep_id = run.deployment_id
        events = (dep.get("autoRollbackConfiguration") or {}).get("events") or []
        enabled = bool((dep.get("autoRollbackConfiguration") or {}).get("enabled"))
        wanted = {
            "ALARM_ACTIVE": enabled and "DEPLOYMENT_STOP_ON_ALARM" in events,
            "MANUAL_STOP": run.stop_auto_rollback,
        }.get(abort.code, enabled and "DEPLOYMENT_FAILURE" in events)
        with run.lock:
            if run.finished:
                return
            run.finished = True
            # The rollback deployment exists (in flight) before this one ends, as in AWS: no new deployment
            # can slip in while the original is being put back.
            rollback_id = service.roll_back(dep_id, abort.message) if wanted else None
            service.set_status(dep_id, abort.status, error_code=abort.code, error_message=abort.message)
        self._emit(
            "decision",
            f"{dep_id} {abort.status} ({abort.code}): {abort.message}",
            deployment=dep_id,
            code=abort.code,
        )
        kind = "DeploymentStop" if abort.status == "Stopped" else "DeploymentFailure"
        self._trigger(group, dep_id, kind, abort.status.upper())
        if rollback_id:
            service.set_status(rollback_id, "InProgress")
        if run.routed and run.prod_listener and run.original_tg and run.replacement_tg:
            self._route(run.prod_listener, run.original_tg, run.replacement_tg, 0)
            if run.test_listener:
                self._route(run.test_listener, run.original_tg, run.replacement_tg, 0)
            self._emit(
                "restore", "both listeners -> original", deployment=dep_id, listener="production", percent=0
            )
        run.percent, run.replacement_primary, run.draining = 0, False, "replacement"
        self._publish_task_sets(service, run)
        # The replacement task set is deleted: its targets drained for the deregistration delay, then stopped
        # (the tasks ECS started in its place included).
        replacement = {t.task_id: t for t in [*run.replacement_tasks, *self._runner.tasks_of(dep_id)]}
        self._runner.retire(dep_id)
        self._drain_and_stop(list(replacement.values()), run.replacement_tg)
        run.draining = None
        run.deleted.add("replacement")
        self._publish_task_sets(service, run)
        if rollback_id:
            service.set_status(rollback_id, "Succeeded")
            self._emit(
                "rollback",
                f"rollback deployment {rollback_id} Succeeded: replacement task set deleted",
                deployment=rollback_id,
            )
        if wanted:
            self._trigger(group, dep_id, "DeploymentRollback", "ROLLBACK")

    # ------------------------------------------------------------------ pieces
    def _checker(self, run: Run, alarms: list[str]) -> Callable[[], None]:
        def check() -> None:
            if run.stop.is_set():
                raise Abort("Stopped", "MANUAL_STOP", "The deployment was stopped by a user.")
            if alarms:
                active = [
                    a["AlarmName"]
                    for a in self._cw.describe_alarms(AlarmNames=alarms)["MetricAlarms"]
                    if a["StateValue"] == "ALARM"
                ]
                if active:
                    raise Abort(
                        "Stopped",
                        "ALARM_ACTIVE",
                        "One or more alarms have been activated according to the Amazon CloudWatch metrics "
                        "you selected, and the affected deployments have been stopped. "
                        f"Activated alarms: {', '.join(active)}",
                    )

        return check

    def _start_tasks(
        self, run: Run, task_definition: str, count: int, check: Callable[[], None]
    ) -> list[Task]:
        """The replacement task set, started again while its tasks fail (ECS's service scheduler)."""
        while True:
            try:
                return self._runner.run(task_definition, count, run.deployment_id, cancel=run.stop)
            except TaskFailedToStart as exc:
                check()  # a stop while the tasks were starting: StopDeployment takes effect now
                self._emit(
                    "install",
                    f"replacement task stopped ({str(exc)[:120]}); ECS starts another",
                    deployment=run.deployment_id,
                )
            self._wait(self._scale.drill(TASK_RETRY_AWS_SECONDS), check)

    def _wait(self, seconds: float, check: Callable[[], None]) -> None:
        """Wait `seconds` drill seconds on the AWS clock, polling the alarms and the stop flag."""
        end = self._scale.now() + seconds
        while True:
            check()
            now = self._scale.now()
            if now >= end:
                return
            self._scale.sleep_until(min(end, now + self._tick))

    def _wait_steady(self, run: Run, count: int, check: Callable[[], None]) -> None:
        """Install ends when the replacement task set is steady: `count` tasks RUNNING, each container HEALTHY
        and each target healthy in the ALB (ECS TaskSet.stabilityStatus STEADY_STATE)."""
        end = self._scale.now() + self._scale.drill(INSTALL_TIMEOUT_SECONDS)
        while True:
            check()
            tasks = self._runner.tasks_of(run.deployment_id)
            states = self._target_states(run.replacement_tg) if run.replacement_tg else {}
            # A target group no listener forwards to is not health-checked by the ALB (its targets are
            # `unused`, Target.NotInUse): ECS then has only the container health check to go by.
            if (
                len(tasks) >= count
                and self._runner.container_healthy(tasks)
                and all(states.get(t.address) in ("healthy", "unused") for t in tasks)
            ):
                return
            if self._scale.now() > end:
                raise Abort(
                    "Failed",
                    "TIMEOUT",
                    "The deployment timed out while waiting for the replacement task set to become healthy. "
                    "This time out period is 60 minutes.",
                )
            self._scale.sleep(self._tick)

    def _retire(self, tasks: list[Task]) -> None:
        for task_set in {t.task_set for t in tasks}:
            self._runner.retire(task_set)

    def _drain_and_stop(self, tasks: list[Task], target_group: str | None) -> None:
        """Deregister the tasks, let their target group's deregistration delay pass, then stop them."""
        registered = [t for t in tasks if t.target_group_arn]
        self._runner.deregister(tasks)
        if registered and target_group:
            self._scale.sleep(self._scale.drill(deregistration_delay_seconds(target_group)))
        # Stopping a process is the machine's time, not AWS's: in the background.
        for task in tasks:
            threading.Thread(target=self._runner.stop_task, args=(task,), daemon=True).start()

    def _hook_event(
        self,
        service: CodeDeployService,
        run: Run,
        name: str,
        hooks: list[tuple[str, str]],
        check: Callable[[], None],
    ) -> None:
        """A hook lifecycle event: InProgress while the appspec's hook for it runs, then Succeeded; without a
        hook, Succeeded at once (startTime == endTime: AWS's status for an event without a hook is not
        documented, see local/README.md)."""
        functions = [fn for event, fn in hooks if event == name]
        if functions:
            service.lifecycle_event(run.deployment_id, name, "InProgress")
        for function in functions:
            self._hook(service, run, name, function, check)
        service.lifecycle_event(run.deployment_id, name, "Succeeded")

    def _publish_task_sets(self, service: CodeDeployService, run: Run) -> None:
        """The ECS target's taskSetsInfo (botocore ECSTaskSet) from what the engine knows: the original task
        set (Blue) and, once Install has begun, the replacement (Green); PRIMARY is the one serving production
        (the replacement once AllowTraffic is done), ACTIVE the other, DRAINING one being deleted, and a
        deleted one is no longer listed. trafficWeight: the production listener's share, in percent."""
        roles = [
            role
            for role, known in (("original", run.original_set is not None), ("replacement", run.count > 0))
            if known and role not in run.deleted
        ]
        service.set_task_sets(run.deployment_id, [self._task_set(run, role) for role in roles])

    def _task_set(self, run: Run, role: str) -> dict[str, Any]:
        replacement = role == "replacement"
        name = run.deployment_id if replacement else str(run.original_set)
        desired = run.count if replacement else run.original_count
        running = len(self._runner.tasks_of(name))
        if run.draining == role:
            status = "DRAINING"
        else:
            status = "PRIMARY" if run.replacement_primary == replacement else "ACTIVE"
        target_group = run.replacement_tg if replacement else run.original_tg
        return {
            "identifer": task_set_identifier(name),  # sic: botocore ECSTaskSet's member name
            "desiredCount": desired,
            "pendingCount": 0 if status == "DRAINING" else max(0, desired - running),
            "runningCount": running,
            "status": status,
            "trafficWeight": float(run.percent if replacement else 100 - run.percent),
            "targetGroup": {"name": run.tg_names.get(target_group or "", "")},
            "taskSetLabel": "Green" if replacement else "Blue",
        }

    def _hook(
        self, service: CodeDeployService, run: Run, name: str, function: str, check: Callable[[], None]
    ) -> None:
        execution_id = service.register_hook(run.deployment_id, name)
        event = threading.Event()
        result: list[str] = []
        run.hooks[execution_id] = (event, result)
        self._emit("hook", f"{name}: invoking {function}", deployment=run.deployment_id)
        self._invoke(
            function, {"DeploymentId": run.deployment_id, "LifecycleEventHookExecutionId": execution_id}
        )
        end = self._scale.now() + self._scale.drill(HOOK_TIMEOUT_SECONDS)
        while not event.wait(self._tick):
            check()
            if self._scale.now() > end:
                raise Abort("Failed", "TIMEOUT", f"The {name} hook did not answer within its timeout.")
        self._emit("hook", f"{name}: {result[0]}", deployment=run.deployment_id, status=result[0])
        if result[0] != "Succeeded":
            raise Abort(
                "Failed", "HOOK_EXECUTION_FAILURE", f"The {name} lifecycle hook ({function}) reported Failed."
            )

    def _route(self, listener: str, original: str, replacement: str, percent: int) -> None:
        with self._scale.hold("CodeDeploy reroute", record=False):
            self._modify(listener, original, replacement, percent)

    def _modify(self, listener: str, original: str, replacement: str, percent: int) -> None:
        self._elbv2.modify_listener(
            ListenerArn=listener,
            DefaultActions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": original, "Weight": 100 - percent},
                            {"TargetGroupArn": replacement, "Weight": percent},
                        ]
                    },
                }
            ],
        )

    def _alarm_names(self, dep: dict[str, Any], group: dict[str, Any]) -> list[str]:
        config = dep.get("overrideAlarmConfiguration") or group.get("alarmConfiguration") or {}
        if not config.get("enabled"):
            return []
        return [a["name"] for a in config.get("alarms") or []]

    def _desired_count(self, group: dict[str, Any]) -> int:
        services = group.get("ecsServices") or []
        if not services:
            return 0
        found = self._ecs.describe_services(
            cluster=services[0]["clusterName"], services=[services[0]["serviceName"]]
        )["services"]
        return int(found[0].get("desiredCount", 0)) if found else 0

    def _tasks_in(self, target_group: str | None) -> list[Task]:
        return [t for t in self._runner.tasks if t.target_group_arn == target_group]

    def _version(self, task_definition: str) -> str:
        try:
            definition = self._ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
        except self._ecs.exceptions.ClientException:
            return task_definition
        for item in (definition.get("containerDefinitions") or [{}])[0].get("environment", []):
            if item["name"] == "APP_VERSION":
                return str(item["value"])
        return task_definition.rsplit("/", 1)[-1]

    def _trigger(self, group: dict[str, Any], dep_id: str, event: str, status: str) -> None:
        """The deployment group's SNS triggers for `event`, and CodeDeploy's EventBridge event for it (AWS
        sends both: triggers to the group's topics, state changes to the default bus whatever the group)."""
        state = EVENTBRIDGE_STATES.get(event)
        if state and self._put_event is not None:
            application, name = group.get("applicationName"), group.get("deploymentGroupName")
            detail = {
                "instanceGroupId": group.get("deploymentGroupId"),
                "region": REGION,
                "application": application,
                "deploymentId": dep_id,
                "state": state,
                "deploymentGroup": name,
            }
            resources = [
                f"arn:aws:codedeploy:{REGION}:{ACCOUNT_ID}:application:{application}",
                f"arn:aws:codedeploy:{REGION}:{ACCOUNT_ID}:deploymentgroup:{application}/{name}",
            ]
            self._put_event("aws.codedeploy", STATE_CHANGE, detail, resources)
        for trigger in group.get("triggerConfigurations") or []:
            if event not in (trigger.get("triggerEvents") or []):
                continue
            message = {
                "region": REGION,
                "accountId": ACCOUNT_ID,
                "eventTriggerName": trigger.get("triggerName"),
                "applicationName": group.get("applicationName"),
                "deploymentId": dep_id,
                "deploymentGroupName": group.get("deploymentGroupName"),
                "createTime": datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y"),
                "status": status,
            }
            subject = f"{status}: AWS CodeDeploy {dep_id} in {REGION} to {group.get('applicationName')}"
            self._publish(trigger["triggerTargetArn"], subject[:100], json.dumps(message))
