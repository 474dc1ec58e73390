"""ECS tasks: real sample-app processes under gunicorn, one per task, on their own loopback address.

Each task gets its own 127.0.0.N address (the stand-in for a Fargate task's ENI) and a free port, runs with
the task definition's container environment read from moto, and is registered as an IP target. A task is
RUNNING `start_seconds` AWS seconds after it was asked for (Fargate's provisioning, image pull and container
start, which AWS does not publish a figure for; 60 s is the slow end of what Fargate tasks of a small image
take); when the process needs longer to listen, the AWS clock is held meanwhile (the machine's overhead is not
AWS time). The task definition's container health check runs as ECS runs it (interval, timeout, retries,
start period); a task whose essential container turns UNHEALTHY, or whose process exits, is stopped and its
task set gets a replacement, as ECS's service scheduler does (a replacement that fails to start is tried
again every START_RETRY_SECONDS). Tasks are always stopped: `TaskRunner` is a context manager and stops
whatever is still running on exit.

With an image resolver (`images`, e.g. `images.Registry.pull`), a task runs the image its task definition's
first container names: the directory of that image (its build context, pulled from the stand-in's ECR), as the
Dockerfile's CMD runs it (`gunicorn --config gunicorn.conf.py app:create_app()` in the image's directory, here
with the task's own loopback address). What the image would add is not reproduced: its OS and Python (tasks
run with the drill's own interpreter and virtualenv, which `docker build` checked against the image's
requirements.txt), its user, read-only root filesystem and /tmp volume. An image that cannot be pulled stops
the task at start with ECS's stoppedReason (CannotPullContainerError: ...). Without a resolver every task runs
the working tree's sample-app/: for the runner's own unit tests only.
"""

from __future__ import annotations

import atexit
import http.client
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from local.aws.images import CannotPullContainerError
from local.background import Lifecycle, Loop
from local.timescale import TimeScale
from scripts.stacks import ROOT

SAMPLE_APP = ROOT / "sample-app"
READY_TIMEOUT = 20.0
FARGATE_START_SECONDS = 60.0
# ECS's pause between failed task starts: AWS documents a growing back-off; fixed here (local/README.md).
START_RETRY_SECONDS = 60.0
# How often the service scheduler's view of container health is refreshed (each task is still probed at its
# own health-check interval).
HEALTH_TICK_SECONDS = 5.0
# The container health check's scaled timeout is never below this many wall seconds (a loopback answer fits).
PROBE_FLOOR_SECONDS = 0.1
Emit = Callable[..., None]
# An image URI -> the directory of that image; raises CannotPullContainerError.
Images = Callable[[str], Path]


class TaskFailedToStart(RuntimeError):
    """A task process exited or never listened."""


@dataclass(frozen=True)
class ContainerHealthCheck:
    """A container definition's healthCheck, in AWS seconds (ECS's defaults where it is silent)."""

    path: str
    interval: float = 30.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 0.0

    @classmethod
    def of(cls, task_definition: dict[str, Any]) -> ContainerHealthCheck | None:
        """The first container's check; its command is run as the HTTP GET it performs (the image's own
        `python -c urlopen(...)`), so only the URL path is read from it."""
        containers = task_definition.get("containerDefinitions") or [{}]
        check = containers[0].get("healthCheck")
        if not check:
            return None
        found = re.search(r"https?://[^/\s'\"]+(/[^\s'\"]*)", " ".join(check.get("command") or []))
        return cls(
            path=found.group(1) if found else "/",
            interval=float(check.get("interval", 30)),
            timeout=float(check.get("timeout", 5)),
            retries=int(check.get("retries", 3)),
            start_period=float(check.get("startPeriod", 0)),
        )


@dataclass
class Task:
    task_id: str
    task_definition_arn: str
    version: str
    ip: str
    port: int
    process: subprocess.Popen[bytes]
    environment: dict[str, str]
    task_set: str = ""
    started: float = 0.0  # drill seconds when the task was RUNNING
    target_group_arn: str | None = None
    health: str = "UNKNOWN"  # ECS's healthStatus: UNKNOWN, HEALTHY, UNHEALTHY
    failures: int = 0
    next_check: float = 0.0
    stopping: bool = False

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


