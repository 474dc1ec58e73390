"""local/aws/codebuild: builds that run their buildspec for real, read through a boto3 CodeBuild client.

Each build clones a throwaway repository (a bare repository with one commit: a buildspec and a few files),
as CodePipeline's CODEBUILD_CLONE_REF artifact makes CodeBuild do. What a user relies on: CodeBuild's phases
and statuses; a failing command failing its phase with the command and exit status named; ABORT / CONTINUE /
the default transitions; one shell for all commands; CODEBUILD_* and project variables; artifacts as a zip of
exactly the listed files; JUnit counts; the log in CloudWatch Logs; the timeout.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.aws.cloudformation import Stacks
from local.aws.codebuild import BuildHost, CodeBuildServer, CodeBuildService
from local.aws.moto_server import ACCOUNT_ID, REGION, Aws, moto_server
from local.timescale import TimeScale
from scripts.stacks import load_template
from tests.rollback_world import wait_until

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "pipeline-artifacts"
PROJECT = "phoenix-dev-build"
GROUP = f"/aws/codebuild/{PROJECT}"
PHASES = [
    "SUBMITTED",
    "QUEUED",
    "PROVISIONING",
    "DOWNLOAD_SOURCE",
    "INSTALL",
    "PRE_BUILD",
    "BUILD",
    "POST_BUILD",
    "UPLOAD_ARTIFACTS",
    "FINALIZING",
    "COMPLETED",
]
GIT_USER = ("-c", "user.name=t", "-c", "user.email=t@example.com")


@dataclass(frozen=True)
class GitSource:
    """A CODEBUILD_CLONE_REF source, as the pipeline's CloneRef gives it."""

    repository: str
    commit: str
    branch: str


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def moto() -> Iterator[Aws]:
    with moto_server() as aws:
        aws.client("s3").create_bucket(Bucket=BUCKET)
        aws.client("logs").create_log_group(logGroupName=GROUP)
        yield aws


@pytest.fixture(scope="module")
def server(moto: Aws) -> Iterator[CodeBuildServer]:
    with CodeBuildServer(CodeBuildService(moto)) as server:
        yield server


@dataclass
class Builds:
    """One test's CodeBuild stand-in, its boto3 client, and a way to build a throwaway repository."""

    service: CodeBuildService
    client: Any
    aws: Aws
    tmp: Path
    project_env: list[dict[str, str]]

    def repository(self, files: dict[str, str], branch: str = "main") -> GitSource:
        """A bare repository holding `files` in one commit on `branch`."""
        work = self.tmp / "work"
        bare = self.tmp / "origin.git"
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(bare, ignore_errors=True)
        work.mkdir()
        git("init", "--quiet", "--initial-branch", branch, cwd=work)
        for name, content in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content))
            if name.endswith(".sh"):
                path.chmod(0o755)
        git("add", "-A", cwd=work)
        git(*GIT_USER, "commit", "--quiet", "-m", "the commit", cwd=work)
        git("clone", "--quiet", "--bare", str(work), str(bare), cwd=self.tmp)
        return GitSource(str(bare), git("rev-parse", "HEAD", cwd=work), branch)

    def create_project(self, name: str = PROJECT, **extra: Any) -> None:
        self.client.create_project(
            name=name,
            source={"type": "CODEPIPELINE", "buildspec": extra.pop("buildspec", "buildspec.yml")},
            artifacts={"type": "CODEPIPELINE"},
            environment={
                "type": "LINUX_CONTAINER",
                "computeType": "BUILD_GENERAL1_SMALL",
                "image": "aws/codebuild/standard:7.0",
                "privilegedMode": True,
                "environmentVariables": self.project_env,
            },
            serviceRole=f"arn:aws:iam::{ACCOUNT_ID}:role/build",
            logsConfig={"cloudWatchLogs": {"status": "ENABLED", "groupName": GROUP}},
            **extra,
        )

    def run(self, files: dict[str, str], key: str = "", name: str = PROJECT, **extra: Any) -> dict[str, Any]:
        """Create the project, build a repository of `files`; the finished build from BatchGetBuilds. The
        pipeline's action has an output artifact when the buildspec has `artifacts`."""
        self.create_project(name, **extra)
        source = self.repository(files)
        output = S3Object(BUCKET, key or self.key) if "artifacts:" in files.get("buildspec.yml", "") else None
        build_id = self.service.start_pipeline_build(
            name, source=source, output=output, initiator="codepipeline/phoenix-dev"
        )
        self.service.wait(build_id, timeout=60)
        (build,) = self.client.batch_get_builds(ids=[build_id])["builds"]
        return dict(build)

    def phase(self, build: dict[str, Any], phase_type: str) -> dict[str, Any]:
        return next(p for p in build["phases"] if p["phaseType"] == phase_type)

    @property
    def key(self) -> str:
        """This test's output artifact (the bucket outlives the test)."""
        return f"out/{self.tmp.name}.zip"

    def artifact(self, key: str = "") -> zipfile.ZipFile:
        body = self.aws.client("s3").get_object(Bucket=BUCKET, Key=key or self.key)["Body"].read()
        return zipfile.ZipFile(io.BytesIO(body))

    def has_artifact(self) -> bool:
        listed = self.aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=self.key)
        return bool(listed.get("KeyCount"))

    def lines(self, build: dict[str, Any]) -> list[str]:
        return self.service.log_lines(build["id"])


