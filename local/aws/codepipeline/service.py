"""The CodePipeline stand-in's API and executions: pipelines as CreatePipeline declares them (CloudFormation
creates them from cicd-pipeline.yaml), run stage by stage with the action providers they name.

API (AWS JSON 1.1, local/aws/json_api.py; shapes and fields as botocore's codepipeline model answers them):
CreatePipeline, GetPipeline, ListPipelines, GetPipelineState, StartPipelineExecution, GetPipelineExecution,
ListPipelineExecutions (newest first), ListActionExecutions (newest first, `filter.pipelineExecutionId`).

Executions ([How pipeline executions work](https://docs.aws.amazon.com/codepipeline/latest/userguide/
concepts-how-it-works.html)):
- a pipeline starts one when it is created (trigger `CreatePipeline`; `start_on_create=False` turns that off,
  a deliberate difference the drill uses, listed in local/README.md), when `StartPipelineExecution` is called,
  and when its source action's branch is pushed to (`Webhook`, with the connection as trigger detail);
- QUEUED mode (the template's): "executions are processed one by one in the order that they are queued": a
  stage takes one execution at a time, the others wait at its entrance in their order;
- stages run in order, each action of a stage by `runOrder`; an action that fails fails its stage and the
  execution (later stages do not run);
- artifacts live in the artifact store bucket under `<pipeline name[:20]>/<artifact name[:10]>/<7 random
  characters>`, the key layout CodePipeline writes (as its artifact buckets show; AWS documents no format).

An action provider is a function of an `ActionRun` returning an `ActionResult`; local/aws/codepipeline/
actions.py has the three the template uses.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from local.aws.json_api import ApiError, Operations
from local.aws.moto_server import ACCOUNT_ID, REGION

JSON = dict[str, Any]
ActionStatus = Literal["InProgress", "Succeeded", "Failed", "Abandoned"]
ProviderKey = tuple[str, str, str]  # (category, owner, provider) of an actionTypeId


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def to_json(self) -> JSON:
        return {"bucket": self.bucket, "key": self.key}


@dataclass(frozen=True)
class Trigger:
    trigger_type: str  # the API's TriggerType
    detail: str
    commit: str | None = None  # a push's head: the revision the source action takes


@dataclass
class ActionRun:
    """What an action provider is given."""

    pipeline: str
    execution_id: str
    stage: str
    name: str
    configuration: Mapping[str, str]
    inputs: Mapping[str, S3Location]
    outputs: Mapping[str, S3Location]
    trigger: Trigger
    progress: Callable[[str, str | None], None]  # (summary, external execution id) while it runs


@dataclass(frozen=True)
class ActionResult:
    status: Literal["Succeeded", "Failed"]
    summary: str = ""
    external_id: str | None = None
    external_url: str | None = None
    error_code: str | None = None  # ErrorDetails.code: JobFailed, ...
    error_message: str | None = None
    output_variables: Mapping[str, str] = field(default_factory=dict)
    revision: JSON | None = None  # a source action's revision: revisionId, revisionSummary, revisionUrl


Provider = Callable[[ActionRun], ActionResult]


@dataclass
class ActionExecution:
    action_execution_id: str
    execution_id: str
    stage: str
    name: str
    declaration: JSON
    inputs: dict[str, S3Location]
    outputs: dict[str, S3Location]
    start: float
    last_update: float
    status: ActionStatus = "InProgress"
    summary: str = ""
    external_id: str | None = None
    external_url: str | None = None
    error: JSON | None = None
    output_variables: dict[str, str] = field(default_factory=dict)

    def detail(self, pipeline: str, version: int) -> JSON:
        """ListActionExecutions' ActionExecutionDetail."""
        type_id = self.declaration["actionTypeId"]
        result: JSON = {"externalExecutionSummary": self.summary}
        if self.external_id:
            result["externalExecutionId"] = self.external_id
        if self.external_url:
            result["externalExecutionUrl"] = self.external_url
        if self.error:
            result["errorDetails"] = self.error
        return {
            "pipelineExecutionId": self.execution_id,
            "actionExecutionId": self.action_execution_id,
            "pipelineVersion": version,
            "stageName": self.stage,
            "actionName": self.name,
            "startTime": self.start,
            "lastUpdateTime": self.last_update,
            "status": self.status,
            "input": {
                "actionTypeId": type_id,
                "configuration": dict(self.declaration.get("configuration") or {}),
                "resolvedConfiguration": dict(self.declaration.get("configuration") or {}),
                "region": REGION,
                "inputArtifacts": [
                    {"name": n, "s3location": loc.to_json()} for n, loc in self.inputs.items()
                ],
            },
            "output": {
                "outputArtifacts": [
                    {"name": n, "s3location": loc.to_json()}
                    for n, loc in self.outputs.items()
                    if self.status == "Succeeded"
                ],
                "executionResult": result,
                "outputVariables": dict(self.output_variables),
            },
        }


