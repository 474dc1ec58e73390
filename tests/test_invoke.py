"""`make invoke FN=... EVENT=...`: one Lambda function run on an event file, its log lines and its outcome.

- Without AWS_ENDPOINT_URL the function runs against the three stacks created in an embedded stand-in, as
  `make deploy` creates them: it gets the Lambda stack's environment and its calls find the stacks' resources.
- With AWS_ENDPOINT_URL it runs against the function deployed at that endpoint (a moto server here), with the
  configuration read there; a function that fails ends the command with one line and exit status 1.
- A wrong function name, a missing event file or one that is not JSON is one line, exit status 2, and nothing
  is started.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts import invoke
from tests.commands import clean_env, make, moto_endpoint, own_stderr, run

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
ALARM_EVENT = "tests/events/sns-cloudwatch-alarm.json"
REQUEST_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _result(stdout: str) -> Any:
    """The JSON result of the `invoke: <function> succeeded in N s; result: {...}` line."""
    match = re.search(r"^invoke: \S+ succeeded in [\d.]+ s; result: (.*)$", stdout, flags=re.M)
    assert match, stdout
    return json.loads(match.group(1))


def test_make_invoke_runs_the_function_against_the_stacks_make_deploy_creates() -> None:
    result = make("invoke", clean_env(), FN="auto_rollback", EVENT=ALARM_EVENT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if not line.startswith(".venv/bin/python")]
    assert lines[0].startswith("invoke: creating the three stacks in an embedded stand-in")
    assert re.fullmatch(
        r"invoke: phoenix-dev-auto-rollback \(auto_rollback.lambda_handler, Timeout \d+ s\) at http://127.0.0.1:\d+",
        lines[1],
    )
    # The function's own log lines, with their request id, before its outcome.
    assert any(re.search(REQUEST_ID, line) for line in lines[2:-1]), lines
    outcome = _result(result.stdout)
    # It read the alarm from the event and decided on the stacks' (empty) deployment history: no
    # configuration error, since the Lambda stack gave it its environment.
    assert "error" not in outcome
    assert [o["alarm"] for o in outcome["outcomes"]] == ["phoenix-dev-health-check-failed"]


@pytest.mark.parametrize(
    ("fn", "event", "message"),
    [
        (
            "auto_rollback",
            "tests/events/no-such-event.json",
            "invoke: EVENT=tests/events/no-such-event.json: no such file",
        ),
        (
            "auto_rollback",
            "README.md",
            "invoke: EVENT=README.md is not JSON: Expecting value: line 1 column 1",
        ),
        ("auto_rollback", "", "invoke: EVENT is required: a JSON event file"),
        ("rollback", ALARM_EVENT, "invoke: FN=rollback is not one of health_check, auto_rollback"),
    ],
)
def test_bad_input_is_one_line_and_starts_nothing(
    fn: str, event: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    started: list[str] = []
    monkeypatch.setattr(invoke, "embedded_stand_in", lambda: started.append("stand-in"))
    assert invoke.main(["scripts/invoke.py", fn, event], clean_env()) == 2
    out, err = capsys.readouterr()
    (line,) = err.splitlines()
    assert line.startswith(message)
    assert (out, started) == ("", [])  # no stand-in, no function


def test_make_invoke_passes_bad_input_through_as_one_line() -> None:
    result = make("invoke", clean_env(), FN="auto_rollback", EVENT="tests/events/no-such-event.json")
    assert result.returncode != 0
    (line,) = own_stderr(result)
    assert line.startswith("invoke: EVENT=tests/events/no-such-event.json: no such file")


# ---------------------------------------------------------------- a user's own endpoint
def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("auto_rollback.py", "")  # moto keeps the code; `make invoke` runs lambdas/
    return buffer.getvalue()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto server holding one auto-rollback function per region: in eu-west-1 with a partial environment,
    in eu-west-2 with a handler its module does not have."""
    with moto_endpoint() as url:
        for region, handler in (("eu-west-1", "lambda_handler"), ("eu-west-2", "no_such_handler")):
            session = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
            )
            role = session.client("iam", endpoint_url=url).create_role(
                RoleName=f"invoke-{region}", AssumeRolePolicyDocument="{}"
            )["Role"]["Arn"]
            session.client("lambda", endpoint_url=url).create_function(
                FunctionName="phoenix-dev-auto-rollback",
                Runtime="python3.12",
                Role=role,
                Handler=f"auto_rollback.{handler}",
                Code={"ZipFile": _zip()},
                Timeout=30,
                Environment={"Variables": {"ENVIRONMENT": "dev"}},
            )
        yield url


def test_with_aws_endpoint_url_the_function_deployed_there_runs_with_its_configuration(endpoint: str) -> None:
    env = clean_env(AWS_ENDPOINT_URL=endpoint, AWS_REGION="eu-west-1")
    result = run([str(PYTHON), "scripts/invoke.py", "auto_rollback", ALARM_EVENT], env, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "embedded stand-in" not in result.stdout
    assert (
        f"invoke: phoenix-dev-auto-rollback (auto_rollback.lambda_handler, Timeout 30 s) at {endpoint}"
        in (result.stdout)
    )
    # That function's environment (not the Lambda stack's) is what the handler got: its check says so.
    assert "CODEDEPLOY_APPLICATION is required" in _result(result.stdout)["error"]


def test_a_function_that_fails_ends_the_command_with_one_line_and_exit_status_1(endpoint: str) -> None:
    env = clean_env(AWS_ENDPOINT_URL=endpoint, AWS_REGION="eu-west-2")
    result = make("invoke", env, FN="auto_rollback", EVENT=ALARM_EVENT)
    assert result.returncode != 0
    assert "Traceback" not in own_stderr(result)[0]
    assert own_stderr(result)[-1].startswith("invoke: phoenix-dev-auto-rollback init-failed after ")
    assert "no_such_handler" in own_stderr(result)[-1]


def test_no_function_at_the_endpoint_is_one_line(endpoint: str) -> None:
    env = clean_env(AWS_ENDPOINT_URL=endpoint, AWS_REGION="ap-south-1")
    result = run([str(PYTHON), "scripts/invoke.py", "health_check", ALARM_EVENT], env, timeout=120)
    assert result.returncode == 1
    assert result.stderr == (
        "invoke: no function with the handler health_check.lambda_handler at "
        f"{endpoint}: run make deploy first\n"
    )


def test_the_endpoint_settings_are_boto3s_standard_ones() -> None:
    aws = invoke.user_endpoint(
        {
            "AWS_ENDPOINT_URL": "http://a:1",
            "AWS_ENDPOINT_URL_CODEDEPLOY": "http://b:2",
            "AWS_REGION": "eu-west-3",
        }
    )
    assert aws is not None
    assert (aws.endpoint, dict(aws.endpoints), aws.region) == (
        "http://a:1",
        {"codedeploy": "http://b:2"},
        "eu-west-3",
    )
    assert invoke.user_endpoint({"AWS_REGION": "eu-west-3"}) is None
