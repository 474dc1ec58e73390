"""The drill: scenarios shipped one after the other on one World, while simulated users send requests.

For each scenario, `drive` ships the release as a developer does (a commit of its change, `git push`),
follows the pipeline execution the push starts (source, build, CodeDeployToECS) and waits for its deployment
to end - and, when the scenario expects automatic redeployments, for the auto-rollback Lambda's - then watches
a few more health-check periods; `measure` accounts for every user request of that window by the version that
served it (the ALB's access log) and reads the events (alarms, hooks, traffic shifts, rollback decisions,
notifications) into a typed `Result`; `check` compares it with the scenario's `Expected`. `run` returns a
`Report`, whose `to_json()` is build/drill/report.json.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

from local.aws.codedeploy import FINISHED_STATUSES
from local.aws.codedeploy.ecs_engine import HOOK_TIMEOUT_SECONDS, INSTALL_TIMEOUT_SECONDS
from local.background import Loop
from local.drill.results import (
    LAMBDA_ACTIONS,
    Deployment,
    Gate,
    LambdaAction,
    Notification,
    PipelineAction,
    PipelineRun,
    Redeployment,
    Result,
    Scorecard,
    Seconds,
    Users,
    VersionCount,
    Window,
)
from local.drill.scenarios import SCENARIOS, Scenario, claims
from local.drill.table import Column, render
from local.drill.traffic import UserRequest
from local.drill.traffic import Users as SimulatedUsers
from local.drill.world import BUILD_TIMEOUT_FLOOR_SECONDS, Event, World
from local.timescale import TimeScale
from scripts.stacks import ROOT

# make demo's user load, in requests per AWS minute: what the machine carries at the demo's x120 (120 requests
# a wall second; make bench runs a production-like 200 a minute at x40).
DEMO_RATE = 60.0

# CodeDeploy's errorInformation.code of the release's end -> the gate that acted and what acted.
GATES = {
    "HOOK_EXECUTION_FAILURE": (Gate.TEST_TRAFFIC, "AfterAllowTestTraffic hook"),
    "ALARM_ACTIVE": (Gate.ALARM, "CodeDeploy alarm rollback"),
    "MANUAL_STOP": (Gate.ALARM, "auto-rollback Lambda StopDeployment"),
    "TIMEOUT": (Gate.TIMEOUT, "lifecycle hook timeout"),
}


# ---------------------------------------------------------------- the live timeline
@dataclass
class Timeline:
    scale: TimeScale
    out: Any = sys.stdout
    quiet: bool = False
    _last_health: str = ""
    _last_canary: str = ""
    lines: list[str] = field(default_factory=list)

    def stamp(self, t: float) -> str:
        aws = self.scale.aws(t)
        return f"{t:6.2f}s  AWS {int(aws // 60):3d}m{int(aws % 60):02d}s"

    def __call__(self, event: Event) -> None:
        if event.kind == "lambda" and (canary := self._canary_text(event.data.get("record") or {})):
            self._line(event.t, canary)
        text = self._text(event)
        if text is not None:
            self._line(event.t, text)

    def say(self, text: str) -> None:
        self._line(self.scale.now(), text)

    def _line(self, t: float, text: str) -> None:
        line = f"{self.stamp(t)}  {text}"
        self.lines.append(line)
        if not self.quiet:
            print(line, file=self.out, flush=True)

    def _text(self, event: Event) -> str | None:
        if event.kind == "lambda":
            return self._lambda_text(event.data.get("record") or {})
        if event.kind == "lambda-log":
            return None
        labels = {
            "install": "deploy",
            "bake": "deploy",
            "rollback": "deploy",
            "deployment": "deploy",
            "decision": "ACTION",
            "restore": "RESTORE",
            "notification": "notify",
            "scenario": "==>",
            "ecs": "ecs",
            "push": "git",
            "pipeline": "pipeline",
        }
        return f"{labels.get(event.kind, event.kind):9s} {event.text}"

    def _canary_text(self, record: dict[str, Any]) -> str | None:
        """The production canary judge's look (a scheduled health check's `canary`), when it says more."""
        verdict = str(record.get("canary", ""))
        text = f"check     canary judge: {verdict} - {record.get('canary_reason', '')}"
        if record.get("function") != "health_check" or not verdict or text == self._last_canary:
            return None
        self._last_canary = text
        return text

    def _lambda_text(self, record: dict[str, Any]) -> str | None:
        decision = str(record.get("decision", ""))
        function = record.get("function")
        if function == "health_check" and decision in ("scheduled health check", "production check"):
            verdict = str(record.get("verdict", ""))
            if verdict == self._last_health:
                return None
            self._last_health = verdict
            return f"check     {decision}: production {verdict}"
        if function == "health_check" and decision == "lifecycle hook verdict":
            return f"check     hook: {record.get('status', '')} - {record.get('reason', decision)}"
        if function == "health_check":
            return f"check     {decision}"
        if function == "auto_rollback":
            return f"lambda    auto-rollback: {decision} [{record.get('action', '')}]"
        return None


def served_by(world: World, requests: list[UserRequest]) -> dict[str, str]:
    """request id -> version, from the ALB's access log."""
    by_id = {e.request_id: e.target for e in world.alb.access_log if e.request_id}
    out = {}
    for request in requests:
        target = by_id.get(request.request_id)
        version = world.version_of(target) if target else None
        out[request.request_id] = version or "none"
    return out