@dataclass
class Execution:
    execution_id: str
    pipeline: str
    version: int
    trigger: Trigger
    start: float
    last_update: float
    status: str = "InProgress"
    status_summary: str | None = None
    stage_status: dict[str, str] = field(default_factory=dict)
    actions: list[ActionExecution] = field(default_factory=list)
    source_revisions: list[JSON] = field(default_factory=list)
    artifact_revisions: list[JSON] = field(default_factory=list)

    def summary(self) -> JSON:
        out: JSON = {
            "pipelineExecutionId": self.execution_id,
            "status": self.status,
            "startTime": self.start,
            "lastUpdateTime": self.last_update,
            "sourceRevisions": copy.deepcopy(self.source_revisions),
            "trigger": {"triggerType": self.trigger.trigger_type, "triggerDetail": self.trigger.detail},
            "executionMode": "QUEUED",
            "executionType": "STANDARD",
        }
        if self.status_summary:
            out["statusSummary"] = self.status_summary
        return out


@dataclass
class Pipeline:
    declaration: JSON
    created: float
    updated: float
    tags: list[JSON]
    executions: list[Execution] = field(default_factory=list)  # oldest first
    # QUEUED mode: per stage, the executions waiting at its entrance (in order) and the one inside.
    entrance: dict[str, list[str]] = field(default_factory=dict)
    inside: dict[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.declaration["name"])

    @property
    def version(self) -> int:
        return int(self.declaration.get("version", 1))


