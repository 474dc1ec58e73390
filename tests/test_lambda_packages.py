"""`make package` zips import and run in a clean virtualenv, without the repository on the path.

The clean interpreter sees what Lambda gives a function: the extracted zip first (/var/task), then the
runtime's boto3/botocore and their dependencies (linked from .venv, nothing else: no moto, no requests, no
repository), and the runtime's logging (the stand-in's copy, local/aws/lambda_bootstrap.py). The Python of
the functions' runtime (lambda-functions.yaml's LambdaRuntime) when this machine has it. Each zip carries the
shared module lambdas/phoenix_common.py, and the function runs with that copy: its decision lines (the shared
DecisionLog) are Lambda's JSON log lines, every field encoded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws.codedeploy import CodeDeployService
from scripts.stacks import LAMBDA, load_template
from tests.commands import moto_endpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = Path(boto3.__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "six.py")
RUNNER = """
import json, logging, sys, time
import lambda_bootstrap
import {module} as function
import phoenix_common

class Context:
    aws_request_id = "package-test"
    def __init__(self):
        self.deadline = time.monotonic() + 120  # the shorter of the functions' Timeouts in the template
    def get_remaining_time_in_millis(self):
        return int((self.deadline - time.monotonic()) * 1000)

class Lines(logging.Handler):
    lines = []
    def emit(self, record):  # a field Lambda's JSON formatter cannot encode fails the run here
        self.lines.append(json.loads(self.format(record)))

for module in (function, phoenix_common):
    assert module.__file__.startswith(sys.argv[1]), module.__file__
