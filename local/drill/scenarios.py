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
    decided_during_canary: bool = False  # the decision comes before production shifts to 100 %
    detect_from_first_failure: bool = False  # the fault starts after promotion: detect counts from its onset
    pipeline_stops_at: str | None = None  # the pipeline execution fails in this stage: nothing is deployed


@dataclass(frozen=True)
class Scenario:
    """A release: its faults (switched on in pipeline-config/taskdef.json's container environment) and any
    other change to the code it commits (`source`: path -> content), pushed as one commit."""

    name: str
    title: str
    faults: Callable[[TimeScale], dict[str, str]]
    expected: Expected
    source: Callable[[], dict[str, str]] | None = None
    change_text: str = ""  # the commit's subject when it is not just faults
    # Bench only: the faults of the original this release replaces, shipped first and not measured.
    baseline: Callable[[TimeScale], dict[str, str]] | None = None

    def source_files(self) -> dict[str, str]:
        return self.source() if self.source else {}


@dataclass(frozen=True)
class Claim:
    """One thing a scenario claims, and whether the run bears it out."""

    claim: str
    held: bool
    why: str = ""


# A rule reads one field of Expected: None when that field is not set (nothing claimed), else the Claim.
Rule = Callable[[Expected, Result], Claim | None]


def _status(e: Expected, r: Result) -> Claim | None:
    if e.pipeline_stops_at is not None:
        return None
    status = r.deployment.status if r.deployment else "missing"
    code = r.deployment.error_code if r.deployment else None
    wanted = " or ".join(e.status) + (f" ({e.error_code})" if e.error_code else "")
    held = status in e.status and (e.error_code is None or code == e.error_code)
    return Claim(f"the deployment ends {wanted}", held, f"deployment {status} ({code}), expected {wanted}")


def _gate(e: Expected, r: Result) -> Claim | None:
    if e.gate is None:
        return None
    return Claim(
        f"the {e.gate} acts", r.gate == e.gate, f"acted on by {r.gate} ({r.actor}), expected the {e.gate}"
    )


def _serving(e: Expected, r: Result) -> Claim:
    wanted = r.release if e.serving is Serving.RELEASE else r.serving_before
    return Claim(
        f"{e.serving} serves afterwards",
        r.serving_after == wanted,
        f"serving {r.serving_after} after, expected {wanted}",
    )


def _production_traffic(e: Expected, r: Result) -> Claim | None:
    if e.production_traffic is None:
        return None
    reached = r.production_traffic_reached_release or r.release in r.users.by_version
    claim = (
        "the release gets production traffic"
        if e.production_traffic
        else "the release never gets production traffic"
    )
    why = "the release received production traffic" if reached else "the release never got production traffic"
    return Claim(claim, reached == e.production_traffic, why)


def _rollbacks(e: Expected, r: Result) -> Claim | None:
    if e.rollbacks is None:
        return None
    found = len(r.rollback_deployments)
    return Claim(
        f"{e.rollbacks} rollback deployment(s)",
        found == e.rollbacks,
        f"{found} rollback deployments, expected {e.rollbacks}",
    )


def _redeployments(e: Expected, r: Result) -> Claim | None:
    if e.redeployments is None:
        return None
    found = len(r.automatic_redeployments)
    return Claim(
        f"{e.redeployments} automatic redeployment(s), no loop",
        found == e.redeployments,
        f"{found} automatic redeployments, expected {e.redeployments} (no loop)",
    )


def _redeployment_status(e: Expected, r: Result) -> Claim | None:
    if e.redeployment_status is None:
        return None
    status = r.redeployment.status if r.redeployment else None
    return Claim(
        f"the redeployment ends {e.redeployment_status}",
        status == e.redeployment_status,
        f"redeployment {status}, expected {e.redeployment_status}",
    )


def _failed_requests(e: Expected, r: Result) -> Claim | None:
    users = r.users
    if e.max_failed_requests is not None:
        return Claim(
            f"at most {e.max_failed_requests} user requests fail",
            users.bad <= e.max_failed_requests,
            f"{users.bad} user requests failed or timed out, at most {e.max_failed_requests} expected",
        )
    if e.max_failed_percent is not None:
        return Claim(
            f"at most {e.max_failed_percent}% of user requests fail",
            users.blast_radius_percent <= e.max_failed_percent,
            f"{users.blast_radius_percent}% of user requests failed, at most {e.max_failed_percent}% wanted",
        )
    return None


