"""What both Phoenix functions share: configuration from the environment, the decision log line, CodeDeploy's
vocabulary and the settings of their AWS clients.

`make package` puts this module beside the function's own module in each zip (scripts/deploy.py
`lambda_sources`: every module of lambdas/ that is not the other function's), so both import it as
`phoenix_common`. Importing it reads no environment variable and builds no client.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, TypeVar, get_args
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError


# --------------------------------------------------------------------------------------------- configuration
class ConfigError(ValueError):
    """An environment variable the function cannot run with; the message names it."""


Environment = Literal["dev", "staging", "prod"]
ENVIRONMENTS: Final[tuple[Environment, ...]] = get_args(Environment)


def env_required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required and is not set")
    return value


Number = TypeVar("Number", int, float)


def _bounded(
    env: Mapping[str, str],
    name: str,
    default: Number,
    *,
    bounds: tuple[float, float | None],
    parse: Callable[[str], Number | None],
    kind: str,
) -> Number:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value, (minimum, maximum) = parse(raw), bounds
    if value is None or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{name} must be {kind} of at least {minimum:g}{upper}, got {raw!r}")
    return value


def _whole(raw: str) -> int | None:
    return int(raw) if re.fullmatch(r"\d+", raw) else None


def _finite(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def env_integer(
    env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    return _bounded(env, name, default, bounds=(minimum, maximum), parse=_whole, kind="a whole number")


def env_number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float | None = None
) -> float:
    return _bounded(env, name, default, bounds=(minimum, maximum), parse=_finite, kind="a number")


def env_flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw == "true"


def env_url(env: Mapping[str, str], name: str) -> str:
    value = env_required(env, name)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL such as http://my-alb.example.com, got {value!r}")
    return value.rstrip("/")


Settings = TypeVar("Settings")


def settings(load: Callable[[Mapping[str, str]], Settings]) -> Callable[[], Settings]:
    """`settings()`: `load(os.environ)` on first use, then the same value; until it succeeds, each call raises
    the ConfigError naming the bad variable again. `.cache_clear()` forgets it."""

    @functools.cache
    def build() -> Settings:
        return load(os.environ)

    return build


@dataclass(frozen=True)
class Service:
    """The service both functions watch: the spec's settings and its CodeDeploy deployment group (each
    function's Config has it as `service`)."""

    environment: Environment
    name: str  # SERVICE_NAME
    health_check_interval: int
    alarm_threshold: int
    deployment_timeout: int
    install_timeout: int
    application: str  # CODEDEPLOY_APPLICATION
    deployment_group: str  # CODEDEPLOY_DEPLOYMENT_GROUP


def load_service(env: Mapping[str, str]) -> Service:
    """The settings both functions read; raises ConfigError naming the first bad variable."""
    raw = env_required(env, "ENVIRONMENT")
    environment = next((e for e in ENVIRONMENTS if e == raw), None)
    if environment is None:
        raise ConfigError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {raw!r}")
    deployment_timeout = env_integer(env, "DEPLOYMENT_TIMEOUT", 900, minimum=1)
    return Service(
        environment=environment,
        name=env.get("SERVICE_NAME", "").strip() or "sample-app",
        health_check_interval=env_integer(env, "HEALTH_CHECK_INTERVAL", 60, minimum=10),
        alarm_threshold=env_integer(env, "ALARM_THRESHOLD", 2, minimum=1),
        deployment_timeout=deployment_timeout,
        install_timeout=env_integer(
            env, "INSTALL_TIMEOUT", min(300, deployment_timeout), minimum=1, maximum=deployment_timeout
        ),
        application=env_required(env, "CODEDEPLOY_APPLICATION"),
        deployment_group=env_required(env, "CODEDEPLOY_DEPLOYMENT_GROUP"),
    )


# --------------------------------------------------------------------------------------------- Lambda
class LambdaContext(Protocol):
    """The part of the Lambda context object the functions use."""

    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


_REQUEST_ID: ContextVar[str] = ContextVar("phoenix_request_id", default="")


@contextmanager
def invocation(context: LambdaContext) -> Iterator[None]:
    """Within it, every decision line carries this invocation's request id (per thread, per invocation)."""
    token = _REQUEST_ID.set(str(context.aws_request_id))
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


# Keys a decision's field cannot take as they are: a LogRecord's own attributes (logging refuses them) and the
# keys Lambda's JSON formatter writes or leaves out (awslambdaric lambda_runtime_log_utils.JsonFormatter).
_TAKEN_KEYS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "timestamp", "level", "logger", "requestId", "stackTrace", "errorType",
    "errorMessage", "location", "tenantId", "aws_request_id", "tenant_id", "_frame_type",
}  # fmt: skip


