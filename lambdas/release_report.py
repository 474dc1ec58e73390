"""Release-report Lambda: CodeDeploy's state changes become readable mails, and every ended deployment a
scorecard in the artifact bucket.

Accepted events: EventBridge "CodeDeploy Deployment State-change Notification" (source aws.codedeploy) of the
deployment group CODEDEPLOY_APPLICATION / CODEDEPLOY_DEPLOYMENT_GROUP, delivered by the stack's rule
(tests/events/codedeploy-deployment-state-change.json has the shape). Anything else is logged as rejected and
answered without calling AWS, without raising. `detail.state` is one of START, READY, SUCCESS, FAILURE, STOP.

`verdict(state, deployment)` is the decision, pure: START and READY are "no action needed" (logged; mailed
only with NOTIFY_NO_ACTION=true, and then without a scorecard); SUCCESS, FAILURE and STOP end a deployment.
For an ended one the function reads what it needs (GetDeployment; the revision's task definition and image
through GetApplicationRevision and DescribeTaskDefinition; the lifecycle events of its ECS target through
ListDeploymentTargets and BatchGetDeploymentTargets; ALARM_NAMES with DescribeAlarms and their metrics
around the deployment with GetMetricData), writes the scorecard - REPORT_PREFIX<group>/<deployment id>.html
(a page with an inline SVG chart) and .json beside it - to REPORT_BUCKET, and publishes a plain-text mail
with its link to NOTIFICATIONS_TOPIC_ARN.

The link is the S3 console's page of the object, not a presigned URL: the bucket is SSE-KMS encrypted, and a
URL presigned with this function's role expires with the role's temporary credentials ("If you created a
presigned URL using a temporary token, then the URL expires when the token expires", S3 User Guide, sharing
objects with presigned URLs); a mail is read later than that, and a presigned URL is a bearer secret in an
inbox. The console asks for a login and the reader's own s3:GetObject (the aws/s3 key lets every principal
of the account decrypt through S3).

A part that cannot be read (revision, targets, alarms, metrics) is named in the scorecard as unavailable;
GetDeployment failing, or the mail failing, raises after logging (Lambda retries the asynchronous invocation,
then the dead-letter queue): the scorecard's key is the deployment's, so a retry overwrites, never doubles.
A scorecard that cannot be written is said in the mail. Configuration errors are logged and answered.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args
from urllib.parse import quote

import boto3
import phoenix_common as common
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from phoenix_common import (
    MARKER,
    MESSAGE_MAX_BYTES,
    ROLLBACK_CREATOR,
    ConfigError,
    DecisionLog,
    LambdaContext,
    Service,
    client_config,
    env_flag,
    env_required,
    epoch,
    fit_utf8,
    invocation,
    load_service,
    publish_text,
    subject_line,
)

log = DecisionLog("release_report")
LOGGER = log.logger

AWS_CONFIG = client_config(attempts=4, connect_timeout=3, read_timeout=10)
METRICS_CONFIG = client_config(attempts=2, connect_timeout=3, read_timeout=10)
DETAIL_TYPE: Final = "CodeDeploy Deployment State-change Notification"
# The deployment states CodeDeploy sends to EventBridge (aws-lambda-go events/codedeploy.go's constants, the
# EventBridge schema registry's aws.codedeploy@CodeDeployDeploymentStateChangeNotification).
State = Literal["START", "READY", "SUCCESS", "FAILURE", "STOP"]
STATES: Final[tuple[State, ...]] = get_args(State)
ENDED: Final[frozenset[State]] = frozenset({"SUCCESS", "FAILURE", "STOP"})
DEPLOYMENT_ID = re.compile(r"d-[A-Z0-9]{9}")
# The scorecard's metrics begin before the deployment by a quarter of its length, at least this long, and end
# when it is written (the deployment's end, or just after).
MIN_LEAD = timedelta(minutes=2)
# The task definition ARN in an AppSpec (YAML or JSON): what CodeDeployToECS writes into it.
TASK_DEFINITION_ARN = re.compile(r"arn:aws[a-z-]*:ecs:[a-z0-9-]+:\d{12}:task-definition/[A-Za-z0-9_-]+:\d+")
# The lifecycle events that are the product's gates (docs/lambdas.md), by CodeDeploy's ECS event names.
GATES: Final[Mapping[str, str]] = {
    "Install": "replacement task set healthy (INSTALL_TIMEOUT)",
    "AfterAllowTestTraffic": "test-traffic gate (health-check hook)",
    "AllowTraffic": "production traffic shift (alarm gate)",
}
# GetMetricData's MetricDataQuery members that an alarm's Metrics entry may carry over.
QUERY_KEYS = ("Id", "MetricStat", "Expression", "Label", "Period", "AccountId")

Verdict = Literal["STARTED", "READY", "SUCCESS", "ROLLBACK COMPLETE", "RESURRECTED", "FAILED", "STOPPED"]
# The verdicts a state gives whatever the deployment; SUCCESS depends on who created the deployment.
BY_STATE: Final[Mapping[State, Verdict]] = {
    "START": "STARTED",
    "READY": "READY",
    "FAILURE": "FAILED",
    "STOP": "STOPPED",
}


# --------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    service: Service
    notifications_topic_arn: str
    report_bucket: str
    report_prefix: str
    alarm_names: tuple[str, ...]
    notify_no_action: bool


def load_config(env: Mapping[str, str]) -> Config:
    """Validate the environment; raises ConfigError naming the first bad variable."""
    service = load_service(env)
    topic = env_required(env, "NOTIFICATIONS_TOPIC_ARN")
    if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}", topic):
        raise ConfigError(f"NOTIFICATIONS_TOPIC_ARN must be an SNS topic ARN, got {topic!r}")
    bucket = env_required(env, "REPORT_BUCKET")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"REPORT_BUCKET must be an S3 bucket name, got {bucket!r}")
    prefix = env.get("REPORT_PREFIX", "release-reports/").strip()
    if not re.fullmatch(r"([A-Za-z0-9_.-]+/)+", prefix):
        raise ConfigError(f"REPORT_PREFIX must be folder names each ending in '/', got {prefix!r}")
    alarms = tuple(n.strip() for n in env.get("ALARM_NAMES", "").split(",") if n.strip())
    return Config(
        service=service,
        notifications_topic_arn=topic,
        report_bucket=bucket,
        report_prefix=prefix,
        alarm_names=alarms,
        notify_no_action=env_flag(env, "NOTIFY_NO_ACTION"),
    )


@functools.cache
def session() -> boto3.session.Session:
    """One boto3 session for every client of this function: a session per client (phoenix_common.client)
    loads botocore's data again for each (five clients took 0.6 s instead of 0.2 s to build here), and
    this function builds its clients in one thread, which is what a shared session needs."""
    return boto3.session.Session()


class SessionClients:
    """`SessionClients.client(service, config)`: like phoenix_common.client (built on first use, then the
    same one, `.cache_clear()` forgets it), from `session()`."""

    @staticmethod
    def client(service: str, settings: BotoConfig) -> Callable[[], Any]:
        @functools.cache
        def build() -> Any:
            return session().client(service, config=settings)

        return build


config = common.settings(load_config)
codedeploy = SessionClients.client("codedeploy", AWS_CONFIG)
ecs = SessionClients.client("ecs", AWS_CONFIG)
# The metrics are the scorecard's best effort: one retry, and a failure is named in it.
cloudwatch = SessionClients.client("cloudwatch", METRICS_CONFIG)
s3 = SessionClients.client("s3", AWS_CONFIG)
sns = SessionClients.client("sns", AWS_CONFIG)


# --------------------------------------------------------------------------------------------- the event
class MalformedEvent(ValueError):
    """An event this function cannot read; the message says what was wrong."""


@dataclass(frozen=True)
class StateChange:
    deployment_id: str
    state: State
    application: str
    deployment_group: str
    time: str  # the event's time, as EventBridge writes it


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"{where}.{key} is missing or not a non-empty string")
    return value


def parse_event(event: Any) -> StateChange:
    """The state change in an EventBridge CodeDeploy event; MalformedEvent otherwise."""
    if not isinstance(event, dict):
        raise MalformedEvent("event is not a JSON object")
    if event.get("source") != "aws.codedeploy" or event.get("detail-type") != DETAIL_TYPE:
        raise MalformedEvent(f"not an EventBridge {DETAIL_TYPE!r} event from aws.codedeploy")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise MalformedEvent("event.detail is not a JSON object")
    deployment_id = _text(detail, "deploymentId", "detail")
    if not DEPLOYMENT_ID.fullmatch(deployment_id):
        raise MalformedEvent(f"detail.deploymentId {deployment_id[:40]!r} is not a CodeDeploy deployment id")
    raw = _text(detail, "state", "detail")
    state = next((s for s in STATES if s == raw), None)
    if state is None:
        raise MalformedEvent(f"detail.state is {raw[:40]!r}, not one of {', '.join(STATES)}")
    return StateChange(
        deployment_id=deployment_id,
        state=state,
        application=_text(detail, "application", "detail"),
        deployment_group=_text(detail, "deploymentGroup", "detail"),
        time=str(event.get("time") or ""),
    )


# --------------------------------------------------------------------------------------------- the decision
def verdict(state: State, deployment: Mapping[str, Any] | None) -> Verdict:
    """What a state change means for people; `deployment` is GetDeployment's deploymentInfo (None for START
    and READY, which are judged from the state alone)."""
    if state in BY_STATE:
        return BY_STATE[state]
    info = deployment or {}
    if info.get("creator") == ROLLBACK_CREATOR:
        return "ROLLBACK COMPLETE"
    if str(info.get("description", "")).startswith(MARKER):
        return "RESURRECTED"
    return "SUCCESS"


def why(deployment: Mapping[str, Any]) -> str:
    """The reason CodeDeploy gives for the deployment's end, or what it was."""
    error = deployment.get("errorInformation") or {}
    rollback = deployment.get("rollbackInfo") or {}
    if error.get("code") or error.get("message"):
        return f"{error.get('code', 'ERROR')}: {error.get('message', '')}".strip(": ")
    if rollback.get("rollbackTriggeringDeploymentId"):
        return f"CodeDeploy's rollback of deployment {rollback['rollbackTriggeringDeploymentId']}"
    if str(deployment.get("description", "")).startswith(MARKER):
        return "the auto-rollback function redeployed the last known-good revision (resurrection)"
    return str(deployment.get("status") or "unknown")


