"""Auto-rollback Lambda: an alarm becomes a stop, a redeployment of the last good revision, or nothing.

Accepted events (anything else is logged as rejected and answered without calling AWS, without raising):
- SNS-wrapped CloudWatch alarm (`Records[].Sns.Message` is the alarm as a JSON string): the alarms topic;
- EventBridge "CloudWatch Alarm State Change" (`detail`);
- a CloudWatch alarm's direct Lambda action (`alarmData`).

Only a transition into ALARM of an alarm named in ALARM_NAMES acts; OK and INSUFFICIENT_DATA do nothing. Then,
for the deployment group CODEDEPLOY_APPLICATION / CODEDEPLOY_DEPLOYMENT_GROUP, from CodeDeploy's own history
(the deployments in flight are found with ListDeployments' includeOnlyStatuses: AWS documents no order for
ListDeployments, so the history is sorted by createTime here):
1. a deployment in flight -> StopDeployment(autoRollbackEnabled=True): CodeDeploy puts the original back.
   StopDeployment is asynchronous on AWS (it answers Pending): the function waits, within its own timeout,
   until CodeDeploy reports the deployment stopped and names the rollback deployment, so a repeated delivery
   of the alarm (serialised behind this one by reserved concurrency 1) finds the rollback in flight and does
   nothing. If the deployment in flight is itself a rollback, or CodeDeploy already stopped/completed it
   (its own alarm rollback won the race), nothing is done and that is said.
2. DEPLOYMENT_TIMEOUT_ALARM_NAME (the health check publishes DeploymentOverdue = 1 while a deployment has been
   in flight for DEPLOYMENT_TIMEOUT seconds): the deployment in flight is stopped and rolled back as above,
   once its createTime confirms it is older than DEPLOYMENT_TIMEOUT and it is not in its bake (traffic
   shifted, instanceTerminationWaitTimeStarted); this alarm never starts a redeployment.
3. none in flight -> resurrection: CreateDeployment of the last known-good revision (newest Succeeded
   deployment whose revision was never rolled back, never failed and is not the one serving now), with a
   description starting with MARKER that names the alarm, both revisions and both deployments. Deployment
   records never carry the AppSpec text on AWS (GetDeployment's documentation: `appSpecContent.content` is
   always null), so the revision is fetched with GetApplicationRevision by its sha256. It shifts all traffic
   at once and turns off the group's alarm polling for itself (overrideAlarmConfiguration): the alarms firing
   are about the bad revision and would otherwise stop the restore. Nothing when the serving deployment is
   already a rollback (the stable revision serves), when the same alarm transition was already handled,
   within ROLLBACK_COOLDOWN_SECONDS of the previous automatic redeployment, or when there is no earlier good
   revision (said in the notification).

Exactly one action for duplicate or concurrent deliveries, across invocations and without in-memory state: the
function runs with reserved concurrency 1 (deliveries are serialised), CodeDeploy refuses a second deployment
while one is in flight (DeploymentLimitExceededException) and a second stop of a finished deployment
(DeploymentAlreadyCompletedException), and the MARKER description on every redeployment makes a repeated
delivery of the same alarm transition, or one inside the cooldown, a no-op.

Every action (stop, redeployment), every case it cannot act on (no earlier good revision, cooldown: "ACTION
NEEDED") and every failure goes to NOTIFICATIONS_TOPIC_ARN as a plain-text mail: what, why, from which
revision to which, which deployments, when. "No action needed" outcomes (a duplicate delivery, a rollback
already in progress) are logged, and mailed only with NOTIFY_NO_ACTION=true. AWS calls use botocore's
standard retry mode; an error that remains is notified and then raised, so the asynchronous invocation
retries and ends in the dead-letter queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

LOGGER = logging.getLogger("phoenix.auto_rollback")
LOGGER.setLevel(logging.INFO)

ENVIRONMENTS = ("dev", "staging", "prod")
IN_FLIGHT_STATUSES = frozenset({"Created", "Queued", "InProgress", "Baking", "Ready"})
FINISHED_STATUSES = ("Succeeded", "Failed", "Stopped")
# Look-back windows (days) for finished deployments: widened until HISTORY_MAX_DEPLOYMENTS are found.
HISTORY_WINDOWS_DAYS = (7, 30, 90, 365, None)
# How long a stop is awaited is bounded by the function's remaining time less this reserve (notification).
STOP_WAIT_RESERVE_S = 10.0
STOP_POLL_S = (0.2, 2.0)  # first and longest pause between GetDeployment polls while a stop is pending
ALARM_STATES = frozenset({"OK", "ALARM", "INSUFFICIENT_DATA"})
MARKER = "phoenix-auto-rollback"
# A known-good revision goes back in one step: every minute of a canary would keep users on the bad one.
RESTORE_DEPLOYMENT_CONFIG = "CodeDeployDefault.ECSAllAtOnce"
AWS_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)
BATCH_SIZE = 25
SUBJECT_LIMIT = 100


class ConfigError(ValueError):
    """An environment variable the function cannot run with; the message names it."""


class MalformedEvent(ValueError):
    """An event this function cannot read; the message says what was wrong."""


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Config:
    environment: str
    service_name: str
    health_check_interval: int
    alarm_threshold: int
    deployment_timeout: int
    codedeploy_application: str
    codedeploy_deployment_group: str
    alarm_names: frozenset[str]
    notifications_topic_arn: str
    rollback_cooldown_seconds: int
    history_max_deployments: int
    timeout_alarm_name: str
    notify_no_action: bool


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required and is not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw) or int(raw) < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, got {raw!r}")
    return int(raw)


def load_config(env: Mapping[str, str]) -> Config:
    """Validate the environment once; raises ConfigError naming the first bad variable."""
    environment = _required(env, "ENVIRONMENT")
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    alarm_names = frozenset(n.strip() for n in _required(env, "ALARM_NAMES").split(",") if n.strip())
    if not alarm_names:
        raise ConfigError("ALARM_NAMES must list at least one alarm name (comma separated)")
    topic = _required(env, "NOTIFICATIONS_TOPIC_ARN")
    if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}", topic):
        raise ConfigError(f"NOTIFICATIONS_TOPIC_ARN must be an SNS topic ARN, got {topic!r}")
    deployment_timeout = _integer(env, "DEPLOYMENT_TIMEOUT", 900, minimum=1)
    config = Config(
        environment=environment,
        service_name=env.get("SERVICE_NAME", "").strip() or "sample-app",
        health_check_interval=_integer(env, "HEALTH_CHECK_INTERVAL", 60, minimum=10),
        alarm_threshold=_integer(env, "ALARM_THRESHOLD", 2, minimum=1),
        deployment_timeout=deployment_timeout,
        codedeploy_application=_required(env, "CODEDEPLOY_APPLICATION"),
        codedeploy_deployment_group=_required(env, "CODEDEPLOY_DEPLOYMENT_GROUP"),
        alarm_names=alarm_names,
        notifications_topic_arn=topic,
        rollback_cooldown_seconds=_integer(env, "ROLLBACK_COOLDOWN_SECONDS", deployment_timeout, minimum=0),
        history_max_deployments=_integer(env, "HISTORY_MAX_DEPLOYMENTS", 50, minimum=1),
        timeout_alarm_name=env.get("DEPLOYMENT_TIMEOUT_ALARM_NAME", "").strip(),
        notify_no_action=_flag(env, "NOTIFY_NO_ACTION"),
    )
    if config.timeout_alarm_name and config.timeout_alarm_name not in config.alarm_names:
        raise ConfigError("DEPLOYMENT_TIMEOUT_ALARM_NAME must be one of ALARM_NAMES")
    return config


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def log(decision: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON line per decision."""
    LOGGER.log(level, json.dumps({"function": "auto_rollback", "decision": decision, **fields}, default=str))


