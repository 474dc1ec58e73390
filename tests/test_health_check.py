"""health_check: probes real loopback servers, publishes metrics to moto, answers CodeDeploy's stand-in."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any
from unittest.mock import Mock

import boto3
import pytest
from botocore.exceptions import ClientError

from local.aws.codedeploy import CodeDeployService
from local.aws.lambda_bootstrap import JsonFormatter

APP = "phoenix-dev"
GROUP = "phoenix-dev-sample-app"


def base_env(production_url: str, test_url: str, **extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "dev",
        "SERVICE_NAME": "sample-app",
        "PRODUCTION_URL": production_url,
        "TEST_URL": test_url,
        "CODEDEPLOY_APPLICATION": APP,
        "CODEDEPLOY_DEPLOYMENT_GROUP": GROUP,
        "PROBE_COUNT": "4",
        "PROBE_CONNECT_TIMEOUT": "0.5",
        "PROBE_READ_TIMEOUT": "0.5",
        "MAX_LATENCY_P95_MS": "400",
        "VALIDATION_ROUNDS": "2",
        "VALIDATION_INTERVAL_SECONDS": "0",
        **extra,
    }


@pytest.fixture
def group(
    moto: None, codedeploy: CodeDeployService, create_deployment_group: Callable[..., Any]
) -> CodeDeployService:
    # One ECS target per deployment (<cluster>:<service>), as the template's group has.
    create_deployment_group(
        ["DEPLOYMENT_FAILURE"], ecsServices=[{"clusterName": "phoenix-dev", "serviceName": "sample-app"}]
    )
    codedeploy.seed_deployment(APP, GROUP, "version: 0.0 # v1", create_time=1.0)
    return codedeploy


@pytest.fixture
def healthy_url(sample_app: Callable[..., str]) -> str:
    return sample_app()


@pytest.fixture
def unhealthy_url(sample_app: Callable[..., str]) -> str:
    return sample_app(FAULT_HEALTH_FAIL="true")


def metric_values(name: str, **dimensions: str) -> list[float]:
    cloudwatch = boto3.client("cloudwatch")
    found = cloudwatch.list_metrics(
        Namespace="Phoenix/Deployments",
        MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
    )["Metrics"]
    values = []
    for metric in found:
        if len(metric["Dimensions"]) != len(dimensions):
            continue
        stats = cloudwatch.get_metric_statistics(
            Namespace="Phoenix/Deployments",
            MetricName=name,
            Dimensions=metric["Dimensions"],
            StartTime="2000-01-01T00:00:00Z",
            EndTime="2100-01-01T00:00:00Z",
            Period=60,
            Statistics=["Maximum"],
        )
        values += [p["Maximum"] for p in stats["Datapoints"]]
    return values


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The function's log lines as Lambda's runtime writes them (LogFormat JSON); the decision: `message`."""
    lines = [r for r in caplog.records if r.name == "phoenix.health_check"]
    return [json.loads(JsonFormatter().format(r)) for r in lines]


# --------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ENVIRONMENT", "", "ENVIRONMENT is required"),
        ("ENVIRONMENT", "qa", "ENVIRONMENT must be one of"),
        ("PRODUCTION_URL", "my-alb", "PRODUCTION_URL must be an http(s) URL"),
        ("PROBE_COUNT", "three", "PROBE_COUNT must be a whole number"),
        ("MAX_ERROR_RATE", "150", "MAX_ERROR_RATE must be a number"),
        ("HEALTH_CHECK_INTERVAL", "-5", "HEALTH_CHECK_INTERVAL must be a whole number"),
        ("PROBE_READ_TIMEOUT", "60", "PROBE_CONNECT_TIMEOUT + PROBE_READ_TIMEOUT must stay below"),
        ("LOAD_BALANCER_DIMENSION", "arn:aws:elasticloadbalancing:x", "LOAD_BALANCER_DIMENSION must be"),
        ("LOAD_BALANCER_DIMENSION", "app/phoenix/50dc6c495c0c9188", "TARGET_GROUP_DIMENSIONS must be"),
        *(
            (
                "TARGET_READY_SECONDS",
                bad,
                f"TARGET_READY_SECONDS must be a number of seconds above 0 and at most 3600, got {bad!r}",
            )
            for bad in ("0", "0.0", "-5", "ninety", "nan", "inf", "3601")
        ),
    ],
)
def test_bad_configuration_names_the_variable(
    load_lambda: Callable[[str, dict[str, str]], ModuleType], variable: str, value: str, message: str
) -> None:
    module = load_lambda("health_check", base_env("http://a.example", "http://a.example:8080"))
    with pytest.raises(module.ConfigError, match=re.escape(message)):
        module.load_config({**base_env("http://a.example", "http://a.example:8080"), variable: value})


def test_target_ready_seconds_defaults_to_90_and_takes_any_positive_number_of_seconds(
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
) -> None:
    env = base_env("http://a.example", "http://a.example:8080")
    module = load_lambda("health_check", env)
    assert module.load_config(env).target_ready_seconds == 90.0
    assert module.load_config({**env, "TARGET_READY_SECONDS": " "}).target_ready_seconds == 90.0
    assert module.load_config({**env, "TARGET_READY_SECONDS": "0.5"}).target_ready_seconds == 0.5
    assert module.load_config({**env, "TARGET_READY_SECONDS": "3600"}).target_ready_seconds == 3600.0