# --------------------------------------------------------------------------------------------- reading AWS
@dataclass
class Release:
    """What was deployed: the task definition the AppSpec names and its image (tag = the short commit)."""

    task_definition: str = ""
    image: str = ""

    @property
    def image_tag(self) -> str:
        name = self.image.rsplit("/", 1)[-1]
        return name.rsplit(":", 1)[1] if ":" in name and "@" not in name else ""


@dataclass
class Scorecard:
    deployment: dict[str, Any]
    verdict: Verdict
    release: Release
    gates: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, str]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    window: tuple[datetime, datetime] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


def _iso(value: Any) -> str:
    seconds = epoch(value)
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds is not None else ""


def read_release(deployment: Mapping[str, Any], config: Config) -> Release:
    """GetApplicationRevision (GetDeployment never carries the AppSpec text), then DescribeTaskDefinition."""
    revision = codedeploy().get_application_revision(
        applicationName=config.service.application, revision=deployment["revision"]
    )["revision"]
    content = str((revision.get("appSpecContent") or {}).get("content") or "")
    found = TASK_DEFINITION_ARN.search(content)
    if not found:
        return Release()
    definition = ecs().describe_task_definition(taskDefinition=found.group(0))["taskDefinition"]
    containers = definition.get("containerDefinitions") or [{}]
    return Release(task_definition=found.group(0), image=str(containers[0].get("image", "")))


