"""The AWS API: an embedded moto server on a free 127.0.0.1 port, and boto3 clients pointed at it."""

from __future__ import annotations

import logging
import os
import threading
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from moto.cloudwatch.models import CloudWatchBackend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from local.aws.account import ACCOUNT_ID, REGION
from local.timescale import TimeScale

__all__ = ["ACCOUNT_ID", "REGION", "Aws", "lambda_api_call", "moto_server"]

# botocore's User-Agent inside Lambda (AWS_EXECUTION_ENV=AWS_Lambda_<runtime>, which Lambda sets).
LAMBDA_USER_AGENT = "exec-env/AWS_Lambda"
# What one API call of a function costs in AWS time: AWS publishes no latency figure; 0.2 s is the slow end of
# what a regional API answers in (a figure can only come out later for it, never sooner).
API_LATENCY_SECONDS = 0.2
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


@dataclass(frozen=True)
class Aws:
    """Where the stand-in's AWS endpoints are: moto's, and a stand-in's own per service (botocore's service id
    in lower case, e.g. "codedeploy"), as AWS_ENDPOINT_URL_<SERVICE> sets it."""

    endpoint: str
    endpoints: Mapping[str, str] = field(default_factory=dict)
    region: str = REGION

    def env(self) -> dict[str, str]:
        """Standard endpoint settings for a process (a Lambda worker, a build) that talks to the stand-in."""
        return {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            **{f"AWS_ENDPOINT_URL_{service.upper()}": url for service, url in self.endpoints.items()},
        }

    def client(self, service: str) -> Any:
        """A boto3 client for `service` on the stand-in."""
        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
        ).client(
            service,
            endpoint_url=self.endpoints.get(service, self.endpoint),
            config=Config(
                retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
            ),
        )

    def with_endpoint(self, service: str, url: str) -> Aws:
        """These endpoints, and `service` answered at `url`."""
        return Aws(self.endpoint, {**self.endpoints, service: url}, self.region)


@contextmanager
def lambda_api_call(scale: TimeScale | None, user_agent: str) -> Iterator[None]:
    """Serve one API call. A Lambda function's call costs API_LATENCY_SECONDS of AWS time, whatever the
    stand-in takes to serve it: the clock is held while it is served (a function runs against its scaled
    Timeout, and the machine's serving time is not AWS's)."""
    if scale is None or LAMBDA_USER_AGENT not in user_agent:
        yield
        return
    try:
        with scale.hold("API call from a Lambda function", record=False):
            yield
    finally:  # an error answer costs the latency too
        scale.sleep(scale.drill(API_LATENCY_SECONDS))


# How far the caller of the HTTP request this thread serves runs ahead of the AWS clock (seconds held).
_CALLER = threading.local()


class _LambdaCalls:
    """WSGI middleware: moto's answers to Lambda functions through `lambda_api_call`, and each caller's clock
    known to the CloudWatch queries it makes (`_metric_queries_on_the_aws_clock`)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], scale: TimeScale) -> None:
        self._app = app
        self._scale = scale

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with lambda_api_call(self._scale, str(environ.get("HTTP_USER_AGENT", ""))):
            _CALLER.ahead = self._scale.held_seconds()
            try:
                return list(self._app(environ, start_response))
            finally:
                _CALLER.ahead = 0.0


@contextmanager
def _metric_queries_on_the_aws_clock() -> Iterator[None]:
    """GetMetricData over HTTP, as `json_api.shift_times` does for the stand-ins' own services: datapoints are
    stamped on the AWS clock, their callers (the Lambdas, the drill) ask on clocks ahead of it by the time
    held, so StartTime and EndTime move back by that and the answer's Timestamps forward."""
    original = CloudWatchBackend.get_metric_data

    def get_metric_data(
        backend: CloudWatchBackend,
        queries: list[dict[str, Any]],
        start_time: datetime,
        end_time: datetime,
        scan_by: str = "TimestampAscending",
    ) -> list[dict[str, Any]]:
        ahead = timedelta(seconds=getattr(_CALLER, "ahead", 0.0))
        results = original(backend, queries, start_time - ahead, end_time - ahead, scan_by)
        # moto's periods start at StartTime to the second: each keeps its offset from the caller's StartTime.
        first = (start_time - ahead).replace(microsecond=0)
        return [{**r, "timestamps": [start_time + (t - first) for t in r["timestamps"]]} for r in results]

    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        CloudWatchBackend.get_metric_data = original  # type: ignore[method-assign]


def _clean_env() -> None:
    """Keep the drill's own boto3 away from a developer's real account and profiles."""
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(key, None)
    for key, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION}.items():
        os.environ[key] = value


class _OneLineErrors(logging.Filter):
    """werkzeug logs an exception in moto (a 500 answer, e.g. GetMetricData with a percentile statistic, which
    moto 5.2.5 cannot serialise) as "Error on request" and the whole traceback: keep its last line, once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Error on request"):
            return True
        last = message.strip().splitlines()[-1]
        if last in self._seen:
            return False
        self._seen.add(last)
        record.msg, record.args = f"moto answered 500: {last} (the same error again is not shown)", ()
        return True


@contextmanager
def moto_server(extra_env: Mapping[str, str] | None = None, scale: TimeScale | None = None) -> Iterator[Aws]:
    """Run moto on a free loopback port for the duration of the block; backends and environment are reset.
    With `scale`, Lambda functions' calls are served off the AWS clock (`lambda_api_call`)."""
    saved = dict(os.environ)
    _clean_env()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if not any(isinstance(f, _OneLineErrors) for f in logging.getLogger("werkzeug").filters):
        logging.getLogger("werkzeug").addFilter(_OneLineErrors())
    # moto's CloudFormation names each type it skips; local/aws/cloudformation.py teaches it most of them.
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
    for key, value in (extra_env or {}).items():
        os.environ[key] = value
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    clocks = ExitStack()
    if scale is not None and server._server is not None:  # moto keeps its WSGI server private
        server._server.app = _LambdaCalls(server._server.app, scale)
        clocks.enter_context(_metric_queries_on_the_aws_clock())
    try:
        host, port = server.get_host_and_port()
        yield Aws(endpoint=f"http://{host}:{port}")
    finally:
        clocks.close()
        try:
            host, port = server.get_host_and_port()
            urllib.request.urlopen(
                urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=10
            ).close()
        finally:
            server.stop()
            os.environ.clear()
            os.environ.update(saved)
