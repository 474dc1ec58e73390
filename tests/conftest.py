"""Shared fixtures: AWS credentials and moto, the CodeDeploy stand-in, a Lambda context, event samples,
fresh imports of the Lambda modules, and real HTTP servers on 127.0.0.1 (sample app and misbehaving ones).

- `aws_credentials`: fake credentials and region in the environment, no real endpoint or profile.
- `moto`: `mock_aws()` around the test (CloudWatch, SNS, SQS, ECS, ELBv2, ... in process).
- `codedeploy`: a fresh `CodeDeployService` served over HTTP (one server per session), with
  AWS_ENDPOINT_URL_CODEDEPLOY pointing at it; `codedeploy_server` is the server.
- `create_deployment_group(rollback_events, **extra)`: the ECS application phoenix-dev and its blue/green
  group phoenix-dev-sample-app created in that stand-in through boto3; returns the codedeploy client.
- `lambda_context` / `make_lambda_context(timeout_ms)`: a context whose remaining time counts down (120 s by
  default: the functions' Timeout in the template).
- `load_event(name)`: a fresh copy of tests/events/<name>.json.
- `load_lambda(name, env)`: lambdas/<name>.py with that environment. It builds its configuration, clients and
  caches on first use, so a plain import does; the caches are cleared before and after the test.
- `world`: the auto-rollback function's world (tests/rollback_world.py): moto's SNS topic with an SQS queue on
  it, the CodeDeploy stand-in with the group, the function's environment, alarm events stamped with a time.
- `sample_app(**env)` (module scope): the sample app with the given fault variables, served by werkzeug.
- `hanging_server`, `resetting_server`, `garbage_server`, `garbage_body_server`, `refused_url`: base URLs.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from werkzeug.serving import make_server

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from local.aws.codedeploy import CodeDeployServer, CodeDeployService  # noqa: E402 - needs the path above
from tests.rollback_world import CODEDEPLOY_ALARM, World, topic_with_queue  # noqa: E402 - needs the path above

EVENTS_DIR = Path(__file__).resolve().parent / "events"
REGION = "us-east-1"
CODEDEPLOY_APP = "phoenix-dev"
CODEDEPLOY_GROUP = "phoenix-dev-sample-app"


# --------------------------------------------------------------------------------------------- AWS
@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, a region, and no endpoint/profile leaking in from the developer's shell."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CODEDEPLOY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def moto(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def codedeploy_server() -> Iterator[CodeDeployServer]:
    with CodeDeployServer() as server:
        yield server


@pytest.fixture
def codedeploy(
    codedeploy_server: CodeDeployServer, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> CodeDeployService:
    """A fresh CodeDeploy stand-in for this test, reached by boto3 through AWS_ENDPOINT_URL_CODEDEPLOY."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CODEDEPLOY", codedeploy_server.endpoint_url)
    return codedeploy_server.use(CodeDeployService())


