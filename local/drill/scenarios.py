"""The drill's scenarios: each release, its faults and its expected outcome, as data; one generic check.

A `Scenario` is a release shipped on purpose (its fault variables for the sample app) and an `Expected`:
what its deployment must end as, which gate must act, which version must serve afterwards, whether
production traffic may reach it, how many rollback deployments and automatic redeployments it may cause,
how many user requests may fail, the notification it must send, whether an alarm must fire and what the
auto-rollback Lambda must do. A field left at None (or empty) is not checked. `check(expected, result)`
applies every rule to a measured `Result` and lists what differs; an empty list is "as expected". The
expectations are the phoenix policy's (make demo); the spec's literal rule (make bench) is measured only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from local.drill.results import LAMBDA_ACTIONS, Gate, Result
from local.timescale import TimeScale


class Serving(StrEnum):
    """Which version serves production at the end of the scenario."""

    RELEASE = "the release"
    ORIGINAL = "the original"


@dataclass(frozen=True)
class Expected:
    """A scenario's expected outcome; None or an empty tuple: not checked."""

    text: str  # in words, for the report and the README
    status: tuple[str, ...]  # the release's deployment ends in one of these CodeDeploy statuses
    serving: Serving
    error_code: str | None = None  # its errorInformation.code
    gate: Gate | None = None  # the gate that acts
    production_traffic: bool | None = None  # whether production traffic reaches the release
    rollbacks: int | None = None  # CodeDeploy rollback deployments
    redeployments: int | None = None  # automatic redeployments (the auto-rollback Lambda's); > 0: awaited
    redeployment_status: str | None = None  # how the (first) automatic redeployment ends
    max_failed_requests: int | None = None  # user requests failed or timed out, at most
    max_failed_percent: float | None = None  # the same as a share of all user requests, at most
    notification: tuple[str, ...] = ()  # a notification subject names one of these
    alarm_fires: bool = False  # some alarm goes to ALARM
    lambda_actions: tuple[str, ...] = ()  # the auto-rollback Lambda takes one of these actions


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    faults: Callable[[TimeScale], dict[str, str]]
    expected: Expected


Rule = Callable[[Expected, Result], str | None]


def _status(e: Expected, r: Result) -> str | None:
    status = r.deployment.status if r.deployment else "missing"
    code = r.deployment.error_code if r.deployment else None
    if status in e.status and (e.error_code is None or code == e.error_code):
        return None
    wanted = " or ".join(e.status) + (f" ({e.error_code})" if e.error_code else "")
    return f"deployment {status} ({code}), expected {wanted}"


def _gate(e: Expected, r: Result) -> str | None:
    if e.gate is None or r.gate == e.gate:
        return None
    return f"acted on by {r.gate} ({r.actor}), expected the {e.gate}"


def _serving(e: Expected, r: Result) -> str | None:
    wanted = r.release if e.serving is Serving.RELEASE else r.serving_before
    return None if r.serving_after == wanted else f"serving {r.serving_after} after, expected {wanted}"


def _production_traffic(e: Expected, r: Result) -> str | None:
    reached = r.production_traffic_reached_release or r.release in r.users.by_version
    if e.production_traffic is None or reached == e.production_traffic:
        return None
    return (
        "the release received production traffic" if reached else "the release never got production traffic"
    )


def _rollbacks(e: Expected, r: Result) -> str | None:
    found = len(r.rollback_deployments)
    if e.rollbacks is None or found == e.rollbacks:
        return None
    return f"{found} rollback deployments, expected {e.rollbacks}"


def _redeployments(e: Expected, r: Result) -> str | None:
    found = len(r.automatic_redeployments)
    if e.redeployments is None or found == e.redeployments:
        return None
    return f"{found} automatic redeployments, expected {e.redeployments} (no loop)"


def _redeployment_status(e: Expected, r: Result) -> str | None:
    status = r.redeployment.status if r.redeployment else None
    if e.redeployment_status is None or status == e.redeployment_status:
        return None
    return f"redeployment {status}, expected {e.redeployment_status}"


def _failed_requests(e: Expected, r: Result) -> str | None:
    users = r.users
    if e.max_failed_requests is not None and users.bad > e.max_failed_requests:
        return f"{users.bad} user requests failed or timed out, at most {e.max_failed_requests} expected"
    if e.max_failed_percent is not None and users.blast_radius_percent > e.max_failed_percent:
        return (
            f"{users.blast_radius_percent}% of user requests failed, at most {e.max_failed_percent}% expected"
        )
    return None


def _notification(e: Expected, r: Result) -> str | None:
    subjects = " ".join(n.subject for n in r.notifications)
    if not e.notification or any(word in subjects for word in e.notification):
        return None
    return f"no notification naming {' or '.join(e.notification)}"


def _alarm(e: Expected, r: Result) -> str | None:
    return "no alarm fired" if e.alarm_fires and not r.alarms_fired else None