_LIVE: set[TaskRunner] = set()
_addresses = itertools.count(2)


@atexit.register
def _stop_leftovers() -> None:
    """Whatever ends the interpreter, no task process outlives it."""
    for runner in list(_LIVE):
        runner.stop_all()


_address_lock = threading.Lock()


def _next_ip() -> str:
    with _address_lock:
        n = next(_addresses)
    return f"127.0.{(n // 250) % 250}.{n % 250 + 2}"


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def container_environment(task_definition: dict[str, Any]) -> dict[str, str]:
    """The first container's environment variables of a describe_task_definition answer."""
    containers = task_definition.get("containerDefinitions") or [{}]
    return {item["name"]: str(item["value"]) for item in containers[0].get("environment", [])}


def container_image(task_definition: dict[str, Any]) -> str:
    """The first container's image of a describe_task_definition answer."""
    containers = task_definition.get("containerDefinitions") or [{}]
    return str(containers[0].get("image", ""))


class TaskRunner(Lifecycle):
    """Starts and stops sample-app tasks, registers them with target groups in moto, and keeps each task set
    at its size while its tasks fail their container health check (ECS's service scheduler)."""

    def __init__(
        self,
        ecs: Any,
        elbv2: Any,
        scale: TimeScale,
        *,
        start_seconds: float = FARGATE_START_SECONDS,
        app_dir: Path = SAMPLE_APP,
        images: Images | None = None,
        workers: int = 1,
        threads: int = 16,
        emit: Emit | None = None,
    ) -> None:
        self._ecs = ecs
        self._elbv2 = elbv2
        self._scale = scale
        self.start_seconds = start_seconds
        self._app_dir = app_dir
        self._images = images
        self._app_dirs: dict[str, Path] = {}  # task definition ARN -> the directory its tasks run
        self._workers = workers
        self._threads = threads
        self._emit = emit or (lambda *_a, **_k: None)
        self._tasks: dict[str, Task] = {}
        self._all: list[Task] = []
        self._checks: dict[str, ContainerHealthCheck | None] = {}
        self._retired: set[str] = set()
        self._stopping = False
        self._halt = threading.Event()  # set when the runner stops: ends the scheduler's retries
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="container-health")
        self._scheduler = Loop(
            "ecs-service-scheduler", self._supervise, every=scale.drill(HEALTH_TICK_SECONDS), clock=scale.now
        )
        _LIVE.add(self)

    def start(self) -> Self:
        self._scheduler.start()
        return self

    def stop(self) -> None:
        """Stop the scheduler and every task still running."""
        self._scheduler.stop()
        self._probes.shutdown(wait=False, cancel_futures=True)
        self.stop_all()

    @property
    def tasks(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())

    def tasks_of(self, task_set: str) -> list[Task]:
        return [t for t in self.tasks if t.task_set == task_set]

    def version_of(self, address: str) -> str | None:
        """The APP_VERSION of the task (running or stopped) at `ip:port`."""
        with self._lock:
            for task in self._all:
                if task.address == address:
                    return task.version
        return None

    def run(
        self, task_definition_arn: str, count: int, task_set: str = "", cancel: threading.Event | None = None
    ) -> list[Task]:
        """Start `count` tasks of a task definition registered in moto; they are RUNNING after the Fargate
        start time on the AWS clock (held while a process is late to listen). Raises TaskFailedToStart, also
        when `cancel` is set meanwhile (the tasks are stopped) or the runner is stopping."""
        if self._stopping:
            raise TaskFailedToStart("the task runner is stopping")
        definition = self._ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
        arn = definition["taskDefinitionArn"]
        env = container_environment(definition)
        asked = self._scale.now()
        app_dir = self._pull(definition, asked, count, task_set, cancel)
        with self._lock:
            self._checks[arn] = ContainerHealthCheck.of(definition)
            self._app_dirs[arn] = app_dir
        started = [self._spawn(arn, env, task_set) for _ in range(count)]
        try:
            if not self._scale.sleep_until(asked + self._scale.drill(self.start_seconds), cancel):
                raise TaskFailedToStart("the start was cancelled")
            for task in started:
                # A process that already exited is no late boot: nothing to hold the clock for.
                if task.process.poll() is None and not _listening(task):
                    with self._scale.hold(f"task boot {task.task_id}"):
                        _wait_listening(task)
                else:
                    _wait_listening(task)
        except TaskFailedToStart:
            for task in started:
                self.stop_task(task)
            raise
        now = self._scale.now()
        with self._lock:
            stopping = self._stopping
            for task in started:
                task.started = now
                task.next_check = now
                if not stopping:
                    self._tasks[task.task_id] = task
        if stopping:  # stopped while these were starting: they must not outlive the runner
            for task in started:
                self.stop_task(task)
            raise TaskFailedToStart("the task runner stopped")
        return started

    def _pull(
        self,
        definition: dict[str, Any],
        asked: float,
        count: int,
        task_set: str,
        cancel: threading.Event | None,
    ) -> Path:
        """The directory the tasks of `definition` run: its image's, pulled (part of the modelled Fargate
        start, as on AWS), or the runner's app_dir without a resolver. ECS stops a task whose image it cannot
        pull before any container starts, once the start has run its course (CannotPullContainerError)."""
        if self._images is None:
            return self._app_dir
        try:
            return self._images(container_image(definition))
        except CannotPullContainerError as exc:
            if not self._scale.sleep_until(asked + self._scale.drill(self.start_seconds), cancel):
                raise TaskFailedToStart("the start was cancelled") from None
            self._emit("ecs", f"{count} task(s) stopped at start: {exc}", task_set=task_set)
            raise TaskFailedToStart(str(exc)) from None

    def _spawn(self, arn: str, env: dict[str, str], task_set: str) -> Task:
        ip = _next_ip()
        port = _free_port(ip)
        with self._lock:
            app_dir = self._app_dirs.get(arn, self._app_dir)
        proc_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "GUNICORN_WORKERS": str(self._workers),
            "GUNICORN_THREADS": str(self._threads),
            **env,
            "PORT": str(port),
        }
        if app_dir != self._app_dir:
            # A pulled image is shared by its tasks and read-only in the task (readonlyRootFilesystem).
            proc_env["PYTHONDONTWRITEBYTECODE"] = "1"
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            str(app_dir),
            "--config",
            str(app_dir / "gunicorn.conf.py"),
            "--bind",
            f"{ip}:{port}",
            "--access-logfile",
            "/dev/null",
            "--log-level",
            "warning",
            "app:create_app()",
        ]
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command, env=proc_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        task = Task(
            task_id=f"task-{next(self._ids):04d}",
            task_definition_arn=arn,
            version=env.get("APP_VERSION", "dev"),
            ip=ip,
            port=port,
            process=process,
            environment=env,
            task_set=task_set,
        )
        with self._lock:
            self._all.append(task)
        return task

    def register(self, tasks: list[Task], target_group_arn: str) -> None:
        self._elbv2.register_targets(
            TargetGroupArn=target_group_arn, Targets=[{"Id": t.ip, "Port": t.port} for t in tasks]
        )
        for task in tasks:
            task.target_group_arn = target_group_arn

    def deregister(self, tasks: list[Task]) -> None:
        """Take the tasks out of their target groups, each once: the engine's drain and the scheduler's
        replacement of a failing task can reach the same task together (ELB refuses a second
        DeregisterTargets of a target already gone with InvalidTarget)."""
        for task in tasks:
            with self._lock:
                target_group, task.target_group_arn = task.target_group_arn, None
            if target_group:
                self._elbv2.deregister_targets(
                    TargetGroupArn=target_group, Targets=[{"Id": task.ip, "Port": task.port}]
                )

    def retire(self, task_set: str) -> None:
        """The task set is being deleted: its tasks are no longer replaced."""
        with self._lock:
            self._retired.add(task_set)

    def stop_task(self, task: Task) -> None:
        """Stop one task: SIGTERM to its process group, SIGKILL if it lingers."""
        task.stopping = True
        with self._lock:
            self._tasks.pop(task.task_id, None)
        _terminate(task.process)

    def stop_all(self) -> None:
        """Stop every task process this runner started, running or still starting."""
        with self._lock:
            self._stopping = True
            everything = list(self._all)
        self._halt.set()
        for task in everything:
            self.stop_task(task)
        _LIVE.discard(self)

    def container_healthy(self, tasks: list[Task]) -> bool:
        """ECS's view for a task set's stability: every task HEALTHY (or no container health check)."""
        with self._lock:
            checks = [self._checks.get(t.task_definition_arn) for t in tasks]
        return all(
            check is None or task.health == "HEALTHY" for task, check in zip(tasks, checks, strict=True)
        )

    # ------------------------------------------------------------------ the service scheduler
    def _supervise(self) -> None:
        now = self._scale.now()
        for task in self.tasks:
            if task.stopping:
                continue
            if task.process.poll() is not None:
                self._replace(task, f"{task.task_id} ({task.version}) exited")
                continue
            check = self._checks.get(task.task_definition_arn)
            if check is not None and now >= task.next_check:
                task.next_check = now + self._scale.drill(check.interval)
                self._probes.submit(self._probe, task, check)

    def _probe(self, task: Task, check: ContainerHealthCheck) -> None:
        """One run of the container health check (ECS: a failure within the start period does not count; a
        success turns the container HEALTHY; `retries` consecutive failures turn it UNHEALTHY)."""
        ok = _get_ok(task, check.path, self._scale.network(check.timeout, floor=PROBE_FLOOR_SECONDS))
        if task.stopping or task.health == "UNHEALTHY":
            return  # a probe still running when the container was found UNHEALTHY: ECS is stopping it
        in_start_period = self._scale.now() - task.started < self._scale.drill(check.start_period)
        if ok:
            task.failures, task.health = 0, "HEALTHY"
            return
        if in_start_period:
            return
        task.failures += 1
        if task.failures >= check.retries and task.health != "UNHEALTHY":
            task.health = "UNHEALTHY"
            self._replace(task, f"{task.task_id} ({task.version}) container health check UNHEALTHY")

    def _replace(self, task: Task, why: str) -> None:
        if task.stopping:
            return
        target_group = task.target_group_arn
        self.deregister([task])
        self.stop_task(task)
        with self._lock:
            retired = task.task_set in self._retired
        if retired:
            return
        self._emit("ecs", f"{why}: stopped; ECS starts a replacement", task_set=task.task_set)
        threading.Thread(
            target=self._start_replacement,
            args=(task.task_definition_arn, task.task_set, target_group),
            name=f"replace-{task.task_id}",
            daemon=True,
        ).start()

    def _start_replacement(self, arn: str, task_set: str, target_group: str | None) -> None:
        """Start one task in the set, again every START_RETRY_SECONDS while it fails to start, until the set
        is retired or the runner stops."""
        while True:
            try:
                (replacement,) = self.run(arn, 1, task_set, self._halt)
                break
            except TaskFailedToStart as exc:
                with self._lock:
                    done = self._stopping or task_set in self._retired
                if done:
                    return
                self._emit("ecs", f"replacement failed to start: {str(exc)[:120]}", task_set=task_set)
            if not self._scale.sleep(self._scale.drill(START_RETRY_SECONDS), self._halt):
                return
        with self._lock:
            retired = task_set in self._retired
        if retired:
            self.stop_task(replacement)
        elif target_group:
            self.register([replacement], target_group)


def _get_ok(task: Task, path: str, timeout: float) -> bool:
    conn = http.client.HTTPConnection(task.ip, task.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "ecs-container-health-check"})
        response = conn.getresponse()
        response.read()
        return 200 <= response.status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass
    if process.stderr:
        process.stderr.close()


def _listening(task: Task) -> bool:
    try:
        with socket.create_connection((task.ip, task.port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_listening(task: Task, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task.process.poll() is not None:
            err = task.process.stderr.read().decode(errors="replace") if task.process.stderr else ""
            raise TaskFailedToStart(f"{task.task_id} ({task.version}) exited: {err.strip()[-500:]}")
        if _listening(task):
            return
        time.sleep(0.02)
    raise TaskFailedToStart(f"{task.task_id} ({task.version}) did not listen within {timeout:.0f} s")
