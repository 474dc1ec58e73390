"""The ALB data plane: an HTTP reverse proxy on 127.0.0.1 per listener, its target health checks, its metrics.

Each request is routed by the listener's *current* default action in moto (a forward to one target group or
a weighted ForwardConfig) to a target of the chosen group, round robin. The load balancer probes every
registered target of every group its listeners forward to (`GET HealthCheckPath` with the group's interval,
timeout, thresholds and Matcher from moto, on the AWS clock; other groups' targets are `unused`, as on AWS): a
target is `initial` until it passes HealthyThresholdCount checks, `unhealthy` after UnhealthyThresholdCount
failures; only healthy targets get requests, except that a group with no healthy target fails open to its
unhealthy ones. It answers 502 when a target refuses or resets, 503 when the group has no target that may
receive requests, 504 when the target does not answer within the idle timeout. The AWS/ApplicationELB
metrics (RequestCount, HTTPCode_Target_5XX_Count, HTTPCode_ELB_5XX_Count, TargetResponseTime by LoadBalancer
and TargetGroup) count each request in the 60-AWS-second period in which it was received, stamped with the
period's start, and are put into moto once the period has ended. Every request is written to an access log
(drill seconds).

Differences from AWS, on purpose: one load balancer node (no Availability Zones); a check is never sent
before its schedule, but one still in flight when the next is due (its timeout is at least 0.1 wall seconds,
which can exceed the scaled interval) makes that next one skipped, so verdicts can only come later than on
AWS; a new target's first check is one interval after the stand-in first sees it registered (AWS does not
say; the later verdict is the pessimistic side); no `draining` state (moto drops a deregistered target at
once: it gets no new request, and the CodeDeploy engine waits `deregistration_delay_seconds` before stopping
its task); the routing-failover thresholds (`target_group_health.*`) keep AWS's defaults; HTTP only.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from moto.elbv2.models import elbv2_backends

from local.aws.moto_server import ACCOUNT_ID, REGION
from local.background import Lifecycle, Loop, ServerThread
from local.timescale import TimeScale

# What the ALB itself answers with (502, 503, 504): its own Server header, as on AWS.
ELB_HEADERS = [("Content-Type", "text/html"), ("Server", "awselb/2.0")]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-authorization"}

# AWS's defaults for an HTTP target group of type ip, from botocore's elbv2 model (CreateTargetGroup:
# HealthCheckIntervalSeconds 30, HealthCheckTimeoutSeconds 6, HealthyThresholdCount 5,
# UnhealthyThresholdCount 2, Matcher 200) and the target-group-health-checks page (HealthCheckPath "/").
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 6.0
DEFAULT_HEALTHY_THRESHOLD = 5
DEFAULT_UNHEALTHY_THRESHOLD = 2
# botocore TargetGroupAttribute.Key: "deregistration_delay.timeout_seconds ... The default value is 300"
DEFAULT_DEREGISTRATION_DELAY = 300.0
# A health check's timeout in wall seconds is never below this: a healthy loopback answer must fit in it (a
# longer timeout only makes an unhealthy verdict later).
HEALTH_CHECK_TIMEOUT_FLOOR = 0.1
# "Elastic Load Balancing measures and sends its metrics in 60-second intervals"
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html)
METRIC_PERIOD = 60.0

INITIAL, HEALTHY, UNHEALTHY, UNUSED = "initial", "healthy", "unhealthy", "unused"


def lb_dimension(arn: str) -> str:
    """`app/name/id` from a load balancer ARN (the LoadBalancer dimension)."""
    return arn.split(":loadbalancer/", 1)[1]


def tg_dimension(arn: str) -> str:
    """`targetgroup/name/id` from a target group ARN (the TargetGroup dimension)."""
    return arn.split(":", 5)[5]


@dataclass
class AccessLogEntry:
    started: float  # drill seconds (TimeScale.now) when the ALB received the request
    ended: float  # drill seconds when it answered
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


def deregistration_delay_seconds(target_group_arn: str) -> float:
    """The group's `deregistration_delay.timeout_seconds` in AWS seconds (300 when unset, as AWS documents:
    botocore elbv2 TargetGroupAttribute.Key)."""
    group = elbv2_backends[ACCOUNT_ID][REGION].target_groups.get(target_group_arn)
    if group is None:
        raise KeyError(f"no target group {target_group_arn}")
    value = group.attributes.get("deregistration_delay.timeout_seconds")
    return DEFAULT_DEREGISTRATION_DELAY if value in (None, "") else float(str(value))


# ---------------------------------------------------------------------------------------------- health checks
@dataclass(frozen=True)
class HealthCheckSettings:
    interval: float  # AWS seconds
    timeout: float  # AWS seconds
    healthy_threshold: int
    unhealthy_threshold: int
    path: str
    port: str  # "traffic-port" or a port number
    codes: frozenset[int]

    @classmethod
    def of(cls, target_group_arn: str) -> HealthCheckSettings | None:
        group = elbv2_backends[ACCOUNT_ID][REGION].target_groups.get(target_group_arn)
        if group is None:
            return None
        return cls(
            interval=float(group.health_check_interval_seconds or DEFAULT_INTERVAL),
            timeout=float(group.health_check_timeout_seconds or DEFAULT_TIMEOUT),
            healthy_threshold=int(group.healthy_threshold_count or DEFAULT_HEALTHY_THRESHOLD),
            unhealthy_threshold=int(group.unhealthy_threshold_count or DEFAULT_UNHEALTHY_THRESHOLD),
            path=group.health_check_path or "/",
            port=str(group.health_check_port or "traffic-port"),
            codes=matcher_codes(str((getattr(group, "matcher", None) or {}).get("HttpCode") or "200")),
        )


def matcher_codes(http_code: str) -> frozenset[int]:
    """The status codes of a Matcher HttpCode: "200", "200,202" or "200-299" (botocore Matcher.HttpCode)."""
    codes: set[int] = set()
    for part in http_code.replace(" ", "").split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            codes.update(range(int(low), int(high) + 1))
        elif part:
            codes.add(int(part))
    return frozenset(codes)


@dataclass
class _Target:
    host: str
    port: int
    next_check: float  # drill seconds
    state: str = INITIAL
    successes: int = 0  # consecutive
    failures: int = 0  # consecutive
    probing: bool = False
    reason: str = "Elb.InitialHealthChecking"


class HealthChecker:
    """The load balancer's health checks of the targets of the groups its listeners forward to."""

    def __init__(self, listener_arns: list[str], scale: TimeScale) -> None:
        self._listeners = listener_arns
        self._scale = scale
        self._lock = threading.Lock()
        self._groups: dict[str, dict[str, _Target]] = {}

    def groups_in_use(self) -> set[str]:
        """Every group a listener forwards to, weight 0 included: "Health checks are performed on all targets
        registered to a target group that is specified in a listener rule for your load balancer"
        (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html)."""
        groups: set[str] = set()
        for listener in self._listeners:
            try:
                groups.update(arn for arn, _ in forward_weights(listener))
            except Exception:  # noqa: S112 - a listener deleted in moto forwards nowhere
                continue
        return groups

    def _sync(self, group: str, settings: HealthCheckSettings) -> dict[str, _Target]:
        """Track the group's registered targets (lock held): a target first seen is `initial`, its first check
        one interval later; a deregistered one is forgotten (registered again, it starts over)."""
        now = self._scale.now()
        tracked = self._groups.setdefault(group, {})
        registered = {f"{host}:{port}": (host, port) for host, port in registered_targets(group)}
        for key in list(tracked):
            if key not in registered:
                del tracked[key]
        for key, (host, port) in registered.items():
            if key not in tracked:
                tracked[key] = _Target(host, port, next_check=now + self._scale.drill(settings.interval))
        return tracked

    def step(self) -> None:
        """Send every check that is due (one Loop tick on the AWS clock)."""
        in_use = self.groups_in_use()
        probes: list[tuple[str, str, _Target, HealthCheckSettings]] = []
        with self._lock:
            for group in list(self._groups):
                if group not in in_use:
                    del self._groups[group]  # no longer in a listener rule: `unused`, no more checks
            for group in in_use:
                settings = HealthCheckSettings.of(group)
                if settings is None:
                    continue
                now = self._scale.now()
                every = self._scale.drill(settings.interval)
                for key, target in self._sync(group, settings).items():
                    if now < target.next_check:
                        continue
                    # "The time it takes for the target to respond does not affect the interval for the next
                    # health check request" (target-group-health-checks): the schedule never drifts; a check
                    # due while the previous one is still in flight (timeout floor) is skipped.
                    while target.next_check <= now:
                        target.next_check += every
                    if not target.probing:
                        target.probing = True
                        probes.append((group, key, target, settings))
        for group, key, target, settings in probes:
            threading.Thread(
                target=self._probe, args=(group, key, target, settings), name=f"alb-health-{key}", daemon=True
            ).start()

    def _probe(self, group: str, key: str, target: _Target, settings: HealthCheckSettings) -> None:
        """One health check: GET HealthCheckPath, success when the status is in the Matcher within the timeout
        (target-group-health-checks: HealthCheckTimeoutSeconds is "the amount of time during which no response
        from a target means a failed health check")."""
        timeout = max(HEALTH_CHECK_TIMEOUT_FLOOR, self._scale.drill(settings.timeout))
        port = target.port if settings.port == "traffic-port" else int(settings.port)
        conn = http.client.HTTPConnection(target.host, port, timeout=timeout)
        sent = time.monotonic()
        try:
            conn.request("GET", settings.path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
            response = conn.getresponse()
            response.read()
            if time.monotonic() - sent > timeout:
                reason = "Target.Timeout"
            elif response.status in settings.codes:
                reason = ""
            else:
                reason = "Target.ResponseCodeMismatch"
        except TimeoutError:
            reason = "Target.Timeout"
        except (OSError, http.client.HTTPException):
            reason = "Target.FailedHealthChecks"
        finally:
            conn.close()
        self._record(group, key, target, settings, reason)

    def _record(
        self, group: str, key: str, target: _Target, settings: HealthCheckSettings, reason: str
    ) -> None:
        with self._lock:
            target.probing = False
            if self._groups.get(group, {}).get(key) is not target:
                return  # deregistered (or its group left the listeners) while the check was in flight
            # "When the health checks exceed HealthyThresholdCount consecutive successes, the load balancer
            # puts the target back in service"; "If the health checks exceed UnhealthyThresholdCount
            # consecutive failures, the load balancer takes the target out of service"; "Before a target can
            # receive requests from the load balancer, it must pass the initial health checks"
            # (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/target-group-health-checks.html;
            # botocore TargetHealth.Reason: Elb.InitialHealthChecking is "the minimum number of health checks
            # required to determine its health status").
            if not reason:
                target.successes, target.failures = target.successes + 1, 0
                if target.state != HEALTHY and target.successes >= settings.healthy_threshold:
                    target.state, target.reason = HEALTHY, ""
            else:
                target.successes, target.failures = 0, target.failures + 1
                if target.state != UNHEALTHY and target.failures >= settings.unhealthy_threshold:
                    target.state, target.reason = UNHEALTHY, reason

    def states(self, group: str) -> dict[str, str]:
        """The state of each of the group's registered targets ("ip:port" -> initial | healthy | unhealthy);
        `unused` when no listener forwards to the group (botocore TargetHealth.Reason Target.NotInUse)."""
        if group not in self.groups_in_use():
            return {f"{host}:{port}": UNUSED for host, port in registered_targets(group)}
        settings = HealthCheckSettings.of(group)
        if settings is None:
            return {}
        with self._lock:
            return {key: target.state for key, target in self._sync(group, settings).items()}

    def routable(self, group: str) -> list[tuple[str, int]]:
        """The targets of a group that may receive a request now: its healthy targets; with none, its
        unhealthy ones: "If a target group contains only unhealthy registered targets, the load balancer
        routes requests to all those targets, regardless of their health status" (target-group-health-checks;
        the default routing-failover threshold is one healthy target: botocore TargetGroupAttribute.Key
        target_group_health.unhealthy_state_routing.minimum_healthy_targets.count). An `initial` target never
        does: "Before a target can receive requests from the load balancer, it must pass the initial health
        checks". Fail-open is per target group: AWS documents no failover between a forward action's
        groups."""
        settings = HealthCheckSettings.of(group)
        if settings is None:
            return []
        with self._lock:
            targets = list(self._sync(group, settings).values())
        healthy = [(t.host, t.port) for t in targets if t.state == HEALTHY]
        return healthy or [(t.host, t.port) for t in targets if t.state == UNHEALTHY]


# ---------------------------------------------------------------------------------------------- metrics
@dataclass
class _Period:
    counts: dict[tuple[str, str | None], float] = field(default_factory=lambda: defaultdict(float))
    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


class _Metrics:
    """What a real ALB reports to CloudWatch, aggregated by the 60-AWS-second period in which each request was
    received (periods aligned on the drill clock)."""

    def __init__(self, lb_arn: str, scale: TimeScale) -> None:
        self.lb = lb_dimension(lb_arn)
        self.scale = scale
        self.period = scale.drill(METRIC_PERIOD)
        self._lock = threading.Lock()
        self._periods: dict[int, _Period] = {}

    def record(
        self,
        received: float,
        tg_arn: str | None,
        elb_status: int,
        target_status: int | None,
        seconds: float | None,
    ) -> None:
        """One answered request received at `received` (drill s); `seconds`: its TargetResponseTime."""
        tg = tg_dimension(tg_arn) if tg_arn else None
        with self._lock:
            # A request still in flight when its period was published lands in a second datum with the same
            # timestamp: CloudWatch aggregates the data points of one period.
            period = self._periods.setdefault(int(received // self.period), _Period())
            period.counts[("RequestCount", tg)] += 1
            if target_status is not None and target_status >= 500:
                period.counts[("HTTPCode_Target_5XX_Count", tg)] += 1
            if target_status is None and elb_status >= 500:
                period.counts[("HTTPCode_ELB_5XX_Count", None)] += 1
            if seconds is not None and tg:
                period.times[tg].append(seconds)

    def drain(self, ended_by: float | None = None) -> list[dict[str, Any]]:
        """The data of every period that has ended by `ended_by` (drill seconds), or of every period."""
        with self._lock:
            ready = sorted(k for k in self._periods if ended_by is None or (k + 1) * self.period <= ended_by)
            periods = [(k, self._periods.pop(k)) for k in ready]
        data: list[dict[str, Any]] = []
        for k, period in periods:
            data.extend(
                self._data(period, datetime.fromtimestamp(self.scale.timestamp(k * self.period), UTC))
            )
        return data

    def _data(self, period: _Period, stamp: datetime) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = []
        lb_requests = sum(v for (name, _), v in period.counts.items() if name == "RequestCount")
        if lb_requests:
            data.append(self._datum("RequestCount", None, lb_requests, "Count", stamp))
        for (name, tg), value in period.counts.items():
            if tg is not None or name != "RequestCount":
                data.append(self._datum(name, tg, value, "Count", stamp))
        for tg, values in period.times.items():
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
                    "Timestamp": stamp,
                }
                data.append(datum)
        return data

    def _dims(self, tg: str | None) -> list[dict[str, str]]:
        dims = [{"Name": "LoadBalancer", "Value": self.lb}]
        if tg:
            dims.append({"Name": "TargetGroup", "Value": tg})
        return dims

    def _datum(self, name: str, tg: str | None, value: float, unit: str, stamp: datetime) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": self._dims(tg),
            "Value": value,
            "Unit": unit,
            "Timestamp": stamp,
        }


# ---------------------------------------------------------------------------------------------- the proxy


# The health-check Lambda's requests (lambdas/health_check.py sends this User-Agent).
HEALTH_CHECK_USER_AGENT = "phoenix-health-check"


class _ListenerServer(ThreadingHTTPServer):
    """A listener's socket. Its accept backlog is the kernel's usual maximum, not socketserver's 5: at the
    drill's rates (120 requests a wall second at x120) a 50 ms pause of the accepting thread would overflow 5,
    the kernel would drop the SYNs and users would time out on connections an ALB accepts."""

    daemon_threads = True
    request_queue_size = 4096


class ListenerProxy(ServerThread):
    """One listener: an HTTP server on a free loopback port."""

    def __init__(
        self,
        listener_arn: str,
        listener_port: int,
        *,
        metrics: _Metrics,
        health: HealthChecker,
        scale: TimeScale,
        idle_timeout: float,
        log: Callable[[AccessLogEntry], None],
        seed: int = 0,
    ) -> None:
        self.listener_arn = listener_arn
        self.listener_port = listener_port
        self._metrics = metrics
        self._health = health
        self._scale = scale
        self._idle_timeout = idle_timeout
        self._log = log
        self._random = random.Random(seed)  # noqa: S311 - load balancing, not cryptography
        self._rr: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        server = _ListenerServer(("127.0.0.1", 0), self._handler_class())
        self.port = int(server.server_address[1])
        super().__init__(server, name=f"alb-{listener_port}")

    def pick(self) -> tuple[str | None, tuple[str, int] | None]:
        """Choose a target group by weight, then one of its routable targets round robin."""
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
        targets = self._health.routable(chosen)
        if not targets:
            return chosen, None
        with self._lock:
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
        """Serve one request. The health-check Lambda's (its User-Agent) are served with the AWS clock held,
        then cost their measured service time: its hook sends over a hundred requests a round, which this
        machine serves at about 130 a wall second (minutes of AWS time at x120), AWS in under a second."""
        if HEALTH_CHECK_USER_AGENT not in request.headers.get("User-Agent", ""):
            self._serve(request)
            return
        began = time.monotonic()
        with self._scale.hold("health-check Lambda request", record=False):
            seconds = self._serve(request)
        # Unanswered by a target (the ALB's 502/504, or 503 without one): as long as without the hold.
        self._scale.sleep(self._scale.drill(seconds) if seconds is not None else time.monotonic() - began)

    def _serve(self, request: BaseHTTPRequestHandler) -> float | None:
        """Forward to a target (or answer as the ALB), log, answer; the target's service time, if any."""
        started = self._scale.now()
        tg_arn, target = self.pick()
        body = b""
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            body = request.rfile.read(length)
        status, target_status, headers, payload = (
            503,
            None,
            ELB_HEADERS,
            b"503 Service Unavailable",
        )
        seconds: float | None = None
        if target is not None:
            status, target_status, headers, payload, seconds = self._forward(request, target, body)
        self._metrics.record(started, tg_arn, status, target_status, seconds)
        self._log(
            AccessLogEntry(
                started=started,
                ended=self._scale.now(),
                listener_port=self.listener_port,
                target_group_arn=tg_arn,
                target=f"{target[0]}:{target[1]}" if target else None,
                elb_status=status,
                target_status=target_status,
                request_id=request.headers.get("X-Request-Id"),
            )
        )
        try:
            # Not send_response: it adds Python's own Server header; the Server is the target's, or the ALB's.
            request.send_response_only(status)
            request.send_header("Date", request.date_time_string())
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    request.send_header(name, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
        except OSError:
            pass  # the client gave up (its own timeout); the access log has the request already
        return seconds

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
            # TargetResponseTime as measured, not scaled: a request's service time is physical (the app
            # answers in real milliseconds, as on AWS); only AWS's waits and intervals are scaled.
            elapsed = time.monotonic() - sent
            return response.status, response.status, response.getheaders(), payload, elapsed
        except TimeoutError:
            return 504, None, ELB_HEADERS, b"504 Gateway Time-out", None
        except (OSError, http.client.HTTPException):
            return 502, None, ELB_HEADERS, b"502 Bad Gateway", None
        finally:
            conn.close()


class LoadBalancer(Lifecycle):
    """All listeners of one ALB, proxied on loopback, with its health checks and its metric publisher."""

    def __init__(
        self,
        cloudwatch: Any,
        lb_arn: str,
        listeners: dict[int, str],
        *,
        scale: TimeScale,
        idle_timeout: float,
        log: Callable[[AccessLogEntry], None] | None = None,
    ) -> None:
        self.lb_arn = lb_arn
        self.scale = scale
        self._cloudwatch = cloudwatch
        self._metrics = _Metrics(lb_arn, scale)
        self.health = HealthChecker(list(listeners.values()), scale)
        self.access_log: list[AccessLogEntry] = []
        self._log_lock = threading.Lock()
        self._extra_log = log
        self.listeners = {
            port: ListenerProxy(
                arn,
                port,
                metrics=self._metrics,
                health=self.health,
                scale=scale,
                idle_timeout=idle_timeout,
                log=self._record,
                seed=port,
            )
            for port, arn in listeners.items()
        }
        # Both loops tick every AWS second (at most every 10 ms of wall time) on the AWS clock: a check is
        # sent, and an ended period published, at most one tick after it is due.
        tick = max(scale.drill(1.0), 0.01)
        self._checker = Loop("alb-health", self.health.step, every=tick, clock=scale.now)
        # A period's data once it has ended; the last partial period when the drill ends.
        self._publisher = Loop(
            "alb-metrics", self._publish_ended, every=tick, clock=scale.now, final=self.publish
        )

    def _record(self, entry: AccessLogEntry) -> None:
        with self._log_lock:
            self.access_log.append(entry)
        if self._extra_log:
            self._extra_log(entry)

    def url(self, listener_port: int) -> str:
        return self.listeners[listener_port].url

    def target_states(self, target_group_arn: str) -> dict[str, str]:
        """ "ip:port" -> "initial" | "healthy" | "unhealthy" for each registered target of the group ("unused"
        when no listener of this load balancer forwards to the group: AWS does not check those)."""
        return self.health.states(target_group_arn)

    def all_healthy(self, target_group_arn: str, addresses: list[str]) -> bool:
        """Whether every one of `addresses` ("ip:port") is registered with the group and healthy."""
        states = self.target_states(target_group_arn)
        return all(states.get(address) == HEALTHY for address in addresses)

    def start(self) -> Self:
        for proxy in self.listeners.values():
            proxy.start()
        self._checker.start()
        self._publisher.start()
        return self

    def stop(self) -> None:
        self._checker.stop()
        for proxy in self.listeners.values():
            proxy.stop()
        self._publisher.stop()  # after the listeners: its last flush has every answered request

    def _publish_ended(self) -> None:
        self._put(self._metrics.drain(ended_by=self.scale.now()))

    def publish(self) -> None:
        """Put every period's data into CloudWatch now, the current partial period included."""
        self._put(self._metrics.drain())

    def _put(self, data: list[dict[str, Any]]) -> None:
        if not data:
            return
        # Putting into moto is the stand-in's work, not AWS time.
        with self.scale.hold("ALB metrics put", record=False):
            self._put_now(data)

    def _put_now(self, data: list[dict[str, Any]]) -> None:
        for start in range(0, len(data), 20):
            chunk = data[start : start + 20]
            self._cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=chunk)
