"""In-memory CodeDeploy: the API operations Phoenix uses, with AWS's shapes, errors and state rules.

`CodeDeployService.call(operation, params)` takes an AWS JSON 1.1 request body (already decoded) and returns
the response body, or raises `CodeDeployError` carrying AWS's error `__type` code. It is thread-safe: one lock
guards all state, so e.g. two concurrent CreateDeployment calls for one deployment group give one deployment
and one DeploymentLimitExceededException, as on AWS.

Operations: CreateApplication, CreateDeploymentGroup, GetDeploymentGroup, UpdateDeploymentGroup,
CreateDeployment, GetDeployment, BatchGetDeployments, GetApplicationRevision, ListDeployments
(includeOnlyStatuses, createTimeRange, nextToken), StopDeployment (autoRollbackEnabled),
PutLifecycleEventHookExecutionStatus, ListDeploymentTargets (targetFilters, nextToken),
BatchGetDeploymentTargets.

Deployment targets (botocore's ListDeploymentTargets / BatchGetDeploymentTargets shapes and error lists):
an ECS deployment has one target per ecsServices entry of its group, ID `<clusterName>:<serviceName>` ("For
deployments that use the Amazon ECS compute platform, the target IDs are pairs of Amazon ECS clusters and
services specified using the format <clustername>:<servicename>. Their target type is ecsTarget.",
`BatchGetDeploymentTargetsInput.targetIds`), answered as {"deploymentTargetType": "ECSTarget",
"ecsTarget": ECSTarget}: targetArn the ECS service's ARN, status from the deployment's (InProgress while it
runs, Succeeded, Failed when it failed or was stopped; Ready only for a deployment in Ready, which the engine
never sets), lastUpdatedAt, the eight ECS lifecycle events (ECS_LIFECYCLE_EVENTS, Pending until the engine
records them) and taskSetsInfo once the engine has set it. When a deployment fails or is stopped, its event
in progress becomes Failed (endTime then) and the events not reached Skipped, whoever ended it. Other compute
platforms' targets are not modelled (none). Errors: DeploymentIdRequiredException,
InvalidDeploymentIdException (not d- and 9 upper-case letters or digits), DeploymentDoesNotExistException,
DeploymentNotStartedException (Created or Queued); ListDeploymentTargets: InvalidTargetFilterNameException,
InvalidInstanceStatusException (a TargetStatus value outside TargetStatus), InvalidInstanceTypeException (a
ServerInstanceLabel other than Blue or Green), InvalidNextTokenException; BatchGetDeploymentTargets:
DeploymentTargetIdRequiredException, DeploymentTargetListSizeExceededException (over 25 IDs),
InvalidDeploymentTargetIdException (an empty or non-string ID), DeploymentTargetDoesNotExistException.

Alarm configurations (a group's, an update's, a deployment's override) are checked as botocore's model
documents InvalidAlarmConfigException and AlarmsLimitExceededException: an alarm without a name, a name longer
than 255 characters, the same name twice, more than 10 alarms, or an enabled configuration without alarms.
Deployment group names follow the model's DeploymentGroupName shape (1-100 of [A-Za-z0-9+=,.@_-]).

What AWS leaves out, this leaves out too (botocore's CodeDeploy model is the reference):
- GetDeployment and BatchGetDeployments never return the AppSpec text: "The content property of the
  appSpecContent object in the returned revision is always null. Use GetApplicationRevision and the sha256
  property" (GetDeployment's documentation). Deployment records carry only the sha256; the content comes
  from GetApplicationRevision, keyed by that sha256 (every CreateDeployment registers its revision).
- ListDeployments documents no order: this answers oldest first, so code that takes the first page for the
  newest deployments fails here as it can on AWS.

Engine seam (the ECS blue/green lifecycle plugs in here; `engine=None` keeps the built-in rules below):

    class DeploymentEngine(Protocol):
        def on_created(self, service: CodeDeployService, deployment_id: str) -> None
        def on_stop(self, service: CodeDeployService, deployment_id: str, auto_rollback: bool) -> None
        def on_hook_status(self, service: CodeDeployService, deployment_id: str,
                           execution_id: str, status: str) -> None

The service calls these after the request's state change is committed and outside its lock, so an engine may
call back into the service (or hand work to its own thread; it should return quickly). The engine drives a
deployment with the Python-level methods, each thread-safe:

    set_status(deployment_id, status, *, error_code=None, error_message=None)   # Created -> InProgress -> ...
    start_termination_wait(deployment_id)                                        # the bake has begun
    register_hook(deployment_id, lifecycle_event, execution_id=None) -> str      # then invoke the hook Lambda
    roll_back(deployment_id, message) -> str | None                              # AWS's rollback deployment
    get(deployment_id) -> dict                                                   # a deploymentInfo copy
    lifecycle_event(deployment_id, name, status)         # the ECS target's event: InProgress, Succeeded, ...
    set_task_sets(deployment_id, task_sets)              # the ECS target's taskSetsInfo (ECSTaskSet dicts)

Built-in rules without an engine (and the parts the service always applies):
- CreateDeployment: status Created, creator user; DeploymentLimitExceededException while another deployment
  of the group is not finished (Created, Queued, InProgress, Baking, Ready).
- StopDeployment on a finished deployment: DeploymentAlreadyCompletedException. Otherwise always answered
  Pending (asynchronous on AWS; a repeated stop while pending answers Pending again). With an engine,
  `on_stop` is called once. Without, `stop_delay` seconds later: with autoRollbackEnabled, `roll_back` (a new
  deployment of the last successful revision, creator codeDeployRollback, rollbackInfo linking both ways, or
  only a rollbackMessage when there is no earlier successful deployment), then status Stopped
  (errorInformation MANUAL_STOP).
- PutLifecycleEventHookExecutionStatus: unknown execution id -> InvalidLifecycleEventHookExecutionIdException,
  answered twice -> LifecycleEventAlreadyCompletedException. Without an engine, Failed fails the deployment
  (HOOK_EXECUTION_FAILURE) and rolls it back when the autoRollbackConfiguration has DEPLOYMENT_FAILURE.
`seed_deployment(...)` writes history directly (any status, creator, time) for tests and scenarios.
Timestamps are epoch seconds (what the JSON protocol carries); `clock` is injectable for scaled time. A
target's lastUpdatedAt and its events' startTime / endTime are stamped on that clock too, and are TIME_KEYS
(local/aws/json_api.py) as createTime is.
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from local.aws.account import ACCOUNT_ID, REGION
from local.aws.json_api import ApiError, Operations

JSON = dict[str, Any]

IN_FLIGHT_STATUSES = frozenset({"Created", "Queued", "InProgress", "Baking", "Ready"})
FINISHED_STATUSES = frozenset({"Succeeded", "Failed", "Stopped"})
ALL_STATUSES = IN_FLIGHT_STATUSES | FINISHED_STATUSES
LIST_PAGE_SIZE = 100
# CodeDeploy's predefined ECS configurations (custom ones are not modelled).
ECS_CONFIG_NAME = re.compile(
    r"CodeDeployDefault\.ECS(AllAtOnce|Canary\d+Percent\d+Minutes?|Linear\d+PercentEvery\d+Minutes?)"
)
BATCH_LIMIT = 25
# CodeDeploy quotas (user guide, limits.html): at most 100 characters in a deployment description.
DESCRIPTION_MAX_CHARS = 100
MAX_ALARMS = 10
MAX_ALARM_NAME = 255
GROUP_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,100}")
# The form of the ids CodeDeploy gives deployments ("d-" and 9 upper-case letters or digits); botocore's
# DeploymentId shape has no pattern, so ListDeploymentTargets / BatchGetDeploymentTargets refuse other strings
# with InvalidDeploymentIdException, the code their model lists for "specified in an invalid format".
DEPLOYMENT_ID = re.compile(r"d-[A-Z0-9]{9}")
# An ECS deployment's lifecycle events, in AWS's order (AppSpec 'hooks' for an Amazon ECS deployment,
# reference-appspec-file-structure-hooks.html); botocore `LifecycleEvent.status` is LifecycleEventStatus.
ECS_LIFECYCLE_EVENTS = (
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "AllowTestTraffic",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AllowTraffic",
    "AfterAllowTraffic",
)
LIFECYCLE_EVENT_STATUSES = frozenset({"Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Unknown"})
# Which LifecycleEventStatus may follow which (anything else is an engine bug: ValueError).
LIFECYCLE_EVENT_MOVES = {
    "Pending": frozenset({"InProgress", "Succeeded", "Failed", "Skipped"}),
    "InProgress": frozenset({"Succeeded", "Failed"}),
}
# botocore TargetStatus, TargetFilterName and TargetLabel (ListDeploymentTargetsInput.targetFilters).
TARGET_STATUSES = frozenset({"Pending", "InProgress", "Succeeded", "Failed", "Skipped", "Unknown", "Ready"})
TARGET_FILTER_NAMES = frozenset({"TargetStatus", "ServerInstanceLabel"})
SERVER_INSTANCE_LABELS = frozenset({"Blue", "Green"})
# An ECS target's status from its deployment's: Failed when the deployment failed or was stopped, Ready only
# when the deployment waits for a manual reroute (the engine never does), InProgress while it runs otherwise.
TARGET_STATUS_OF = {"Succeeded": "Succeeded", "Failed": "Failed", "Stopped": "Failed", "Ready": "Ready"}
# What UpdateDeploymentGroup changes when given (besides the name), as CreateDeploymentGroup sets it.
GROUP_SETTINGS = (
    "deploymentConfigName",
    "serviceRoleArn",
    "triggerConfigurations",
    "alarmConfiguration",
    "autoRollbackConfiguration",
    "deploymentStyle",
    "blueGreenDeploymentConfiguration",
    "loadBalancerInfo",
    "ecsServices",
    "outdatedInstancesStrategy",
    "terminationHookEnabled",
)


class CodeDeployError(ApiError):
    """A CodeDeploy error response: `code` is the JSON protocol's `__type`."""


