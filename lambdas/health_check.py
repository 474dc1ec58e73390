"""Health check Lambda: probes the service's listeners, publishes metrics, gates CodeDeploy's test traffic.

Two triggers, one function:

- EventBridge schedule ("Scheduled Event", every HEALTH_CHECK_INTERVAL seconds): probes PRODUCTION_URL, and
  TEST_URL while a deployment of the deployment group is in flight, then publishes in one PutMetricData call,
  namespace METRIC_NAMESPACE: HealthCheckFailed (0/1), ErrorRate (percent of failed probes) and LatencyP95
  (milliseconds) with dimensions {Service, Environment, Listener=production|test}, and the production verdict
  also with {Service, Environment}: what the health-check alarm reads. With {Service, Environment} it also
  publishes DeploymentOverdue: 1 while the deployment in flight is older than DEPLOYMENT_TIMEOUT (its
  createTime, from GetDeployment) and not yet in its bake, else 0. Nothing on AWS stops a deployment stuck
  in install or in the shift before CodeDeploy's own hour; the deployment-overdue alarm on this metric has
  the auto-rollback Lambda stop it.
- CodeDeploy lifecycle hook (AfterAllowTestTraffic: {"DeploymentId", "LifecycleEventHookExecutionId"}): probes
  the replacement through TEST_URL for up to VALIDATION_ROUNDS rounds, VALIDATION_INTERVAL_SECONDS apart, then
  ALWAYS answers PutLifecycleEventHookExecutionStatus: Failed once ALARM_THRESHOLD rounds failed (or the last
  round failed, or on its own errors), otherwise Succeeded; always before the function's own deadline
  (context.get_remaining_time_in_millis()), and within DEPLOYMENT_TIMEOUT.

A probe is one GET of HEALTH_PATH with connect and read timeouts; it passes on HTTP 200 with a JSON body
{"status": "healthy"} within MAX_LATENCY_P95_MS. Timeouts, refused connections, resets, DNS failures and
garbage bodies fail with their reason. A round runs PROBE_COUNT probes per listener concurrently and fails
when the error rate exceeds MAX_ERROR_RATE percent or the p95 latency exceeds MAX_LATENCY_P95_MS.

Anything else as event is logged as rejected and answered without calling AWS. Configuration is read from the
environment once, at import; a bad value stops the function with a message naming the variable. Every
decision is one JSON log line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import boto3
import requests
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

LOGGER = logging.getLogger("phoenix.health_check")
LOGGER.setLevel(logging.INFO)

ENVIRONMENTS = ("dev", "staging", "prod")
IN_FLIGHT_STATUSES = ["Created", "Queued", "InProgress", "Baking", "Ready"]
DEPLOYMENT_ID = re.compile(r"^d-[A-Z0-9]{9}$")
# Time kept back from the Lambda deadline to answer CodeDeploy (one PutLifecycleEventHookExecutionStatus with
# botocore's standard retries at the client timeouts below).
ANSWER_RESERVE_MS = 4000
AWS_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
# CodeDeploy answers that retrying cannot fix: logged, not raised.
PERMANENT_HOOK_ERRORS = frozenset(
    {
        "DeploymentDoesNotExistException",
        "DeploymentIdRequiredException",
        "InvalidDeploymentIdException",
        "InvalidLifecycleEventHookExecutionIdException",
        "LifecycleEventAlreadyCompletedException",
        "UnsupportedActionForDeploymentTypeException",
    }
)


class ConfigError(ValueError):
    """An environment variable the function cannot run with; the message names it."""


class LambdaContext(Protocol):
    """The part of the Lambda context object this function uses."""

    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class Config:
    environment: str
    service_name: str
    health_check_interval: int
    alarm_threshold: int
    deployment_timeout: int
    production_url: str
    test_url: str
    health_path: str
    metric_namespace: str
    codedeploy_application: str
    codedeploy_deployment_group: str
    probe_count: int
    probe_connect_timeout: float
    probe_read_timeout: float
    max_error_rate: float
    max_latency_p95_ms: float
    validation_rounds: int
    validation_interval_seconds: float


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required and is not set")
    return value


def _number(
    env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float | None = None
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ConfigError(f"{name} must be a number of at least {minimum:g}{upper}, got {raw!r}")
    return value


def _integer(
    env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw) or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be a whole number of at least {minimum}{upper}, got {raw!r}")
    return int(raw)


def _url(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL such as http://my-alb.example.com, got {value!r}")
    return value.rstrip("/")


def load_config(env: Mapping[str, str]) -> Config:
    """Validate the environment once; raises ConfigError naming the first bad variable."""
    environment = _required(env, "ENVIRONMENT")
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
    health_path = env.get("HEALTH_PATH", "/health").strip() or "/health"
    if not health_path.startswith("/"):
        raise ConfigError(f"HEALTH_PATH must start with '/', got {health_path!r}")
    config = Config(
        environment=environment,
        service_name=env.get("SERVICE_NAME", "").strip() or "sample-app",
        health_check_interval=_integer(env, "HEALTH_CHECK_INTERVAL", 60, minimum=10),
        alarm_threshold=_integer(env, "ALARM_THRESHOLD", 2, minimum=1),
        deployment_timeout=_integer(env, "DEPLOYMENT_TIMEOUT", 900, minimum=1),
        production_url=_url(env, "PRODUCTION_URL"),
        test_url=_url(env, "TEST_URL"),
        health_path=health_path,
        metric_namespace=env.get("METRIC_NAMESPACE", "").strip() or "Phoenix/Deployments",
        codedeploy_application=_required(env, "CODEDEPLOY_APPLICATION"),
        codedeploy_deployment_group=_required(env, "CODEDEPLOY_DEPLOYMENT_GROUP"),
        probe_count=_integer(env, "PROBE_COUNT", 5, minimum=1, maximum=50),
        probe_connect_timeout=_number(env, "PROBE_CONNECT_TIMEOUT", 2.0, minimum=0.05, maximum=30),
        probe_read_timeout=_number(env, "PROBE_READ_TIMEOUT", 3.0, minimum=0.05, maximum=60),
        max_error_rate=_number(env, "MAX_ERROR_RATE", 20.0, minimum=0, maximum=100),
        max_latency_p95_ms=_number(env, "MAX_LATENCY_P95_MS", 1000.0, minimum=1),
        validation_rounds=_integer(env, "VALIDATION_ROUNDS", 3, minimum=1, maximum=100),
        validation_interval_seconds=_number(env, "VALIDATION_INTERVAL_SECONDS", 10.0, minimum=0, maximum=300),
    )
    if config.probe_connect_timeout + config.probe_read_timeout >= config.health_check_interval:
        raise ConfigError(
            "PROBE_CONNECT_TIMEOUT + PROBE_READ_TIMEOUT must stay below HEALTH_CHECK_INTERVAL "
            f"({config.health_check_interval} s) so that a scheduled run ends before the next one starts"
        )
    return config


def log(decision: str, level: int = logging.INFO, **fields: Any) -> None:
    """One JSON line per decision."""
    LOGGER.log(level, json.dumps({"function": "health_check", "decision": decision, **fields}, default=str))


CONFIG = load_config(os.environ)
CLOUDWATCH = boto3.client("cloudwatch", config=AWS_CONFIG)
CODEDEPLOY = boto3.client("codedeploy", config=AWS_CONFIG)


# --------------------------------------------------------------------------------------------- probing
@dataclass(frozen=True)
class Probe:
    ok: bool
    latency_ms: float
    reason: str  # "ok" or why it failed


@dataclass(frozen=True)
class Round:
    listener: str
    url: str
    probes: tuple[Probe, ...]
    error_rate: float
    latency_p95_ms: float
    failed: bool

    def summary(self) -> dict[str, Any]:
        reasons = Counter(p.reason for p in self.probes if not p.ok)
        return {
            "listener": self.listener,
            "url": self.url,
            "probes": len(self.probes),
            "error_rate": round(self.error_rate, 1),
            "latency_p95_ms": round(self.latency_p95_ms, 1),
            "failed": self.failed,
            "failures": dict(reasons),
        }


def probe(url: str, config: Config) -> Probe:  # noqa: PLR0911 - one return per failure reason
    """One GET: passes on 200 + {"status": "healthy"} within the latency limit; never raises."""
    start = time.monotonic()
    try:
        response = requests.get(
            url,
            timeout=(config.probe_connect_timeout, config.probe_read_timeout),
            allow_redirects=False,
            headers={"User-Agent": "phoenix-health-check"},
        )
        body = response.content
    except requests.exceptions.ConnectTimeout:
        return Probe(False, _elapsed_ms(start), "connect timeout")
    except requests.exceptions.ReadTimeout:
        return Probe(False, _elapsed_ms(start), "read timeout")
    except requests.exceptions.ConnectionError as exc:
        return Probe(False, _elapsed_ms(start), _connection_reason(exc))
    except requests.exceptions.RequestException as exc:
        return Probe(False, _elapsed_ms(start), f"request error: {type(exc).__name__}")
    latency = _elapsed_ms(start)
    if response.status_code != 200:
        return Probe(False, latency, f"HTTP {response.status_code}")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Probe(False, latency, "body is not JSON")
    if not isinstance(document, dict) or document.get("status") != "healthy":
        return Probe(False, latency, "body does not say healthy")
    if latency > config.max_latency_p95_ms:
        return Probe(False, latency, "too slow")
    return Probe(True, latency, "ok")


def _elapsed_ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0


def _connection_reason(exc: requests.exceptions.ConnectionError) -> str:
    text = str(exc)
    if "Name or service not known" in text or "NameResolutionError" in text or "getaddrinfo" in text:
        return "DNS failure"
    if "refused" in text.lower():
        return "connection refused"
    if "BadStatusLine" in text or "LineTooLong" in text:
        return "garbage response"
    if "reset" in text.lower() or "RemoteDisconnected" in text or "aborted" in text.lower():
        return "connection reset"
    return "connection error"


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def probe_round(listeners: Mapping[str, str], config: Config) -> dict[str, Round]:
    """PROBE_COUNT concurrent probes per listener; a hanging target costs at most the probe timeout."""
    urls = {name: base + config.health_path for name, base in listeners.items()}
    budget = config.probe_connect_timeout + config.probe_read_timeout + 1.0
    executor = ThreadPoolExecutor(max_workers=max(1, config.probe_count * len(urls)))
    try:
        futures = {
            name: [executor.submit(probe, url, config) for _ in range(config.probe_count)]
            for name, url in urls.items()
        }
        wait_futures([f for fs in futures.values() for f in fs], timeout=budget)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    rounds: dict[str, Round] = {}
    for name, fs in futures.items():
        probes = tuple(
            f.result() if f.done() else Probe(False, budget * 1000.0, "probe overran its timeout") for f in fs
        )
        error_rate = 100.0 * sum(not p.ok for p in probes) / len(probes)
        latency = p95([p.latency_ms for p in probes])
        failed = error_rate > config.max_error_rate or latency > config.max_latency_p95_ms
        rounds[name] = Round(name, urls[name], probes, error_rate, latency, failed)
    return rounds


# --------------------------------------------------------------------------------------------- metrics
def metric_data(rounds: Mapping[str, Round], config: Config) -> list[dict[str, Any]]:
    """The PutMetricData entries for one run (production verdict also without the Listener dimension)."""
    base = [
        {"Name": "Service", "Value": config.service_name},
        {"Name": "Environment", "Value": config.environment},
    ]
    data: list[dict[str, Any]] = []
    for name, result in rounds.items():
        dimension_sets = [[*base, {"Name": "Listener", "Value": name}]]
        if name == "production":
            dimension_sets.append(base)
        for dimensions in dimension_sets:
            data += [
                {"MetricName": "HealthCheckFailed", "Dimensions": dimensions, "Value": float(result.failed),
                 "Unit": "None"},
                {"MetricName": "ErrorRate", "Dimensions": dimensions, "Value": result.error_rate,
                 "Unit": "Percent"},
                {"MetricName": "LatencyP95", "Dimensions": dimensions, "Value": result.latency_p95_ms,
                 "Unit": "Milliseconds"},
            ]  # fmt: skip
    return data


def publish(rounds: Mapping[str, Round], config: Config) -> None:
    CLOUDWATCH.put_metric_data(Namespace=config.metric_namespace, MetricData=metric_data(rounds, config))


# --------------------------------------------------------------------------------------------- scheduled run
def deployment_in_flight(config: Config) -> str | None:
    """The deployment group's in-flight deployment id (it holds the test listener), if any."""
    response = CODEDEPLOY.list_deployments(
        applicationName=config.codedeploy_application,
        deploymentGroupName=config.codedeploy_deployment_group,
        includeOnlyStatuses=IN_FLIGHT_STATUSES,
    )
    deployments: list[str] = response.get("deployments", [])
    return deployments[0] if deployments else None


