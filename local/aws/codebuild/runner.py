"""One CodeBuild build, run for real on this machine: clone, buildspec phases, reports, artifacts, logs.

The phases and their order are CodeBuild's (botocore `BuildPhase.phaseType`; "Build phase transitions",
view-build-details.html#view-build-details-phases):

    SUBMITTED, QUEUED, PROVISIONING, DOWNLOAD_SOURCE, INSTALL, PRE_BUILD, BUILD, POST_BUILD,
    UPLOAD_ARTIFACTS, FINALIZING, COMPLETED

- QUEUED and PROVISIONING take no time here (CodeBuild's queue and container start are not modelled).
- DOWNLOAD_SOURCE: a full `git clone` of the repository checked out at the commit (detached), as CodeBuild
  does for CodePipeline's CODEBUILD_CLONE_REF artifacts (the clone has its git metadata); then each of the
  host's cached paths is symlinked into the source (see BuildHost); then the buildspec is read
  (YAML_FILE_ERROR when it is missing or cannot run).
- INSTALL to POST_BUILD: each phase's `commands`, then its `finally` commands, in one shell (shell.py).
  A command that exits non-zero fails its phase with COMMAND_EXECUTION_ERROR "Error while executing command:
  <command>. Reason: exit status <n>" (the message CodeBuild's logs and BatchGetBuilds carry); the phase's
  remaining commands are skipped and its `finally` commands run (build-spec-ref.html, `finally`).
  After a failed phase: `on-failure: ABORT` ends the build (FINALIZING next: no later phase, no upload);
  `CONTINUE` goes on to the next phase; without `on-failure`, the default transitions: a failed INSTALL or
  PRE_BUILD goes to FINALIZING ("if a command fails during the install phase, none of the commands in the
  pre_build, build, and post_build phases are run"), a failed BUILD goes on to POST_BUILD, and
  UPLOAD_ARTIFACTS "is always attempted, even if the BUILD phase fails". CODEBUILD_BUILD_SUCCEEDING is 1
  until a phase fails, 0 after (build-env-ref-env-vars.html).
- Reports are read after the buildspec phases, whatever their outcome, when their files exist.
- UPLOAD_ARTIFACTS: the `artifacts` files, relative to `base-directory`, zipped at the root of the archive
  (their paths below it kept unless `discard-paths: yes`) and put to the output location CodePipeline gave.
  A pattern that matches nothing is skipped ("Skipping invalid file path"); when nothing matches at all the
  phase fails with CLIENT_ERROR "no matching artifact paths found", as CodeBuild's logs show.
- TimeoutInMinutes: measured from PROVISIONING on the wall clock, scaled with `scale` and never below the
  host's `timeout_floor`; when it passes, the
  running command is killed, its phase is TIMED_OUT with BUILD_TIMED_OUT "Build has timed out. " and the
  build TIMED_OUT (status codes as CodeBuild's logs show them; AWS documents the statuses, not the message).
- FINALIZING: the shell and whatever it started are killed, the workspace removed, the log flushed.

Every output line goes to the build's CloudWatch Logs stream (the project's LogsConfig group, stream = the
build id's UUID), with the agent's own `[Container] <time> ...` lines as CodeBuild writes them.
"""

from __future__ import annotations

import contextlib
import copy
import glob
import io
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from local.aws.codebuild.buildspec import Buildspec, BuildspecError, FileSet, Phase, parse
from local.aws.codebuild.reports import TestReport, junit_cases
from local.aws.codebuild.shell import CommandResult, ShellSession
from local.aws.moto_server import ACCOUNT_ID, Aws
from local.timescale import TimeScale

LOG = logging.getLogger("local.codebuild")
JSON = dict[str, Any]

# What an Ubuntu build image puts on PATH (the drill's own PATH, pyenv shims and all, is not the build's).
STANDARD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DEFAULT_BUILDSPEC = "buildspec.yml"
BUILDSPEC_PHASES = (
    ("install", "INSTALL"),
    ("pre_build", "PRE_BUILD"),
    ("build", "BUILD"),
    ("post_build", "POST_BUILD"),
)
# Default transitions after a failed phase without on-failure (view-build-details.html, phase transitions).
STOPS_THE_BUILD = frozenset({"INSTALL", "PRE_BUILD"})
LOG_BATCH = 500


