"""`make demo` end to end at a short time scale: each scenario's outcome, every user request accounted for.

One module-scoped drill runs the five scenarios on one stand-in (about 45 s); the tests read its report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.chart import write_html
from local.drill import ORDER, run, summary_table
from local.timescale import TimeScale


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return run(ORDER, TimeScale(factor=120), quiet=True)


def scenario(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["scenarios"] if r["scenario"] == name)


@pytest.mark.parametrize("name", ["healthy", "broken-health", "bad-under-traffic", "hanging"])
def test_scenario_ends_as_expected(report: dict[str, Any], name: str) -> None:
    assert scenario(report, name)["failures"] == [], summary_table(report["scenarios"])


def test_regression_after_completion_is_resurrected_once(report: dict[str, Any]) -> None:
    result = scenario(report, "regression-after-completion")
    assert result["failures"] == [], summary_table(report["scenarios"])
    assert result["redeployment"]["status"] == "Succeeded"
    assert len(result["automatic_redeployments"]) == 1
    assert result["time_to_restore"] is not None


def test_every_user_request_is_accounted_for_by_the_version_that_served_it(report: dict[str, Any]) -> None:
    for result in report["scenarios"]:
        users = result["users"]
        assert users["total"] > 0
        assert users["answered"] + users["failed"] + users["timed_out"] == users["total"]
        assert sum(v["total"] for v in users["by_version"].values()) == users["total"]
        assert sum(v["failed"] for v in users["by_version"].values()) == users["failed"]
        assert sum(v["timed_out"] for v in users["by_version"].values()) == users["timed_out"]


def test_a_broken_health_check_never_reaches_production(report: dict[str, Any]) -> None:
    result = scenario(report, "broken-health")
    assert not result["production_traffic_reached_release"]
    assert result["release"] not in result["users"]["by_version"]
    assert result["gate"].startswith("test-traffic gate")


def test_a_release_bad_under_traffic_is_rolled_back_once_while_both_healers_react(
    report: dict[str, Any],
) -> None:
    result = scenario(report, "bad-under-traffic")
    assert len(result["rollback_deployments"]) == 1
    assert result["alarms_fired"]
    assert result["auto_rollback_lambda"]
    assert result["serving_after"] == result["serving_before"]
    assert result["time_to_detect"] is not None
    assert result["time_to_restore"] is not None


def test_the_report_has_both_clocks_and_the_chart_is_drawn(report: dict[str, Any], tmp_path: Path) -> None:
    result = scenario(report, "broken-health")
    assert result["time_to_detect"]["aws"] == pytest.approx(result["time_to_detect"]["drill"] * 120, abs=0.1)
    write_html(report, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page
    assert "broken-health" in page
    assert (tmp_path / "report.svg").exists()