def in_bake(deployment: Mapping[str, Any]) -> bool:
    """Traffic has fully shifted and the original waits TerminationWaitTimeInMinutes: not counted as stuck.
    (botocore: instanceTerminationWaitTimeStarted is true "as soon as the termination wait period starts".)"""
    return bool(deployment.get("instanceTerminationWaitTimeStarted")) or deployment.get("status") == "Baking"


def overdue_datum(in_flight: str | None, config: Config) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The DeploymentOverdue datum (none when the deployment cannot be read) and what to log about it."""
    overdue, age = False, 0.0
    if in_flight is not None:
        try:
            info = CODEDEPLOY.get_deployment(deploymentId=in_flight)["deploymentInfo"]
            created = info["createTime"]
            age = time.time() - (created.timestamp() if isinstance(created, datetime) else float(created))
        except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
            log("deployment age unknown; DeploymentOverdue not published", logging.WARNING, error=str(exc))
            return [], {"deployment_age_s": None}
        overdue = age >= config.deployment_timeout and not in_bake(info)
    dimensions = [
        {"Name": "Service", "Value": config.service_name},
        {"Name": "Environment", "Value": config.environment},
    ]
    datum = {
        "MetricName": "DeploymentOverdue",
        "Dimensions": dimensions,
        "Value": float(overdue),
        "Unit": "None",
    }
    return [datum], {"deployment_age_s": round(age, 1), "deployment_overdue": overdue}


def run_scheduled(config: Config) -> dict[str, Any]:
    """Probe production (and test during a deployment), publish the metrics, report the verdict."""
    listeners = {"production": config.production_url}
    lookup_failed = False
    try:
        in_flight = deployment_in_flight(config)
    except (ClientError, BotoCoreError) as exc:
        in_flight, lookup_failed = None, True
        log("deployment lookup failed; probing production only", logging.WARNING, error=str(exc))
    if in_flight is not None:
        listeners["test"] = config.test_url
    rounds = probe_round(listeners, config)
    extra, age_fields = ([], {}) if lookup_failed else overdue_datum(in_flight, config)
    try:
        CLOUDWATCH.put_metric_data(
            Namespace=config.metric_namespace, MetricData=metric_data(rounds, config) + extra
        )
    except (ClientError, BotoCoreError) as exc:
        log(
            "metrics not published",
            logging.ERROR,
            error=str(exc),
            rounds=[r.summary() for r in rounds.values()],
        )
        raise
    verdict = "unhealthy" if rounds["production"].failed else "healthy"
    log(
        "scheduled health check",
        verdict=verdict,
        deployment_in_flight=in_flight,
        rounds=[r.summary() for r in rounds.values()],
        **age_fields,
    )
    return {"trigger": "schedule", "verdict": verdict, "deploymentId": in_flight}


# --------------------------------------------------------------------------------------------- hook
def validate_replacement(config: Config, deadline: float) -> tuple[str, str, list[Round]]:
    """Probe rounds against the test listener until a verdict, before `deadline`: (status, reason, rounds)."""
    round_cost = config.probe_connect_timeout + config.probe_read_timeout + 1.0
    threshold = min(config.alarm_threshold, config.validation_rounds)
    rounds: list[Round] = []
    for index in range(config.validation_rounds):
        if time.monotonic() + round_cost > deadline:
            break
        result = probe_round({"test": config.test_url}, config)["test"]
        rounds.append(result)
        failures = sum(r.failed for r in rounds)
        if failures >= threshold:
            return "Failed", f"{failures} of {len(rounds)} validation rounds failed", rounds
        if index + 1 < config.validation_rounds:
            pause = min(
                config.validation_interval_seconds, max(0.0, deadline - round_cost - time.monotonic())
            )
            time.sleep(pause)
    if not rounds:
        return "Failed", "no time left to validate the replacement", rounds
    if rounds[-1].failed:
        return "Failed", "the last validation round failed", rounds
    failures = sum(r.failed for r in rounds)
    return "Succeeded", f"{len(rounds) - failures} of {len(rounds)} validation rounds passed", rounds


def run_hook(config: Config, deployment_id: str, execution_id: str, context: LambdaContext) -> dict[str, Any]:
    """Validate the replacement and always answer CodeDeploy before the function's deadline."""
    remaining_s = max(0, context.get_remaining_time_in_millis() - ANSWER_RESERVE_MS) / 1000.0
    deadline = time.monotonic() + min(remaining_s, float(config.deployment_timeout))
    rounds: list[Round] = []
    try:
        status, reason, rounds = validate_replacement(config, deadline)
    except Exception as exc:  # whatever went wrong, CodeDeploy must get an answer
        status, reason = "Failed", f"health check error: {type(exc).__name__}: {exc}"
    log(
        "lifecycle hook verdict",
        level=logging.INFO if status == "Succeeded" else logging.WARNING,
        deploymentId=deployment_id,
        status=status,
        reason=reason,
        rounds=[r.summary() for r in rounds],
    )
    try:
        CODEDEPLOY.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=status
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        log("hook answer rejected", logging.ERROR, deploymentId=deployment_id, status=status, error=str(exc))
        if code not in PERMANENT_HOOK_ERRORS:
            raise
        return {"trigger": "hook", "deploymentId": deployment_id, "status": status, "answered": False}
    except BotoCoreError as exc:
        log("hook answer failed", logging.ERROR, deploymentId=deployment_id, status=status, error=str(exc))
        raise
    if rounds:
        try:
            publish({"test": rounds[-1]}, config)
        except (ClientError, BotoCoreError) as exc:
            log("test listener metrics not published", logging.WARNING, error=str(exc))
    return {
        "trigger": "hook",
        "deploymentId": deployment_id,
        "status": status,
        "answered": True,
        "reason": reason,
    }


