"""AWS JSON 1.1 on 127.0.0.1: the HTTP front every API stand-in of the project shares (CodeDeploy, CodeBuild,
CodePipeline), reached with AWS_ENDPOINT_URL_<SERVICE>.

Requests are `POST /` with `X-Amz-Target: <targetPrefix>.<Operation>` (the prefix is the service model's
`targetPrefix`, e.g. `CodeDeploy_20141006`) and an `application/x-amz-json-1.1` body; errors are HTTP 400 with
`{"__type": <code>, "message": ...}`, which botocore turns into `ClientError` / `client.exceptions.<code>`.
Signatures are not checked.

A service is any object with `call(operation, params) -> dict` raising `ApiError`.

With `scale`, a Lambda function's calls are served off the AWS clock (`moto_server.lambda_api_call`), and the
`TIME_KEYS` of requests and answers are shifted by the time the clock was held: the services stamp times
on the AWS clock (`scale.timestamp`), their callers' clocks (the Lambdas', the drill's wall clock) run ahead
of it by the time held, so a function's `now - createTime` is an age in AWS time however long it was held.
"""

from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Protocol, TypeVar

from local.aws.moto_server import lambda_api_call
from local.background import ServerThread
from local.timescale import TimeScale

CONTENT_TYPE = "application/x-amz-json-1.1"
TIME_KEYS = frozenset(
    {
        "createTime",
        "completeTime",
        "startTime",
        "endTime",
        "firstUsedTime",
        "registerTime",
        "lastUsedTime",
        "lastUpdateTime",
        "lastUpdatedAt",
        "lastStatusChange",
        "created",
        "updated",
        "lastModified",
    }
)


class ApiError(Exception):
    """An AWS error response: `code` is the JSON protocol's `__type`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class Service(Protocol):
    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


class Operations:
    """A service whose operation `X` is its method `_op_X(params)`; any other is refused as AWS refuses it."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            raise ApiError("UnknownOperationException", f"Unknown operation {operation}")
        result: dict[str, Any] = handler(params)
        return result


def shift_times(value: Any, seconds: float) -> Any:
    """`value` with every TIME_KEYS number moved by `seconds` (epoch seconds, as botocore sends them)."""
    if isinstance(value, dict):
        return {
            k: v + seconds
            if k in TIME_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
            else shift_times(v, seconds)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [shift_times(v, seconds) for v in value]
    return value


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stand-in's callers log what matters."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        prefix = self.server.target_prefix + "."
        if not target.startswith(prefix):
            self._reply(400, {"__type": "UnknownOperationException", "message": f"Bad target {target!r}"})
            return
        try:
            params = json.loads(raw or b"{}")
            if not isinstance(params, dict):
                raise TypeError("body is not a JSON object")
        except (ValueError, TypeError) as exc:
            self._reply(400, {"__type": "SerializationException", "message": str(exc)})
            return
        scale = self.server.scale
        try:
            with lambda_api_call(scale, self.headers.get("User-Agent", "")):
                if scale is not None:
                    params = shift_times(params, -scale.held_seconds())
                result = self.server.service.call(target[len(prefix) :], params)
        except ApiError as exc:
            self._reply(exc.status, {"__type": exc.code, "message": exc.message})
            return
        self._reply(200, result if scale is None else shift_times(result, scale.held_seconds()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of calls (Lambdas, actions) are not refused at the socket

    def __init__(
        self, address: tuple[str, int], service: Service, target_prefix: str, scale: TimeScale | None
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.target_prefix = target_prefix
        self.scale = scale


S = TypeVar("S", bound=Service)


class JsonApiServer(ServerThread, Generic[S]):
    """A service answered over AWS JSON 1.1 on 127.0.0.1 (a free port unless `port`), on its own thread."""

    def __init__(
        self,
        service: S,
        target_prefix: str,
        *,
        name: str,
        port: int = 0,
        scale: TimeScale | None = None,
    ) -> None:
        self.service = service
        self._httpd = _Server(("127.0.0.1", port), service, target_prefix, scale)
        super().__init__(self._httpd, name=name)

    @property
    def endpoint_url(self) -> str:
        return self.url

    def use(self, service: S) -> S:
        """Serve `service` from now on (a fresh state per test without a new port); returns it."""
        self.service = service
        self._httpd.service = service
        return service

    def serve_forever(self) -> None:
        """Answer in the foreground until interrupted (`python -m` entry points)."""
        print(self.endpoint_url, flush=True)
        try:
            self._httpd.serve_forever()
        except KeyboardInterrupt:
            self._httpd.server_close()