class DeploymentEngine(Protocol):
    """What runs a deployment's lifecycle; see the module docstring."""

    def on_created(self, service: CodeDeployService, deployment_id: str) -> None: ...

    def on_stop(self, service: CodeDeployService, deployment_id: str, auto_rollback: bool) -> None: ...

    def on_hook_status(
        self, service: CodeDeployService, deployment_id: str, execution_id: str, status: str
    ) -> None: ...


def _check_alarm_configuration(config: Any) -> None:
    """InvalidAlarmConfigException / AlarmsLimitExceededException, as botocore's model documents them."""
    if config is None:
        return
    alarms = config.get("alarms") if isinstance(config, dict) else None
    if alarms is None and isinstance(config, dict) and not config.get("enabled"):
        return  # nothing to check: no list, and polling off
    invalid = "The format of the alarm configuration is invalid."
    if not isinstance(alarms, list):
        raise CodeDeployError("InvalidAlarmConfigException", f"{invalid} The alarm list is null.")
    if len(alarms) > MAX_ALARMS:
        raise CodeDeployError(
            "AlarmsLimitExceededException",
            f"The maximum number of alarms for a deployment group ({MAX_ALARMS}) was exceeded.",
        )
    names = [alarm.get("name") if isinstance(alarm, dict) else None for alarm in alarms]
    for name in names:
        if not isinstance(name, str) or not name or len(name) > MAX_ALARM_NAME:
            raise CodeDeployError(
                "InvalidAlarmConfigException",
                f"{invalid} The alarm name is empty or null or exceeds the limit of {MAX_ALARM_NAME} "
                "characters.",
            )
    if len(set(names)) != len(names):
        raise CodeDeployError(
            "InvalidAlarmConfigException", f"{invalid} Two alarms with the same name have been specified."
        )
    if config.get("enabled") and not alarms:
        raise CodeDeployError(
            "InvalidAlarmConfigException",
            f"{invalid} The alarm configuration is enabled, but the alarm list is empty.",
        )