@dataclass(frozen=True)
class BuildHost:
    """The machine standing in for CodeBuild's build container.

    - `tools_dir`: first on PATH (the `docker` stand-in goes there); `tools`, when given, is called with each
      build's workspace and returns a directory put before it: tools of the build's own, as each CodeBuild
      build has its own container (`lambda ws: write_docker_cli(ws / "bin", registry_dir=R,
      daemon_dir=ws / "docker").parent`: no login or image left over from an earlier build).
    - `cli_dir`: last on PATH, after the image's standard directories: the AWS CLI (this project's .venv/bin,
      where `aws` honours AWS_ENDPOINT_URL); `python3` stays the system one, as on the image.
    - `cached_paths`: source-relative path -> a prebuilt directory, symlinked into each fresh clone (standing
      in for a cache: `{".venv": <the project's .venv>}`; `make venv` is then a no-op while the requirements'
      content is unchanged, and rebuilds a real .venv in the clone when a commit changes them).
    - `work_dir`: where each build's workspace is made (a temporary directory by default);
      `keep_workspaces`: leave them for inspection.
    - `env`: the image's own variables (for example the docker stand-in's settings), under every other.
    - `timeout_floor`: wall seconds a build's scaled TimeoutInMinutes is never below: its commands run at
      this machine's pace, which no time scale speeds up (a hung build is found out later, never sooner).
    - `hold_clock`: the AWS clock is held while the build runs: the machine's work is not AWS time, and
      nothing else (traffic, health checks, alarms) moves or competes with it meanwhile.
    """

    tools_dir: Path | None = None
    tools: Callable[[Path], Path] | None = None
    cli_dir: Path | None = None
    cached_paths: Mapping[str, Path] = field(default_factory=dict)
    work_dir: Path | None = None
    keep_workspaces: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_floor: float = 0.0
    hold_clock: bool = False


class CloneSource(Protocol):
    """What a CODEBUILD_CLONE_REF artifact names: a repository (a git URL or a bare repository's path), the
    full commit id, and the branch (codepipeline's CloneRef has these)."""

    @property
    def repository(self) -> str: ...

    @property
    def commit(self) -> str: ...

    @property
    def branch(self) -> str: ...


class ArtifactLocation(Protocol):
    @property
    def bucket(self) -> str: ...

    @property
    def key(self) -> str: ...


def s3_arn(location: ArtifactLocation) -> str:
    return f"arn:aws:s3:::{location.bucket}/{location.key}"


