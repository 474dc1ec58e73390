"""The Lambda runtime stand-in (local/aws/lambda_runtime.py) as strict as AWS: the scaled Timeout and its
kill, the Init phase on the AWS clock (worker start-up held), asynchronous retries after 1 and 2 AWS
minutes, the dead-letter queue and its attributes, reserved concurrency, the configuration read from moto,
and the function's log as Lambda's Python runtime writes it (LoggingConfig: JSON or Text, the level filter).

Each test writes a tiny handler module to its tmp_path and adds it with `runtime.add(...)` (or creates it in
moto and `load()`s it); the AWS clock runs 240-600 times faster than the wall clock. Waits are for conditions
with generous deadlines; timings are checked as lower bounds on the AWS clock only.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.aws.lambda_runtime import (
    INIT_SECONDS,
    Attempt,
    FunctionConfig,
    LambdaRuntime,
)
from local.aws.moto_server import Aws, moto_server
from local.timescale import TimeScale
from scripts.stacks import LAMBDA, load_template

WAIT = 60.0  # wall seconds: a generous deadline for any outcome
NOWHERE = Aws(endpoint="http://127.0.0.1:9")  # for handlers that call no AWS API
RUNTIME = load_template(LAMBDA.template)["Mappings"]["LambdaRuntime"]["Python"]["Identifier"]


def handler_dir(tmp_path: Path, source: str, module: str = "fn") -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / f"{module}.py").write_text(textwrap.dedent(source))
    return code


def config(code: Path, *, timeout: float, name: str = "fn", **extra: Any) -> FunctionConfig:
    return FunctionConfig(
        name=name,
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        handler="fn.handler",
        timeout=timeout,
        environment={},
        code_dir=code,
        runtime=RUNTIME,
        **extra,
    )


def of_request(runtime: LambdaRuntime, request_id: str) -> list[Attempt]:
    return [a for a in runtime.attempts if a.request_id == request_id]


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with moto_server() as endpoint:
        yield endpoint


def dead_letter_queue(aws: Aws, name: str) -> tuple[str, str]:
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def test_context_remaining_time_counts_down_the_timeout_in_aws_milliseconds(tmp_path: Path) -> None:
    code = handler_dir(
        tmp_path,
        """
        import time

        def handler(event, context):
            first = context.get_remaining_time_in_millis()
            time.sleep(0.05)
            return [first, context.get_remaining_time_in_millis()]
        """,
    )
    scale = TimeScale(factor=600)
    with LambdaRuntime(NOWHERE, {}, scale=scale) as runtime:
        runtime.add(config(code, timeout=900))  # 900 AWS s = 1.5 drill s
        first, later = runtime.invoke_async("fn", {}).result(timeout=WAIT)
    # 50 wall ms later, 30 AWS seconds (x600) have gone: the context counts on the AWS clock, in AWS ms.
    assert 900_000 / 2 <= first <= 900_000
    assert first - later >= scale.aws(0.05) * 1000 * 0.9


def test_an_overrun_is_killed_with_the_templates_timeout_and_its_environment_replaced(tmp_path: Path) -> None:
    code = handler_dir(
        tmp_path,
        """
        import os
        import time

        def handler(event, context):
            if event == "hang":
                time.sleep(60)
            return os.getpid()
        """,
    )
    scale = TimeScale(factor=600)
    with LambdaRuntime(NOWHERE, {}, scale=scale) as runtime:
        runtime.add(config(code, timeout=60, concurrency=1, max_retries=0))  # 60 AWS s = 0.1 drill s
        with pytest.raises(RuntimeError, match=r"^Task timed out after 60\.00 seconds$"):
            runtime.invoke_async("fn", "hang").result(timeout=WAIT)
        pid = runtime.invoke_async("fn", "pid").result(timeout=WAIT)
    killed, discarded, served = runtime.attempts
    assert (killed.outcome, discarded.outcome, served.outcome) == ("timed-out", "discarded", "succeeded")
    assert killed.started is not None
    assert killed.at - killed.started >= scale.drill(60)
    assert killed.environment != pid == served.environment


def test_a_failing_async_invocation_is_attempted_three_times_then_dead_lettered(
    tmp_path: Path, aws: Aws
) -> None:
    code = handler_dir(
        tmp_path,
        """
        def handler(event, context):
            raise ValueError("boom: " + event["n"])
        """,
    )
    url, arn = dead_letter_queue(aws, "fails-dlq")
    scale = TimeScale(factor=240)  # the retries wait 0.25 and 0.5 drill s
    event = {"n": "42"}
    with LambdaRuntime(aws, {}, scale=scale) as runtime:
        runtime.add(config(code, timeout=30, dead_letter_arn=arn))
        with pytest.raises(RuntimeError, match="ValueError: boom: 42"):
            runtime.invoke_async("fn", event).result(timeout=WAIT)
    (request_id,) = {a.request_id for a in runtime.attempts}
    first, second, third, delivery = of_request(runtime, request_id)
    assert [a.attempt for a in (first, second, third)] == [1, 2, 3]
    assert {a.outcome for a in (first, second, third)} == {"failed"}
    assert (delivery.outcome, delivery.target) == ("dead-lettered", arn)
    assert second.started is not None
    assert third.started is not None
    # One AWS minute after the first failure, then two after the second (lower bounds on the AWS clock).
    assert second.started - first.at >= scale.drill(60)
    assert third.started - second.at >= scale.drill(120)

    messages = aws.client("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    (message,) = messages
    assert json.loads(message["Body"]) == event
    attributes = message["MessageAttributes"]
    assert attributes["RequestID"] == {"DataType": "String", "StringValue": request_id}
    assert attributes["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert attributes["ErrorMessage"]["DataType"] == "String"
    assert "boom: 42" in attributes["ErrorMessage"]["StringValue"]


def test_a_handler_that_succeeds_on_its_second_attempt_is_not_dead_lettered(tmp_path: Path, aws: Aws) -> None:
    marker = tmp_path / "failed-once"
    code = handler_dir(
        tmp_path,
        f"""
        import pathlib

        MARKER = pathlib.Path({str(marker)!r})

        def handler(event, context):
            if not MARKER.exists():
                MARKER.write_text("x")
                raise RuntimeError("first attempt fails")
            return "ok"
        """,
    )
    url, arn = dead_letter_queue(aws, "recovers-dlq")
    scale = TimeScale(factor=600)
    with LambdaRuntime(aws, {}, scale=scale) as runtime:
        # A Timeout of 0.5 wall s: the retry is under test, not the Timeout (30 AWS s, 0.05 wall s, was
        # overrun on a busy machine).
        runtime.add(config(code, timeout=300, dead_letter_arn=arn))
        assert runtime.invoke_async("fn", {}).result(timeout=WAIT) == "ok"
    assert [(a.attempt, a.outcome) for a in runtime.attempts] == [(1, "failed"), (2, "succeeded")]
    assert "Messages" not in aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_worker_start_up_is_held_and_only_the_modelled_init_is_aws_time(tmp_path: Path) -> None:
    code = handler_dir(
        tmp_path,
        """
        import time

        time.sleep(1.0)  # a slow start of the stand-in's process: 600 AWS s if the clock were not held

        def handler(event, context):
            return "ok"
        """,
    )
    scale = TimeScale(factor=600)
    with LambdaRuntime(NOWHERE, {}, scale=scale) as runtime:
        runtime.add(config(code, timeout=30, concurrency=1))
        began = scale.now()
        assert runtime.invoke_async("fn", {}).result(timeout=WAIT) == "ok"
        took = scale.aws(scale.now() - began)
    assert took >= INIT_SECONDS
    assert took < 300  # not the import's 600 AWS seconds
    held = [h for h in scale.holds if h.reason == "lambda init: fn"]
    assert held
    assert held[0].wall_seconds >= 0.5


def test_a_warm_environment_pays_init_once(tmp_path: Path) -> None:
    code = handler_dir(
        tmp_path,
        """
        def handler(event, context):
            return event
        """,
    )
    scale = TimeScale(factor=600)
    with LambdaRuntime(NOWHERE, {}, scale=scale) as runtime:
        runtime.add(config(code, timeout=30, concurrency=1))
        began = scale.now()
        runtime.invoke_async("fn", 1).result(timeout=WAIT)
        runtime.invoke_async("fn", 2).result(timeout=WAIT)
    cold, warm = runtime.attempts
    assert cold.environment == warm.environment
    assert (cold.init_seconds, warm.init_seconds) == (INIT_SECONDS, None)
    assert cold.started is not None
    assert scale.aws(cold.started - began) >= INIT_SECONDS


def test_reserved_concurrency_runs_one_event_at_a_time(tmp_path: Path) -> None:
    code = handler_dir(
        tmp_path,
        """
        import time

        def handler(event, context):
            time.sleep(0.2)
            return event
        """,
    )
    with LambdaRuntime(NOWHERE, {}, scale=TimeScale(factor=600)) as runtime:
        runtime.add(config(code, timeout=900, concurrency=1))
        futures = [runtime.invoke_async("fn", n) for n in range(3)]
        assert [f.result(timeout=WAIT) for f in futures] == [0, 1, 2]
    runs = sorted(runtime.attempts, key=lambda a: a.at)
    for earlier, later in itertools.pairwise(runs):
        assert later.started is not None
        assert later.started >= earlier.at


def test_load_reads_timeout_retries_and_the_dead_letter_target(tmp_path: Path, aws: Aws) -> None:
    code = handler_dir(tmp_path, "def handler(event, context):\n    return event\n", module="loaded")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(code / "loaded.py", "loaded.py")
    role = aws.client("iam").create_role(RoleName="loaded-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    client = aws.client("lambda")
    client.create_function(
        FunctionName="loaded",
        Runtime=RUNTIME,
        Role=role,
        Handler="loaded.handler",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=77,
    )
    client.put_function_concurrency(FunctionName="loaded", ReservedConcurrentExecutions=1)
    client.put_function_event_invoke_config(FunctionName="loaded", MaximumRetryAttempts=1)
    _, arn = dead_letter_queue(aws, "loaded-dlq")
    with LambdaRuntime(
        aws, {"loaded": code}, scale=TimeScale(factor=600), dead_letters={"loaded": arn}
    ) as runtime:
        runtime.load()
        loaded = runtime.functions["loaded"]
        assert runtime.invoke_async(loaded.arn, {"x": 1}).result(timeout=WAIT) == {"x": 1}
    assert (loaded.timeout, loaded.concurrency, loaded.max_retries) == (77, 1, 1)
    assert loaded.dead_letter_arn == arn


# ---------------------------------------------------------------------------------------------- the log
class Log:
    """What reaches the function's log (the runtime's `log` callback), awaited line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, function: str, line: str) -> None:
        with self._changed:
            self.lines.append(line)
            self._changed.notify_all()

    def until(self, text: str) -> list[str]:
        """Every line up to the first holding `text` (the function writes its lines in order)."""
        with self._changed:
            assert self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout=WAIT)
            return list(self.lines)