def user_report(world: World, users: SimulatedUsers, timeline: Timeline, every: float = 2.0) -> Loop:
    """A timeline line every `every` drill seconds: what the users got, by the version that served them."""
    scale = world.scale
    since = scale.now()

    def report() -> None:
        nonlocal since
        now = scale.now()
        done = [r for r in users.window(since - world.user_timeout, now) if since <= r.ended < now]
        span, since = now - since, now
        if not done or span <= 0:
            return
        served = served_by(world, done)
        shares: dict[str, int] = {}
        for request in done:
            shares[served[request.request_id]] = shares.get(served[request.request_id], 0) + 1
        split = ", ".join(f"{v} {100 * n / len(done):.0f}%" for v, n in sorted(shares.items()))
        bad = sum(1 for r in done if r.outcome != "answered")
        rate = len(done) / scale.aws(span) * 60
        timeline.say(f"users     {rate:.0f} req/AWS min served by {split}; {bad} failed/timed out")

    return Loop("user-report", report, every=every, clock=scale.now)


# ---------------------------------------------------------------- one scenario: drive, measure, check
@dataclass
class Drive:
    """What `drive` did: the release, its deployment, and the scenario's window on every clock."""

    version: str
    pipeline: PipelineRun | None
    deployment_id: str
    deployment: dict[str, Any]
    redeployment: dict[str, Any] | None
    serving_before: str
    start: float  # drill seconds
    created_after: float  # epoch seconds on the AWS clock, as the CodeDeploy stand-in stamps createTime
    events_from: int
    notes_from: int
    end: float = 0.0  # drill seconds


def _dominant(versions: dict[str, int]) -> str:
    return max(versions.items(), key=lambda item: item[1])[0] if versions else "none"


def _deployments_since(world: World, since: float) -> list[dict[str, Any]]:
    infos = [world.service.get(i) for i in world.service.deployment_ids()]
    return [d for d in infos if float(d["createTime"]) >= since]


def _redeployments(world: World, since: float, release: str) -> list[dict[str, Any]]:
    """Deployments since `since` that neither are the release nor CodeDeploy's own rollbacks."""
    return [
        d
        for d in _deployments_since(world, since)
        if d.get("creator") != "codeDeployRollback" and d["deploymentId"] != release
    ]


def _wait_final(world: World, deployment_id: str, what: str) -> dict[str, Any]:
    # At most CodeDeploy's own limits: an hour to install, an hour for a hook (then a little wall time).
    limit = world.scale.drill(INSTALL_TIMEOUT_SECONDS + HOOK_TIMEOUT_SECONDS) + 30
    world.wait_for(
        lambda: world.deployment(deployment_id)["status"] in FINISHED_STATUSES,
        limit,
        f"{what} {deployment_id}",
    )
    return world.deployment(deployment_id)