CONFIG = load_config(os.environ)
CODEDEPLOY = boto3.client("codedeploy", config=AWS_CONFIG)
SNS = boto3.client("sns", config=AWS_CONFIG)


# --------------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Alarm:
    name: str
    state: str
    previous_state: str
    reason: str
    time: str
    source: str  # sns | eventbridge | direct


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where}.{key} is missing or not a non-empty string")
    return value


def _object(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedEvent(f"{where} is not a JSON object")
    return obj


def _state(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _text(obj, key, where)
    if value not in ALARM_STATES:
        raise MalformedEvent(f"{where}.{key} is {value[:40]!r}, not one of {', '.join(sorted(ALARM_STATES))}")
    return value


def _from_state_change(detail: Mapping[str, Any], source: str, where: str) -> Alarm:
    state = _object(detail.get("state"), f"{where}.state")
    previous = _object(detail.get("previousState"), f"{where}.previousState")
    return Alarm(
        name=_text(detail, "alarmName", where),
        state=_state(state, "value", f"{where}.state"),
        previous_state=_state(previous, "value", f"{where}.previousState"),
        reason=str(state.get("reason", "")),
        time=str(state.get("timestamp", "")),
        source=source,
    )


def parse_alarms(event: Any) -> list[Alarm]:
    """The alarm state changes in an SNS, EventBridge or direct-invoke event; MalformedEvent otherwise."""
    body = _object(event, "event")
    if "Records" in body:
        records = body["Records"]
        if not isinstance(records, list) or not records:
            raise MalformedEvent("event.Records is not a non-empty list")
        alarms = []
        for index, record in enumerate(records):
            where = f"Records[{index}]"
            sns = _object(_object(record, where).get("Sns"), f"{where}.Sns")
            try:
                message = json.loads(_text(sns, "Message", f"{where}.Sns"))
            except ValueError as exc:
                raise MalformedEvent(f"{where}.Sns.Message is not JSON: {exc}") from None
            message = _object(message, f"{where}.Sns.Message")
            alarms.append(
                Alarm(
                    name=_text(message, "AlarmName", f"{where}.Sns.Message"),
                    state=_state(message, "NewStateValue", f"{where}.Sns.Message"),
                    previous_state=_state(message, "OldStateValue", f"{where}.Sns.Message"),
                    reason=str(message.get("NewStateReason", "")),
                    time=str(message.get("StateChangeTime", "")),
                    source="sns",
                )
            )
        return alarms
    if body.get("detail-type") == "CloudWatch Alarm State Change":
        return [_from_state_change(_object(body.get("detail"), "event.detail"), "eventbridge", "detail")]
    if "alarmData" in body:
        return [_from_state_change(_object(body["alarmData"], "event.alarmData"), "direct", "alarmData")]
    raise MalformedEvent("not an SNS, EventBridge or direct-invoke CloudWatch alarm event")


# --------------------------------------------------------------------------------------------- history
def revision_key(revision: Mapping[str, Any]) -> str:
    """A revision's identity: the AppSpec's sha256 (what AWS returns), or a hash of its location."""
    content = revision.get("appSpecContent") or {}
    if isinstance(content, dict) and isinstance(content.get("sha256"), str):
        return str(content["sha256"])
    if isinstance(content, dict) and isinstance(content.get("content"), str):
        return hashlib.sha256(content["content"].encode()).hexdigest()
    return hashlib.sha256(json.dumps(revision, sort_keys=True, default=str).encode()).hexdigest()


_APPSPECS: dict[str, str] = {}  # sha256 -> AppSpec text: a revision's content never changes


def appspec_content(revision: Mapping[str, Any], config: Config) -> str:
    """The AppSpec text of an AppSpecContent revision, from GetApplicationRevision (AWS's deployment
    records never carry it), checked against its sha256."""
    content = revision.get("appSpecContent") or {}
    if isinstance(content.get("content"), str):
        return str(content["content"])
    sha = revision_key(revision)
    if sha not in _APPSPECS:
        answer = CODEDEPLOY.get_application_revision(
            applicationName=config.codedeploy_application,
            revision={"revisionType": "AppSpecContent", "appSpecContent": {"sha256": sha}},
        )
        text = ((answer.get("revision") or {}).get("appSpecContent") or {}).get("content")
        if not isinstance(text, str) or hashlib.sha256(text.encode()).hexdigest() != sha:
            raise RevisionUnavailable(
                f"GetApplicationRevision returned no AppSpec matching sha256 {sha[:12]}"
            )
        _APPSPECS[sha] = text
    return _APPSPECS[sha]


def revision_label(revision: Mapping[str, Any], config: Config) -> str:
    """Human-readable: the task definition named in the AppSpec, and the revision's short hash."""
    task = "revision"
    if revision.get("revisionType") == "AppSpecContent":
        try:
            content = appspec_content(revision, config)
        except (ClientError, BotoCoreError, RevisionUnavailable) as exc:
            log("revision label unavailable", logging.WARNING, error=str(exc))
            content = ""
        match = re.search(r"TaskDefinition[\"']?\s*:\s*[\"']?([^\"'\s,}]+)", content)
        task = match.group(1) if match else task
    return f"{task} (sha256 {revision_key(revision)[:12]})"


class RevisionUnavailable(RuntimeError):
    """CodeDeploy did not return the AppSpec of a revision the decision needs."""


def is_rollback(deployment: Mapping[str, Any]) -> bool:
    return deployment.get("creator") == "codeDeployRollback" or str(
        deployment.get("description", "")
    ).startswith(MARKER)


def marker_fields(deployment: Mapping[str, Any]) -> dict[str, str]:
    description = str(deployment.get("description", ""))
    if not description.startswith(MARKER):
        return {}
    return dict(re.findall(r"(\S+?)=(\S+)", description))


def _list_ids(config: Config, **filters: Any) -> list[str]:
    ids: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "applicationName": config.codedeploy_application,
            "deploymentGroupName": config.codedeploy_deployment_group,
            **filters,
        }
        if token:
            kwargs["nextToken"] = token
        page = CODEDEPLOY.list_deployments(**kwargs)
        ids += page.get("deployments", [])
        token = page.get("nextToken")
        if not token:
            return ids


def load_history(config: Config, now: float) -> list[dict[str, Any]]:
    """The deployments in flight and the newest HISTORY_MAX_DEPLOYMENTS finished ones, newest first.

    ListDeployments has no documented order, so ids are gathered by status and creation window (widened
    until enough are found), then read with BatchGetDeployments and sorted by createTime here."""
    ids = _list_ids(config, includeOnlyStatuses=sorted(IN_FLIGHT_STATUSES))
    finished: list[str] = []
    for days in HISTORY_WINDOWS_DAYS:
        window = (
            {}
            if days is None
            else {"createTimeRange": {"start": datetime.fromtimestamp(now - days * 86400, UTC)}}
        )
        finished = _list_ids(config, includeOnlyStatuses=list(FINISHED_STATUSES), **window)
        if len(finished) >= config.history_max_deployments:
            break
    infos: dict[str, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(ids + finished))
    for start in range(0, len(wanted), BATCH_SIZE):
        batch = CODEDEPLOY.batch_get_deployments(deploymentIds=wanted[start : start + BATCH_SIZE])
        infos.update({d["deploymentId"]: d for d in batch.get("deploymentsInfo", [])})
    history = sorted(infos.values(), key=lambda d: _epoch(d.get("createTime")), reverse=True)
    done = [d for d in history if d.get("status") not in IN_FLIGHT_STATUSES][: config.history_max_deployments]
    return [d for d in history if d.get("status") in IN_FLIGHT_STATUSES or d in done]


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return 0.0


def bad_revisions(history: Iterable[Mapping[str, Any]]) -> set[str]:
    """Revisions that were rolled back, failed or stopped, or replaced by an automatic redeployment."""
    bad: set[str] = set()
    for deployment in history:
        rolled_back = bool((deployment.get("rollbackInfo") or {}).get("rollbackDeploymentId"))
        if rolled_back or deployment.get("status") in ("Failed", "Stopped"):
            bad.add(revision_key(deployment.get("revision") or {}))
        replaced = marker_fields(deployment).get("from-revision")
        if replaced:
            bad.add(replaced)
    return bad


# --------------------------------------------------------------------------------------------- decisions
@dataclass
class Outcome:
    # stopped | redeployed | attention (could not act: people must) | none (nothing needed) | failed
    action: str
    headline: str
    alarm: Alarm
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "headline": self.headline, "alarm": self.alarm.name, **self.details}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def stop_in_flight(
    deployment: Mapping[str, Any],
    alarm: Alarm,
    config: Config,
    deadline: float,
    *,
    why: str = "",
    cause: str = "",
) -> Outcome:
    deployment_id = str(deployment["deploymentId"])
    details = {
        "deployment": deployment_id,
        "from": revision_label(deployment.get("revision") or {}, config),
        "to": revision_label(deployment.get("previousRevision") or {}, config)
        if deployment.get("previousRevision")
        else "the original task set",
    }
    if why:
        details["reason"] = why
    if is_rollback(deployment):
        return Outcome("none", f"rollback {deployment_id} already in progress", alarm, details)
    try:
        response = CODEDEPLOY.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    except ClientError as exc:
        if _error_code(exc) != "DeploymentAlreadyCompletedException":
            raise
        current = CODEDEPLOY.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        rollback = (current.get("rollbackInfo") or {}).get("rollbackDeploymentId", "none")
        details.update(status=str(current.get("status")), rollback_deployment=str(rollback))
        return Outcome(
            "none",
            f"deployment {deployment_id} already {str(current.get('status')).lower()} by CodeDeploy",
            alarm,
            details,
        )
    details["stop_status"] = f"{response.get('status')}: {response.get('statusMessage', '')}".strip(": ")
    current = await_stop(deployment_id, response.get("status"), deadline)
    details["status"] = str(current.get("status", "InProgress"))
    rollback = (current.get("rollbackInfo") or {}).get("rollbackDeploymentId")
    if rollback:
        details["rollback_deployment"] = str(rollback)
    if current.get("status") in IN_FLIGHT_STATUSES:
        headline = f"asked CodeDeploy to stop deployment {deployment_id} and roll it back (still pending)"
    else:
        headline = f"stopped deployment {deployment_id} and rolled it back"
    return Outcome("stopped", f"{cause}: {headline}" if cause else headline, alarm, details)