LOGGING_HANDLER = """
import logging
import os

log = logging.getLogger("app")

def handler(event, context):
    log.debug("debug line")
    log.info("info line", extra={"n": 1})
    print("plain print")
    log.warning("warn line")
    if event == "raise":
        raise ValueError("boom")
    log.error("last line")
    return {k: os.environ.get(k) for k in ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL")}
"""


def test_json_lines_carry_the_request_id_and_lines_below_the_application_log_level_are_dropped(
    tmp_path: Path,
) -> None:
    code = handler_dir(tmp_path, LOGGING_HANDLER)
    log = Log()
    with LambdaRuntime(NOWHERE, {}, log=log, scale=TimeScale(factor=600)) as runtime:
        runtime.add(config(code, timeout=30, log_format="JSON", application_log_level="WARN"))
        env = runtime.invoke_async("fn", {}).result(timeout=WAIT)
        # the INFO line, the print (no level: INFO) and DEBUG do not reach the log
        line, last = log.until("last line")
    assert json.loads(last)["level"] == "ERROR"
    assert env == {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN"}
    [attempt] = runtime.attempts
    record = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("timestamp"))
    assert record == {
        "level": "WARNING",
        "message": "warn line",
        "logger": "app",
        "requestId": attempt.request_id,
    }


def test_json_info_keeps_extra_keys_and_plain_prints_and_an_error_is_one_json_line(tmp_path: Path) -> None:
    code = handler_dir(tmp_path, LOGGING_HANDLER)
    log = Log()
    with LambdaRuntime(NOWHERE, {}, log=log, scale=TimeScale(factor=600)) as runtime:
        runtime.add(config(code, timeout=30, log_format="JSON", max_retries=0))
        with pytest.raises(RuntimeError, match="ValueError: boom"):
            runtime.invoke_async("fn", "raise").result(timeout=WAIT)
        log.until('"errorType"')  # the function's last line
        lines = log.until('{"runtime"')
    request_id = runtime.attempts[0].request_id
    # the stand-in's own line about the failed attempt may come before the function's, which are piped
    [runtime_line] = [line for line in lines if line.startswith('{"runtime"')]
    info, plain, warning, error = [line for line in lines if line != runtime_line]
    assert (json.loads(info)["message"], json.loads(info)["n"], json.loads(info)["requestId"]) == (
        "info line",
        1,
        request_id,
    )
    assert plain == "plain print"
    assert json.loads(warning)["level"] == "WARNING"
    failure = json.loads(error)
    assert (failure["level"], failure["errorType"], failure["errorMessage"]) == (
        "ERROR",
        "ValueError",
        "boom",
    )
    assert failure["requestId"] == request_id
    assert any("raise ValueError" in frame for frame in failure["stackTrace"])
    assert json.loads(runtime_line)["runtime"] == "error"  # the stand-in's own line, not the function's


