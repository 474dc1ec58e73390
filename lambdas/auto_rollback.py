"""Auto-rollback Lambda: an alarm becomes a stop, a redeployment of the last good revision, or nothing.

Accepted events (anything else is logged as rejected and answered without calling AWS, without raising):
- SNS-wrapped CloudWatch alarm (`Records[].Sns.Message` is the alarm as a JSON string): the alarms topic;
- EventBridge "CloudWatch Alarm State Change" (`detail`);
- a CloudWatch alarm's direct Lambda action (`alarmData`).

The decision is `decide(alarm, history, config, now)`, pure: the first rule of ALARM_RULES, then
HISTORY_RULES, that holds, read from the alarm and from CodeDeploy's history of the deployment group
CODEDEPLOY_APPLICATION / CODEDEPLOY_DEPLOYMENT_GROUP (deploymentInfo dicts as boto3 returns them). One of:
Ignored (not an alarm to act on: logged only), Nothing (said; mailed when people must act), Stop (the
deployment in flight) or Redeploy (the last known-good revision). `act` does what a decision means on AWS
and reports an Outcome; `lambda_handler` parses, decides, acts, notifies and logs one JSON line per decision.
docs/lambdas.md has the rules as a table.

On AWS:
- Stop: StopDeployment(autoRollbackEnabled=True), and CodeDeploy puts the original back. StopDeployment is
  asynchronous on AWS (it answers Pending): the function waits, within its own timeout, until CodeDeploy
  reports the deployment stopped and names the rollback deployment, so a repeated delivery of the alarm
  (serialised behind this one by reserved concurrency 1) finds the rollback in flight and does nothing.
- Redeploy: CreateDeployment of the last known-good revision, read back with GetApplicationRevision by its
  sha256 (deployment records never carry the AppSpec text on AWS: GetDeployment's documentation), all at
  once and with the group's alarm polling turned off for it (overrideAlarmConfiguration): the alarms firing
  are about the bad revision and would otherwise stop the restore of the good one. Its description is the
  record of what was handled: MARKER, a hash of the alarm transition, the replaced and the restored revision
  (86 characters whatever the alarm's name: CodeDeploy takes at most 100).
- CodeDeploy's refusals become outcomes: DeploymentAlreadyCompletedException (CodeDeploy stopped it first),
  DeploymentLimitExceededException (another deployment started meanwhile). When botocore had retried the
  call (its first answer was lost), the refusal can be the echo of the first attempt: what really happened
  is read back from CodeDeploy and reported. A deployment that completes as it is stopped (refused, or ended
  Succeeded anyway) leaves the bad release serving without an original: the same delivery is judged again
  from the history, and the last known-good revision is redeployed.

Exactly one action for duplicate or concurrent deliveries, without in-memory state: reserved concurrency 1
serialises the deliveries, CodeDeploy refuses a second deployment in flight and a second stop, and the
record on every redeployment makes a repeated delivery of the same alarm transition, or one inside the
cooldown, a no-op.

Every action, every case people must handle ("ACTION NEEDED") and every failure goes to
NOTIFICATIONS_TOPIC_ARN as a plain-text mail within SNS's limits; "no action needed" outcomes are logged, and
mailed only with NOTIFY_NO_ACTION=true. AWS calls use botocore's standard retry mode; an AWS error that
remains is notified and then raised, so the asynchronous invocation retries and ends in the dead-letter
queue. Configuration and clients are built on first use: a bad variable is logged and answered (and mailed
when the topic itself is usable), never raised.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Generic, Literal, TypeVar, get_args

import phoenix_common as common
from botocore.exceptions import BotoCoreError, ClientError
from phoenix_common import (
    FINISHED,
    IN_FLIGHT,
    MARKER,
    MESSAGE_MAX_BYTES,
    ROLLBACK_CREATOR,
    ConfigError,
    DecisionLog,
    LambdaContext,
    Service,
    client_config,
    env_flag,
    env_integer,
    env_required,
    epoch,
    fit_utf8,
    in_bake,
    invocation,
    load_service,
    parse_time,
    publish_text,
    read_install_started,
    subject_line,
    worst_case_call_seconds,
)

log = DecisionLog("auto_rollback")
LOGGER = log.logger

# Look-back windows (days) for finished deployments: widened until HISTORY_MAX_DEPLOYMENTS are found.
HISTORY_WINDOWS_DAYS = (7, 30, 90, 365, None)
STOP_POLL_S = (0.2, 2.0)  # first and longest pause between GetDeployment polls while a stop is pending
# A known-good revision goes back in one step: every minute of a canary would keep users on the bad one.
RESTORE_DEPLOYMENT_CONFIG = "CodeDeployDefault.ECSAllAtOnce"
AWS_CONFIG = client_config(attempts=6, connect_timeout=3, read_timeout=10)
# The notification after a stop: tighter than AWS_CONFIG, so that what is kept back for it leaves most of the
# function's time to wait for CodeDeploy to act on the stop.
NOTIFY_CONFIG = client_config(attempts=3, connect_timeout=2, read_timeout=5)
# How long a stop is awaited: the function's remaining time less the notification's worst case.
STOP_WAIT_RESERVE_S = worst_case_call_seconds(NOTIFY_CONFIG) + 1.0
BATCH_SIZE = 25
REASON_MAX_BYTES = 4_096  # of an alarm's reason in a mail (CloudWatch writes at most 1,023 characters)
# CodeDeploy's quotas: "Maximum number of characters in a deployment description: 100" (botocore's model
# gives no length, only DescriptionTooLongException). A record is MARKER + three hashes: 86 characters.
DESCRIPTION_MAX_CHARS = 100
HASH_CHARS = 16

AlarmState = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
ALARM_STATES: Final[tuple[AlarmState, ...]] = get_args(AlarmState)
Source = Literal["sns", "eventbridge", "direct"]
# stopped | redeployed | attention (could not act: people must) | none (nothing needed) | failed
Action = Literal["stopped", "redeployed", "attention", "none", "failed"]
# A deploymentInfo as boto3 returns it (GetDeployment, BatchGetDeployments): createTime is a datetime.
Deployment = Mapping[str, Any]


# --------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    service: Service
    alarm_names: frozenset[str]
    notifications_topic_arn: str
    rollback_cooldown_seconds: int
    history_max_deployments: int
    timeout_alarm_name: str
    notify_no_action: bool


def topic_arn(env: Mapping[str, str]) -> str:
    topic: str = env_required(env, "NOTIFICATIONS_TOPIC_ARN")
    if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}", topic):
        raise ConfigError(f"NOTIFICATIONS_TOPIC_ARN must be an SNS topic ARN, got {topic!r}")
    return topic


def load_config(env: Mapping[str, str]) -> Config:
    """Validate the environment; raises ConfigError naming the first bad variable."""
    service = load_service(env)
    alarm_names = frozenset(n.strip() for n in env_required(env, "ALARM_NAMES").split(",") if n.strip())
    if not alarm_names:
        raise ConfigError("ALARM_NAMES must list at least one alarm name (comma separated)")
    config = Config(
        service=service,
        alarm_names=alarm_names,
        notifications_topic_arn=topic_arn(env),
        rollback_cooldown_seconds=env_integer(
            env, "ROLLBACK_COOLDOWN_SECONDS", service.deployment_timeout, minimum=0
        ),
        history_max_deployments=env_integer(env, "HISTORY_MAX_DEPLOYMENTS", 50, minimum=1),
        timeout_alarm_name=env.get("DEPLOYMENT_TIMEOUT_ALARM_NAME", "").strip(),
        notify_no_action=env_flag(env, "NOTIFY_NO_ACTION"),
    )
    if config.timeout_alarm_name and config.timeout_alarm_name not in config.alarm_names:
        raise ConfigError("DEPLOYMENT_TIMEOUT_ALARM_NAME must be one of ALARM_NAMES")
    return config


# Built on first use: the configuration (ConfigError names the variable) and the clients.
config = common.settings(load_config)
codedeploy = common.client("codedeploy", AWS_CONFIG)
sns = common.client("sns", NOTIFY_CONFIG)


# --------------------------------------------------------------------------------------------- events
class MalformedEvent(ValueError):
    """An event this function cannot read; the message says what was wrong."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


