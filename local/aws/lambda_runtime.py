"""The Lambda runtime: handlers invoked asynchronously with the template's environment, Timeout, retries and
dead-letter queue, on the stand-in's AWS clock (local/timescale.py).

`LambdaRuntime` reads each function's configuration from moto (Handler, Timeout, Environment, reserved
concurrency, DeadLetterConfig, the event invoke config's MaximumRetryAttempts) and runs invocations in worker
processes (local/aws/lambda_bootstrap.py, one per execution environment), started with that environment plus
the standard endpoint settings (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_CODEDEPLOY) so the handler reaches the
stand-in through plain boto3. As on Lambda:

- Timeout: the context's remaining time and the kill deadline count down from the template's Timeout (AWS
  seconds, converted with `scale.drill`) on the AWS clock; an invocation that overruns it is killed ("Task
  timed out after N.00 seconds", N the template's value) and its environment replaced.
- Init: an on-demand environment pays its Init phase on its first invocation (`INIT_SECONDS` of AWS time).
  Starting the worker process (Python and the handler's imports) is the stand-in's own overhead: when an
  invocation has to wait for it, the AWS clock is held (`scale.hold("lambda init: <function>")`).
- Asynchronous invocations that fail (function error, timeout, runtime exit) are retried `max_retries` times
  (2 by default, or the event invoke config's MaximumRetryAttempts) after 1 then 2 AWS minutes, then sent to
  the function's dead-letter queue (SQS SendMessage or SNS Publish, with RequestID, ErrorCode, ErrorMessage).
  Every attempt and delivery is recorded in `attempts`.
- Reserved concurrency: at most ReservedConcurrentExecutions invocations of a function run at once (one
  worker thread per slot; 2 slots without a reservation); further events wait in the function's queue, as in
  Lambda's internal event queue.
- LoggingConfig: the environment gets AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL (JSON only) and the log
  group, and the worker's runtime formats the function's log from them (lambda_bootstrap.py); with LogFormat
  JSON, lines below ApplicationLogLevel do not reach the log, a line without a readable "level" counting as
  INFO. moto's Lambda keeps no LoggingConfig: a function a stack created gets the one in the stack's
  template (`stack_logging_configs`), others AWS's default (Text).
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
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws.moto_server import Aws
from local.background import Lifecycle
from local.timescale import TimeScale
from scripts.stacks import parse_template

BOOTSTRAP = Path(__file__).resolve().parent / "lambda_bootstrap.py"
DEFAULT_CONCURRENCY = 2

# Lambda's Init phase, in AWS seconds, paid by the first invocation of each on-demand environment (a cold
# start). "The duration of a cold start varies from under 100 ms to over 1 second"
# (https://docs.aws.amazon.com/lambda/latest/operatorguide/execution-environments.html); a Python function
# importing boto3 and requests sits in that range, so the stand-in takes its pessimistic end.
INIT_SECONDS = 1.0
# "If the function returns an error, by default Lambda attempts to run it two more times, with a one-minute
# wait between the first two attempts, and two minutes between the second and third attempts. Function errors
# include errors returned by the function's code and errors returned by the function's runtime, such as
# timeouts." (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html)
DEFAULT_MAX_RETRIES = 2
RETRY_DELAYS_SECONDS = (60.0, 120.0)
# The dead-letter message: "the original event payload with no modifications to the message body", with the
# attributes RequestID (String), ErrorCode (Number, "3-digit HTTP error code"), ErrorMessage (String,
# "truncated to 1 KB") (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq).
# A function error or timeout is answered by the Invoke API with status 200 and X-Amz-Function-Error
# (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html), hence 200.
FUNCTION_ERROR_CODE = 200
ERROR_MESSAGE_BYTES = 1024
# Wall seconds the stand-in waits for a worker process to start before it gives up on the environment (the
# clock is held meanwhile; a machine this late is broken, not slow).
READY_WALL_LIMIT = 60.0
# LoggingConfig (https://docs.aws.amazon.com/lambda/latest/api/API_LoggingConfig.html): LogFormat JSON | Text;
# ApplicationLogLevel, most detailed first; Lambda sends "application logs at the selected level of detail and
# lower". A JSON line's "level" is read without case; Python's WARNING and CRITICAL are WARN and FATAL.
LOG_FORMATS = ("JSON", "Text")
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
_LEVEL_NAMES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def line_level(line: str) -> str:
    """The level Lambda gives a line of a JSON-format function's log: its JSON "level"; "If the "level" value
    field is invalid or missing, Lambda will assign the log output the level INFO" (Lambda developer guide,
    "Log-level filtering")."""
    try:
        record = json.loads(line)
    except ValueError:
        return "INFO"
    level = str(record.get("level", "")).upper() if isinstance(record, dict) else ""
    level = _LEVEL_NAMES.get(level, level)
    return level if level in APPLICATION_LOG_LEVELS else "INFO"


@dataclass
class FunctionConfig:
    name: str
    arn: str
    handler: str
    timeout: float  # AWS seconds (the template's Timeout)
    environment: dict[str, str]
    code_dir: Path
    runtime: str  # the function's Runtime, e.g. python3.14
    memory: int = 128
    concurrency: int = DEFAULT_CONCURRENCY
    dead_letter_arn: str | None = None  # DeadLetterConfig.TargetArn: an SQS queue or an SNS topic
    max_retries: int = DEFAULT_MAX_RETRIES  # MaximumRetryAttempts of the event invoke config
    # LoggingConfig; AWS's defaults: Text, and INFO for both levels once the format is JSON.
    log_format: str = "Text"
    application_log_level: str = "INFO"
    system_log_level: str = "INFO"
    log_group: str = ""  # "" is /aws/lambda/<name>

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.log_format, LOG_FORMATS, "LogFormat"),
            (self.application_log_level, APPLICATION_LOG_LEVELS, "ApplicationLogLevel"),
            (self.system_log_level, SYSTEM_LOG_LEVELS, "SystemLogLevel"),
        ):
            if value not in allowed:
                raise ValueError(
                    f"{self.name}: LoggingConfig {what} must be one of {', '.join(allowed)}, got {value!r}"
                )

    def sends(self, line: str) -> bool:
        """Whether a line the function writes reaches its log (ApplicationLogLevel filters JSON logs only)."""
        if self.log_format != "JSON":
            return True
        return APPLICATION_LOG_LEVELS.index(line_level(line)) >= APPLICATION_LOG_LEVELS.index(
            self.application_log_level
        )


@dataclass
class Invocation:
    function: str
    event: Any
    future: Future[Any] = field(default_factory=Future)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempt: int = 0  # attempts made so far


@dataclass(frozen=True)
class Attempt:
    """One attempt of an asynchronous invocation, or what became of the event after its last attempt.

    `outcome`: "succeeded", "failed" (function error), "timed-out", "runtime-exited" or "init-failed" for an
    attempt; "dead-lettered", "dead-letter-failed" or "discarded" (no dead-letter queue) for the event.
    `started` and `at` are drill seconds on the AWS clock (`scale.now()`): when the handler got the event,
    and when the outcome was known. `environment` is the worker's process id (a new one after a reset);
    `init_seconds` the Init phase (AWS seconds) the attempt waited for, on a cold start only, as the "Init
    Duration" of Lambda's REPORT line."""

    function: str
    request_id: str
    attempt: int
    outcome: str
    at: float
    started: float | None = None
    error: str | None = None
    environment: int | None = None
    target: str | None = None
    init_seconds: float | None = None