def drive(world: World, users: SimulatedUsers, timeline: Timeline, scenario: Scenario, version: str) -> Drive:
    """Push the release and wait for what the scenario sets in motion; raises TimeoutError when stuck."""
    scale = world.scale
    wait_quiet(world)
    timeline.say(f"--- scenario {scenario.name}: {scenario.title}")
    faults = scenario.faults(scale)
    driven = Drive(
        version=version,
        pipeline=None,
        deployment_id="",
        deployment={},
        redeployment=None,
        serving_before=_dominant(world.serving_versions()),
        start=scale.now(),
        created_after=scale.timestamp(),
        events_from=len(world.events),
        notes_from=len(world.notifications),
    )
    what = scenario.change_text or (f"faults {faults}" if faults else "no fault")
    commit = world.ship(version, {**world.release_files(faults), **scenario.source_files()}, what)
    execution = world.execution_of(commit, timeout=30)
    # The build and CodeDeployToECS: at most the build's timeout (30 AWS minutes, at least 2 wall minutes).
    deployment_id = world.deployment_of(
        execution, timeout=BUILD_TIMEOUT_FLOOR_SECONDS + scale.drill(30 * 60) + 30
    )
    driven.start = scale.now()
    if deployment_id is not None:
        # The window starts when CodeDeployToECS created the deployment (its createTime, on the AWS clock),
        # not when the drill saw it.
        created = float(world.service.get(deployment_id)["createTime"]) - scale.wall_epoch
        driven.start = min(driven.start, created)
    if deployment_id is None:
        timeline.say(f"release   {version} ({commit[:8]}) stopped in its pipeline: nothing deployed")
        driven.pipeline = _pipeline_run(world, execution)
        scale.sleep(scale.drill(2 * 60))  # the failure's notification, and users on the original meanwhile
        driven.end = scale.now()
        users.wait_settled(driven.end, timeout=world.user_timeout + 1.0)
        return driven
    driven.deployment_id = deployment_id
    timeline.say(
        f"release   {version} ({commit[:8]}) -> CreateDeployment {deployment_id} (faults: {faults or 'none'})"
    )
    driven.deployment = _wait_final(world, driven.deployment_id, "deployment")
    world.pipelines.wait(world.pipeline, execution, timeout=30)
    driven.pipeline = _pipeline_run(world, execution)
    if (scenario.expected.redeployments or 0) > 0 and driven.deployment["status"] == "Succeeded":
        try:
            world.wait_for(
                lambda: bool(_redeployments(world, driven.created_after, driven.deployment_id)),
                scale.drill(900) + 20,
                "the auto-rollback Lambda's redeployment",
            )
            first = _redeployments(world, driven.created_after, driven.deployment_id)[0]
            driven.redeployment = _wait_final(world, str(first["deploymentId"]), "redeployment")
        except TimeoutError as exc:
            timeline.say(f"WARNING   {exc}")
        # No loop: watch a few more health-check periods for further automatic deployments.
        scale.sleep(scale.drill(4 * 60))
    else:
        scale.sleep(scale.drill(2 * 60))
    driven.end = scale.now()
    users.wait_settled(driven.end, timeout=world.user_timeout + 1.0)
    return driven


def _pipeline_run(world: World, execution: str) -> PipelineRun:
    run = world.pipeline_run(execution)
    return PipelineRun(
        run["execution_id"],
        run["status"],
        run["commit"],
        run["trigger"],
        [PipelineAction(**a) for a in run["actions"]],
        run["task_definition"],
        run["image"],
    )


def account(requests: list[UserRequest], served: dict[str, str]) -> Users:
    """The requests' outcomes, in all and by the version that served each."""
    counts = Users(total=len(requests))
    for request in requests:
        slot = counts.by_version.setdefault(served[request.request_id], VersionCount())
        slot.total += 1
        if request.outcome == "failed":
            slot.failed += 1
            counts.failed += 1
        elif request.outcome == "timed_out":
            slot.timed_out += 1
            counts.timed_out += 1
    counts.answered = counts.total - counts.bad
    counts.blast_radius_percent = round(100 * counts.bad / counts.total, 3) if counts.total else 0.0
    return counts


def _record(event: Event) -> dict[str, Any]:
    record: dict[str, Any] = event.data.get("record") or {}
    return record