@dataclass(frozen=True)
class Alarm:
    name: str
    state: AlarmState
    previous_state: AlarmState
    reason: str
    time: str  # the state change, as the event writes it
    source: Source
    # state.actionsSuppressedBy (composite alarms with an actions suppressor): its actions are held back.
    suppressed_by: str = ""
    # previousState.actionsSuppressedBy: they were held back until this change.
    was_suppressed: bool = False

    @property
    def into_alarm(self) -> bool:
        """A transition into ALARM whose actions run: from another state, or from an ALARM whose actions
        were suppressed (CloudWatch runs them when the suppression ends)."""
        return self.state == "ALARM" and (self.previous_state != "ALARM" or self.was_suppressed)

    @property
    def changed_at(self) -> datetime | None:
        changed: datetime | None = parse_time(self.time)
        return changed

    @property
    def key(self) -> str:
        """This transition in a record: a hash of the alarm's name and state-change time (any name fits)."""
        when = self.changed_at
        stamp = when.astimezone(UTC).isoformat(timespec="milliseconds") if when else self.time
        return _digest(f"{self.name}\n{stamp}")


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where}.{key} is missing or not a non-empty string")
    return value


def _optional_text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _object(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedEvent(f"{where} is not a JSON object")
    return obj


def _state(obj: Mapping[str, Any], key: str, where: str) -> AlarmState:
    value = _text(obj, key, where)
    state = next((s for s in ALARM_STATES if s == value), None)
    if state is None:
        raise MalformedEvent(f"{where}.{key} is {value[:40]!r}, not one of {', '.join(sorted(ALARM_STATES))}")
    return state


def _from_state_change(detail: Mapping[str, Any], source: Source, where: str) -> Alarm:
    state = _object(detail.get("state"), f"{where}.state")
    previous = _object(detail.get("previousState"), f"{where}.previousState")
    return Alarm(
        name=_text(detail, "alarmName", where),
        state=_state(state, "value", f"{where}.state"),
        previous_state=_state(previous, "value", f"{where}.previousState"),
        reason=_optional_text(state, "reason"),
        time=_optional_text(state, "timestamp"),
        source=source,
        suppressed_by=_optional_text(state, "actionsSuppressedBy"),
        was_suppressed=bool(_optional_text(previous, "actionsSuppressedBy")),
    )


def _from_sns(record: Any, where: str) -> Alarm:
    sns_part = _object(_object(record, where).get("Sns"), f"{where}.Sns")
    try:
        message = json.loads(_text(sns_part, "Message", f"{where}.Sns"))
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
        raise MalformedEvent(f"{where}.Sns.Message is not JSON: {type(exc).__name__}") from None
    message = _object(message, f"{where}.Sns.Message")
    return Alarm(
        name=_text(message, "AlarmName", f"{where}.Sns.Message"),
        state=_state(message, "NewStateValue", f"{where}.Sns.Message"),
        previous_state=_state(message, "OldStateValue", f"{where}.Sns.Message"),
        reason=_optional_text(message, "NewStateReason"),
        time=_optional_text(message, "StateChangeTime"),
        source="sns",
    )


def parse_alarms(event: Any) -> list[Alarm]:
    """The alarm state changes in an SNS, EventBridge or direct-invoke event; MalformedEvent otherwise."""
    body = _object(event, "event")
    if "Records" in body:
        records = body["Records"]
        if not isinstance(records, list) or not records:
            raise MalformedEvent("event.Records is not a non-empty list")
        return [_from_sns(record, f"Records[{index}]") for index, record in enumerate(records)]
    if body.get("detail-type") == "CloudWatch Alarm State Change":
        return [_from_state_change(_object(body.get("detail"), "event.detail"), "eventbridge", "detail")]
    if "alarmData" in body:
        return [_from_state_change(_object(body["alarmData"], "event.alarmData"), "direct", "alarmData")]
    raise MalformedEvent("not an SNS, EventBridge or direct-invoke CloudWatch alarm event")


# --------------------------------------------------------------------------------------------- history facts
def revision_key(revision: Mapping[str, Any]) -> str:
    """A revision's identity: the AppSpec's sha256 (what AWS returns), or a hash of its location."""
    content = revision.get("appSpecContent") or {}
    if isinstance(content, dict) and isinstance(content.get("sha256"), str):
        return str(content["sha256"])
    if isinstance(content, dict) and isinstance(content.get("content"), str):
        return hashlib.sha256(content["content"].encode()).hexdigest()
    return hashlib.sha256(json.dumps(revision, sort_keys=True, default=str).encode()).hexdigest()


def revision_id(revision: Mapping[str, Any]) -> str:
    """The revision as records name it: the first HASH_CHARS hex digits of revision_key."""
    return revision_key(revision)[:HASH_CHARS]


def is_rollback(deployment: Deployment) -> bool:
    """CodeDeploy's rollback deployment, or one of this function's redeployments."""
    return deployment.get("creator") == ROLLBACK_CREATOR or str(deployment.get("description", "")).startswith(
        MARKER
    )


def record_text(alarm: Alarm, replaced: Mapping[str, Any], restored: Mapping[str, Any]) -> str:
    """A redeployment's description: what was handled, which revision it replaced and which it restores."""
    return f"{MARKER} alarm={alarm.key} from={revision_id(replaced)} to={revision_id(restored)}"


def record(deployment: Deployment) -> dict[str, str]:
    """The fields of a redeployment's record ({} for any other deployment)."""
    description = str(deployment.get("description", ""))
    if not description.startswith(MARKER):
        return {}
    fields = dict(re.findall(r"(\S+?)=(\S+)", description))
    # Records written before the 100-character limit was honoured named the replaced revision in full.
    replaced = fields.get("from") or fields.get("from-revision", "")[:HASH_CHARS]
    return {**fields, "from": replaced} if replaced else fields


def _rollback_info(deployment: Deployment) -> Mapping[str, Any]:
    info = deployment.get("rollbackInfo")
    return info if isinstance(info, dict) else {}


def bad_revisions(history: Iterable[Deployment]) -> set[str]:
    """revision_id of revisions that were rolled back, failed or stopped, or replaced by a redeployment."""
    bad: set[str] = set()
    for deployment in history:
        if _rollback_info(deployment).get("rollbackDeploymentId") or deployment.get("status") in (
            "Failed",
            "Stopped",
        ):
            bad.add(revision_id(deployment.get("revision") or {}))
        replaced = record(deployment).get("from")
        if replaced:
            bad.add(replaced)
    return bad


def newest_first(history: Iterable[Deployment]) -> tuple[Deployment, ...]:
    """ListDeployments documents no order: by createTime, newest first."""
    return tuple(sorted(history, key=lambda d: epoch(d.get("createTime")) or 0.0, reverse=True))


def _id(deployment: Deployment | None) -> str:
    return str((deployment or {}).get("deploymentId", ""))


# --------------------------------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Ignored:
    """Not an alarm this function acts on: logged, not reported as an outcome, no AWS call."""

    reason: str


@dataclass(frozen=True)
class Nothing:
    """Nothing done, and why; `needs_attention`: nothing this function can do, people must act (mailed)."""

    reason: str
    needs_attention: bool = False
    deployment: Deployment | None = None  # the deployment the reason is about (in flight or serving)
    related: Mapping[str, str] = field(default_factory=dict)  # other deployments named, by their role


@dataclass(frozen=True)
class Stop:
    """StopDeployment(autoRollbackEnabled=True) of the deployment in flight."""

    deployment: Deployment
    why: str
    cause: str = ""  # headline prefix: "DEPLOYMENT_TIMEOUT" or "INSTALL_TIMEOUT"


@dataclass(frozen=True)
class Redeploy:
    """CreateDeployment of `revision` (the last known-good one), replacing the serving deployment."""

    revision: Mapping[str, Any]  # its RevisionLocation as the history has it (AppSpec text not included)
    description: str  # the record: record_text()
    serving: Deployment
    restores: Deployment


Decision = Ignored | Nothing | Stop | Redeploy

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Rule(Generic[In, Out]):
    """When `when` holds (and no rule before it did), the decision is `then`."""

    when: Callable[[In], bool]
    then: Callable[[In], Out]


def first(rules: Sequence[Rule[In, Out]], subject: In) -> Out | None:
    return next((rule.then(subject) for rule in rules if rule.when(subject)), None)


@dataclass(frozen=True)
class Delivery:
    """One alarm state change and the configuration: all the alarm rules read."""

    alarm: Alarm
    config: Config


@dataclass(frozen=True)
class Situation(Delivery):
    """A delivery, now, and the deployment group's history newest first: all the history rules read."""

    now: datetime
    history: tuple[Deployment, ...]
    # When the in-flight deployment's Install lifecycle event began, while in progress (read only for the
    # deployment-timeout alarm, once the deployment is INSTALL_TIMEOUT old); None: not installing, or unread.
    install_started: float | None = None

    @functools.cached_property
    def in_flight(self) -> Deployment | None:
        return next((d for d in self.history if d.get("status") in IN_FLIGHT), None)

    @functools.cached_property
    def serving(self) -> Deployment | None:
        """The newest successful deployment: what production runs when nothing is in flight."""
        return next((d for d in self.history if d.get("status") == "Succeeded"), None)

    @property
    def timeout_alarm(self) -> bool:
        return self.alarm.name == self.config.timeout_alarm_name

    def age(self, deployment: Deployment | None) -> float | None:
        created = epoch((deployment or {}).get("createTime"))
        return None if created is None else self.now.timestamp() - created

    @property
    def installing_for(self) -> float | None:
        """Seconds the in-flight deployment's replacement has been in Install (not yet steady)."""
        return None if self.install_started is None else self.now.timestamp() - self.install_started

    @property
    def install_overdue(self) -> bool:
        installing = self.installing_for
        return installing is not None and installing >= self.config.service.install_timeout

    @property
    def young(self) -> bool:
        """The deployment in flight is not yet DEPLOYMENT_TIMEOUT old, nor INSTALL_TIMEOUT in Install."""
        age = self.age(self.in_flight)
        return age is not None and age < self.config.service.deployment_timeout and not self.install_overdue

    @functools.cached_property
    def handled_by(self) -> Deployment | None:
        """The redeployment whose record names this alarm transition."""
        return next((d for d in self.history if record(d).get("alarm") == self.alarm.key), None)

    @functools.cached_property
    def last_redeployment(self) -> Deployment | None:
        return next((d for d in self.history if record(d)), None)

    @property
    def in_cooldown(self) -> bool:
        age = self.age(self.last_redeployment)
        return age is not None and age < self.config.rollback_cooldown_seconds

    @functools.cached_property
    def failed_restore(self) -> Deployment | None:
        """Our redeployment that failed or was stopped, when the serving deployment is CodeDeploy's rollback
        of it: the revision it replaced (the bad one) serves again."""
        serving = self.serving
        if serving is None or serving.get("creator") != ROLLBACK_CREATOR:
            return None
        triggered_by = _rollback_info(serving).get("rollbackTriggeringDeploymentId")
        return next(
            (
                d
                for d in self.history
                if record(d)
                and d.get("status") in ("Failed", "Stopped")
                and (
                    d.get("deploymentId") == triggered_by
                    or _rollback_info(d).get("rollbackDeploymentId") == _id(serving)
                )
            ),
            None,
        )

    @property
    def stale(self) -> bool:
        """The alarm changed state before the serving deployment was created: it is about an earlier one."""
        changed, created = self.alarm.changed_at, epoch((self.serving or {}).get("createTime"))
        return changed is not None and created is not None and changed.timestamp() < created

    @functools.cached_property
    def candidate(self) -> Deployment | None:
        """The last known-good deployment: the newest successful one whose revision was never rolled back,
        failed, stopped or replaced by a redeployment, and is not the one serving."""
        bad = bad_revisions(self.history) | {revision_id((self.serving or {}).get("revision") or {})}
        return next(
            (
                d
                for d in self.history
                if d.get("status") == "Succeeded" and revision_id(d.get("revision") or {}) not in bad
            ),
            None,
        )


def _known(deployment: Deployment | None) -> Deployment:
    """The deployment a rule found: a rule runs only when the rules before it found one."""
    if deployment is None:
        raise LookupError("rule out of order: no such deployment")
    return deployment


def _stop(s: Situation) -> Stop:
    deployment = _known(s.in_flight)
    if s.timeout_alarm and s.install_overdue:
        why = f"its replacement never became healthy: in Install for {s.installing_for or 0:.0f} s, longer "
        return Stop(
            deployment,
            f"{why}than INSTALL_TIMEOUT ({s.config.service.install_timeout} s)",
            cause="INSTALL_TIMEOUT",
        )
    if s.timeout_alarm:
        why = f"in flight for {s.age(deployment) or 0:.0f} s, longer than DEPLOYMENT_TIMEOUT "
        return Stop(deployment, f"{why}({s.config.service.deployment_timeout} s)", cause="DEPLOYMENT_TIMEOUT")
    return Stop(
        deployment, f"{s.alarm.name} went into ALARM while deployment {_id(deployment)} was in flight"
    )


def _restore_rolled_back(s: Situation) -> Nothing:
    restore = _known(s.failed_restore)
    return Nothing(
        f"the bad revision serves again: CodeDeploy rolled back the automatic redeployment {_id(restore)} "
        f"({str(restore.get('status')).lower()}) with {_id(s.serving)}; people must act",
        needs_attention=True,
        deployment=s.serving,
        related={"redeployment": _id(restore)},
    )


def _stale(s: Situation) -> Nothing:
    created = (s.serving or {}).get("createTime")
    return Nothing(
        f"stale delivery: the alarm changed state at {s.alarm.time}, before deployment {_id(s.serving)} "
        f"(serving now) was created at {created}",
        deployment=s.serving,
    )


def _redeploy(s: Situation) -> Redeploy:
    serving, candidate = _known(s.serving), _known(s.candidate)
    return Redeploy(
        revision=candidate["revision"],
        description=record_text(s.alarm, serving.get("revision") or {}, candidate["revision"]),
        serving=serving,
        restores=candidate,
    )


# The alarm alone decides these, before CodeDeploy is asked anything.
ALARM_RULES: Final[tuple[Rule[Delivery, Ignored], ...]] = (
    Rule(lambda d: d.alarm.name not in d.config.alarm_names, lambda d: Ignored("alarm not configured")),
    Rule(lambda d: not d.alarm.into_alarm, lambda d: Ignored("not a transition into ALARM")),
    Rule(
        lambda d: bool(d.alarm.suppressed_by),
        lambda d: Ignored(f"the alarm's actions are suppressed ({d.alarm.suppressed_by[:40]})"),
    ),
)

# Then CodeDeploy's history decides, in this order; when none of these holds: Redeploy.
HISTORY_RULES: Final[tuple[Rule[Situation, Nothing | Stop], ...]] = (
    # DEPLOYMENT_TIMEOUT_ALARM_NAME stops only a deployment stuck past the timeout, and never redeploys.
    Rule(
        lambda s: s.timeout_alarm and s.in_flight is None,
        lambda s: Nothing("deployment timeout alarm, but no deployment is in flight"),
    ),
    Rule(
        lambda s: s.timeout_alarm and in_bake(s.in_flight or {}),
        lambda s: Nothing(
            f"deployment {_id(s.in_flight)} has shifted its traffic and is in its bake: not stuck",
            deployment=s.in_flight,
        ),
    ),
    Rule(
        lambda s: s.timeout_alarm and s.young,
        lambda s: Nothing(
            f"deployment {_id(s.in_flight)} is {s.age(s.in_flight) or 0:.0f} s old, within "
            f"DEPLOYMENT_TIMEOUT ({s.config.service.deployment_timeout} s), and not in Install for "
            f"INSTALL_TIMEOUT ({s.config.service.install_timeout} s): a stale alarm",
            deployment=s.in_flight,
        ),
    ),
    # A deployment in flight is stopped, unless it is itself a rollback.
    Rule(
        lambda s: s.in_flight is not None and is_rollback(s.in_flight),
        lambda s: Nothing(f"rollback {_id(s.in_flight)} already in progress", deployment=s.in_flight),
    ),
    Rule(lambda s: s.in_flight is not None, _stop),
    # Nothing in flight: the last known-good revision goes back, unless one of these holds.
    Rule(
        lambda s: s.serving is None,
        lambda s: Nothing(
            "no successful deployment in the history: nothing to roll back to", needs_attention=True
        ),
    ),
    Rule(lambda s: s.failed_restore is not None, _restore_rolled_back),
    Rule(
        lambda s: s.handled_by is not None,
        lambda s: Nothing(
            "this alarm was already handled (duplicate delivery)",
            deployment=s.serving,
            related={"redeployment": _id(s.handled_by)},
        ),
    ),
    Rule(lambda s: s.stale, _stale),
    Rule(
        lambda s: is_rollback(s.serving or {}),
        lambda s: Nothing(
            f"the stable revision already serves (deployment {_id(s.serving)})", deployment=s.serving
        ),
    ),
    Rule(
        lambda s: s.in_cooldown,
        lambda s: Nothing(
            f"cooldown: automatic redeployment {_id(s.last_redeployment)} is less than "
            f"{s.config.rollback_cooldown_seconds} s old",
            needs_attention=True,
            deployment=s.serving,
            related={"redeployment": _id(s.last_redeployment)},
        ),
    ),
    Rule(
        lambda s: s.candidate is None,
        lambda s: Nothing(
            "no earlier known-good revision: nothing redeployed", needs_attention=True, deployment=s.serving
        ),
    ),
)


def screen(alarm: Alarm, config: Config) -> Ignored | None:
    """The alarm rules: Ignored, or None when CodeDeploy's history must decide."""
    return first(ALARM_RULES, Delivery(alarm, config))


def judge(situation: Situation) -> Nothing | Stop | Redeploy:
    """The history rules, then Redeploy."""
    return first(HISTORY_RULES, situation) or _redeploy(situation)


def decide(alarm: Alarm, history: Iterable[Deployment], config: Config, now: datetime) -> Decision:
    """What one alarm delivery calls for: the first rule that holds. Pure: no client, clock or environment."""
    return screen(alarm, config) or judge(Situation(alarm, config, now, newest_first(history)))


# --------------------------------------------------------------------------------------------- CodeDeploy I/O
class RevisionUnavailable(RuntimeError):
    """CodeDeploy did not return the AppSpec of a revision the decision needs."""


@functools.cache
def fetched_appspec(application: str, sha256: str) -> str:
    """The AppSpec text of an AppSpecContent revision, from GetApplicationRevision (AWS's deployment records
    never carry it), checked against its sha256. A revision's content never changes: cached."""
    answer = codedeploy().get_application_revision(
        applicationName=application,
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"sha256": sha256}},
    )
    text = ((answer.get("revision") or {}).get("appSpecContent") or {}).get("content")
    if not isinstance(text, str) or hashlib.sha256(text.encode()).hexdigest() != sha256:
        raise RevisionUnavailable(f"GetApplicationRevision returned no AppSpec matching sha256 {sha256[:12]}")
    return text