def test_text_lines_are_lambdas_tab_separated_lines_and_the_root_logger_stays_at_warning(
    tmp_path: Path,
) -> None:
    code = handler_dir(tmp_path, LOGGING_HANDLER)
    log = Log()
    with LambdaRuntime(NOWHERE, {}, log=log, scale=TimeScale(factor=600)) as runtime:
        runtime.add(config(code, timeout=30))  # LoggingConfig absent: AWS's default, Text
        env = runtime.invoke_async("fn", {}).result(timeout=WAIT)
        plain, warning, last = log.until("last line")
    assert last.startswith("[ERROR]\t")
    assert env == {"AWS_LAMBDA_LOG_FORMAT": "Text", "AWS_LAMBDA_LOG_LEVEL": None}
    request_id = runtime.attempts[0].request_id
    assert plain == "plain print"
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.fullmatch(rf"\[WARNING\]\t{stamp}\t{request_id}\twarn line", warning), warning


def test_a_logging_config_outside_lambdas_values_is_refused_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"^fn: LoggingConfig LogFormat must be one of JSON, Text, got 'json'$"
    ):
        config(tmp_path, timeout=30, log_format="json")
    with pytest.raises(ValueError, match=r"^fn: LoggingConfig ApplicationLogLevel must be one of TRACE, "):
        config(tmp_path, timeout=30, log_format="JSON", application_log_level="WARNING")


