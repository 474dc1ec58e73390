"""`make demo`: releases go bad on purpose and heal themselves, offline, with real traffic, measured.

    python -m local.drill [--scenario NAME] [--time-scale 120] [--report build/drill/report.json]

One World (moto + the stacks from cloudformation/ + the CodeDeploy stand-in and engine + the ALB proxy +
real sample-app tasks + the real Lambda code + alarm evaluation + schedules) runs the scenarios one after the
other, while simulated users send requests through the production listener the whole time. Each scenario is
one release; every user request is accounted for by the version that served it (the ALB's access log). The
timeline is printed live in drill seconds and AWS-equivalent time; a JSON report and an HTML page with the
chart are written at the end. Exit status 1 when a scenario's outcome is not the expected one.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.chart import write_html
from local.timescale import TimeScale
from local.traffic import UserRequest, Users
from local.world import Event as WorldEvent
from local.world import World

FINAL = ("Succeeded", "Failed", "Stopped")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    expectation: str
    faults: Callable[[TimeScale], dict[str, str]]
    resurrection: bool = False


def _after_promotion(scale: TimeScale) -> dict[str, str]:
    # Faults switch on once the release has been promoted: after the canary (5 min), the bake (5 min) and the
    # time the tasks, the hook and the drill need (a margin of 4 drill seconds).
    return {
        "FAULT_HEALTH_FAIL": "true",
        "FAULT_ERROR_RATE": "1.0",
        "FAULT_AFTER_SECONDS": f"{scale.drill(600) + 4.0:.1f}",
    }


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "Healthy release",
            "promoted; original terminated after the bake; success notification; 0 failed user requests",
            lambda _s: {},
        ),
        Scenario(
            "broken-health",
            "Broken /health (the spec's 'Simulate a Failed Deployment')",
            "stopped at the test-traffic gate; never receives production traffic; rolled back; failure "
            "notification; 0 failed user requests",
            lambda _s: {"FAULT_HEALTH_FAIL": "true"},
        ),
        Scenario(
            "bad-under-traffic",
            "Bad only under real traffic (half the requests fail, /health passes)",
            "alarm during the canary; CodeDeploy and the auto-rollback Lambda both react; exactly one "
            "rollback; production back on the original",
            lambda _s: {"FAULT_ERROR_RATE": "0.5"},
        ),
        Scenario(
            "hanging",
            "Hanging release (every request, /health included, waits 30 s)",
            "detected and rolled back; production back on the original",
            lambda _s: {"FAULT_LATENCY_MS": "30000"},
        ),
        Scenario(
            "stuck-install",
            "Release that never becomes healthy (a bad setting: its tasks exit at start, ECS keeps retrying)",
            "stuck in install; after DEPLOYMENT_TIMEOUT the health check reports it overdue and the "
            "auto-rollback Lambda stops it with rollback; never receives traffic; 0 failed user requests",
            lambda _s: {"FAULT_ERROR_RATE": "2.0"},
        ),
        Scenario(
            "noisy-healthy",
            "Healthy but noisy release (2% of requests fail, below the 5% threshold) - bench only",
            "promoted: no false rollback",
            lambda _s: {"FAULT_ERROR_RATE": "0.02"},
        ),
        Scenario(
            "regression-after-completion",
            "Regression after completion (the promoted release goes bad later)",
            "promoted, then the auto-rollback Lambda resurrects the previous revision as a new deployment; "
            "no loop",
            _after_promotion,
            resurrection=True,
        ),
    )
}
ORDER = [
    "healthy",
    "broken-health",
    "bad-under-traffic",
    "hanging",
    "stuck-install",
    "regression-after-completion",
]


@dataclass
class Timeline:
    scale: TimeScale
    out: Any = sys.stdout
    quiet: bool = False
    _last_health: str = ""
    lines: list[str] = field(default_factory=list)

    def stamp(self, t: float) -> str:
        aws = self.scale.aws(t)
        return f"{t:6.2f}s  AWS {int(aws // 60):3d}m{int(aws % 60):02d}s"

    def __call__(self, event: WorldEvent) -> None:
        text = self._text(event)
        if text is None:
            return
        line = f"{self.stamp(event.t)}  {text}"
        self.lines.append(line)
        if not self.quiet:
            print(line, file=self.out, flush=True)

    def say(self, text: str) -> None:
        line = f"{self.stamp(self.scale.now())}  {text}"
        self.lines.append(line)
        if not self.quiet:
            print(line, file=self.out, flush=True)

    def _text(self, event: WorldEvent) -> str | None:  # noqa: PLR0911 - one format per event kind
        kind = event.kind
        if kind == "lambda":
            record = event.data.get("record") or {}
            decision = str(record.get("decision", ""))
            if record.get("function") == "health_check" and decision.startswith("scheduled"):
                verdict = str(record.get("verdict", ""))
                if verdict == self._last_health:
                    return None
                self._last_health = verdict
                return f"check     scheduled health check: production {verdict}"
            if record.get("function") == "health_check":
                return f"check     hook: {record.get('status', '')} - {record.get('reason', decision)}"
            if record.get("function") == "auto_rollback":
                return f"lambda    auto-rollback: {decision} [{record.get('action', '')}]"
            return None
        if kind == "lambda-log":
            return None
        labels = {
            "alarm": "alarm",
            "deployment": "deploy",
            "install": "deploy",
            "hook": "hook",
            "traffic": "traffic",
            "bake": "deploy",
            "decision": "ACTION",
            "restore": "RESTORE",
            "rollback": "deploy",
            "notification": "notify",
            "setup": "setup",
            "scenario": "==>",
        }
        return f"{labels.get(kind, kind):9s} {event.text}"


def _served_by(world: World, requests: list[UserRequest]) -> dict[str, str]:
    """request id -> version, from the ALB's access log."""
    by_id = {e.request_id: e.target for e in world.alb.access_log if e.request_id}
    out = {}
    for request in requests:
        target = by_id.get(request.request_id)
        version = world.runner.version_of(target) if target else None
        out[request.request_id] = version or "none"
    return out


