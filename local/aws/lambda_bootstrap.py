"""The Lambda runtime's worker process (the stand-in for one warm execution environment).

Run by local/aws/lambda_runtime.py as `python -I lambda_bootstrap.py CODE_DIR MODULE.FUNCTION FD`. It imports
the handler from CODE_DIR once (module-level configuration is read then, from this process's environment, as
on Lambda), then reads one invocation per line on stdin ({"id", "event", "deadline"}) and writes one answer
per line on file descriptor FD ({"id", "result"} or {"id", "error"}). stdout and stderr are the function's
logs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
import uuid
from typing import Any


class Context:
    """The Lambda context object: identity, memory and a deadline that honours the function's Timeout."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("PHOENIX_FUNCTION_ARN", "")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def main() -> None:
    # As Lambda's Python runtime: a handler on the root logger writing to the function's log (here stdout);
    # the root level stays WARNING, so only loggers the function sets lower log INFO lines.
    handler_out = logging.StreamHandler(sys.stdout)
    handler_out.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger().addHandler(handler_out)
    code_dir, handler_name = sys.argv[1], sys.argv[2]
    sys.path.insert(0, code_dir)
    module_name, function_name = handler_name.rsplit(".", 1)
    answers = os.fdopen(int(sys.argv[3]), "w", buffering=1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:
        init_error: str | None = f"Runtime.ImportModuleError: {exc!r}"
        traceback.print_exc()
    else:
        init_error = None
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {"id": request["id"]}
        if init_error:
            answer["error"] = init_error
        else:
            try:
                result = handler(
                    request["event"],
                    Context(request.get("request_id") or str(uuid.uuid4()), request["deadline"]),
                )
                answer["result"] = json.loads(json.dumps(result, default=str))
            except Exception as exc:
                traceback.print_exc()
                answer["error"] = f"{type(exc).__name__}: {exc}"
        sys.stdout.flush()
        sys.stderr.flush()
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
