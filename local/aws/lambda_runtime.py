"""The Lambda runtime: handlers invoked with the template's environment and Timeout.

`LambdaRuntime` reads each function's configuration from moto (Handler, Timeout, Environment, reserved
concurrency) and runs invocations in warm worker processes (local/lambda_bootstrap.py), started with that
environment plus the standard endpoint settings (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_CODEDEPLOY) so the handler
reaches the stand-in through plain boto3. The context's remaining time counts down from the template's
Timeout; an invocation that overruns it is killed ("Task timed out"). Reserved concurrency caps the workers of
a function (default 2 warm environments per function, started with the runtime); further asynchronous
invocations wait in its queue, as Lambda's event queue does. One worker is local/aws/lambda_bootstrap.py.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws.moto_server import Aws
from local.background import Lifecycle

BOOTSTRAP = Path(__file__).resolve().parent / "lambda_bootstrap.py"
DEFAULT_CONCURRENCY = 2


@dataclass
class FunctionConfig:
    name: str
    arn: str
    handler: str
    timeout: float
    environment: dict[str, str]
    code_dir: Path
    memory: int = 128
    concurrency: int = DEFAULT_CONCURRENCY


@dataclass
class Invocation:
    function: str
    event: Any
    future: Future[Any] = field(default_factory=Future)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class _Worker:
    def __init__(self, fn: FunctionConfig, env: dict[str, str], log: Callable[[str, str], None]) -> None:
        self.fn = fn
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-I", str(BOOTSTRAP), str(fn.code_dir), fn.handler, str(write_fd)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            text=True,
            start_new_session=True,
        )
        os.close(write_fd)
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read_answers, args=(read_fd,), daemon=True).start()
        threading.Thread(target=self._pump, args=(log,), daemon=True).start()

    def _read_answers(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "r") as answers:
            for line in answers:
                self._answers.put(json.loads(line))

    def _pump(self, log: Callable[[str, str], None]) -> None:
        if self.process.stdout is None:
            return
        for line in self.process.stdout:
            log(self.fn.name, line.rstrip("\n"))

    def invoke(self, invocation: Invocation, deadline: float) -> dict[str, Any]:
        if self.process.stdin is None:
            return {"error": "worker has no stdin"}
        request = {
            "id": invocation.request_id,
            "request_id": invocation.request_id,
            "event": invocation.event,
        }
        request["deadline"] = deadline
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        try:
            return self._answers.get(timeout=max(0.0, deadline - time.time()) + 0.2)
        except queue.Empty:
            self.kill()
            return {"error": f"Task timed out after {self.fn.timeout:.2f} seconds"}

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=5)
        if self.process.stdin:
            with contextlib.suppress(OSError):
                self.process.stdin.close()


_LIVE: set[LambdaRuntime] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Whatever ends the interpreter, no worker process outlives it."""
    for runtime in list(_LIVE):
        runtime.kill_workers()


class LambdaRuntime(Lifecycle):
    """Functions loaded from moto, invoked in warm workers; a context manager that stops every worker."""

    def __init__(
        self,
        aws: Aws,
        code_dirs: dict[str, Path],
        log: Callable[[str, str], None] | None = None,
        env_overrides: Callable[[str, dict[str, str]], dict[str, str]] | None = None,
    ) -> None:
        self._aws = aws
        self._code_dirs = code_dirs
        self._log = log or (lambda _fn, _line: None)
        self._env_overrides = env_overrides or (lambda _name, env: env)
        self.functions: dict[str, FunctionConfig] = {}
        self._queues: dict[str, queue.Queue[Invocation | None]] = {}
        self._threads: list[threading.Thread] = []
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.invocations: list[tuple[str, str, Any]] = []
        _LIVE.add(self)

    def load(self) -> None:
        """Read every function's configuration from moto and start its event queue."""
        client = self._aws.client("lambda")
        for page in client.get_paginator("list_functions").paginate():
            for fn in page["Functions"]:
                name = fn["FunctionName"]
                module = fn["Handler"].rsplit(".", 1)[0]
                if module not in self._code_dirs:
                    continue
                try:
                    reserved = client.get_function_concurrency(FunctionName=name).get(
                        "ReservedConcurrentExecutions"
                    )
                except client.exceptions.ClientError:
                    reserved = None
                config = FunctionConfig(
                    name=name,
                    arn=fn["FunctionArn"],
                    handler=fn["Handler"],
                    timeout=float(fn.get("Timeout", 3)),
                    environment=dict((fn.get("Environment") or {}).get("Variables") or {}),
                    code_dir=self._code_dirs[module],
                    memory=int(fn.get("MemorySize", 128)),
                    concurrency=int(reserved) if reserved else DEFAULT_CONCURRENCY,
                )
                self.add(config)

    def add(self, config: FunctionConfig) -> None:
        self.functions[config.name] = config
        self._queues[config.name] = queue.Queue()
        for n in range(config.concurrency):
            thread = threading.Thread(
                target=self._serve, args=(config,), name=f"lambda-{config.name}-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def resolve(self, name_or_arn: str) -> str:
        """A function name from a name, a function ARN or a qualified ARN."""
        if name_or_arn.startswith("arn:"):
            return name_or_arn.split(":")[6]
        return name_or_arn

    def invoke_async(self, name_or_arn: str, event: Any, source: str = "") -> Future[Any]:
        """An asynchronous ('Event') invocation; the future holds the handler's answer or error."""
        name = self.resolve(name_or_arn)
        invocation = Invocation(name, event)
        with self._lock:
            self.invocations.append((name, source, event))
        if name not in self._queues:
            invocation.future.set_exception(KeyError(f"Function not found: {name}"))
            return invocation.future
        self._queues[name].put(invocation)
        return invocation.future

    def _env(self, fn: FunctionConfig) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
            **self._aws.env(),
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "_HANDLER": fn.handler,
            "PHOENIX_FUNCTION_ARN": fn.arn,
        }
        env.update(self._env_overrides(fn.name, dict(fn.environment)))
        return env

    def _serve(self, fn: FunctionConfig) -> None:
        # Each slot of the function's concurrency keeps one warm execution environment, started at once.
        warm = _Worker(fn, self._env(fn), self._log)
        with self._lock:
            self._workers.append(warm)
        worker: _Worker | None = warm
        q = self._queues[fn.name]
        while True:
            invocation = q.get()
            if invocation is None:
                break
            if worker is None or not worker.alive():
                worker = _Worker(fn, self._env(fn), self._log)
                with self._lock:
                    self._workers.append(worker)
            answer = worker.invoke(invocation, time.time() + fn.timeout)
            if "error" in answer:
                self._log(fn.name, json.dumps({"runtime": "error", "error": answer["error"]}))
                invocation.future.set_exception(RuntimeError(answer["error"]))
            else:
                invocation.future.set_result(answer.get("result"))
        if worker is not None:
            worker.kill()

    def stop(self) -> None:
        for name, q in self._queues.items():
            for _ in range(self.functions[name].concurrency):
                q.put(None)
        for thread in self._threads:
            thread.join(timeout=15)
        self.kill_workers()
        _LIVE.discard(self)

    def kill_workers(self) -> None:
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if worker.alive():
                worker.kill()