def read_gates(deployment_id: str) -> list[dict[str, Any]]:
    """The lifecycle events of the deployment's ECS target (one target: the service)."""
    ids = codedeploy().list_deployment_targets(deploymentId=deployment_id).get("targetIds") or []
    if not ids:
        return []
    targets = codedeploy().batch_get_deployment_targets(deploymentId=deployment_id, targetIds=ids[:25])
    gates = []
    for target in targets.get("deploymentTargets") or []:
        for event in (target.get("ecsTarget") or {}).get("lifecycleEvents") or []:
            start, end = epoch(event.get("startTime")), epoch(event.get("endTime"))
            gates.append(
                {
                    "event": str(event.get("lifecycleEventName", "")),
                    "gate": GATES.get(str(event.get("lifecycleEventName", "")), ""),
                    "status": str(event.get("status", "")),
                    "start": _iso(event.get("startTime")),
                    "end": _iso(event.get("endTime")),
                    "seconds": round(end - start, 1) if start is not None and end is not None else None,
                }
            )
    return gates


def read_alarms(config: Config) -> list[dict[str, Any]]:
    if not config.alarm_names:
        return []
    found = cloudwatch().describe_alarms(AlarmNames=list(config.alarm_names), AlarmTypes=["MetricAlarm"])
    return list(found.get("MetricAlarms") or [])


