"""`make demo` end to end at a short time scale: each scenario's outcome, every user request accounted for.

One module-scoped drill runs the demo's scenarios on one stand-in (about 60 s); the tests read its report.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from local.aws.cloudwatch import EVALUATION_PHASE_SECONDS
from local.drill.chart import write_html
from local.drill.results import Gate, Result
from local.drill.run import Report, run, summary_table
from local.drill.scenarios import ORDER
from local.timescale import TimeScale

# make demo's factor (a faster one leaves the auto-rollback Lambda too little of its scaled Timeout: its own
# wall-clock pauses and client work are not scaled); a lighter load than the demo, to fit the budget.
FACTOR = 120
# make demo's scenarios but stuck-install, which ends through the same DEPLOYMENT_TIMEOUT path as
# broken-health (make demo runs it): the budget of make test.
SCENARIOS = [name for name in ORDER if name != "stuck-install"]
# The whole demo is this module's fixture.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def report() -> Report:
    return run(SCENARIOS, TimeScale(factor=FACTOR), quiet=True, user_rate=40)


def scenario(report: Report, name: str) -> Result:
    return next(r for r in report.scenarios if r.scenario == name)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_ends_as_expected(report: Report, name: str) -> None:
    assert scenario(report, name).failures == [], summary_table(report.scenarios)


def test_regression_after_completion_is_resurrected_once(report: Report) -> None:
    result = scenario(report, "regression-after-completion")
    assert result.redeployment is not None
    assert result.redeployment.status == "Succeeded"
    assert len(result.automatic_redeployments) == 1
    assert result.time_to_restore is not None


def test_every_user_request_is_accounted_for_by_the_version_that_served_it(report: Report) -> None:
    for result in report.scenarios:
        users = result.users
        assert users.total > 0
        assert users.answered + users.failed + users.timed_out == users.total
        assert sum(v.total for v in users.by_version.values()) == users.total
        assert sum(v.failed for v in users.by_version.values()) == users.failed
        assert sum(v.timed_out for v in users.by_version.values()) == users.timed_out


def test_a_broken_health_check_never_reaches_production(report: Report) -> None:
    """Its containers never pass their health check, so the task set never becomes steady (ECS) and CodeDeploy
    stays in Install: the product's INSTALL_TIMEOUT is what ends it, long before DEPLOYMENT_TIMEOUT."""
    result = scenario(report, "broken-health")
    assert not result.production_traffic_reached_release
    assert result.release not in result.users.by_version
    assert result.gate is Gate.TIMEOUT
    assert result.time_to_detect is not None
    assert 300 <= result.time_to_detect.aws < 900  # INSTALL_TIMEOUT ends it; DEPLOYMENT_TIMEOUT is not waited
    assert any("INSTALL_TIMEOUT" in n.subject for n in result.notifications)


def test_a_degraded_health_that_the_load_balancer_passes_is_stopped_at_the_test_traffic_gate(
    report: Report,
) -> None:
    result = scenario(report, "degraded-health")
    assert not result.production_traffic_reached_release
    assert result.gate is Gate.TEST_TRAFFIC


def test_every_claim_of_every_scenario_is_checked_and_held(report: Report) -> None:
    for result in report.scenarios:
        assert result.claims, result.scenario
        assert all(c["held"] for c in result.claims), (result.scenario, result.claims)


HIGH_RESOLUTION_ALARM = "-health-check-failed"


def test_the_report_shows_the_alarm_evaluations_and_their_metric_lag(report: Report) -> None:
    evaluations = report.evaluations
    assert evaluations
    # Standard alarms are evaluated once an AWS minute, at its phase (on the stand-in's 5 s sweep after it).
    standard = next(e["alarm"] for e in evaluations if not e["alarm"].endswith(HIGH_RESOLUTION_ALARM))
    times = sorted({e["t"] for e in evaluations if e["alarm"] == standard})
    # In AWS seconds rounded as the stand-in rounds them (cloudwatch._period_index): a catch-up evaluation
    # runs at its own time, k x 10 / FACTOR drill seconds, which times FACTOR can be a hair under k x 10.
    minutes = [math.floor(round(FACTOR * t - EVALUATION_PHASE_SECONDS, 6) / 60) for t in times]
    assert len(minutes) > 10
    assert minutes == sorted(set(minutes)), "two evaluations in one minute: faster than AWS"
    assert max(b - a for a, b in itertools.pairwise(minutes)) == 1, "a minute without an evaluation"
    # Late only when the machine was (its figures then come later, never sooner): rarely more than 10 s.
    late = [FACTOR * t - (EVALUATION_PHASE_SECONDS + 60 * m) for t, m in zip(times, minutes, strict=True)]
    assert sum(seconds <= 10 for seconds in late) >= 0.9 * len(late), late
    assert any(e["pending"] > 0 for e in evaluations), "the ALB's metric lag never showed"
    # The health-check alarm (Period 20: the template's ProductionCheckSeconds) is a high-resolution alarm:
    # evaluated every 10 s, never twice in one 10 s slot.
    fast = sorted({e["t"] for e in evaluations if e["alarm"].endswith(HIGH_RESOLUTION_ALARM)})
    slots = [math.floor(round(FACTOR * t, 6) / 10) for t in fast]
    assert len(slots) > 60
    assert slots == sorted(set(slots)), "two evaluations in one 10 s slot: faster than AWS"
    assert sum(b - a == 1 for a, b in itertools.pairwise(slots)) >= 0.9 * (len(slots) - 1)