def account(world: World, requests: list[UserRequest]) -> dict[str, Any]:
    served = _served_by(world, requests)
    by_version: dict[str, dict[str, int]] = {}
    for request in requests:
        slot = by_version.setdefault(served[request.request_id], {"total": 0, "failed": 0, "timed_out": 0})
        slot["total"] += 1
        if request.outcome == "failed":
            slot["failed"] += 1
        elif request.outcome == "timed_out":
            slot["timed_out"] += 1
    total = len(requests)
    failed = sum(1 for r in requests if r.outcome == "failed")
    timed_out = sum(1 for r in requests if r.outcome == "timed_out")
    return {
        "total": total,
        "answered": total - failed - timed_out,
        "failed": failed,
        "timed_out": timed_out,
        "blast_radius_percent": round(100 * (failed + timed_out) / total, 3) if total else 0.0,
        "by_version": by_version,
    }


def _dominant(versions: dict[str, int]) -> str:
    return max(versions.items(), key=lambda item: item[1])[0] if versions else "none"


def _deployments_since(world: World, since: float) -> list[dict[str, Any]]:
    ids = world.service.deployment_ids()
    infos = [world.service.get(i) for i in ids]
    return [d for d in infos if float(d["createTime"]) >= since]


def run_scenario(  # noqa: PLR0915 - one scenario, start to finish
    world: World, users: Users, timeline: Timeline, scenario: Scenario, version: str
) -> dict[str, Any]:
    scale = world.scale
    wait_quiet(world)
    timeline.say(f"--- scenario {scenario.name}: {scenario.title}")
    t_start = scale.now()
    wall_start = time.time()
    mono_start = time.monotonic()
    events_from = len(world.events)
    notes_from = len(world.notifications)
    before = _dominant(world.serving_versions())
    deployment_id = world.deploy(version, scenario.faults(scale))
    timeline.say(
        f"release   {version} -> CreateDeployment {deployment_id} "
        f"(faults: {scenario.faults(scale) or 'none'})"
    )
    world.wait_for(
        lambda: world.deployment(deployment_id)["status"] in FINAL, 90, f"deployment {deployment_id}"
    )
    first = world.deployment(deployment_id)
    resurrection: dict[str, Any] | None = None
    if scenario.resurrection and first["status"] == "Succeeded":

        def redeployed() -> bool:
            return any(
                d.get("creator") != "codeDeployRollback" and d["deploymentId"] != deployment_id
                for d in _deployments_since(world, wall_start)
            )

        try:
            world.wait_for(redeployed, scale.drill(900) + 20, "the auto-rollback Lambda's redeployment")
            resurrection = next(
                d
                for d in _deployments_since(world, wall_start)
                if d.get("creator") != "codeDeployRollback" and d["deploymentId"] != deployment_id
            )
            rid = str(resurrection["deploymentId"])
            world.wait_for(lambda: world.deployment(rid)["status"] in FINAL, 90, f"redeployment {rid}")
            resurrection = world.deployment(rid)
        except TimeoutError as exc:
            timeline.say(f"WARNING   {exc}")
        # No loop: watch a few more health-check periods for further automatic deployments.
        time.sleep(scale.drill(4 * 60))
    else:
        time.sleep(scale.drill(2 * 60))
    cutoff = time.monotonic()
    users.wait_settled(cutoff, timeout=world.user_timeout + 1.0)
    t_end = scale.now()
    after = _dominant(world.serving_versions())
    requests = users.window(mono_start, cutoff)
    accounting = account(world, requests)
    events = world.events[events_from:]
    notes = world.notifications[notes_from:]
    deployments = _deployments_since(world, wall_start)

    served = _served_by(world, requests)
    bad = [r for r in requests if r.outcome != "answered" and served[r.request_id] == version]
    first_bad = (bad[0].started - scale.epoch) if bad else None
    decisions = [e for e in events if e.kind == "decision"]
    lambda_actions = [
        e
        for e in events
        if e.kind == "lambda"
        and (e.data.get("record") or {}).get("function") == "auto_rollback"
        and (e.data.get("record") or {}).get("action")
        in ("stopped", "redeployed", "attention", "none", "failed")
    ]
    restores = [e for e in events if e.kind == "restore"]
    decision_t: float | None = None
    restore_t: float | None = None
    gate = "none"
    if decisions:
        decision_t = decisions[0].t
        code = decisions[0].data.get("code")
        gate = {
            "HOOK_EXECUTION_FAILURE": "test-traffic gate (AfterAllowTestTraffic hook)",
            "ALARM_ACTIVE": "alarm gate (CodeDeploy alarm rollback)",
            "MANUAL_STOP": "alarm gate (auto-rollback Lambda StopDeployment)",
            "TIMEOUT": "deployment timeout",
        }.get(str(code), str(code))
    if restores:
        restore_t = restores[0].t
    overdue = [e for e in events if e.kind == "alarm" and "deployment-overdue" in str(e.data.get("alarm"))]
    if any(e.data.get("new") == "ALARM" for e in overdue):
        gate = "deployment timeout (DeploymentOverdue alarm -> auto-rollback Lambda StopDeployment)"
    if resurrection is not None:
        redeploy_events = [
            e for e in lambda_actions if (e.data.get("record") or {}).get("action") == "redeployed"
        ]
        if redeploy_events:
            decision_t = redeploy_events[0].t
        full = [
            e
            for e in events
            if e.kind == "traffic"
            and e.data.get("deployment") == resurrection["deploymentId"]
            and e.data.get("listener") == "production"
            and e.data.get("percent") == 100
        ]
        restore_t = full[0].t if full else None
        gate = "resurrection (auto-rollback Lambda redeploys the last known-good revision)"
    production_on_replacement = any(
        e.kind == "traffic"
        and e.data.get("deployment") == deployment_id
        and e.data.get("listener") == "production"
        and int(e.data.get("percent", 0)) > 0
        for e in events
    )
    alarms_fired = sorted(
        {str(e.data.get("alarm")) for e in events if e.kind == "alarm" and e.data.get("new") == "ALARM"}
    )
    rollbacks = [d for d in deployments if d.get("creator") == "codeDeployRollback"]
    automatic = [
        d
        for d in deployments
        if str(d.get("description", "")).startswith("phoenix-auto-rollback")
        or (d.get("creator") != "codeDeployRollback" and d["deploymentId"] != deployment_id)
    ]

    def seconds(value: float | None) -> dict[str, float] | None:
        return None if value is None else {"drill": round(value, 3), "aws": round(scale.aws(value), 1)}

    detect = None
    if decision_t is not None:
        detect = decision_t - (first_bad if first_bad is not None and first_bad < decision_t else t_start)
    restore = None
    if restore_t is not None:
        restore = restore_t - (first_bad if first_bad is not None and first_bad < restore_t else t_start)
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "title": scenario.title,
        "expected": scenario.expectation,
        "release": version,
        "deployment": {
            "id": deployment_id,
            "status": first["status"],
            "errorInformation": first.get("errorInformation"),
            "rollbackInfo": first.get("rollbackInfo"),
        },
        "redeployment": None
        if resurrection is None
        else {
            "id": resurrection["deploymentId"],
            "status": resurrection["status"],
            "description": resurrection.get("description"),
        },
        "serving_before": before,
        "serving_after": after,
        "production_traffic_reached_release": production_on_replacement,
        "users": accounting,
        "gate": gate,
        "alarms_fired": alarms_fired,
        "rollback_deployments": [d["deploymentId"] for d in rollbacks],
        "automatic_redeployments": [d["deploymentId"] for d in automatic],
        "auto_rollback_lambda": [
            {
                "t": round(e.t, 3),
                "action": (e.data.get("record") or {}).get("action"),
                "decision": (e.data.get("record") or {}).get("decision"),
                "alarm": (e.data.get("record") or {}).get("alarm"),
            }
            for e in lambda_actions
        ],
        "time_to_detect": seconds(detect),
        "time_to_restore": seconds(restore),
        "detect_from": "first bad production response of the release"
        if first_bad is not None
        else "deployment start",
        "notifications": [{"t": round(n["t"], 3), "subject": n["subject"]} for n in notes],
        "window": {"start": round(t_start, 3), "end": round(t_end, 3)},
        "decision_at": None if decision_t is None else round(decision_t, 3),
        "restore_at": None if restore_t is None else round(restore_t, 3),
    }
    result["failures"] = check(scenario, result, version)
    result["outcome"] = "as expected" if not result["failures"] else "NOT as expected"
    timeline.say(
        f"=== {scenario.name}: {result['outcome']} - {accounting['failed']} failed + "
        f"{accounting['timed_out']} timed "
        f"out of {accounting['total']} user requests; serving {before} -> {after}"
        + ("" if not result["failures"] else f"; {'; '.join(result['failures'])}")
    )
    return result