def test_a_bad_variable_is_logged_and_answered_not_raised_on_a_schedule(
    load_lambda: Callable[..., ModuleType],
    load_event: Callable[[str], Any],
    lambda_context: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = base_env("http://a.example", "http://a.example:8080")
    env["CODEDEPLOY_APPLICATION"] = ""
    module = load_lambda("health_check", env)  # importing needs no configuration: it is read on first use
    result = module.lambda_handler(load_event("eventbridge-scheduled"), lambda_context)
    assert result == {"trigger": "schedule", "error": "CODEDEPLOY_APPLICATION is required and is not set"}
    [line] = decisions(caplog)
    assert line["message"] == "configuration error"
    assert line["error"] == result["error"]


# --------------------------------------------------------------------------------------------- probes
@pytest.fixture
def checker(load_lambda: Callable[[str, dict[str, str]], ModuleType], aws_credentials: None) -> ModuleType:
    return load_lambda("health_check", base_env("http://a.example", "http://a.example:8080"))


def test_probe_passes_on_healthy_json(checker: ModuleType, healthy_url: str) -> None:
    result = checker.probe(healthy_url + "/health", checker.config())
    assert result.ok
    assert result.reason == "ok"


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("unhealthy_url", "HTTP 500"),
        ("hanging_server", "read timeout"),
        ("resetting_server", "connection reset"),
        ("garbage_server", "garbage response"),
        ("garbage_body_server", "body is not JSON"),
        ("refused_url", "connection refused"),
    ],
)
def test_probe_failures_carry_their_reason(
    checker: ModuleType, request: pytest.FixtureRequest, server: str, reason: str
) -> None:
    url: str = request.getfixturevalue(server)
    result = checker.probe(url + "/health", checker.config())
    assert not result.ok
    assert result.reason == reason


def test_probe_fails_a_slow_but_healthy_answer(checker: ModuleType, sample_app: Callable[..., str]) -> None:
    slow = sample_app(FAULT_LATENCY_MS="600")
    result = checker.probe(slow + "/health", checker.config())
    assert not result.ok
    assert result.reason in {"too slow", "read timeout"}


def test_probe_fails_on_dns_failure(checker: ModuleType) -> None:
    result = checker.probe("http://phoenix-does-not-exist.invalid/health", checker.config())
    assert not result.ok
    assert result.reason in {"DNS failure", "connect timeout"}


class _ListenerServer(ThreadingHTTPServer):
    """A test listener: the first `unready` requests get a 503 (from the load balancer itself when `server` is
    the ALB's), the later ones the replacement's healthy answer."""

    daemon_threads = True

    def __init__(self, unready: int, server: str) -> None:
        super().__init__(("127.0.0.1", 0), _ListenerHandler)
        self.unready, self.server_header, self.served = unready, server, 0
        self.lock = threading.Lock()


class _ListenerHandler(BaseHTTPRequestHandler):
    server: _ListenerServer

    def do_GET(self) -> None:
        with self.server.lock:
            index, self.server.served = self.server.served, self.server.served + 1
        if index < self.server.unready:
            code, server, body = (
                503,
                self.server.server_header,
                b"<html>503 Service Temporarily Unavailable</html>",
            )
        else:
            code, server, body = 200, "phoenix-sample-app", json.dumps({"status": "healthy"}).encode()
        self.send_response_only(code)
        self.send_header("Server", server)
        self.send_header("Content-Type", "application/json" if code == 200 else "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


ALB = "awselb/2.0"  # what an Application Load Balancer sends as Server on the responses it generates


@pytest.fixture
def listener() -> Iterator[Callable[..., str]]:
    """`listener(unready=8, server=ALB)` -> base URL of a 127.0.0.1 server answering 503 with that Server
    header to its first `unready` requests (forever with -1), then 200 {"status": "healthy"}."""
    servers: list[_ListenerServer] = []

    def start(unready: int, server: str = ALB) -> str:
        httpd = _ListenerServer(10**9 if unready < 0 else unready, server)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_port}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("server", "reason", "from_load_balancer"),
    [(ALB, "HTTP 503 from the load balancer", True), ("phoenix-sample-app", "HTTP 503", False)],
    ids=["load-balancer", "target"],
)
def test_probe_tells_the_load_balancers_503_from_the_targets(
    checker: ModuleType, listener: Callable[..., str], server: str, reason: str, from_load_balancer: bool
) -> None:
    result = checker.probe(listener(-1, server) + "/health", checker.config())
    assert not result.ok
    assert (result.reason, result.load_balancer_503) == (reason, from_load_balancer)


def test_round_counts_error_rate_and_fails_above_threshold(checker: ModuleType, hanging_server: str) -> None:
    rounds = checker.probe_round({"production": hanging_server}, checker.config())
    production = rounds["production"]
    assert len(production.probes) == 4
    assert production.error_rate == 100.0
    assert production.failed
    assert production.summary()["failures"] == {"read timeout": 4}


