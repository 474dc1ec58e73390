"""The ALB data plane: a real HTTP reverse proxy on 127.0.0.1 per listener.

Each request is routed by the listener's *current* default action in moto (a forward to one target group or a
weighted ForwardConfig), to a registered target of the chosen group, round robin. Like a real ALB it answers
502 when a target refuses or resets, 503 when the group has no target and 504 when the target does not answer
within the idle timeout, and it publishes the AWS/ApplicationELB metrics a real ALB publishes (RequestCount,
HTTPCode_Target_5XX_Count, HTTPCode_ELB_5XX_Count, TargetResponseTime by LoadBalancer and TargetGroup) into
moto, once per metric period. Every request is written to an access log, as ALB access logs do.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from moto.elbv2.models import elbv2_backends

from local.aws.moto_server import ACCOUNT_ID, REGION
from local.background import Lifecycle, Loop, ServerThread

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-authorization"}


def lb_dimension(arn: str) -> str:
    """`app/name/id` from a load balancer ARN (the LoadBalancer dimension)."""
    return arn.split(":loadbalancer/", 1)[1]


def tg_dimension(arn: str) -> str:
    """`targetgroup/name/id` from a target group ARN (the TargetGroup dimension)."""
    return arn.split(":", 5)[5]


@dataclass
class AccessLogEntry:
    started: float
    ended: float
    listener_port: int
    target_group_arn: str | None
    target: str | None
    elb_status: int
    target_status: int | None
    request_id: str | None


def forward_weights(listener_arn: str) -> list[tuple[str, int]]:
    """[(target group ARN, weight)] of the listener's current default forward action in moto."""
    backend = elbv2_backends[ACCOUNT_ID][REGION]
    listener = backend.describe_listeners(None, [listener_arn])[0]
    for action in listener.default_actions:
        data = action.data
        if data.get("Type") != "forward":
            continue
        groups = (data.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            return [(g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups]
        if data.get("TargetGroupArn"):
            return [(data["TargetGroupArn"], 1)]
    return []


def registered_targets(target_group_arn: str) -> list[tuple[str, int]]:
    backend = elbv2_backends[ACCOUNT_ID][REGION]
    group = backend.target_groups.get(target_group_arn)
    if group is None:
        return []
    return [(t["Id"], int(t["Port"])) for t in list(group.targets.values())]


class _Metrics:
    """Per-period aggregation of what a real ALB reports to CloudWatch."""

    def __init__(self, lb_arn: str) -> None:
        self.lb = lb_dimension(lb_arn)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str | None], float] = defaultdict(float)
        self._times: dict[str | None, list[float]] = defaultdict(list)

    def record(
        self, tg_arn: str | None, elb_status: int, target_status: int | None, seconds: float | None
    ) -> None:
        tg = tg_dimension(tg_arn) if tg_arn else None
        with self._lock:
            self._counts[("RequestCount", tg)] += 1
            if target_status is not None and target_status >= 500:
                self._counts[("HTTPCode_Target_5XX_Count", tg)] += 1
            if target_status is None and elb_status >= 500:
                self._counts[("HTTPCode_ELB_5XX_Count", None)] += 1
            if seconds is not None and tg:
                self._times[tg].append(seconds)

    def drain(self) -> list[dict[str, Any]]:
        with self._lock:
            counts, self._counts = self._counts, defaultdict(float)
            times, self._times = self._times, defaultdict(list)
        now = datetime.now(UTC)
        data: list[dict[str, Any]] = []
        lb_requests = sum(v for (name, _), v in counts.items() if name == "RequestCount")
        if lb_requests:
            data.append(self._datum("RequestCount", None, lb_requests, "Count", now))
        for (name, tg), value in counts.items():
            if tg is not None or name != "RequestCount":
                data.append(self._datum(name, tg, value, "Count", now))
        for tg, values in times.items():
            rounded: dict[float, float] = defaultdict(float)
            for v in values:
                rounded[round(v, 4)] += 1
            items = list(rounded.items())
            for start in range(0, len(items), 150):
                chunk = items[start : start + 150]
                datum = {
                    "MetricName": "TargetResponseTime",
                    "Dimensions": self._dims(tg),
                    "Values": [k for k, _ in chunk],
                    "Counts": [c for _, c in chunk],
                    "Unit": "Seconds",
                    "Timestamp": now,
                }
                data.append(datum)
        return data

    def _dims(self, tg: str | None) -> list[dict[str, str]]:
        dims = [{"Name": "LoadBalancer", "Value": self.lb}]
        if tg:
            dims.append({"Name": "TargetGroup", "Value": tg})
        return dims

    def _datum(self, name: str, tg: str | None, value: float, unit: str, now: datetime) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": self._dims(tg),
            "Value": value,
            "Unit": unit,
            "Timestamp": now,
        }


