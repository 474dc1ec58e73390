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
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import traceback
import uuid
from typing import IO, Any

_CHANNEL = threading.Lock()


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
    # As Lambda's Python runtime: a handler on the root logger writing to the function's log (here stdout);
    # the root level stays WARNING, so only loggers the function sets lower log INFO lines.
    handler_out = logging.StreamHandler(sys.stdout)
    handler_out.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(handler_out)
    code_dir, handler_name = sys.argv[1], sys.argv[2]
    sys.path.insert(0, code_dir)
    module_name, function_name = handler_name.rsplit(".", 1)
    runtime = _Runtime(os.fdopen(int(sys.argv[3]), "w", buffering=1))
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:
        init_error: str | None = f"Runtime.ImportModuleError: {exc!r}"
        traceback.print_exc()
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
            try:
                context = Context(
                    request.get("request_id") or str(uuid.uuid4()), request["deadline"], runtime
                )
                result = handler(request["event"], context)
                answer["result"] = json.loads(json.dumps(result, default=str))
            except Exception as exc:
                traceback.print_exc()
                answer["error"] = f"{type(exc).__name__}: {exc}"
        sys.stdout.flush()
        sys.stderr.flush()
        with _CHANNEL:
            runtime.send(answer)


if __name__ == "__main__":
    main()
