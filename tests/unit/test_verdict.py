"""health_check.verdict, as a table: the validation rounds so far, the configuration and the seconds left ->
Succeeded, Failed (why) or ProbeAgain (after a pause). No HTTP, no AWS, no clock."""

from __future__ import annotations

from dataclasses import dataclass
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
# VALIDATION_ROUNDS 3, VALIDATION_INTERVAL_SECONDS 10, ALARM_THRESHOLD 2; a round takes at most 2 + 3 + 1 s.
CONFIG = hc.load_config(ENV)
HEALTHY = [hc.Probe(True, 35.0, "ok")] * 5
FAILING = [hc.Probe(True, 40.0, "ok")] * 3 + [hc.Probe(False, 3000.0, "read timeout")] * 2  # 40 % errors


def rounds(pattern: str) -> list[Any]:
    """ "pf" -> a passed round, then a failed one (probes as the probe round would record them)."""
    url = CONFIG.test_url + CONFIG.health_path
    return [hc.summarise("test", url, HEALTHY if c == "p" else FAILING, CONFIG) for c in pattern]


@dataclass(frozen=True)
class Case:
    pattern: str
    remaining: float
    expected: Any
    env: dict[str, str] | None = None


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
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_verdict(case: Case) -> None:
    config = hc.load_config({**ENV, **(case.env or {})})
    assert hc.verdict(rounds(case.pattern), config, case.remaining) == case.expected


def test_answers_carry_the_status_codedeploy_takes() -> None:
    assert (hc.Succeeded("").status, hc.Failed("").status) == ("Succeeded", "Failed")


def test_a_round_fails_above_the_error_rate_or_the_latency() -> None:
    url = CONFIG.test_url + CONFIG.health_path
    assert not hc.summarise("test", url, HEALTHY, CONFIG).failed
    assert hc.summarise("test", url, FAILING, CONFIG).failed  # 40 % > MAX_ERROR_RATE 20 %
    slow = [hc.Probe(True, 1500.0, "ok")] * 5  # p95 1500 ms > MAX_LATENCY_P95_MS 1000 ms
    assert hc.summarise("test", url, slow, CONFIG).failed
    assert hc.summarise("test", url, [], CONFIG).failed  # no probe ran: nothing passed