def appspec_content(revision: Mapping[str, Any], config: Config) -> str:
    content = revision.get("appSpecContent") or {}
    if isinstance(content.get("content"), str):
        return str(content["content"])
    return fetched_appspec(config.service.application, revision_key(revision))


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


def _list_ids(config: Config, **filters: Any) -> list[str]:
    ids: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "applicationName": config.service.application,
            "deploymentGroupName": config.service.deployment_group,
            **filters,
        }
        if token:
            kwargs["nextToken"] = token
        page = codedeploy().list_deployments(**kwargs)
        ids += page.get("deployments", [])
        token = page.get("nextToken")
        if not token:
            return ids


def _read(ids: Sequence[str]) -> list[dict[str, Any]]:
    infos: list[dict[str, Any]] = []
    for start in range(0, len(ids), BATCH_SIZE):
        batch = codedeploy().batch_get_deployments(deploymentIds=list(ids[start : start + BATCH_SIZE]))
        infos += batch.get("deploymentsInfo", [])
    return infos


def load_history(config: Config, now: datetime) -> list[dict[str, Any]]:
    """The deployments in flight and the newest HISTORY_MAX_DEPLOYMENTS finished ones, newest first.

    ListDeployments has no documented order, so ids are gathered by status and creation window (widened
    until enough are found), then read with BatchGetDeployments and sorted by createTime here."""
    in_flight = _list_ids(config, includeOnlyStatuses=sorted(IN_FLIGHT))
    finished: list[str] = []
    for days in HISTORY_WINDOWS_DAYS:
        window = (
            {}
            if days is None
            else {"createTimeRange": {"start": datetime.fromtimestamp(now.timestamp() - days * 86400, UTC)}}
        )
        finished = _list_ids(config, includeOnlyStatuses=sorted(FINISHED), **window)
        if len(finished) >= config.history_max_deployments:
            break
    history = newest_first(_read(list(dict.fromkeys(in_flight + finished))))
    done = [d for d in history if d.get("status") not in IN_FLIGHT][: config.history_max_deployments]
    kept = {_id(d) for d in done}
    return [dict(d) for d in history if d.get("status") in IN_FLIGHT or _id(d) in kept]