def check(scenario: Scenario, r: dict[str, Any], version: str) -> list[str]:  # noqa: PLR0912 - one rule per line
    """What differs from the scenario's expected outcome (empty: as expected)."""
    problems = []
    users = r["users"]
    notes = " ".join(n["subject"] for n in r["notifications"])
    status = r["deployment"]["status"]
    if scenario.name == "noisy-healthy":
        if status != "Succeeded" or r["serving_after"] != version:
            problems.append(f"deployment {status}, serving {r['serving_after']}: a false rollback")
    elif scenario.name == "healthy":
        if status != "Succeeded":
            problems.append(f"deployment {status}, expected Succeeded")
        if r["serving_after"] != version:
            problems.append(f"serving {r['serving_after']} after, expected {version}")
        if users["failed"] or users["timed_out"]:
            problems.append(f"user requests failed: {users['by_version']}")
        if "SUCCESS" not in notes:
            problems.append("no success notification")
    elif scenario.name == "broken-health":
        if (
            status != "Failed"
            or (r["deployment"]["errorInformation"] or {}).get("code") != "HOOK_EXECUTION_FAILURE"
        ):
            problems.append(f"deployment {status}, expected Failed at the hook")
        if r["production_traffic_reached_release"] or version in users["by_version"]:
            problems.append("the release received production traffic")
        if users["failed"] or users["timed_out"]:
            problems.append(f"user requests failed: {users['by_version']}")
        if "FAILED" not in notes and "ROLLBACK" not in notes:
            problems.append("no failure notification")
    elif scenario.name in ("bad-under-traffic", "hanging"):
        if status not in ("Failed", "Stopped"):
            problems.append(f"deployment {status}, expected rolled back")
        if r["serving_after"] != r["serving_before"]:
            problems.append(f"serving {r['serving_after']}, expected {r['serving_before']}")
        if len(r["rollback_deployments"]) != 1:
            problems.append(f"{len(r['rollback_deployments'])} rollbacks, expected exactly one")
        if scenario.name == "bad-under-traffic":
            if not r["alarms_fired"]:
                problems.append("no alarm fired")
            if not r["auto_rollback_lambda"]:
                problems.append("the auto-rollback Lambda did not react")
    elif scenario.name == "stuck-install":
        problems += _stuck_install_problems(r)
    elif scenario.name == "regression-after-completion":
        if status != "Succeeded":
            problems.append(f"release {status}, expected promoted first")
        red = r["redeployment"]
        if red is None or red["status"] != "Succeeded":
            problems.append(f"redeployment {red and red['status']}, expected Succeeded")
        if r["serving_after"] != r["serving_before"]:
            problems.append(f"serving {r['serving_after']}, expected {r['serving_before']} back")
        if len(r["automatic_redeployments"]) != 1:
            problems.append(
                f"{len(r['automatic_redeployments'])} automatic redeployments, expected one (no loop)"
            )
    return problems


