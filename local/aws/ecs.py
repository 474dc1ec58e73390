"""ECS tasks: real sample-app processes under gunicorn, one per task, on their own loopback address.

Each task gets its own 127.0.0.N address (the stand-in for a Fargate task's ENI) and a free port, runs
with the task definition's container environment read from moto, and is registered as an IP target. Tasks
are always stopped: `TaskRunner` is a context manager and stops whatever is still running on exit.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.background import Lifecycle
from scripts.stacks import ROOT

SAMPLE_APP = ROOT / "sample-app"
READY_TIMEOUT = 20.0


class TaskFailedToStart(RuntimeError):
    """A task process exited or never listened."""


@dataclass
class Task:
    task_id: str
    task_definition_arn: str
    version: str
    ip: str
    port: int
    process: subprocess.Popen[bytes]
    environment: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    target_group_arn: str | None = None

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


class TaskRunner(Lifecycle):
    """Starts and stops sample-app tasks, and registers them with target groups in moto."""

    def __init__(self, ecs: Any, elbv2: Any, app_dir: Path = SAMPLE_APP, workers: int = 1, threads: int = 16):
        self._ecs = ecs
        self._elbv2 = elbv2
        self._app_dir = app_dir
        self._workers = workers
        self._threads = threads
        self._tasks: dict[str, Task] = {}
        self._all: list[Task] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        _LIVE.add(self)

    def stop(self) -> None:
        """Stop every task still running."""
        self.stop_all()

    @property
    def tasks(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())

    def version_of(self, address: str) -> str | None:
        """The APP_VERSION of the task (running or stopped) at `ip:port`."""
        with self._lock:
            for task in self._all:
                if task.address == address:
                    return task.version
        return None

    def run(self, task_definition_arn: str, count: int) -> list[Task]:
        """Start `count` tasks of a task definition registered in moto; wait until each listens."""
        definition = self._ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
        env = container_environment(definition)
        started = [self._spawn(definition["taskDefinitionArn"], env) for _ in range(count)]
        try:
            for task in started:
                _wait_listening(task)
        except TaskFailedToStart:
            for task in started:
                self.stop_task(task)
            raise
        return started

    def _spawn(self, arn: str, env: dict[str, str]) -> Task:
        ip = _next_ip()
        port = _free_port(ip)
        proc_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONUNBUFFERED": "1",
            "GUNICORN_WORKERS": str(self._workers),
            "GUNICORN_THREADS": str(self._threads),
            **env,
            "PORT": str(port),
        }
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            str(self._app_dir),
            "--config",
            str(self._app_dir / "gunicorn.conf.py"),
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
        )
        with self._lock:
            self._tasks[task.task_id] = task
            self._all.append(task)
        return task

    def register(self, tasks: list[Task], target_group_arn: str) -> None:
        self._elbv2.register_targets(
            TargetGroupArn=target_group_arn, Targets=[{"Id": t.ip, "Port": t.port} for t in tasks]
        )
        for task in tasks:
            task.target_group_arn = target_group_arn

    def deregister(self, tasks: list[Task]) -> None:
        for task in tasks:
            if task.target_group_arn:
                self._elbv2.deregister_targets(
                    TargetGroupArn=task.target_group_arn, Targets=[{"Id": task.ip, "Port": task.port}]
                )
                task.target_group_arn = None

    def stop_task(self, task: Task) -> None:
        """Stop one task: SIGTERM to its process group, SIGKILL if it lingers."""
        with self._lock:
            self._tasks.pop(task.task_id, None)
        _terminate(task.process)

    def stop_all(self) -> None:
        for task in self.tasks:
            self.stop_task(task)
        _LIVE.discard(self)


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


def _wait_listening(task: Task, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task.process.poll() is not None:
            err = task.process.stderr.read().decode(errors="replace") if task.process.stderr else ""
            raise TaskFailedToStart(f"{task.task_id} ({task.version}) exited: {err.strip()[-500:]}")
        try:
            with socket.create_connection((task.ip, task.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TaskFailedToStart(f"{task.task_id} ({task.version}) did not listen within {timeout:.0f} s")