def test_p95_is_nearest_rank(checker: ModuleType) -> None:
    assert checker.p95([]) == 0.0
    assert checker.p95([5.0]) == 5.0
    assert checker.p95([float(v) for v in range(1, 101)]) == 95.0


# --------------------------------------------------------------------------------------------- scheduled runs
@dataclass
class Harness:
    """moto + the CodeDeploy stand-in with the deployment group, the sample app healthy and unhealthy."""

    service: CodeDeployService
    load: Callable[[str, dict[str, str]], ModuleType]
    event: Callable[[str], Any]
    context: Callable[..., Any]
    healthy: str
    unhealthy: str

    def function(self, production_url: str, test_url: str, **extra: str) -> ModuleType:
        return self.load("health_check", base_env(production_url, test_url, **extra))

    def hook(self, description: str | None = None) -> tuple[dict[str, Any], str]:
        """The lifecycle-hook event and its deployment, in flight, its hook execution awaiting an answer."""
        event = self.event("codedeploy-lifecycle-hook")
        deployment_id = self.service.seed_deployment(
            APP,
            GROUP,
            "version: 0.0 # v2",
            status="InProgress",
            deployment_id=event["DeploymentId"],
            description=description,
        )
        self.service.register_hook(
            deployment_id, "AfterAllowTestTraffic", event["LifecycleEventHookExecutionId"]
        )
        return event, deployment_id


@pytest.fixture
def harness(
    group: CodeDeployService,
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
    load_event: Callable[[str], Any],
    make_lambda_context: Callable[..., Any],
    sample_app: Callable[..., str],
) -> Harness:
    return Harness(
        group,
        load_lambda,
        load_event,
        make_lambda_context,
        sample_app(),
        sample_app(FAULT_HEALTH_FAIL="true"),
    )


