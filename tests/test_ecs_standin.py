"""The ECS stand-in (local/aws/ecs.py): TaskRunner against moto with registered task definitions, running
the real sample app (sample-app/) under gunicorn on loopback. Pins the Fargate start time on the AWS clock
(and the clock held while a process is late to listen), a task that exits at start, and the container health
check as ECS runs it: HEALTHY, UNHEALTHY only after `retries` failures past the start period, then stopped and
replaced in its task set, unless the set is retired; a replacement that fails to start (its image cannot be
pulled) is tried again after the retry pause. Running pulled images: tests/test_image_standin.py.

The AWS clock runs 60 to 100 000 times faster than the wall clock. Waits are for conditions with generous
deadlines; timings are checked on the AWS clock, as lower bounds (upper bounds only where the clock is held).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.aws.ecs import (
    FARGATE_START_SECONDS,
    SAMPLE_APP,
    START_RETRY_SECONDS,
    ContainerHealthCheck,
    Task,
    TaskFailedToStart,
    TaskRunner,
)
from local.aws.images import CannotPullContainerError
from local.aws.moto_server import Aws, moto_server
from local.timescale import TimeScale

WAIT = 30.0  # wall seconds: a generous deadline for any awaited condition
# A container health check with AWS's smallest interval; AWS seconds.
INTERVAL, TIMEOUT, RETRIES, START_PERIOD = 5, 2, 3, 60


def wait_for(condition: Callable[[], bool], what: str, deadline: float = WAIT) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@dataclass
class Moto:
    ecs: Any
    elbv2: Any
    vpc: str

    def task_definition(self, version: str, health_check: dict[str, Any] | None = None, **faults: str) -> str:
        container: dict[str, Any] = {
            "name": "sample-app",
            "image": f"sample-app:{version}",
            "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "environment": [
                {"name": "APP_VERSION", "value": version},
                *({"name": k, "value": v} for k, v in faults.items()),
            ],
        }
        if health_check is not None:
            container["healthCheck"] = health_check
        return str(
            self.ecs.register_task_definition(
                family="phoenix-test-app",
                networkMode="awsvpc",
                requiresCompatibilities=["FARGATE"],
                cpu="256",
                memory="512",
                containerDefinitions=[container],
            )["taskDefinition"]["taskDefinitionArn"]
        )

    def target_group(self, name: str) -> str:
        return str(
            self.elbv2.create_target_group(
                Name=name, Protocol="HTTP", Port=8080, VpcId=self.vpc, TargetType="ip"
            )["TargetGroups"][0]["TargetGroupArn"]
        )

    def targets(self, target_group: str) -> set[str]:
        described = self.elbv2.describe_target_health(TargetGroupArn=target_group)["TargetHealthDescriptions"]
        return {f"{d['Target']['Id']}:{d['Target']['Port']}" for d in described}


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    with moto_server() as aws:
        yield _moto(aws)


def _moto(aws: Aws) -> Moto:
    vpc = aws.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return Moto(aws.client("ecs"), aws.client("elbv2"), vpc)


def health_check(*, start_period: int = START_PERIOD) -> dict[str, Any]:
    """The task definition's healthCheck as the template writes it (the image's own python urlopen)."""
    return {
        "command": [
            "CMD",
            "python",
            "-c",
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=3)",
        ],
        "interval": INTERVAL,
        "timeout": TIMEOUT,
        "retries": RETRIES,
        "startPeriod": start_period,
    }


class SpyRunner(TaskRunner):
    """A TaskRunner that records every task it spawns, every run() (the scheduler's replacements included)
    and what it emits, each with the AWS-clock time."""

    def __init__(self, moto: Moto, scale: TimeScale, **kwargs: Any) -> None:
        self.spawned: list[Task] = []
        self.runs: list[str] = []
        self.emitted: list[tuple[float, str]] = []
        super().__init__(
            moto.ecs, moto.elbv2, scale, emit=lambda _kind, text, **_data: self._note(scale, text), **kwargs
        )

    def _note(self, scale: TimeScale, text: str) -> None:
        self.emitted.append((scale.now(), text))

    def _spawn(self, arn: str, env: dict[str, str], task_set: str) -> Task:
        task = super()._spawn(arn, env, task_set)
        self.spawned.append(task)
        return task

    def run(
        self, task_definition_arn: str, count: int, task_set: str = "", cancel: threading.Event | None = None
    ) -> list[Task]:
        self.runs.append(task_set)
        return super().run(task_definition_arn, count, task_set, cancel)

    def unhealthy_at(self, task: Task) -> float | None:
        return next(
            (t for t, text in self.emitted if text.startswith(f"{task.task_id} ") and "UNHEALTHY" in text),
            None,
        )


def get(task: Task, path: str = "/health") -> int:
    with urllib.request.urlopen(f"http://{task.address}{path}", timeout=5) as response:
        return int(response.status)


# ---------------------------------------------------------------------------------------------- start time
def test_a_task_is_running_only_after_the_fargate_start_time_on_the_aws_clock(moto: Moto) -> None:
    scale = TimeScale(factor=60)  # FARGATE_START_SECONDS: 1 wall second
    arn = moto.task_definition("v-start")
    with SpyRunner(moto, scale) as runner:
        assert runner.start_seconds == FARGATE_START_SECONDS == 60
        first_seen: list[float] = []
        gave_up = time.monotonic() + WAIT

        def watch() -> None:
            while not first_seen and time.monotonic() < gave_up:
                if runner.tasks:
                    first_seen.append(scale.now())
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        before = scale.now()
        watcher.start()
        (task,) = runner.run(arn, 1, "blue")
        after = scale.now()
        watcher.join()
        # Not RUNNING (not among the runner's tasks) before the start time, RUNNING (listening) after it.
        assert scale.aws(after - before) >= FARGATE_START_SECONDS
        assert scale.aws(task.started - before) >= FARGATE_START_SECONDS
        assert first_seen
        assert scale.aws(first_seen[0] - before) >= FARGATE_START_SECONDS
        assert get(task) == 200
        # When the process needed longer, that was held: the start costs the modelled time, give or take the
        # machine's few milliseconds (here up to 0.3 wall seconds) outside the hold.
        assert scale.aws(after - before) < FARGATE_START_SECONDS + scale.aws(0.3)
        # No container health check in this task definition: nothing to wait for in ECS's stability.
        assert task.health == "UNKNOWN"
        assert runner.container_healthy([task])
        assert runner.version_of(task.address) == "v-start"


def test_a_process_that_boots_later_than_the_modelled_start_holds_the_clock(moto: Moto) -> None:
    scale = TimeScale(factor=100_000)  # the 60 s start is 0.6 wall ms: gunicorn always boots later
    arn = moto.task_definition("v-late")
    with SpyRunner(moto, scale) as runner:
        wall = time.monotonic()
        before = scale.now()
        (task,) = runner.run(arn, 1, "blue")
        after = scale.now()
        wall = time.monotonic() - wall
        assert get(task) == 200
    [hold] = [h for h in scale.holds if h.reason == f"task boot {task.task_id}"]
    assert hold.wall_seconds > 0
    assert scale.held_by_reason[hold.reason] == pytest.approx(hold.wall_seconds, abs=0.002)
    # The start still took its 60 AWS seconds, and most of the wall time of the boot was not AWS time.
    assert scale.aws(after - before) >= FARGATE_START_SECONDS
    assert hold.wall_seconds >= 0.5 * wall
    assert after - before <= wall - hold.wall_seconds + 0.001


def test_a_task_whose_process_exits_at_start_fails_to_start_and_leaves_no_process(moto: Moto) -> None:
    scale = TimeScale(factor=100)
    arn = moto.task_definition("v-exits", FAULT_ERROR_RATE="2.0")  # the app refuses to start
    with SpyRunner(moto, scale, start_seconds=5) as runner:
        with pytest.raises(TaskFailedToStart, match=r"\(v-exits\) exited: .*FAULT_ERROR_RATE"):
            runner.run(arn, 2, "blue")
        assert runner.tasks == []
        assert len(runner.spawned) == 2
        for task in runner.spawned:
            assert task.stopping
            assert task.process.poll() is not None
            assert task.process.stderr is not None
            assert task.process.stderr.closed
            with pytest.raises(ProcessLookupError):
                os.killpg(task.process.pid, 0)  # its whole process group (gunicorn and any worker) is gone


# ---------------------------------------------------------------------------------------------- health check
def test_the_container_health_check_is_read_from_the_task_definition(moto: Moto) -> None:
    arn = moto.task_definition("v-read", health_check(start_period=START_PERIOD))
    definition = moto.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    assert ContainerHealthCheck.of(definition) == ContainerHealthCheck(
        path="/health", interval=INTERVAL, timeout=TIMEOUT, retries=RETRIES, start_period=START_PERIOD
    )
    # ECS's defaults where the definition is silent.
    assert ContainerHealthCheck.of(
        {"containerDefinitions": [{"healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost/"]}}]}
    ) == ContainerHealthCheck(path="/", interval=30, timeout=5, retries=3, start_period=0)
    assert ContainerHealthCheck.of({"containerDefinitions": [{}]}) is None


def test_a_healthy_task_turns_healthy_and_stays(moto: Moto) -> None:
    scale = TimeScale(factor=100)  # the 5 s interval: 50 wall ms
    arn = moto.task_definition("v-good", health_check(start_period=START_PERIOD))
    with SpyRunner(moto, scale, start_seconds=5) as runner:
        (task,) = runner.run(arn, 1, "green")
        wait_for(lambda: task.health == "HEALTHY", "the container HEALTHY")
        assert runner.container_healthy([task])
        # Several intervals later: still HEALTHY, never replaced.
        scale.sleep(scale.drill(6 * INTERVAL))
        assert task.health == "HEALTHY"
        assert task.failures == 0
        assert runner.tasks == [task]
        assert runner.runs == ["green"]
        assert task.process.poll() is None


def test_an_unhealthy_task_is_stopped_after_retries_past_its_start_period_and_replaced_in_its_set(
    moto: Moto,
) -> None:
    scale = TimeScale(factor=100)  # interval 50 wall ms, start period 600 wall ms
    arn = moto.task_definition("v-sick", health_check(), FAULT_HEALTH_FAIL="true")
    target_group = moto.target_group("sick")
    with SpyRunner(moto, scale, start_seconds=5) as runner:
        (first,) = runner.run(arn, 1, "blue")
        runner.register([first], target_group)
        assert moto.targets(target_group) == {first.address}
        assert not runner.container_healthy([first])

        wait_for(lambda: runner.unhealthy_at(first) is not None, "the first task UNHEALTHY")
        unhealthy_at = runner.unhealthy_at(first)
        assert unhealthy_at is not None
        assert first.health == "UNHEALTHY"
        assert first.failures == RETRIES
        # Failures within the start period do not count; then `retries` failures, `interval` apart. (Less one
        # AWS second: a probe that ends after the start period counts, wherever it began.)
        assert scale.aws(unhealthy_at - first.started) >= START_PERIOD + (RETRIES - 1) * INTERVAL - 1
        assert first.process.poll() is not None or first.stopping
        wait_for(lambda: first.process.poll() is not None, "the first task's process stopped")

        # ECS's service scheduler starts a replacement in the same task set, registered where the first was.
        wait_for(lambda: bool(runner.tasks_of("blue")), "a replacement in the task set")
        (second,) = runner.tasks_of("blue")
        assert second.task_id != first.task_id
        assert (second.version, second.task_definition_arn) == (first.version, first.task_definition_arn)
        assert first not in runner.tasks
        wait_for(lambda: second.target_group_arn == target_group, "the replacement registered")
        assert moto.targets(target_group) == {second.address}
        assert runner.runs == ["blue", "blue"]

        # The task set is being deleted: its next UNHEALTHY task is stopped and nothing takes its place.
        runner.retire("blue")
        wait_for(lambda: second.process.poll() is not None, "the replacement stopped")
        assert second.health == "UNHEALTHY"
        scale.sleep(scale.drill(4 * INTERVAL))
        assert runner.tasks_of("blue") == []
        assert runner.runs == ["blue", "blue"]
        assert len(runner.spawned) == 2
        assert runner.unhealthy_at(second) is None  # no "ECS starts a replacement" for a retired set
        assert moto.targets(target_group) == set()


def test_no_task_outlives_a_runner_stopped_while_a_replacement_starts(moto: Moto) -> None:
    scale = TimeScale(factor=100)
    arn = moto.task_definition("v-orphan", health_check(start_period=0), FAULT_HEALTH_FAIL="true")
    runner = SpyRunner(moto, scale, start_seconds=5).start()
    try:
        (first,) = runner.run(arn, 1, "blue")
        wait_for(lambda: runner.unhealthy_at(first) is not None, "the first task UNHEALTHY")
        runner.stop()  # ECS's replacement is on its way (a thread of the runner's)
        time.sleep(0.2)
        wait_for(
            lambda: all(t.process.poll() is not None for t in runner.spawned),
            "every task process the runner started to exit",
            deadline=3.0,
        )
    finally:
        time.sleep(0.5)
        for task in runner.spawned:  # whatever the outcome, nothing of this test is left running
            runner.stop_task(task)


def test_the_sample_app_is_what_runs(moto: Moto) -> None:
    assert Path(SAMPLE_APP, "app.py").is_file()
    scale = TimeScale(factor=100)
    arn = moto.task_definition("v-app", FAULT_HEALTH_DEGRADED="true")
    with SpyRunner(moto, scale, start_seconds=5) as runner:
        (task,) = runner.run(arn, 1)
        with urllib.request.urlopen(f"http://{task.address}/health", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "degraded", "version": "v-app"}
        assert task.environment["FAULT_HEALTH_DEGRADED"] == "true"
        assert task.ip.startswith("127.")
        assert task.ip != "127.0.0.1"  # its own loopback address, the stand-in for the task's ENI


def test_a_replacement_whose_image_cannot_be_pulled_is_tried_again_after_the_retry_pause(moto: Moto) -> None:
    scale = TimeScale(factor=100)  # the 60 s retry pause: 0.6 wall s
    pulls: list[float] = []

    def images(uri: str) -> Path:
        """The first and third starts get the image; the second cannot pull it (deleted from ECR)."""
        pulls.append(scale.now())
        if len(pulls) == 2:
            raise CannotPullContainerError(f"CannotPullContainerError: {uri}: not found")
        return SAMPLE_APP

    arn = moto.task_definition("v-pull", health_check(start_period=0), FAULT_HEALTH_FAIL="true")
    with SpyRunner(moto, scale, start_seconds=5, images=images) as runner:
        (first,) = runner.run(arn, 1, "blue")
        wait_for(lambda: len(runner.spawned) == 2, "the replacement after the failed pull")
        runner.retire("blue")  # no further replacement of the (still unhealthy) second task
        assert len(pulls) == 3
        # The failed start took the modelled start; ECS paused START_RETRY_SECONDS before the next one.
        assert scale.aws(pulls[2] - pulls[1]) >= runner.start_seconds + START_RETRY_SECONDS
        [failed] = [text for _, text in runner.emitted if "failed to start" in text]
        assert failed == "replacement failed to start: CannotPullContainerError: sample-app:v-pull: not found"
        stopped = "1 task(s) stopped at start: CannotPullContainerError: sample-app:v-pull: not found"
        assert stopped in [text for _, text in runner.emitted]
        assert first.process.poll() is not None or first.stopping


def test_a_task_drained_by_the_engine_and_replaced_by_the_scheduler_at_once_is_deregistered_once(
    moto: Moto,
) -> None:
    """The engine's rollback drains a replacement task set while ECS replaces one of its failing tasks: both
    deregister the same target, and ELB refuses the second call (InvalidTarget). The task leaves its target
    group once, and neither caller fails."""
    arn = moto.task_definition("v-race")
    group = moto.target_group("race")
    runner = TaskRunner(moto.ecs, moto.elbv2, TimeScale(factor=600))
    with runner:
        (task,) = runner.run(arn, 1, "set-race")
        runner.register([task], group)
        assert moto.targets(group) == {task.address}
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def drain() -> None:
            start.wait()
            try:
                runner.deregister([task])
            except Exception as exc:  # the race under test: no caller may see ELB's refusal
                errors.append(exc)

        threads = [threading.Thread(target=drain) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    assert errors == []
    assert moto.targets(group) == set()
