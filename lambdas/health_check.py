"""Health check Lambda: probes the service's listeners, publishes metrics, gates CodeDeploy's test traffic.

Two triggers, one function:

- EventBridge schedule ("Scheduled Event", every HEALTH_CHECK_INTERVAL seconds): probes PRODUCTION_URL, and
  TEST_URL while a deployment of the deployment group is in flight, then publishes in one PutMetricData call,
  namespace METRIC_NAMESPACE: HealthCheckFailed (0/1), ErrorRate (percent of failed probes) and LatencyP95
  (milliseconds) with dimensions {Service, Environment, Listener=production|test}, and the production verdict
  also with {Service, Environment}: what the health-check alarm reads. With {Service, Environment} it also
  publishes DeploymentOverdue: 1 while the deployment in flight is older than DEPLOYMENT_TIMEOUT (its
  createTime, from GetDeployment) and not yet in its bake, or while its Install lifecycle event has been in
  progress for INSTALL_TIMEOUT (a replacement that never becomes steady; ListDeploymentTargets and
  BatchGetDeploymentTargets, read only once the deployment is INSTALL_TIMEOUT old), else 0. Nothing on AWS
  stops a deployment stuck in install or in the shift before CodeDeploy's own hour; the deployment-overdue
  alarm on this metric has the auto-rollback Lambda stop it. During a canary (the original and the
  replacement task sets both with production traffic, BatchGetDeploymentTargets) and with
  LOAD_BALANCER_DIMENSION set, it also publishes CanaryJudgement: 1 when canary_judge.judge finds the
  replacement's target group failing more often than the original's beyond doubt (their RequestCount and
  HTTPCode_Target_5XX_Count sums since AllowTraffic began, GetMetricData; the CANARY_* policy, one look a
  run), else 0; nothing when the counts cannot be read. The canary-judge alarm reads it: a small canary is
  judged against its baseline, not by a fixed error-rate threshold that one failed request crosses.
- CodeDeploy lifecycle hook (AfterAllowTestTraffic: {"DeploymentId", "LifecycleEventHookExecutionId"}): probes
  the replacement through TEST_URL in rounds until `verdict(rounds, config, remaining)` (pure: VERDICT_RULES)
  says Succeeded or Failed: Failed once ALARM_THRESHOLD rounds failed, when the last round failed, when no
  round fitted in the time, or on its own errors; otherwise Succeeded after VALIDATION_ROUNDS rounds,
  VALIDATION_INTERVAL_SECONDS apart (one round for the auto-rollback function's redeployment of the last
  known-good revision: `for_deployment`). It runs right after AllowTestTraffic put the replacement's target
  group behind the test listener, whose targets are `initial` until they pass the ALB's health checks;
  meanwhile the ALB itself answers 503 (`Server: awselb/...`). Rounds in which every probe got that 503,
  before any round reached a target and within TARGET_READY_SECONDS of the first round, mean "not routable
  yet": neither failed nor counted, probed again after the interval; after that window they fail. It ALWAYS
  answers PutLifecycleEventHookExecutionStatus, and before the function's own deadline: it stops probing
  ANSWER_RESERVE_MS early, the longest the answer can take with every retry of its client
  (phoenix_common.worst_case_call_seconds), and within DEPLOYMENT_TIMEOUT.

With TEST_TRAFFIC (pipeline-config/test-traffic.json, through the stack's TestTraffic parameter), each hook
round whose /health probes passed also sends `requests_per_round` real requests (its list in turn; GET, HEAD
or OPTIONS only: the original gets them too) to the replacement through TEST_URL and as many to the original
through PRODUCTION_URL, at once; a request passes on one of its `expect` statuses. The counts so far go to
canary_judge.judge (the original as baseline, one look per validation round, the CANARY_* policy): its Fail
fails the hook before any user request reaches the replacement, whatever the rounds' other verdicts.

A probe is one GET of HEALTH_PATH with connect and read timeouts; it passes on HTTP 200 with a JSON body
{"status": "healthy"} within MAX_LATENCY_P95_MS. Timeouts, refused connections, resets, DNS failures,
garbage bodies and 503s of the load balancer itself (on the schedule too: production without a healthy target
is an outage) fail with their reason. A round runs PROBE_COUNT probes per listener concurrently and fails
when the error rate exceeds MAX_ERROR_RATE percent or the p95 latency exceeds MAX_LATENCY_P95_MS.

Anything else as event is logged as rejected and answered without calling AWS. Configuration and clients are
built on first use; a bad variable is logged with its name and answered, never raised: a hook is answered
Failed. Every decision is one JSON log line.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import canary_judge
import phoenix_common as common
import requests
from botocore.exceptions import BotoCoreError, ClientError
from canary_judge import Counts
from phoenix_common import (
    IN_FLIGHT,
    MARKER,
    ConfigError,
    DecisionLog,
    HookStatus,
    LambdaContext,
    Service,
    client_config,
    env_integer,
    env_number,
    env_url,
    epoch,
    in_bake,
    invocation,
    load_service,
    read_install_started,
    read_targets,
    worst_case_call_seconds,
)

log = DecisionLog("health_check")
LOGGER = log.logger

DEPLOYMENT_ID = re.compile(r"^d-[A-Z0-9]{9}$")
# Four attempts (botocore's max_attempts=3 counts retries), 2 s to connect, 5 s for each answer.
AWS_CONFIG = client_config(attempts=4, connect_timeout=2, read_timeout=5)
# Time kept back from the Lambda deadline to answer CodeDeploy: one PutLifecycleEventHookExecutionStatus with
# every retry at the client's timeouts, and a second for the log line around it.
ANSWER_RESERVE_MS = math.ceil(1000 * worst_case_call_seconds(AWS_CONFIG)) + 1000
# Production checks more often than EventBridge's one-minute rate: PRODUCTION_CHECKS a run,
# PRODUCTION_CHECK_SECONDS apart (the template: 6, 3 or 2 checks 10, 20 or 30 s apart, the periods a
# high-resolution alarm takes).
MAX_CHECKS: Final = 6
# Validation rounds of the auto-rollback function's redeployment of the last known-good revision.
RESURRECTION_ROUNDS: Final = 1
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
# What an Application Load Balancer sends as `Server` on the responses it generates itself (its 503 when no
# target may receive the request included); a target's responses keep the target's own headers.
LOAD_BALANCER_SERVER = "awselb/"
# TARGET_READY_SECONDS' bounds: CodeDeploy waits at most an hour for a lifecycle hook's answer.
TARGET_READY_MAX_SECONDS = 3600
# Test traffic goes to the original through the production listener too (the baseline): only methods that
# change nothing (RFC 9110's safe methods) may be sent.
SAFE_METHODS: Final = ("GET", "HEAD", "OPTIONS")
MAX_TRAFFIC_PER_ROUND: Final = 100
MAX_TRAFFIC_REQUESTS: Final = 20
Listener = Literal["production", "test"]
Trigger = Literal["hook", "schedule", "rejected"]


# --------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    service: Service
    production_url: str
    test_url: str
    health_path: str
    metric_namespace: str
    probe_count: int
    probe_connect_timeout: float
    probe_read_timeout: float
    max_error_rate: float
    max_latency_p95_ms: float
    validation_rounds: int
    validation_interval_seconds: float
    target_ready_seconds: float
    test_traffic: GateTraffic | None = None
    checks_per_run: int = 1
    check_every_s: float = 60.0
    canary: CanaryWatch | None = None

    @property
    def round_budget_s(self) -> float:
        """The longest one round takes: the probe timeouts and a second for the threads; the timeouts again
        with test traffic (its requests, all at once, after the probes)."""
        timeouts = self.probe_connect_timeout + self.probe_read_timeout
        return timeouts * (2 if self.test_traffic else 1) + 1.0


@dataclass(frozen=True)
class TrafficRequest:
    """One request of the test traffic: passes when the answer's status is one of `expect`."""

    method: str
    path: str
    expect: frozenset[int]