def _lambda_actions(events: list[Event]) -> list[LambdaAction]:
    return [
        LambdaAction(round(e.t, 3), r.get("action"), r.get("decision"), r.get("alarm"))
        for e in events
        if e.kind == "lambda"
        and (r := _record(e)).get("function") == "auto_rollback"
        and r.get("action") in LAMBDA_ACTIONS
    ]


def _production_shifts(events: list[Event], deployment_id: str) -> list[Event]:
    """The production listener's traffic shifts of one deployment (percent on its replacement)."""
    return [
        e
        for e in events
        if e.kind == "traffic"
        and e.data.get("deployment") == deployment_id
        and e.data.get("listener") == "production"
    ]


# The release-report function's REPORT_PREFIX (lambda-functions.yaml): its scorecards' keys. The drill copies
# each HTML scorecard out of the stand-in's bucket into SCORECARD_DIR, beside its own report.
SCORECARD_PREFIX = "release-reports/"
SCORECARD_DIR = ROOT / "build" / "drill" / "scorecards"


def scorecard(world: World, deployment_id: str, notes_from: int) -> Scorecard:
    """The deployment's scorecard, read back from the artifact bucket once the release-report function (run
    asynchronously on CodeDeploy's end event) has written it and mailed its link: within two AWS minutes."""
    key = f"{SCORECARD_PREFIX}{world.group}/{deployment_id}"
    links = (quote(f"{key}.html", safe=""), f"s3://{world.artifact_bucket}/{key}")

    def linked() -> bool:
        return any(
            any(link in note["message"] for link in links) for note in world.notifications[notes_from:]
        )

    def read(suffix: str) -> str | None:
        try:
            body = world.s3.get_object(Bucket=world.artifact_bucket, Key=key + suffix)["Body"]
        except world.s3.exceptions.NoSuchKey:
            return None
        return str(body.read().decode())

    with contextlib.suppress(TimeoutError):  # read what is there: the claim says what is missing
        world.wait_for(linked, world.scale.drill(120) + 5, f"the scorecard of {deployment_id}", poll=0.1)
    data, html = read(".json"), read(".html")
    if data is None:
        return Scorecard(deployment_id, key, None, linked=linked())
    card = json.loads(data)
    if html is not None:
        SCORECARD_DIR.mkdir(parents=True, exist_ok=True)
        (SCORECARD_DIR / f"{deployment_id}.html").write_text(html)
    return Scorecard(
        deployment_id,
        key,
        (card.get("deployment") or {}).get("verdict"),
        (card.get("release") or {}).get("image_tag"),
        [f"{g.get('event')} {g.get('status')}" for g in card.get("gates") or []],
        picture=html is not None and "<svg" in html,
        linked=linked(),
    )


