"""In-memory CodeBuild: projects and builds, with AWS's shapes, and builds that really run (runner.py).

`CodeBuildService.call(operation, params)` is the API (AWS JSON 1.1 bodies; botocore's CodeBuild model is the
reference for every shape): CreateProject, BatchGetProjects, BatchGetBuilds, ListBuildsForProject, ListBuilds.
Errors carry AWS's codes: InvalidInputException, ResourceAlreadyExistsException, ResourceNotFoundException.

StartBuild is not served: CodePipeline's CodeBuild action starts builds, here through the Python entry point
the CodePipeline stand-in calls:

    build_id = service.start_pipeline_build(project_name, source=clone_ref, output=s3_location,
                                            initiator="codepipeline/<pipeline>")
    service.build(build_id)          # the build as BatchGetBuilds returns it (buildStatus IN_PROGRESS, ...)
    service.wait(build_id)           # the same, once buildComplete
    service.log_lines(build_id)      # every line of its log, as CloudWatch Logs has them
    service.test_report(build_id)    # a TestReport: counts and failed tests (the stand-in's own accessor)
    service.notes(build_id)          # where this build differed from CodeBuild (e.g. the python version)

CreateProject fills what AWS fills when it is not given (botocore `Project`): timeoutInMinutes 60,
queuedTimeoutInMinutes 480, the aws/s3 KMS alias as encryptionKey, NO_CACHE, PLAINTEXT variables, CloudWatch
Logs ENABLED and S3 logs DISABLED, a private project without a badge. Times are epoch seconds from `clock`
(the drill passes its AWS clock, `TimeScale.timestamp`).

ListBuilds and ListBuildsForProject answer newest first unless sortOrder is ASCENDING, 100 ids a page.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from local.aws.codebuild.reports import TestReport
from local.aws.codebuild.runner import (
    ArtifactLocation,
    BuildHost,
    BuildRequest,
    BuildRunner,
    BuildState,
    CloneSource,
    s3_arn,
)
from local.aws.json_api import ApiError, Operations
from local.aws.moto_server import ACCOUNT_ID, Aws
from local.background import Lifecycle
from local.timescale import TimeScale

JSON = dict[str, Any]
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_]{1,149}")
PAGE = 100
BATCH_LIMIT = 100
SOURCE_TYPES = frozenset(
    {"CODECOMMIT", "CODEPIPELINE", "GITHUB", "GITLAB", "GITLAB_SELF_MANAGED", "S3", "BITBUCKET",
     "GITHUB_ENTERPRISE", "NO_SOURCE"}
)  # fmt: skip
ARTIFACT_TYPES = frozenset({"CODEPIPELINE", "S3", "NO_ARTIFACTS"})
VARIABLE_TYPES = frozenset({"PLAINTEXT", "PARAMETER_STORE", "SECRETS_MANAGER"})


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidInputException", message)


def _require_structure(params: JSON, key: str, *required: str) -> JSON:
    value = params.get(key)
    if not isinstance(value, dict):
        raise _invalid(f"{key} is required")
    for member in required:
        if not value.get(member):
            raise _invalid(f"{key}.{member} is required")
    return copy.deepcopy(value)


def _page(ids: list[str], params: JSON) -> JSON:
    order = params.get("sortOrder") or "DESCENDING"
    if order not in ("ASCENDING", "DESCENDING"):
        raise _invalid(f"Invalid sort order {order}")
    ordered = ids if order == "ASCENDING" else list(reversed(ids))
    token = params.get("nextToken")
    start = 0
    if token:
        try:
            start = int(str(token))
        except ValueError:
            raise _invalid("Invalid next token") from None
    answer: JSON = {"ids": ordered[start : start + PAGE]}
    if start + PAGE < len(ordered):
        answer["nextToken"] = str(start + PAGE)
    return answer


class CodeBuildService(Lifecycle, Operations):
    """Thread-safe in-memory CodeBuild. `aws` (the stand-in's endpoints, passed to every build as its
    credentials and endpoint settings) may be replaced once every endpoint is known; `host` is the machine
    the builds run on; `scale` converts TimeoutInMinutes to drill time."""

    def __init__(
        self,
        aws: Aws,
        host: BuildHost | None = None,
        *,
        clock: Callable[[], float] = time.time,
        scale: TimeScale | None = None,
    ) -> None:
        self.aws = aws
        self.host = host or BuildHost()
        self.clock = clock
        self.scale = scale
        self._lock = threading.RLock()
        self._projects: dict[str, JSON] = {}
        self._builds: dict[str, BuildState] = {}
        self._order: list[str] = []
        self._numbers: dict[str, int] = {}

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:codebuild:{self.aws.region}:{ACCOUNT_ID}:{kind}/{name}"

    # ------------------------------------------------------------------ projects
    def _op_CreateProject(self, params: JSON) -> JSON:
        name = params.get("name")
        if not isinstance(name, str) or not PROJECT_NAME.fullmatch(name):
            raise _invalid(f"Invalid project name: {name}")
        source = _require_structure(params, "source", "type")
        if source["type"] not in SOURCE_TYPES:
            raise _invalid(f"Invalid source type: {source['type']}")
        artifacts = _require_structure(params, "artifacts", "type")
        if artifacts["type"] not in ARTIFACT_TYPES:
            raise _invalid(f"Invalid artifacts type: {artifacts['type']}")
        environment = _require_structure(params, "environment", "type", "image", "computeType")
        if not params.get("serviceRole"):
            raise _invalid("serviceRole is required")
        variables = []
        for variable in environment.get("environmentVariables") or []:
            if not isinstance(variable, dict) or not variable.get("name") or "value" not in variable:
                raise _invalid("An environment variable needs a name and a value")
            kind = variable.get("type", "PLAINTEXT")
            if kind not in VARIABLE_TYPES:
                raise _invalid(f"Invalid environment variable type: {kind}")
            variables.append({"name": variable["name"], "value": str(variable["value"]), "type": kind})
        environment["environmentVariables"] = variables
        environment.setdefault("privilegedMode", False)
        environment.setdefault("imagePullCredentialsType", "CODEBUILD")
        timeout = params.get("timeoutInMinutes", 60)
        queued = params.get("queuedTimeoutInMinutes", 480)
        if not isinstance(timeout, int) or not 5 <= timeout <= 2160:
            raise _invalid("Timeout in minutes must be between 5 and 2160")
        if not isinstance(queued, int) or not 5 <= queued <= 480:
            raise _invalid("Queued timeout in minutes must be between 5 and 480")
        logs = copy.deepcopy(params.get("logsConfig") or {})
        cloudwatch = {"status": "ENABLED", **(logs.get("cloudWatchLogs") or {})}
        s3_logs = {"status": "DISABLED", "encryptionDisabled": False, **(logs.get("s3Logs") or {})}
        now = self.clock()
        project: JSON = {
            "name": name,
            "arn": self._arn("project", name),
            "source": source,
            "secondarySources": copy.deepcopy(params.get("secondarySources") or []),
            "secondarySourceVersions": copy.deepcopy(params.get("secondarySourceVersions") or []),
            "artifacts": artifacts,
            "secondaryArtifacts": copy.deepcopy(params.get("secondaryArtifacts") or []),
            "cache": copy.deepcopy(params.get("cache") or {"type": "NO_CACHE"}),
            "environment": environment,
            "serviceRole": params["serviceRole"],
            "timeoutInMinutes": timeout,
            "queuedTimeoutInMinutes": queued,
            "encryptionKey": params.get("encryptionKey")
            or f"arn:aws:kms:{self.aws.region}:{ACCOUNT_ID}:alias/aws/s3",
            "tags": copy.deepcopy(params.get("tags") or []),
            "created": now,
            "lastModified": now,
            "badge": {"badgeEnabled": bool(params.get("badgeEnabled", False))},
            "logsConfig": {"cloudWatchLogs": cloudwatch, "s3Logs": s3_logs},
            "projectVisibility": "PRIVATE",
        }
        for key in ("description", "sourceVersion", "vpcConfig", "concurrentBuildLimit"):
            if key in params:
                project[key] = copy.deepcopy(params[key])
        with self._lock:
            if name in self._projects:
                raise ApiError("ResourceAlreadyExistsException", f"Project already exists: {project['arn']}")
            self._projects[name] = project
            return {"project": copy.deepcopy(project)}

    def _project(self, name_or_arn: Any) -> JSON | None:
        name = str(name_or_arn)
        if name.startswith("arn:"):
            name = name.rsplit("/", 1)[-1]
        return self._projects.get(name)

    def _op_BatchGetProjects(self, params: JSON) -> JSON:
        names = params.get("names")
        if not isinstance(names, list) or not 1 <= len(names) <= BATCH_LIMIT:
            raise _invalid(f"names must hold 1 to {BATCH_LIMIT} project names")
        with self._lock:
            found = [(name, self._project(name)) for name in names]
            return {
                "projects": [copy.deepcopy(p) for _, p in found if p is not None],
                "projectsNotFound": [name for name, p in found if p is None],
            }

    # ------------------------------------------------------------------ builds
    def _op_BatchGetBuilds(self, params: JSON) -> JSON:
        ids = params.get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= BATCH_LIMIT:
            raise _invalid(f"ids must hold 1 to {BATCH_LIMIT} build ids")
        with self._lock:
            states = [(build_id, self._builds.get(str(build_id))) for build_id in ids]
        return {
            "builds": [state.snapshot() for _, state in states if state is not None],
            "buildsNotFound": [build_id for build_id, state in states if state is None],
        }

    def _op_ListBuildsForProject(self, params: JSON) -> JSON:
        name = params.get("projectName")
        with self._lock:
            if not name or self._project(name) is None:
                raise ApiError(
                    "ResourceNotFoundException", f"Project cannot be found: {self._arn('project', str(name))}"
                )
            ids = [i for i in self._order if self._builds[i].record["projectName"] == name]
        return _page(ids, params)

    def _op_ListBuilds(self, params: JSON) -> JSON:
        with self._lock:
            ids = list(self._order)
        return _page(ids, params)

    # ------------------------------------------------------------------ CodePipeline's entry point
    def start_pipeline_build(
        self,
        project_name: str,
        *,
        source: CloneSource,
        output: ArtifactLocation | None,
        initiator: str,
        source_artifact: ArtifactLocation | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> str:
        """Start a build of `project_name` as CodePipeline's CodeBuild action does; the build id.

        `source`: the CODEBUILD_CLONE_REF artifact's repository, commit and branch (DOWNLOAD_SOURCE clones
        it). `output`: where the artifacts zip goes (the action's output artifact). `initiator`:
        "codepipeline/<pipeline name>". `source_artifact`: the input artifact's S3 object (the build's
        sourceVersion is its ARN, as for CodePipeline builds; the commit id without it). `environment`: the
        action's EnvironmentVariables, which take precedence over the project's."""
        with self._lock:
            project = self._project(project_name)
            if project is None:
                raise ApiError(
                    "ResourceNotFoundException",
                    f"Project cannot be found: {self._arn('project', project_name)}",
                )
            project = copy.deepcopy(project)
            name = project["name"]
            number = self._numbers.get(name, 0) + 1
            self._numbers[name] = number
            build_id = f"{name}:{uuid.uuid4()}"
            now = self.clock()
            build_environment = copy.deepcopy(project["environment"])
            overrides = dict(environment or {})
            if overrides:
                kept = [v for v in build_environment["environmentVariables"] if v["name"] not in overrides]
                build_environment["environmentVariables"] = kept + [
                    {"name": k, "value": v, "type": "PLAINTEXT"} for k, v in overrides.items()
                ]
            region = self.aws.region
            record: JSON = {
                "id": build_id,
                "arn": self._arn("build", build_id),
                "buildNumber": number,
                "startTime": now,
                "currentPhase": "SUBMITTED",
                "buildStatus": "IN_PROGRESS",
                "sourceVersion": s3_arn(source_artifact) if source_artifact is not None else source.commit,
                "projectName": name,
                "phases": [{"phaseType": "SUBMITTED", "startTime": now}],
                "source": copy.deepcopy(project["source"]),
                "secondarySources": [],
                "secondarySourceVersions": [],
                "artifacts": {"location": s3_arn(output) if output is not None else ""},
                "secondaryArtifacts": [],
                "cache": copy.deepcopy(project["cache"]),
                "environment": build_environment,
                "serviceRole": project["serviceRole"],
                "logs": {
                    "deepLink": f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
                    "#logEvent:group=null;stream=null",
                    "cloudWatchLogs": copy.deepcopy(project["logsConfig"]["cloudWatchLogs"]),
                    "s3Logs": copy.deepcopy(project["logsConfig"]["s3Logs"]),
                },
                "timeoutInMinutes": project["timeoutInMinutes"],
                "queuedTimeoutInMinutes": project["queuedTimeoutInMinutes"],
                "buildComplete": False,
                "initiator": initiator,
                "encryptionKey": project["encryptionKey"],
            }
            state = BuildState(record, self.clock, self._lock)
            self._builds[build_id] = state
            self._order.append(build_id)
        runner = BuildRunner(
            state,
            BuildRequest(project, source, output, overrides),
            aws=self.aws,
            host=self.host,
            clock=self.clock,
            scale=self.scale,
        )
        threading.Thread(target=runner.run, name=f"codebuild-{build_id}", daemon=True).start()
        return build_id

    def _state(self, build_id: str) -> BuildState:
        with self._lock:
            state = self._builds.get(build_id)
        if state is None:
            raise ApiError("ResourceNotFoundException", f"Build {build_id} does not exist")
        return state

    def build(self, build_id: str) -> JSON:
        """The build as BatchGetBuilds returns it."""
        return self._state(build_id).snapshot()

    def wait(self, build_id: str, timeout: float | None = None) -> JSON:
        """The build once it is complete; TimeoutError after `timeout` wall seconds."""
        state = self._state(build_id)
        if not state.done.wait(timeout):
            raise TimeoutError(f"build {build_id} still {state.snapshot()['currentPhase']}")
        return state.snapshot()

    def log_lines(self, build_id: str) -> list[str]:
        state = self._state(build_id)
        with self._lock:
            return list(state.lines)

    def test_reports(self, build_id: str) -> dict[str, TestReport]:
        """The build's test reports by the buildspec's report group name."""
        state = self._state(build_id)
        with self._lock:
            return dict(state.reports)

    def test_report(self, build_id: str, group: str | None = None) -> TestReport | None:
        """One test report of the build: `group`'s, or the first; None when it produced none."""
        reports = self.test_reports(build_id)
        if group is not None:
            return reports.get(group)
        return next(iter(reports.values()), None)

    def notes(self, build_id: str) -> list[str]:
        """Where this build ran differently from CodeBuild (local/README.md lists the standing ones)."""
        state = self._state(build_id)
        with self._lock:
            return list(state.notes)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the builds still running (STOPPED; their shells killed) and wait for them to finish."""
        with self._lock:
            running = [s for s in self._builds.values() if not s.done.is_set()]
        for state in running:
            state.stopping.set()
        deadline = time.monotonic() + timeout
        for state in running:
            state.done.wait(max(0.0, deadline - time.monotonic()))