assert function.common is phoenix_common
import requests
assert requests.__file__.startswith(sys.argv[1]), requests.__file__
lines = Lines()
lines.setFormatter(lambda_bootstrap.JsonFormatter())
logging.getLogger("phoenix").addHandler(lines)
result = function.lambda_handler(json.loads(sys.argv[2]), Context())
print(json.dumps({{"result": result, "decisions": Lines.lines}}, default=str))
"""


def _python() -> str:
    runtime = load_template(LAMBDA.template)["Mappings"]["LambdaRuntime"]["Python"]["Identifier"]
    for candidate in (shutil.which(runtime), sys.executable):
        if candidate and subprocess.run([candidate, "-c", "import venv"], check=False).returncode == 0:
            return candidate
    return sys.executable


@pytest.fixture(scope="module")
def clean_runtime(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(python of a clean venv, the runtime's packages dir, build dir with the zips)."""
    subprocess.run(
        ["make", "--no-print-directory", "package"], cwd=REPO_ROOT, check=True, capture_output=True
    )
    root = tmp_path_factory.mktemp("lambda-runtime")
    subprocess.run([_python(), "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    runtime = root / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(SITE_PACKAGES / name)
    (runtime / "lambda_bootstrap.py").symlink_to(REPO_ROOT / "local" / "aws" / "lambda_bootstrap.py")
    return root / "venv" / "bin" / "python", runtime, REPO_ROOT / "build"


def run_zip(clean_runtime: tuple[Path, Path, Path], name: str, event: Any, env: dict[str, str]) -> Any:
    """The handler's answer, run from the extracted zip in the clean runtime; its decision lines must all be
    the function's, in Lambda's JSON format."""
    python, runtime, build = clean_runtime
    task = runtime.parent / f"task-{name}"
    shutil.rmtree(task, ignore_errors=True)
    with zipfile.ZipFile(build / f"{name}.zip") as archive:
        archive.extractall(task)
    result = subprocess.run(
        [str(python), "-c", RUNNER.format(module=name), str(task), json.dumps(event)],
        cwd=task,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{task}:{runtime}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["decisions"], "no decision logged"
    assert {(line["logger"], line["function"]) for line in output["decisions"]} == {(f"phoenix.{name}", name)}
    return output["result"]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def aws_env(moto_url: str, codedeploy_endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ENDPOINT_URL_CODEDEPLOY": codedeploy_endpoint,
        "ENVIRONMENT": "dev",
        "CODEDEPLOY_APPLICATION": "phoenix-dev",
        "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
    }


@pytest.fixture
def group(codedeploy: CodeDeployService) -> CodeDeployService:
    client = boto3.client("codedeploy")
    client.create_application(applicationName="phoenix-dev", computePlatform="ECS")
    client.create_deployment_group(
        applicationName="phoenix-dev",
        deploymentGroupName="phoenix-dev-sample-app",
        serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
    )
    return codedeploy


def test_health_check_zip_answers_a_lifecycle_hook(
    clean_runtime: tuple[Path, Path, Path],
    moto_url: str,
    group: CodeDeployService,
    sample_app: Callable[..., str],
    load_event: Callable[[str], Any],
) -> None:
    event = load_event("codedeploy-lifecycle-hook")
    group.seed_deployment(
        "phoenix-dev",
        "phoenix-dev-sample-app",
        "v2",
        status="InProgress",
        deployment_id=event["DeploymentId"],
    )
    group.register_hook(
        event["DeploymentId"], "AfterAllowTestTraffic", event["LifecycleEventHookExecutionId"]
    )
    url = sample_app()
    env = {
        **aws_env(moto_url, os.environ["AWS_ENDPOINT_URL_CODEDEPLOY"]),
        "PRODUCTION_URL": url,
        "TEST_URL": url,
        "VALIDATION_ROUNDS": "1",
    }
    result = run_zip(clean_runtime, "health_check", event, env)
    assert result["status"] == "Succeeded"
    assert group.hook_status(event["LifecycleEventHookExecutionId"]) == "Succeeded"


def test_auto_rollback_zip_redeploys_the_last_good_revision(
    clean_runtime: tuple[Path, Path, Path],
    moto_url: str,
    group: CodeDeployService,
    load_event: Callable[[str], Any],
) -> None:
    group.seed_deployment("phoenix-dev", "phoenix-dev-sample-app", "v1", create_time=1000.0)
    group.seed_deployment("phoenix-dev", "phoenix-dev-sample-app", "v2", create_time=2000.0)
    sns = boto3.client("sns", endpoint_url=moto_url)
    topic = sns.create_topic(Name="phoenix-dev-notifications")["TopicArn"]
    env = {
        **aws_env(moto_url, os.environ["AWS_ENDPOINT_URL_CODEDEPLOY"]),
        "ALARM_NAMES": "phoenix-dev-health-check-failed",
        "NOTIFICATIONS_TOPIC_ARN": topic,
    }
    result = run_zip(clean_runtime, "auto_rollback", load_event("sns-cloudwatch-alarm"), env)
    [outcome] = result["outcomes"]
    assert outcome["action"] == "redeployed"
    assert group.get(outcome["redeployment"])["revision"]["appSpecContent"]["content"] == "v1"


@pytest.mark.parametrize("name", ["health_check", "auto_rollback"])
def test_each_zip_carries_the_shared_module(clean_runtime: tuple[Path, Path, Path], name: str) -> None:
    _, _, build = clean_runtime
    with zipfile.ZipFile(build / f"{name}.zip") as archive:
        names = set(archive.namelist())
        shared = archive.read("phoenix_common.py")
    assert {f"{name}.py", "phoenix_common.py"} <= names
    assert not {"health_check.py", "auto_rollback.py"} - {f"{name}.py"} & names  # not the other function
    assert shared == (REPO_ROOT / "lambdas" / "phoenix_common.py").read_bytes()


def test_a_zip_imports_without_configuration_and_answers_a_bad_one(
    clean_runtime: tuple[Path, Path, Path], load_event: Callable[[str], Any]
) -> None:
    """Nothing is read at import: a missing variable is named in the answer and the log, not raised."""
    result = run_zip(clean_runtime, "health_check", load_event("eventbridge-scheduled"), {})
    assert result == {"trigger": "schedule", "error": "ENVIRONMENT is required and is not set"}