def _stuck_install_problems(r: dict[str, Any]) -> list[str]:
    problems = []
    status = r["deployment"]["status"]
    code = (r["deployment"]["errorInformation"] or {}).get("code")
    if status != "Stopped" or code != "MANUAL_STOP":
        problems.append(f"deployment {status} ({code}), expected Stopped by the auto-rollback Lambda")
    if not r["gate"].startswith("deployment timeout"):
        problems.append(f"stopped by {r['gate']}, expected the deployment timeout")
    if not any(a["action"] == "stopped" for a in r["auto_rollback_lambda"]):
        problems.append("the auto-rollback Lambda did not stop it")
    if "DEPLOYMENT_TIMEOUT" not in " ".join(n["subject"] for n in r["notifications"]):
        problems.append("no notification naming DEPLOYMENT_TIMEOUT")
    users = r["users"]
    if r["production_traffic_reached_release"] or users["failed"] or users["timed_out"]:
        problems.append(f"users were affected: {users['by_version']}")
    if len(r["rollback_deployments"]) != 1:
        problems.append(f"{len(r['rollback_deployments'])} rollbacks, expected exactly one")
    return problems


class UserReport:
    """A timeline line every `every` drill seconds: what the users got, by the version that served them."""

    def __init__(self, world: World, users: Users, timeline: Timeline, every: float = 2.0) -> None:
        self._world, self._users, self._timeline, self._every = world, users, timeline, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="user-report", daemon=True)

    def __enter__(self) -> UserReport:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        since = time.monotonic()
        while not self._stop.wait(self._every):
            now = time.monotonic()
            done = [
                r for r in self._users.window(since - self._world.user_timeout, now) if since <= r.ended < now
            ]
            since = now
            if not done:
                continue
            served = _served_by(self._world, done)
            shares: dict[str, int] = {}
            for request in done:
                shares[served[request.request_id]] = shares.get(served[request.request_id], 0) + 1
            split = ", ".join(f"{v} {100 * n / len(done):.0f}%" for v, n in sorted(shares.items()))
            bad = sum(1 for r in done if r.outcome != "answered")
            self._timeline.say(
                f"users     {len(done) / self._every:.0f} req/s served by {split}; {bad} failed/timed out"
            )