@dataclass(frozen=True)
class _Answer:
    outcome: str
    result: Any = None
    error: str | None = None

    @property
    def resets_environment(self) -> bool:
        # A timeout or a crash leaves the environment unusable: Lambda resets it and the next invocation runs
        # Init again (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html, "Failures
        # during the invoke phase"); an Init error is retried in a fresh Init as well.
        return self.outcome in ("timed-out", "runtime-exited", "init-failed")


class _Worker:
    """One execution environment: a bootstrap process, its answers and its requests for the AWS clock."""

    def __init__(
        self, fn: FunctionConfig, env: dict[str, str], log: Callable[[str, str], None], scale: TimeScale
    ) -> None:
        self.fn = fn
        self._scale = scale
        self.ready = threading.Event()
        self.init_error: str | None = None
        self.initialised = False  # the modelled Init phase has passed on the AWS clock
        self._stdin_lock = threading.Lock()
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
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
        self.pid = self.process.pid
        threading.Thread(target=self._read_answers, args=(read_fd,), daemon=True).start()
        threading.Thread(target=self._pump, args=(log,), daemon=True).start()

    def _send(self, message: dict[str, Any]) -> None:
        with self._stdin_lock:
            if self.process.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.write(json.dumps(message) + "\n")
                self.process.stdin.flush()

    def _read_answers(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "r") as answers:
            for line in answers:
                message = json.loads(line)
                if "clock" in message:
                    self._send({"now": self._scale.aws_now()})
                elif "ready" in message:
                    self.init_error = message.get("init_error")
                    self.ready.set()
                else:
                    message["at"] = self._scale.now()
                    self._answers.put(message)
        # The process is gone: it will never be ready, and an invocation in progress has no answer coming.
        self.ready.set()
        self._answers.put({"exited": True, "at": self._scale.now()})

    def _pump(self, log: Callable[[str, str], None]) -> None:
        if self.process.stdout is None:
            return
        for line in self.process.stdout:
            if self.fn.sends(line):
                log(self.fn.name, line.rstrip("\n"))

    def invoke(self, invocation: Invocation, deadline: float) -> _Answer:
        """Run the handler until `deadline` (drill seconds on the AWS clock); past it, kill the process."""
        self._send(
            {
                "id": invocation.request_id,
                "request_id": invocation.request_id,
                "event": invocation.event,
                # The context counts in AWS seconds: the functions subtract answer reserves made of real
                # network timeouts (botocore's, which the stand-in does not scale) from it.
                "deadline": self._scale.aws(deadline),
            }
        )
        timed_out = _Answer("timed-out", error=f"Task timed out after {self.fn.timeout:.2f} seconds")
        while True:
            left = deadline - self._scale.now()
            if left <= 0:
                self.kill()
                return timed_out
            try:
                # A held clock runs slower than the wall clock: waiting `left` wall seconds may wake early
                # (then it waits again), never late.
                message = self._answers.get(timeout=max(left, 0.002))
            except queue.Empty:
                continue
            if not message.get("exited") and message.get("id") != invocation.request_id:
                continue
            if message["at"] > deadline:  # answered (or died), but after AWS would have killed it
                self.kill()
                return timed_out
            if message.get("exited"):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
                code = self.process.returncode
                return _Answer("runtime-exited", error=f"Runtime exited with error: exit status {code}")
            if message.get("init_error"):
                return _Answer("init-failed", error=str(message["error"]))
            if "error" in message:
                return _Answer("failed", error=str(message["error"]))
            return _Answer("succeeded", result=message.get("result"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with self._stdin_lock, contextlib.suppress(OSError):
            if self.process.stdin:
                self.process.stdin.close()


_LIVE: set[LambdaRuntime] = set()


@atexit.register
def _stop_leftovers() -> None:
    """Whatever ends the interpreter, no worker process outlives it."""
    for runtime in list(_LIVE):
        runtime.kill_workers()


class LambdaRuntime(Lifecycle):
    """Functions loaded from moto, invoked asynchronously in their environments; a context manager that stops
    every worker."""

    def __init__(
        self,
        aws: Aws,
        code_dirs: dict[str, Path],
        log: Callable[[str, str], None] | None = None,
        env_overrides: Callable[[str, dict[str, str]], dict[str, str]] | None = None,
        *,
        scale: TimeScale | None = None,
        dead_letters: Mapping[str, str] | None = None,
    ) -> None:
        self._aws = aws
        self._code_dirs = code_dirs
        self._log = log or (lambda _fn, _line: None)
        self._env_overrides = env_overrides or (lambda _name, env: env)
        self.scale = scale or TimeScale(factor=1.0)
        # Function name -> DeadLetterConfig.TargetArn, for what moto's GetFunction does not answer (moto 5
        # drops DeadLetterConfig); moto's answer wins when it has one.
        self._dead_letters = dict(dead_letters or {})
        self.functions: dict[str, FunctionConfig] = {}
        self._queues: dict[str, queue.Queue[Invocation | None]] = {}
        self._threads: list[threading.Thread] = []
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: dict[str, Any] = {}
        self.invocations: list[tuple[str, str, Any]] = []
        self.attempts: list[Attempt] = []
        _LIVE.add(self)

    # ------------------------------------------------------------------ configuration
    def load(self) -> None:
        """Read every function's configuration from moto and start its event queue."""
        client = self._aws.client("lambda")
        from_stacks = stack_logging_configs(self._aws)
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
                try:
                    retries = client.get_function_event_invoke_config(FunctionName=name).get(
                        "MaximumRetryAttempts", DEFAULT_MAX_RETRIES
                    )
                except client.exceptions.ClientError:  # no event invoke config: Lambda's defaults
                    retries = DEFAULT_MAX_RETRIES
                configuration = client.get_function(FunctionName=name)["Configuration"]
                dead_letter = (configuration.get("DeadLetterConfig") or {}).get("TargetArn") or (
                    self._dead_letters.get(name)
                )
                logging_config = from_stacks.get(name) or configuration.get("LoggingConfig") or {}
                config = FunctionConfig(
                    name=name,
                    arn=fn["FunctionArn"],
                    handler=fn["Handler"],
                    timeout=float(fn.get("Timeout", 3)),
                    environment=dict((fn.get("Environment") or {}).get("Variables") or {}),
                    code_dir=self._code_dirs[module],
                    memory=int(fn.get("MemorySize", 128)),
                    concurrency=int(reserved) if reserved else DEFAULT_CONCURRENCY,
                    dead_letter_arn=dead_letter,
                    max_retries=int(retries),
                    runtime=str(fn["Runtime"]),
                    log_format=logging_config.get("LogFormat", "Text"),
                    application_log_level=logging_config.get("ApplicationLogLevel", "INFO"),
                    system_log_level=logging_config.get("SystemLogLevel", "INFO"),
                    log_group=logging_config.get("LogGroup", ""),
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

    # ------------------------------------------------------------------ invocation
    def invoke_async(self, name_or_arn: str, event: Any, source: str = "") -> Future[Any]:
        """An asynchronous ('Event') invocation; the future holds the answer of the attempt that succeeded,
        or the last attempt's error once the event has gone to the dead-letter queue (or was discarded)."""
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
            # Set by Lambda; botocore puts it in the User-Agent (exec-env/...), which the stand-in's API
            # servers read to keep a function's API calls off the AWS clock (moto_server.lambda_api_call).
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": fn.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.log_group or f"/aws/lambda/{fn.name}",
            # What the runtime formats the log by (Lambda developer guide, "Log-level filtering": "Lambda sets
            # the application log level in the runtime using the AWS_LAMBDA_LOG_LEVEL environment variable"
            # and the format with AWS_LAMBDA_LOG_FORMAT); a level only with JSON, which level filtering needs.
            "AWS_LAMBDA_LOG_FORMAT": fn.log_format,
            **({"AWS_LAMBDA_LOG_LEVEL": fn.application_log_level} if fn.log_format == "JSON" else {}),
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "_HANDLER": fn.handler,
            "PHOENIX_FUNCTION_ARN": fn.arn,
        }
        env.update(self._env_overrides(fn.name, dict(fn.environment)))
        return env

    def _start(self, fn: FunctionConfig) -> _Worker | None:
        """A new environment's process, started now, in the background (only an invocation that has to wait
        for it holds the clock: `_initialise`); None once the runtime is stopping."""
        with self._lock:
            if self._stopping.is_set():
                return None
            worker = _Worker(fn, self._env(fn), self._log, self.scale)
            self._workers.append(worker)
        return worker

    def _initialise(self, worker: _Worker) -> bool:
        """Make `worker` an initialised environment; False when the runtime stops meanwhile."""
        if not worker.ready.is_set():
            # The process is the stand-in's overhead, not AWS time: AWS would have the environment by now.
            with self.scale.hold(f"lambda init: {worker.fn.name}"):
                worker.ready.wait(READY_WALL_LIMIT)
        if not worker.initialised:
            # An on-demand environment runs its Init phase when Lambda creates it for an invocation; the
            # stand-in's workers started ahead of time are not AWS environments until then. The Init phase
            # ends with the runtime's first Next request (the worker's ready signal)
            # (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
            if not self.scale.sleep(self.scale.drill(INIT_SECONDS), self._stopping):
                return False
            worker.initialised = True
        return True

    def _serve(self, fn: FunctionConfig) -> None:
        """One slot of the function's concurrency: one environment at a time, replaced after a reset."""
        worker = self._start(fn)
        q = self._queues[fn.name]
        while True:
            invocation = q.get()
            if invocation is None:
                break
            if worker is not None and not worker.alive():
                worker.kill()
                worker = self._start(fn)
            cold = worker is not None and not worker.initialised
            if worker is None or not self._initialise(worker):
                invocation.future.set_exception(RuntimeError("Lambda runtime stopped"))
                continue
            invocation.attempt += 1
            started = self.scale.now()
            if worker.alive() and worker.ready.is_set():
                # The Timeout bounds the Invoke phase: "the maximum amount of time in seconds that a Lambda
                # function can run" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
                answer = worker.invoke(invocation, started + self.scale.drill(fn.timeout))
            else:
                answer = _Answer("init-failed", error="Runtime.Unknown: the environment did not start")
            self._record(
                Attempt(
                    fn.name,
                    invocation.request_id,
                    invocation.attempt,
                    answer.outcome,
                    at=self.scale.now(),
                    started=started,
                    error=answer.error,
                    environment=worker.pid,
                    init_seconds=INIT_SECONDS if cold else None,
                )
            )
            if answer.resets_environment:
                worker.kill()
                worker = self._start(fn)
            if answer.outcome == "succeeded":
                invocation.future.set_result(answer.result)
            else:
                self._log(fn.name, json.dumps({"runtime": "error", "error": answer.error}))
                self._failed(fn, invocation, str(answer.error))
        if worker is not None:
            worker.kill()

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    # ------------------------------------------------------------------ retries and dead letters
    def _failed(self, fn: FunctionConfig, invocation: Invocation, error: str) -> None:
        """Retry the event after Lambda's delay or, its retries spent, hand it to the dead-letter queue."""
        if invocation.attempt <= fn.max_retries:
            delay = RETRY_DELAYS_SECONDS[min(invocation.attempt, len(RETRY_DELAYS_SECONDS)) - 1]
            due = self.scale.now() + self.scale.drill(delay)
            # The event waits in Lambda's queue meanwhile, holding no concurrency.
            thread = threading.Thread(
                target=self._retry_at,
                args=(invocation, due),
                name=f"lambda-retry-{fn.name}-{invocation.attempt}",
                daemon=True,
            )
            thread.start()
            return
        self._dead_letter(fn, invocation, error)
        invocation.future.set_exception(RuntimeError(error))

    def _retry_at(self, invocation: Invocation, due: float) -> None:
        if self.scale.sleep_until(due, self._stopping):
            with self._lock:
                if not self._stopping.is_set():
                    self._queues[invocation.function].put(invocation)
                    return
        invocation.future.set_exception(RuntimeError("Lambda runtime stopped before the retry"))

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._aws.client(service)
            return self._clients[service]

    def _dead_letter(self, fn: FunctionConfig, invocation: Invocation, error: str) -> None:
        target = fn.dead_letter_arn
        if not target:
            # "Functions that don't specify a DLQ will discard events after they have exhausted their
            # retries." (https://docs.aws.amazon.com/lambda/latest/dg/dlq.html, the guide's earlier edition)
            self._record(
                Attempt(
                    fn.name,
                    invocation.request_id,
                    invocation.attempt,
                    "discarded",
                    self.scale.now(),
                    error=error,
                )
            )
            return
        message = error.encode()[:ERROR_MESSAGE_BYTES].decode(errors="ignore")
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": invocation.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": str(FUNCTION_ERROR_CODE)},
            "ErrorMessage": {"DataType": "String", "StringValue": message},
        }
        body = json.dumps(invocation.event)
        outcome = "dead-lettered"
        try:
            service = target.split(":")[2]
            if service == "sqs":
                _, _, _, _, account, queue_name = target.split(":", 5)
                sqs = self._client("sqs")
                url = sqs.get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
                sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
            elif service == "sns":
                self._client("sns").publish(TopicArn=target, Message=body, MessageAttributes=attributes)
            else:
                raise ValueError(f"not an SQS queue or SNS topic: {target}")
        except Exception as exc:
            # On AWS: the DeadLetterErrors metric, and the event is lost.
            outcome = "dead-letter-failed"
            self._log(
                fn.name, json.dumps({"runtime": "dead-letter error", "target": target, "error": str(exc)})
            )
        self._record(
            Attempt(
                fn.name,
                invocation.request_id,
                invocation.attempt,
                outcome,
                self.scale.now(),
                error=error,
                target=target,
            )
        )

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        for name, q in self._queues.items():
            for _ in range(self.functions[name].concurrency):
                q.put(None)
        for thread in self._threads:
            thread.join(timeout=15)
        self.kill_workers()
        for q in self._queues.values():  # whatever the slots did not reach
            while True:
                try:
                    left = q.get_nowait()
                except queue.Empty:
                    break
                if left is not None and not left.future.done():
                    left.future.set_exception(RuntimeError("Lambda runtime stopped"))
        _LIVE.discard(self)

    def kill_workers(self) -> None:
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if worker.alive():
                worker.kill()