@pytest.fixture
def create_deployment_group(codedeploy: CodeDeployService) -> Callable[..., Any]:
    """`create_deployment_group(["DEPLOYMENT_FAILURE"], alarmConfiguration={...})` -> the codedeploy client,
    after creating application phoenix-dev (ECS) and its blue/green group phoenix-dev-sample-app, whose
    automatic rollback is enabled for `rollback_events`; `extra` goes to CreateDeploymentGroup as is."""

    def create(rollback_events: list[str], **extra: Any) -> Any:
        client = boto3.client("codedeploy")
        client.create_application(applicationName=CODEDEPLOY_APP, computePlatform="ECS")
        client.create_deployment_group(
            applicationName=CODEDEPLOY_APP,
            deploymentGroupName=CODEDEPLOY_GROUP,
            serviceRoleArn="arn:aws:iam::123456789012:role/codedeploy",
            autoRollbackConfiguration={"enabled": True, "events": rollback_events},
            deploymentStyle={"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
            **extra,
        )
        return client

    return create


# --------------------------------------------------------------------------------------------- Lambda
class FakeLambdaContext:
    """The Lambda context: request id, function name and a deadline that really counts down."""

    def __init__(self, timeout_ms: int = 120_000, function_name: str = "phoenix-dev-test") -> None:
        self._deadline = time.monotonic() + timeout_ms / 1000.0
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.memory_limit_in_mb = 128
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@pytest.fixture
def make_lambda_context() -> Callable[..., FakeLambdaContext]:
    return FakeLambdaContext


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(scope="session")
def load_event() -> Callable[[str], Any]:
    """`load_event("sns-cloudwatch-alarm")` -> a fresh copy of tests/events/sns-cloudwatch-alarm.json."""

    def load(name: str) -> Any:
        return json.loads((EVENTS_DIR / f"{name.removesuffix('.json')}.json").read_text())

    return load


def import_file(module_name: str, path: Path) -> ModuleType:
    """Import `path` as a new module named `module_name` (registered in sys.modules, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def clear_caches(module: ModuleType) -> ModuleType:
    """Forget what a function module built on first use: its configuration, clients, fetched AppSpecs."""
    for value in vars(module).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
    return module


@pytest.fixture(scope="session")
def lambda_module() -> Callable[[str], ModuleType]:
    """`lambda_module("health_check")`: the function's module, nothing of it built yet (any fixture scope)."""
    return lambda name: clear_caches(importlib.import_module(name))


@pytest.fixture
def load_lambda(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch, lambda_module: Callable[[str], ModuleType]
) -> Iterator[Callable[[str, dict[str, str]], ModuleType]]:
    """`load_lambda("auto_rollback", {...env...})`: the function module with that environment set (after fake
    credentials; request `moto` / `codedeploy` first when its clients must reach them)."""
    loaded: list[ModuleType] = []

    def load(name: str, env: dict[str, str]) -> ModuleType:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        loaded.append(lambda_module(name))
        return loaded[-1]

    yield load
    for module in loaded:
        clear_caches(module)


# --------------------------------------------------------------------------------------------- auto-rollback
@pytest.fixture
def world(
    moto: None,
    codedeploy: CodeDeployService,
    create_deployment_group: Callable[..., Any],
    load_lambda: Callable[[str, dict[str, str]], ModuleType],
    load_event: Callable[[str], Any],
) -> World:
    create_deployment_group(["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"])
    topic, queue_url = topic_with_queue()
    env = {
        "ENVIRONMENT": "dev",
        "SERVICE_NAME": "sample-app",
        "CODEDEPLOY_APPLICATION": CODEDEPLOY_APP,
        "CODEDEPLOY_DEPLOYMENT_GROUP": CODEDEPLOY_GROUP,
        "ALARM_NAMES": f"{CODEDEPLOY_ALARM}, phoenix-dev-blue-5xx",
        "NOTIFICATIONS_TOPIC_ARN": topic,
        "ROLLBACK_COOLDOWN_SECONDS": "900",
    }
    return World(codedeploy, queue_url, env, load_lambda, load_event)


# --------------------------------------------------------------------------------------------- HTTP servers
@pytest.fixture(scope="module")
def sample_app() -> Iterator[Callable[..., str]]:
    """`sample_app(FAULT_HEALTH_FAIL="true")` -> base URL of the sample app with that environment."""
    module = import_file(f"sample_app_{uuid.uuid4().hex}", REPO_ROOT / "sample-app" / "app.py")
    servers: list[Any] = []

    def start(**env: str) -> str:
        app = module.create_app({"APP_VERSION": "test", **env})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class RawServer:
    """A TCP server on 127.0.0.1 whose connections are handled by `behaviour(conn)` in threads."""

    def __init__(self, behaviour: Callable[[socket.socket], None]) -> None:
        self._behaviour = behaviour
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._closing = threading.Event()
        self._conns: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._behaviour, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        self._sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk


def _hang(conn: socket.socket) -> None:
    """Accept, read the request, never answer (the connection stays open until teardown)."""
    try:
        _read_request(conn)
    except OSError:
        return


def _reset(conn: socket.socket) -> None:
    """Read the request, then close with RST (SO_LINGER 0)."""
    try:
        _read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        conn.close()


def _answer_with(payload: bytes) -> Callable[[socket.socket], None]:
    """Read the request, send `payload` as the whole answer, close."""

    def answer(conn: socket.socket) -> None:
        try:
            _read_request(conn)
            conn.sendall(payload)
        finally:
            conn.close()

    return answer


_NOT_JSON = b"<html>\x00\xff definitely not json"
# Bytes that are not HTTP.
_garbage = _answer_with(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\r\n")
# HTTP 200 with a body that is not JSON.
_garbage_body = _answer_with(
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
    + f"Content-Length: {len(_NOT_JSON)}\r\n\r\n".encode()
    + _NOT_JSON
)


def _raw_fixture(behaviour: Callable[[socket.socket], None]) -> Iterator[str]:
    server = RawServer(behaviour)
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def hanging_server() -> Iterator[str]:
    yield from _raw_fixture(_hang)


@pytest.fixture(scope="module")
def resetting_server() -> Iterator[str]:
    yield from _raw_fixture(_reset)


@pytest.fixture(scope="module")
def garbage_server() -> Iterator[str]:
    yield from _raw_fixture(_garbage)


@pytest.fixture(scope="module")
def garbage_body_server() -> Iterator[str]:
    yield from _raw_fixture(_garbage_body)


@pytest.fixture
def refused_url() -> str:
    """A 127.0.0.1 URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