def await_stop(deployment_id: str, stop_status: Any, deadline: float) -> dict[str, Any]:
    """The deployment once CodeDeploy has acted on a stop (StopDeployment answers Pending on AWS), or as
    it is at `deadline` (monotonic seconds)."""
    pause = STOP_POLL_S[0]
    while True:
        current: dict[str, Any] = CODEDEPLOY.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
        if stop_status == "Succeeded" or current.get("status") not in IN_FLIGHT_STATUSES:
            return current
        if time.monotonic() + pause > deadline:
            return current
        time.sleep(pause)
        pause = min(STOP_POLL_S[1], pause * 2)


def stop_overdue(
    in_flight: Mapping[str, Any] | None, alarm: Alarm, config: Config, now: float, deadline: float
) -> Outcome:
    """DEPLOYMENT_TIMEOUT: stop the deployment in flight once it is older than the timeout; never redeploy."""
    if in_flight is None:
        return Outcome("none", "deployment timeout alarm, but no deployment is in flight", alarm)
    age = now - _epoch(in_flight.get("createTime"))
    if in_flight.get("instanceTerminationWaitTimeStarted") or in_flight.get("status") == "Baking":
        return Outcome(
            "none",
            f"deployment {in_flight['deploymentId']} has shifted its traffic and is in its bake: not stuck",
            alarm,
            {"deployment": str(in_flight["deploymentId"])},
        )
    if age < config.deployment_timeout:
        return Outcome(
            "none",
            f"deployment {in_flight['deploymentId']} is {age:.0f} s old, within DEPLOYMENT_TIMEOUT "
            f"({config.deployment_timeout} s): a stale alarm",
            alarm,
            {"deployment": str(in_flight["deploymentId"])},
        )
    why = f"in flight for {age:.0f} s, longer than DEPLOYMENT_TIMEOUT ({config.deployment_timeout} s)"
    return stop_in_flight(in_flight, alarm, config, deadline, why=why, cause="DEPLOYMENT_TIMEOUT")


