"""The ALB stand-in (local/aws/elbv2.py) against moto's ELBv2 and real loopback targets: target health checks,
routing to healthy targets only, fail-open, target states, metric periods and the deregistration delay.

Targets are small HTTP servers on their own 127.0.0.N address (moto keys a group's targets by address). The
time scale is large (x60 or x600), so a health check interval of 5 AWS seconds is a few wall milliseconds;
every wait is for a condition with a generous deadline, never a fixed sleep that must be long enough.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from local.aws.elbv2 import LoadBalancer, deregistration_delay_seconds
from local.background import ServerThread
from local.timescale import TimeScale

REGION = "us-east-1"
DEADLINE = 20.0  # wall seconds for any awaited condition (each is expected within a second or two)
_addresses = itertools.count()


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


# ---------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """A loopback HTTP target: /health answers as `health` says ("ok" 200, "fail" 500, "hang" no answer
    until the end of the test); /slow answers after 50 ms; anything else 200 with the target's address."""

    host: str
    health: str = "ok"
    health_ok: int = 0
    health_failed: int = 0
    health_hung: int = 0
    served: int = 0
    health_ok_before_first_request: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ServerThread | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server.server_address[1])

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        status, body = 200, self.address.encode()
        if request.path == "/health":
            with self.lock:
                mode = self.health
                if mode == "hang":
                    self.health_hung += 1
            if mode == "hang":
                self.release.wait(10)
                return
            with self.lock:
                if mode == "ok":
                    self.health_ok += 1
                else:
                    self.health_failed += 1
            status = 200 if mode == "ok" else 500
        else:
            with self.lock:
                if self.served == 0:
                    self.health_ok_before_first_request = self.health_ok
                self.served += 1
            if request.path == "/slow":
                time.sleep(0.05)
        try:
            request.send_response(status)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except OSError:
            return


@pytest.fixture
def make_target() -> Iterator[Callable[..., Target]]:
    started: list[Target] = []

    def make(health: str = "ok") -> Target:
        n = next(_addresses)
        target = Target(host=f"127.0.{100 + n // 250}.{1 + n % 250}", health=health)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                target.handle(self)

        server = ThreadingHTTPServer((target.host, 0), Handler)
        server.daemon_threads = True
        target.server = ServerThread(server, name=f"target-{target.host}").start()
        started.append(target)
        return target

    yield make
    for target in started:
        target.release.set()
    stopping = [threading.Thread(target=t.server.stop) for t in started if t.server is not None]
    for thread in stopping:
        thread.start()
    for thread in stopping:
        thread.join()


# ---------------------------------------------------------------------------------------------- moto
class Elb:
    """One ALB in moto (VPC, two subnets) and helpers to create its groups and listeners."""

    def __init__(self) -> None:
        ec2 = boto3.client("ec2", region_name=REGION)
        self.vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{az}")[
                "Subnet"
            ]["SubnetId"]
            for i, az in enumerate("ab")
        ]
        self.client = boto3.client("elbv2", region_name=REGION)
        self.cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        self.lb_arn = self.client.create_load_balancer(Name="alb", Subnets=subnets)["LoadBalancers"][0][
            "LoadBalancerArn"
        ]

    def group(
        self,
        name: str = "blue",
        *,
        interval: int = 5,
        timeout: int = 2,
        healthy: int = 2,
        unhealthy: int = 2,
        matcher: str = "200",
    ) -> str:
        return str(
            self.client.create_target_group(
                Name=name,
                Protocol="HTTP",
                Port=8080,
                VpcId=self.vpc,
                TargetType="ip",
                HealthCheckProtocol="HTTP",
                HealthCheckPath="/health",
                HealthCheckIntervalSeconds=interval,
                HealthCheckTimeoutSeconds=timeout,
                HealthyThresholdCount=healthy,
                UnhealthyThresholdCount=unhealthy,
                Matcher={"HttpCode": matcher},
            )["TargetGroups"][0]["TargetGroupArn"]
        )

    def listener(self, group: str, port: int = 80) -> str:
        return str(
            self.client.create_listener(
                LoadBalancerArn=self.lb_arn,
                Protocol="HTTP",
                Port=port,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
            )["Listeners"][0]["ListenerArn"]
        )

    def register(self, group: str, *targets: Target) -> None:
        self.client.register_targets(
            TargetGroupArn=group, Targets=[{"Id": t.host, "Port": t.port} for t in targets]
        )

    def deregister(self, group: str, *targets: Target) -> None:
        self.client.deregister_targets(
            TargetGroupArn=group, Targets=[{"Id": t.host, "Port": t.port} for t in targets]
        )