def measure(world: World, users: SimulatedUsers, scenario: Scenario, driven: Drive) -> Result:
    """Account for the window's requests and read its events into a Result (checked against Expected)."""
    scale = world.scale
    requests = users.window(driven.start, driven.end)
    served = served_by(world, requests)
    events = world.events[driven.events_from :]
    deployments = _deployments_since(world, driven.created_after)
    bad = [r for r in requests if r.outcome != "answered" and served[r.request_id] == driven.version]
    first_bad = bad[0].started if bad else None
    shifts = _production_shifts(events, driven.deployment_id)
    first_served = [r.started for r in requests if served[r.request_id] == driven.version]
    exposures = [e.t for e in shifts if int(e.data.get("percent", 0)) > 0] + first_served[:1]
    exposed_at = min(exposures) if exposures else None
    full = [e.t for e in shifts if int(e.data.get("percent", 0)) == 100]
    # Time to detect counts from the release's first production traffic (the deployment's start when it never
    # gets any); for a fault that starts after promotion, from its first failed request.
    origin = exposed_at if exposed_at is not None else driven.start
    if scenario.expected.detect_from_first_failure and first_bad is not None:
        origin = first_bad

    gate, actor, decision_t = Gate.NONE, "", None
    decisions = [e for e in events if e.kind == "decision"]
    if decisions:
        decision_t = decisions[0].t
        code = str(decisions[0].data.get("code"))
        gate, actor = GATES.get(code, (Gate.OTHER, code))
    restores = [e for e in events if e.kind == "restore"]
    restore_t = restores[0].t if restores else None
    overdue = [e for e in events if e.kind == "alarm" and "deployment-overdue" in str(e.data.get("alarm"))]
    if any(e.data.get("new") == "ALARM" for e in overdue):
        gate, actor = Gate.TIMEOUT, "DeploymentOverdue alarm -> auto-rollback Lambda StopDeployment"
    lambda_actions = _lambda_actions(events)
    redeployment = driven.redeployment
    if redeployment is not None:
        gate, actor = Gate.RESURRECTION, "auto-rollback Lambda redeploys the last known-good revision"
        redeployed = [a.t for a in lambda_actions if a.action == "redeployed"]
        decision_t = redeployed[0] if redeployed else decision_t
        back = [
            e.t
            for e in _production_shifts(events, redeployment["deploymentId"])
            if e.data.get("percent") == 100
        ]
        restore_t = back[0] if back else None

    def since_origin(t: float | None) -> Seconds | None:
        if t is None:
            return None
        duration = max(0.0, t - origin)
        return Seconds(round(duration, 3), round(scale.aws(duration), 1))

    first = driven.deployment
    error = first.get("errorInformation") or {}
    result = Result(
        scenario=scenario.name,
        title=scenario.title,
        expected=scenario.expected.text,
        release=driven.version,
        pipeline=driven.pipeline,
        deployment=None
        if not first
        else Deployment(
            first["deploymentId"],
            first["status"],
            error.get("code"),
            error.get("message"),
            first.get("rollbackInfo"),
        ),
        redeployment=None
        if redeployment is None
        else Redeployment(
            redeployment["deploymentId"], redeployment["status"], redeployment.get("description")
        ),
        serving_before=driven.serving_before,
        serving_after=_dominant(world.serving_versions()),
        production_traffic_reached_release=exposed_at is not None,
        users=account(requests, served),
        gate=gate,
        actor=actor,
        alarms_fired=sorted(
            {str(e.data.get("alarm")) for e in events if e.kind == "alarm" and e.data.get("new") == "ALARM"}
        ),
        rollback_deployments=[
            d["deploymentId"] for d in deployments if d.get("creator") == "codeDeployRollback"
        ],
        automatic_redeployments=[
            d["deploymentId"] for d in _redeployments(world, driven.created_after, driven.deployment_id)
        ],
        auto_rollback_lambda=lambda_actions,
        time_to_detect=since_origin(decision_t),
        time_to_restore=since_origin(restore_t),
        detect_from="the fault's first failed request"
        if origin == first_bad
        else "first production traffic"
        if origin == exposed_at
        else "deployment start",
        notifications=[
            Notification(round(n["t"], 3), n["subject"], n["message"].strip().split("\n")[0][:200])
            for n in world.notifications[driven.notes_from :]
        ],
        scorecards=[
            scorecard(world, i, driven.notes_from)
            for i in (driven.deployment_id, (redeployment or {}).get("deploymentId"))
            if i
        ],
        window=Window(round(driven.start, 3), round(driven.end, 3)),
        decision_at=None if decision_t is None else round(decision_t, 3),
        restore_at=None if restore_t is None else round(restore_t, 3),
        exposed_at=None if exposed_at is None else round(exposed_at, 3),
        full_shift_at=round(full[0], 3) if full else None,
    )
    found = claims(scenario.expected, result)
    result.claims = [asdict(c) for c in found]
    result.failures = [c.why for c in found if not c.held]
    return result


def run_scenario(
    world: World, users: SimulatedUsers, timeline: Timeline, scenario: Scenario, version: str
) -> Result:
    try:
        result = measure(world, users, scenario, drive(world, users, timeline, scenario, version))
    except TimeoutError as exc:
        result = Result(scenario.name, scenario.title, scenario.expected.text, version, failures=[str(exc)])
    counts = result.users
    if result.pipeline is not None:
        timeline.say(f"pipeline  {result.pipeline.path} (execution {result.pipeline.execution_id[:8]})")
    for card in result.scorecards:
        where = SCORECARD_DIR.relative_to(ROOT) / f"{card.deployment}.html" if card.picture else "no HTML"
        timeline.say(f"report    {card.deployment} scorecard: {card.verdict or 'missing'} ({where})")
    timeline.say(
        f"=== {scenario.name}: {result.outcome} - {counts.failed} failed + {counts.timed_out} timed out of "
        f"{counts.total} user requests; serving {result.serving_before} -> {result.serving_after}"
        + (f"; {'; '.join(result.failures)}" if result.failures else "")
    )
    return result