class StopBuild(Exception):
    """The build ends now with this status (TIMED_OUT or STOPPED), after FINALIZING."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class PhaseFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BuildState:
    """A build's record (BatchGetBuilds' shape) and what the stand-in keeps beside it; `lock` guards both."""

    def __init__(self, record: JSON, clock: Callable[[], float], lock: threading.RLock) -> None:
        self.record = record
        self.clock = clock
        self.lock = lock
        self.lines: list[str] = []
        self.reports: dict[str, TestReport] = {}
        self.notes: list[str] = []
        self.done = threading.Event()
        self.stopping = threading.Event()

    def snapshot(self) -> JSON:
        with self.lock:
            return copy.deepcopy(self.record)

    def note(self, text: str) -> None:
        """Record where this build ran differently from CodeBuild (`CodeBuildService.notes`)."""
        with self.lock:
            self.notes.append(text)

    def update(self, **fields: Any) -> None:
        with self.lock:
            self.record.update(fields)

    def begin(self, phase: str) -> None:
        with self.lock:
            entry: JSON = {"phaseType": phase, "startTime": self.clock()}
            self.record["phases"].append(entry)
            self.record["currentPhase"] = phase

    def end(self, status: str, code: str = "", message: str = "") -> None:
        """End the current phase with `status`; its context (code, message) when it did not succeed."""
        with self.lock:
            entry = self.record["phases"][-1]
            now = self.clock()
            entry["phaseStatus"] = status
            entry["endTime"] = now
            entry["durationInSeconds"] = max(0, round(now - entry["startTime"]))
            if entry["phaseType"] != "SUBMITTED":
                entry["contexts"] = [{"statusCode": code, "message": message}]


class BuildLog:
    """The build's log lines: kept in memory (without their newline) and put to CloudWatch Logs in order."""

    def __init__(self, state: BuildState, clock: Callable[[], float]) -> None:
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._last_ms = 0
        self._logs: Any = None
        self._group = ""
        self._stream = ""

    def open(self, logs_client: Any, group: str, stream: str) -> None:
        """From now on, flushes go to `group`/`stream` (both created when absent, as CodeBuild does)."""
        with contextlib.suppress(logs_client.exceptions.ResourceAlreadyExistsException):
            logs_client.create_log_group(logGroupName=group)
        with contextlib.suppress(logs_client.exceptions.ResourceAlreadyExistsException):
            logs_client.create_log_stream(logGroupName=group, logStreamName=stream)
        with self._lock:
            self._logs, self._group, self._stream = logs_client, group, stream

    def line(self, text: str) -> None:
        with self._lock:
            stamp = max(self._last_ms, int(self._clock() * 1000))
            self._last_ms = stamp
            # Each event is one line with its newline (CloudWatch Logs takes no empty message).
            self._pending.append({"timestamp": stamp, "message": f"{text}\n"})
            with self._state.lock:
                self._state.lines.append(text)
            full = len(self._pending) >= LOG_BATCH
        if full:
            self.flush()

    def agent(self, text: str) -> None:
        """A line of CodeBuild's own agent: `[Container] 2024/05/01 12:00:00.123456 text`."""
        now = self._clock()
        stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(now))
        self.line(f"[Container] {stamp}.{int(now % 1 * 1_000_000):06d} {text}")

    def flush(self) -> None:
        with self._lock:
            if self._logs is None or not self._pending:
                return
            events, self._pending = self._pending, []
            try:
                self._logs.put_log_events(
                    logGroupName=self._group, logStreamName=self._stream, logEvents=events
                )
            except Exception:
                LOG.exception("codebuild: log events not put to %s/%s", self._group, self._stream)