@pytest.fixture
def elb(moto: None) -> Elb:
    return Elb()


@pytest.fixture
def start_alb(elb: Elb) -> Iterator[Callable[..., LoadBalancer]]:
    started: list[LoadBalancer] = []

    def start(listeners: dict[int, str], scale: TimeScale, cloudwatch: Any = None) -> LoadBalancer:
        alb = LoadBalancer(
            cloudwatch or elb.cloudwatch, elb.lb_arn, listeners, scale=scale, idle_timeout=5.0
        ).start()
        started.append(alb)
        return alb

    yield start
    for alb in started:
        alb.stop()


def get(alb: LoadBalancer, path: str = "/", port: int = 80) -> tuple[int, str]:
    host, listen = alb.url(port).removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(listen), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- health
def test_a_new_target_gets_no_request_before_it_passes_healthy_threshold_checks(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    group = elb.group(interval=5, healthy=5)
    old, new = make_target(), make_target()
    elb.register(group, old)
    alb = start_alb({80: elb.listener(group)}, TimeScale(factor=60))
    wait_for(lambda: alb.all_healthy(group, [old.address]), "the first target healthy")

    elb.register(group, new)
    assert alb.target_states(group)[new.address] == "initial"
    statuses: Counter[int] = Counter()
    end = time.monotonic() + DEADLINE
    while new.served == 0 and time.monotonic() < end:
        statuses[get(alb)[0]] += 1

    assert new.served > 0, "the new target never received a request"
    assert new.health_ok_before_first_request is not None
    assert new.health_ok_before_first_request >= 5  # HealthyThresholdCount successes first
    assert alb.target_states(group)[new.address] == "healthy"
    assert set(statuses) == {200}  # the healthy target served meanwhile
    assert old.served == statuses[200] - new.served > 0


def test_a_failing_target_is_taken_out_after_unhealthy_threshold_failures_while_a_healthy_one_serves(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    group = elb.group(interval=5, healthy=2, unhealthy=4)
    good, bad = make_target(), make_target()
    elb.register(group, good, bad)
    alb = start_alb({80: elb.listener(group)}, TimeScale(factor=60))
    wait_for(lambda: alb.all_healthy(group, [good.address, bad.address]), "both targets healthy")

    bad.health = "fail"
    wait_for(lambda: alb.target_states(group)[bad.address] == "unhealthy", "the failing target unhealthy")
    assert bad.health_failed >= 4  # never taken out before UnhealthyThresholdCount failures
    served_before = bad.served
    answers = [get(alb) for _ in range(20)]

    assert answers == [(200, good.address)] * 20
    assert bad.served == served_before
    assert alb.target_states(group)[good.address] == "healthy"


def test_a_hanging_target_becomes_unhealthy(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    group = elb.group(interval=5, timeout=2, healthy=2, unhealthy=2)
    good, hung = make_target(), make_target()
    elb.register(group, good, hung)
    alb = start_alb({80: elb.listener(group)}, TimeScale(factor=60))
    wait_for(lambda: alb.all_healthy(group, [good.address, hung.address]), "both targets healthy")

    hung.health = "hang"
    wait_for(lambda: alb.target_states(group)[hung.address] == "unhealthy", "the hanging target unhealthy")

    assert hung.health_hung >= 2
    assert alb.target_states(group)[good.address] == "healthy"
    assert {get(alb) for _ in range(10)} == {(200, good.address)}


def test_a_group_whose_targets_are_all_unhealthy_fails_open_to_all_of_them(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    group = elb.group(interval=5, healthy=2, unhealthy=2)
    first, second = make_target("fail"), make_target("fail")
    elb.register(group, first, second)
    alb = start_alb({80: elb.listener(group)}, TimeScale(factor=600))
    wait_for(
        lambda: (
            set(alb.target_states(group).values()) == {"unhealthy"} and len(alb.target_states(group)) == 2
        ),
        "both targets unhealthy",
    )

    answers = Counter(get(alb) for _ in range(20))

    assert answers == {(200, first.address): 10, (200, second.address): 10}


def test_targets_still_in_their_initial_checks_get_no_request_and_a_group_without_targets_answers_503(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    scale = TimeScale(factor=600)
    waiting, empty = elb.group("waiting", interval=300, healthy=10), elb.group("empty")
    target = make_target()
    elb.register(waiting, target)
    alb = start_alb({80: elb.listener(waiting), 8080: elb.listener(empty, port=8080)}, scale)
    seen = scale.now()

    assert get(alb)[0] == 503  # its only target is `initial`: not unhealthy, so no fail-open either
    assert alb.target_states(waiting) == {target.address: "initial"}
    assert target.served == 0
    assert get(alb, port=8080)[0] == 503
    assert [e.elb_status for e in alb.access_log] == [503, 503]
    # The first check comes one interval (300 AWS s, 0.5 s here) after registration, not at once: a late
    # machine can only delay it further.
    scale.sleep_until(seen + scale.drill(150))
    assert target.health_ok == 0


def test_target_states_and_all_healthy_answer_for_registered_targets_only(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    group, spare = elb.group("blue", interval=5, healthy=3), elb.group("green", interval=5, healthy=2)
    first, second, other = make_target(), make_target(), make_target()
    elb.register(group, first)
    alb = start_alb({80: elb.listener(group)}, TimeScale(factor=600))

    assert alb.target_states(group) == {first.address: "initial"}
    assert not alb.all_healthy(group, [first.address])
    wait_for(lambda: alb.all_healthy(group, [first.address]), "the target healthy")
    assert alb.target_states(group) == {first.address: "healthy"}
    assert not alb.all_healthy(group, [first.address, second.address])  # the second is not registered

    elb.register(group, second)
    assert alb.target_states(group) == {first.address: "healthy", second.address: "initial"}
    assert not alb.all_healthy(group, [first.address, second.address])
    wait_for(lambda: alb.all_healthy(group, [first.address, second.address]), "both targets healthy")

    elb.deregister(group, first)
    assert alb.target_states(group) == {second.address: "healthy"}
    assert not alb.all_healthy(group, [first.address])

    # A group no listener forwards to is not checked at all: its targets stay `unused` (AWS: Target.NotInUse).
    elb.register(spare, other)
    checks = second.health_ok
    wait_for(lambda: second.health_ok >= checks + 6, "six more checks of the group in use")
    assert alb.target_states(spare) == {other.address: "unused"}
    assert other.health_ok == 0
    assert not alb.all_healthy(spare, [other.address])


# ---------------------------------------------------------------------------------------------- metrics
class Recorder:
    """The cloudwatch client, recording when (drill seconds) each PutMetricData was made and what it put."""

    def __init__(self, client: Any, scale: TimeScale) -> None:
        self.client, self.scale = client, scale
        self.calls: list[tuple[float, list[dict[str, Any]]]] = []

    def put_metric_data(self, **kwargs: Any) -> Any:
        self.calls.append((self.scale.now(), kwargs["MetricData"]))
        return self.client.put_metric_data(**kwargs)


def test_metric_data_carry_the_start_of_the_period_of_their_requests_and_are_put_once_it_has_ended(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    scale = TimeScale(factor=600)
    period = scale.drill(60)
    group = elb.group(interval=5, healthy=2)
    target = make_target()
    elb.register(group, target)
    recorder = Recorder(elb.cloudwatch, scale)
    alb = start_alb({80: elb.listener(group)}, scale, recorder)
    wait_for(lambda: alb.all_healthy(group, [target.address]), "the target healthy")

    deadline = time.monotonic() + 30

    def periods() -> int:
        return len({int(e.started // period) for e in alb.access_log})

    # Requests in at least four periods (counted, not timed: a busy machine may stall one request past one).
    while periods() < 4 and time.monotonic() < deadline:
        get(alb, "/slow" if len(alb.access_log) % 5 == 0 else "/")
    last = int(alb.access_log[-1].started // period)
    wait_for(lambda: any(now >= (last + 1) * period for now, _ in recorder.calls), "the last period put")
    stopping = scale.now()
    alb.stop()

    received = Counter(int(e.started // period) for e in alb.access_log)
    put: Counter[datetime] = Counter()
    response_times: list[float] = []
    for now, data in recorder.calls:
        for datum in data:
            stamp = datum["Timestamp"]
            k = round((stamp.timestamp() - scale.wall_epoch) / period)
            assert stamp == datetime.fromtimestamp(scale.timestamp(k * period), UTC)
            if now < stopping:  # the loop's puts; the one at stop may flush a partial period
                assert now >= (k + 1) * period, f"period {k} put before it ended"
            if datum["MetricName"] == "RequestCount" and len(datum["Dimensions"]) == 1:
                put[stamp] += datum["Value"]
            if datum["MetricName"] == "TargetResponseTime":
                response_times.extend(datum["Values"])
    assert len(received) >= 4
    assert put == {datetime.fromtimestamp(scale.timestamp(k * period), UTC): n for k, n in received.items()}
    # /slow's 50 ms as measured: a request's service time is physical, not scaled like AWS's waits.
    assert 0.05 <= max(response_times) < scale.aws(0.05)
    names = {m["MetricName"] for m in elb.cloudwatch.list_metrics(Namespace="AWS/ApplicationELB")["Metrics"]}
    assert {"RequestCount", "TargetResponseTime"} <= names


def test_the_access_log_is_on_the_drill_clock(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    scale = TimeScale(factor=600)
    group = elb.group(interval=5, healthy=2)
    target = make_target()
    elb.register(group, target)
    alb = start_alb({80: elb.listener(group)}, scale)
    wait_for(lambda: alb.all_healthy(group, [target.address]), "the target healthy")

    before = scale.now()
    get(alb, "/slow")
    after = scale.now()

    [entry] = alb.access_log
    assert before <= entry.started <= entry.ended <= after
    assert entry.ended - entry.started >= 0.05
    assert (entry.target, entry.elb_status, entry.target_status) == (target.address, 200, 200)


# ------------------------------------------------------------------------------------------- deregistration
def test_the_deregistration_delay_is_the_group_attribute_and_300_seconds_by_default(elb: Elb) -> None:
    default, short = elb.group("default"), elb.group("short")
    elb.client.modify_target_group_attributes(
        TargetGroupArn=short, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}]
    )

    assert deregistration_delay_seconds(default) == 300.0
    assert deregistration_delay_seconds(short) == 30.0


def test_a_listener_takes_a_burst_of_connections_while_its_accepting_thread_is_busy(
    elb: Elb, start_alb: Callable[..., LoadBalancer]
) -> None:
    """An ALB accepts connections whatever its own pace: with socketserver's backlog of 5, a pause of the
    listener's accepting thread (the drill's process busy starting tasks) overflowed the queue, the kernel
    dropped the SYNs and users timed out on connections an ALB would have taken."""
    alb = start_alb({80: elb.listener(elb.group("burst"))}, TimeScale(factor=600))
    server = alb.listeners[80].server
    paused, release = threading.Event(), threading.Event()
    process_request = server.process_request

    def stalled(request: Any, client_address: Any) -> None:
        paused.set()
        release.wait(10)
        process_request(request, client_address)

    server.process_request = stalled  # type: ignore[method-assign]
    host, port = alb.url(80).removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=5)]
    assert paused.wait(5)
    try:
        # 40 more connections while the accepting thread is stuck: each must be taken by the kernel at once.
        for _ in range(40):
            sockets.append(socket.create_connection((host, int(port)), timeout=0.5))
    finally:
        release.set()
        for sock in sockets:
            sock.close()


def test_the_health_check_lambdas_requests_are_served_with_the_clock_held(
    elb: Elb, make_target: Callable[..., Target], start_alb: Callable[..., LoadBalancer]
) -> None:
    """Its hook's test traffic (120 requests a round) would take minutes of AWS time at this machine's pace:
    the clock is held while it is served, then it costs the target's service time (local/README.md)."""
    group = elb.group(interval=5, healthy=2)
    target = make_target()
    elb.register(group, target)
    scale = TimeScale(factor=60)
    alb = start_alb({80: elb.listener(group)}, scale)
    wait_for(lambda: alb.all_healthy(group, [target.address]), "the target healthy")
    host, port = alb.url(80).removeprefix("http://").split(":")

    def slow(user_agent: str) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/slow", headers={"User-Agent": user_agent})
            return conn.getresponse().status
        finally:
            conn.close()

    assert slow("python-requests/2.32 phoenix-drill-user") == 200
    assert "health-check Lambda request" not in scale.held_by_reason
    assert slow("phoenix-health-check") == 200
    # The target's 50 ms answer was served with the clock held (the hold ends just after the answer is sent).
    wait_for(lambda: scale.held_by_reason.get("health-check Lambda request", 0.0) >= 0.05, "the hold")
