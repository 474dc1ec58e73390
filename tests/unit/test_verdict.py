"""health_check.verdict, as a table: the validation rounds so far (each taken some seconds after the first),
the configuration and the seconds left -> Succeeded, Failed (why) or ProbeAgain (after a pause). No HTTP, no
AWS, no clock."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import health_check as hc
import pytest
from canary_judge import Counts
from phoenix_common import ConfigError

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


# --------------------------------------------------------------------------------------------- test traffic
TRAFFIC = '{"requests": [{"method": "GET", "path": "/", "expect": [200]}], "requests_per_round": 60}'
WITH_TRAFFIC = hc.load_config({**ENV, "TEST_TRAFFIC": TRAFFIC})


def judged_rounds(*failures: tuple[int, int]) -> list[Any]:
    """Passed /health rounds, each with test traffic: (the original's, the replacement's) failures of 60."""
    url = WITH_TRAFFIC.test_url + WITH_TRAFFIC.health_path
    passed = hc.summarise("test", url, HEALTHY, WITH_TRAFFIC)
    return [
        replace(passed, at=10.0 * i, baseline=Counts(60, base), canary=Counts(60, canary))
        for i, (base, canary) in enumerate(failures)
    ]


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        # Half its requests fail, none of the original's: beyond doubt at the first look.
        (((0, 30),), "Failed"),
        # A fifth fail: 12 of 60 against 0 of 60 is beyond doubt at alpha / 3 too.
        (((0, 12),), "Failed"),
        # Both noisy alike: never worse beyond doubt.
        (((2, 1), (1, 2), (1, 1)), "Succeeded"),
        # A little worse than the original but not beyond doubt by the last round: passed on.
        (((0, 1), (0, 2), (1, 1)), "Succeeded"),
        # Cumulative: three rounds of 4 of 60 against none are beyond doubt only together.
        (((0, 4), (0, 4)), "ProbeAgain"),
        (((0, 4), (0, 4), (0, 4)), "Failed"),
    ],
    ids=["50 %", "20 %", "noisy both", "slightly worse", "4 of 60 twice", "4 of 60 thrice"],
)
def test_the_test_traffic_of_the_replacement_is_judged_against_the_originals(
    failures: tuple[tuple[int, int], ...], expected: str
) -> None:
    answer = hc.verdict(judged_rounds(*failures), WITH_TRAFFIC, 60)
    assert type(answer).__name__ == expected, answer
    if expected == "Failed":
        assert isinstance(answer, hc.Failed)
        assert answer.reason.startswith("test traffic: canary ")
        assert "worse beyond doubt" in answer.reason
    if expected == "Succeeded":
        assert isinstance(answer, hc.Succeeded)
        assert "3 of 3 validation rounds passed; test traffic: canary " in answer.reason


def test_a_failing_health_round_sends_no_test_traffic_and_fails_as_before() -> None:
    failing = replace(hc.summarise("test", WITH_TRAFFIC.test_url, FAILING, WITH_TRAFFIC), at=10.0)
    answer = hc.verdict([*judged_rounds((0, 0)), failing, replace(failing, at=20.0)], WITH_TRAFFIC, 60)
    assert answer == hc.Failed("2 of 3 validation rounds failed")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "TEST_TRAFFIC is not valid"),
        ('{"requests": [], "requests_per_round": 10}', "must list 1 to 20 requests"),
        (
            '{"requests": [{"path": "/"}], "requests_per_round": 0}',
            "requests_per_round must be a whole number",
        ),
        (
            '{"requests": [{"path": "/"}], "requests_per_round": 101}',
            "requests_per_round must be a whole number",
        ),
        (
            '{"requests": [{"path": "/"}], "requests_per_round": true}',
            "requests_per_round must be a whole number",
        ),
        (
            '{"requests": [{"method": "POST", "path": "/"}], "requests_per_round": 5}',
            "is not one of GET, HEAD",
        ),
        ('{"requests": [{"path": "health"}], "requests_per_round": 5}', "path must start with '/'"),
        ('{"requests": [{"path": "/", "expect": []}], "requests_per_round": 5}', "expect must list HTTP"),
        ('{"requests": [{"path": "/", "expect": [700]}], "requests_per_round": 5}', "expect must list HTTP"),
        ('{"requests": [{"path": "/", "body": "x"}], "requests_per_round": 5}', "a request is an object"),
        ('{"requests": [{"path": "/"}]}', "TEST_TRAFFIC is not valid"),
    ],
)
def test_a_bad_test_traffic_setting_is_named(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        hc.load_config({**ENV, "TEST_TRAFFIC": value})


def test_test_traffic_is_optional_and_judged_once_per_validation_round() -> None:
    assert CONFIG.test_traffic is None
    traffic = WITH_TRAFFIC.test_traffic
    assert traffic is not None
    assert (traffic.per_round, traffic.policy.looks) == (60, WITH_TRAFFIC.validation_rounds)
    assert traffic.requests == (hc.TrafficRequest("GET", "/", frozenset({200})),)
    timeouts = CONFIG.probe_connect_timeout + CONFIG.probe_read_timeout
    assert WITH_TRAFFIC.round_budget_s == CONFIG.round_budget_s + timeouts