def _git(
    args: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        ["git", *args],  # noqa: S607 - git from the image's PATH
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _matches(root: Path, pattern: str) -> list[Path]:
    """Files under `root` matching a buildspec location (`**/*`, `dir/*`, a plain path)."""
    found = glob.glob(pattern, root_dir=root, recursive=True)
    return sorted(root / name for name in found if (root / name).is_file())


def _base_directories(src: Path, base: str | None) -> list[Path]:
    if base is None:
        return [src]
    return sorted(p for p in (src / name for name in glob.glob(base, root_dir=src)) if p.is_dir())


def _same_version(wanted: str, found: str) -> bool:
    """runtime-versions' `3.11`, `3.x` or `latest` against a version `3.11.2`."""
    if wanted == "latest":
        return True
    want, have = wanted.split("."), found.split(".")
    if want[0] != have[0]:
        return False
    return len(want) < 2 or want[1] == "x" or (len(have) > 1 and want[1] == have[1])


@dataclass(frozen=True)
class BuildRequest:
    project: JSON
    source: CloneSource
    output: ArtifactLocation | None
    overrides: Mapping[str, str]


class BuildRunner:
    """Runs one build on its own thread, writing its progress into `state`."""

    def __init__(
        self,
        state: BuildState,
        request: BuildRequest,
        *,
        aws: Aws,
        host: BuildHost,
        clock: Callable[[], float],
        scale: TimeScale | None,
    ) -> None:
        self.state = state
        self.request = request
        self.aws = aws
        self.host = host
        self.clock = clock
        self.scale = scale
        self.log = BuildLog(state, clock)
        self._workspace: Path | None = None
        self.shell: ShellSession | None = None
        self.spec = Buildspec()
        self.env: dict[str, str] = {}
        self._deadline: float | None = None
        self._succeeding = True

    @property
    def workspace(self) -> Path:
        """The build's own directory (src: CODEBUILD_SRC_DIR, home: HOME), made in PROVISIONING."""
        if self._workspace is None:
            raise RuntimeError("no workspace before PROVISIONING")
        return self._workspace

    # ------------------------------------------------------------------ clock
    def _now(self) -> float:
        """Wall seconds: the timeout is the machine's (its commands run at its pace, held clock or not)."""
        return time.monotonic()

    def _remaining(self) -> float | None:
        if self.state.stopping.is_set():
            return 0.0
        return None if self._deadline is None else self._deadline - self._now()

    def _check_time(self) -> None:
        if self.state.stopping.is_set():
            raise StopBuild("STOPPED")
        left = self._remaining()
        if left is not None and left <= 0:
            raise StopBuild("TIMED_OUT")

    # ------------------------------------------------------------------ the build
    def run(self) -> None:
        held = (
            self.scale.hold(f"build {self.state.record['id']}")
            if self.scale is not None and self.host.hold_clock
            else contextlib.nullcontext()
        )
        with held:  # FINALIZING too: the workspace's removal is the machine's work as well
            self._run_and_finalize()

    def _run_and_finalize(self) -> None:
        status = "FAILED"
        try:
            status = self._run()
        except StopBuild as stop:
            status = stop.status
            if stop.status == "TIMED_OUT":
                self.log.agent("Build timed out")
                self.state.end("TIMED_OUT", "BUILD_TIMED_OUT", "Build has timed out. ")
            else:
                self.state.end("STOPPED", "BUILD_STOPPED", "Build was stopped. ")
        except Exception as exc:
            LOG.exception("codebuild: build %s failed in the stand-in", self.state.record["id"])
            status = "FAULT"
            with self.state.lock:
                in_progress = "phaseStatus" not in self.state.record["phases"][-1]
            if in_progress:
                self.state.end("FAULT", "STAND_IN_ERROR", f"{type(exc).__name__}: {exc}")
        finally:
            self._finalize(status)

    def _run(self) -> str:
        state = self.state
        state.end("SUCCEEDED")  # SUBMITTED
        state.begin("QUEUED")
        state.end("SUCCEEDED")
        state.begin("PROVISIONING")
        self._provision()
        state.end("SUCCEEDED")
        state.begin("DOWNLOAD_SOURCE")
        try:
            self._download_source()
        except PhaseFailed as failure:
            self._phase_failed("DOWNLOAD_SOURCE", failure)
            return "FAILED"
        self._phase_succeeded("DOWNLOAD_SOURCE")
        upload = self._buildspec_phases()
        self._reports()
        if upload:
            state.begin("UPLOAD_ARTIFACTS")
            self.log.agent("Entering phase UPLOAD_ARTIFACTS")
            try:
                self._upload_artifacts()
            except PhaseFailed as failure:
                self._phase_failed("UPLOAD_ARTIFACTS", failure)
            else:
                self._phase_succeeded("UPLOAD_ARTIFACTS")
        return "SUCCEEDED" if self._succeeding else "FAILED"

    def _phase_succeeded(self, phase: str) -> None:
        self.log.agent(f"Phase complete: {phase} State: SUCCEEDED")
        self.log.agent("Phase context status code:  Message: ")
        self.state.end("SUCCEEDED")

    def _phase_failed(self, phase: str, failure: PhaseFailed) -> None:
        self._succeeding = False
        self.log.agent(f"Phase complete: {phase} State: FAILED")
        self.log.agent(f"Phase context status code: {failure.code} Message: {failure.message}")
        self.state.end("FAILED", failure.code, failure.message)

    # ------------------------------------------------------------------ PROVISIONING
    def _provision(self) -> None:
        record = self.state.record
        project = self.request.project
        timeout = self._scaled(int(record["timeoutInMinutes"]) * 60)
        self._deadline = self._now() + max(timeout, self.host.timeout_floor)
        self._workspace = Path(tempfile.mkdtemp(prefix="codebuild-", dir=self.host.work_dir))
        (self.workspace / "src").mkdir()
        (self.workspace / "home").mkdir()
        cloudwatch = ((project.get("logsConfig") or {}).get("cloudWatchLogs")) or {}
        if cloudwatch.get("status", "ENABLED") == "ENABLED":
            group = cloudwatch.get("groupName") or f"/aws/codebuild/{project['name']}"
            build_uuid = record["id"].split(":", 1)[1]
            prefix = cloudwatch.get("streamName")
            stream = f"{prefix}/{build_uuid}" if prefix else build_uuid
            region = self.aws.region
            self.state.update(
                logs={
                    "groupName": group,
                    "streamName": stream,
                    "deepLink": f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
                    f"#logEvent:group={group};stream={stream}",
                    "cloudWatchLogsArn": f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group}"
                    f":log-stream:{stream}",
                    "cloudWatchLogs": {"status": "ENABLED", "groupName": group},
                    "s3Logs": {"status": "DISABLED", "encryptionDisabled": False},
                }
            )
            self.log.open(self.aws.client("logs"), group, stream)
        self.log.agent("Waiting for agent ping")
        self.log.agent("Waiting for DOWNLOAD_SOURCE")

    def _scaled(self, aws_seconds: float) -> float:
        return self.scale.drill(aws_seconds) if self.scale is not None else aws_seconds

    # ------------------------------------------------------------------ DOWNLOAD_SOURCE
    def _git_env(self) -> dict[str, str]:
        return {
            "PATH": os.pathsep.join(STANDARD_PATH),
            "HOME": str(self.workspace / "home"),
            "LANG": "C.UTF-8",
            "GIT_TERMINAL_PROMPT": "0",
        }

    def _download_source(self) -> None:
        source = self.request.source
        src = self.workspace / "src"
        self.log.agent("Phase is DOWNLOAD_SOURCE")
        self.log.agent(f"CODEBUILD_SRC_DIR={src}")
        cloned = _git(["clone", "--quiet", "--no-checkout", source.repository, str(src)], self._git_env())
        if cloned.returncode != 0:
            self.log.line(cloned.stderr.strip())
            raise PhaseFailed(
                "CLIENT_ERROR",
                f"repository not found for primary source and source version {source.commit}",
            )
        checked = _git(["checkout", "--quiet", "--detach", source.commit], self._git_env(), cwd=src)
        if checked.returncode != 0:
            self.log.line(checked.stderr.strip())
            raise PhaseFailed(
                "CLIENT_ERROR", f"reference not found for primary source and source version {source.commit}"
            )
        resolved = _git(["rev-parse", "HEAD"], self._git_env(), cwd=src).stdout.strip()
        self.state.update(resolvedSourceVersion=resolved)
        for relative, cached in self.host.cached_paths.items():
            target = src / relative
            if not target.exists() and not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(cached, target_is_directory=cached.is_dir())
                self.log.agent(f"Restoring cached path {relative}")
        self._check_time()
        buildspec = (self.request.project.get("source") or {}).get("buildspec") or DEFAULT_BUILDSPEC
        if "\n" in buildspec:
            text = buildspec
        else:
            path = src / buildspec
            self.log.agent(f"YAML location is {path}")
            try:
                text = path.read_text()
            except OSError:
                raise PhaseFailed("YAML_FILE_ERROR", f"stat {path}: no such file or directory") from None
        try:
            self.spec = parse(text)
        except BuildspecError as exc:
            raise PhaseFailed("YAML_FILE_ERROR", str(exc)) from None
        self.env = self._environment(src, resolved)
        self.log.agent("Processing environment variables")

    def _environment(self, src: Path, resolved: str) -> dict[str, str]:
        """What the build's commands see, lowest precedence first (build-spec-ref.html, env/variables)."""
        record = self.state.record
        project = self.request.project
        path = [str(self.host.tools(self.workspace))] if self.host.tools is not None else []
        path += [str(self.host.tools_dir)] if self.host.tools_dir is not None else []
        path += STANDARD_PATH
        if self.host.cli_dir is not None:
            path.append(str(self.host.cli_dir))
        env = {
            "PATH": os.pathsep.join(path),
            "HOME": str(self.workspace / "home"),
            "LANG": "C.UTF-8",
            **self.aws.env(),
            **self.host.env,
            **self.spec.variables,
        }
        for variable in (project.get("environment") or {}).get("environmentVariables") or []:
            if variable.get("type", "PLAINTEXT") != "PLAINTEXT":
                raise PhaseFailed(
                    "CLIENT_ERROR",
                    f"{variable['type']} variable {variable['name']}: not resolved by the stand-in",
                )
            env[variable["name"]] = variable["value"]
        env.update(self.request.overrides)
        env.update(
            {
                "AWS_DEFAULT_REGION": self.aws.region,
                "AWS_REGION": self.aws.region,
                "CODEBUILD_BUILD_ARN": record["arn"],
                "CODEBUILD_BUILD_ID": record["id"],
                "CODEBUILD_BUILD_IMAGE": (project.get("environment") or {}).get("image", ""),
                "CODEBUILD_BUILD_NUMBER": str(record["buildNumber"]),
                "CODEBUILD_BUILD_SUCCEEDING": "1",
                "CODEBUILD_INITIATOR": record["initiator"],
                "CODEBUILD_KMS_KEY_ID": record["encryptionKey"],
                "CODEBUILD_LOG_PATH": (record.get("logs") or {}).get("streamName", ""),
                "CODEBUILD_PROJECT_ARN": project["arn"],
                "CODEBUILD_RESOLVED_SOURCE_VERSION": resolved,
                "CODEBUILD_SOURCE_VERSION": record["sourceVersion"],
                "CODEBUILD_SRC_DIR": str(src),
                "CODEBUILD_START_TIME": str(int(record["startTime"] * 1000)),
            }
        )
        return env

    # ------------------------------------------------------------------ INSTALL .. POST_BUILD
    def _new_shell(self) -> ShellSession:
        env = {**self.env, "CODEBUILD_BUILD_SUCCEEDING": "1" if self._succeeding else "0"}
        return ShellSession([self.spec.shell], self.workspace / "src", env, self.log.line)

    def _buildspec_phases(self) -> bool:
        """Run the four phases; whether UPLOAD_ARTIFACTS is attempted."""
        self.log.agent(f"Moving to directory {self.workspace / 'src'}")
        self.shell = self._new_shell()
        for name, phase_type in BUILDSPEC_PHASES:
            phase = self.spec.phase(name)
            self.state.begin(phase_type)
            self.log.agent(f"Entering phase {phase_type}")
            self.shell.export("CODEBUILD_BUILD_SUCCEEDING", "1" if self._succeeding else "0")
            if name == "install":
                self._runtime_versions(phase)
            failure = self._commands(phase)
            if failure is None:
                self._phase_succeeded(phase_type)
                continue
            self._phase_failed(phase_type, failure)
            if phase.on_failure == "ABORT":
                return False
            if phase.on_failure is None and phase_type in STOPS_THE_BUILD:
                return False
        return True

    def _commands(self, phase: Phase) -> PhaseFailed | None:
        failure = None
        for command in phase.commands:
            failure = self._command(command)
            if failure is not None:
                break
        for command in phase.finally_:
            finally_failure = self._command(command)
            if finally_failure is not None:
                failure = failure or finally_failure
                break
        return failure

    def _command(self, command: str) -> PhaseFailed | None:
        self._check_time()
        if self.shell is None or not self.shell.alive:
            self.state.note("a command ended the build's shell: a new one ran the commands after it")
            self.shell = self._new_shell()
        self.log.agent(f"Running command {command}")
        result: CommandResult = self.shell.run(command, self._remaining)
        if result.exit_status is None:
            self._check_time()
            raise StopBuild("TIMED_OUT")  # pragma: no cover - _check_time raises first
        if result.exit_status == 0:
            return None
        self.log.agent(f"Command did not exit successfully {command} exit status {result.exit_status}")
        return PhaseFailed(
            "COMMAND_EXECUTION_ERROR",
            f"Error while executing command: {command}. Reason: exit status {result.exit_status}",
        )

    def _runtime_versions(self, phase: Phase) -> None:
        """runtime-versions: the image would switch runtimes; this machine has one python3 (a note when the
        buildspec asks for another version) and installs nothing else."""
        for runtime, version in phase.runtime_versions:
            self.log.agent(f"Selecting '{runtime}' runtime version '{version}' based on manual selections...")
            if runtime != "python":
                self.state.note(f"runtime-versions {runtime}: {version} is not installed here")
                continue
            found = subprocess.run(
                ["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],  # noqa: S607
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if not _same_version(version, found):
                note = f"runtime-versions python: {version} asked; this machine's python3 is {found or '-'}"
                self.state.note(note)
                self.log.line(f"[stand-in] {note}: the commands run with it")

    # ------------------------------------------------------------------ reports
    def _reports(self) -> None:
        if not self.spec.reports:
            return
        src = self.workspace / "src"
        record = self.state.record
        region = self.aws.region
        self.log.agent("Preparing to copy TEST report files")
        for group, files in self.spec.reports.items():
            paths = self._file_list(src, files)
            if not paths:
                self.log.agent(f"Skipping report group {group}: no files found")
                continue
            if files.file_format != "JUNITXML":
                self.state.note(f"report group {group}: {files.file_format} is not read here")
                continue
            cases = []
            try:
                for path in paths:
                    cases.extend(junit_cases(path))
            except ValueError as exc:
                self.log.agent(f"Error processing report group {group}: {exc}")
                continue
            group_arn = (
                group
                if group.startswith("arn:")
                else f"arn:aws:codebuild:{region}:{ACCOUNT_ID}:report-group/{record['projectName']}-{group}"
            )
            report_arn = f"{group_arn.replace(':report-group/', ':report/')}:{uuid.uuid4()}"
            report = TestReport(group, group_arn, report_arn, files.file_format, tuple(cases))
            with self.state.lock:
                self.state.reports[group] = report
                self.state.record.setdefault("reportArns", []).append(report_arn)
            self.log.agent(f"Report {group}: {report.summary()}")

    def _file_list(self, src: Path, files: FileSet) -> list[Path]:
        return [path for path, _ in self._artifact_files(src, files, log=False)]

    # ------------------------------------------------------------------ UPLOAD_ARTIFACTS
    def _artifact_files(self, src: Path, files: FileSet, *, log: bool = True) -> list[tuple[Path, str]]:
        """(file, name in the archive) for each file the FileSet selects."""
        chosen: dict[str, Path] = {}
        bases = _base_directories(src, files.base_directory)
        if log and files.base_directory is not None:
            self.log.agent(f"Expanding base directory path: {files.base_directory}")
        for base in bases:
            for pattern in files.files:
                found = _matches(base, pattern)
                if log:
                    self.log.agent(f"Expanding {pattern}")
                    if not found:
                        self.log.agent(f"Skipping invalid file path {pattern}")
                for path in found:
                    name = path.name if files.discard_paths else path.relative_to(base).as_posix()
                    chosen.setdefault(name, path)
        return [(path, name) for name, path in sorted(chosen.items())]

    def _upload_artifacts(self) -> None:
        output = self.request.output
        if output is None:
            return  # NO_ARTIFACTS
        if self.spec.artifacts is None:
            raise PhaseFailed("CLIENT_ERROR", "no matching artifact paths found")
        self.log.agent("Assembling file list")
        base = self.spec.artifacts.base_directory
        if base is not None and not _base_directories(self.workspace / "src", base):
            self.log.agent(f"Expanding base directory path: {base}")
            raise PhaseFailed("CLIENT_ERROR", f"no matching base directory path found for {base}")
        files = self._artifact_files(self.workspace / "src", self.spec.artifacts)
        if not files:
            raise PhaseFailed("CLIENT_ERROR", "no matching artifact paths found")
        self.log.agent(f"Found {len(files)} file(s)")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, name in files:
                archive.write(path, name)
        s3 = self.aws.client("s3")
        try:
            s3.put_object(Bucket=output.bucket, Key=output.key, Body=buffer.getvalue())
        except s3.exceptions.ClientError as exc:
            raise PhaseFailed("CLIENT_ERROR", str(exc)) from None

    # ------------------------------------------------------------------ FINALIZING, COMPLETED
    def _finalize(self, status: str) -> None:
        state = self.state
        state.begin("FINALIZING")
        self.log.agent("Phase is FINALIZING")
        try:
            if self.shell is not None:
                self.shell.close()
            if self._workspace is not None and not self.host.keep_workspaces:
                shutil.rmtree(self._workspace, ignore_errors=True)
            state.end("SUCCEEDED")
        except Exception:  # the build's outcome is already decided
            LOG.exception("codebuild: finalizing %s", state.record["id"])
            state.end("FAULT", "STAND_IN_ERROR", "finalizing failed")
        self.log.flush()
        with state.lock:
            state.begin("COMPLETED")
            state.record.update(buildStatus=status, buildComplete=True, endTime=self.clock())
        state.done.set()