def resurrect(  # noqa: PLR0911 - one return per reason not to act
    history: list[dict[str, Any]], alarm: Alarm, config: Config, now: float
) -> Outcome:
    serving = next((d for d in history if d.get("status") == "Succeeded"), None)
    if serving is None:
        return Outcome("attention", "no successful deployment in the history: nothing to roll back to", alarm)
    serving_id = str(serving["deploymentId"])
    details = {
        "serving_deployment": serving_id,
        "from": revision_label(serving.get("revision") or {}, config),
    }
    for deployment in history:
        marker = marker_fields(deployment)
        if marker.get("alarm") == alarm.name and marker.get("alarm-time") == _token(alarm.time):
            details["redeployment"] = str(deployment["deploymentId"])
            return Outcome("none", "this alarm was already handled (duplicate delivery)", alarm, details)
    if is_rollback(serving):
        return Outcome(
            "none", f"the stable revision already serves (deployment {serving_id})", alarm, details
        )
    last_auto = next((d for d in history if marker_fields(d)), None)
    if last_auto is not None and now - _epoch(last_auto.get("createTime")) < config.rollback_cooldown_seconds:
        details["redeployment"] = str(last_auto["deploymentId"])
        return Outcome(
            "attention",
            f"cooldown: automatic redeployment {last_auto['deploymentId']} is less than "
            f"{config.rollback_cooldown_seconds} s old",
            alarm,
            details,
        )
    serving_key = revision_key(serving.get("revision") or {})
    bad = bad_revisions(history) | {serving_key}
    candidate = next(
        (
            d
            for d in history
            if d.get("status") == "Succeeded" and revision_key(d.get("revision") or {}) not in bad
        ),
        None,
    )
    if candidate is None:
        return Outcome("attention", "no earlier known-good revision: nothing redeployed", alarm, details)
    revision = candidate["revision"]
    details.update(to=revision_label(revision, config), restores_deployment=str(candidate["deploymentId"]))
    description = (
        f"{MARKER} alarm={alarm.name} alarm-time={_token(alarm.time)} from-revision={serving_key} "
        f"to-revision={revision_key(revision)} replaces={serving_id} restores={candidate['deploymentId']}"
    )
    try:
        request_revision = _request_revision(revision, config)
    except RevisionUnavailable as exc:
        details["error"] = str(exc)
        return Outcome("failed", "the last known-good revision could not be read back", alarm, details)
    try:
        created = CODEDEPLOY.create_deployment(
            applicationName=config.codedeploy_application,
            deploymentGroupName=config.codedeploy_deployment_group,
            revision=request_revision,
            description=description,
            deploymentConfigName=RESTORE_DEPLOYMENT_CONFIG,
            # The alarms that fire now are about the bad revision: polled during this deployment, they would
            # stop the restore of the good one (AWS documents this override for exactly this case).
            overrideAlarmConfiguration={"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
        )
    except ClientError as exc:
        if _error_code(exc) != "DeploymentLimitExceededException":
            raise
        return Outcome("none", "another deployment started meanwhile: no redeployment", alarm, details)
    details["redeployment"] = str(created["deploymentId"])
    return Outcome(
        "redeployed",
        f"redeployed the last known-good revision as {created['deploymentId']}",
        alarm,
        details,
    )


def _request_revision(revision: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """The revision as CreateDeployment takes it: AppSpec text for AppSpecContent, the location otherwise."""
    if revision.get("revisionType") == "AppSpecContent":
        return {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": appspec_content(revision, config)},
        }
    return dict(revision)


def _token(text: str) -> str:
    return re.sub(r"\s+", "_", text) or "unknown"


def handle_alarm(alarm: Alarm, config: Config, deadline: float) -> Outcome:
    """The decision for one transition into ALARM, from CodeDeploy's state."""
    now = time.time()
    history = load_history(config, now)
    in_flight = next((d for d in history if d.get("status") in IN_FLIGHT_STATUSES), None)
    if alarm.name == config.timeout_alarm_name:
        return stop_overdue(in_flight, alarm, config, now, deadline)
    if in_flight is not None:
        return stop_in_flight(in_flight, alarm, config, deadline)
    return resurrect(history, alarm, config, now)


# --------------------------------------------------------------------------------------------- notifications
def notification(outcome: Outcome, config: Config, when: datetime) -> tuple[str, str]:
    """(subject, body): a subject a mail client shows whole, a plain-text body with the facts."""
    verdict = {
        "stopped": "ROLLED BACK",
        "redeployed": "ROLLED BACK",
        "attention": "ACTION NEEDED",
        "none": "NO ACTION",
        "failed": "FAILED",
    }
    subject = f"[{config.environment}] {config.service_name}: {verdict[outcome.action]} - {outcome.headline}"
    subject = re.sub(r"[^\x20-\x7e]", "?", subject)
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 3] + "..."
    labels = {
        "deployment": "Deployment",
        "serving_deployment": "Serving deployment",
        "from": "From revision",
        "to": "To revision",
        "restores_deployment": "Restores deployment",
        "redeployment": "Rollback deployment",
        "rollback_deployment": "Rollback deployment",
        "status": "Deployment status",
        "stop_status": "StopDeployment",
        "reason": "Why",
        "error": "Error",
    }
    alarm = outcome.alarm
    rows = [
        ("Action", outcome.action),
        ("Service", f"{config.service_name} ({config.environment})"),
        ("Deployment group", f"{config.codedeploy_application} / {config.codedeploy_deployment_group}"),
        ("Alarm", f"{alarm.name} ({alarm.previous_state} -> {alarm.state} at {alarm.time or 'unknown time'}, "
                  f"via {alarm.source})"),
        ("Alarm reason", alarm.reason or "not given"),
        *((labels.get(k, k), v) for k, v in outcome.details.items()),
        ("Time", when.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]  # fmt: skip
    lines = [f"Phoenix auto-rollback: {outcome.headline}.", ""]
    lines += [f"{label + ':':<22}{value}" for label, value in rows]
    lines += [
        "",
        f"Detection: the health alarm fires after {config.alarm_threshold} failed checks "
        f"{config.health_check_interval} s apart; automatic redeployments are at least "
        f"{config.rollback_cooldown_seconds} s apart.",
    ]
    return subject, "\n".join(lines) + "\n"


def notify(outcome: Outcome, config: Config) -> None:
    subject, body = notification(outcome, config, datetime.now(UTC))
    SNS.publish(TopicArn=config.notifications_topic_arn, Subject=subject, Message=body)


# --------------------------------------------------------------------------------------------- entry point
def process(alarm: Alarm, config: Config, deadline: float) -> Outcome:
    """Decide, act, notify; an AWS error that remains is notified (best effort) and raised."""
    try:
        outcome = handle_alarm(alarm, config, deadline)
    except (ClientError, BotoCoreError) as exc:
        failed = Outcome("failed", "could not complete the rollback decision", alarm, {"error": str(exc)})
        log("aws error", logging.ERROR, alarm=alarm.name, error=str(exc))
        try:
            notify(failed, config)
        except (ClientError, BotoCoreError) as notify_exc:
            log("notification failed", logging.ERROR, error=str(notify_exc))
        raise
    log(outcome.headline, **outcome.as_dict())
    if outcome.action != "none" or config.notify_no_action:
        notify(outcome, config)
    return outcome


def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Parse the alarm(s), delegate each transition into ALARM, report the outcomes."""
    try:
        alarms = parse_alarms(event)
    except MalformedEvent as exc:
        keys = sorted(str(k) for k in event)[:20] if isinstance(event, dict) else []
        log("event rejected", logging.ERROR, reason=str(exc), keys=keys)
        return {"outcomes": [], "rejected": str(exc)}
    outcomes = []
    # Room to notify after waiting for a stop: the rest of the function's time, less a reserve.
    deadline = time.monotonic() + max(
        0.0, context.get_remaining_time_in_millis() / 1000.0 - STOP_WAIT_RESERVE_S
    )
    for alarm in alarms:
        if alarm.name not in CONFIG.alarm_names:
            log("ignored: alarm not configured", alarm=alarm.name, state=alarm.state)
        elif alarm.state != "ALARM" or alarm.previous_state == "ALARM":
            log("ignored: not a transition into ALARM", alarm=alarm.name, state=alarm.state,
                previous=alarm.previous_state)  # fmt: skip
        else:
            outcomes.append(process(alarm, CONFIG, deadline).as_dict())
    return {"outcomes": outcomes}