def alarm_queries(alarm: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GetMetricData queries for an alarm's metric: its Metrics as they are (metric math keeps its ids), every
    one returned so that a rate's inputs are shown too; or its one metric and statistic."""
    if alarm.get("Metrics"):
        return [{**{k: q[k] for k in QUERY_KEYS if k in q}, "ReturnData": True} for q in alarm["Metrics"]]
    stat = alarm.get("ExtendedStatistic") or alarm.get("Statistic") or "Average"
    metric = {
        "Namespace": alarm.get("Namespace"),
        "MetricName": alarm.get("MetricName"),
        "Dimensions": alarm.get("Dimensions") or [],
    }
    return [
        {
            "Id": "m",
            "MetricStat": {"Metric": metric, "Period": int(alarm.get("Period") or 60), "Stat": stat},
            "ReturnData": True,
        }
    ]


def read_metrics(alarm: Mapping[str, Any], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The alarm's series between `start` and `end`: one GetMetricData call per alarm (its query ids are
    unique only within it)."""
    queries = alarm_queries(alarm)
    # The alarm's own series: the one query an alarm returns (ReturnData true, or its single metric).
    own = next((q["Id"] for q in alarm.get("Metrics") or [] if q.get("ReturnData", True) is not False), "m")
    values: dict[str, dict[str, Any]] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        if token:
            kwargs["NextToken"] = token
        page = cloudwatch().get_metric_data(**kwargs)
        for result in page.get("MetricDataResults") or []:
            entry = values.setdefault(
                result["Id"], {"label": result.get("Label") or result["Id"], "points": []}
            )
            entry["points"] += [
                [_iso(t), float(v)]
                for t, v in zip(result.get("Timestamps") or [], result.get("Values") or [], strict=False)
            ]
        token = page.get("NextToken")
        if not token:
            break
    series = []
    for query in queries:
        found = values.get(query["Id"], {"label": query["Id"], "points": []})
        series.append(
            {
                "alarm": alarm["AlarmName"],
                "id": query["Id"],
                "label": found["label"],
                "threshold": alarm.get("Threshold") if query["Id"] == own else None,
                "points": sorted(found["points"]),
            }
        )
    return series


def decisions(deployment: Mapping[str, Any], alarms: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Who decided what, and why: CodeDeploy's end and rollback, the auto-rollback function's redeployment,
    and every alarm in ALARM."""
    found = [{"by": "CodeDeploy", "what": str(deployment.get("status", "")), "why": why(deployment)}]
    rollback = deployment.get("rollbackInfo") or {}
    if rollback.get("rollbackDeploymentId"):
        found.append(
            {
                "by": "CodeDeploy",
                "what": f"rolled back by deployment {rollback['rollbackDeploymentId']}",
                "why": str(rollback.get("rollbackMessage") or "automatic rollback"),
            }
        )
    if str(deployment.get("description", "")).startswith(MARKER):
        found.append(
            {"by": "auto-rollback function", "what": "redeployed", "why": str(deployment["description"])}
        )
    for alarm in alarms:
        if alarm.get("StateValue") == "ALARM":
            found.append(
                {
                    "by": f"alarm {alarm.get('AlarmName')}",
                    "what": f"ALARM since {_iso(alarm.get('StateUpdatedTimestamp'))}",
                    "why": str(alarm.get("StateReason") or ""),
                }
            )
    return found


def build_scorecard(deployment: Mapping[str, Any], state: State, config: Config, now: datetime) -> Scorecard:
    """Everything the scorecard says; a part that cannot be read is named in `unavailable`."""
    card = Scorecard(dict(deployment), verdict(state, deployment), Release())
    try:
        card.release = read_release(deployment, config)
    except (ClientError, BotoCoreError, KeyError) as exc:
        card.unavailable["release"] = str(exc)
    try:
        card.gates = read_gates(str(deployment["deploymentId"]))
    except (ClientError, BotoCoreError) as exc:
        card.unavailable["gates"] = str(exc)
    alarms: list[dict[str, Any]] = []
    try:
        alarms = read_alarms(config)
    except (ClientError, BotoCoreError) as exc:
        card.unavailable["alarms"] = str(exc)
    card.alarms = [
        {
            "name": a.get("AlarmName"),
            "state": a.get("StateValue"),
            "since": _iso(a.get("StateUpdatedTimestamp")),
            "reason": a.get("StateReason", ""),
        }
        for a in alarms
    ]
    card.decisions = decisions(deployment, alarms)
    created = epoch(deployment.get("createTime"))
    if created is not None:
        began = datetime.fromtimestamp(created, UTC)
        end = max(now, began + timedelta(minutes=1))
        start = began - max(MIN_LEAD, (end - began) / 4)
        card.window = (start, end)
        for alarm in alarms:  # one alarm's metrics failing leaves the others'
            try:
                card.metrics += read_metrics(alarm, *card.window)
            except (ClientError, BotoCoreError) as exc:
                card.unavailable[f"metrics of {alarm['AlarmName']}"] = str(exc)
    return card


# --------------------------------------------------------------------------------------------- the scorecard
def report_key(config: Config, deployment_id: str) -> str:
    return f"{config.report_prefix}{config.service.deployment_group}/{deployment_id}"


def scorecard_json(card: Scorecard) -> dict[str, Any]:
    info = card.deployment
    created, completed = epoch(info.get("createTime")), epoch(info.get("completeTime"))
    return {
        "deployment": {
            "id": info.get("deploymentId"),
            "status": info.get("status"),
            "verdict": card.verdict,
            "creator": info.get("creator"),
            "description": info.get("description"),
            "deployment_config": info.get("deploymentConfigName"),
            "created": _iso(info.get("createTime")),
            "completed": _iso(info.get("completeTime")),
            "seconds": round(completed - created, 1)
            if created is not None and completed is not None
            else None,
            "why": why(info),
        },
        "release": {**asdict(card.release), "image_tag": card.release.image_tag},
        "gates": card.gates,
        "decisions": card.decisions,
        "alarms": card.alarms,
        "metrics": card.metrics,
        "window": [t.isoformat(timespec="seconds") for t in card.window] if card.window else None,
        "unavailable": card.unavailable,
    }


SVG_NS = "http://www.w3.org/2000/svg"
SERIES_COLOURS = ("#4e79a7", "#9c755f", "#bab0ac", "#76b7b2")
STATUS_COLOURS = {"Succeeded": "#59a14f", "Failed": "#e15759", "InProgress": "#edc948", "Skipped": "#bab0ac"}


def _when(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


LEFT, RIGHT, LANE, PANEL = 210, 20, 16, 56


def _axis(t0: float, t1: float, width: int) -> Callable[[float], float]:
    return lambda t: LEFT + (width - LEFT - RIGHT) * (t - t0) / max(1e-3, t1 - t0)


def _gate_lanes(
    gates: Sequence[Mapping[str, Any]], span: tuple[float, float], width: int, y: int
) -> list[str]:
    """One lane per lifecycle event over the deployment's own span: its time, coloured by its status."""
    x = _axis(*span, width)
    out = []
    for gate in gates:
        start, end = _when(gate["start"]) or span[0], _when(gate.get("end") or "") or span[1]
        colour = STATUS_COLOURS.get(gate["status"], "#333333")
        title = html.escape(f"{gate['event']}: {gate['status']} {gate['start']} - {gate.get('end') or ''}")
        out.append(f'<text x="4" y="{y + 11}">{html.escape(gate["event"])}</text>')
        out.append(
            f'<rect x="{x(start):.1f}" y="{y + 2}" width="{max(2.0, x(end) - x(start)):.1f}" '
            f'height="{LANE - 4}" fill="{colour}"><title>{title}</title></rect>'
        )
        y += LANE
    return out


def _metric_panel(
    alarm: str, group: Sequence[Mapping[str, Any]], x: Callable[[float], float], y: int, width: int
) -> list[str]:
    """An alarm's series (its own one thicker) and its threshold, dashed."""
    values = [p[1] for s in group for p in s["points"]]
    thresholds = [float(s["threshold"]) for s in group if s.get("threshold") is not None]
    top = max([*values, *thresholds, 1e-9]) * 1.15
    out = [
        f'<text x="4" y="{y + 14}">{html.escape(alarm[-32:])}</text>',
        f'<rect x="{LEFT}" y="{y}" width="{width - LEFT - RIGHT}" height="{PANEL}" fill="none" '
        'stroke="#ddd"/>',
    ]
    for index, series in enumerate(group):
        points = [(x(_when(t) or 0.0), y + PANEL - PANEL * v / top) for t, v in series["points"]]
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        label = html.escape(series["label"])
        if not points:
            out.append(f'<text x="{LEFT + 4}" y="{y + 14 + 12 * index}" fill="#999">{label}: no data</text>')
            continue
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        width_px = 2 if series.get("threshold") is not None else 1
        out.append(
            f'<polyline points="{path}" fill="none" stroke-width="{width_px}" stroke="{colour}">'
            f"<title>{label}</title></polyline>"
        )
        # A dot per datapoint: one datapoint alone draws no line.
        out += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{colour}"/>' for px, py in points]
    for threshold in thresholds:
        ty = y + PANEL - PANEL * threshold / top
        out.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e15759" '
            f'stroke-dasharray="4,3"><title>threshold {threshold:g}</title></line>'
        )
    return out


def svg(report: Mapping[str, Any], width: int = 900) -> str:
    """The release as a picture, like the drill's chart. Top, over the deployment's own span: one lane per
    lifecycle event, coloured by status. Below, over the metrics window: one panel per alarm with its metric
    against its threshold, the deployment's span shaded."""
    dep = report["deployment"]
    gates = [g for g in report.get("gates") or [] if g.get("start")]
    by_alarm: dict[str, list[dict[str, Any]]] = {}
    for series in report.get("metrics") or []:
        by_alarm.setdefault(series["alarm"], []).append(series)
    height = 60 + LANE * len(gates) + (PANEL + 10) * len(by_alarm) + 20
    out = [
        f'<svg xmlns="{SVG_NS}" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="4" y="14" font-weight="bold">{html.escape(str(dep["id"]))}: '
        f"{html.escape(str(dep['verdict']))}</text>",
    ]
    began = _when(dep.get("created") or "")
    ended = _when(dep.get("completed") or "") or max(
        [_when(g.get("end") or "") or 0.0 for g in gates] + [began or 0.0]
    )
    y = 24
    if began is not None:
        out += _gate_lanes(gates, (began, max(ended, began + 1e-3)), width, y)
        y += LANE * len(gates)
        out.append(f'<text x="{LEFT}" y="{y + 12}" fill="#666">{html.escape(str(dep.get("created")))}</text>')
        out.append(
            f'<text x="{width - RIGHT}" y="{y + 12}" text-anchor="end" fill="#666">'
            f"{html.escape(str(dep.get('completed') or 'in progress'))}</text>"
        )
        y += 24
    window = report.get("window")
    if window and by_alarm:
        t0, t1 = (_when(t) or 0.0 for t in window)
        x = _axis(t0, t1, width)
        if began is not None:
            out.append(
                f'<rect x="{x(began):.1f}" y="{y}" width="{max(1.0, x(ended) - x(began)):.1f}" '
                f'height="{(PANEL + 10) * len(by_alarm)}" fill="#f2f2f2"><title>the deployment</title></rect>'
            )
        for alarm, group in by_alarm.items():
            out += _metric_panel(alarm, group, x, y, width)
            y += PANEL + 10
        out.append(f'<text x="{LEFT}" y="{y + 12}" fill="#666">{html.escape(window[0])}</text>')
        out.append(
            f'<text x="{width - RIGHT}" y="{y + 12}" text-anchor="end" fill="#666">'
            f"{html.escape(window[1])}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '') or ''))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def scorecard_html(report: Mapping[str, Any], config: Config) -> str:
    dep, release = report["deployment"], report["release"]
    facts = [
        {"fact": "Service", "value": f"{config.service.name} ({config.service.environment})"},
        {"fact": "Deployment", "value": f"{dep['id']} ({dep['status']}, {dep['deployment_config']})"},
        {"fact": "Verdict", "value": dep["verdict"]},
        {"fact": "Why", "value": dep["why"]},
        {"fact": "Image tag (commit)", "value": release["image_tag"] or "unknown"},
        {"fact": "Image", "value": release["image"] or "unknown"},
        {"fact": "Task definition", "value": release["task_definition"] or "unknown"},
        {"fact": "Created", "value": dep["created"]},
        {"fact": "Completed", "value": dep["completed"]},
        {"fact": "Seconds", "value": dep["seconds"]},
    ]
    unavailable = [{"part": k, "error": v} for k, v in (report.get("unavailable") or {}).items()]
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(str(dep['id']))} {html.escape(str(dep['verdict']))}</title>",
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}",
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:13px}</style>",
            "</head><body>",
            f"<h1>Release scorecard: {html.escape(str(dep['id']))} - {html.escape(str(dep['verdict']))}</h1>",
            _table(facts, ["fact", "value"]),
            svg(report),
            "<h2>Gates</h2>",
            _table(report["gates"], ["event", "gate", "status", "start", "end", "seconds"]),
            "<h2>Decisions</h2>",
            _table(report["decisions"], ["by", "what", "why"]),
            "<h2>Alarms</h2>",
            _table(report["alarms"], ["name", "state", "since", "reason"]),
            "<h2>Not available</h2>" + _table(unavailable, ["part", "error"]) if unavailable else "",
            "</body></html>",
        ]
    )