def _lambda(e: Expected, r: Result) -> str | None:
    if not e.lambda_actions or any(a.action in e.lambda_actions for a in r.auto_rollback_lambda):
        return None
    if e.lambda_actions == LAMBDA_ACTIONS:
        return "the auto-rollback Lambda did not react"
    return f"the auto-rollback Lambda did not act ({' or '.join(e.lambda_actions)})"


RULES: tuple[Rule, ...] = (
    _status,
    _gate,
    _serving,
    _production_traffic,
    _rollbacks,
    _redeployments,
    _redeployment_status,
    _failed_requests,
    _notification,
    _alarm,
    _lambda,
)


def check(expected: Expected, result: Result) -> list[str]:
    """What differs from the expected outcome (empty: as expected)."""
    if result.deployment is None:
        return list(result.failures) or ["the release was not deployed"]
    return [problem for rule in RULES if (problem := rule(expected, result)) is not None]


def _after_promotion(scale: TimeScale) -> dict[str, str]:
    # Faults switch on once the release has been promoted: after the canary (5 min), the bake (5 min) and the
    # time the tasks, the hook and the drill need (a margin of 4 drill seconds).
    return {
        "FAULT_HEALTH_FAIL": "true",
        "FAULT_ERROR_RATE": "1.0",
        "FAULT_AFTER_SECONDS": f"{scale.drill(600) + 4.0:.1f}",
    }


# The two ends a release can have, refined per scenario with dataclasses.replace.
PROMOTED = Expected(
    "promoted",
    status=("Succeeded",),
    serving=Serving.RELEASE,
    gate=Gate.NONE,
    rollbacks=0,
    redeployments=0,
)
ROLLED_BACK = Expected(
    "rolled back",
    status=("Failed", "Stopped"),
    serving=Serving.ORIGINAL,
    rollbacks=1,
    redeployments=0,
)
# Rolled back before any user request reached it.
UNSEEN = replace(ROLLED_BACK, text="never served", production_traffic=False, max_failed_requests=0)
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "Healthy release",
            lambda _s: {},
            replace(
                PROMOTED,
                text="promoted; original terminated after the bake; success notification; "
                "0 failed user requests",
                max_failed_requests=0,
                notification=("SUCCESS",),
            ),
        ),
        Scenario(
            "broken-health",
            "Broken /health (the spec's 'Simulate a Failed Deployment')",
            lambda _s: {"FAULT_HEALTH_FAIL": "true"},
            replace(
                UNSEEN,
                text="stopped at the test-traffic gate; never receives production traffic; rolled back; "
                "failure notification; 0 failed user requests",
                status=("Failed",),
                error_code="HOOK_EXECUTION_FAILURE",
                gate=Gate.TEST_TRAFFIC,
                notification=("FAILED", "ROLLBACK"),
            ),
        ),
        Scenario(
            "bad-under-traffic",
            "Bad only under real traffic (half the requests fail, /health passes)",
            lambda _s: {"FAULT_ERROR_RATE": "0.5"},
            replace(
                ROLLED_BACK,
                text="alarm during the canary; CodeDeploy and the auto-rollback Lambda both react; exactly "
                "one rollback; production back on the original",
                gate=Gate.ALARM,
                alarm_fires=True,
                lambda_actions=LAMBDA_ACTIONS,
            ),
        ),
        Scenario(
            "hanging",
            "Hanging release (every request, /health included, waits 30 s)",
            lambda _s: {"FAULT_LATENCY_MS": "30000"},
            replace(ROLLED_BACK, text="detected and rolled back; production back on the original"),
        ),
        Scenario(
            "stuck-install",
            "Release that never becomes healthy (a bad setting: its tasks exit at start, ECS keeps retrying)",
            lambda _s: {"FAULT_ERROR_RATE": "2.0"},
            replace(
                UNSEEN,
                text="stuck in install; after DEPLOYMENT_TIMEOUT the health check reports it overdue and the "
                "auto-rollback Lambda stops it with rollback; never receives traffic; 0 failed user requests",
                status=("Stopped",),
                error_code="MANUAL_STOP",
                gate=Gate.TIMEOUT,
                lambda_actions=("stopped",),
                notification=("DEPLOYMENT_TIMEOUT",),
            ),
        ),
        Scenario(
            "noisy-healthy",
            "Healthy but noisy release (2% of requests fail, below the 5% threshold) - bench only",
            lambda _s: {"FAULT_ERROR_RATE": "0.02"},
            replace(PROMOTED, text="promoted: no false rollback"),
        ),
        Scenario(
            "regression-after-completion",
            "Regression after completion (the promoted release goes bad later)",
            _after_promotion,
            replace(
                PROMOTED,
                text="promoted, then the auto-rollback Lambda resurrects the previous revision as a new "
                "deployment; no loop",
                serving=Serving.ORIGINAL,
                gate=Gate.RESURRECTION,
                rollbacks=None,
                redeployments=1,
                redeployment_status="Succeeded",
            ),
        ),
    )
}
# make demo's scenarios, in order (noisy-healthy is bench only).
ORDER = [
    "healthy",
    "broken-health",
    "bad-under-traffic",
    "hanging",
    "stuck-install",
    "regression-after-completion",
]