def _check_group_name(name: Any) -> None:
    if not name:
        raise CodeDeployError(
            "DeploymentGroupNameRequiredException", "The deployment group name was not specified."
        )
    if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
        raise CodeDeployError(
            "InvalidDeploymentGroupNameException",
            "The deployment group name was specified in an invalid format.",
        )


@dataclass(frozen=True)
class Record:
    """How a deployment enters the history: CreateDeployment's defaults, a rollback's creator, or a seed."""

    status: str = "Created"
    creator: str = "user"
    description: str | None = None
    create_time: float | None = None
    deployment_id: str | None = None


def _new_deployment_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "d-" + "".join(secrets.choice(alphabet) for _ in range(9))


def _normalise_revision(revision: Any) -> JSON:
    if not isinstance(revision, dict) or not revision.get("revisionType"):
        raise CodeDeployError("RevisionRequiredException", "The revision ID was not specified.")
    result = copy.deepcopy(revision)
    if result["revisionType"] == "AppSpecContent":
        content = result.get("appSpecContent", {}).get("content")
        if not isinstance(content, str) or not content:
            raise CodeDeployError("InvalidRevisionException", "The AppSpecContent content is empty.")
        result["appSpecContent"] = {
            "content": content,
            "sha256": hashlib.sha256(content.encode()).hexdigest(),
        }
    return result


def _check_config_name(name: Any, platform: str) -> None:
    """An ECS group or deployment names one of CodeDeploy's predefined ECS configurations (custom ones are not
    modelled): DeploymentConfigDoesNotExistException otherwise, as on AWS."""
    if name is not None and platform == "ECS" and not ECS_CONFIG_NAME.fullmatch(str(name)):
        raise CodeDeployError(
            "DeploymentConfigDoesNotExistException", f"No deployment configuration named {name}"
        )


def _revision_key(revision: JSON) -> str | None:
    """How GetApplicationRevision finds a revision: the AppSpec's sha256, or the S3 / GitHub location."""
    kind = revision.get("revisionType")
    if kind == "AppSpecContent":
        content = revision.get("appSpecContent") or {}
        if isinstance(content.get("sha256"), str):
            return f"sha256:{content['sha256']}"
        if isinstance(content.get("content"), str):
            return f"sha256:{hashlib.sha256(content['content'].encode()).hexdigest()}"
        return None
    location = revision.get("s3Location") or revision.get("gitHubLocation")
    if isinstance(location, dict):
        return f"{kind}:" + "|".join(f"{k}={location[k]}" for k in sorted(location))
    return None


def _without_content(revision: Any) -> Any:
    if isinstance(revision, dict) and isinstance(revision.get("appSpecContent"), dict):
        revision["appSpecContent"].pop("content", None)
    return revision


def _as_returned(deployment: JSON) -> JSON:
    """A deploymentInfo as GetDeployment / BatchGetDeployments return it: no AppSpec content."""
    info = copy.deepcopy(deployment)
    for key in ("revision", "previousRevision"):
        _without_content(info.get(key))
    return info


def _ecs_targets(deployment_id: str, group_info: JSON, now: float) -> list[JSON]:
    """An ECS deployment's targets, its group's ecsServices: "For deployments that use the Amazon ECS compute
    platform, the target IDs are pairs of Amazon ECS clusters and services specified using the format
    <clustername>:<servicename>. Their target type is ecsTarget." (botocore
    `BatchGetDeploymentTargetsInput.targetIds`). Other compute platforms' targets are not modelled: none."""
    if group_info.get("computePlatform") != "ECS":
        return []
    targets = []
    for entry in group_info.get("ecsServices") or []:
        cluster, service = entry.get("clusterName"), entry.get("serviceName")
        if not cluster or not service:
            continue
        targets.append(
            {
                "deploymentId": deployment_id,
                "targetId": f"{cluster}:{service}",
                "targetArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:service/{cluster}/{service}",
                "lastUpdatedAt": now,
                "lifecycleEvents": [
                    {"lifecycleEventName": name, "status": "Pending"} for name in ECS_LIFECYCLE_EVENTS
                ],
            }
        )
    return targets


def _check_deployment_id(deployment_id: Any) -> None:
    if not deployment_id:
        raise CodeDeployError(
            "DeploymentIdRequiredException", "At least one deployment ID must be specified."
        )
    if not isinstance(deployment_id, str) or not DEPLOYMENT_ID.fullmatch(deployment_id):
        raise CodeDeployError(
            "InvalidDeploymentIdException", f"The deployment ID {deployment_id} is not valid."
        )


def _end_lifecycle_events(target: JSON, now: float) -> None:
    """The deployment failed or was stopped: the event in progress Failed, the ones not reached Skipped."""
    for event in target["lifecycleEvents"]:
        if event["status"] == "InProgress":
            event["status"] = "Failed"
            event["endTime"] = now
        elif event["status"] == "Pending":
            event["status"] = "Skipped"