def test_scheduled_run_publishes_healthy_production_metrics(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    module = harness.function(harness.healthy, harness.unhealthy)
    result = module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert result == {"trigger": "schedule", "verdict": "healthy", "deploymentId": None}
    dims = {"Service": "sample-app", "Environment": "dev"}
    assert metric_values("HealthCheckFailed", **dims) == [0.0]
    assert metric_values("HealthCheckFailed", **dims, Listener="production") == [0.0]
    assert metric_values("ErrorRate", **dims, Listener="production") == [0.0]
    assert len(metric_values("LatencyP95", **dims, Listener="production")) == 1
    assert metric_values("HealthCheckFailed", **dims, Listener="test") == []
    [line] = [d for d in decisions(caplog) if d["message"] == "scheduled health check"]
    assert line["verdict"] == "healthy"
    assert line["rounds"][0]["probes"] == 4


def test_scheduled_run_reports_unhealthy_production_and_probes_test_during_a_deployment(
    harness: Harness,
) -> None:
    in_flight = harness.service.seed_deployment(APP, GROUP, "version: 0.0 # v2", status="InProgress")
    module = harness.function(harness.unhealthy, harness.healthy)
    result = module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert result == {"trigger": "schedule", "verdict": "unhealthy", "deploymentId": in_flight}
    dims = {"Service": "sample-app", "Environment": "dev"}
    assert metric_values("HealthCheckFailed", **dims) == [1.0]
    assert metric_values("ErrorRate", **dims, Listener="production") == [100.0]
    assert metric_values("HealthCheckFailed", **dims, Listener="test") == [0.0]


def test_scheduled_run_reports_production_unhealthy_when_the_load_balancer_answers_503(
    harness: Harness, listener: Callable[..., str]
) -> None:
    """Outside the hook the ALB's own 503 is no reason to wait: production without a healthy target is out."""
    module = harness.function(listener(-1), harness.healthy)
    result = module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert result["verdict"] == "unhealthy"
    dims = {"Service": "sample-app", "Environment": "dev"}
    assert metric_values("HealthCheckFailed", **dims) == [1.0]
    assert metric_values("ErrorRate", **dims, Listener="production") == [100.0]


@pytest.mark.parametrize(
    ("age_s", "bake", "overdue"),
    [(None, False, 0.0), (100, False, 0.0), (1000, False, 1.0), (1000, True, 0.0)],
    ids=["nothing-in-flight", "young", "stuck", "baking"],
)
def test_scheduled_run_reports_a_deployment_in_flight_longer_than_the_deployment_timeout(
    harness: Harness, caplog: pytest.LogCaptureFixture, age_s: float | None, bake: bool, overdue: float
) -> None:
    """DeploymentOverdue (Service, Environment) is what the deployment-overdue alarm reads: DEPLOYMENT_TIMEOUT
    on AWS, where nothing else stops a deployment stuck in install before CodeDeploy's own hour."""
    caplog.set_level(logging.INFO)
    if age_s is not None:
        in_flight = harness.service.seed_deployment(
            APP, GROUP, "version: 0.0 # v2", status="InProgress", create_time=time.time() - age_s
        )
        if bake:
            harness.service.start_termination_wait(in_flight)
    module = harness.function(harness.healthy, harness.healthy, DEPLOYMENT_TIMEOUT="900")
    module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert metric_values("DeploymentOverdue", Service="sample-app", Environment="dev") == [overdue]
    [line] = [d for d in decisions(caplog) if d["message"] == "scheduled health check"]
    assert line["deployment_overdue"] is bool(overdue)


def check_samples(**dimensions: str) -> list[tuple[float, float]]:
    """(sample count, maximum) of HealthCheckFailed over all time: one sample per check."""
    stats = boto3.client("cloudwatch").get_metric_statistics(
        Namespace="Phoenix/Deployments",
        MetricName="HealthCheckFailed",
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime="2000-01-01T00:00:00Z",
        EndTime="2100-01-01T00:00:00Z",
        Period=3600,
        Statistics=["SampleCount", "Maximum"],
    )
    return [(p["SampleCount"], p["Maximum"]) for p in stats["Datapoints"]]


@pytest.mark.parametrize(
    ("production", "later"),
    [("healthy", ["healthy", "healthy"]), ("unhealthy", ["unhealthy", "unhealthy"])],
)
def test_a_run_checks_production_production_checks_times_and_publishes_each_check_at_high_resolution(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, production: str, later: list[str]
) -> None:
    """Sub-minute checks from a one-minute schedule (EventBridge's least rate): what a high-resolution
    health-check alarm (Period 10-30 s) reads needs a datapoint per check, stored at 1 s resolution
    (botocore PutMetricData StorageResolution: "Setting this to 1 specifies this metric as a high-resolution
    metric")."""
    extra = {"PRODUCTION_CHECKS": "3", "PRODUCTION_CHECK_SECONDS": "0.2"}
    module = harness.function(getattr(harness, production), harness.healthy, **extra)
    client = module.cloudwatch()
    resolutions: list[int] = []
    put = client.put_metric_data

    def recording(**kwargs: Any) -> Any:
        resolutions.extend(d.get("StorageResolution", 60) for d in kwargs["MetricData"])
        return put(**kwargs)

    monkeypatch.setattr(client, "put_metric_data", recording)
    started = time.monotonic()
    result = module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert result["later"] == later
    assert time.monotonic() - started >= 0.4  # the checks are PRODUCTION_CHECK_SECONDS apart
    failed = 1.0 if production == "unhealthy" else 0.0
    assert check_samples(Service="sample-app", Environment="dev", Listener="production") == [(3.0, failed)]
    health = [r for r in resolutions if r != 60]
    assert (
        len(health) >= 3 * 6
    )  # three checks x (HealthCheckFailed, ErrorRate, LatencyP95) x 2 dimension sets
    assert set(resolutions) - {1} <= {
        60
    }  # only DeploymentOverdue (once a run) stays at one-minute resolution


def test_later_checks_stop_where_the_metrics_call_could_no_longer_finish_before_the_deadline(
    harness: Harness,
) -> None:
    """A check may take its probe timeouts and a second (2 s here) and starts 2 s after the one before. In
    5.5 s the first later check fits (first check under 1.5 s); the next, 4 s after it, does not."""
    extra = {"PRODUCTION_CHECKS": "3", "PRODUCTION_CHECK_SECONDS": "2"}
    module = harness.function(harness.healthy, harness.healthy, **extra)
    short = harness.context(int(1000 * (module.worst_case_call_seconds(module.AWS_CONFIG) + 5.5)))
    result = module.lambda_handler(harness.event("eventbridge-scheduled"), short)
    assert result["later"] == ["healthy"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"PRODUCTION_CHECKS": "3", "PRODUCTION_CHECK_SECONDS": "30"},
            "must fit in HEALTH_CHECK_INTERVAL (60 s)",
        ),
        ({"PRODUCTION_CHECKS": "7"}, "PRODUCTION_CHECKS must be"),
        ({"PRODUCTION_CHECK_SECONDS": "0"}, "PRODUCTION_CHECK_SECONDS must be"),
    ],
)
def test_production_checks_that_overrun_the_interval_are_a_configuration_error(
    checker: ModuleType, extra: dict[str, str], message: str
) -> None:
    with pytest.raises(checker.ConfigError, match=re.escape(message)):
        checker.load_config({**base_env("http://a.example", "http://a.example:8080"), **extra})


# --------------------------------------------------------------------------------------------- lifecycle hook
def test_hook_answers_succeeded_for_a_healthy_replacement(harness: Harness) -> None:
    event, deployment_id = harness.hook()
    module = harness.function(harness.healthy, harness.healthy)
    result = module.lambda_handler(event, harness.context())
    assert result["status"] == "Succeeded"
    assert result["answered"]
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Succeeded"
    assert harness.service.get(deployment_id)["status"] == "InProgress"
    dims = {"Service": "sample-app", "Environment": "dev"}
    assert metric_values("HealthCheckFailed", **dims, Listener="test") == [0.0]