@dataclass(frozen=True)
class GateTraffic:
    """TEST_TRAFFIC: requests sent each hook round to the replacement (test listener) and, as many, to the
    original (production listener); `policy` judges the two (canary_judge, one look per validation round)."""

    requests: tuple[TrafficRequest, ...]
    per_round: int
    policy: canary_judge.Policy


def load_test_traffic(env: Mapping[str, str], looks: int) -> GateTraffic | None:
    """TEST_TRAFFIC (JSON: {"requests": [{"method", "path", "expect": [statuses]}], "requests_per_round"});
    unset or empty: the hook probes HEALTH_PATH only. Raises ConfigError saying what is wrong."""
    raw = env.get("TEST_TRAFFIC", "").strip()
    if not raw:
        return None
    try:
        document = json.loads(raw)
        requests_ = tuple(_traffic_request(item) for item in document["requests"])
        per_round = document["requests_per_round"]
        policy = replace(canary_judge.policy_from_env(env), looks=looks)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TEST_TRAFFIC is not valid: {exc}") from None
    if not 1 <= len(requests_) <= MAX_TRAFFIC_REQUESTS:
        raise ConfigError(
            f"TEST_TRAFFIC must list 1 to {MAX_TRAFFIC_REQUESTS} requests, got {len(requests_)}"
        )
    if (
        isinstance(per_round, bool)
        or not isinstance(per_round, int)
        or not 1 <= per_round <= MAX_TRAFFIC_PER_ROUND
    ):
        raise ConfigError(
            f"TEST_TRAFFIC requests_per_round must be a whole number from 1 to {MAX_TRAFFIC_PER_ROUND}, "
            f"got {per_round!r}"
        )
    return GateTraffic(requests_, per_round, policy)


def _traffic_request(item: Any) -> TrafficRequest:
    if not isinstance(item, dict) or set(item) - {"method", "path", "expect"}:
        raise ValueError(f"a request is an object with method, path and expect, got {item!r}")
    method, path, expect = item.get("method", "GET"), item.get("path"), item.get("expect", [200])
    if method not in SAFE_METHODS:
        raise ValueError(
            f"method {method!r} is not one of {', '.join(SAFE_METHODS)} (the original gets it too)"
        )
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise ValueError(f"path must start with '/' and have no spaces, got {path!r}")
    statuses = expect if isinstance(expect, list) else []
    if not statuses or not all(
        isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in statuses
    ):
        raise ValueError(f"expect must list HTTP statuses (100-599), got {expect!r}")
    return TrafficRequest(method, path, frozenset(statuses))