def reset_release(world: World, timeline: Timeline, version: str) -> None:
    """Bench only: a faulty release still serves; ship a clean one before the next scenario (not measured)."""
    world.wait_for(
        lambda: all(world.service.get(i)["status"] in FINAL for i in world.service.deployment_ids()),
        60,
        "no deployment in flight",
    )
    timeline.say(f"reset     a faulty release serves: shipping clean {version} (not measured)")
    deployment_id = world.deploy(version, {})
    world.wait_for(
        lambda: world.deployment(deployment_id)["status"] in FINAL, 90, f"deployment {deployment_id}"
    )


def wait_quiet(world: World, timeout: float = 30.0) -> None:
    """Before a release: no deployment in flight and every alarm OK."""

    def quiet() -> bool:
        states = world.alarm_states()
        in_flight = [i for i in world.service.deployment_ids() if world.service.get(i)["status"] not in FINAL]
        return not in_flight and all(s == "OK" for s in states.values())

    world.wait_for(quiet, timeout, "every alarm OK and no deployment in flight", poll=0.1)


def summary_table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':30s} {'outcome':16s} {'gate':34s} {'users failed/total':>18s} "
        f"{'detect':>14s} {'restore':>14s}  serving"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        users = r["users"]
        bad = users["failed"] + users["timed_out"]

        def fmt(v: dict[str, float] | None) -> str:
            return "-" if v is None else f"{v['drill']:.1f}s/{v['aws']:.0f}s"

        gate = r["gate"].split(" (")[0]
        share = f"{bad}/{users['total']}"
        rows.append(
            f"{r['scenario']:30s} {r['outcome']:16s} {gate[:34]:34s} {share:>18s} "
            f"{fmt(r['time_to_detect']):>14s} {fmt(r['time_to_restore']):>14s}  "
            f"{r['serving_before']} -> {r['serving_after']}"
        )
    return "\n".join(rows)


