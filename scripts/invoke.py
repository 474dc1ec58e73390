"""`make invoke FN=auto_rollback EVENT=tests/events/sns-cloudwatch-alarm.json`: one function, one event file.

    python scripts/invoke.py FN EVENT_FILE

FN is a function's module in lambdas/ (scripts/deploy.py's LAMBDAS); EVENT_FILE a JSON event as AWS sends
it (tests/events/ holds one per trigger). Both are checked before anything starts: a wrong name, a missing
file or a file that is not JSON is one line and exit status 2.

Where the function runs:
- without AWS_ENDPOINT_URL, against an embedded stand-in built for this one call: moto and the CodeDeploy
  stand-in, with the three stacks created from cloudformation/ as `make deploy` creates them with the
  default parameters (local/aws/cloudformation.py: what moto skips is created from the same templates) and
  the Lambda code uploaded to the artifact bucket. So the function gets the environment and Timeout the
  Lambda stack gives it, and its API calls find the alarms, topics and deployment group it is configured
  with: its log shows the decisions it makes on a freshly deployed account (no deployment yet), not
  configuration errors. There is no load balancer data plane and no task (that is `make demo`): the health
  check's probes of the stack's ALB name fail, as they would with nothing serving. Nothing outside the
  stand-in is touched, and it is gone when the command ends (about 8 s in all).
- with AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_<SERVICE>, as boto3 reads them), against that endpoint, where
  `make deploy` created the stacks: the function's configuration is read there (the function whose Handler is
  FN.lambda_handler; PROJECT_NAME / ENVIRONMENT choose among several), and nothing is created.

The handler runs as Lambda runs it (local/aws/lambda_runtime.py: its own process, the function's environment,
its Timeout, a context with the request id and a deadline), invoked once as a synchronous (RequestResponse)
Invoke: no retries and no dead-letter queue, which apply to asynchronous invocations only
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html). Its log lines are printed
as it writes them, then its outcome and result; exit status 1 when it raised, timed out or could not start.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from local.aws.cloudformation import Stacks  # noqa: E402 - needs the path above
from local.aws.codedeploy import CodeDeployServer, CodeDeployService  # noqa: E402
from local.aws.lambda_runtime import (  # noqa: E402
    FunctionConfig,
    LambdaRuntime,
    stack_logging_configs,
)
from local.aws.moto_server import Aws, moto_server  # noqa: E402
from local.drill.world import CONNECTION_ARN, GITHUB_BRANCH, GITHUB_REPO  # noqa: E402
from scripts.deploy import (  # noqa: E402
    LAMBDAS,
    Names,
    aws_error_line,
    lambda_sources,
    traffic_parameter,
    write_zip,
)
from scripts.stacks import CLUSTER, LAMBDA, PIPELINE, tags  # noqa: E402

# Wall seconds allowed beyond the function's Timeout for its process to start and answer (the runtime kills
# the handler at the Timeout itself).
START_ALLOWANCE_SECONDS = 30.0


def say(message: str) -> None:
    print(f"invoke: {message}", flush=True)


class InvokeError(Exception):
    """Stops the command with its message (no stack trace)."""


def load_event(path: str) -> Any:
    """The event file's JSON; InvokeError names the problem."""
    if not path:
        raise InvokeError("EVENT is required: a JSON event file, e.g. tests/events/sns-cloudwatch-alarm.json")
    file = Path(path)
    if not file.is_file():
        raise InvokeError(f"EVENT={path}: no such file (tests/events/ holds one per trigger)")
    try:
        return json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvokeError(f"EVENT={path} is not JSON: {' '.join(str(exc).split())}") from None


def check_function(module: str) -> str:
    if module not in LAMBDAS:
        raise InvokeError(f"FN={module or '(empty)'} is not one of {', '.join(LAMBDAS)}")
    return module


# ---------------------------------------------------------------- where the function runs
def user_endpoint(env: Mapping[str, str]) -> Aws | None:
    """The endpoints the user set (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>), or None."""
    endpoint = env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    prefix = "AWS_ENDPOINT_URL_"
    services = {key[len(prefix) :].lower(): url for key, url in env.items() if key.startswith(prefix) and url}
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Aws(endpoint=endpoint, endpoints=services, region=region)


def _package(aws: Aws, bucket: str) -> None:
    """`make package`'s code (without the requirements, which this interpreter has) in the artifact bucket
    under the Lambda stack's default keys, as the README's step 2 uploads it."""
    s3 = aws.client("s3")
    for module in LAMBDAS:
        buffer = io.BytesIO()
        write_zip(buffer, lambda_sources(module))
        s3.put_object(Bucket=bucket, Key=f"{module}.zip", Body=buffer.getvalue())


@contextmanager
def embedded_stand_in() -> Iterator[Aws]:
    """moto and the CodeDeploy stand-in with the three stacks as `make deploy` creates them (defaults)."""
    with ExitStack() as stack:
        moto = stack.enter_context(moto_server())
        codedeploy = stack.enter_context(CodeDeployServer(CodeDeployService()))
        aws = moto.with_endpoint("codedeploy", codedeploy.endpoint_url)
        names = Names()
        stacks = Stacks(aws, tags=tags(names.project, names.environment))
        stacks.create(CLUSTER, {})
        bucket = stacks.exports[CLUSTER.export("ArtifactBucketName")]
        _package(aws, bucket)
        stacks.create(LAMBDA, {"ArtifactBucket": bucket, "TestTraffic": traffic_parameter()})
        stacks.create(
            PIPELINE,
            {
                "GitHubRepo": GITHUB_REPO,
                "GitHubBranch": GITHUB_BRANCH,
                "GitHubConnectionArn": CONNECTION_ARN,
                "ArtifactBucket": bucket,
            },
        )
        yield aws