def test_hook_answers_failed_for_an_unhealthy_replacement_and_codedeploy_rolls_back(harness: Harness) -> None:
    event, deployment_id = harness.hook()
    module = harness.function(harness.healthy, harness.unhealthy)
    result = module.lambda_handler(event, harness.context())
    assert result["status"] == "Failed"
    assert result["reason"] == "2 of 2 validation rounds failed"
    deployment = harness.service.get(deployment_id)
    assert deployment["status"] == "Failed"
    assert deployment["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
    rollback = harness.service.get(deployment["rollbackInfo"]["rollbackDeploymentId"])
    assert rollback["creator"] == "codeDeployRollback"


# What the auto-rollback function writes on its redeployments (auto_rollback.record_for).
RESURRECTION = "phoenix-auto-rollback alarm=0123456789abcdef from=aaaaaaaaaaaaaaaa to=bbbbbbbbbbbbbbbb"


@pytest.mark.parametrize(
    ("replacement", "status", "reason"),
    [
        ("healthy", "Succeeded", "1 of 1 validation rounds passed"),
        ("unhealthy", "Failed", "1 of 1 validation rounds failed"),
    ],
)
def test_the_auto_rollback_functions_redeployment_of_the_known_good_revision_is_validated_in_one_round(
    harness: Harness, caplog: pytest.LogCaptureFixture, replacement: str, status: str, reason: str
) -> None:
    """Production serves the release that went bad meanwhile: every extra round is failed user requests."""
    caplog.set_level(logging.INFO)
    event, _ = harness.hook(description=RESURRECTION)
    module = harness.function(harness.unhealthy, getattr(harness, replacement))
    result = module.lambda_handler(event, harness.context())
    assert (result["status"], result["reason"]) == (status, reason)
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == status
    [verdict] = [d for d in decisions(caplog) if d["message"] == "lifecycle hook verdict"]
    assert len(verdict["rounds"]) == 1


@pytest.mark.parametrize(
    ("description", "readable"),
    [("a release", True), (RESURRECTION, False)],
    ids=["a new release", "a redeployment that cannot be read"],
)
def test_any_other_deployment_gets_every_validation_round(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, description: str, readable: bool
) -> None:
    event, _ = harness.hook(description=description)
    module = harness.function(harness.healthy, harness.healthy)
    if not readable:
        client = module.codedeploy()

        def refused(**_: Any) -> Any:
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            raise ClientError(error, "GetDeployment")

        monkeypatch.setattr(client, "get_deployment", refused)
    assert module.lambda_handler(event, harness.context())["reason"] == "2 of 2 validation rounds passed"


TEST_TRAFFIC = json.dumps(
    {
        "requests": [{"method": "GET", "path": "/", "expect": [200]}, {"path": "/version", "expect": [200]}],
        "requests_per_round": 40,
    }
)


@pytest.mark.parametrize(
    ("replacement_faults", "status"),
    [({"FAULT_ERROR_RATE": "0.5"}, "Failed"), ({"FAULT_ERROR_RATE": "0.2"}, "Failed"), ({}, "Succeeded")],
    ids=["half its requests fail", "a fifth fail", "healthy"],
)
def test_hook_judges_the_replacements_test_traffic_against_the_same_requests_to_the_original(
    harness: Harness,
    sample_app: Callable[..., str],
    replacement_faults: dict[str, str],
    status: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/health passes on both; only the real requests tell a replacement that fails them. The original (behind
    the production listener) gets as many of the same requests over the same seconds: the baseline."""
    event, deployment_id = harness.hook()
    replacement = sample_app(**replacement_faults, FAULT_SEED="7")
    # The template's probe timeouts: 80 requests at once to two development servers on a busy machine (CI
    # runs the linters beside the tests) can take longer than this file's 0.5 s.
    module = harness.function(
        harness.healthy,
        replacement,
        TEST_TRAFFIC=TEST_TRAFFIC,
        VALIDATION_ROUNDS="3",
        ALARM_THRESHOLD="2",
        PROBE_CONNECT_TIMEOUT="2",
        PROBE_READ_TIMEOUT="3",
    )
    result = module.lambda_handler(event, harness.context())
    assert result["status"] == status
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == status
    [verdict] = [d for d in decisions(caplog) if d["message"] == "lifecycle hook verdict"]
    sent = [r["traffic"] for r in verdict["rounds"]]
    assert sent
    assert all(t["baseline"][0] == t["canary"][0] == 40 for t in sent)
    assert sum(t["baseline"][1] for t in sent) == 0  # the original answered every request
    if status == "Failed":
        assert result["reason"].startswith("test traffic: canary ")
        assert "vs baseline 0/" in result["reason"]
        assert harness.service.get(deployment_id)["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"
    else:
        assert len(sent) == 3
        assert "test traffic: canary 0/120 failed" in result["reason"]


def test_hook_waits_for_the_replacement_to_be_routable_then_answers_succeeded(
    harness: Harness, listener: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """AllowTestTraffic has just put the replacement's target group behind the test listener: its targets are
    in the ALB's initial health checks and the ALB answers 503 itself for the first two rounds (4 probes
    each). Those rounds are neither failed nor counted: VALIDATION_ROUNDS (2) routable rounds follow."""
    caplog.set_level(logging.INFO)
    event, deployment_id = harness.hook()
    test_url = listener(8)
    module = harness.function(harness.healthy, test_url)
    result = module.lambda_handler(event, harness.context())
    assert (result["status"], result["reason"]) == ("Succeeded", "2 of 2 validation rounds passed")
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Succeeded"
    assert harness.service.get(deployment_id)["status"] == "InProgress"
    [line] = [d for d in decisions(caplog) if d["message"] == "lifecycle hook verdict"]
    assert [r["not_ready"] for r in line["rounds"]] == [True, True, False, False]
    assert line["rounds"][0]["failures"] == {"HTTP 503 from the load balancer": 4}


def test_hook_still_fails_a_replacement_that_answers_503_itself(
    harness: Harness, listener: Callable[..., str]
) -> None:
    """The same 503s from the target (no `Server: awselb/...`): the replacement is broken, as before."""
    event, deployment_id = harness.hook()
    module = harness.function(harness.healthy, listener(8, server="phoenix-sample-app"))
    result = module.lambda_handler(event, harness.context())
    assert (result["status"], result["reason"]) == ("Failed", "2 of 2 validation rounds failed")
    assert harness.service.get(deployment_id)["errorInformation"]["code"] == "HOOK_EXECUTION_FAILURE"


def test_hook_fails_when_no_target_becomes_routable_within_target_ready_seconds(
    harness: Harness, listener: Callable[..., str]
) -> None:
    event, _ = harness.hook()
    module = harness.function(
        harness.healthy, listener(-1), VALIDATION_INTERVAL_SECONDS="0.2", TARGET_READY_SECONDS="0.5"
    )
    started = time.monotonic()
    result = module.lambda_handler(event, harness.context())
    assert result["status"] == "Failed"
    assert re.fullmatch(r"no healthy target behind the test listener after \d+ s", result["reason"])
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Failed"
    assert time.monotonic() - started < 10


def test_hook_waiting_for_a_routable_target_still_answers_before_the_deadline(
    harness: Harness, listener: Callable[..., str]
) -> None:
    """TARGET_READY_SECONDS (90 by default) longer than the time the function has: the deadline wins."""
    event, _ = harness.hook()
    module = harness.function(harness.healthy, listener(-1), VALIDATION_INTERVAL_SECONDS="0.5")
    context = harness.context(timeout_ms=module.ANSWER_RESERVE_MS + 4000)
    result = module.lambda_handler(event, context)
    assert result["status"] == "Failed"
    assert result["reason"].startswith("no healthy target behind the test listener after ")
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Failed"
    assert context.get_remaining_time_in_millis() > 0


def test_hook_against_a_hanging_replacement_still_answers_failed_before_the_deadline(
    harness: Harness, hanging_server: str
) -> None:
    event, _ = harness.hook()
    module = harness.function(harness.healthy, hanging_server, VALIDATION_ROUNDS="5")
    context = harness.context(timeout_ms=module.ANSWER_RESERVE_MS + 7000)
    result = module.lambda_handler(event, context)
    assert result["status"] == "Failed"
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Failed"
    assert context.get_remaining_time_in_millis() > 0


def test_hook_without_time_left_answers_failed_at_once(harness: Harness) -> None:
    event, _ = harness.hook()
    module = harness.function(harness.healthy, harness.healthy)
    result = module.lambda_handler(event, harness.context(timeout_ms=3000))
    assert result["status"] == "Failed"
    assert result["reason"] == "no time left to validate the replacement"
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Failed"


def test_hook_answers_failed_on_its_own_error(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    event, _ = harness.hook()
    module = harness.function(harness.healthy, harness.healthy)

    def broken(*_: Any) -> None:
        raise RuntimeError("probe machinery broke")

    monkeypatch.setattr(module, "probe_round", broken)
    result = module.lambda_handler(event, harness.context())
    assert result["status"] == "Failed"
    assert "probe machinery broke" in result["reason"]
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Failed"


def test_hook_with_a_bad_variable_still_answers_failed(harness: Harness) -> None:
    event, _ = harness.hook()
    module = harness.function(harness.healthy, harness.healthy, PROBE_COUNT="many")
    result = module.lambda_handler(event, harness.context())
    assert result["status"] == "Failed"
    assert result["reason"].startswith("configuration error: PROBE_COUNT must be a whole number")
    assert harness.service.hook_status(event["LifecycleEventHookExecutionId"]) == "Failed"


def test_hook_for_an_unknown_execution_is_logged_not_raised(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    event = harness.event("codedeploy-lifecycle-hook")
    harness.service.seed_deployment(
        APP, GROUP, "v2", status="InProgress", deployment_id=event["DeploymentId"]
    )
    module = harness.function(harness.healthy, harness.healthy)
    result = module.lambda_handler(event, harness.context())
    assert result["answered"] is False
    assert any(d["message"] == "hook answer rejected" for d in decisions(caplog))


def test_clients_use_botocore_standard_retries(checker: ModuleType) -> None:
    assert checker.codedeploy().meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert checker.cloudwatch().meta.config.retries == {"mode": "standard", "total_max_attempts": 4}


# --------------------------------------------------------------------------------------------- canary judge
LB_DIMENSION = "app/phoenix-dev/50dc6c495c0c9188"
TG_DIMENSIONS = {
    "phoenix-dev-blue": "targetgroup/phoenix-dev-blue/6d0ecf831eec9f09",
    "phoenix-dev-green": "targetgroup/phoenix-dev-green/943f017f100becff",
}
CANARY_ENV = {
    "LOAD_BALANCER_DIMENSION": LB_DIMENSION,
    "TARGET_GROUP_DIMENSIONS": ",".join(TG_DIMENSIONS.values()),
}


def task_set(label: str, weight: float, target_group: str) -> dict[str, Any]:
    """An ECSTaskSet as BatchGetDeploymentTargets gives it (botocore shape; taskSetLabel: Blue | Green)."""
    return {
        "identifer": f"ecs-svc/{label.lower()}",
        "desiredCount": 2,
        "pendingCount": 0,
        "runningCount": 2,
        "status": "PRIMARY" if label == "Blue" else "ACTIVE",
        "trafficWeight": weight,
        "targetGroup": {"name": target_group},
        "taskSetLabel": label,
    }


def targets_answer(blue: float | None, green: float | None, allow_started: float | None) -> dict[str, Any]:
    sets = [
        task_set(label, weight, f"phoenix-dev-{label.lower()}")
        for label, weight in (("Blue", blue), ("Green", green))
        if weight is not None
    ]
    events: list[dict[str, Any]] = [{"lifecycleEventName": "Install", "status": "Succeeded"}]
    if allow_started is not None:
        events.append(
            {"lifecycleEventName": "AllowTraffic", "status": "InProgress", "startTime": allow_started}
        )
    return {"deploymentTargets": [{"deploymentTargetType": "ECSTarget", "ecsTarget": {
        "targetId": "phoenix-dev:sample-app", "lifecycleEvents": events, "taskSetsInfo": sets}}]}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "phase"),
    [
        (targets_answer(90.0, 10.0, 1000.0), ("phoenix-dev-blue", "phoenix-dev-green", 1000.0)),
        (targets_answer(90, 10, 1000.0), ("phoenix-dev-blue", "phoenix-dev-green", 1000.0)),
        (targets_answer(100.0, 0.0, None), None),  # replacement installed, no production traffic yet
        (targets_answer(0.0, 100.0, 1000.0), None),  # shifted whole: the bake, nothing to compare with
        (targets_answer(100.0, None, None), None),  # Install not begun: no replacement task set
        (targets_answer(90.0, 10.0, None), None),  # no AllowTraffic start: the window is unknown
        ({"deploymentTargets": [{"deploymentTargetType": "ECSTarget", "ecsTarget": {}}]}, None),
        ({"deploymentTargets": []}, None),
        ({}, None),
    ],
    ids=[
        "canary",
        "integral-weights",
        "before-shift",
        "bake",
        "no-replacement",
        "no-allow-traffic",
        "empty-target",
        "no-targets",
        "empty-answer",
    ],
)
def test_a_canary_is_a_replacement_and_an_original_both_serving_production_since_allow_traffic_began(
    checker: ModuleType, answer: dict[str, Any], phase: tuple[str, str, float] | None
) -> None:
    found = checker.canary_phase(answer)
    assert (None if found is None else (found.baseline_group, found.canary_group, found.since)) == phase


def put_alb_counts(counts: dict[str, tuple[int, int]], at: datetime) -> None:
    """What the ALB publishes per target group for one minute: RequestCount and HTTPCode_Target_5XX_Count."""
    data = [
        {
            "MetricName": metric,
            "Dimensions": [
                {"Name": "LoadBalancer", "Value": LB_DIMENSION},
                {"Name": "TargetGroup", "Value": TG_DIMENSIONS[group]},
            ],
            "Timestamp": at,
            "Value": float(value),
            "Unit": "Count",
        }
        for group, (requests_, errors) in counts.items()
        for metric, value in (("RequestCount", requests_), ("HTTPCode_Target_5XX_Count", errors))
    ]
    boto3.client("cloudwatch").put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)


def in_canary(harness: Harness, green_weight: float = 10.0) -> str:
    """A deployment in flight whose replacement has had `green_weight` percent of production since now."""
    in_flight = harness.service.seed_deployment(APP, GROUP, "version: 0.0 # v2", status="InProgress")
    for event in ("BeforeInstall", "Install", "AfterInstall", "AllowTestTraffic", "AfterAllowTestTraffic"):
        harness.service.lifecycle_event(in_flight, event, "Succeeded")
    harness.service.lifecycle_event(in_flight, "AllowTraffic", "InProgress")
    harness.service.set_task_sets(
        in_flight,
        [
            task_set("Blue", 100.0 - green_weight, "phoenix-dev-blue"),
            task_set("Green", green_weight, "phoenix-dev-green"),
        ],
    )
    return in_flight


@pytest.mark.parametrize(
    ("canary", "judgement", "verdict"),
    [
        ((100, 30), [1.0], "Fail"),  # 30 % against the original's 2 %
        ((100, 2), [0.0], "Pass"),  # the same 2 % background as the original: a noisy but healthy release
    ],
    ids=["worse", "as-noisy-as-the-original"],
)
def test_during_a_canary_the_scheduled_run_publishes_the_judges_verdict_on_both_target_groups(
    harness: Harness,
    caplog: pytest.LogCaptureFixture,
    canary: tuple[int, int],
    judgement: list[float],
    verdict: str,
) -> None:
    """CanaryJudgement (Service, Environment) is what the canary-judge alarm reads: the replacement's target
    group against the original's over the same minutes (their RequestCount and HTTPCode_Target_5XX_Count
    sums, read with GetMetricData), not a fixed threshold on the replacement alone."""
    caplog.set_level(logging.INFO)
    in_canary(harness)
    put_alb_counts({"phoenix-dev-blue": (900, 18), "phoenix-dev-green": canary}, datetime.now(UTC))
    module = harness.function(harness.healthy, harness.healthy, **CANARY_ENV)
    module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert metric_values("CanaryJudgement", Service="sample-app", Environment="dev") == judgement
    [line] = [d for d in decisions(caplog) if d["message"] == "scheduled health check"]
    assert line["canary"] == verdict
    assert f"canary {canary[1]}/{canary[0]} failed" in line["canary_reason"]
    assert "baseline 18/900" in line["canary_reason"]


@pytest.mark.parametrize("green_weight", [0.0, 100.0], ids=["before-the-shift", "shifted-whole"])
def test_outside_a_canary_nothing_is_judged_or_published(
    harness: Harness, caplog: pytest.LogCaptureFixture, green_weight: float
) -> None:
    caplog.set_level(logging.INFO)
    in_canary(harness, green_weight)
    put_alb_counts({"phoenix-dev-blue": (900, 18), "phoenix-dev-green": (100, 90)}, datetime.now(UTC))
    module = harness.function(harness.healthy, harness.healthy, **CANARY_ENV)
    module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert metric_values("CanaryJudgement", Service="sample-app", Environment="dev") == []
    [line] = [d for d in decisions(caplog) if d["message"] == "scheduled health check"]
    assert "canary" not in line


def test_a_canary_whose_counts_cannot_be_read_is_not_judged_and_the_rest_is_still_published(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No datum, so the alarm stays OK (missing data is not breaching): a judge that cannot see the counts
    (here the role lacks cloudwatch:GetMetricData) must never roll a release back; the health metrics still
    go out and the log says why."""
    caplog.set_level(logging.INFO)
    in_canary(harness)
    module = harness.function(harness.healthy, harness.healthy, **CANARY_ENV)
    denied = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "not authorized to perform: cloudwatch:GetMetricData"}},
        "GetMetricData",
    )
    monkeypatch.setattr(module.cloudwatch(), "get_metric_data", Mock(side_effect=denied))
    result = module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert result["verdict"] == "healthy"
    dims = {"Service": "sample-app", "Environment": "dev"}
    assert metric_values("CanaryJudgement", **dims) == []
    assert metric_values("HealthCheckFailed", **dims) == [0.0]
    [warning] = [d for d in decisions(caplog) if d["message"] == "canary not judged"]
    assert "GetMetricData" in warning["error"]