def _deployment(deployment_id: str) -> dict[str, Any]:
    info: dict[str, Any] = codedeploy().get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    return info


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retried(exc: ClientError) -> bool:
    """botocore sent the call more than once: an earlier attempt may have done what it asked."""
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0) > 0


# --------------------------------------------------------------------------------------------- acting
@dataclass(frozen=True)
class Outcome:
    """What happened, as logged, returned and mailed."""

    action: Action
    headline: str
    alarm: Alarm
    details: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "headline": self.headline, "alarm": self.alarm.name, **self.details}


def deployment_details(deployment: Deployment | None, config: Config) -> dict[str, str]:
    """A deployment in flight, its revision and the one it replaces; or the serving one and its revision."""
    if deployment is None:
        return {}
    revision = revision_label(deployment.get("revision") or {}, config)
    if deployment.get("status") not in IN_FLIGHT:
        return {"serving_deployment": _id(deployment), "from": revision}
    previous = deployment.get("previousRevision")
    return {
        "deployment": _id(deployment),
        "from": revision,
        "to": revision_label(previous, config) if previous else "the original task set",
    }


def act(decision: Nothing | Stop | Redeploy, alarm: Alarm, config: Config, deadline: float) -> Outcome:
    """Do what the decision says against CodeDeploy (within `deadline`, monotonic seconds) and report what
    really happened; CodeDeploy's refusals become outcomes, other AWS errors are raised."""
    match decision:
        case Stop():
            return stop(decision, alarm, config, deadline)
        case Redeploy():
            return redeploy(decision, alarm, config)
        case Nothing():
            details = {**deployment_details(decision.deployment, config), **decision.related}
            return Outcome(
                "attention" if decision.needs_attention else "none", decision.reason, alarm, details
            )