def _pipeline(e: Expected, r: Result) -> Claim:
    """Every release goes git push -> pipeline execution -> its deployment, or stops where expected."""
    run = r.pipeline
    if e.pipeline_stops_at is not None:
        stopped = run.stopped_at if run else None
        return Claim(
            f"the pipeline stops at {e.pipeline_stops_at}; nothing is deployed",
            run is not None and stopped == e.pipeline_stops_at and r.deployment is None,
            f"pipeline {run.path if run else 'missing'}, "
            f"deployment {r.deployment.id if r.deployment else None}",
        )
    deployed = [a.external_id for a in (run.actions if run else []) if a.stage == "Deploy"]
    held = run is not None and r.deployment is not None and deployed == [r.deployment.id]
    return Claim(
        "the release goes git push -> pipeline -> its deployment",
        held,
        f"pipeline {run.path if run else 'missing'}, its deployment {deployed}, the release's "
        f"{r.deployment.id if r.deployment else None}",
    )


def _notification(e: Expected, r: Result) -> Claim | None:
    if not e.notification:
        return None
    subjects = " ".join(f"{n.subject} {n.text}" for n in r.notifications)
    return Claim(
        f"a notification names {' or '.join(e.notification)}",
        any(word in subjects for word in e.notification),
        f"no notification naming {' or '.join(e.notification)}",
    )


def _alarm(e: Expected, r: Result) -> Claim | None:
    if not e.alarm_fires:
        return None
    return Claim("an alarm fires", bool(r.alarms_fired), "no alarm fired")


def _lambda(e: Expected, r: Result) -> Claim | None:
    if not e.lambda_actions:
        return None
    held = any(a.action in e.lambda_actions for a in r.auto_rollback_lambda)
    if e.lambda_actions == LAMBDA_ACTIONS:
        return Claim("the auto-rollback Lambda reacts", held, "the auto-rollback Lambda did not react")
    wanted = " or ".join(e.lambda_actions)
    return Claim(
        f"the auto-rollback Lambda acts ({wanted})", held, f"the auto-rollback Lambda did not act ({wanted})"
    )


def _during_canary(e: Expected, r: Result) -> Claim | None:
    if not e.decided_during_canary:
        return None
    held = r.decision_at is not None and (r.full_shift_at is None or r.decision_at < r.full_shift_at)
    when = "no decision" if r.decision_at is None else f"decision at {r.decision_at:.2f}"
    return Claim(
        "the decision comes during the canary, before the shift to 100 %",
        held,
        f"{when}, production shifted to 100 % at {r.full_shift_at}",
    )


# The release-report function's verdict for each way a deployment ends (lambdas/release_report.verdict).
SCORECARD_VERDICTS = {"Succeeded": ("SUCCESS", "RESURRECTED"), "Failed": ("FAILED",), "Stopped": ("STOPPED",)}


def _scorecards(e: Expected, r: Result) -> Claim | None:
    """Every deployment of the release (and its redeployment) has its scorecard, with its picture, mailed."""
    if r.deployment is None:
        return None
    ends = {r.deployment.id: r.deployment.status} | (
        {r.redeployment.id: r.redeployment.status} if r.redeployment else {}
    )
    problems = [
        f"{c.deployment}: "
        + (
            "no scorecard"
            if c.verdict is None
            else f"verdict {c.verdict}, picture {c.picture}, linked {c.linked}"
        )
        for c in r.scorecards
        if c.verdict not in SCORECARD_VERDICTS.get(ends.get(c.deployment, ""), ())
        or not (c.picture and c.linked)
    ]
    missing = sorted(set(ends) - {c.deployment for c in r.scorecards})
    return Claim(
        "each deployment's scorecard is in the artifact bucket, with its picture, linked from its mail",
        not problems and not missing,
        "; ".join(problems + [f"{m}: not read" for m in missing]),
    )


RULES: tuple[Rule, ...] = (
    _pipeline,
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
    _during_canary,
    _scorecards,
)


def claims(expected: Expected, result: Result) -> list[Claim]:
    """Every claim the expected outcome makes, each with whether this result bears it out."""
    if result.deployment is None and expected.pipeline_stops_at is None:
        return [
            Claim(
                "the release is deployed", False, "; ".join(result.failures) or "the release was not deployed"
            )
        ]
    return [claim for rule in RULES if (claim := rule(expected, result)) is not None]


def check(expected: Expected, result: Result) -> list[str]:
    """What differs from the expected outcome (empty: as expected)."""
    return [claim.why for claim in claims(expected, result) if not claim.held]


def _after_promotion(scale: TimeScale) -> dict[str, str]:
    # Faults switch on once the release has been promoted: after the canary (5 min), the bake (5 min) and the
    # time the tasks, the hook and the drill need. The app counts wall seconds from its start, held ones
    # included (the hook's test traffic holds the AWS clock about a second a round, more on a busy machine):
    # a margin of 6 drill seconds keeps the fault after completion, where a bake-time fault would meet the
    # 40-second health alarm and CodeDeploy's own rollback instead of the resurrection this scenario shows.
    return {
        "FAULT_HEALTH_FAIL": "true",
        "FAULT_ERROR_RATE": "1.0",
        "FAULT_AFTER_SECONDS": f"{scale.drill(600) + 6.0:.1f}",
    }