def test_a_release_bad_under_traffic_fails_its_test_traffic_against_the_original_before_any_user(
    report: Report,
) -> None:
    """Half its requests fail but /health passes: the hook's test traffic, judged against the same requests to
    the original, fails the test-traffic gate; no user request reaches it."""
    result = scenario(report, "bad-under-traffic")
    assert result.gate is Gate.TEST_TRAFFIC
    assert not result.production_traffic_reached_release
    assert result.release not in result.users.by_version
    assert len(result.rollback_deployments) == 1
    assert result.serving_after == result.serving_before
    verdicts = [line for line in report.timeline if "check     hook: " in line and "test traffic" in line]
    assert any("hook: Failed - test traffic" in line and "worse beyond doubt" in line for line in verdicts)
    assert result.time_to_detect is not None


def test_the_report_has_both_clocks_and_the_chart_is_drawn(report: Report, tmp_path: Path) -> None:
    result = scenario(report, "broken-health")
    assert result.time_to_detect is not None
    # Drill seconds are rounded to 0.001 (x120: 0.06 AWS s), AWS seconds to 0.1.
    assert result.time_to_detect.aws == pytest.approx(result.time_to_detect.drill * FACTOR, abs=0.12)
    data = json.loads(json.dumps(report.to_json(), default=str))  # what build/drill/report.json holds
    assert data["scenarios"][SCENARIOS.index("degraded-health")]["gate"] == "test-traffic gate"
    assert data["scenarios"][SCENARIOS.index("degraded-health")]["outcome"] == "as expected"
    write_html(data, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page
    assert "broken-health" in page
    assert (tmp_path / "report.svg").exists()


def test_every_release_is_pushed_and_goes_through_the_pipeline_and_a_failing_test_stops_at_the_build(
    report: Report,
) -> None:
    for result in report.scenarios:
        run = result.pipeline
        assert run is not None, result.scenario
        assert run.trigger == "Webhook"
        assert [a.stage for a in run.actions][:2] == ["Source", "Build"]
        assert run.actions[0].external_id == run.commit
        if result.scenario == "broken-build":
            continue
        deploy = [a for a in run.actions if a.stage == "Deploy"]
        assert result.deployment is not None
        assert [a.external_id for a in deploy] == [result.deployment.id], result.scenario
        # CodeDeployToECS filled <IMAGE1_NAME> with the image the build pushed (tagged with the commit) and
        # <TASK_DEFINITION> (the appspec, read back from CodeDeploy) with the task definition it registered.
        assert run.commit is not None
        assert run.image is not None
        assert ".dkr.ecr." in run.image
        assert run.image.endswith(f":{run.commit[:8]}"), (result.scenario, run.image)
        assert (run.task_definition or "").startswith("arn:aws:ecs:"), run.task_definition
        # CodeDeployToECS ends with its deployment: Succeeded only when the deployment succeeded.
        assert deploy[0].status == ("Succeeded" if result.deployment.status == "Succeeded" else "Failed")
    broken = scenario(report, "broken-build")
    assert broken.pipeline is not None
    assert broken.pipeline.stopped_at == "Build"
    assert broken.deployment is None
    assert "Build terminated with state: FAILED" in (broken.pipeline.actions[1].error or "")
    assert any("the Build stage failed, nothing was deployed" in n.text for n in broken.notifications)
    assert broken.serving_after == broken.serving_before
    assert broken.users.bad == 0


def test_every_deployment_gets_its_scorecard_through_the_release_report_function_and_its_mail_links_it(
    report: Report,
) -> None:
    """The drill's scorecards are the product's: the release-report function, on CodeDeploy's end event, wrote
    them to the artifact bucket (gates, verdict, picture) and mailed the link."""
    for result in report.scenarios:
        if result.deployment is None:
            assert result.scorecards == [], result.scenario  # stopped at the build: nothing deployed
            continue
        first = result.scorecards[0]
        assert first.deployment == result.deployment.id
        assert first.picture, (result.scenario, first)
        assert first.linked, (result.scenario, first)
        assert result.pipeline is not None
        assert result.pipeline.commit is not None
        assert first.image_tag == result.pipeline.commit[:8], result.scenario
        assert (
            len(first.gates) == 8
        )  # the ECS deployment's lifecycle events, BeforeInstall to AfterAllowTraffic
    assert "AfterAllowTestTraffic Failed" in scenario(report, "bad-under-traffic").scorecards[0].gates
    assert scenario(report, "healthy").scorecards[0].verdict == "SUCCESS"
    resurrection = scenario(report, "regression-after-completion").scorecards
    assert [c.verdict for c in resurrection] == ["SUCCESS", "RESURRECTED"]