def test_a_target_group_outside_target_group_dimensions_is_not_judged(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    in_canary(harness)
    other = {**CANARY_ENV, "TARGET_GROUP_DIMENSIONS": "targetgroup/a/1,targetgroup/b/2"}
    module = harness.function(harness.healthy, harness.healthy, **other)
    module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    assert metric_values("CanaryJudgement", Service="sample-app", Environment="dev") == []
    [warning] = [d for d in decisions(caplog) if d["message"] == "canary not judged"]
    assert "phoenix-dev-blue, phoenix-dev-green is not in TARGET_GROUP_DIMENSIONS" in warning["error"]


def test_the_minute_the_shift_began_in_is_not_counted_it_also_holds_the_requests_before_it(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CloudWatch rounds GetMetricData's StartTime down to the whole minute ("Start time less than 15 days
    ago - Round down to the nearest whole minute", botocore GetMetricDataInput.StartTime), so AWS answers
    with the minute the shift began in, stamped before it: its requests include the hook's test traffic on
    the replacement's group and all of production on the original's. Only the minutes after count."""
    caplog.set_level(logging.INFO)
    in_flight = in_canary(harness)
    [target] = boto3.client("codedeploy").batch_get_deployment_targets(
        deploymentId=in_flight, targetIds=["phoenix-dev:sample-app"]
    )["deploymentTargets"]
    [allow] = [e for e in target["ecsTarget"]["lifecycleEvents"] if e["lifecycleEventName"] == "AllowTraffic"]
    shift_minute = allow["startTime"].replace(second=0, microsecond=0)
    minutes = [shift_minute, shift_minute + timedelta(minutes=1)]
    # (shift minute, next minute) per query: the shift's minute is full of clean test traffic on the canary.
    values = {
        "baseline_requests": [1800.0, 180.0],
        "baseline_errors": [0.0, 0.0],
        "canary_requests": [180.0, 20.0],
        "canary_errors": [0.0, 10.0],
    }
    answer = {
        "MetricDataResults": [
            {"Id": query_id, "Label": query_id, "Timestamps": minutes, "Values": v, "StatusCode": "Complete"}
            for query_id, v in values.items()
        ]
    }
    module = harness.function(harness.healthy, harness.healthy, **CANARY_ENV)
    monkeypatch.setattr(module.cloudwatch(), "get_metric_data", Mock(return_value=answer))
    module.lambda_handler(harness.event("eventbridge-scheduled"), harness.context())
    [line] = [d for d in decisions(caplog) if d["message"] == "scheduled health check"]
    assert "canary 10/20 failed" in line["canary_reason"]
    assert "baseline 0/180" in line["canary_reason"]
    assert line["canary"] == "Fail"
