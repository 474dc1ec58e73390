"""HTTP front of the CodeDeploy stand-in: AWS JSON 1.1 on 127.0.0.1, reached with AWS_ENDPOINT_URL_CODEDEPLOY.

Requests are `POST /` with `X-Amz-Target: CodeDeploy_20141006.<Operation>` and an
`application/x-amz-json-1.1` body; errors are HTTP 400 with `{"__type": <code>, "message": ...}`, which
botocore turns into `ClientError` / `client.exceptions.<code>`. Signatures are not checked.

    with CodeDeployServer() as server:          # free port on 127.0.0.1
        os.environ["AWS_ENDPOINT_URL_CODEDEPLOY"] = server.endpoint_url
        server.service                          # the CodeDeployService behind it
        server.use(CodeDeployService(engine))   # swap in a fresh one (same port)

`python -m local.aws.codedeploy.server --port 0` runs one in the foreground and prints its endpoint URL.
"""

from __future__ import annotations

import argparse
import json
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local.aws.codedeploy.service import CodeDeployError, CodeDeployService, DeploymentEngine
from local.aws.moto_server import lambda_api_call
from local.background import ServerThread
from local.timescale import TimeScale

TARGET_PREFIX = "CodeDeploy_20141006."
CONTENT_TYPE = "application/x-amz-json-1.1"


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
        if not target.startswith(TARGET_PREFIX):
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
                    params = _shift_times(params, -scale.held_seconds())
                result = self.server.service.call(target[len(TARGET_PREFIX) :], params)
        except CodeDeployError as exc:
            self._reply(exc.status, {"__type": exc.code, "message": exc.message})
            return
        self._reply(200, result if scale is None else _shift_times(result, scale.held_seconds()))


# The deployment record's times. The service stamps them on the AWS clock (`scale.timestamp`); its callers'
# clocks (the Lambdas', the drill's wall clock) run ahead of it by the time the clock was held, so times are
# served shifted by that much and taken back (createTimeRange) the other way: a function's `now - createTime`
# is then the deployment's age in AWS time, however long the stand-in held its clock.
TIME_KEYS = frozenset(
    {"createTime", "completeTime", "startTime", "endTime", "firstUsedTime", "registerTime", "lastUsedTime"}
)


def _shift_times(value: Any, seconds: float) -> Any:
    if isinstance(value, dict):
        return {
            k: v + seconds
            if k in TIME_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
            else _shift_times(v, seconds)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shift_times(v, seconds) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], service: CodeDeployService, scale: TimeScale | None = None
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.scale = scale


class CodeDeployServer(ServerThread):
    """A CodeDeployService served over HTTP on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        service: CodeDeployService | None = None,
        *,
        engine: DeploymentEngine | None = None,
        port: int = 0,
        scale: TimeScale | None = None,
    ) -> None:
        self.service = service if service is not None else CodeDeployService(engine=engine)
        # With `scale`, Lambda functions' calls are served off the AWS clock (moto_server.lambda_api_call).
        self._httpd = _Server(("127.0.0.1", port), self.service, scale)
        super().__init__(self._httpd, name="codedeploy")

    @property
    def endpoint_url(self) -> str:
        return self.url

    def use(self, service: CodeDeployService) -> CodeDeployService:
        """Serve `service` from now on (a fresh state per test without a new port); returns it."""
        self.service = service
        self._httpd.service = service
        return service


def main() -> None:
    parser = argparse.ArgumentParser(description="CodeDeploy API stand-in (AWS JSON 1.1) on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    args = parser.parse_args()
    server = CodeDeployServer(port=args.port)
    print(server.endpoint_url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        server._httpd.server_close()


if __name__ == "__main__":
    main()