def write_scorecard(report: Mapping[str, Any], config: Config) -> str:
    """The scorecard as .html and .json under its key (the bucket's default encryption applies); the key of
    the page."""
    key = report_key(config, str(report["deployment"]["id"]))
    s3().put_object(
        Bucket=config.report_bucket,
        Key=f"{key}.json",
        Body=json.dumps(report, indent=1, default=str).encode(),
        ContentType="application/json",
    )
    s3().put_object(
        Bucket=config.report_bucket,
        Key=f"{key}.html",
        Body=scorecard_html(report, config).encode(),
        ContentType="text/html; charset=utf-8",
    )
    return f"{key}.html"


# --------------------------------------------------------------------------------------------- the mail
def console_links(config: Config, region: str, deployment_id: str, key: str | None) -> dict[str, str]:
    links = {
        "Deployment console": (
            f"https://{region}.console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment_id}"
            f"?region={region}"
        )
    }
    if key:
        links["Scorecard"] = (
            f"https://{region}.console.aws.amazon.com/s3/object/{config.report_bucket}"
            f"?region={region}&bucketType=general&prefix={quote(key, safe='')}"
        )
        links["Scorecard object"] = f"s3://{config.report_bucket}/{key}"
    return links


def notification(
    change: StateChange,
    outcome: Verdict,
    config: Config,
    *,
    report: Mapping[str, Any] | None,
    key: str | None,
    region: str,
    note: str = "",
) -> tuple[str, str]:
    """(subject, body): the auto-rollback function's plain-text format."""
    dep = (report or {}).get("deployment") or {}
    release = (report or {}).get("release") or {}
    tag = release.get("image_tag") or ""
    headline = f"deployment {change.deployment_id}" + (f" of {tag}" if tag else "")
    if dep.get("why") and outcome in ("FAILED", "STOPPED"):
        headline += f" ({dep['why'][:60]})"
    subject = subject_line(f"[{config.service.environment}] {config.service.name}: {outcome} - {headline}")
    rows = [
        ("Verdict", outcome),
        ("Service", f"{config.service.name} ({config.service.environment})"),
        ("Deployment group", f"{change.application} / {change.deployment_group}"),
        ("Deployment", f"{change.deployment_id} ({change.state} at {change.time or 'unknown time'})"),
    ]
    if report is not None:
        rows += [
            ("Image tag", tag or "unknown"),
            ("Commit", f"{tag} (the image tag is the commit's short id)" if tag else "unknown"),
            ("Image", release.get("image") or "unknown"),
            ("Task definition", release.get("task_definition") or "unknown"),
            ("Why", dep.get("why") or "unknown"),
        ]
        rollback = next(
            (d["what"] for d in report.get("decisions") or [] if d["what"].startswith("rolled back")), ""
        )
        if rollback:
            rows.append(("Rollback", rollback))
        gates = [f"{g['event']} {g['status']}" for g in report.get("gates") or [] if g.get("gate")]
        if gates:
            rows.append(("Gates", "; ".join(gates)))
        firing = [str(a["name"]) for a in report.get("alarms") or [] if a.get("state") == "ALARM"]
        rows.append(("Alarms in ALARM", ", ".join(firing) or "none"))
        if dep.get("seconds") is not None:
            rows.append(("Duration", f"{dep['seconds']:g} s"))
    if note:
        rows.append(("Note", note))
    rows += list(console_links(config, region, change.deployment_id, key).items())
    rows.append(("Time", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")))
    lines = [f"Phoenix release report: {headline}: {outcome}.", ""]
    lines += [f"{label + ':':<22}{value}" for label, value in rows]
    return subject, fit_utf8("\n".join(lines) + "\n", MESSAGE_MAX_BYTES)


# --------------------------------------------------------------------------------------------- entry point
def region() -> str:
    """The function's region (Lambda's AWS_REGION, as boto3 resolves it): the console links name it."""
    return str(sns().meta.region_name)


def process(change: StateChange, settings: Config) -> dict[str, Any]:
    """Read, write the scorecard, notify; returns the answer. GetDeployment or Publish failing raises."""
    if change.state not in ENDED:
        outcome = verdict(change.state, None)
        mailed = settings.notify_no_action
        log(f"no action needed: deployment {outcome.lower()}", deployment=change.deployment_id,
            state=change.state, verdict=outcome, mailed=mailed)  # fmt: skip
        if mailed:
            subject, body = notification(change, outcome, settings, report=None, key=None, region=region())
            publish_text(sns(), settings.notifications_topic_arn, subject, body)
        return {"deployment": change.deployment_id, "verdict": outcome, "report": None, "notified": mailed}
    try:
        deployment = codedeploy().get_deployment(deploymentId=change.deployment_id)["deploymentInfo"]
    except (ClientError, BotoCoreError) as exc:
        log("aws error", logging.ERROR, deployment=change.deployment_id, error=str(exc))
        raise
    card = build_scorecard(deployment, change.state, settings, datetime.now(UTC))
    report = scorecard_json(card)
    key: str | None = None
    note = ""
    try:
        key = write_scorecard(report, settings)
    except (ClientError, BotoCoreError) as exc:
        note = f"the scorecard could not be written: {exc}"
        log("scorecard not written", logging.ERROR, deployment=change.deployment_id, error=str(exc))
    subject, body = notification(
        change, card.verdict, settings, report=report, key=key, region=region(), note=note
    )
    try:
        publish_text(sns(), settings.notifications_topic_arn, subject, body)
    except (ClientError, BotoCoreError) as exc:
        # Raised: Lambda retries the invocation (the scorecard is overwritten, the mail sent once).
        log("notification failed", logging.ERROR, deployment=change.deployment_id, error=str(exc), report=key)
        raise
    log(
        f"deployment {card.verdict.lower()}",
        deployment=change.deployment_id,
        state=change.state,
        verdict=card.verdict,
        status=deployment.get("status"),
        reason=report["deployment"]["why"],
        image_tag=card.release.image_tag,
        report=key,
        unavailable=sorted(card.unavailable),
    )
    return {"deployment": change.deployment_id, "verdict": card.verdict, "report": key, "notified": True}


def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Parse the state change, report it."""
    with invocation(context):
        try:
            change = parse_event(event)
        except MalformedEvent as exc:
            keys = sorted(str(k) for k in event)[:20] if isinstance(event, dict) else []
            log("event rejected", logging.ERROR, reason=str(exc), keys=keys)
            return {"rejected": str(exc)}
        try:
            settings = config()
        except ConfigError as exc:
            log("configuration error", logging.ERROR, error=str(exc), deployment=change.deployment_id)
            return {"error": str(exc)}
        service = settings.service
        if (change.application, change.deployment_group) != (service.application, service.deployment_group):
            log("ignored: another deployment group", deployment=change.deployment_id,
                group=f"{change.application}/{change.deployment_group}")  # fmt: skip
            return {"ignored": f"{change.application}/{change.deployment_group} is not this service's group"}
        return process(change, settings)