def _random(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


class CodePipelineService(Operations):
    """Pipelines and their executions; `providers` run the actions (keyed by category, owner, provider)."""

    def __init__(
        self,
        providers: Mapping[ProviderKey, Provider] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        start_on_create: bool = True,
    ) -> None:
        self.providers = dict(providers or {})
        self._clock = clock
        self._start_on_create = start_on_create
        self._pipelines: dict[str, Pipeline] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._on_source: list[Callable[[Pipeline, JSON], None]] = []
        # (detail-type, detail) of each state change, as CodePipeline sends them to EventBridge.
        self.on_event: Callable[[str, JSON], None] = lambda _type, _detail: None

    # ------------------------------------------------------------------ the API

    def _pipeline(self, name: object) -> Pipeline:
        pipeline = self._pipelines.get(str(name))
        if pipeline is None:
            raise ApiError(
                "PipelineNotFoundException",
                f"Account '{ACCOUNT_ID}' does not have a pipeline with name '{name}'",
            )
        return pipeline

    def _op_CreatePipeline(self, params: JSON) -> JSON:
        declaration = copy.deepcopy(params.get("pipeline") or {})
        name = str(declaration.get("name") or "")
        if not name or not declaration.get("stages"):
            raise ApiError("InvalidStructureException", "a pipeline needs a name and stages")
        self._validate(declaration)
        with self._lock:
            if name in self._pipelines:
                raise ApiError(
                    "InvalidStructureException", f"A pipeline with the name '{name}' already exists"
                )
            declaration["version"] = 1
            now = self._clock()
            pipeline = Pipeline(declaration, now, now, list(params.get("tags") or []))
            self._pipelines[name] = pipeline
        for listener in self._on_source:
            listener(pipeline, self._source_action(pipeline))
        if self._start_on_create:
            self.start_execution(name, Trigger("CreatePipeline", f"arn:aws:iam::{ACCOUNT_ID}:root"))
        return {"pipeline": copy.deepcopy(declaration), "tags": pipeline.tags}

    def _validate(self, declaration: JSON) -> None:
        """What CreatePipeline refuses that the template could get wrong: an action type without a provider
        here, an input artifact no earlier action outputs."""
        produced: set[str] = set()
        for stage in declaration["stages"]:
            for action in stage.get("actions", []):
                type_id = action["actionTypeId"]
                key = (type_id["category"], type_id["owner"], type_id["provider"])
                if self.providers and key not in self.providers:
                    raise ApiError("InvalidActionDeclarationException", f"no stand-in for action type {key}")
                for artifact in action.get("inputArtifacts", []):
                    if artifact["name"] not in produced:
                        raise ApiError(
                            "InvalidStructureException",
                            f"input artifact {artifact['name']} of action {action['name']} is not the output "
                            "of an earlier action",
                        )
            for action in stage.get("actions", []):
                produced.update(a["name"] for a in action.get("outputArtifacts", []))

    def _op_GetPipeline(self, params: JSON) -> JSON:
        with self._lock:
            pipeline = self._pipeline(params.get("name"))
            return {
                "pipeline": copy.deepcopy(pipeline.declaration),
                "metadata": {
                    "pipelineArn": f"arn:aws:codepipeline:{REGION}:{ACCOUNT_ID}:{pipeline.name}",
                    "created": pipeline.created,
                    "updated": pipeline.updated,
                },
            }

    def _op_ListPipelines(self, _params: JSON) -> JSON:
        with self._lock:
            return {
                "pipelines": [
                    {
                        "name": p.name,
                        "version": p.version,
                        "pipelineType": p.declaration.get("pipelineType", "V1"),
                        "executionMode": p.declaration.get("executionMode", "SUPERSEDED"),
                        "created": p.created,
                        "updated": p.updated,
                    }
                    for p in self._pipelines.values()
                ]
            }

    def _op_StartPipelineExecution(self, params: JSON) -> JSON:
        name = str(params.get("name"))
        with self._lock:
            self._pipeline(name)
        execution_id = self.start_execution(
            name, Trigger("StartPipelineExecution", f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/drill")
        )
        return {"pipelineExecutionId": execution_id}

    def _execution(self, pipeline: Pipeline, execution_id: object) -> Execution:
        for execution in pipeline.executions:
            if execution.execution_id == execution_id:
                return execution
        raise ApiError(
            "PipelineExecutionNotFoundException",
            f"Pipeline execution {execution_id} not found in pipeline {pipeline.name}",
        )

    def _op_GetPipelineExecution(self, params: JSON) -> JSON:
        with self._lock:
            pipeline = self._pipeline(params.get("pipelineName"))
            execution = self._execution(pipeline, params.get("pipelineExecutionId"))
            summary = execution.summary()
            out: JSON = {
                "pipelineName": pipeline.name,
                "pipelineVersion": execution.version,
                "pipelineExecutionId": execution.execution_id,
                "status": execution.status,
                "artifactRevisions": copy.deepcopy(execution.artifact_revisions),
                "trigger": summary["trigger"],
                "executionMode": "QUEUED",
                "executionType": "STANDARD",
            }
            if execution.status_summary:
                out["statusSummary"] = execution.status_summary
            return {"pipelineExecution": out}

    def _op_ListPipelineExecutions(self, params: JSON) -> JSON:
        with self._lock:
            pipeline = self._pipeline(params.get("pipelineName"))
            summaries = [e.summary() for e in reversed(pipeline.executions)]
        return _page(summaries, params, "pipelineExecutionSummaries", default=100)

    def _op_ListActionExecutions(self, params: JSON) -> JSON:
        wanted = (params.get("filter") or {}).get("pipelineExecutionId")
        with self._lock:
            pipeline = self._pipeline(params.get("pipelineName"))
            if wanted is not None:
                self._execution(pipeline, wanted)
            details = [
                a.detail(pipeline.name, e.version)
                for e in reversed(pipeline.executions)
                if wanted is None or e.execution_id == wanted
                for a in reversed(e.actions)
            ]
        return _page(details, params, "actionExecutionDetails", default=100)

    def _op_GetPipelineState(self, params: JSON) -> JSON:
        with self._lock:
            pipeline = self._pipeline(params.get("name"))
            stages = []
            for stage in pipeline.declaration["stages"]:
                state: JSON = {"stageName": stage["name"], "actionStates": []}
                waiting = pipeline.entrance.get(stage["name"]) or []
                latest = next(
                    (e for e in reversed(pipeline.executions) if stage["name"] in e.stage_status), None
                )
                if latest is not None:
                    state["latestExecution"] = {
                        "pipelineExecutionId": latest.execution_id,
                        "status": latest.stage_status[stage["name"]],
                        "type": "STANDARD",
                    }
                if waiting:
                    state["inboundExecutions"] = [
                        {"pipelineExecutionId": i, "status": "InProgress", "type": "STANDARD"}
                        for i in waiting
                    ]
                    state["inboundExecution"] = state["inboundExecutions"][0]
                state["inboundTransitionState"] = {"enabled": True}
                for action in stage["actions"]:
                    state["actionStates"].append(self._action_state(pipeline, stage["name"], action))
                stages.append(state)
            return {
                "pipelineName": pipeline.name,
                "pipelineVersion": pipeline.version,
                "stageStates": stages,
                "created": pipeline.created,
                "updated": pipeline.updated,
            }

    def _action_state(self, pipeline: Pipeline, stage: str, action: JSON) -> JSON:
        state: JSON = {"actionName": action["name"]}
        runs = [
            a for e in pipeline.executions for a in e.actions if a.stage == stage and a.name == action["name"]
        ]
        if runs:
            run = runs[-1]
            latest: JSON = {
                "actionExecutionId": run.action_execution_id,
                "status": run.status,
                "summary": run.summary,
                "lastStatusChange": run.last_update,
            }
            if run.external_id:
                latest["externalExecutionId"] = run.external_id
            if run.external_url:
                latest["externalExecutionUrl"] = run.external_url
            if run.error:
                latest["errorDetails"] = dict(run.error)
            state["latestExecution"] = latest
            if "CommitId" in run.output_variables:
                state["currentRevision"] = {"revisionId": run.output_variables["CommitId"]}
        return state

    # ------------------------------------------------------------------ executions
    def on_source(self, listener: Callable[[Pipeline, JSON], None]) -> None:
        """Call `listener(pipeline, source action)` for each pipeline created from now on (the webhook)."""
        self._on_source.append(listener)

    @staticmethod
    def _source_action(pipeline: Pipeline) -> JSON:
        return dict(pipeline.declaration["stages"][0]["actions"][0])

    def start_execution(self, name: str, trigger: Trigger) -> str:
        """Queue an execution of pipeline `name` (a thread runs it through the stages)."""
        with self._lock:
            pipeline = self._pipeline(name)
            now = self._clock()
            execution = Execution(str(uuid.uuid4()), name, pipeline.version, trigger, now, now)
            pipeline.executions.append(execution)
            first = pipeline.declaration["stages"][0]["name"]
            pipeline.entrance.setdefault(first, []).append(execution.execution_id)
            thread = threading.Thread(
                target=self._run, args=(pipeline, execution), name=f"pipeline {name}", daemon=True
            )
            self._changed.notify_all()
        self._event(pipeline, execution, "STARTED")
        thread.start()
        return execution.execution_id

    def _event(
        self,
        pipeline: Pipeline,
        execution: Execution,
        state: str,
        stage: str | None = None,
        action: JSON | None = None,
    ) -> None:
        """One state change to EventBridge ("Monitoring CodePipeline events": pipeline, stage and action
        execution state changes; their detail fields)."""
        detail: JSON = {
            "pipeline": pipeline.name,
            "execution-id": execution.execution_id,
            "state": state,
            "version": float(execution.version),
        }
        kind = "Pipeline"
        if stage is not None:
            detail["stage"] = stage
            kind = "Stage"
        if action is not None:
            type_id = action["actionTypeId"]
            detail["action"] = action["name"]
            detail["type"] = {k: type_id[k] for k in ("owner", "provider", "category", "version")}
            kind = "Action"
        if stage is None:
            detail["execution-trigger"] = {
                "trigger-type": execution.trigger.trigger_type,
                "trigger-detail": execution.trigger.detail,
            }
        self.on_event(f"CodePipeline {kind} Execution State Change", detail)

    def executions(self, name: str) -> list[JSON]:
        """Oldest first, each as ListPipelineExecutions summarises it."""
        with self._lock:
            return [e.summary() for e in self._pipeline(name).executions]

    def action_executions(self, name: str, execution_id: str) -> list[JSON]:
        """In the order they ran, as ListActionExecutions details them."""
        with self._lock:
            pipeline = self._pipeline(name)
            execution = self._execution(pipeline, execution_id)
            return [a.detail(name, execution.version) for a in execution.actions]

    def wait(self, name: str, execution_id: str, timeout: float) -> JSON:
        """Block until the execution is no longer InProgress (or `timeout` wall seconds); its summary."""
        deadline = time.monotonic() + timeout
        with self._changed:
            execution = self._execution(self._pipeline(name), execution_id)
            while execution.status == "InProgress":
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"pipeline execution {execution_id} still InProgress after {timeout:.0f} s"
                    )
                self._changed.wait(min(left, 0.5))
            return execution.summary()

    def _enter(self, pipeline: Pipeline, stage: str, execution: Execution) -> None:
        """QUEUED mode: wait at the stage's entrance until it is this execution's turn."""
        with self._changed:
            queue = pipeline.entrance.setdefault(stage, [])
            if execution.execution_id not in queue:
                queue.append(execution.execution_id)
            while queue[0] != execution.execution_id or pipeline.inside.get(stage) is not None:
                self._changed.wait(0.5)
            queue.pop(0)
            pipeline.inside[stage] = execution.execution_id
            execution.stage_status[stage] = "InProgress"
            execution.last_update = self._clock()
            self._changed.notify_all()
        self._event(pipeline, execution, "STARTED", stage)

    def _leave(self, pipeline: Pipeline, stage: str, execution: Execution, status: str) -> None:
        with self._changed:
            pipeline.inside[stage] = None
            execution.stage_status[stage] = status
            execution.last_update = self._clock()
            self._changed.notify_all()
        self._event(pipeline, execution, status.upper(), stage)

    def _run(self, pipeline: Pipeline, execution: Execution) -> None:
        artifacts: dict[str, S3Location] = {}
        status = "Succeeded"
        for stage in pipeline.declaration["stages"]:
            self._enter(pipeline, stage["name"], execution)
            stage_status = "Succeeded"
            for action in sorted(stage["actions"], key=lambda a: int(a.get("runOrder", 1))):
                if not self._run_action(pipeline, execution, stage["name"], action, artifacts):
                    stage_status = "Failed"
                    break
            self._leave(pipeline, stage["name"], execution, stage_status)
            if stage_status == "Failed":
                status = "Failed"
                break
        with self._changed:
            execution.status = status
            execution.last_update = self._clock()
            self._changed.notify_all()
        self._event(pipeline, execution, status.upper())

    def _artifact_location(self, pipeline: Pipeline, artifact: str) -> S3Location:
        store = pipeline.declaration.get("artifactStore") or {}
        return S3Location(str(store.get("location")), f"{pipeline.name[:20]}/{artifact[:10]}/{_random(7)}")

    def _run_action(
        self,
        pipeline: Pipeline,
        execution: Execution,
        stage: str,
        action: JSON,
        artifacts: dict[str, S3Location],
    ) -> bool:
        inputs = {a["name"]: artifacts[a["name"]] for a in action.get("inputArtifacts", [])}
        outputs = {
            a["name"]: self._artifact_location(pipeline, a["name"]) for a in action.get("outputArtifacts", [])
        }
        now = self._clock()
        record = ActionExecution(
            str(uuid.uuid4()),
            execution.execution_id,
            stage,
            action["name"],
            action,
            inputs,
            outputs,
            now,
            now,
        )
        with self._changed:
            execution.actions.append(record)
            self._changed.notify_all()
        self._event(pipeline, execution, "STARTED", stage, action)

        def progress(summary: str, external_id: str | None) -> None:
            with self._changed:
                record.summary = summary
                record.external_id = external_id or record.external_id
                record.last_update = self._clock()
                self._changed.notify_all()

        type_id = action["actionTypeId"]
        provider = self.providers.get((type_id["category"], type_id["owner"], type_id["provider"]))
        run = ActionRun(
            pipeline.name,
            execution.execution_id,
            stage,
            action["name"],
            dict(action.get("configuration") or {}),
            inputs,
            outputs,
            execution.trigger,
            progress,
        )
        if provider is None:
            result = ActionResult(
                "Failed", error_code="JobFailed", error_message="no provider in the stand-in"
            )
        else:
            try:
                result = provider(run)
            except Exception as exc:
                result = ActionResult(
                    "Failed", error_code="JobFailed", error_message=f"{type(exc).__name__}: {exc}"
                )
        with self._changed:
            record.status = result.status
            record.summary = result.summary or record.summary
            record.external_id = result.external_id or record.external_id
            record.external_url = result.external_url
            record.output_variables = dict(result.output_variables)
            if result.status == "Failed":
                record.error = {
                    "code": result.error_code or "JobFailed",
                    "message": result.error_message or "",
                }
            record.last_update = self._clock()
            if result.revision is not None:
                execution.source_revisions.append({"actionName": action["name"], **result.revision})
                for name in outputs:
                    execution.artifact_revisions.append(
                        {
                            "name": name,
                            "revisionId": result.revision["revisionId"],
                            "revisionSummary": result.revision.get("revisionSummary", ""),
                            "created": record.last_update,
                            **(
                                {"revisionUrl": result.revision["revisionUrl"]}
                                if "revisionUrl" in result.revision
                                else {}
                            ),
                        }
                    )
            if result.status == "Succeeded":
                artifacts.update(outputs)
            self._changed.notify_all()
        self._event(pipeline, execution, result.status.upper(), stage, action)
        return result.status == "Succeeded"


def _page(items: list[JSON], params: JSON, key: str, *, default: int) -> JSON:
    """One page of `items` (maxResults, nextToken as an offset)."""
    try:
        start = int(params.get("nextToken") or 0)
        size = int(params.get("maxResults") or default)
    except ValueError:
        raise ApiError("InvalidNextTokenException", "The next token was invalid") from None
    page: JSON = {key: items[start : start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page