def ship_unmeasured(
    world: World,
    timeline: Timeline,
    version: str,
    faults: dict[str, str],
    why: str,
    *,
    config: str | None = None,
) -> None:
    """Bench only, not measured: ship `version` with `faults` once no deployment is in flight (a clean one
    after a faulty release still serves, or the noisy original a scenario starts from), under deployment
    configuration `config` when given (the group's is put back after); raises TimeoutError when it does not
    end Succeeded."""
    world.wait_for(
        lambda: all(
            world.service.get(i)["status"] in FINISHED_STATUSES for i in world.service.deployment_ids()
        ),
        world.scale.drill(INSTALL_TIMEOUT_SECONDS + HOOK_TIMEOUT_SECONDS) + 30,
        "no deployment in flight",
    )
    timeline.say(f"{'reset' if not faults else 'baseline':9s} {why}: pushing {version} (not measured)")
    before = world.deployment_config(config) if config else None
    try:
        execution = world.execution_of(world.ship(version, world.release_files(faults), why), timeout=30)
        deployment = world.deployment_of(
            execution, timeout=BUILD_TIMEOUT_FLOOR_SECONDS + world.scale.drill(30 * 60) + 30
        )
        if deployment is None:
            raise TimeoutError(f"{version} ({why}) stopped in its pipeline")
        status = _wait_final(world, deployment, "deployment")["status"]
    finally:
        if before is not None:
            world.deployment_config(before)
    if status != "Succeeded":
        raise TimeoutError(f"{version} ({why}) ended {status}, not Succeeded")


def wait_quiet(world: World) -> None:
    """Before a release: no deployment in flight and every alarm OK (within an AWS hour)."""

    def quiet() -> bool:
        states = world.alarm_states()
        in_flight = [
            i
            for i in world.service.deployment_ids()
            if world.service.get(i)["status"] not in FINISHED_STATUSES
        ]
        return not in_flight and all(s == "OK" for s in states.values())

    timeout = world.scale.drill(3600) + 10
    world.wait_for(quiet, timeout, "every alarm OK and no deployment in flight", poll=0.1)


# ---------------------------------------------------------------- the whole drill
@dataclass
class Report:
    """Every scenario's Result, the chart's data and the timeline; `to_json()` is report.json."""

    time_scale: float
    user_rate_per_aws_minute: float
    wall_seconds: float
    scenarios: list[Result]
    series: list[dict[str, Any]]
    marks: list[dict[str, Any]]
    scenario_marks: list[dict[str, Any]]
    timeline: list[str]
    evaluations: list[dict[str, Any]]  # every alarm evaluation: when, what it saw, what was still in its lag
    holds: list[dict[str, Any]]  # when the stand-in held the AWS clock, and why
    held_by_reason: dict[str, float]  # wall seconds the clock was held, per reason (API calls included)
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "scenarios": [r.to_json() for r in self.scenarios]}


