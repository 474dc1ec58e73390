"""CodeDeploy's ECS blue/green engine (local/aws/codedeploy/ecs_engine.py) through the whole stand-in: the
drill's World (moto, the stacks, the CodeDeploy stand-in, the ALB, sample-app tasks, the Lambdas) at x300.

One World for the module: v2 (a good release) is deployed and succeeds, then v3 (/health says "degraded",
which the AfterAllowTestTraffic hook fails) is rolled back, then v4 (/health fails: its task set never becomes
steady) is stopped during Install; all straight to CodeDeploy, with v1's image (the pipeline's path is
tests/test_drill.py's). Each deployment's ECS target (ListDeploymentTargets, BatchGetDeploymentTargets) shows
the lifecycle events the engine recorded. What happened is read from World.events, from
snapshots taken synchronously as the engine emits (World's `on_event` runs in the engine's thread), and from
the times the task runner was asked to deregister and stop each task. Then a Lambda function's API call on the
clock, through a CodeDeploy stand-in made slow on purpose.

Timings are on the AWS clock (TimeScale.now) and checked as lower bounds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import yaml
from botocore.config import Config

from local.aws.codedeploy import CodeDeployServer, CodeDeployService
from local.aws.codedeploy.service import ECS_LIFECYCLE_EVENTS
from local.aws.ecs import FARGATE_START_SECONDS, Task
from local.aws.elbv2 import deregistration_delay_seconds, forward_weights
from local.aws.moto_server import API_LATENCY_SECONDS, CREDENTIALS, REGION
from local.drill.world import Event, World
from local.timescale import TimeScale
from scripts.stacks import LAMBDA

FACTOR = 300  # x600 is too fast for the hook: "no time left to validate the replacement"
WAIT = 90.0  # wall seconds: a generous deadline for a deployment's end (each takes a few seconds)
TEMPLATE_DEREGISTRATION_DELAY = 30.0  # cloudformation/ecs-cluster.yaml, both target groups
CANARY = ("CodeDeployDefault.ECSCanary10Percent5Minutes", 10, 300.0)  # the template's default configuration


@dataclass
class Spy:
    """What the engine did, as it did it: snapshots taken in the emitting thread, the runner's calls."""

    world: World | None = None
    snapshots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # (AWS-clock time, "deregister" or "stop", task id, task set)
    calls: list[tuple[float, str, str, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_event(self, event: Event) -> None:
        world = self.world
        deployment = event.data.get("deployment")
        if world is None or not deployment:
            return
        try:
            self._snapshot(world, event, str(deployment))
        except Exception as exc:
            self.errors.append(exc)

    def _snapshot(self, world: World, event: Event, deployment: str) -> None:
        key: str | None = None
        data: dict[str, Any] = {}
        if event.kind == "traffic" and event.data.get("listener") == "test":
            key = "test traffic"
            tasks = world.runner.tasks_of(deployment)
            group = tasks[0].target_group_arn if tasks else None
            states = world.alb.target_states(group) if group else {}
            data = {
                "health": sorted(t.health for t in tasks),
                "targets": sorted(states.get(t.address, "absent") for t in tasks),
                "production": dict(forward_weights(world.prod_listener)),
                "group": group,
            }
        elif event.kind == "traffic" and event.data.get("listener") == "production":
            key = "first production shift"
            data = {"test": dict(forward_weights(world.test_listener))}
        elif event.kind == "deployment" and "draining" in event.text:
            key = "draining"
            data = {"status": world.service.get(deployment)["status"]}
        elif event.kind == "restore":
            key = "restore"
            release = world.service.get(deployment)
            rollback = world.service.get(release["rollbackInfo"]["rollbackDeploymentId"])
            data = {"release": release["status"], "rollback": rollback["status"]}
        if key is not None:
            with self.lock:
                self.snapshots.setdefault((key, deployment), {"t": event.t, **data})

    def watch_runner(self, world: World) -> None:
        """Record every deregister/stop_task call of the task runner (the engine's drains included)."""
        runner, scale = world.runner, world.scale
        deregister, stop_task = runner.deregister, runner.stop_task

        def recording_deregister(tasks: list[Task]) -> None:
            for task in tasks:
                if task.target_group_arn:
                    self.calls.append((scale.now(), "deregister", task.task_id, task.task_set))
            deregister(tasks)

        def recording_stop(task: Task) -> None:
            self.calls.append((scale.now(), "stop", task.task_id, task.task_set))
            stop_task(task)

        runner.deregister = recording_deregister  # type: ignore[method-assign]
        runner.stop_task = recording_stop  # type: ignore[method-assign]

    def first(self, call: str, task: str) -> float:
        return min(t for t, c, i, _s in list(self.calls) if (c, i) == (call, task))

    def task_set_of(self, task: str) -> str:
        return next(s for _t, _c, i, s in list(self.calls) if i == task)

    def deregistered(self, task_set: str) -> list[str]:
        return sorted({i for _t, c, i, s in list(self.calls) if c == "deregister" and s == task_set})


@dataclass
class Release:
    deployment: str
    info: dict[str, Any]
    events: list[Event]
    original: list[str]  # task ids serving before it
    replacement: list[str]  # its own task ids (the deployment's task set)


@dataclass
class Stuck:
    """A release whose task set never becomes steady: its ECS target during Install, and once stopped."""

    deployment: str
    during: dict[str, Any]
    info: dict[str, Any]
    after: dict[str, Any]


@dataclass
class Stage:
    world: World
    spy: Spy
    good: Release | None = None
    bad: Release | None = None
    rollback: dict[str, Any] = field(default_factory=dict)
    stuck: Stuck | None = None


def serving_task_ids(world: World) -> list[str]:
    groups = {arn for arn, weight in forward_weights(world.prod_listener) if weight}
    return sorted(t.task_id for t in world.runner.tasks if t.target_group_arn in groups)


def ended_by(world: World, deployment: str) -> list[Event]:
    """The event that ends a deployment (or a rollback deployment) in the timeline."""
    return [
        e
        for e in list(world.events)
        if e.data.get("deployment") == deployment
        and (e.kind in ("decision", "rollback") or (e.kind == "deployment" and "Succeeded" in e.text))
    ]


def release(
    world: World, version: str, statuses: set[str], fault_env: dict[str, str] | None = None
) -> Release:
    """Deploy `version` straight to CodeDeploy (the pipeline's path is test_drill's) and wait for its end."""
    original = serving_task_ids(world)
    mark = len(world.events)
    deployment = world.deploy(version, fault_env)
    world.wait_for(lambda: world.deployment(deployment)["status"] in statuses, WAIT, f"{version} to end")
    # The engine emits its verdict just after setting the status.
    world.wait_for(lambda: bool(ended_by(world, deployment)), WAIT, f"{version}'s last event")
    info = world.deployment(deployment)
    events = [e for e in world.events[mark:] if e.data.get("deployment") == deployment]
    replacement = sorted(t.task_id for t in world.runner.tasks if t.task_set == deployment)
    return Release(deployment, info, events, original, replacement)


def ecs_target(world: World, deployment: str) -> dict[str, Any] | None:
    """The deployment's one ECS target as BatchGetDeploymentTargets answers it; None before it has started."""
    client = world.codedeploy
    try:
        [target_id] = client.list_deployment_targets(deploymentId=deployment)["targetIds"]
    except client.exceptions.DeploymentNotStartedException:
        return None
    [target] = client.batch_get_deployment_targets(deploymentId=deployment, targetIds=[target_id])[
        "deploymentTargets"
    ]
    assert target["deploymentTargetType"] == "ECSTarget"
    ecs: dict[str, Any] = target["ecsTarget"]
    return ecs


def stuck_release(world: World) -> Stuck:
    """v4, whose /health fails: read its target once ECS has replaced an UNHEALTHY task of it (Install still
    waiting for a steady task set), then StopDeployment (no rollback) and read it again."""
    mark = len(world.events)
    deployment = world.deploy("v4", {"FAULT_HEALTH_FAIL": "true"})
    world.wait_for(
        lambda: any(
            e.kind == "ecs" and e.data.get("task_set") == deployment and "UNHEALTHY" in e.text
            for e in list(world.events)[mark:]
        ),
        WAIT,
        "a task of v4 to be UNHEALTHY",
    )
    during = ecs_target(world, deployment) or {}
    world.codedeploy.stop_deployment(deploymentId=deployment, autoRollbackEnabled=False)
    world.wait_for(lambda: bool(ended_by(world, deployment)), WAIT, "v4 to be stopped")
    return Stuck(deployment, during, world.deployment(deployment), ecs_target(world, deployment) or {})


@pytest.fixture(scope="module")
def stage() -> Iterator[Stage]:
    spy = Spy()
    # No test traffic: at x300 the hook's round budget (probe timeouts at their 0.5 s + 1 s floors, twice with
    # test traffic) leaves too little of DEPLOYMENT_TIMEOUT's 3 wall seconds; test_drill's x120 sends it.
    no_traffic = {LAMBDA.name: {"TestTraffic": ""}}
    with World(TimeScale(FACTOR), on_event=spy.on_event, stack_overrides=no_traffic) as world:
        spy.world = world
        spy.watch_runner(world)
        stage = Stage(world, spy)
        # Each test checks how its release ended: a fixture that asserted would hide what the others pin.
        ended = {"Succeeded", "Failed", "Stopped"}
        stage.good = release(world, "v2", ended)
        bad = stage.bad = release(world, "v3", ended, {"FAULT_HEALTH_DEGRADED": "true"})
        rollback_id = (bad.info.get("rollbackInfo") or {}).get("rollbackDeploymentId")
        if rollback_id:
            world.wait_for(
                lambda: world.deployment(rollback_id)["status"] in ended,
                WAIT,
                "the rollback deployment to end",
            )
            world.wait_for(lambda: bool(ended_by(world, rollback_id)), WAIT, "the rollback's last event")
            stage.rollback = world.deployment(rollback_id)
        bad.replacement = spy.deregistered(bad.deployment)
        stage.stuck = stuck_release(world)
        yield stage
    assert spy.errors == []


def index(events: list[Event], kind: str, text: str, **data: Any) -> int:
    """The position of the first event of `kind` whose text contains `text` and whose data has `data`."""
    for n, event in enumerate(events):
        if event.kind == kind and text in event.text and all(event.data.get(k) == v for k, v in data.items()):
            return n
    raise AssertionError(f"no {kind} event with {text!r} {data} in {[e.text for e in events]}")


# ---------------------------------------------------------------------------------------------- lifecycle
def test_the_lifecycle_events_happen_in_aws_order(stage: Stage) -> None:
    assert stage.good is not None
    assert stage.good.info["status"] == "Succeeded", stage.good.info
    events = stage.good.events
    order = [
        index(events, "deployment", "started"),
        index(events, "install", "RUNNING, registered; waiting for steady state"),
        index(events, "install", "steady, targets healthy"),
        index(events, "traffic", "test listener -> replacement", listener="test"),
        index(events, "hook", "AfterAllowTestTraffic: invoking"),
        index(events, "hook", "AfterAllowTestTraffic: Succeeded", status="Succeeded"),
        index(events, "traffic", "production listener", listener="production", percent=CANARY[1]),
        index(events, "traffic", "production listener", listener="production", percent=100),
        index(events, "bake", "bake"),
        index(events, "deployment", "draining"),
        index(events, "deployment", "Succeeded"),
    ]
    assert order == sorted(order), [events[n].text for n in order]
    # Nothing moved the production listener before the hook answered.
    first_shift = min(
        n for n, e in enumerate(events) if e.kind == "traffic" and e.data["listener"] == "production"
    )
    assert first_shift == order[6]


def test_install_is_steady_before_the_test_listener_moves(stage: Stage) -> None:
    """ECS's TaskSet STEADY_STATE: every task RUNNING and its container HEALTHY, its target healthy or
    unused in the ALB; only then AllowTestTraffic, with production still on the original."""
    assert stage.good is not None
    snap = stage.spy.snapshots[("test traffic", stage.good.deployment)]
    assert snap["health"] == ["HEALTHY", "HEALTHY"]  # the cluster stack's DesiredCount, each HEALTHY
    assert set(snap["targets"]) <= {"healthy", "unused", "initial"}  # `initial`: the test listener just moved
    assert snap["production"].get(snap["group"], 0) == 0


def test_after_allow_test_traffic_answers_before_the_first_production_shift(stage: Stage) -> None:
    assert stage.good is not None
    events = stage.good.events
    answered = next(e for e in events if e.kind == "hook" and e.data.get("status") == "Succeeded")
    snap = stage.spy.snapshots[("first production shift", stage.good.deployment)]
    assert answered.t <= snap["t"]
    assert sorted(snap["test"].values()) == [0, 100]  # the test listener was on the replacement meanwhile
    # The canary: 10 % for five AWS minutes, then the rest.
    shifts = [e for e in events if e.kind == "traffic" and e.data["listener"] == "production"]
    assert [e.data["percent"] for e in shifts] == [CANARY[1], 100]
    assert FACTOR * (shifts[1].t - shifts[0].t) >= CANARY[2]


def test_the_original_task_set_is_drained_for_the_deregistration_delay_before_success(stage: Stage) -> None:
    assert stage.good is not None
    world, spy, good = stage.world, stage.spy, stage.good
    assert deregistration_delay_seconds(world.target_groups["Blue"]) == TEMPLATE_DEREGISTRATION_DELAY
    assert len(good.original) == 2
    succeeded = good.events[index(good.events, "deployment", "Succeeded")].t
    assert spy.snapshots[("draining", good.deployment)]["status"] == "InProgress"
    for task in good.original:
        deregistered, stopped = spy.first("deregister", task), spy.first("stop", task)
        # Deregistered, still running for the delay (the ALB drains it), then stopped; Succeeded only after.
        assert FACTOR * (stopped - deregistered) >= TEMPLATE_DEREGISTRATION_DELAY
        assert FACTOR * (succeeded - deregistered) >= TEMPLATE_DEREGISTRATION_DELAY
    assert good.info["status"] == "Succeeded"
    assert spy.task_set_of(good.original[0]) == "bootstrap"  # v1's tasks


def test_a_rollback_deployment_is_in_progress_until_the_replacement_is_drained(stage: Stage) -> None:
    assert stage.bad is not None
    world, spy, bad = stage.world, stage.spy, stage.bad
    assert bad.info["status"] == "Failed", bad.info
    assert bad.info["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
    rollback = stage.rollback
    assert rollback["creator"] == "codeDeployRollback"
    assert rollback["status"] == "Succeeded"
    # The release had failed and both listeners were back on the original while the rollback was in flight.
    restore = spy.snapshots[("restore", bad.deployment)]
    assert restore["release"] == "Failed"
    assert restore["rollback"] == "InProgress"
    # The replacement (v3) task set: deregistered, drained for its group's delay, then stopped; the rollback
    # deployment Succeeded only after that delay on the AWS clock.
    assert bad.replacement
    assert deregistration_delay_seconds(world.target_groups["Blue"]) == TEMPLATE_DEREGISTRATION_DELAY
    [done] = [e.t for e in ended_by(world, rollback["deploymentId"])]
    for task in bad.replacement:
        deregistered = spy.first("deregister", task)
        assert deregistered >= restore["t"]
        assert FACTOR * (spy.first("stop", task) - deregistered) >= TEMPLATE_DEREGISTRATION_DELAY
        assert FACTOR * (done - deregistered) >= TEMPLATE_DEREGISTRATION_DELAY
    assert world.serving_versions() == {"v2": 100}


# ---------------------------------------------------------------------------------------------- targets
def statuses(target: dict[str, Any]) -> list[str]:
    return [e["status"] for e in target["lifecycleEvents"]]


def seconds(start: Any, end: Any) -> float:
    """AWS seconds between two of the target's times (datetimes on the stand-in's drill clock)."""
    return FACTOR * float((end - start).total_seconds())


def test_a_healthy_releases_target_has_every_lifecycle_event_succeeded_in_order(stage: Stage) -> None:
    assert stage.good is not None
    world, good = stage.world, stage.good
    target = ecs_target(world, good.deployment)
    assert target is not None
    group = world.codedeploy.get_deployment_group(
        applicationName=world.application, deploymentGroupName=world.group
    )["deploymentGroupInfo"]
    [service] = group["ecsServices"]
    assert target["targetId"] == f"{service['clusterName']}:{service['serviceName']}"
    assert target["status"] == "Succeeded"
    events = target["lifecycleEvents"]
    assert [e["lifecycleEventName"] for e in events] == list(ECS_LIFECYCLE_EVENTS)
    assert statuses(target) == ["Succeeded"] * 8
    for event in events:
        assert event["startTime"] <= event["endTime"], event
    for before, after in itertools.pairwise(events):
        assert before["endTime"] <= after["startTime"], (before, after)
    named = {e["lifecycleEventName"]: e for e in events}
    assert named["Install"]["endTime"] <= named["AllowTestTraffic"]["startTime"]
    # Install spans the replacement's start (Fargate's) and its wait for steady state.
    assert seconds(named["Install"]["startTime"], named["Install"]["endTime"]) >= FARGATE_START_SECONDS
    # AllowTraffic spans the whole shift: the canary's five minutes included.
    assert seconds(named["AllowTraffic"]["startTime"], named["AllowTraffic"]["endTime"]) >= CANARY[2]
    # Events whose hook the appspec does not name pass at once.
    appspec = yaml.safe_load(world.service.get(good.deployment)["revision"]["appSpecContent"]["content"])
    hooked = {name for entry in appspec.get("Hooks") or [] for name in entry}
    assert "AfterAllowTestTraffic" in hooked
    for name in {"BeforeInstall", "AfterInstall", "BeforeAllowTraffic", "AfterAllowTraffic"} - hooked:
        assert named[name]["startTime"] == named[name]["endTime"], name
    # The original task set deleted: the replacement alone, serving everything.
    [task_set] = target["taskSetsInfo"]
    assert task_set["taskSetLabel"] == "Green"
    assert task_set["status"] == "PRIMARY"
    assert task_set["trafficWeight"] == 100.0
    assert task_set["desiredCount"] == task_set["runningCount"] == 2
    assert task_set["pendingCount"] == 0
    assert task_set["identifer"].startswith("ecs-svc/")
    assert len(task_set["identifer"]) == len("ecs-svc/") + 19
    names = [tg["name"] for tg in group["loadBalancerInfo"]["targetGroupPairInfoList"][0]["targetGroups"]]
    assert task_set["targetGroup"]["name"] in names


def test_a_failed_hook_fails_its_lifecycle_event_and_skips_the_rest(stage: Stage) -> None:
    assert stage.good is not None
    assert stage.bad is not None
    world = stage.world
    target = ecs_target(world, stage.bad.deployment)
    assert target is not None
    assert target["status"] == "Failed"
    # AfterAllowTestTraffic's hook reported Failed.
    assert statuses(target) == [*["Succeeded"] * 4, "Failed", *["Skipped"] * 3]
    failed = target["lifecycleEvents"][4]
    assert failed["startTime"] <= failed["endTime"]
    # Rolled back: the replacement deleted, the original (v2's task set) serving everything again.
    [original] = target["taskSetsInfo"]
    assert original["taskSetLabel"] == "Blue"
    assert original["status"] == "PRIMARY"
    assert original["trafficWeight"] == 100.0
    good = ecs_target(world, stage.good.deployment)
    assert good is not None
    assert original["identifer"] == good["taskSetsInfo"][0]["identifer"]
    # The rollback deployment records no lifecycle event of its own (local/README.md).
    rollback = ecs_target(world, stage.rollback["deploymentId"])
    assert rollback is not None
    assert rollback["status"] == "Succeeded"
    assert statuses(rollback) == ["Pending"] * 8


def test_a_release_that_never_becomes_healthy_stays_in_install_until_stopped(stage: Stage) -> None:
    assert stage.stuck is not None
    stuck = stage.stuck
    during, after = stuck.during, stuck.after
    assert during["status"] == "InProgress"
    assert statuses(during) == ["Succeeded", "InProgress", *["Pending"] * 6]
    install = during["lifecycleEvents"][1]
    assert "startTime" in install
    assert "endTime" not in install
    assert all("startTime" not in e for e in during["lifecycleEvents"][2:])
    blue, green = during["taskSetsInfo"]
    assert (blue["taskSetLabel"], blue["status"], blue["trafficWeight"]) == ("Blue", "PRIMARY", 100.0)
    assert (green["taskSetLabel"], green["status"], green["trafficWeight"]) == ("Green", "ACTIVE", 0.0)
    assert green["pendingCount"] + green["runningCount"] == green["desiredCount"] == 2
    # StopDeployment: the event in progress Failed, the ones never reached Skipped.
    assert stuck.info["status"] == "Stopped"
    assert stuck.info["errorInformation"]["code"] == "MANUAL_STOP"
    assert after["status"] == "Failed"
    assert statuses(after) == ["Succeeded", "Failed", *["Skipped"] * 6]
    # Install lasted from before the tasks started until the stop (times compared within one answer: each is
    # shifted by the time the clock has been held when it is served).
    stopped = after["lifecycleEvents"][1]
    assert seconds(stopped["startTime"], stopped["endTime"]) >= FARGATE_START_SECONDS
    assert "rollbackDeploymentId" not in (stuck.info.get("rollbackInfo") or {})
    assert stage.world.serving_versions() == {"v2": 100}


# ---------------------------------------------------------------------------------------------- API latency
LAMBDA_AGENT = "exec-env/AWS_Lambda_python3.12"  # what botocore adds inside Lambda (AWS_EXECUTION_ENV)


class SlowService(CodeDeployService):
    """A CodeDeploy stand-in that takes `seconds` of wall time to answer (a busy machine)."""

    seconds = 0.0

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        time.sleep(self.seconds)
        return super().call(operation, params)


def codedeploy_client(endpoint: str, user_agent_extra: str | None) -> Any:
    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=REGION,
    ).client(
        "codedeploy",
        endpoint_url=endpoint,
        config=Config(user_agent_extra=user_agent_extra, retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def slow_codedeploy() -> SlowService:
    """A slow stand-in with application `app` and its deployment group `group`."""
    service = SlowService()
    service.call("CreateApplication", {"applicationName": "app", "computePlatform": "ECS"})
    service.call(
        "CreateDeploymentGroup",
        {"applicationName": "app", "deploymentGroupName": "group", "serviceRoleArn": "arn:aws:iam::1:role/x"},
    )
    return service


def aws_cost(scale: TimeScale, call: Any) -> float:
    """AWS seconds that `call()` took on `scale`'s clock."""
    before = scale.now()
    call()
    return scale.aws(scale.now() - before)


def test_a_lambda_functions_api_call_costs_the_api_latency_however_long_it_is_served(
    slow_codedeploy: SlowService,
) -> None:
    service = slow_codedeploy
    scale = TimeScale(factor=2)  # API_LATENCY_SECONDS: 0.1 wall second
    with CodeDeployServer(service, scale=scale) as server:
        from_lambda = codedeploy_client(server.endpoint_url, LAMBDA_AGENT)
        from_elsewhere = codedeploy_client(server.endpoint_url, None)
        for client in (from_lambda, from_elsewhere):  # connections and botocore's models warmed up
            client.get_deployment_group(applicationName="app", deploymentGroupName="group")
        service.seconds = 0.4  # wall seconds to answer: 0.8 AWS seconds

        def call(client: Any) -> Any:
            return lambda: client.get_deployment_group(applicationName="app", deploymentGroupName="group")

        held = scale.held_by_reason.get("API call from a Lambda function", 0.0)
        lambda_cost = aws_cost(scale, call(from_lambda))
        held = scale.held_by_reason["API call from a Lambda function"] - held
        other_cost = aws_cost(scale, call(from_elsewhere))
    # The function's call: the modelled latency, plus the client's own few milliseconds (up to 0.2 wall s).
    assert API_LATENCY_SECONDS <= lambda_cost < API_LATENCY_SECONDS + scale.aws(0.2)
    assert held >= service.seconds
    # Anyone else's call costs what it took.
    assert other_cost >= scale.aws(service.seconds)
    # Frequent and short: summed, not listed.
    assert not [h for h in scale.holds if h.reason.startswith("API call")]


def test_a_lambda_functions_api_call_answered_with_an_error_costs_the_api_latency_too(
    slow_codedeploy: SlowService,
) -> None:
    service = slow_codedeploy
    scale = TimeScale(factor=1)  # API_LATENCY_SECONDS: 0.2 wall second
    with CodeDeployServer(service, scale=scale) as server:
        client = codedeploy_client(server.endpoint_url, LAMBDA_AGENT)
        client.get_deployment_group(applicationName="app", deploymentGroupName="group")  # warmed up
        service.seconds = 0.3

        def missing() -> None:
            with pytest.raises(client.exceptions.DeploymentDoesNotExistException):
                client.get_deployment(deploymentId="d-NOTTHERE1")

        cost = aws_cost(scale, missing)
    assert cost >= API_LATENCY_SECONDS