class ListenerProxy(ServerThread):
    """One listener: an HTTP server on a free loopback port."""

    def __init__(
        self,
        listener_arn: str,
        listener_port: int,
        *,
        metrics: _Metrics,
        idle_timeout: float,
        log: Callable[[AccessLogEntry], None],
        seed: int = 0,
    ) -> None:
        self.listener_arn = listener_arn
        self.listener_port = listener_port
        self._metrics = metrics
        self._idle_timeout = idle_timeout
        self._log = log
        self._random = random.Random(seed)  # noqa: S311 - load balancing, not cryptography
        self._rr: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        super().__init__(server, name=f"alb-{listener_port}")

    def pick(self) -> tuple[str | None, tuple[str, int] | None]:
        """Choose a target group by weight, then a target of it round robin."""
        weights = [(arn, w) for arn, w in forward_weights(self.listener_arn) if w > 0]
        if not weights:
            return None, None
        with self._lock:
            roll = self._random.uniform(0, sum(w for _, w in weights))
            chosen = weights[-1][0]
            for arn, w in weights:
                if roll < w:
                    chosen = arn
                    break
                roll -= w
            targets = registered_targets(chosen)
            if not targets:
                return chosen, None
            index = self._rr[chosen] % len(targets)
            self._rr[chosen] += 1
        return chosen, targets[index]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                proxy.handle(self)

            do_HEAD = do_GET
            do_POST = do_GET

        return Handler

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        tg_arn, target = self.pick()
        body = b""
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            body = request.rfile.read(length)
        status, target_status, headers, payload = (
            503,
            None,
            [("Content-Type", "text/html")],
            b"503 Service Unavailable",
        )
        seconds: float | None = None
        if target is not None:
            status, target_status, headers, payload, seconds = self._forward(request, target, body)
        ended = time.monotonic()
        self._metrics.record(tg_arn, status, target_status, seconds)
        self._log(
            AccessLogEntry(
                started=started,
                ended=ended,
                listener_port=self.listener_port,
                target_group_arn=tg_arn,
                target=f"{target[0]}:{target[1]}" if target else None,
                elb_status=status,
                target_status=target_status,
                request_id=request.headers.get("X-Request-Id"),
            )
        )
        try:
            request.send_response(status)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    request.send_header(name, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
        except OSError:
            return  # the client gave up (its own timeout); the access log has the request already

    def _forward(
        self, request: BaseHTTPRequestHandler, target: tuple[str, int], body: bytes
    ) -> tuple[int, int | None, list[tuple[str, str]], bytes, float | None]:
        conn = http.client.HTTPConnection(target[0], target[1], timeout=self._idle_timeout)
        sent = time.monotonic()
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["X-Forwarded-For"] = request.client_address[0]
            headers["X-Forwarded-Port"] = str(self.listener_port)
            conn.request(request.command, request.path, body=body or None, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            elapsed = time.monotonic() - sent
            return response.status, response.status, response.getheaders(), payload, elapsed
        except TimeoutError:
            return 504, None, [("Content-Type", "text/html")], b"504 Gateway Time-out", None
        except (OSError, http.client.HTTPException):
            return 502, None, [("Content-Type", "text/html")], b"502 Bad Gateway", None
        finally:
            conn.close()


class LoadBalancer(Lifecycle):
    """All listeners of one ALB, proxied on loopback, plus its metric publisher."""

    def __init__(
        self,
        cloudwatch: Any,
        lb_arn: str,
        listeners: dict[int, str],
        *,
        metric_period: float,
        idle_timeout: float,
        log: Callable[[AccessLogEntry], None] | None = None,
    ) -> None:
        self.lb_arn = lb_arn
        self._cloudwatch = cloudwatch
        self._metrics = _Metrics(lb_arn)
        self.access_log: list[AccessLogEntry] = []
        self._log_lock = threading.Lock()
        self._extra_log = log
        self.listeners = {
            port: ListenerProxy(
                arn, port, metrics=self._metrics, idle_timeout=idle_timeout, log=self._record, seed=port
            )
            for port, arn in listeners.items()
        }
        # A real ALB publishes its metrics once per period; the last partial period when the drill ends.
        self._publisher = Loop("alb-metrics", self.publish, every=metric_period, final=self.publish)

    def _record(self, entry: AccessLogEntry) -> None:
        with self._log_lock:
            self.access_log.append(entry)
        if self._extra_log:
            self._extra_log(entry)

    def url(self, listener_port: int) -> str:
        return self.listeners[listener_port].url

    def start(self) -> Self:
        for proxy in self.listeners.values():
            proxy.start()
        self._publisher.start()
        return self

    def stop(self) -> None:
        self._publisher.stop()
        for proxy in self.listeners.values():
            proxy.stop()

    def publish(self) -> None:
        data = self._metrics.drain()
        for start in range(0, len(data), 20):
            self._cloudwatch.put_metric_data(
                Namespace="AWS/ApplicationELB", MetricData=data[start : start + 20]
            )
