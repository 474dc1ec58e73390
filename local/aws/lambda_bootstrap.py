"""The Lambda runtime's worker process (the stand-in for one execution environment).

Run by local/aws/lambda_runtime.py as `python -I lambda_bootstrap.py CODE_DIR MODULE.FUNCTION FD`. It imports
the handler from CODE_DIR once (module-level configuration is read then, from this process's environment, as
in Lambda's Init phase), then writes `{"ready": true}` (with `"init_error"` when the import failed) on file
descriptor FD: the runtime starts the environment's modelled Init time from that signal. Then it reads one
invocation per line on stdin (`{"id", "request_id", "event", "deadline"}`) and writes one answer per line on
FD (`{"id", "result"}` or `{"id", "error"}`). stdout and stderr are the function's logs.

The deadline is in AWS seconds on the stand-in's AWS clock (local/timescale.py), which stands still while
the stand-in holds it: the context asks the runtime for the clock (`{"clock": true}` on FD, answered with
`{"now": aws_seconds}` on stdin) rather than reading this process's wall clock, so the remaining time counts
down exactly as the runtime's kill deadline does, in the AWS milliseconds the function's Timeout is stated in.

Logging is set up as Lambda's Python runtime sets it (awslambdaric `bootstrap._setup_logging`, reproduced
below), from the AWS_LAMBDA_LOG_FORMAT and AWS_LAMBDA_LOG_LEVEL that Lambda puts in the environment from the
function's LoggingConfig: a handler on the root logger adding the invocation's request id to every record,
formatting it as Lambda's JSON object (LogFormat JSON) or as Lambda's tab-separated text line (Text), and
with a log level the root logger's level (TRACE read as DEBUG). An error the handler raises is logged as
the runtime logs it (`log_error`).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import IO, Any

_CHANNEL = threading.Lock()


class _Invocation:
    request_id = ""  # the invocation in progress ("" during Init): the runtime's _GLOBAL_AWS_REQUEST_ID


# Lambda's Python runtime, https://github.com/aws/aws-lambda-python-runtime-interface-client:
# awslambdaric/lambda_runtime_log_utils.py (JsonFormatter, _RESERVED_FIELDS) and bootstrap.py (the text
# format, LambdaLoggerFilter, log_error). The Lambda developer guide documents the result: "Log and monitor
# Python Lambda functions" (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html) and "Log-level
# filtering" (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html).
_TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s"
_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_RESERVED_FIELDS = frozenset(
    {
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
        "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread",
        "threadName", "processName", "process", "aws_request_id", "tenant_id", "_frame_type",
    }
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    """Lambda's JSON log line: timestamp, level, message, logger, the error's details when the record carries
    one, requestId, then every other attribute of the record (the `extra=` keys) as a top-level key; keys
    whose value is None are left out. A value JSON cannot encode makes the line fail, as on Lambda."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        error = record.exc_info
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(error[2]) if error else None,
            "errorType": error[0].__name__ if error and error[0] else None,
            "errorMessage": str(error[1]) if error else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": f"{record.pathname}:{record.funcName}:{record.lineno}" if error else None,
        }
        line.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED_FIELDS and k not in line)
        return json.dumps({k: v for k, v in line.items() if v is not None}, ensure_ascii=False)


def _timestamp(created: float) -> str:
    """2026-11-30T10:02:07.523Z"""
    return datetime.fromtimestamp(created, tz=UTC).strftime(_DATETIME_FORMAT + ".%f")[:-3] + "Z"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _Invocation.request_id
        return True


def _log_format() -> str:
    return "JSON" if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON" else "Text"


def setup_logging() -> None:
    """The root logger as Lambda's runtime leaves it: one handler writing the function's log (stdout)."""
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    if _log_format() == "JSON":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, _DATETIME_FORMAT))
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    level = "DEBUG" if level == "TRACE" else level
    if level in logging.getLevelNamesMapping():
        root.setLevel(level)  # otherwise it stays at WARNING
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)


def log_error(error: BaseException, request_id: str | None) -> None:
    """An unhandled error as the runtime logs it: one JSON object (ERROR) or one text line whose lines are
    joined by carriage returns; frames of this bootstrap left out."""
    frames = traceback.extract_tb(error.__traceback__)
    while frames and frames[0].filename == __file__:
        frames.pop(0)
    trace = traceback.format_list(frames)
    if _log_format() == "JSON":
        line = {
            "timestamp": time.strftime(_DATETIME_FORMAT, time.gmtime()),
            "level": "ERROR",
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id if request_id is not None else "",
            "stackTrace": trace,
        }
        sys.stdout.write(json.dumps(line) + "\n")
    else:
        lines = [f"[ERROR] {type(error).__name__}: {error}", "Traceback (most recent call last):"]
        lines += [_nbsp_indent(part) for frame in trace for part in frame.splitlines()]
        sys.stdout.write("\r".join(lines) + "\n")
    sys.stdout.flush()


def _nbsp_indent(line: str) -> str:
    """The runtime indents a text error's trace lines with no-break spaces (one line in CloudWatch)."""
    body = line.lstrip(" ")
    return "\u00a0" * (len(line) - len(body)) + body


class _Runtime:
    """The pipes to the runtime: answers and clock requests out on FD, requests and the clock in on stdin."""

    def __init__(self, answers: IO[str]) -> None:
        self.answers = answers

    def send(self, message: dict[str, Any]) -> None:
        self.answers.write(json.dumps(message) + "\n")
        self.answers.flush()

    def now(self) -> float:
        """The AWS clock (AWS seconds), from the runtime; while a handler runs, stdin carries only this."""
        with _CHANNEL:
            self.send({"clock": True})
            line = sys.stdin.readline()
        if not line:  # the runtime is gone: this environment is being torn down
            raise SystemExit(0)
        return float(json.loads(line)["now"])


class Context:
    """The Lambda context object: identity, memory and a deadline that honours the function's Timeout."""

    def __init__(self, request_id: str, deadline: float, runtime: _Runtime) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("PHOENIX_FUNCTION_ARN", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = deadline
        self._runtime = runtime

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._runtime.now()) * 1000))


def main() -> None:
    setup_logging()
    code_dir, handler_name = sys.argv[1], sys.argv[2]
    sys.path.insert(0, code_dir)
    module_name, function_name = handler_name.rsplit(".", 1)
    runtime = _Runtime(os.fdopen(int(sys.argv[3]), "w", buffering=1))
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:
        init_error: str | None = f"Runtime.ImportModuleError: {exc!r}"
        log_error(exc, None)
    else:
        init_error = None
    sys.stdout.flush()
    sys.stderr.flush()
    # Init is over (Lambda's runtime signals it with its first Next request): the runtime may invoke.
    runtime.send({"ready": True, "init_error": init_error})
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        request = json.loads(line)
        if "id" not in request:  # a clock answer nobody waits for any more
            continue
        answer: dict[str, Any] = {"id": request["id"]}
        if init_error:
            answer["error"] = init_error
            answer["init_error"] = True
        else:
            _Invocation.request_id = request_id = request.get("request_id") or str(uuid.uuid4())
            try:
                context = Context(request_id, request["deadline"], runtime)
                result = handler(request["event"], context)
                answer["result"] = json.loads(json.dumps(result, default=str))
            except Exception as exc:
                log_error(exc, request_id)
                answer["error"] = f"{type(exc).__name__}: {exc}"
        sys.stdout.flush()
        sys.stderr.flush()
        with _CHANNEL:
            runtime.send(answer)


if __name__ == "__main__":
    main()