def find_function(aws: Aws, module: str, names: Names) -> dict[str, Any]:
    """The deployed function whose handler is `module`.lambda_handler (GetFunctionConfiguration's shape)."""
    client = aws.client("lambda")
    found = [
        fn
        for page in client.get_paginator("list_functions").paginate()
        for fn in page["Functions"]
        if str(fn.get("Handler", "")).rsplit(".", 1)[0] == module
    ]
    if len(found) > 1:
        prefix = f"{names.project}-{names.environment}-"
        found = [fn for fn in found if str(fn["FunctionName"]).startswith(prefix)] or found
    if not found:
        raise InvokeError(
            f"no function with the handler {module}.lambda_handler at {aws.endpoint}: run make deploy first"
        )
    if len(found) > 1:
        listed = ", ".join(str(fn["FunctionName"]) for fn in found)
        raise InvokeError(f"several functions run {module}: {listed}; set PROJECT_NAME and ENVIRONMENT")
    return dict(found[0])


def function_config(
    configuration: Mapping[str, Any], code_dir: Path, logging_config: Mapping[str, str]
) -> FunctionConfig:
    """One synchronous invocation: no retries, no dead-letter queue (asynchronous invocations only)."""
    return FunctionConfig(
        name=str(configuration["FunctionName"]),
        arn=str(configuration["FunctionArn"]),
        handler=str(configuration["Handler"]),
        timeout=float(configuration.get("Timeout", 3)),
        environment=dict((configuration.get("Environment") or {}).get("Variables") or {}),
        code_dir=code_dir,
        memory=int(configuration.get("MemorySize", 128)),
        concurrency=1,
        dead_letter_arn=None,
        max_retries=0,
        runtime=str(configuration["Runtime"]),
        log_format=logging_config.get("LogFormat", "Text"),
        application_log_level=logging_config.get("ApplicationLogLevel", "INFO"),
        system_log_level=logging_config.get("SystemLogLevel", "INFO"),
        log_group=logging_config.get("LogGroup", ""),
    )


def _credentials(env: Mapping[str, str]) -> dict[str, str]:
    """The user's own credentials for their endpoint (the stand-in's test ones otherwise)."""
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    return {key: env[key] for key in keys if env.get(key)}


def invoke(aws: Aws, module: str, event: Any, env: Mapping[str, str]) -> int:
    """Run the function once with `event`; print its log lines, then its outcome. 0 when it succeeded."""
    configuration = find_function(aws, module, Names.from_env(env))
    name = str(configuration["FunctionName"])
    own_credentials = _credentials(env) if user_endpoint(env) else {}
    with tempfile.TemporaryDirectory(prefix="phoenix-invoke-") as code_root:
        code_dir = Path(code_root) / module
        for arcname, source in lambda_sources(module):  # the zip's files: what `make package` ships
            code_dir.mkdir(parents=True, exist_ok=True)
            (code_dir / arcname).write_bytes(source.read_bytes())
        # moto keeps no LoggingConfig: the function's stack template says it (as the runtime reads it).
        logging_config = stack_logging_configs(aws).get(name) or configuration.get("LoggingConfig") or {}
        config = function_config(configuration, code_dir, logging_config)
        say(f"{name} ({config.handler}, Timeout {config.timeout:.0f} s) at {aws.endpoint}")
        with LambdaRuntime(
            aws,
            {module: code_dir},
            log=lambda _fn, line: print(line, flush=True),
            env_overrides=lambda _fn, variables: {**variables, **own_credentials},
        ) as runtime:
            runtime.add(config)
            started = time.monotonic()
            future = runtime.invoke_async(name, event, source="make invoke")
            try:
                result = future.result(timeout=config.timeout + START_ALLOWANCE_SECONDS)
            except (RuntimeError, TimeoutError):  # a failed attempt: its reason is in `attempts`
                result = None
            seconds = time.monotonic() - started
            attempt = runtime.attempts[0] if runtime.attempts else None
    if attempt is None:
        print(f"invoke: {name} did not answer within {seconds:.0f} s", file=sys.stderr)
        return 1
    if attempt.outcome != "succeeded":
        print(f"invoke: {name} {attempt.outcome} after {seconds:.1f} s: {attempt.error}", file=sys.stderr)
        return 1
    say(f"{name} succeeded in {seconds:.1f} s; result: {json.dumps(result)}")
    return 0


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        module = check_function(argv[1])
        event = load_event(argv[2])
    except InvokeError as err:
        print(f"invoke: {err}", file=sys.stderr)
        return 2
    try:
        aws = user_endpoint(env)
        if aws is not None:
            return invoke(aws, module, event, env)
        say("creating the three stacks in an embedded stand-in (moto, CodeDeploy), as make deploy does")
        with embedded_stand_in() as stand_in:
            return invoke(stand_in, module, event, env)
    except InvokeError as err:
        print(f"invoke: {err}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, Boto3Error) as err:  # the endpoint, not the function
        print(f"invoke: {aws_error_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