class CodeDeployService(Operations):
    """Thread-safe in-memory CodeDeploy; `call` is the API, the other public methods are the engine's."""

    def __init__(
        self, engine: DeploymentEngine | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.clock = clock
        self._lock = threading.RLock()
        self._applications: dict[str, JSON] = {}
        self._groups: dict[tuple[str, str], JSON] = {}
        self._deployments: dict[str, JSON] = {}
        self._order: list[str] = []
        self._hooks: dict[str, JSON] = {}
        self._stop_requested: set[str] = set()
        # Deployment id -> its targets (an ECS deployment: one per ecsServices entry of its group), each an
        # ECSTarget less its status, which follows the deployment's (TARGET_STATUS_OF).
        self._targets: dict[str, list[JSON]] = {}
        self._revisions: dict[tuple[str, str], JSON] = {}
        # Without an engine, how long after StopDeployment's Pending answer the stop takes effect.
        self.stop_delay = 0.2

    # ------------------------------------------------------------------ helpers (lock held)
    def _application(self, name: Any) -> JSON:
        if not name:
            raise CodeDeployError("ApplicationNameRequiredException", "The minimum number of required")
        app = self._applications.get(name)
        if app is None:
            raise CodeDeployError(
                "ApplicationDoesNotExistException", f"No application found for name: {name}"
            )
        return app

    def _group(self, application: Any, group: Any) -> JSON:
        self._application(application)
        _check_group_name(group)
        info = self._groups.get((application, group))
        if info is None:
            raise CodeDeployError(
                "DeploymentGroupDoesNotExistException",
                f"No Deployment Group found for name: {group}",
            )
        return info

    def _deployment(self, deployment_id: Any) -> JSON:
        if not deployment_id:
            raise CodeDeployError(
                "DeploymentIdRequiredException", "At least one deployment ID must be specified."
            )
        dep = self._deployments.get(deployment_id)
        if dep is None:
            raise CodeDeployError(
                "DeploymentDoesNotExistException", f"The deployment {deployment_id} could not be found."
            )
        return dep

    def _last_successful(self, application: str, group: str, before: str | None = None) -> JSON | None:
        for dep_id in reversed(self._order):
            if dep_id == before:
                continue
            dep = self._deployments[dep_id]
            if (
                dep["applicationName"] == application
                and dep["deploymentGroupName"] == group
                and dep["status"] == "Succeeded"
            ):
                return dep
        return None

    def _in_flight(self, application: str, group: str) -> JSON | None:
        for dep_id in self._order:
            dep = self._deployments[dep_id]
            if (
                dep["applicationName"] == application
                and dep["deploymentGroupName"] == group
                and dep["status"] in IN_FLIGHT_STATUSES
            ):
                return dep
        return None

    def _insert(self, application: str, group: str, revision: JSON, record: Record) -> JSON:
        group_info = self._group(application, group)
        status = record.status
        dep_id = record.deployment_id or _new_deployment_id()
        if dep_id in self._deployments:
            raise CodeDeployError("InvalidDeploymentIdException", f"Deployment {dep_id} already exists")
        now = self.clock() if record.create_time is None else record.create_time
        previous = self._last_successful(application, group)
        dep: JSON = {
            "applicationName": application,
            "deploymentGroupName": group,
            "deploymentConfigName": group_info["deploymentConfigName"],
            "deploymentId": dep_id,
            "revision": revision,
            "status": status,
            "createTime": now,
            "creator": record.creator,
            "ignoreApplicationStopFailures": False,
            "updateOutdatedInstancesOnly": False,
            "instanceTerminationWaitTimeStarted": False,
            "computePlatform": group_info["computePlatform"],
            "deploymentOverview": {
                "Pending": 0,
                "InProgress": 0,
                "Succeeded": 0,
                "Failed": 0,
                "Skipped": 0,
                "Ready": 0,
            },
        }
        for key in ("autoRollbackConfiguration", "deploymentStyle", "loadBalancerInfo"):
            if key in group_info:
                dep[key] = copy.deepcopy(group_info[key])
        if "blueGreenDeploymentConfiguration" in group_info:
            dep["blueGreenDeploymentConfiguration"] = copy.deepcopy(
                group_info["blueGreenDeploymentConfiguration"]
            )
        if previous is not None:
            dep["previousRevision"] = copy.deepcopy(previous["revision"])
        if record.description is not None:
            dep["description"] = record.description
        if status not in IN_FLIGHT_STATUSES:
            dep["startTime"] = now
            dep["completeTime"] = now
        self._register_revision_locked(application, group, revision, now)
        self._deployments[dep_id] = dep
        self._targets[dep_id] = _ecs_targets(dep_id, group_info, now)
        self._order.append(dep_id)
        self._order.sort(key=lambda i: self._deployments[i]["createTime"])
        group_info["targetRevision"] = copy.deepcopy(revision)
        group_info["lastAttemptedDeployment"] = {
            "deploymentId": dep_id,
            "status": status,
            "createTime": now,
        }
        if status == "Succeeded":
            group_info["lastSuccessfulDeployment"] = {
                "deploymentId": dep_id,
                "status": status,
                "createTime": now,
                "endTime": now,
            }
        return dep

    def _register_revision_locked(self, application: str, group: str, revision: JSON, now: float) -> None:
        """What CreateDeployment registers implicitly: GetApplicationRevision's answer for this revision."""
        key = _revision_key(revision)
        if not key:
            return
        stored = self._revisions.setdefault(
            (application, key),
            {
                "revision": copy.deepcopy(revision),
                "info": {"deploymentGroups": [], "firstUsedTime": now, "registerTime": now},
            },
        )
        info = stored["info"]
        info["lastUsedTime"] = now
        if group not in info["deploymentGroups"]:
            info["deploymentGroups"].append(group)

    def _set_status_locked(
        self, dep: JSON, status: str, error_code: str | None = None, error_message: str | None = None
    ) -> None:
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown deployment status {status}")
        now = self.clock()
        dep["status"] = status
        if status != "Created":
            dep.setdefault("startTime", now)
        if error_code is not None:
            dep["errorInformation"] = {"code": error_code, "message": error_message or error_code}
        for target in self._targets.get(dep["deploymentId"], []):
            target["lastUpdatedAt"] = now
            if status in ("Failed", "Stopped"):
                _end_lifecycle_events(target, now)
        group_info = self._groups[(dep["applicationName"], dep["deploymentGroupName"])]
        last = group_info.get("lastAttemptedDeployment", {})
        if last.get("deploymentId") == dep["deploymentId"]:
            last["status"] = status
        if status in FINISHED_STATUSES:
            dep["completeTime"] = now
            self._stop_requested.discard(dep["deploymentId"])
            if last.get("deploymentId") == dep["deploymentId"]:
                last["endTime"] = now
            if status == "Succeeded":
                group_info["lastSuccessfulDeployment"] = {
                    "deploymentId": dep["deploymentId"],
                    "status": status,
                    "createTime": dep["createTime"],
                    "endTime": now,
                }

    def _roll_back_locked(self, dep: JSON, message: str) -> str | None:
        previous = self._last_successful(
            dep["applicationName"], dep["deploymentGroupName"], dep["deploymentId"]
        )
        if previous is None:
            dep["rollbackInfo"] = {
                "rollbackMessage": "Automatic rollback was not performed because no previous successful "
                f"deployment was found. {message}".strip()
            }
            return None
        rollback = self._insert(
            dep["applicationName"],
            dep["deploymentGroupName"],
            copy.deepcopy(previous["revision"]),
            Record(creator="codeDeployRollback"),
        )
        rollback["rollbackInfo"] = {
            "rollbackTriggeringDeploymentId": dep["deploymentId"],
            "rollbackMessage": f"Rollback of deployment {dep['deploymentId']}",
        }
        dep["rollbackInfo"] = {
            "rollbackDeploymentId": rollback["deploymentId"],
            "rollbackMessage": f"Deployment rolled back by {rollback['deploymentId']}. {message}".strip(),
        }
        return str(rollback["deploymentId"])

    def _notify(self, hook: Callable[[DeploymentEngine], None]) -> None:
        if self.engine is not None:
            hook(self.engine)

    # ------------------------------------------------------------------ engine / test API
    def get(self, deployment_id: str) -> JSON:
        """The engine's copy of a deploymentInfo, AppSpec content included (the API omits it)."""
        with self._lock:
            return copy.deepcopy(self._deployment(deployment_id))

    def set_status(
        self,
        deployment_id: str,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        with self._lock:
            self._set_status_locked(self._deployment(deployment_id), status, error_code, error_message)

    def start_termination_wait(self, deployment_id: str) -> None:
        """Traffic has shifted: the original now waits TerminationWaitTimeInMinutes (the bake)."""
        with self._lock:
            self._deployment(deployment_id)["instanceTerminationWaitTimeStarted"] = True

    def roll_back(self, deployment_id: str, message: str = "") -> str | None:
        """Create AWS's rollback deployment for `deployment_id`: its id, None without an earlier success."""
        with self._lock:
            rollback_id = self._roll_back_locked(self._deployment(deployment_id), message)
        if rollback_id is not None:
            self._notify(lambda engine: engine.on_created(self, rollback_id))
        return rollback_id

    def register_hook(self, deployment_id: str, lifecycle_event: str, execution_id: str | None = None) -> str:
        """A lifecycle hook execution awaiting PutLifecycleEventHookExecutionStatus; returns its id."""
        with self._lock:
            self._deployment(deployment_id)
            hook_id = execution_id or uuid.uuid4().hex
            self._hooks[hook_id] = {
                "deploymentId": deployment_id,
                "lifecycleEvent": lifecycle_event,
                "status": "InProgress",
            }
            return hook_id

    def lifecycle_event(self, deployment_id: str, name: str, status: str) -> None:
        """Move lifecycle event `name` of the deployment's ECS target to `status`, stamped on the service's
        clock as createTime is: InProgress sets startTime; Succeeded or Failed set endTime, and startTime too
        when the event was still Pending (an event passed at once: startTime == endTime); Skipped sets none.
        Moves: Pending -> InProgress, Succeeded, Failed or Skipped; InProgress -> Succeeded or Failed; any
        other, an unknown event or a deployment not started raises ValueError. Once the deployment has ended
        the call is ignored: its events were settled then (the one in progress Failed, the rest Skipped)."""
        if name not in ECS_LIFECYCLE_EVENTS:
            raise ValueError(f"unknown ECS lifecycle event {name}")
        if status not in LIFECYCLE_EVENT_STATUSES:
            raise ValueError(f"unknown lifecycle event status {status}")
        with self._lock:
            dep = self._deployment(deployment_id)
            if dep["status"] in FINISHED_STATUSES:
                return
            if dep["status"] in ("Created", "Queued"):
                raise ValueError(f"deployment {deployment_id} has not started")
            now = self.clock()
            for target in self._targets.get(deployment_id, []):
                event = next(e for e in target["lifecycleEvents"] if e["lifecycleEventName"] == name)
                if status not in LIFECYCLE_EVENT_MOVES.get(event["status"], frozenset()):
                    raise ValueError(f"{deployment_id} {name}: {event['status']} -> {status}")
                if status in ("InProgress", "Succeeded", "Failed"):
                    event.setdefault("startTime", now)
                if status in ("Succeeded", "Failed"):
                    event["endTime"] = now
                event["status"] = status
                target["lastUpdatedAt"] = now

    def set_task_sets(self, deployment_id: str, task_sets: list[JSON]) -> None:
        """The engine's view of the ECS target's task sets (ECSTarget.taskSetsInfo, a list of botocore
        ECSTaskSet); lastUpdatedAt moves when it changes."""
        with self._lock:
            self._deployment(deployment_id)
            for target in self._targets.get(deployment_id, []):
                if target.get("taskSetsInfo") != task_sets:
                    target["taskSetsInfo"] = copy.deepcopy(task_sets)
                    target["lastUpdatedAt"] = self.clock()

    def hook_status(self, execution_id: str) -> str:
        with self._lock:
            return str(self._hooks[execution_id]["status"])

    def seed_deployment(
        self,
        application: str,
        group: str,
        appspec_content: str,
        *,
        status: str = "Succeeded",
        creator: str = "user",
        description: str | None = None,
        create_time: float | None = None,
        deployment_id: str | None = None,
    ) -> str:
        """Write a deployment into the history directly (no limit check, no engine)."""
        revision = _normalise_revision(
            {"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec_content}}
        )
        record = Record(status, creator, description, create_time, deployment_id)
        with self._lock:
            return str(self._insert(application, group, revision, record)["deploymentId"])

    def link_rollback(self, rolled_back_id: str, rollback_id: str) -> None:
        """Record in seeded history that `rollback_id` rolled back `rolled_back_id`."""
        with self._lock:
            self._deployment(rolled_back_id)["rollbackInfo"] = {
                "rollbackDeploymentId": rollback_id,
                "rollbackMessage": f"Deployment rolled back by {rollback_id}.",
            }
            self._deployment(rollback_id)["rollbackInfo"] = {
                "rollbackTriggeringDeploymentId": rolled_back_id,
                "rollbackMessage": f"Rollback of deployment {rolled_back_id}",
            }

    def deployment_ids(self) -> list[str]:
        """All deployment ids, oldest first."""
        with self._lock:
            return list(self._order)

    # ------------------------------------------------------------------ operations
    def _op_CreateApplication(self, params: JSON) -> JSON:
        name = params.get("applicationName")
        if not name:
            raise CodeDeployError(
                "ApplicationNameRequiredException", "The application name was not specified."
            )
        with self._lock:
            if name in self._applications:
                raise CodeDeployError(
                    "ApplicationAlreadyExistsException", f"The application {name} already exists"
                )
            app_id = str(uuid.uuid4())
            self._applications[name] = {
                "applicationId": app_id,
                "applicationName": name,
                "createTime": self.clock(),
                "linkedToGitHub": False,
                "computePlatform": params.get("computePlatform", "Server"),
            }
        return {"applicationId": app_id}

    def _op_CreateDeploymentGroup(self, params: JSON) -> JSON:
        application = params.get("applicationName")
        group = params.get("deploymentGroupName")
        with self._lock:
            app = self._application(application)
            self._check_free_group_name(application, group)
            if not params.get("serviceRoleArn"):
                raise CodeDeployError("RoleRequiredException", "The service role ARN was not specified.")
            _check_alarm_configuration(params.get("alarmConfiguration"))
            _check_config_name(params.get("deploymentConfigName"), app["computePlatform"])
            group_id = str(uuid.uuid4())
            info = {k: copy.deepcopy(v) for k, v in params.items() if k != "tags"}
            info.update(
                {
                    "deploymentGroupId": group_id,
                    "computePlatform": app["computePlatform"],
                    "deploymentConfigName": params.get(
                        "deploymentConfigName",
                        "CodeDeployDefault.ECSAllAtOnce"
                        if app["computePlatform"] == "ECS"
                        else "CodeDeployDefault.OneAtATime",
                    ),
                }
            )
            self._groups[(str(application), str(group))] = info
        return {"deploymentGroupId": group_id}

    def _check_free_group_name(self, application: Any, group: Any) -> None:
        _check_group_name(group)
        if (application, group) in self._groups:
            raise CodeDeployError(
                "DeploymentGroupAlreadyExistsException", f"The deployment group {group} already exists"
            )

    def _op_GetDeploymentGroup(self, params: JSON) -> JSON:
        with self._lock:
            info = self._group(params.get("applicationName"), params.get("deploymentGroupName"))
            return {"deploymentGroupInfo": copy.deepcopy(info)}

    def _op_UpdateDeploymentGroup(self, params: JSON) -> JSON:
        """The given settings replace the group's; newDeploymentGroupName renames it (its history follows)."""
        application = params.get("applicationName")
        current = params.get("currentDeploymentGroupName")
        new = params.get("newDeploymentGroupName")
        with self._lock:
            info = self._group(application, current)
            _check_alarm_configuration(params.get("alarmConfiguration"))
            _check_config_name(params.get("deploymentConfigName"), info["computePlatform"])
            if new is not None and new != current:
                self._check_free_group_name(application, new)
            for key in GROUP_SETTINGS:
                if key in params:
                    info[key] = copy.deepcopy(params[key])
            if new is not None and new != current:
                self._rename_group_locked(str(application), str(current), str(new))
        return {"hooksNotCleanedUp": []}

    def _rename_group_locked(self, application: str, current: str, new: str) -> None:
        info = self._groups.pop((application, current))
        info["deploymentGroupName"] = new
        self._groups[(application, new)] = info
        for dep in self._deployments.values():
            if (dep["applicationName"], dep["deploymentGroupName"]) == (application, current):
                dep["deploymentGroupName"] = new
        for (app, _key), stored in self._revisions.items():
            groups = stored["info"]["deploymentGroups"]
            if app == application and current in groups:
                groups[groups.index(current)] = new

    def _op_CreateDeployment(self, params: JSON) -> JSON:
        application = params.get("applicationName")
        group = params.get("deploymentGroupName")
        with self._lock:
            group_info = self._group(application, group)
            revision = _normalise_revision(params.get("revision"))
            _check_alarm_configuration(params.get("overrideAlarmConfiguration"))
            config_name = params.get("deploymentConfigName")
            _check_config_name(config_name, group_info["computePlatform"])
            active = self._in_flight(str(application), str(group))
            if active is not None:
                raise CodeDeployError(
                    "DeploymentLimitExceededException",
                    f"The Deployment Group '{group}' already has an active Deployment "
                    f"'{active['deploymentId']}'",
                )
            description = params.get("description")
            if description is not None and len(str(description)) > DESCRIPTION_MAX_CHARS:
                raise CodeDeployError("DescriptionTooLongException", "The description is too long.")
            record = Record(description=description)
            dep = self._insert(str(application), str(group), revision, record)
            # A deployment's own settings win over its group's, as in AWS.
            if config_name is not None:
                dep["deploymentConfigName"] = config_name
            for key in ("autoRollbackConfiguration", "overrideAlarmConfiguration"):
                if key in params:
                    dep[key] = copy.deepcopy(params[key])
            dep_id = str(dep["deploymentId"])
        self._notify(lambda engine: engine.on_created(self, dep_id))
        return {"deploymentId": dep_id}

    def _op_GetDeployment(self, params: JSON) -> JSON:
        with self._lock:
            return {"deploymentInfo": _as_returned(self._deployment(params.get("deploymentId")))}

    def _op_BatchGetDeployments(self, params: JSON) -> JSON:
        ids = params.get("deploymentIds") or []
        if len(ids) > BATCH_LIMIT:
            raise CodeDeployError("BatchLimitExceededException", "The maximum number of names or IDs allowed")
        with self._lock:
            found = [_as_returned(self._deployments[i]) for i in ids if i in self._deployments]
        return {"deploymentsInfo": found}

    def _op_GetApplicationRevision(self, params: JSON) -> JSON:
        application = params.get("applicationName")
        revision = params.get("revision")
        if not isinstance(revision, dict) or not revision.get("revisionType"):
            raise CodeDeployError("RevisionRequiredException", "The revision ID was not specified.")
        with self._lock:
            self._application(application)
            key = _revision_key(revision)
            stored = self._revisions.get((str(application), key)) if key else None
            if stored is None:
                raise CodeDeployError(
                    "RevisionDoesNotExistException",
                    "The named revision does not exist with the IAM user or AWS account.",
                )
            return {
                "applicationName": application,
                "revision": copy.deepcopy(stored["revision"]),
                "revisionInfo": copy.deepcopy(stored["info"]),
            }

    def _op_ListDeployments(self, params: JSON) -> JSON:  # noqa: PLR0912 - one branch per AWS filter
        application = params.get("applicationName")
        group = params.get("deploymentGroupName")
        statuses = params.get("includeOnlyStatuses") or []
        for status in statuses:
            if status not in ALL_STATUSES:
                raise CodeDeployError("InvalidDeploymentStatusException", f"Invalid status {status}")
        time_range = params.get("createTimeRange") or {}
        start = time_range.get("start")
        end = time_range.get("end")
        if start is not None and end is not None and float(start) > float(end):
            raise CodeDeployError("InvalidTimeRangeException", "The start time is after the end time.")
        try:
            offset = int(params.get("nextToken") or 0)
        except ValueError as exc:
            raise CodeDeployError(
                "InvalidNextTokenException", "The next token was specified in an invalid format."
            ) from exc
        with self._lock:
            if group and not application:
                raise CodeDeployError(
                    "ApplicationNameRequiredException", "The application name is required with a group name."
                )
            if application:
                self._application(application)
            if group:
                self._group(application, group)
            ids = []
            for dep_id in self._order:  # no documented order on AWS: oldest first here
                dep = self._deployments[dep_id]
                if application and dep["applicationName"] != application:
                    continue
                if group and dep["deploymentGroupName"] != group:
                    continue
                if statuses and dep["status"] not in statuses:
                    continue
                if start is not None and dep["createTime"] < float(start):
                    continue
                if end is not None and dep["createTime"] > float(end):
                    continue
                ids.append(dep_id)
        page = ids[offset : offset + LIST_PAGE_SIZE]
        result: JSON = {"deployments": page}
        if offset + LIST_PAGE_SIZE < len(ids):
            result["nextToken"] = str(offset + LIST_PAGE_SIZE)
        return result

    def _op_StopDeployment(self, params: JSON) -> JSON:
        auto_rollback = bool(params.get("autoRollbackEnabled", False))
        with self._lock:
            dep = self._deployment(params.get("deploymentId"))
            dep_id = str(dep["deploymentId"])
            if dep["status"] in FINISHED_STATUSES:
                raise CodeDeployError(
                    "DeploymentAlreadyCompletedException", f"The deployment {dep_id} has already completed."
                )
            first = dep_id not in self._stop_requested
            self._stop_requested.add(dep_id)
        # Asynchronous, as on AWS: the answer is Pending and the stop takes effect afterwards.
        if first and self.engine is not None:
            self._notify(lambda engine: engine.on_stop(self, dep_id, auto_rollback))
        elif first:
            timer = threading.Timer(self.stop_delay, self._stop_now, args=(dep_id, auto_rollback))
            timer.daemon = True
            timer.start()
        return {"status": "Pending", "statusMessage": f"Stopping deployment {dep_id}."}

    def _stop_now(self, dep_id: str, auto_rollback: bool) -> None:
        """The built-in stop (no engine): Stopped / MANUAL_STOP and, if asked, AWS's rollback deployment."""
        with self._lock:
            dep = self._deployments[dep_id]
            if dep["status"] in FINISHED_STATUSES:
                return
            if auto_rollback:
                self._roll_back_locked(dep, "Stopped with autoRollbackEnabled.")
            self._set_status_locked(dep, "Stopped", "MANUAL_STOP", "The deployment was stopped by a user.")

    def _op_PutLifecycleEventHookExecutionStatus(self, params: JSON) -> JSON:
        execution_id = params.get("lifecycleEventHookExecutionId")
        status = params.get("status")
        with self._lock:
            dep = self._deployment(params.get("deploymentId"))
            hook = self._hooks.get(str(execution_id))
            if hook is None or hook["deploymentId"] != dep["deploymentId"]:
                raise CodeDeployError(
                    "InvalidLifecycleEventHookExecutionIdException",
                    f"The lifecycle event hook execution ID {execution_id} is not valid.",
                )
            if status not in ("Succeeded", "Failed"):
                raise CodeDeployError(
                    "InvalidLifecycleEventHookExecutionStatusException",
                    f"The status {status} is not valid; Succeeded or Failed.",
                )
            if hook["status"] != "InProgress" or dep["status"] in FINISHED_STATUSES:
                raise CodeDeployError(
                    "LifecycleEventAlreadyCompletedException",
                    f"The lifecycle event {hook['lifecycleEvent']} has already completed.",
                )
            hook["status"] = status
            dep_id = str(dep["deploymentId"])
            if self.engine is None and status == "Failed":
                self._set_status_locked(
                    dep,
                    "Failed",
                    "HOOK_EXECUTION_FAILURE",
                    f"The {hook['lifecycleEvent']} lifecycle hook reported Failed.",
                )
                events = (dep.get("autoRollbackConfiguration") or {}).get("events") or []
                if (dep.get("autoRollbackConfiguration") or {}).get(
                    "enabled"
                ) and "DEPLOYMENT_FAILURE" in events:
                    self._roll_back_locked(dep, "Deployment failed.")
        self._notify(lambda engine: engine.on_hook_status(self, dep_id, str(execution_id), str(status)))
        return {"lifecycleEventHookExecutionId": str(execution_id)}

    # ------------------------------------------------------------------ deployment targets
    def _started_deployment(self, deployment_id: Any) -> JSON:
        """The deployment whose targets are asked for (lock held), with the errors botocore's model lists for
        ListDeploymentTargets and BatchGetDeploymentTargets."""
        _check_deployment_id(deployment_id)
        dep = self._deployment(deployment_id)
        if dep["status"] in ("Created", "Queued"):
            raise CodeDeployError(
                "DeploymentNotStartedException", f"The deployment {deployment_id} has not started."
            )
        return dep

    def _op_ListDeploymentTargets(self, params: JSON) -> JSON:
        """botocore ListDeploymentTargets: "Returns an array of target IDs that are associated a deployment."
        targetFilters ("TargetStatus" values from TargetStatus, "ServerInstanceLabel" Blue or Green): the
        TargetStatus filter keeps the targets in one of its statuses (an empty list filters nothing);
        ServerInstanceLabel is checked and then ignored, an ECS target being neither (its task sets are)."""
        filters = params.get("targetFilters") or {}
        if not isinstance(filters, dict):
            raise CodeDeployError("InvalidTargetFilterNameException", "The target filter name is invalid.")
        for name, values in filters.items():
            if name not in TARGET_FILTER_NAMES or not isinstance(values, list):
                raise CodeDeployError(
                    "InvalidTargetFilterNameException", f"The target filter name {name} is invalid."
                )
            allowed, code = (
                (TARGET_STATUSES, "InvalidInstanceStatusException")
                if name == "TargetStatus"
                else (SERVER_INSTANCE_LABELS, "InvalidInstanceTypeException")
            )
            for value in values:
                if value not in allowed:
                    raise CodeDeployError(code, f"The {name} filter value {value} is not valid.")
        statuses = filters.get("TargetStatus") or []
        try:
            offset = int(params.get("nextToken") or 0)
            if offset < 0:
                raise ValueError(offset)
        except ValueError as exc:
            raise CodeDeployError(
                "InvalidNextTokenException", "The next token was specified in an invalid format."
            ) from exc
        with self._lock:
            dep = self._started_deployment(params.get("deploymentId"))
            status = TARGET_STATUS_OF.get(dep["status"], "InProgress")
            ids = [
                str(target["targetId"])
                for target in self._targets.get(dep["deploymentId"], [])
                if not statuses or status in statuses
            ]
        result: JSON = {"targetIds": ids[offset : offset + LIST_PAGE_SIZE]}
        if offset + LIST_PAGE_SIZE < len(ids):
            result["nextToken"] = str(offset + LIST_PAGE_SIZE)
        return result

    def _op_BatchGetDeploymentTargets(self, params: JSON) -> JSON:
        """botocore BatchGetDeploymentTargets: "The maximum number of targets that can be returned is 25";
        for an ECS deployment each is {"deploymentTargetType": "ECSTarget", "ecsTarget": ECSTarget}, the
        target's status from its deployment's (TARGET_STATUS_OF), its lifecycle events as the engine recorded
        them (`lifecycle_event`), its taskSetsInfo as the engine last set it (`set_task_sets`)."""
        _check_deployment_id(params.get("deploymentId"))
        target_ids = params.get("targetIds")
        if not target_ids:
            raise CodeDeployError(
                "DeploymentTargetIdRequiredException", "A deployment target ID was not provided."
            )
        if not isinstance(target_ids, list) or len(target_ids) > BATCH_LIMIT:
            raise CodeDeployError(
                "DeploymentTargetListSizeExceededException",
                f"The maximum number of deployment target IDs you can specify is {BATCH_LIMIT}.",
            )
        for target_id in target_ids:
            if not isinstance(target_id, str) or not target_id:
                raise CodeDeployError(
                    "InvalidDeploymentTargetIdException", "The target ID provided was not valid."
                )
        with self._lock:
            dep = self._started_deployment(params.get("deploymentId"))
            targets = {t["targetId"]: t for t in self._targets.get(dep["deploymentId"], [])}
            found = []
            for target_id in dict.fromkeys(target_ids):  # each once, in the order asked
                target = targets.get(target_id)
                if target is None:
                    raise CodeDeployError(
                        "DeploymentTargetDoesNotExistException",
                        f"The target {target_id} does not belong to the deployment {dep['deploymentId']}.",
                    )
                info = copy.deepcopy(target)
                info["status"] = TARGET_STATUS_OF.get(dep["status"], "InProgress")
                found.append({"deploymentTargetType": "ECSTarget", "ecsTarget": info})
        return {"deploymentTargets": found}
