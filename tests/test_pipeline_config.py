"""The build configuration CodeBuild and CodeDeployToECS read: buildspec, appspec and the task definition."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from scripts.stacks import load_template

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pipeline-config"
RENDER = CONFIG / "render.py"
BUILD_ENV = {
    "IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sample-python-app:1a2b3c4d",
    "APP_VERSION": "1a2b3c4d",
    "TASK_FAMILY": "phoenix-dev-sample-app",
    "TASK_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/phoenix-dev-task-execution",
    "TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/phoenix-dev-task",
    "CONTAINER_NAME": "sample-app",
    "LOG_GROUP": "/ecs/phoenix-dev/sample-app",
    "AWS_REGION": "us-east-1",
    "HEALTH_CHECK_FUNCTION": "phoenix-dev-health-check",
}
# Set by CodeBuild itself in every build (as are the CODEBUILD_* variables), not by the project.
CODEBUILD_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
ECS_HOOKS = {
    "BeforeInstall",
    "AfterInstall",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
}


def _yaml(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONFIG / name).read_text())
    return loaded


def make_dry_run(target: str) -> subprocess.CompletedProcess[str]:
    """`make -n <target>`: its stdout is what the target would run (raises if the target does not exist)."""
    return subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=ROOT, check=True, capture_output=True, text=True
    )


def _render(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RENDER), str(out)], env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy")
    result = _render(out, BUILD_ENV)
    assert result.returncode == 0, result.stderr
    return out


def test_buildspec_has_every_phase_and_only_calls_make_targets() -> None:
    spec = _yaml("buildspec.yml")
    assert str(spec["version"]) == "0.2"
    assert list(spec["phases"]) == ["install", "pre_build", "build", "post_build"]
    commands = [cmd for phase in spec["phases"].values() for cmd in phase["commands"]]
    assert all(cmd.startswith("make ") for cmd in commands), commands
    targets = [cmd.split()[1] for cmd in commands]
    assert targets == ["venv", "ecr-login", "app-test", "image", "push", "deploy-artifacts"]
    for target in targets:  # every target the build calls exists in the Makefile
        make_dry_run(target)


def test_buildspec_stops_before_pushing_when_tests_fail() -> None:
    phases = _yaml("buildspec.yml")["phases"]
    assert all(phases[name]["on-failure"] == "ABORT" for name in ("install", "pre_build", "build"))
    assert phases["build"]["commands"].index("make app-test") < 1


def test_buildspec_reports_the_junit_file_app_test_writes() -> None:
    reports = _yaml("buildspec.yml")["reports"]
    (report,) = reports.values()
    assert report["file-format"] == "JUNITXML"
    written = Path(report["base-directory"]) / report["files"][0]
    recipe = make_dry_run("app-test")
    assert f"--junitxml={written}" in recipe.stdout


def test_buildspec_artifacts_are_what_codedeploy_to_ecs_reads(rendered: Path) -> None:
    artifacts = _yaml("buildspec.yml")["artifacts"]
    assert sorted(artifacts["files"]) == ["appspec.yml", "imageDetail.json", "taskdef.json"]
    recipe = make_dry_run("deploy-artifacts")
    assert recipe.stdout.rstrip().endswith(artifacts["base-directory"])
    assert sorted(path.name for path in rendered.iterdir()) == sorted(artifacts["files"])


def test_appspec_is_an_ecs_appspec_with_the_test_traffic_hook(rendered: Path) -> None:
    raw = _yaml("appspec.yml")
    assert str(raw["version"]) == "0.0"
    appspec = yaml.safe_load((rendered / "appspec.yml").read_text())
    (resource,) = appspec["Resources"]
    service = resource["TargetService"]
    assert service["Type"] == "AWS::ECS::Service"
    assert service["Properties"]["TaskDefinition"] == "<TASK_DEFINITION>"
    lb_info = service["Properties"]["LoadBalancerInfo"]
    assert lb_info == {"ContainerName": "sample-app", "ContainerPort": 8080}
    hooks = {name: fn for hook in appspec["Hooks"] for name, fn in hook.items()}
    assert set(hooks) <= ECS_HOOKS
    assert hooks["AfterAllowTestTraffic"] == "phoenix-dev-health-check"


def test_image_detail_names_the_pushed_image(rendered: Path) -> None:
    assert json.loads((rendered / "imageDetail.json").read_text()) == {"ImageURI": BUILD_ENV["IMAGE_URI"]}


def test_taskdef_keeps_the_placeholder_codepipeline_fills(rendered: Path) -> None:
    taskdef = json.loads((rendered / "taskdef.json").read_text())
    assert taskdef["containerDefinitions"][0]["image"] == "<IMAGE1_NAME>"
    assert not re.search(r"\$\{\w+\}", (rendered / "taskdef.json").read_text())


def test_rendered_taskdef_registers_with_ecs(rendered: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    taskdef = json.loads(
        (rendered / "taskdef.json").read_text().replace("<IMAGE1_NAME>", BUILD_ENV["IMAGE_URI"])
    )
    with mock_aws():
        ecs = boto3.client("ecs")
        # botocore validates every field against the ECS API model before moto sees it
        registered = ecs.register_task_definition(**taskdef)["taskDefinition"]
    container = registered["containerDefinitions"][0]
    assert registered["requiresCompatibilities"] == ["FARGATE"]
    assert registered["networkMode"] == "awsvpc"
    assert registered["executionRoleArn"] == BUILD_ENV["TASK_EXECUTION_ROLE_ARN"]
    assert registered["taskRoleArn"] == BUILD_ENV["TASK_ROLE_ARN"]
    assert container["image"] == BUILD_ENV["IMAGE_URI"]
    assert container["user"] == "10001"
    assert container["readonlyRootFilesystem"] is True
    assert container["healthCheck"]["command"][0] == "CMD"
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert {"name": "APP_VERSION", "value": "1a2b3c4d"} in container["environment"]


def test_render_names_every_missing_variable_and_writes_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in BUILD_ENV.items() if k not in {"LOG_GROUP", "HEALTH_CHECK_FUNCTION"}}
    result = _render(tmp_path / "out", env)
    assert result.returncode == 1
    assert "set these environment variables first: HEALTH_CHECK_FUNCTION, LOG_GROUP" in result.stderr
    assert not (tmp_path / "out").exists()


def test_render_requires_the_task_role_the_pipeline_may_pass(tmp_path: Path) -> None:
    env = {k: v for k, v in BUILD_ENV.items() if k != "TASK_ROLE_ARN"}
    result = _render(tmp_path / "out", env)
    assert result.returncode == 1
    assert "set these environment variables first: TASK_ROLE_ARN" in result.stderr
    assert not (tmp_path / "out").exists()


def test_every_variable_render_reads_is_set_by_the_build_project_or_codebuild(tmp_path: Path) -> None:
    """render.py with only what CodeBuild would give it: the project's variables, CodeBuild's own, make's."""
    properties = load_template("cicd-pipeline.yaml")["Resources"]["BuildProject"]["Properties"]
    project = [variable["Name"] for variable in properties["Environment"]["EnvironmentVariables"]]
    recipe = make_dry_run("deploy-artifacts").stdout.splitlines()
    (command,) = [line for line in recipe if "render.py" in line]
    from_make = re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", command.split("render.py")[0])
    assert from_make, command
    env = {name: f"value-of-{name}" for name in [*project, *CODEBUILD_VARIABLES, *from_make]}
    result = _render(tmp_path / "out", env)
    assert result.returncode == 0, result.stderr


def test_render_refuses_a_value_that_breaks_the_json(tmp_path: Path) -> None:
    result = _render(tmp_path / "out", {**BUILD_ENV, "APP_VERSION": 'x"y'})
    assert result.returncode == 1
    assert "taskdef.json is not valid JSON once filled in" in result.stderr
    assert not (tmp_path / "out").exists()