class DecisionLog:
    """One log record per decision, written by Lambda's runtime. With the functions' LogFormat JSON, each is
    one JSON object: the decision as `message`, Lambda's `timestamp`, `level`, `logger` (phoenix.<function>)
    and `requestId`, then `function` and the decision's fields as top-level keys (a field named like one of
    Lambda's keys gets a trailing "_"). The drill (local/drill) reads `function`, the decision, `action`,
    `status`, `reason` and `verdict` from them."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.logger = logging.getLogger(f"phoenix.{function}")

    def __call__(self, decision: str, level: int = logging.INFO, **fields: Any) -> None:
        if self.logger.level == logging.NOTSET and not os.environ.get("AWS_LAMBDA_LOG_LEVEL"):
            # No ApplicationLogLevel (LogFormat Text): Lambda's runtime leaves the root logger at WARNING.
            # With one, the runtime sets the root logger to it and this logger follows.
            self.logger.setLevel(logging.INFO)
        extra: dict[str, Any] = {"function": self.function}
        for key, value in fields.items():
            # Lambda's formatter has no fallback for what JSON cannot encode (the line is lost): as text.
            extra[f"{key}_" if key in _TAKEN_KEYS else key] = json.loads(json.dumps(value, default=str))
        self.logger.log(level, decision, extra=extra)


# --------------------------------------------------------------------------------------------- CodeDeploy
# botocore's DeploymentStatus, split by whether the deployment still runs (tests check the split against it).
DeploymentStatus = Literal[
    "Created", "Queued", "InProgress", "Baking", "Ready", "Succeeded", "Failed", "Stopped"
]
IN_FLIGHT: Final[frozenset[DeploymentStatus]] = frozenset(
    {"Created", "Queued", "InProgress", "Baking", "Ready"}
)
FINISHED: Final[frozenset[DeploymentStatus]] = frozenset({"Succeeded", "Failed", "Stopped"})
# What PutLifecycleEventHookExecutionStatus accepts from a hook.
HookStatus = Literal["Succeeded", "Failed"]
# DeploymentInfo.creator of the deployment CodeDeploy creates to roll one back.
ROLLBACK_CREATOR: Final = "codeDeployRollback"
# Every deployment the auto-rollback function creates has a description starting with this.
MARKER: Final = "phoenix-auto-rollback"


def epoch(value: Any) -> float | None:
    """A deploymentInfo time (boto3 gives datetimes) as epoch seconds; None when absent or unreadable."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def parse_time(text: str) -> datetime | None:
    """An alarm's time as CloudWatch writes it ("2026-11-20T10:02:07.523+0000"); None if unreadable."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def install_started(targets: Mapping[str, Any]) -> float | None:
    """When the Install lifecycle event of a BatchGetDeploymentTargets answer began, if it is still
    InProgress: the replacement task set is not yet steady (ECS deployments: one ecsTarget, the service;
    botocore's ECSTarget.lifecycleEvents, LifecycleEvent.status). None when it is not in progress."""
    for target in targets.get("deploymentTargets") or []:
        for event in (target.get("ecsTarget") or {}).get("lifecycleEvents") or []:
            if event.get("lifecycleEventName") == "Install" and event.get("status") == "InProgress":
                return epoch(event.get("startTime"))
    return None


def read_targets(codedeploy: Any, deployment_id: str) -> dict[str, Any]:
    """The deployment's targets: ListDeploymentTargets, then BatchGetDeploymentTargets (at most 25 IDs a
    call; an ECS deployment has one, `<cluster>:<service>`). Raises the client's errors."""
    ids: list[str] = codedeploy.list_deployment_targets(deploymentId=deployment_id).get("targetIds") or []
    if not ids:
        return {"deploymentTargets": []}
    targets: dict[str, Any] = codedeploy.batch_get_deployment_targets(
        deploymentId=deployment_id, targetIds=ids[:25]
    )
    return targets


def read_install_started(codedeploy: Any, deployment_id: str, log: DecisionLog) -> float | None:
    """`install_started` of the deployment's targets (`read_targets`). An AWS error is logged and read as
    None: only DEPLOYMENT_TIMEOUT then applies."""
    try:
        targets = read_targets(codedeploy, deployment_id)
    except (ClientError, BotoCoreError) as exc:
        log("install progress unknown; only DEPLOYMENT_TIMEOUT applies", logging.WARNING, error=str(exc))
        return None
    return install_started(targets)


def in_bake(deployment: Mapping[str, Any]) -> bool:
    """Traffic has fully shifted and the original waits TerminationWaitTimeInMinutes: not stuck. (botocore:
    instanceTerminationWaitTimeStarted is true "as soon as the termination wait period starts".)"""
    return bool(deployment.get("instanceTerminationWaitTimeStarted")) or deployment.get("status") == "Baking"


# --------------------------------------------------------------------------------------------- AWS clients
def client(service: str, config: BotoConfig) -> Callable[[], Any]:
    """`client()`: the boto3 client for `service`, built on first use, then the same one. Each has its own
    session: building clients from boto3's default session is not thread-safe. `.cache_clear()` forgets it."""

    @functools.cache
    def build() -> Any:
        return boto3.session.Session().client(service, config=config)

    return build


def client_config(*, attempts: int, connect_timeout: float, read_timeout: float) -> BotoConfig:
    """botocore's `standard` retry mode with these bounds. `attempts` counts the first one too (botocore's
    `total_max_attempts`; its `max_attempts` counts only the retries)."""
    return BotoConfig(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


# botocore's standard mode waits rand(0, 1) * min(base * 2 ** i, 20) s before retry i (0-based); base is 1 s
# for throttling errors (the longest) and 50 ms otherwise (botocore/retries/standard.py, ExponentialBackoff).
BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 20.0


def worst_case_call_seconds(config: BotoConfig) -> float:
    """The longest one API call can take with this client configuration: every attempt connecting and waiting
    for its answer up to the timeouts, and the longest backoff before each retry. Not counted: a server that
    keeps sending a byte within each read timeout, and an `x-amz-retry-after` answer header (up to 5 s more
    per retry)."""
    retries = config.retries or {}
    # total_max_attempts counts every attempt, max_attempts only the retries (standard mode: 2 by default).
    attempts = int(retries.get("total_max_attempts") or int(retries.get("max_attempts", 2)) + 1)
    per_attempt = float(config.connect_timeout) + float(config.read_timeout)
    backoff = sum(min(BACKOFF_BASE_S * 2.0**retry, BACKOFF_MAX_S) for retry in range(attempts - 1))
    return attempts * per_attempt + backoff


# --------------------------------------------------------------------------------------------- notifications
# SNS Publish (botocore's documentation): a Subject "less than 100 characters long" with "no line breaks or
# control characters"; a Message "at most 256 KiB in size (262,144 bytes, not 262,144 characters)".
SUBJECT_MAX_CHARS: Final = 99
MESSAGE_MAX_BYTES: Final = 262_144
CUT: Final = "\n[... cut to fit]\n"
# Of a notification as a chat message: our bound (a Slack or Teams message is read, not archived).
CHAT_MAX_BYTES: Final = 4_000


def subject_line(text: str) -> str:
    """An SNS Subject: printable ASCII on one line, fewer than 100 characters."""
    line = re.sub(r"[^\x20-\x7e]", "?", text)
    return line if len(line) <= SUBJECT_MAX_CHARS else line[: SUBJECT_MAX_CHARS - 3] + "..."


def fit_utf8(text: str, max_bytes: int) -> str:
    """`text` as valid UTF-8 of at most `max_bytes` bytes: lone surrogates replaced, the end cut to fit."""
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return data.decode("utf-8")
    return data[: max(0, max_bytes - len(CUT.encode()))].decode("utf-8", "ignore") + CUT


def notification_message(subject: str, body: str) -> str:
    """The Message of a MessageStructure "json" Publish: the plain text for e-mail, queues and functions
    ("default"), and for chat channels (Amazon Q Developer in chat applications subscribes over HTTPS and
    posts only CloudWatch alarms and its "custom notification" schema: version, source "custom", content) the
    same text as a custom notification. At most MESSAGE_MAX_BYTES whatever the body: the text is cut."""
    custom = {
        "version": "1.0",
        "source": "custom",
        "content": {"title": subject_line(subject), "description": fit_utf8(body, CHAT_MAX_BYTES)},
    }
    chat = json.dumps(custom, ensure_ascii=False)
    room = MESSAGE_MAX_BYTES
    while True:  # JSON escapes lengthen the text (a newline is two bytes): cut by the excess until it fits
        message = json.dumps({"default": fit_utf8(body, room), "https": chat}, ensure_ascii=False)
        excess = len(message.encode("utf-8")) - MESSAGE_MAX_BYTES
        if excess <= 0:
            return message
        room = max(0, room - excess)


def publish_text(sns: Any, topic_arn: str, subject: str, body: str) -> None:
    """One notification on the topic, as `notification_message` shapes it (botocore SNS Publish:
    MessageStructure "json" needs a "default" string and takes one per protocol)."""
    sns.publish(
        TopicArn=topic_arn,
        Subject=subject_line(subject),
        MessageStructure="json",
        Message=notification_message(subject, body),
    )
