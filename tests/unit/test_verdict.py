"""health_check.verdict, as a table: the validation rounds so far (each taken some seconds after the first),
the configuration and the seconds left -> Succeeded, Failed (why) or ProbeAgain (after a pause). No HTTP, no
AWS, no clock."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import health_check as hc
import pytest

pytestmark = pytest.mark.unit

ENV = {
    "ENVIRONMENT": "dev",
    "PRODUCTION_URL": "http://my-alb.example.com",
    "TEST_URL": "http://my-alb.example.com:8080",
    "CODEDEPLOY_APPLICATION": "phoenix-dev",
    "CODEDEPLOY_DEPLOYMENT_GROUP": "phoenix-dev-sample-app",
}
# VALIDATION_ROUNDS 3, VALIDATION_INTERVAL_SECONDS 10, ALARM_THRESHOLD 2, TARGET_READY_SECONDS 90; a round
# takes at most 2 + 3 + 1 s.
CONFIG = hc.load_config(ENV)
HEALTHY = [hc.Probe(True, 35.0, "ok")] * 5
FAILING = [hc.Probe(True, 40.0, "ok")] * 3 + [hc.Probe(False, 3000.0, "read timeout")] * 2  # 40 % errors
# The ALB's own 503 (Server: awselb/2.0): the target group behind the test listener has no routable target.
LB_503 = hc.Probe(False, 2.0, "HTTP 503 from the load balancer", load_balancer_503=True)
NOT_READY = [LB_503] * 5
PROBES = {"p": HEALTHY, "f": FAILING, "n": NOT_READY}


def rounds(pattern: str, spacing: float = 10.0, config: Any = CONFIG) -> list[Any]:
    """ "pfn" -> a passed round, a failed one, one where every probe got the load balancer's 503 (probes as
    the probe round would record them with `config`), taken `spacing` seconds apart from the first."""
    url = config.test_url + config.health_path
    return [
        replace(hc.summarise("test", url, PROBES[c], config), at=i * spacing) for i, c in enumerate(pattern)
    ]


@dataclass(frozen=True)
class Case:
    pattern: str
    remaining: float
    expected: Any
    env: dict[str, str] | None = None
    spacing: float = 10.0


def no_target_after(seconds: int) -> Any:
    return hc.Failed(f"no healthy target behind the test listener after {seconds} s")


CASES = {
    "first round, time enough": Case("", 60, hc.ProbeAgain(0.0)),
    "first round, no time": Case("", 5.9, hc.Failed("no time left to validate the replacement")),
    "after a pass, the interval": Case("p", 60, hc.ProbeAgain(10.0)),
    "after a pass, a shortened interval": Case("p", 10, hc.ProbeAgain(4.0)),
    "after a failure, the interval": Case("f", 60, hc.ProbeAgain(10.0)),
    "threshold reached early": Case("ff", 60, hc.Failed("2 of 2 validation rounds failed")),
    "threshold reached last": Case("fpf", 60, hc.Failed("2 of 3 validation rounds failed")),
    "all passed": Case("ppp", 60, hc.Succeeded("3 of 3 validation rounds passed")),
    "one failure, then passes": Case("fpp", 60, hc.Succeeded("2 of 3 validation rounds passed")),
    "the last round failed": Case("ppf", 60, hc.Failed("the last validation round failed")),
    "time ran out after a pass": Case("p", 5, hc.Succeeded("1 of 1 validation rounds passed")),
    "time ran out after a failure": Case("f", 5, hc.Failed("the last validation round failed")),
    "threshold above the rounds": Case(
        "f",
        60,
        hc.Failed("1 of 1 validation rounds failed"),
        {"VALIDATION_ROUNDS": "1", "ALARM_THRESHOLD": "3"},
    ),
    "no interval": Case("p", 60, hc.ProbeAgain(0.0), {"VALIDATION_INTERVAL_SECONDS": "0"}),
    # AllowTestTraffic has just put the replacement's target group behind the test listener: its targets are
    # `initial` until they pass the ALB's health checks, and the ALB answers 503 itself meanwhile.
    "not routable yet: probe again, not failed": Case("n", 60, hc.ProbeAgain(10.0)),
    "not routable yet, as many rounds as VALIDATION_ROUNDS: none counted": Case(
        "nnn", 60, hc.ProbeAgain(10.0)
    ),
    "not routable yet up to TARGET_READY_SECONDS included": Case(
        "n" * 10, 60, hc.ProbeAgain(10.0), {"ALARM_THRESHOLD": "1"}
    ),
    "not routable just after TARGET_READY_SECONDS": Case(
        "n" * 11, 60, no_target_after(100), {"ALARM_THRESHOLD": "1"}
    ),
    "not routable after TARGET_READY_SECONDS: one failed round": Case(
        "nnn", 60, hc.ProbeAgain(10.0), spacing=50
    ),
    "not routable after TARGET_READY_SECONDS: failed rounds to the threshold": Case(
        "nnnn", 60, no_target_after(150), spacing=50
    ),
    "not routable after TARGET_READY_SECONDS, threshold 1": Case(
        "nnn", 60, no_target_after(100), {"ALARM_THRESHOLD": "1"}, spacing=50
    ),
    "not routable after a shorter TARGET_READY_SECONDS": Case(
        "nnnn", 60, no_target_after(30), {"TARGET_READY_SECONDS": "15"}
    ),
    "time ran out while not routable yet": Case("nn", 5, no_target_after(10)),
    "time ran out after a not-routable round past the window": Case(
        "nnn", 5, no_target_after(100), spacing=50
    ),
    "healthy release, two ALB 503 rounds first": Case(
        "nnppp", 60, hc.Succeeded("3 of 3 validation rounds passed")
    ),
    "healthy release, two ALB 503 rounds first, still counting": Case("nnpp", 60, hc.ProbeAgain(10.0)),
    "ALB 503 rounds first, then failing rounds": Case(
        "nnff", 60, hc.Failed("2 of 2 validation rounds failed")
    ),
    "ALB 503 after a routable round: an ordinary failure": Case("pn", 60, hc.ProbeAgain(10.0)),
    "ALB 503 rounds after a routable round: ordinary failures": Case(
        "pnn", 60, hc.Failed("2 of 3 validation rounds failed")
    ),
    "ALB 503 as the last round after routable ones": Case(
        "ppn", 60, hc.Failed("the last validation round failed")
    ),
    "ALB 503 after a routable round, time ran out": Case(
        "pn", 5, hc.Failed("the last validation round failed")
    ),
    "ALB 503 after a routable round fails even at MAX_ERROR_RATE 100": Case(
        "pn", 5, hc.Failed("the last validation round failed"), {"MAX_ERROR_RATE": "100"}
    ),
    "ALB 503 rounds after a routable round count as failed even at MAX_ERROR_RATE 100": Case(
        "pnn", 60, hc.Failed("2 of 3 validation rounds failed"), {"MAX_ERROR_RATE": "100"}
    ),
    "not routable past the window counts as failed even at MAX_ERROR_RATE 100": Case(
        "nnnn", 60, no_target_after(150), {"MAX_ERROR_RATE": "100"}, spacing=50
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_verdict(case: Case) -> None:
    config = hc.load_config({**ENV, **(case.env or {})})
    assert hc.verdict(rounds(case.pattern, case.spacing, config), config, case.remaining) == case.expected


def test_a_round_is_not_routable_only_when_every_probe_got_the_load_balancers_503() -> None:
    url = CONFIG.test_url + CONFIG.health_path
    assert hc.summarise("test", url, NOT_READY, CONFIG).not_ready
    assert hc.summarise("test", url, NOT_READY, CONFIG).failed
    mixed = [LB_503] * 4 + [hc.Probe(False, 3000.0, "read timeout")]
    assert not hc.summarise("test", url, mixed, CONFIG).not_ready
    assert not hc.summarise("test", url, [LB_503] * 4 + HEALTHY[:1], CONFIG).not_ready
    assert not hc.summarise("test", url, [], CONFIG).not_ready


def test_answers_carry_the_status_codedeploy_takes() -> None:
    assert (hc.Succeeded("").status, hc.Failed("").status) == ("Succeeded", "Failed")


def test_a_round_fails_above_the_error_rate_or_the_latency() -> None:
    url = CONFIG.test_url + CONFIG.health_path
    assert not hc.summarise("test", url, HEALTHY, CONFIG).failed
    assert hc.summarise("test", url, FAILING, CONFIG).failed  # 40 % > MAX_ERROR_RATE 20 %
    slow = [hc.Probe(True, 1500.0, "ok")] * 5  # p95 1500 ms > MAX_LATENCY_P95_MS 1000 ms
    assert hc.summarise("test", url, slow, CONFIG).failed
    assert hc.summarise("test", url, [], CONFIG).failed  # no probe ran: nothing passed