# --------------------------------------------------------------------------------------------- entry point
def classify(event: Any) -> tuple[str, str]:
    """("hook" | "schedule" | "rejected", detail) for an incoming event, without touching AWS."""
    if not isinstance(event, dict):
        return "rejected", f"event is a {type(event).__name__}, not a JSON object"
    if "DeploymentId" in event or "LifecycleEventHookExecutionId" in event:
        deployment_id = event.get("DeploymentId")
        execution_id = event.get("LifecycleEventHookExecutionId")
        if not isinstance(deployment_id, str) or not DEPLOYMENT_ID.match(deployment_id):
            return "rejected", "lifecycle hook event without a valid DeploymentId (d-XXXXXXXXX)"
        if not isinstance(execution_id, str) or not execution_id.strip():
            return "rejected", "lifecycle hook event without a LifecycleEventHookExecutionId"
        return "hook", deployment_id
    if event.get("detail-type") == "Scheduled Event" and event.get("source") == "aws.events":
        return "schedule", str(event.get("id", ""))
    return "rejected", "neither a CodeDeploy lifecycle hook nor an EventBridge Scheduled Event"


def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Parse the trigger, delegate, report."""
    kind, detail = classify(event)
    if kind == "hook":
        return run_hook(CONFIG, detail, str(event["LifecycleEventHookExecutionId"]), context)
    if kind == "schedule":
        return run_scheduled(CONFIG)
    keys = sorted(str(k) for k in event)[:20] if isinstance(event, dict) else []
    log("event rejected", logging.ERROR, reason=detail, keys=keys)
    return {"trigger": "rejected", "reason": detail}