def run(
    names: list[str],
    scale: TimeScale,
    *,
    quiet: bool = False,
    out: Any = sys.stdout,
    user_rate: float = DEMO_RATE,
    literal: bool = False,
    reset: bool = False,
) -> Report:
    timeline = Timeline(scale, out=out, quiet=quiet)
    started = time.monotonic()
    results: list[Result] = []
    with World(scale, on_event=timeline, literal=literal) as world:
        timeline.say(
            f"production {world.production_url}  test {world.test_url}  time scale x{scale.factor:g}"
        )
        with (
            SimulatedUsers(
                world.production_url, scale, per_minute=user_rate, timeout=world.user_timeout
            ) as users,
            user_report(world, users, timeline),
        ):
            faulty: set[str] = set()
            serial = 2
            for name in names:
                scenario = SCENARIOS[name]
                if scenario.baseline is not None:
                    try:
                        # All at once: the original is not judged against the clean release it replaces
                        # (2 % against 0 % is worse, and the judge may rightly say so).
                        ship_unmeasured(world, timeline, f"v{serial}", scenario.baseline(scale), "original",
                                        config="CodeDeployDefault.ECSAllAtOnce")  # fmt: skip
                    except TimeoutError as exc:
                        results.append(Result(name, scenario.title, scenario.expected.text, f"v{serial}",
                                              failures=[f"the original did not ship: {exc}"]))  # fmt: skip
                        break
                    faulty.add(f"v{serial}")
                    serial += 1
                version = f"v{serial}"
                serial += 1
                if scenario.faults(scale):
                    faulty.add(version)
                results.append(run_scenario(world, users, timeline, scenario, version))
                if results[-1].deployment is None and results[-1].pipeline is None:
                    break
                if reset and results[-1].serving_after in faulty:
                    ship_unmeasured(world, timeline, f"v{serial}", {}, "a faulty release serves: clean")
                    serial += 1
            series = world_series(world, users, scale)
            evaluations = [asdict(e) for e in world.alarms.evaluations]
        marks = [
            {"t": round(e.t, 3), "kind": "alarm", "text": e.text}
            for e in world.events
            if e.kind == "alarm" and e.data.get("new") == "ALARM"
        ]
        for r in results:
            for kind, t in (("decision", r.decision_at), ("restore", r.restore_at)):
                if t is not None:
                    marks.append(
                        {"t": t, "kind": kind, "text": f"{r.scenario}: {kind} ({r.gate}, {r.actor})"}
                    )
    return Report(
        time_scale=scale.factor,
        user_rate_per_aws_minute=user_rate,
        wall_seconds=round(time.monotonic() - started, 1),
        scenarios=results,
        series=series,
        marks=marks,
        scenario_marks=[
            {"t": r.window.start, "scenario": r.scenario, "pipeline": pipeline_stage(r)}
            for r in results
            if r.window
        ],
        timeline=timeline.lines,
        evaluations=evaluations,
        holds=[asdict(h) for h in scale.holds],
        held_by_reason={k: round(v, 3) for k, v in scale.held_by_reason.items()},
        ok=all(not r.failures for r in results) and len(results) == len(names),
    )


def pipeline_stage(result: Result) -> str:
    """Where the release's pipeline got to: "reached Deploy" (CodeDeploy took it) or where it stopped."""
    if result.pipeline is None:
        return "no pipeline"
    stopped = result.pipeline.stopped_at
    return f"stopped at {stopped}" if stopped and result.deployment is None else "reached Deploy"


def world_series(
    world: World, users: SimulatedUsers, scale: TimeScale, bin_seconds: float = 0.25
) -> list[dict[str, Any]]:
    """Per time bin: user requests by version and their outcomes (the chart's data)."""
    requests = users.window(0.0, scale.now())
    served = served_by(world, requests)
    bins: dict[int, dict[str, Any]] = {}
    for request in requests:
        k = int(request.started / bin_seconds)
        slot = bins.setdefault(k, {"t": round(k * bin_seconds, 3), "total": 0, "bad": 0, "versions": {}})
        slot["total"] += 1
        slot["bad"] += request.outcome != "answered"
        version = served[request.request_id]
        slot["versions"][version] = slot["versions"].get(version, 0) + 1
    return [bins[k] for k in sorted(bins)]


def _duration(value: Seconds | None) -> str:
    return "-" if value is None else f"{value.drill:.1f}s/{value.aws:.0f}s"


SUMMARY: list[Column[Result]] = [
    Column("scenario", 30, lambda r: r.scenario),
    Column("outcome", 16, lambda r: r.outcome),
    Column("pipeline", 18, pipeline_stage),
    Column("gate", 34, lambda r: str(r.gate)),
    Column("users failed/total", 18, lambda r: f"{r.users.bad}/{r.users.total}", ">"),
    Column("detect", 14, lambda r: _duration(r.time_to_detect), ">"),
    Column("restore", 14, lambda r: _duration(r.time_to_restore), ">"),
    Column("serving", 0, lambda r: f"{r.serving_before} -> {r.serving_after}"),
]


def summary_table(results: list[Result]) -> str:
    return render(SUMMARY, results)