def stop(decision: Stop, alarm: Alarm, config: Config, deadline: float) -> Outcome:
    deployment_id = _id(decision.deployment)
    details = {**deployment_details(decision.deployment, config), "reason": decision.why}

    def stopped(headline: str) -> Outcome:
        return Outcome(
            "stopped", f"{decision.cause}: {headline}" if decision.cause else headline, alarm, details
        )

    try:
        response = codedeploy().stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=True)
    except ClientError as exc:
        if _error_code(exc) != "DeploymentAlreadyCompletedException":
            raise
        current = _deployment(deployment_id)
        status = str(current.get("status"))
        details.update(
            status=status,
            rollback_deployment=str(_rollback_info(current).get("rollbackDeploymentId", "none")),
        )
        stopped_by_a_request = (current.get("errorInformation") or {}).get("code") in (None, "MANUAL_STOP")
        if _retried(exc) and status == "Stopped" and stopped_by_a_request:
            details["note"] = "StopDeployment's first answer was lost; its retry found the deployment stopped"
            return stopped(f"stopped deployment {deployment_id} and rolled it back")
        return Outcome(
            "none", f"deployment {deployment_id} already {status.lower()} by CodeDeploy", alarm, details
        )
    details["stop_status"] = f"{response.get('status')}: {response.get('statusMessage', '')}".strip(": ")
    current = await_stop(deployment_id, response.get("status"), deadline)
    details["status"] = str(current.get("status", "InProgress"))
    rollback = _rollback_info(current).get("rollbackDeploymentId")
    if rollback:
        details["rollback_deployment"] = str(rollback)
    if current.get("status") in IN_FLIGHT:
        return stopped(
            f"asked CodeDeploy to stop deployment {deployment_id} and roll it back (still pending)"
        )
    return stopped(f"stopped deployment {deployment_id} and rolled it back")


