"""`make ship-fix`: the latest build output deployed with the deployment group's alarms overridden.

ECS and CloudWatch are moto (in process); CodeDeploy is the stand-in (local/aws/codedeploy) reached through
AWS_ENDPOINT_URL_CODEDEPLOY, with the group phoenix-dev-sample-app whose gating alarm is in ALARM. The build
output is what `make deploy-artifacts` (pipeline-config/render.py) writes, as a directory or zipped as
CodePipeline stores the BuildOutput artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws.codedeploy import CodeDeployService
from scripts import ship_fix
from tests.commands import make, own_stderr

ROOT = Path(__file__).resolve().parent.parent
ALARM = "phoenix-dev-health-check-failed"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/phoenix-dev-sample-app:f1x3d000"
BUILD_ENV = {
    "IMAGE_URI": IMAGE,
    "APP_VERSION": "f1x3d000",
    "TASK_FAMILY": "phoenix-dev-sample-app",
    "TASK_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/phoenix-dev-task-execution",
    "TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/phoenix-dev-task",
    "CONTAINER_NAME": "sample-app",
    "LOG_GROUP": "/ecs/phoenix-dev-sample-app",
    "AWS_REGION": "us-east-1",
    "HEALTH_CHECK_FUNCTION": "phoenix-dev-health-check",
}


@pytest.fixture
def build_output(tmp_path: Path) -> Path:
    """build/deploy as `make deploy-artifacts` writes it: pipeline-config/render.py, every ${NAME} the files
    need given a value."""
    texts = "".join((ROOT / "pipeline-config" / name).read_text() for name in ("taskdef.json", "appspec.yml"))
    needed = set(re.findall(r"\$\{(\w+)\}", texts))
    env = {**os.environ, **{name: f"value-of-{name.lower()}" for name in needed}, **BUILD_ENV}
    out = tmp_path / "deploy"
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "pipeline-config/render.py", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture
def group_in_alarm(moto: None, create_deployment_group: Callable[..., Any]) -> Any:
    """The deployment group gated by ALARM, which is in ALARM; returns the codedeploy client."""
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        Namespace="Phoenix/Deployments",
        MetricName="HealthCheckFailed",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=2,
        Threshold=2,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="the release is broken")
    return create_deployment_group(
        ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"],
        alarmConfiguration={"enabled": True, "ignorePollAlarmFailure": False, "alarms": [{"name": ALARM}]},
        deploymentConfigName="CodeDeployDefault.ECSCanary10Percent5Minutes",
    )


def _zip(directory: Path) -> Path:
    archive = directory.parent / "BuildOutput.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(directory.iterdir()):
            out.write(file, file.name)
    return archive


def _registered() -> list[str]:
    arns: list[str] = boto3.client("ecs").list_task_definitions()["taskDefinitionArns"]
    return arns


@pytest.mark.parametrize("zipped", [False, True], ids=["directory", "zip"])
def test_the_build_output_is_deployed_with_alarms_overridden_and_the_hook_kept(
    group_in_alarm: Any,
    codedeploy: CodeDeployService,
    build_output: Path,
    zipped: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = _zip(build_output) if zipped else build_output
    assert ship_fix.main(["ship_fix.py", str(source)]) == 0
    out = capsys.readouterr().out
    deployment_id = out.split("created deployment ")[1].split()[0]
    assert f"aws deploy get-deployment --deployment-id {deployment_id} --region us-east-1" in out

    (arn,) = _registered()
    definition = boto3.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    assert definition["family"] == "phoenix-dev-sample-app"
    assert [c["image"] for c in definition["containerDefinitions"]] == [IMAGE]

    info = group_in_alarm.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["overrideAlarmConfiguration"] == {
        "enabled": False,
        "ignorePollAlarmFailure": False,
        "alarms": [],
    }
    assert info["deploymentConfigName"] == "CodeDeployDefault.ECSAllAtOnce"
    assert "Manual fix deployment" in info["description"]
    assert "alarms are overridden" in info["description"]
    assert ALARM in info["description"]
    # GetDeployment answers the AppSpec's sha256 (AWS omits its content); the stand-in keeps the content.
    expected = (build_output / "appspec.yml").read_text().replace("<TASK_DEFINITION>", arn)
    assert info["revision"]["appSpecContent"]["sha256"] == hashlib.sha256(expected.encode()).hexdigest()
    content = codedeploy.get(deployment_id)["revision"]["appSpecContent"]["content"]
    assert content == expected
    assert "AfterAllowTestTraffic" in content
    assert "<TASK_DEFINITION>" not in content


def test_the_deployment_config_and_names_come_from_the_environment(
    group_in_alarm: Any, build_output: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYMENT_CONFIG", "CodeDeployDefault.ECSLinear10PercentEvery1Minutes")
    monkeypatch.setenv("PROJECT_NAME", "phoenix")
    monkeypatch.setenv("ENVIRONMENT", "dev")
    deployment_id, region = ship_fix.ship_fix(os.environ, build_output)
    info = group_in_alarm.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    assert info["deploymentConfigName"] == "CodeDeployDefault.ECSLinear10PercentEvery1Minutes"
    assert (info["applicationName"], info["deploymentGroupName"]) == ("phoenix-dev", "phoenix-dev-sample-app")
    assert region == "us-east-1"


def _break(directory: Path, name: str, old: str, new: str) -> None:
    file = directory / name
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))


BAD_FILES: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing-file": (lambda d: (d / "appspec.yml").unlink(), "appspec.yml is missing"),
    "image-placeholder-missing": (
        lambda d: _break(d, "taskdef.json", "<IMAGE1_NAME>", "nginx"),
        "taskdef.json has no <IMAGE1_NAME> placeholder",
    ),
    "task-definition-placeholder-missing": (
        lambda d: _break(d, "appspec.yml", "<TASK_DEFINITION>", "arn:aws:ecs:x"),
        "appspec.yml has no <TASK_DEFINITION> placeholder",
    ),
    "broken-json": (lambda d: _break(d, "taskdef.json", "{", "{{"), "taskdef.json is not valid JSON"),
    "no-image-uri": (
        lambda d: (d / "imageDetail.json").write_text(json.dumps({"Image": IMAGE})),
        "imageDetail.json has no ImageURI",
    ),
    "not-a-task-definition": (
        lambda d: _break(d, "taskdef.json", '"family"', '"familyName"'),
        "taskdef.json is not a valid RegisterTaskDefinition request",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_build_output_is_one_line_and_registers_nothing(
    group_in_alarm: Any, build_output: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    damage, message = BAD_FILES[case]
    damage(build_output)
    assert ship_fix.main(["ship_fix.py", str(build_output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ship-fix: ")
    assert message in err
    assert err.count("\n") == 1
    assert _registered() == []
    assert group_in_alarm.list_deployments()["deployments"] == []


def test_a_missing_group_is_one_line_and_registers_nothing(
    group_in_alarm: Any,
    build_output: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SERVICE_NAME", "other-app")
    assert ship_fix.main(["ship_fix.py", str(build_output)]) == 1
    err = capsys.readouterr().err
    assert err == (
        "ship-fix: deployment group phoenix-dev-other-app of application phoenix-dev does not exist (set "
        "PROJECT_NAME, ENVIRONMENT and SERVICE_NAME as for make deploy, or DEPLOYMENT_GROUP)\n"
    )
    assert _registered() == []


def test_a_deployment_in_flight_is_one_line_and_registers_nothing(
    group_in_alarm: Any, build_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = group_in_alarm.create_deployment(
        applicationName="phoenix-dev",
        deploymentGroupName="phoenix-dev-sample-app",
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0"}},
    )["deploymentId"]
    assert ship_fix.main(["ship_fix.py", str(build_output)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ship-fix: deployment {running} of phoenix-dev-sample-app is still in flight")
    assert err.count("\n") == 1
    assert _registered() == []


def test_a_deployment_that_starts_in_between_is_deployment_limit_exceeded_in_one_line(
    group_in_alarm: Any,
    build_output: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Another deployment created after the in-flight check: CreateDeployment answers
    DeploymentLimitExceededException, which is reported in one line with the ARN already registered."""
    real = ship_fix._firing

    def start_another(session: Any, alarms: list[str]) -> list[str]:
        group_in_alarm.create_deployment(
            applicationName="phoenix-dev",
            deploymentGroupName="phoenix-dev-sample-app",
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "version: 0.0"}},
        )
        return real(session, alarms)

    monkeypatch.setattr(ship_fix, "_firing", start_another)
    assert ship_fix.main(["ship_fix.py", str(build_output)]) == 1
    err = capsys.readouterr().err
    assert "already has an active Deployment" in err
    assert "is registered but not deployed: run make ship-fix again" in err
    assert err.count("\n") == 1


def test_make_ship_fix_with_a_missing_zip_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    missing = tmp_path / "BuildOutput.zip"
    result = make("ship-fix", env, BUILD_OUTPUT=str(missing))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert own_stderr(result) == [
        f"ship-fix: {missing} does not exist: give BUILD_OUTPUT=<directory or zip> (default build/deploy)"
    ]


def test_the_description_fits_codedeploys_limit_whatever_is_firing() -> None:
    many = ", ".join(f"phoenix-dev-alarm-number-{n}" for n in range(20))
    assert len(ship_fix.description(many)) <= 100
    assert ship_fix.description("a").startswith("Manual fix deployment, alarms are overridden")