STACK = """
Parameters:
  LogLevel: {Type: String, Default: ERROR}
Resources:
  Group:
    Type: AWS::Logs::LogGroup
    Properties: {LogGroupName: /aws/lambda/from-stack}
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument: {Version: "2012-10-17", Statement: []}
  Function:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: from-stack
      Runtime: %s
      Handler: fromstack.handler
      Role: !GetAtt Role.Arn
      Code: {ZipFile: "def handler(event, context): return event"}
      LoggingConfig:
        LogFormat: JSON
        ApplicationLogLevel: !Ref LogLevel
        LogGroup: !Ref Group
"""


def test_load_reads_the_logging_config_from_the_template_of_the_stack_that_created_the_function(
    tmp_path: Path, aws: Aws
) -> None:
    code = handler_dir(tmp_path, "def handler(event, context):\n    return event\n", module="fromstack")
    aws.client("cloudformation").create_stack(
        StackName="logging-config",
        TemplateBody=STACK % RUNTIME,
        Parameters=[{"ParameterKey": "LogLevel", "ParameterValue": "WARN"}],
    )
    with LambdaRuntime(aws, {"fromstack": code}, scale=TimeScale(factor=600)) as runtime:
        runtime.load()
    loaded = runtime.functions["from-stack"]
    assert (loaded.runtime, loaded.log_format, loaded.application_log_level, loaded.system_log_level) == (
        RUNTIME,
        "JSON",
        "WARN",
        "INFO",
    )
    assert loaded.log_group == "/aws/lambda/from-stack"