def await_stop(deployment_id: str, stop_status: Any, deadline: float) -> dict[str, Any]:
    """The deployment once CodeDeploy has acted on a stop (StopDeployment answers Pending on AWS), or as
    it is at `deadline` (monotonic seconds)."""
    pause = STOP_POLL_S[0]
    while True:
        current = _deployment(deployment_id)
        if stop_status == "Succeeded" or current.get("status") not in IN_FLIGHT:
            return current
        if time.monotonic() + pause > deadline:
            return current
        time.sleep(pause)
        pause = min(STOP_POLL_S[1], pause * 2)


def _request_revision(revision: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """The revision as CreateDeployment takes it: AppSpec text for AppSpecContent, the location otherwise."""
    if revision.get("revisionType") == "AppSpecContent":
        return {
            "revisionType": "AppSpecContent",
            "appSpecContent": {"content": appspec_content(revision, config)},
        }
    return dict(revision)


def redeploy(decision: Redeploy, alarm: Alarm, config: Config) -> Outcome:
    details = {
        **deployment_details(decision.serving, config),
        "to": revision_label(decision.revision, config),
        "restores_deployment": _id(decision.restores),
    }
    try:
        request_revision = _request_revision(decision.revision, config)
    except RevisionUnavailable as exc:
        details["error"] = str(exc)
        return Outcome("failed", "the last known-good revision could not be read back", alarm, details)
    try:
        created = codedeploy().create_deployment(
            applicationName=config.service.application,
            deploymentGroupName=config.service.deployment_group,
            revision=request_revision,
            description=decision.description,
            deploymentConfigName=RESTORE_DEPLOYMENT_CONFIG,
            # The alarms that fire now are about the bad revision: polled during this deployment, they would
            # stop the restore of the good one (AWS documents this override for exactly this case).
            overrideAlarmConfiguration={"enabled": False, "ignorePollAlarmFailure": False, "alarms": []},
        )
        redeployment = str(created["deploymentId"])
    except ClientError as exc:
        if _error_code(exc) != "DeploymentLimitExceededException":
            raise
        ours = _in_flight_with(decision.description, config) if _retried(exc) else None
        if ours is None:
            return Outcome("none", "another deployment started meanwhile: no redeployment", alarm, details)
        details["note"] = (
            "CreateDeployment's first answer was lost; its retry found this redeployment in flight"
        )
        redeployment = ours
    details["redeployment"] = redeployment
    return Outcome("redeployed", f"redeployed the last known-good revision as {redeployment}", alarm, details)


def _in_flight_with(description: str, config: Config) -> str | None:
    """The deployment in flight that carries this exact record, if any."""
    in_flight = _read(_list_ids(config, includeOnlyStatuses=sorted(IN_FLIGHT)))
    return next((_id(d) for d in in_flight if d.get("description") == description), None)


# --------------------------------------------------------------------------------------------- notifications
VERDICTS: Final[Mapping[Action, str]] = {
    "stopped": "ROLLED BACK",
    "redeployed": "ROLLED BACK",
    "attention": "ACTION NEEDED",
    "none": "NO ACTION",
    "failed": "FAILED",
}
LABELS: Final[Mapping[str, str]] = {
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
    "note": "Note",
    "error": "Error",
}


def notification(outcome: Outcome, config: Config, when: datetime) -> tuple[str, str]:
    """(subject, body): a subject a mail client shows whole, a plain-text body with the facts; both within
    SNS's limits whatever the alarm holds."""
    service = config.service
    subject = subject_line(
        f"[{service.environment}] {service.name}: {VERDICTS[outcome.action]} - {outcome.headline}"
    )
    alarm = outcome.alarm
    rows = [
        ("Action", outcome.action),
        ("Service", f"{config.service.name} ({config.service.environment})"),
        ("Deployment group", f"{config.service.application} / {config.service.deployment_group}"),
        ("Alarm", f"{alarm.name} ({alarm.previous_state} -> {alarm.state} at {alarm.time or 'unknown time'}, "
                  f"via {alarm.source})"),
        ("Alarm reason", fit_utf8(alarm.reason, REASON_MAX_BYTES) or "not given"),
        *((LABELS.get(k, k), v) for k, v in outcome.details.items()),
        ("Time", when.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]  # fmt: skip
    lines = [f"Phoenix auto-rollback: {outcome.headline}.", ""]
    lines += [f"{label + ':':<22}{value}" for label, value in rows]
    lines += [
        "",
        f"Detection: the health alarm fires after {config.service.alarm_threshold} failed checks "
        f"{config.service.health_check_interval} s apart; automatic redeployments are at least "
        f"{config.rollback_cooldown_seconds} s apart.",
    ]
    return subject, fit_utf8("\n".join(lines) + "\n", MESSAGE_MAX_BYTES)


def notify(outcome: Outcome, config: Config) -> None:
    subject, body = notification(outcome, config, datetime.now(UTC))
    publish_text(sns(), config.notifications_topic_arn, subject, body)


# --------------------------------------------------------------------------------------------- entry point
def process(alarm: Alarm, config: Config, deadline: float) -> Outcome:
    """Judge from CodeDeploy's history, act, notify; an AWS error that remains is notified (best effort) and
    raised."""

    def decide_now() -> Nothing | Stop | Redeploy:
        now = datetime.now(UTC)
        return judge(with_install(Situation(alarm, config, now, tuple(load_history(config, now)))))

    try:
        decision = decide_now()
        outcome = act(decision, alarm, config, deadline)
        if isinstance(decision, Stop) and outcome.details.get("status") == "Succeeded":
            # The stop came as the deployment completed: the release the alarm is about serves now, with no
            # original left to go back to. Judged again, the history redeploys the last known-good revision
            # (the alarm changed state after that deployment began: not a stale one).
            log(outcome.headline + "; judging again", **outcome.as_dict())
            decision = decide_now()
            if not isinstance(decision, Stop):
                outcome = act(decision, alarm, config, deadline)
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


def with_install(s: Situation) -> Situation:
    """For the deployment-timeout alarm about a deployment within DEPLOYMENT_TIMEOUT but INSTALL_TIMEOUT old:
    the situation with when its Install began (ListDeploymentTargets, BatchGetDeploymentTargets). A failed
    read is logged and leaves only the DEPLOYMENT_TIMEOUT rule."""
    age = s.age(s.in_flight)
    if not (s.timeout_alarm and s.in_flight and age is not None and age >= s.config.service.install_timeout):
        return s
    return replace(s, install_started=read_install_started(codedeploy(), _id(s.in_flight), log))


def configuration_failure(error: ConfigError, alarms: Sequence[Alarm]) -> dict[str, Any]:
    """A variable the function cannot run with: logged and answered, not raised (a retry cannot fix it), and
    mailed for a transition into ALARM when the topic itself is usable: the function is blind until the
    stack is fixed, and people must know."""
    log("configuration error", logging.ERROR, error=str(error), alarms=[a.name for a in alarms])
    answer = {"outcomes": [], "error": str(error)}
    try:
        topic = topic_arn(os.environ)
    except ConfigError:
        return answer
    missed = [a.name for a in alarms if a.into_alarm]
    if missed:
        body = (
            f"The auto-rollback function cannot run: {error}.\n\nNot acted on: {', '.join(missed)}.\n"
            "Fix the function's environment (the stack's parameters); until then nothing is rolled back.\n"
        )
        try:
            publish_text(sns(), topic, f"auto-rollback: FAILED - configuration error: {error}", body)
        except (ClientError, BotoCoreError) as exc:
            log("notification failed", logging.ERROR, error=str(exc))
    return answer


def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Parse the alarm(s), decide and act on each transition into ALARM, report the outcomes."""
    with invocation(context):
        try:
            alarms = parse_alarms(event)
        except MalformedEvent as exc:
            keys = sorted(str(k) for k in event)[:20] if isinstance(event, dict) else []
            log("event rejected", logging.ERROR, reason=str(exc), keys=keys)
            return {"outcomes": [], "rejected": str(exc)}
        try:
            settings = config()
        except ConfigError as exc:
            return configuration_failure(exc, alarms)
        # Room to notify after waiting for a stop: the rest of the function's time, less a reserve.
        deadline = time.monotonic() + max(
            0.0, context.get_remaining_time_in_millis() / 1000.0 - STOP_WAIT_RESERVE_S
        )
        outcomes = []
        for alarm in alarms:
            ignored = screen(alarm, settings)
            if ignored is not None:
                log(f"ignored: {ignored.reason}", alarm=alarm.name, state=alarm.state,
                    previous=alarm.previous_state)  # fmt: skip
            else:
                outcomes.append(process(alarm, settings, deadline).as_dict())
        return {"outcomes": outcomes}