@dataclass(frozen=True)
class CanaryWatch:
    """LOAD_BALANCER_DIMENSION and TARGET_GROUP_DIMENSIONS: the CloudWatch dimension values of the ALB and of
    both target groups ("app/<name>/<id>", "targetgroup/<name>/<id>"), whose RequestCount and
    HTTPCode_Target_5XX_Count the canary judge compares during a deployment's canary (the CANARY_* policy)."""

    load_balancer: str
    target_groups: tuple[str, ...]
    policy: canary_judge.Policy

    def dimension_of(self, target_group_name: str) -> str | None:
        """The dimension value of the target group named `target_group_name` (ECSTaskSet.targetGroup)."""
        return next((d for d in self.target_groups if d.split("/")[1] == target_group_name), None)


LOAD_BALANCER_DIMENSION = re.compile(r"^app/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,32}$")
TARGET_GROUP_DIMENSION = re.compile(r"^targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,32}$")


def load_canary_watch(env: Mapping[str, str]) -> CanaryWatch | None:
    """None (no canary judgement in production) when LOAD_BALANCER_DIMENSION is unset or empty; else both
    variables must hold dimension values in the forms CloudWatch's AWS/ApplicationELB metrics use (the
    templates' LoadBalancerFullName and TargetGroupFullName attributes). Raises ConfigError."""
    load_balancer = env.get("LOAD_BALANCER_DIMENSION", "").strip()
    if not load_balancer:
        return None
    if not LOAD_BALANCER_DIMENSION.match(load_balancer):
        raise ConfigError(
            f"LOAD_BALANCER_DIMENSION must be the ALB's full name app/<name>/<id>, got {load_balancer!r}"
        )
    groups = tuple(g.strip() for g in env.get("TARGET_GROUP_DIMENSIONS", "").split(",") if g.strip())
    if len(groups) != 2 or not all(TARGET_GROUP_DIMENSION.match(g) for g in groups):
        raise ConfigError(
            "TARGET_GROUP_DIMENSIONS must be the two target groups' full names targetgroup/<name>/<id>, "
            f"comma-separated, got {env.get('TARGET_GROUP_DIMENSIONS', '')!r}"
        )
    try:
        policy = canary_judge.policy_from_env(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return CanaryWatch(load_balancer, groups, policy)


def load_config(env: Mapping[str, str]) -> Config:
    """Validate the environment; raises ConfigError naming the first bad variable."""
    service = load_service(env)
    health_path = env.get("HEALTH_PATH", "/health").strip() or "/health"
    if not health_path.startswith("/"):
        raise ConfigError(f"HEALTH_PATH must start with '/', got {health_path!r}")
    config = Config(
        service=service,
        production_url=env_url(env, "PRODUCTION_URL"),
        test_url=env_url(env, "TEST_URL"),
        health_path=health_path,
        metric_namespace=env.get("METRIC_NAMESPACE", "").strip() or "Phoenix/Deployments",
        probe_count=env_integer(env, "PROBE_COUNT", 5, minimum=1, maximum=50),
        probe_connect_timeout=env_number(env, "PROBE_CONNECT_TIMEOUT", 2.0, minimum=0.05, maximum=30),
        probe_read_timeout=env_number(env, "PROBE_READ_TIMEOUT", 3.0, minimum=0.05, maximum=60),
        max_error_rate=env_number(env, "MAX_ERROR_RATE", 20.0, minimum=0, maximum=100),
        max_latency_p95_ms=env_number(env, "MAX_LATENCY_P95_MS", 1000.0, minimum=1),
        validation_rounds=(rounds := env_integer(env, "VALIDATION_ROUNDS", 3, minimum=1, maximum=100)),
        validation_interval_seconds=env_number(
            env, "VALIDATION_INTERVAL_SECONDS", 10.0, minimum=0, maximum=300
        ),
        target_ready_seconds=target_ready_seconds(env),
        test_traffic=load_test_traffic(env, rounds),
        checks_per_run=(checks := env_integer(env, "PRODUCTION_CHECKS", 1, minimum=1, maximum=MAX_CHECKS)),
        check_every_s=env_number(
            env,
            "PRODUCTION_CHECK_SECONDS",
            service.health_check_interval / checks,
            minimum=0.001,
            maximum=3600,
        ),
        canary=load_canary_watch(env),
    )
    if config.probe_connect_timeout + config.probe_read_timeout >= config.service.health_check_interval:
        raise ConfigError(
            "PROBE_CONNECT_TIMEOUT + PROBE_READ_TIMEOUT must stay below HEALTH_CHECK_INTERVAL "
            f"({config.service.health_check_interval} s) so that a scheduled run ends before the next starts"
        )
    if config.checks_per_run * config.check_every_s > config.service.health_check_interval:
        raise ConfigError(
            f"PRODUCTION_CHECKS ({config.checks_per_run}) x PRODUCTION_CHECK_SECONDS "
            f"({config.check_every_s:g}) must fit in HEALTH_CHECK_INTERVAL "
            f"({config.service.health_check_interval} s): one run's checks end before the next run starts"
        )
    return config


def target_ready_seconds(env: Mapping[str, str]) -> float:
    """TARGET_READY_SECONDS (default 90): a number of seconds above 0, at most TARGET_READY_MAX_SECONDS."""
    message = (
        f"TARGET_READY_SECONDS must be a number of seconds above 0 and at most {TARGET_READY_MAX_SECONDS}, "
        f"got {env.get('TARGET_READY_SECONDS', '').strip()!r}"
    )
    try:
        value = env_number(env, "TARGET_READY_SECONDS", 90.0, minimum=0, maximum=TARGET_READY_MAX_SECONDS)
    except ConfigError:
        raise ConfigError(message) from None
    if value <= 0:
        raise ConfigError(message)
    return value


# Built on first use: the configuration (ConfigError names the variable) and the clients.
config = common.settings(load_config)
cloudwatch = common.client("cloudwatch", AWS_CONFIG)
codedeploy = common.client("codedeploy", AWS_CONFIG)


# --------------------------------------------------------------------------------------------- probing
@dataclass(frozen=True)
class Probe:
    ok: bool
    latency_ms: float
    reason: str  # "ok" or why it failed
    # The load balancer itself answered 503 (`Server: awselb/...`): no target may receive requests yet.
    load_balancer_503: bool = False


@dataclass(frozen=True)
class Round:
    listener: Listener
    url: str
    probes: tuple[Probe, ...]
    error_rate: float
    latency_p95_ms: float
    failed: bool
    # Hook only: seconds from the start of the hook's first round to the start of this one.
    at: float = 0.0
    # Hook with TEST_TRAFFIC only: this round's test traffic to the original and to the replacement.
    baseline: Counts | None = None
    canary: Counts | None = None

    @property
    def not_ready(self) -> bool:
        """Every probe got the load balancer's own 503: no target of the group is routable yet."""
        return bool(self.probes) and all(p.load_balancer_503 for p in self.probes)

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
            **({"traffic": {"baseline": self.baseline, "canary": self.canary}} if self.canary else {}),
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
    if response.status_code == 503 and from_load_balancer(response):
        return Probe(False, latency, "HTTP 503 from the load balancer", load_balancer_503=True)
    if response.status_code != 200:
        return Probe(False, latency, f"HTTP {response.status_code}")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Probe(False, latency, "body is not JSON")
    if not isinstance(document, dict) or document.get("status") != "healthy":
        return Probe(False, latency, "body does not say healthy")
    if latency > config.max_latency_p95_ms:
        return Probe(False, latency, "too slow")
    return Probe(True, latency, "ok")


def from_load_balancer(response: requests.Response) -> bool:
    """Whether the response was generated by the load balancer itself, not by a target behind it."""
    return response.headers.get("Server", "").strip().lower().startswith(LOAD_BALANCER_SERVER)


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


def summarise(listener: Listener, url: str, probes: Sequence[Probe], config: Config) -> Round:
    """A round from its probes: failed above MAX_ERROR_RATE percent of failed probes or MAX_LATENCY_P95_MS."""
    error_rate = 100.0 * sum(not p.ok for p in probes) / len(probes) if probes else 100.0
    latency = p95([p.latency_ms for p in probes])
    failed = error_rate > config.max_error_rate or latency > config.max_latency_p95_ms
    return Round(listener, url, tuple(probes), error_rate, latency, failed)


def probe_round(listeners: Mapping[Listener, str], config: Config) -> dict[Listener, Round]:
    """PROBE_COUNT concurrent probes per listener; a hanging target costs at most the probe timeout."""
    urls = {name: base + config.health_path for name, base in listeners.items()}
    budget = config.round_budget_s
    executor = ThreadPoolExecutor(max_workers=max(1, config.probe_count * len(urls)))
    try:
        futures = {
            name: [executor.submit(probe, url, config) for _ in range(config.probe_count)]
            for name, url in urls.items()
        }
        wait_futures([f for fs in futures.values() for f in fs], timeout=budget)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    overran = Probe(False, budget * 1000.0, "probe overran its timeout")
    return {
        name: summarise(name, urls[name], [f.result() if f.done() else overran for f in fs], config)
        for name, fs in futures.items()
    }


def send(url: str, request: TrafficRequest, config: Config) -> bool:
    """One test-traffic request: whether it was answered with an expected status; never raises."""
    try:
        response = requests.request(
            request.method,
            url + request.path,
            timeout=(config.probe_connect_timeout, config.probe_read_timeout),
            allow_redirects=False,
            headers={"User-Agent": "phoenix-health-check"},
        )
    except requests.exceptions.RequestException:
        return False
    return response.status_code in request.expect


def traffic_round(traffic: GateTraffic, config: Config) -> tuple[Counts, Counts]:
    """(baseline, canary): the same `per_round` requests (the list in turn) to the original through the
    production listener and to the replacement through the test listener, all at once, over the same
    seconds; a request still unanswered after the probe timeouts counts as failed."""
    sequence = [traffic.requests[i % len(traffic.requests)] for i in range(traffic.per_round)]
    executor = ThreadPoolExecutor(max_workers=2 * traffic.per_round)
    try:
        futures = {
            url: [executor.submit(send, url, request, config) for request in sequence]
            for url in (config.production_url, config.test_url)
        }
        budget = config.probe_connect_timeout + config.probe_read_timeout
        wait_futures([f for fs in futures.values() for f in fs], timeout=budget)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    baseline, canary = (
        Counts(len(fs), sum(not (f.done() and f.result()) for f in fs)) for fs in futures.values()
    )
    return baseline, canary


# --------------------------------------------------------------------------------------------- metrics
def service_dimensions(config: Config) -> list[dict[str, str]]:
    """{Service, Environment}: the dimensions every alarm's custom metric has."""
    return [
        {"Name": "Service", "Value": config.service.name},
        {"Name": "Environment", "Value": config.service.environment},
    ]


def metric_data(rounds: Mapping[Listener, Round], config: Config) -> list[dict[str, Any]]:
    """The PutMetricData entries for one run (production verdict also without the Listener dimension)."""
    base = service_dimensions(config)
    data: list[dict[str, Any]] = []
    # Several checks a run are stored at one-second resolution: else a 10-30 s alarm period sees one a minute.
    resolution = 1 if config.checks_per_run > 1 else 60
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
    return [{**datum, "StorageResolution": resolution} for datum in data]


def publish(rounds: Mapping[Listener, Round], config: Config) -> None:
    cloudwatch().put_metric_data(Namespace=config.metric_namespace, MetricData=metric_data(rounds, config))


# --------------------------------------------------------------------------------------------- scheduled run
def deployment_in_flight(config: Config) -> str | None:
    """The deployment group's in-flight deployment id (it holds the test listener), if any."""
    response = codedeploy().list_deployments(
        applicationName=config.service.application,
        deploymentGroupName=config.service.deployment_group,
        includeOnlyStatuses=sorted(IN_FLIGHT),
    )
    deployments: list[str] = response.get("deployments", [])
    return deployments[0] if deployments else None


def install_seconds(deployment_id: str) -> float | None:
    """How long the deployment's Install lifecycle event (the replacement task set not yet steady) has been in
    progress; None when it is not, or when its targets cannot be read (logged: the age rule still holds)."""
    started = read_install_started(codedeploy(), deployment_id, log)
    return None if started is None else time.time() - started


def overdue_datum(in_flight: str | None, config: Config) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The DeploymentOverdue datum (none when the deployment cannot be read) and what to log about it: 1 when
    the deployment in flight is DEPLOYMENT_TIMEOUT old and not in its bake, or has been in Install (its
    replacement never steady: tasks failing to start or failing their health checks) for INSTALL_TIMEOUT."""
    overdue, age, service = False, 0.0, config.service
    fields: dict[str, Any] = {}
    if in_flight is not None:
        try:
            info = codedeploy().get_deployment(deploymentId=in_flight)["deploymentInfo"]
            created = epoch(info.get("createTime"))
            if created is None:
                raise ValueError(f"deployment {in_flight} has no createTime")
        except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
            log("deployment age unknown; DeploymentOverdue not published", logging.WARNING, error=str(exc))
            return [], {"deployment_age_s": None}
        age = time.time() - created
        if age >= service.deployment_timeout and not in_bake(info):
            overdue, fields["overdue_because"] = True, "DEPLOYMENT_TIMEOUT"
        elif age >= service.install_timeout and (installing := install_seconds(in_flight)) is not None:
            overdue = installing >= service.install_timeout
            fields["install_s"] = round(installing, 1)
            if overdue:
                fields["overdue_because"] = "INSTALL_TIMEOUT"
    datum = {
        "MetricName": "DeploymentOverdue",
        "Dimensions": service_dimensions(config),
        "Value": float(overdue),
        "Unit": "None",
    }
    return [datum], {"deployment_age_s": round(age, 1), "deployment_overdue": overdue, **fields}


@dataclass(frozen=True)
class CanaryPhase:
    """A deployment's canary in progress: the original's and the replacement's target groups (names) both
    serve production, the replacement since `since` (epoch seconds: AllowTraffic began)."""

    baseline_group: str
    canary_group: str
    since: float


def canary_phase(targets: Mapping[str, Any]) -> CanaryPhase | None:
    """The canary in a BatchGetDeploymentTargets answer: its ECS target's original (taskSetLabel Blue) and
    replacement (Green) task sets both with production traffic (ECSTaskSet.trafficWeight, "the percentage of
    traffic served by this task set"), and its AllowTraffic lifecycle event's startTime. None before the
    shift, once it is whole (the bake), or when the answer lacks any of these. Pure."""
    for target in targets.get("deploymentTargets") or []:
        ecs = (target or {}).get("ecsTarget") or {}
        sets = {
            str(task_set.get("taskSetLabel", "")).lower(): task_set
            for task_set in ecs.get("taskSetsInfo") or []
            if isinstance(task_set, dict)
        }
        blue, green = sets.get("blue") or {}, sets.get("green") or {}
        weights = [blue.get("trafficWeight"), green.get("trafficWeight")]
        if not all(isinstance(w, int | float) and not isinstance(w, bool) and w > 0 for w in weights):
            continue
        names = [str((s.get("targetGroup") or {}).get("name") or "") for s in (blue, green)]
        allow: Mapping[str, Any] = next(
            (e for e in ecs.get("lifecycleEvents") or [] if e.get("lifecycleEventName") == "AllowTraffic"),
            {},
        )
        since = epoch(allow.get("startTime"))
        if all(names) and since is not None:
            return CanaryPhase(names[0], names[1], since)
    return None


ALB_COUNTS: Final = (("requests", "RequestCount"), ("errors", "HTTPCode_Target_5XX_Count"))


def canary_counts(watch: CanaryWatch, phase: CanaryPhase, now: float) -> tuple[Counts, Counts] | str:
    """(baseline, canary): each target group's RequestCount and HTTPCode_Target_5XX_Count sums (the ALB's
    one-minute metrics) over the full minutes since the canary began, in one GetMetricData call (and its
    NextToken pages); or why they cannot be read."""
    dimensions = {role: watch.dimension_of(name) for role, name in _roles(phase)}
    unknown = [name for role, name in _roles(phase) if dimensions[role] is None]
    if unknown:
        return f"target group {', '.join(unknown)} is not in TARGET_GROUP_DIMENSIONS"
    queries = [
        {
            "Id": f"{role}_{counted}",
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/ApplicationELB",
                    "MetricName": metric,
                    "Dimensions": [
                        {"Name": "LoadBalancer", "Value": watch.load_balancer},
                        {"Name": "TargetGroup", "Value": dimensions[role]},
                    ],
                },
                "Period": 60,
                "Stat": "Sum",
            },
        }
        for role, _ in _roles(phase)
        for counted, metric in ALB_COUNTS
    ]
    # CloudWatch rounds StartTime down to the minute (GetMetricData: "Start time less than 15 days ago - Round
    # down to the nearest whole minute"), so the answer begins with the minute the shift began in, which
    # also holds the minutes' requests before it: the hook's test traffic on the replacement's group, all
    # production on the original's. Only periods stamped at or after the shift are counted: full minutes.
    start = math.floor(phase.since)
    sums: Counter[str] = Counter()
    pages: dict[str, Any] = {}
    while True:
        response = cloudwatch().get_metric_data(
            MetricDataQueries=queries, StartTime=start, EndTime=math.ceil(now) + 60, **pages
        )
        for result in response.get("MetricDataResults") or []:
            stamps = [epoch(t) for t in result.get("Timestamps") or []]
            sums[result["Id"]] += sum(
                v
                for t, v in zip(stamps, result.get("Values") or [], strict=False)
                if t is not None and t >= start
            )
        if not response.get("NextToken"):
            break
        pages = {"NextToken": response["NextToken"]}
    baseline, canary = (
        Counts(round(sums[f"{role}_requests"]), round(sums[f"{role}_errors"])) for role, _ in _roles(phase)
    )
    return baseline, canary


def _roles(phase: CanaryPhase) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("baseline", phase.baseline_group), ("canary", phase.canary_group)


def canary_datum(in_flight: str | None, config: Config) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """During a canary (LOAD_BALANCER_DIMENSION set): the canary judge on both target groups' counts so far,
    published as CanaryJudgement (Service, Environment) = 1 when the replacement fails more often than the
    original beyond doubt, else 0: what the canary-judge alarm reads. No datum outside a canary, nor when the
    counts cannot be read (logged): the alarm treats missing data as not breaching, so a judge that cannot
    see never rolls back."""
    watch = config.canary
    if watch is None or in_flight is None:
        return [], {}
    try:
        phase = canary_phase(read_targets(codedeploy(), in_flight))
        counts = None if phase is None else canary_counts(watch, phase, time.time())
    except (ClientError, BotoCoreError) as exc:
        log("canary not judged", logging.WARNING, deploymentId=in_flight, error=str(exc))
        return [], {"canary": "not judged"}
    if counts is None:  # no canary in progress
        return [], {}
    if isinstance(counts, str):
        log("canary not judged", logging.WARNING, deploymentId=in_flight, error=counts)
        return [], {"canary": "not judged"}
    verdict = canary_judge.judge(*counts, watch.policy)
    failed = isinstance(verdict, canary_judge.Fail)
    datum = {
        "MetricName": "CanaryJudgement",
        "Dimensions": service_dimensions(config),
        "Value": float(failed),
        "Unit": "None",
    }
    return [datum], {"canary": type(verdict).__name__, "canary_reason": verdict.reason}


def run_scheduled(context: LambdaContext) -> dict[str, Any]:
    """Probe production (and test during a deployment), publish the metrics, report the verdict; then the
    run's later production checks, if PRODUCTION_CHECK_SECONDS asks for more than one."""
    started = time.monotonic()
    try:
        settings = config()
    except ConfigError as exc:
        log("configuration error", logging.ERROR, error=str(exc))
        return {"trigger": "schedule", "error": str(exc)}
    listeners: dict[Listener, str] = {"production": settings.production_url}
    lookup_failed = False
    try:
        in_flight = deployment_in_flight(settings)
    except (ClientError, BotoCoreError) as exc:
        in_flight, lookup_failed = None, True
        log("deployment lookup failed; probing production only", logging.WARNING, error=str(exc))
    if in_flight is not None:
        listeners["test"] = settings.test_url
    rounds = probe_round(listeners, settings)
    extra, age_fields = ([], {}) if lookup_failed else overdue_datum(in_flight, settings)
    judged, canary_fields = canary_datum(in_flight, settings)
    extra, age_fields = extra + judged, {**age_fields, **canary_fields}
    try:
        cloudwatch().put_metric_data(
            Namespace=settings.metric_namespace, MetricData=metric_data(rounds, settings) + extra
        )
    except (ClientError, BotoCoreError) as exc:
        log(
            "metrics not published",
            logging.ERROR,
            error=str(exc),
            rounds=[r.summary() for r in rounds.values()],
        )
        raise
    verdict_text = "unhealthy" if rounds["production"].failed else "healthy"
    log(
        "scheduled health check",
        verdict=verdict_text,
        deployment_in_flight=in_flight,
        rounds=[r.summary() for r in rounds.values()],
        **age_fields,
    )
    result: dict[str, Any] = {"trigger": "schedule", "verdict": verdict_text, "deploymentId": in_flight}
    if settings.checks_per_run > 1:
        later = later_checks(settings, started, context)
        result["later"] = ["unhealthy" if r.failed else "healthy" for r in later]
    return result


def later_checks(settings: Config, started: float, context: LambdaContext) -> list[Round]:
    """The run's other production checks, each PRODUCTION_CHECK_SECONDS after the end of the one before (so
    never closer together, however long a check took) and published as it ends; none that would end after the
    next scheduled run starts (`started` + the interval, monotonic) or past the function's deadline less the
    time its metrics call can take. A failed publish is logged and ends the run: a retry of the whole run
    would overlap the next one."""
    done: list[Round] = []
    budget = settings.probe_connect_timeout + settings.probe_read_timeout + 1.0
    reserve = worst_case_call_seconds(AWS_CONFIG)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000.0 - reserve
    end = min(started + settings.service.health_check_interval, deadline)
    for k in range(1, settings.checks_per_run):
        due = time.monotonic() + settings.check_every_s
        if due + budget > end:
            break
        time.sleep(settings.check_every_s)
        rounds = probe_round({"production": settings.production_url}, settings)
        try:
            publish(rounds, settings)
        except (ClientError, BotoCoreError) as exc:
            log(
                "metrics not published",
                logging.ERROR,
                error=str(exc),
                rounds=[rounds["production"].summary()],
            )
            break
        done.append(rounds["production"])
        log(  # a healthy check is routine: below Lambda's default application log level
            "production check",
            logging.WARNING if rounds["production"].failed else logging.DEBUG,
            verdict="unhealthy" if rounds["production"].failed else "healthy",
            check=k + 1,
            rounds=[rounds["production"].summary()],
        )
    return done


# --------------------------------------------------------------------------------------------- hook verdict
@dataclass(frozen=True)
class Succeeded:
    reason: str
    status: HookStatus = "Succeeded"


@dataclass(frozen=True)
class Failed:
    reason: str
    status: HookStatus = "Failed"


@dataclass(frozen=True)
class ProbeAgain:
    """No verdict yet: probe another round after `pause` seconds."""

    pause: float


Answer = Succeeded | Failed
Verdict = Succeeded | Failed | ProbeAgain


@dataclass(frozen=True)
class Tally:
    """What the verdict reads: the rounds so far (each with `at`, seconds since the first), the configuration,
    the seconds left before the deadline."""

    rounds: tuple[Round, ...]
    config: Config
    remaining: float

    @property
    def waited(self) -> int:
        """How many leading rounds found no routable target within TARGET_READY_SECONDS of the first round:
        the targets were still in the ALB's initial health checks. Neither failed nor counted."""
        return next(
            (
                i
                for i, r in enumerate(self.rounds)
                if not (r.not_ready and r.at <= self.config.target_ready_seconds)
            ),
            len(self.rounds),
        )

    @property
    def counted(self) -> tuple[Round, ...]:
        """The validation rounds: all but the waited ones."""
        return self.rounds[self.waited :]

    @property
    def failures(self) -> int:
        """Counted rounds that failed; a not-ready round counted is a failed one whatever MAX_ERROR_RATE."""
        return sum(r.failed or r.not_ready for r in self.counted)

    @functools.cached_property
    def judged(self) -> canary_judge.Verdict | None:
        """The canary judge on the test traffic so far (the replacement against the original), if any."""
        traffic = self.config.test_traffic
        sent = [r for r in self.counted if r.baseline is not None and r.canary is not None]
        if traffic is None or not sent:
            return None
        baseline = Counts(*map(sum, zip(*(r.baseline for r in sent if r.baseline), strict=True)))
        canary = Counts(*map(sum, zip(*(r.canary for r in sent if r.canary), strict=True)))
        return canary_judge.judge(baseline, canary, traffic.policy)

    @property
    def traffic_failed(self) -> bool:
        return isinstance(self.judged, canary_judge.Fail)

    @property
    def routed(self) -> bool:
        """Some round reached a target (not every probe got the load balancer's 503)."""
        return any(not r.not_ready for r in self.rounds)

    @property
    def not_ready_reason(self) -> str:
        return f"no healthy target behind the test listener after {self.rounds[-1].at:.0f} s"

    @property
    def threshold(self) -> int:
        threshold: int = min(self.config.service.alarm_threshold, self.config.validation_rounds)
        return threshold

    @property
    def pause(self) -> float:
        """None before the first round; then VALIDATION_INTERVAL_SECONDS, shortened so a round still fits."""
        if not self.rounds:
            return 0.0
        return min(self.config.validation_interval_seconds, self.remaining - self.config.round_budget_s)


# In this order, the first that holds.
VERDICT_RULES: Final[tuple[tuple[Callable[[Tally], bool], Callable[[Tally], Verdict]], ...]] = (
    (
        lambda t: t.traffic_failed,
        lambda t: Failed(f"test traffic: {t.judged.reason if t.judged else ''}"),
    ),
    (lambda t: t.failures >= t.threshold and not t.routed, lambda t: Failed(t.not_ready_reason)),
    (
        lambda t: t.failures >= t.threshold,
        lambda t: Failed(f"{t.failures} of {len(t.counted)} validation rounds failed"),
    ),
    (
        lambda t: len(t.counted) < t.config.validation_rounds and t.remaining >= t.config.round_budget_s,
        lambda t: ProbeAgain(t.pause),
    ),
    (lambda t: not t.rounds, lambda t: Failed("no time left to validate the replacement")),
    (lambda t: not t.routed, lambda t: Failed(t.not_ready_reason)),
    (
        lambda t: t.counted[-1].failed or t.counted[-1].not_ready,
        lambda t: Failed("the last validation round failed"),
    ),
    (
        lambda t: True,
        lambda t: Succeeded(
            f"{len(t.counted) - t.failures} of {len(t.counted)} validation rounds passed"
            + (f"; test traffic: {t.judged.reason}" if t.judged else "")
        ),
    ),
)


def verdict(rounds: Sequence[Round], config: Config, remaining: float) -> Verdict:
    """The hook's answer from the validation rounds so far and the seconds left, or ProbeAgain. Pure."""
    tally = Tally(tuple(rounds), config, remaining)
    return next(then(tally) for when, then in VERDICT_RULES if when(tally))


# --------------------------------------------------------------------------------------------- hook
def validate_replacement(config: Config, deadline: float) -> tuple[Answer, list[Round]]:
    """Probe rounds against the test listener until a verdict, before `deadline` (monotonic seconds); each
    round carries `at`, the seconds since the first round started."""
    rounds: list[Round] = []
    first: float | None = None
    while True:
        result = verdict(rounds, config, deadline - time.monotonic())
        if not isinstance(result, ProbeAgain):
            return result, rounds
        time.sleep(result.pause)
        started = time.monotonic()
        first = started if first is None else first
        taken = replace(probe_round({"test": config.test_url}, config)["test"], at=started - first)
        if config.test_traffic and not taken.failed and not taken.not_ready:
            baseline, canary = traffic_round(config.test_traffic, config)
            taken = replace(taken, baseline=baseline, canary=canary)
        rounds.append(taken)


def for_deployment(settings: Config, deployment_id: str) -> Config:
    """The validation for this deployment. The auto-rollback function's redeployment of the last known-good
    revision (description starting with MARKER) gets RESURRECTION_ROUNDS round(s): it passed every round when
    it was released, and production serves the release that went bad meanwhile, so each extra round costs
    failed user requests. It must still pass its round. Deployment unreadable: the full validation."""
    try:
        info = codedeploy().get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    except (ClientError, BotoCoreError) as exc:
        log(
            "deployment not read; full validation",
            logging.WARNING,
            deploymentId=deployment_id,
            error=str(exc),
        )
        return settings
    if not str(info.get("description") or "").startswith(MARKER):
        return settings
    rounds = min(RESURRECTION_ROUNDS, settings.validation_rounds)
    log("known-good revision redeployed", deploymentId=deployment_id, validation_rounds=rounds)
    return replace(settings, validation_rounds=rounds)


def run_hook(deployment_id: str, execution_id: str, context: LambdaContext) -> dict[str, Any]:
    """Validate the replacement and always answer CodeDeploy before the function's deadline."""
    rounds: list[Round] = []
    settings: Config | None = None
    answer: Answer
    try:
        settings = config()
    except ConfigError as exc:
        log("configuration error", logging.ERROR, error=str(exc))
        answer = Failed(f"configuration error: {exc}")
    else:
        remaining_s = max(0, context.get_remaining_time_in_millis() - ANSWER_RESERVE_MS) / 1000.0
        deadline = time.monotonic() + min(remaining_s, float(settings.service.deployment_timeout))
        try:
            answer, rounds = validate_replacement(for_deployment(settings, deployment_id), deadline)
        except Exception as exc:  # whatever went wrong, CodeDeploy must get an answer
            answer = Failed(f"health check error: {type(exc).__name__}: {exc}")
    log(
        "lifecycle hook verdict",
        level=logging.INFO if answer.status == "Succeeded" else logging.WARNING,
        deploymentId=deployment_id,
        status=answer.status,
        reason=answer.reason,
        rounds=[{**r.summary(), "at_s": round(r.at, 1), "not_ready": r.not_ready} for r in rounds],
    )
    try:
        codedeploy().put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id, lifecycleEventHookExecutionId=execution_id, status=answer.status
        )
    except (ClientError, BotoCoreError) as exc:
        rejected = isinstance(exc, ClientError)
        log(f"hook answer {'rejected' if rejected else 'failed'}", logging.ERROR, deploymentId=deployment_id,
            status=answer.status, error=str(exc))  # fmt: skip
        if (
            isinstance(exc, ClientError)
            and exc.response.get("Error", {}).get("Code") in PERMANENT_HOOK_ERRORS
        ):
            return {
                "trigger": "hook",
                "deploymentId": deployment_id,
                "status": answer.status,
                "answered": False,
            }
        raise
    if rounds and settings is not None:
        try:
            publish({"test": rounds[-1]}, settings)
        except (ClientError, BotoCoreError) as exc:
            log("test listener metrics not published", logging.WARNING, error=str(exc))
    return {
        "trigger": "hook",
        "deploymentId": deployment_id,
        "status": answer.status,
        "answered": True,
        "reason": answer.reason,
    }


# --------------------------------------------------------------------------------------------- entry point
def classify(event: Any) -> tuple[Trigger, str]:
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
    with invocation(context):
        kind, detail = classify(event)
        if kind == "hook":
            return run_hook(detail, str(event["LifecycleEventHookExecutionId"]), context)
        if kind == "schedule":
            return run_scheduled(context)
        keys = sorted(str(k) for k in event)[:20] if isinstance(event, dict) else []
        log("event rejected", logging.ERROR, reason=detail, keys=keys)
        return {"trigger": "rejected", "reason": detail}