def run(
    names: list[str],
    scale: TimeScale,
    *,
    quiet: bool = False,
    out: Any = sys.stdout,
    user_rate: float = 40.0,
    literal: bool = False,
    reset: bool = False,
) -> dict[str, Any]:
    timeline = Timeline(scale, out=out, quiet=quiet)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with World(scale, on_event=timeline, literal=literal) as world:
        timeline.say(
            f"production {world.production_url}  test {world.test_url}  time scale x{scale.factor:g}"
        )
        with (
            Users(world.production_url, rate=user_rate, timeout=world.user_timeout) as users,
            UserReport(world, users, timeline),
        ):
            faulty: set[str] = set()
            serial = 2
            for name in names:
                version = f"v{serial}"
                serial += 1
                if SCENARIOS[name].faults(scale):
                    faulty.add(version)
                try:
                    results.append(run_scenario(world, users, timeline, SCENARIOS[name], version))
                    if reset and results[-1]["serving_after"] in faulty:
                        reset_release(world, timeline, f"v{serial}")
                        serial += 1
                except TimeoutError as exc:
                    timeline.say(f"=== {name}: NOT as expected - {exc}")
                    results.append(
                        {
                            "scenario": name,
                            "title": SCENARIOS[name].title,
                            "outcome": "NOT as expected",
                            "failures": [str(exc)],
                            "users": {"total": 0, "failed": 0, "timed_out": 0},
                            "gate": "-",
                            "time_to_detect": None,
                            "time_to_restore": None,
                            "serving_before": "-",
                            "serving_after": "-",
                        }
                    )
                    break
            series = world_series(world, users, scale)
        marks = [
            {"t": round(e.t, 3), "kind": "alarm", "text": e.text}
            for e in world.events
            if e.kind == "alarm" and e.data.get("new") == "ALARM"
        ]
        for r in results:
            for kind, key in (("decision", "decision_at"), ("restore", "restore_at")):
                if r.get(key) is not None:
                    marks.append(
                        {"t": r[key], "kind": kind, "text": f"{r['scenario']}: {kind} ({r['gate']})"}
                    )
        scenario_marks = [
            {"t": r["window"]["start"], "scenario": r["scenario"]} for r in results if "window" in r
        ]
    return {
        "time_scale": scale.factor,
        "wall_seconds": round(time.monotonic() - started, 1),
        "scenarios": results,
        "series": series,
        "marks": marks,
        "scenario_marks": scenario_marks,
        "timeline": timeline.lines,
        "ok": all(r["outcome"] == "as expected" for r in results) and len(results) == len(names),
    }


def world_series(
    world: World, users: Users, scale: TimeScale, bin_seconds: float = 0.25
) -> list[dict[str, Any]]:
    """Per time bin: user requests by version and their outcomes (the chart's data)."""
    requests = users.window(scale.epoch, time.monotonic())
    served = _served_by(world, requests)
    bins: dict[int, dict[str, Any]] = {}
    for request in requests:
        k = int((request.started - scale.epoch) / bin_seconds)
        slot = bins.setdefault(k, {"t": round(k * bin_seconds, 3), "total": 0, "bad": 0, "versions": {}})
        slot["total"] += 1
        slot["bad"] += request.outcome != "answered"
        version = served[request.request_id]
        slot["versions"][version] = slot["versions"].get(version, 0) + 1
    return [bins[k] for k in sorted(bins)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", default="all", help=f"one of {', '.join(ORDER)} or all")
    parser.add_argument("--time-scale", type=float, default=120.0, help="AWS seconds per drill second")
    parser.add_argument("--report", default=str(ROOT / "build" / "drill" / "report.json"))
    parser.add_argument("--html", default=str(ROOT / "build" / "drill" / "report.html"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up tasks and workers on kill too
    names = ORDER if args.scenario in ("all", "") else [args.scenario]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(ORDER)}")
    report = run(names, TimeScale(factor=args.time_scale))
    print()
    print(summary_table(report["scenarios"]))
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2, default=str))
    write_html(report, Path(args.html))
    print(f"\nreport: {args.report}\nchart:  {args.html}\nwall time {report['wall_seconds']} s")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