@pytest.fixture
def builds(
    server: CodeBuildServer, moto: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Builds]:
    # The drill's own variables must not reach a build.
    monkeypatch.setenv("PYTHONPATH", "/leaked")
    monkeypatch.setenv("VIRTUAL_ENV", "/leaked")
    host = BuildHost(cli_dir=Path(sys.executable).parent, work_dir=tmp_path)
    service = server.use(CodeBuildService(moto.with_endpoint("codebuild", server.endpoint_url), host))
    client = moto.with_endpoint("codebuild", server.endpoint_url).client("codebuild")
    env = [{"name": "ECR_REPOSITORY_URI", "value": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app"}]
    running = Builds(service, client, moto, tmp_path, env)
    yield running
    running.service.stop()


def buildspec(phases: str, tail: str = "") -> str:
    """A bash buildspec: `phases` (the `phases` mapping's body, any indentation) and top-level `tail`."""
    body = textwrap.indent(textwrap.dedent(phases), "  ")
    return f"version: 0.2\nenv:\n  shell: bash\nphases:\n{body}{textwrap.dedent(tail)}"


ARTIFACTS = """
artifacts:
  base-directory: build/deploy
  files:
    - imageDetail.json
    - taskdef.json
"""

WRITES_ARTIFACTS = """
build:
  commands:
    - mkdir -p build/deploy/nested
    - echo '{}' > build/deploy/imageDetail.json
    - echo '{}' > build/deploy/taskdef.json
    - echo unlisted > build/deploy/nested/other.txt
"""


# --------------------------------------------------------------------------------------------- success
def test_a_passing_build_has_every_phase_succeeded_and_its_artifact_zip_holds_exactly_the_listed_files(
    builds: Builds,
) -> None:
    build = builds.run({"buildspec.yml": buildspec(WRITES_ARTIFACTS, ARTIFACTS)})

    assert build["buildStatus"] == "SUCCEEDED"
    assert build["buildComplete"] is True
    assert build["currentPhase"] == "COMPLETED"
    assert [p["phaseType"] for p in build["phases"]] == PHASES
    assert all(p["phaseStatus"] == "SUCCEEDED" for p in build["phases"][:-1])
    assert set(build["phases"][-1]) == {"phaseType", "startTime"}  # COMPLETED: a start and nothing else
    for phase in build["phases"][:-1]:
        assert phase["endTime"] >= phase["startTime"]
        assert isinstance(phase["durationInSeconds"], int)
    assert build["id"].startswith(f"{PROJECT}:")
    assert build["arn"] == f"arn:aws:codebuild:{REGION}:{ACCOUNT_ID}:build/{build['id']}"
    assert build["buildNumber"] == 1
    assert build["initiator"] == "codepipeline/phoenix-dev"
    assert build["artifacts"]["location"] == f"arn:aws:s3:::{BUCKET}/{builds.key}"
    assert build["endTime"] >= build["startTime"]
    # CODEBUILD_CLONE_REF: the commit is resolved; the zip has the files at its root, nothing unlisted.
    assert len(build["resolvedSourceVersion"]) == 40
    assert sorted(builds.artifact().namelist()) == ["imageDetail.json", "taskdef.json"]

    assert builds.client.list_builds_for_project(projectName=PROJECT)["ids"] == [build["id"]]
    assert build["id"] in builds.client.list_builds()["ids"]
    (project,) = builds.client.batch_get_projects(names=[PROJECT])["projects"]
    assert project["timeoutInMinutes"] == 60
    assert project["environment"]["environmentVariables"][0]["type"] == "PLAINTEXT"
    assert project["logsConfig"]["s3Logs"]["status"] == "DISABLED"


def test_api_errors_carry_codebuilds_codes(builds: Builds) -> None:
    builds.create_project()
    with pytest.raises(builds.client.exceptions.ResourceAlreadyExistsException):
        builds.create_project()
    with pytest.raises(builds.client.exceptions.ResourceNotFoundException):
        builds.client.list_builds_for_project(projectName="nope")
    with pytest.raises(builds.client.exceptions.InvalidInputException):
        builds.create_project(name="other", timeoutInMinutes=3000)
    answer = builds.client.batch_get_builds(ids=[f"{PROJECT}:00000000-0000-0000-0000-000000000000"])
    assert answer["builds"] == []
    assert answer["buildsNotFound"] == [f"{PROJECT}:00000000-0000-0000-0000-000000000000"]
    assert builds.client.batch_get_projects(names=["nope"])["projectsNotFound"] == ["nope"]


# --------------------------------------------------------------------------------------------- failures
def test_a_failing_command_with_abort_fails_its_phase_naming_it_then_no_post_build_and_no_upload(
    builds: Builds,
) -> None:
    build = builds.run(
        {
            "fail.sh": "#!/bin/sh\necho 'tests: 1 failed'\nexit 2\n",
            "buildspec.yml": buildspec(
                """
                build:
                  on-failure: ABORT
                  commands:
                    - ./fail.sh
                    - echo never-run
                  finally:
                    - echo finally-ran
                post_build:
                  commands:
                    - echo post-build-ran
                """,
                ARTIFACTS,
            ),
        }
    )

    assert build["buildStatus"] == "FAILED"
    failed = builds.phase(build, "BUILD")
    assert failed["phaseStatus"] == "FAILED"
    assert failed["contexts"] == [
        {
            "statusCode": "COMMAND_EXECUTION_ERROR",
            "message": "Error while executing command: ./fail.sh. Reason: exit status 2",
        }
    ]
    assert [p["phaseType"] for p in build["phases"]] == [
        *PHASES[: PHASES.index("BUILD") + 1],
        "FINALIZING",
        "COMPLETED",
    ]
    lines = builds.lines(build)
    assert "tests: 1 failed" in lines
    assert "finally-ran" in lines
    assert "never-run" not in lines
    assert "post-build-ran" not in lines
    assert not builds.has_artifact()


def test_without_on_failure_a_failed_build_phase_still_runs_post_build_and_upload_artifacts(
    builds: Builds,
) -> None:
    build = builds.run(
        {
            "buildspec.yml": buildspec(
                WRITES_ARTIFACTS.replace("nested/other.txt", "nested/other.txt\n    - exit 1")
                + textwrap.dedent(
                    """
                    post_build:
                      commands:
                        - echo "post_build CODEBUILD_BUILD_SUCCEEDING=$CODEBUILD_BUILD_SUCCEEDING"
                    """
                ),
                ARTIFACTS,
            )
        }
    )

    assert build["buildStatus"] == "FAILED"
    assert [p["phaseType"] for p in build["phases"]] == PHASES
    assert builds.phase(build, "BUILD")["phaseStatus"] == "FAILED"
    assert builds.phase(build, "POST_BUILD")["phaseStatus"] == "SUCCEEDED"
    assert builds.phase(build, "UPLOAD_ARTIFACTS")["phaseStatus"] == "SUCCEEDED"
    assert "post_build CODEBUILD_BUILD_SUCCEEDING=0" in builds.lines(build)
    assert builds.has_artifact()
    # `exit 1` ended the shell: the stand-in says so (a new shell ran post_build).
    assert builds.service.notes(build["id"]) == [
        "a command ended the build's shell: a new one ran the commands after it"
    ]


def test_a_failed_install_ends_the_build_and_continue_goes_on_to_the_next_phase(builds: Builds) -> None:
    stopped = builds.run({"buildspec.yml": buildspec("install:\n  commands:\n    - 'false'\n")})
    assert [p["phaseType"] for p in stopped["phases"]] == [*PHASES[:5], "FINALIZING", "COMPLETED"]
    assert builds.phase(stopped, "INSTALL")["contexts"][0]["message"] == (
        "Error while executing command: false. Reason: exit status 1"
    )

    builds.service.stop()
    continued = builds.run(
        {
            "buildspec.yml": buildspec(
                """
                install:
                  on-failure: CONTINUE
                  commands:
                    - 'false'
                pre_build:
                  commands:
                    - echo "pre_build ran with CODEBUILD_BUILD_SUCCEEDING=$CODEBUILD_BUILD_SUCCEEDING"
                """
            )
        },
        name="continue-project",
    )
    assert continued["buildStatus"] == "FAILED"
    assert builds.phase(continued, "PRE_BUILD")["phaseStatus"] == "SUCCEEDED"
    assert "pre_build ran with CODEBUILD_BUILD_SUCCEEDING=0" in builds.lines(continued)


def test_missing_artifact_files_fail_upload_artifacts_with_codebuilds_messages(builds: Builds) -> None:
    no_files = builds.run(
        {"buildspec.yml": buildspec("build:\n  commands:\n    - mkdir -p build/deploy\n", ARTIFACTS)}
    )
    assert no_files["buildStatus"] == "FAILED"
    upload = builds.phase(no_files, "UPLOAD_ARTIFACTS")
    assert upload["phaseStatus"] == "FAILED"
    assert upload["contexts"] == [
        {"statusCode": "CLIENT_ERROR", "message": "no matching artifact paths found"}
    ]
    assert "Skipping invalid file path imageDetail.json" in " ".join(builds.lines(no_files))
    assert not builds.has_artifact()

    no_directory = builds.run(
        {"buildspec.yml": buildspec("build:\n  commands:\n    - echo nothing\n", ARTIFACTS)},
        name="no-directory-project",
    )
    assert builds.phase(no_directory, "UPLOAD_ARTIFACTS")["contexts"] == [
        {"statusCode": "CLIENT_ERROR", "message": "no matching base directory path found for build/deploy"}
    ]


def test_a_missing_or_unsupported_buildspec_fails_download_source_with_yaml_file_error(
    builds: Builds,
) -> None:
    missing = builds.run({"README": "no buildspec\n"}, buildspec="pipeline-config/buildspec.yml")
    context = builds.phase(missing, "DOWNLOAD_SOURCE")["contexts"][0]
    assert context["statusCode"] == "YAML_FILE_ERROR"
    assert context["message"].endswith("pipeline-config/buildspec.yml: no such file or directory")
    assert missing["buildStatus"] == "FAILED"

    unsupported = builds.run(
        {"buildspec.yml": "version: 0.2\nrun-as: nobody\nphases: {}\n"}, name="unsupported-project"
    )
    context = builds.phase(unsupported, "DOWNLOAD_SOURCE")["contexts"][0]
    assert context["statusCode"] == "YAML_FILE_ERROR"
    assert "run-as" in context["message"]


# --------------------------------------------------------------------------------------------- environment
def test_exported_and_plain_variables_and_the_directory_persist_across_commands_and_phases(
    builds: Builds,
) -> None:
    build = builds.run(
        {
            "sub/keep": "",
            "buildspec.yml": buildspec(
                """
                install:
                  commands:
                    - export EXPORTED=1
                    - PLAIN=2
                    - cd sub
                    - say() { echo "said $1"; }
                build:
                  commands:
                    - echo "EXPORTED=$EXPORTED PLAIN=$PLAIN DIR=$(basename "$PWD")"
                    - say hello
                    - sh -c 'echo "child sees EXPORTED=$EXPORTED"'
                """
            ),
        }
    )
    assert build["buildStatus"] == "SUCCEEDED"
    lines = builds.lines(build)
    assert "EXPORTED=1 PLAIN=2 DIR=sub" in lines
    assert "said hello" in lines
    assert "child sees EXPORTED=1" in lines


def test_codebuild_and_project_variables_are_visible_and_the_drills_environment_is_not(
    builds: Builds,
) -> None:
    builds.project_env = [
        {"name": "ECR_REPOSITORY_URI", "value": "from-the-project"},
        {"name": "FROM_BOTH", "value": "project"},
    ]
    build = builds.run(
        {
            "buildspec.yml": "version: 0.2\nenv:\n  variables:\n    FROM_BOTH: buildspec\n"
            "    ONLY_SPEC: spec\nphases:\n  build:\n    commands:\n      - env | sort\n"
        }
    )
    env = dict(line.split("=", 1) for line in builds.lines(build) if "=" in line and not line.startswith("["))
    assert env["CODEBUILD_RESOLVED_SOURCE_VERSION"] == build["resolvedSourceVersion"]
    assert env["CODEBUILD_BUILD_ID"] == build["id"]
    assert env["CODEBUILD_BUILD_ARN"] == build["arn"]
    assert env["CODEBUILD_BUILD_NUMBER"] == "1"
    assert env["CODEBUILD_INITIATOR"] == "codepipeline/phoenix-dev"
    assert env["CODEBUILD_BUILD_IMAGE"] == "aws/codebuild/standard:7.0"
    assert env["CODEBUILD_BUILD_SUCCEEDING"] == "1"
    assert env["CODEBUILD_LOG_PATH"] == build["logs"]["streamName"]
    assert abs(int(env["CODEBUILD_START_TIME"]) - build["startTime"].timestamp() * 1000) <= 1
    assert Path(env["CODEBUILD_SRC_DIR"]).name == "src"
    assert env["ECR_REPOSITORY_URI"] == "from-the-project"
    assert env["FROM_BOTH"] == "project"  # the project's value over the buildspec's
    assert env["ONLY_SPEC"] == "spec"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == REGION
    assert env["AWS_ENDPOINT_URL"] == builds.aws.endpoint
    assert env["AWS_ENDPOINT_URL_CODEBUILD"].startswith("http://127.0.0.1:")
    assert env["PATH"].split(":")[-1] == str(Path(sys.executable).parent)  # where `aws` is
    assert env["HOME"] != os.environ.get("HOME")
    for leaked in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST"):
        assert leaked not in env


def test_without_env_shell_commands_run_in_sh_where_bash_syntax_fails(builds: Builds) -> None:
    build = builds.run(
        {"buildspec.yml": "version: 0.2\nphases:\n  build:\n    commands:\n      - '[[ 1 == 1 ]]'\n"}
    )
    assert build["buildStatus"] == "FAILED"
    assert builds.phase(build, "BUILD")["contexts"][0]["message"].startswith(
        "Error while executing command: [[ 1 == 1 ]]. Reason: exit status 127"
    )


def test_a_command_that_does_not_parse_fails_with_status_2_instead_of_hanging(builds: Builds) -> None:
    build = builds.run({"buildspec.yml": buildspec('build:\n  commands:\n    - echo "unterminated\n')})
    assert builds.phase(build, "BUILD")["contexts"][0]["message"].endswith("Reason: exit status 2")


def test_a_python_runtime_version_this_machine_lacks_is_noted_not_failed(builds: Builds) -> None:
    build = builds.run(
        {
            "buildspec.yml": buildspec(
                "install:\n  runtime-versions:\n    python: 2.7\n  commands:\n    - 'true'\n"
            )
        }
    )
    assert build["buildStatus"] == "SUCCEEDED"
    (note,) = builds.service.notes(build["id"])
    assert note.startswith("runtime-versions python: 2.7 asked; this machine's python3 is 3.")


def test_a_cached_path_is_a_symlink_in_the_fresh_clone(builds: Builds, tmp_path: Path) -> None:
    cached = tmp_path / "prebuilt-venv"
    (cached / "bin").mkdir(parents=True)
    builds.service.host = BuildHost(cli_dir=Path(sys.executable).parent, cached_paths={".venv": cached})
    build = builds.run(
        {"buildspec.yml": buildspec("build:\n  commands:\n    - test -L .venv -a -d .venv/bin\n")}
    )
    assert build["buildStatus"] == "SUCCEEDED"
    assert cached.is_dir()  # the workspace is gone, the cache is not


# --------------------------------------------------------------------------------------------- reports, logs
JUNIT = """\
<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="1">
<testcase classname="test_app" name="test_index"/>
<testcase classname="test_app" name="test_health"><failure message="500 != 200">boom</failure></testcase>
<testcase classname="test_app" name="test_version"/>
<testcase classname="test_app" name="test_slow"><skipped message="slow"/></testcase>
</testsuite></testsuites>
"""


def test_a_junit_report_is_counted_and_its_arn_listed_in_report_arns(builds: Builds) -> None:
    build = builds.run(
        {
            "reports-src/unit.xml": JUNIT,
            "buildspec.yml": buildspec(
                """
                build:
                  on-failure: ABORT
                  commands:
                    - mkdir -p build/reports && cp reports-src/unit.xml build/reports/
                    - 'false'
                """,
                """
                reports:
                  unit-tests:
                    base-directory: build/reports
                    files:
                      - unit.xml
                    file-format: JUNITXML
                """,
            ),
        }
    )
    report = builds.service.test_report(build["id"])
    assert report is not None
    assert (report.total, report.passed, report.failed, report.skipped) == (4, 2, 1, 1)
    assert report.failed_tests == ["test_health"]
    assert report.summary() == "1 of 4 tests failed: test_health"
    group_arn = f"arn:aws:codebuild:{REGION}:{ACCOUNT_ID}:report-group/{PROJECT}-unit-tests"
    assert report.report_group_arn == group_arn
    assert build["reportArns"] == [report.report_arn]
    assert report.report_arn.startswith(
        f"arn:aws:codebuild:{REGION}:{ACCOUNT_ID}:report/{PROJECT}-unit-tests:"
    )


def test_every_line_of_the_build_is_in_its_cloudwatch_logs_stream(builds: Builds) -> None:
    build = builds.run(
        {"buildspec.yml": buildspec("build:\n  commands:\n    - echo hello from the build && echo\n")}
    )
    logs = build["logs"]
    assert logs["groupName"] == GROUP
    assert logs["streamName"] == build["id"].split(":", 1)[1]
    assert logs["deepLink"] == (
        f"https://console.aws.amazon.com/cloudwatch/home?region={REGION}"
        f"#logEvent:group={GROUP};stream={logs['streamName']}"
    )
    events = builds.aws.client("logs").get_log_events(
        logGroupName=GROUP, logStreamName=logs["streamName"], startFromHead=True
    )["events"]
    messages = [event["message"].removesuffix("\n") for event in events]
    assert messages == builds.lines(build)
    assert "hello from the build" in messages
    assert "" in messages  # an empty line is an event too
    assert any(m.endswith("Running command echo hello from the build && echo") for m in messages)
    assert any(m.endswith("Phase complete: BUILD State: SUCCEEDED") for m in messages)


# --------------------------------------------------------------------------------------------- timeout
def test_a_build_longer_than_its_timeout_is_killed_and_timed_out(
    server: CodeBuildServer, moto: Aws, tmp_path: Path, builds: Builds
) -> None:
    scale = TimeScale(factor=300)  # TimeoutInMinutes 5: 1 wall second
    builds.service = server.use(
        CodeBuildService(moto, BuildHost(work_dir=tmp_path), clock=scale.timestamp, scale=scale)
    )
    marker = tmp_path / "still-running"
    started = time.monotonic()
    build = builds.run(
        {"buildspec.yml": buildspec(f"build:\n  commands:\n    - sleep 2 && touch {marker}\n")},
        timeoutInMinutes=5,
    )

    assert build["buildStatus"] == "TIMED_OUT"
    timed_out = builds.phase(build, "BUILD")
    assert timed_out["phaseStatus"] == "TIMED_OUT"
    assert timed_out["contexts"][0]["statusCode"] == "BUILD_TIMED_OUT"
    assert [p["phaseType"] for p in build["phases"]][-2:] == ["FINALIZING", "COMPLETED"]
    time.sleep(max(0.0, started + 2.3 - time.monotonic()))
    assert not marker.exists()  # the command and its children were killed


# --------------------------------------------------------------------------------------------- the project's
def _project_commit(tmp: Path) -> GitSource:
    """The project as it is on disk (tracked and untracked-but-not-ignored files) committed to a bare repo."""
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT).split("\0")
    work = tmp / "project"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    git("init", "--quiet", "--initial-branch", "main", cwd=work)
    git("add", "-A", cwd=work)
    git(*GIT_USER, "commit", "--quiet", "-m", "the project", cwd=work)
    bare = tmp / "project.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=tmp)
    return GitSource(str(bare), git("rev-parse", "HEAD", cwd=work), "main")


def test_the_projects_buildspec_tests_builds_pushes_and_hands_over_the_deploy_files(
    builds: Builds, tmp_path: Path
) -> None:
    docker_cli = pytest.importorskip("local.aws.docker_cli")
    write: Callable[..., Path] = docker_cli.write_docker_cli
    repository = builds.aws.client("ecr").create_repository(
        repositoryName="phoenix-app", imageTagMutability="IMMUTABLE"
    )["repository"]["repositoryUri"]
    registry = tmp_path / "registry"
    builds.service.host = BuildHost(
        tools=lambda workspace: (
            write(workspace / "bin", registry_dir=registry, daemon_dir=workspace / "docker").parent
        ),
        cli_dir=ROOT / ".venv" / "bin",
        cached_paths={".venv": ROOT / ".venv"},
        work_dir=tmp_path,
    )
    builds.project_env = [
        {"name": "ECR_REPOSITORY_URI", "value": repository},
        {"name": "TASK_FAMILY", "value": "phoenix-dev-sample-app"},
        {"name": "TASK_EXECUTION_ROLE_ARN", "value": f"arn:aws:iam::{ACCOUNT_ID}:role/exec"},
        {"name": "TASK_ROLE_ARN", "value": f"arn:aws:iam::{ACCOUNT_ID}:role/task"},
        {"name": "CONTAINER_NAME", "value": "sample-app"},
        {"name": "LOG_GROUP", "value": "/ecs/phoenix-dev"},
        {"name": "HEALTH_CHECK_FUNCTION", "value": "phoenix-dev-health-check"},
    ]
    builds.create_project(buildspec="pipeline-config/buildspec.yml", timeoutInMinutes=30)
    source = _project_commit(tmp_path)
    build_id = builds.service.start_pipeline_build(
        PROJECT, source=source, output=S3Object(BUCKET, "real/out.zip"), initiator="codepipeline/phoenix-dev"
    )
    build = builds.service.wait(build_id, timeout=100)

    failed = [p for p in build["phases"] if p.get("phaseStatus") not in (None, "SUCCEEDED")]
    assert build["buildStatus"] == "SUCCEEDED", (failed, builds.service.log_lines(build_id)[-40:])
    assert builds.service.notes(build_id) == []  # python 3.11 asked, 3.11 here; the venv's stamp matched
    assert sorted(builds.artifact("real/out.zip").namelist()) == [
        "appspec.yml",
        "imageDetail.json",
        "taskdef.json",
    ]
    report = builds.service.test_report(build_id, "sample-app-unit-tests")
    assert report is not None
    assert report.total > 0
    assert report.failed == 0
    tag = source.commit[:8]
    images = builds.aws.client("ecr").describe_images(repositoryName="phoenix-app")["imageDetails"]
    assert [image["imageTags"] for image in images] == [[tag]]
    assert not any("pip install" in line for line in builds.service.log_lines(build_id))


def test_stopping_the_service_stops_a_running_build_and_kills_its_commands(
    builds: Builds, tmp_path: Path
) -> None:
    builds.create_project()
    marker = tmp_path / "still-running"
    source = builds.repository(
        {"buildspec.yml": buildspec(f"build:\n  commands:\n    - sleep 1.5 && touch {marker}\n")}
    )
    build_id = builds.service.start_pipeline_build(
        PROJECT, source=source, output=None, initiator="codepipeline/phoenix-dev"
    )
    wait_until(lambda: builds.service.build(build_id)["currentPhase"] == "BUILD", timeout=20)
    builds.service.stop()

    build = builds.service.build(build_id)
    assert build["buildStatus"] == "STOPPED"
    assert builds.phase(build, "BUILD")["phaseStatus"] == "STOPPED"
    time.sleep(1.7)
    assert not marker.exists()


def _resolved(value: Any) -> Any:
    """The template's values with each intrinsic function replaced by a plausible resolved string."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("Ref", "Fn::GetAtt", "Fn::Sub", "Fn::ImportValue"):
            kind, argument = next(iter(value.items()))
            return {
                "Ref": GROUP,
                "Fn::GetAtt": f"arn:aws:iam::{ACCOUNT_ID}:role/phoenix-dev-build",
                "Fn::Sub": PROJECT,
            }.get(kind, f"imported-{argument}")
        return {k: _resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    return value


def test_the_templates_build_project_is_created_from_the_properties_cloudformation_passes(
    builds: Builds, server: CodeBuildServer
) -> None:
    properties = load_template("cicd-pipeline.yaml")["Resources"]["BuildProject"]["Properties"]
    Stacks(builds.aws.with_endpoint("codebuild", server.endpoint_url))._codebuild_project(
        _resolved(properties)
    )

    (project,) = builds.client.batch_get_projects(names=[PROJECT])["projects"]
    assert project["source"] == {"type": "CODEPIPELINE", "buildspec": "pipeline-config/buildspec.yml"}
    assert project["timeoutInMinutes"] == int(properties["TimeoutInMinutes"])
    assert project["environment"]["privilegedMode"] is True
    assert {v["name"] for v in project["environment"]["environmentVariables"]} >= {
        "ECR_REPOSITORY_URI",
        "TASK_FAMILY",
        "CONTAINER_NAME",
    }
    assert project["logsConfig"]["cloudWatchLogs"] == {"status": "ENABLED", "groupName": GROUP}