# What the broken-build scenario commits: a unit test that fails, so `make app-test` fails the build.
FAILING_TEST = '''"""A release gate the drill breaks on purpose: a commit whose tests fail must not ship."""


def test_the_release_gate_holds() -> None:
    assert 1 + 1 == 3, "this commit must not reach production"
'''


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
# Never leaves Install; the product's INSTALL_TIMEOUT (the DeploymentOverdue alarm) stops it.
NEVER_HEALTHY = replace(
    UNSEEN,
    text="never healthy",
    status=("Stopped",),
    error_code="MANUAL_STOP",
    gate=Gate.TIMEOUT,
    lambda_actions=("stopped",),
    notification=("INSTALL_TIMEOUT",),
)
# The hook fails it: CodeDeploy rolls it back before any user request reaches it.
AT_TEST_GATE = replace(
    UNSEEN,
    text="stopped at the test-traffic gate; never receives production traffic; rolled back; "
    "failure notification; 0 failed user requests",
    status=("Failed",),
    error_code="HOOK_EXECUTION_FAILURE",
    gate=Gate.TEST_TRAFFIC,
    notification=("FAILED", "ROLLBACK"),
)
# Its test traffic, judged against the original's, fails the test-traffic gate.
CAUGHT_BY_TEST_TRAFFIC = replace(
    AT_TEST_GATE,
    text="stopped at the test-traffic gate: its test traffic fails beyond doubt against the original's; "
    "never receives production traffic; rolled back; failure notification; 0 failed user requests",
)

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
            "broken-build",
            "A failing unit test is pushed (the build's tests stop it)",
            lambda _s: {},
            Expected(
                "stopped at the build: nothing deployed; the original serves; a notification names the "
                "failed stage; 0 failed user requests",
                status=(),
                serving=Serving.ORIGINAL,
                production_traffic=False,
                rollbacks=0,
                redeployments=0,
                max_failed_requests=0,
                notification=("FAILED",),
                pipeline_stops_at="Build",
            ),
            source=lambda: {"sample-app/test_release_gate.py": FAILING_TEST},
            change_text="a unit test that fails",
        ),
        Scenario(
            "broken-health",
            "Broken /health (the spec's 'Simulate a Failed Deployment')",
            lambda _s: {"FAULT_HEALTH_FAIL": "true"},
            replace(
                NEVER_HEALTHY,
                text="never healthy: its containers fail their health check, so ECS keeps replacing "
                "them and CodeDeploy stays in Install; after INSTALL_TIMEOUT the auto-rollback Lambda "
                "stops it; never receives traffic; 0 failed user requests",
            ),
        ),
        Scenario(
            "degraded-health",
            "/health answers 200 but says degraded (the ALB and ECS checks read only the status code)",
            lambda _s: {"FAULT_HEALTH_DEGRADED": "true"},
            AT_TEST_GATE,
        ),
        Scenario(
            "bad-under-traffic",
            "Bad only under real traffic (half the requests fail, /health passes)",
            lambda _s: {"FAULT_ERROR_RATE": "0.5"},
            CAUGHT_BY_TEST_TRAFFIC,
        ),
        Scenario(
            "bad-under-traffic-20",
            "Bad only under real traffic, less so (a fifth of requests fail, /health passes) - bench only",
            lambda _s: {"FAULT_ERROR_RATE": "0.2"},
            CAUGHT_BY_TEST_TRAFFIC,
        ),
        Scenario(
            "hanging",
            "Hanging release (every request, /health included, waits 30 s) - bench only",
            lambda s: {"FAULT_LATENCY_MS": str(round(30_000 / s.factor))},
            replace(
                NEVER_HEALTHY,
                text="never healthy: its container health check times out, as broken /health; stopped after "
                "INSTALL_TIMEOUT; never receives traffic",
            ),
        ),
        Scenario(
            "stuck-install",
            "Release that never becomes healthy (a bad setting: its tasks exit at start, ECS keeps retrying)",
            lambda _s: {"FAULT_ERROR_RATE": "2.0"},
            replace(
                NEVER_HEALTHY,
                text="stuck in Install; after INSTALL_TIMEOUT the health check reports it overdue and the "
                "auto-rollback Lambda stops it with rollback; never receives traffic; 0 failed user requests",
            ),
        ),
        Scenario(
            "noisy-healthy",
            "Healthy but noisy release (2% of requests fail, as on the original it replaces) - bench only",
            lambda _s: {"FAULT_ERROR_RATE": "0.02"},
            replace(PROMOTED, text="promoted: no false rollback"),
            baseline=lambda _s: {"FAULT_ERROR_RATE": "0.02"},
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
                detect_from_first_failure=True,
            ),
        ),
    )
}
# make demo's scenarios, in order (hanging, which ends as broken /health does, and noisy-healthy: bench only).
ORDER = [
    "healthy",
    "broken-build",
    "broken-health",
    "degraded-health",
    "bad-under-traffic",
    "stuck-install",
    "regression-after-completion",
]