def stack_logging_configs(aws: Aws) -> dict[str, dict[str, str]]:
    """Function name -> the LoggingConfig of the AWS::Lambda::Function that created it, read from its stack's
    template (GetTemplate) with each Ref resolved to the stack's parameter or resource: moto's CloudFormation
    drops the property, which GetFunction answers on AWS. One source of truth, the template."""
    cloudformation = aws.client("cloudformation")
    configs: dict[str, dict[str, str]] = {}
    for page in cloudformation.get_paginator("describe_stacks").paginate():
        for stack in page["Stacks"]:
            body = cloudformation.get_template(StackName=stack["StackId"])["TemplateBody"]
            template = body if isinstance(body, dict) else parse_template(body)
            wanted = {
                logical: resource["Properties"]["LoggingConfig"]
                for logical, resource in (template.get("Resources") or {}).items()
                if resource.get("Type") == "AWS::Lambda::Function"
                and "LoggingConfig" in (resource.get("Properties") or {})
            }
            if not wanted:
                continue
            summaries = cloudformation.list_stack_resources(StackName=stack["StackId"])[
                "StackResourceSummaries"
            ]
            physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}
            refs = {
                **{p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters") or []},
                **physical,
            }
            for logical, config in wanted.items():
                if logical in physical:
                    where = f"{stack['StackName']} {logical} LoggingConfig"
                    configs[physical[logical]] = {
                        k: _literal(v, refs, f"{where}.{k}") for k, v in config.items()
                    }
    return configs


def _literal(value: Any, refs: Mapping[str, str], where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and list(value) == ["Ref"] and value["Ref"] in refs:
        return refs[value["Ref"]]
    raise ValueError(
        f"{where}: the stand-in reads a string or a Ref to a parameter or resource, got {value!r}"
    )
