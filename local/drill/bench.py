"""`make bench`: each scenario several times, medians and ranges, in three comparisons.

    python -m local.drill.bench [--runs 5] [--time-scale 40] [--rate 200]   # build/drill/bench.json
    python -m local.drill.bench --factors 40,120 [--runs 5] [--rate 60]     # build/drill/bench-factors.json
    python -m local.drill.bench --rates 20,200 [--runs 5] [--time-scale 40]  # build/drill/bench-rates.json
    (--out PATH writes the JSON elsewhere)

Every run is `run()` on a fresh stand-in (all scenarios of a run share one, as in `make demo`; when a faulty
release is left serving, a clean one is shipped before the next scenario, unmeasured). `bench_runs` runs one
policy RUNS times at one time factor and one user load; the three modes only choose the settings and
aggregate the same Reports differently:
- policies (default): the phoenix policy beside the spec's literal rule -
  phoenix: the test-traffic gate (AfterAllowTestTraffic hook), a canary shift, CodeDeploy's alarm rollback on
  the health and target-group alarms, and the auto-rollback Lambda (stop, or resurrect after completion);
  literal: no test-traffic gate, an all-at-once shift, and a rollback only after ALARM_THRESHOLD failed
  one-minute health checks (the auto-rollback Lambda on the health alarm).
  Printed per scenario and policy: the outcomes over the runs (promoted / rolled back / resurrected), decision
  quality (false rollbacks of healthy releases, missed regressions) and, as median (min-max), time to detect,
  time to restore (AWS-equivalent seconds) and failed user requests (percent).
- factors: the phoenix policy at two time factors; per scenario the median detect and restore (AWS seconds) at
  each and their relative difference |a-b| / max(a, b), "agree" within AGREEMENT. A figure that depends on the
  factor measures the machine, not the policy: exit status 1 when one disagrees.
- rates: the phoenix policy at several user loads (requests per AWS minute): how the verdicts move with load
  (outcomes, false rollbacks, missed regressions, failed requests per scenario and rate).

The bench runs at x40 by default, slower than the demo's x120, so that the machine can carry a realistic
load (BENCH_RATE, 200 requests per AWS minute, is about 130 requests per wall second at x40). A comparison
of factors needs a load the faster factor carries too (60 a minute at x120).
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from local.drill.results import Result
from local.drill.run import Report, run
from local.drill.scenarios import SCENARIOS, Serving
from local.drill.table import Column, figure, render
from local.timescale import TimeScale
from scripts.stacks import ROOT

# noisy-healthy is promoted (its 2% errors then serve): it runs after the gate scenarios, so their blast
# radius is not its noise, and before the regression, which leaves production on whatever healing achieved.
BENCH_ORDER = [
    "healthy",
    "broken-health",
    "degraded-health",
    "bad-under-traffic",
    "bad-under-traffic-20",
    "noisy-healthy",
    "regression-after-completion",
]
BENCH_RUNS = 5  # the README's and docs/benchmark.md's figures come from at least this many runs
# AWS seconds per drill second: slower than make demo's x120, so the machine carries a production-like load
# (about 130 requests a wall second through the Python ALB proxy, the most two cores carry without dropping).
BENCH_TIME_SCALE = 40.0
BENCH_RATE = 200.0  # user requests per AWS minute
# Comparing factors needs a load the faster one carries too: 60 a minute is 120 a wall second at x120.
FACTORS_RATE = 60.0
AGREEMENT = 0.25  # two medians agree when they differ by at most this share of the larger
POLICIES = ("phoenix", "literal")
OUT_DIR = ROOT / "build" / "drill"
OUT_FILES = {"policies": "bench.json", "factors": "bench-factors.json", "rates": "bench-rates.json"}


class Runner(Protocol):
    """`local.drill.run.run`'s shape, as the bench calls it (a test passes a fake)."""

    def __call__(
        self,
        names: list[str],
        scale: TimeScale,
        *,
        quiet: bool,
        out: Any,
        user_rate: float,
        literal: bool,
        reset: bool,
    ) -> Report: ...


def classify(result: Result) -> str:
    if result.deployment is None:
        return "error"
    if result.redeployment and result.redeployment.status == "Succeeded":
        return "resurrected"
    if result.serving_after == result.release:
        return "promoted"
    return "rolled back"


@dataclass(frozen=True)
class Setting:
    """What one batch of runs is run under: a policy, a time factor and a user load."""

    policy: str = "phoenix"
    factor: float = BENCH_TIME_SCALE
    rate: float = BENCH_RATE  # user requests per AWS minute

    def __str__(self) -> str:
        return f"{self.policy}, x{self.factor:g}, {self.rate:g} req/AWS min"


@dataclass(frozen=True)
class Spread:
    """A figure over the runs: its median and its range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        if not values:
            return None
        return cls(round(statistics.median(values), 1), round(min(values), 1), round(max(values), 1))

    def cell(self) -> str:
        return f"{self.median:g} ({self.low:g}-{self.high:g})"


@dataclass(frozen=True)
class Row:
    """One scenario under one setting, over the runs."""

    scenario: str
    setting: Setting
    runs: int
    outcomes: dict[str, int]
    false_rollbacks: int
    missed_regressions: int
    detect_aws_s: Spread | None
    restore_aws_s: Spread | None
    failed_percent: Spread | None


def bench_runs(
    setting: Setting,
    runs: int,
    *,
    names: list[str] | None = None,
    runner: Runner = run,
    log: Callable[[str], None] = print,
) -> list[Report]:
    """`runs` drills of `names` (BENCH_ORDER) under one setting, each on a fresh stand-in."""
    reports = []
    for n in range(runs):
        log(f"run {n + 1}/{runs}: {setting} ...")
        report = runner(
            list(names or BENCH_ORDER),
            TimeScale(factor=setting.factor),
            quiet=True,
            out=io.StringIO(),
            user_rate=setting.rate,
            literal=setting.policy == "literal",
            reset=True,
        )
        for result in report.scenarios:
            log(f"  {result.scenario:28s} {classify(result)}")
        holds = report.to_json().get("holds") or []
        if holds:
            held = sum(float(h.get("wall_seconds", 0)) for h in holds)
            log(f"  the stand-in held its clock {len(holds)} time(s), {held:.1f} wall s in all")
        reports.append(report)
    return reports


def summarise(batches: dict[Setting, list[Report]]) -> list[Row]:
    """Per scenario (BENCH_ORDER) and setting (in the batches' order): outcomes, quality, spreads."""
    rows = []
    for name in BENCH_ORDER:
        # A release that should be promoted and is not is a false rollback; the other way round, a miss.
        healthy = SCENARIOS[name].expected.serving is Serving.RELEASE
        for setting, reports in batches.items():
            results = [r for report in reports for r in report.scenarios if r.scenario == name]
            if not results:
                continue
            outcomes = Counter(classify(r) for r in results)
            rows.append(
                Row(
                    scenario=name,
                    setting=setting,
                    runs=len(results),
                    outcomes=dict(outcomes),
                    false_rollbacks=outcomes["rolled back"] + outcomes["resurrected"] if healthy else 0,
                    missed_regressions=0 if healthy else outcomes["promoted"],
                    detect_aws_s=Spread.of([r.time_to_detect.aws for r in results if r.time_to_detect]),
                    restore_aws_s=Spread.of([r.time_to_restore.aws for r in results if r.time_to_restore]),
                    failed_percent=Spread.of([r.users.blast_radius_percent for r in results]),
                )
            )
    return rows


# ---------------------------------------------------------------- issue 12's goals
def _failed(r: Result) -> float:
    return r.users.blast_radius_percent


def _detect_from_exposure(r: Result) -> float | None:
    """Seconds from the release's first production traffic to the decision; 0 when it was stopped before any
    user request reached it (the test-traffic gate)."""
    if r.exposed_at is None:
        return 0.0
    return r.time_to_detect.aws if r.time_to_detect else None


def _restore_after_decision(r: Result) -> float | None:
    if r.time_to_detect is None or r.time_to_restore is None:
        return None
    return round(r.time_to_restore.aws - r.time_to_detect.aws, 1)


def _rolled_back(r: Result) -> float:
    return 0.0 if classify(r) == "promoted" else 1.0


@dataclass(frozen=True)
class Goal:
    """One goal of issue 12: a figure per run, met when its median and its worst run are within the limits."""

    scenarios: tuple[str, ...]
    text: str
    measure: Callable[[Result], float | None]
    median_limit: float
    worst_limit: float


GOALS = (
    Goal(("broken-health", "hanging"), "failed user requests 0 %", _failed, 0.0, 0.0),
    Goal(("bad-under-traffic", "bad-under-traffic-20"), "failed <= 0.5 % (worst 1 %)", _failed, 0.5, 1.0),
    Goal(
        ("bad-under-traffic", "bad-under-traffic-20"),
        "detect <= 60 s from exposure",
        _detect_from_exposure,
        60.0,
        60.0,
    ),
    Goal(
        ("bad-under-traffic", "bad-under-traffic-20"),
        "restore <= 10 s after the decision",
        _restore_after_decision,
        10.0,
        10.0,
    ),
    Goal(("regression-after-completion",), "failed <= 3 %", _failed, 3.0, 3.0),
    Goal(("regression-after-completion",), "detect <= 90 s", _detect_from_exposure, 90.0, 90.0),
    Goal(
        ("regression-after-completion",),
        "restore <= 120 s after the decision",
        _restore_after_decision,
        120.0,
        120.0,
    ),
    Goal(("healthy", "noisy-healthy"), "no false rollback in any run", _rolled_back, 0.0, 0.0),
)


@dataclass(frozen=True)
class GoalRow:
    """A goal for one scenario: the figure's median and worst run under each policy, and whether phoenix
    meets it (both within the limits, and in every run measured)."""

    goal: str
    scenario: str
    figures: dict[str, tuple[float, float] | None]  # policy -> (median, worst)
    met: bool


def goal_rows(batches: dict[Setting, list[Report]]) -> list[GoalRow]:
    """Each goal for each of its scenarios that ran; a run whose figure is missing fails the goal."""
    rows = []
    for goal in GOALS:
        for name in goal.scenarios:
            values = {
                setting.policy: [
                    goal.measure(r) for report in reports for r in report.scenarios if r.scenario == name
                ]
                for setting, reports in batches.items()
            }
            if not values.get("phoenix"):
                continue
            figures = {
                policy: (round(statistics.median(known), 1), round(max(known), 1))
                if (known := [v for v in found if v is not None])
                else None
                for policy, found in values.items()
            }
            phoenix = figures["phoenix"]
            met = (
                phoenix is not None
                and None not in values["phoenix"]
                and phoenix[0] <= goal.median_limit
                and phoenix[1] <= goal.worst_limit
            )
            rows.append(GoalRow(goal.text, name, figures, met))
    return rows


def _goal_cell(figures: tuple[float, float] | None) -> str:
    return figure(None) if figures is None else f"{figures[0]:g} (worst {figures[1]:g})"


GOAL_COLUMNS: list[Column[GoalRow]] = [
    Column("goal (issue 12)", 36, lambda row: row.goal),
    Column("scenario", 28, lambda row: row.scenario),
    Column("phoenix median (worst)", 22, lambda row: _goal_cell(row.figures.get("phoenix")), ">"),
    Column("literal rule (worst)", 22, lambda row: _goal_cell(row.figures.get("literal")), ">"),
    Column("met", 4, lambda row: "yes" if row.met else "NO", ">"),
]


# ---------------------------------------------------------------- the factor comparison
@dataclass(frozen=True)
class Agreement:
    """One scenario's median of one figure at two time factors."""

    scenario: str
    figure: str  # "detect" or "restore"
    a: float | None  # AWS seconds at the first factor
    b: float | None
    difference: float | None  # |a-b| / max(a, b); None when neither factor has the figure
    agree: bool


def relative_difference(a: float, b: float) -> float:
    larger = max(abs(a), abs(b))
    return abs(a - b) / larger if larger else 0.0


def agreement(scenario: str, name: str, a: float | None, b: float | None) -> Agreement:
    """Medians a and b agree within AGREEMENT; a figure at one factor only disagrees, at neither agrees."""
    if a is None or b is None:
        return Agreement(scenario, name, a, b, None, a is None and b is None)
    difference = relative_difference(a, b)
    return Agreement(scenario, name, a, b, round(difference, 3), difference <= AGREEMENT)


def compare_factors(rows: list[Row], a: Setting, b: Setting) -> list[Agreement]:
    """Per scenario that ran at both settings: detect and restore medians side by side."""

    def median(spread: Spread | None) -> float | None:
        return None if spread is None else spread.median

    by_key = {(row.scenario, row.setting): row for row in rows}
    out = []
    for name in BENCH_ORDER:
        row_a, row_b = by_key.get((name, a)), by_key.get((name, b))
        if row_a is None or row_b is None:
            continue
        out.append(agreement(name, "detect", median(row_a.detect_aws_s), median(row_b.detect_aws_s)))
        out.append(agreement(name, "restore", median(row_a.restore_aws_s), median(row_b.restore_aws_s)))
    return out


# ---------------------------------------------------------------- the tables
def _cell(spread: Spread | None) -> str:
    return figure(None) if spread is None else spread.cell()


def _outcomes(row: Row) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(row.outcomes.items()))


POLICY_COLUMNS: list[Column[Row]] = [
    Column("scenario", 28, lambda row: row.scenario),
    Column("policy", 8, lambda row: row.setting.policy),
    Column("outcomes", 34, _outcomes),
    Column("false rb", 8, lambda row: str(row.false_rollbacks), ">"),
    Column("missed", 6, lambda row: str(row.missed_regressions), ">"),
    Column("detect s (min-max)", 24, lambda row: _cell(row.detect_aws_s), ">"),
    Column("restore s (min-max)", 24, lambda row: _cell(row.restore_aws_s), ">"),
    Column("failed % (min-max)", 18, lambda row: _cell(row.failed_percent), ">"),
]

RATE_COLUMNS: list[Column[Row]] = [
    Column("scenario", 28, lambda row: row.scenario),
    Column("req/AWS min", 11, lambda row: f"{row.setting.rate:g}", ">"),
    Column("outcomes", 34, _outcomes),
    Column("false rb", 8, lambda row: str(row.false_rollbacks), ">"),
    Column("missed", 6, lambda row: str(row.missed_regressions), ">"),
    Column("failed % (min-max)", 18, lambda row: _cell(row.failed_percent), ">"),
]


def _percent(share: float | None) -> str:
    return figure(None) if share is None else f"{100 * share:.0f} %"


def factor_columns(a: Setting, b: Setting) -> list[Column[Agreement]]:
    def verdict(item: Agreement) -> str:
        if item.a is None and item.b is None:
            return ""
        return "agree" if item.agree else "DISAGREE"

    return [
        Column("scenario", 28, lambda item: item.scenario),
        Column("figure", 7, lambda item: item.figure),
        Column(f"x{a.factor:g} AWS s", 12, lambda item: figure(item.a), ">"),
        Column(f"x{b.factor:g} AWS s", 12, lambda item: figure(item.b), ">"),
        Column("difference", 10, lambda item: _percent(item.difference), ">"),
        Column("", 0, verdict),
    ]


# ---------------------------------------------------------------- the modes
def _without_chart(report: Report) -> dict[str, Any]:
    return {k: v for k, v in report.to_json().items() if k not in ("timeline", "series", "evaluations")}


def _runs_json(batches: dict[Setting, list[Report]]) -> list[dict[str, Any]]:
    return [
        {"setting": asdict(setting), "reports": [_without_chart(r) for r in reports]}
        for setting, reports in batches.items()
    ]


@dataclass(frozen=True)
class Outcome:
    """A mode's answer: the text printed, the JSON written and the exit status."""

    text: str
    data: dict[str, Any]
    status: int = 0


def policies_mode(runs: int, factor: float, rate: float, runner: Runner = run) -> Outcome:
    batches = {s: bench_runs(s, runs, runner=runner) for s in (Setting(p, factor, rate) for p in POLICIES)}
    rows = summarise(batches)
    goals = goal_rows(batches)
    text = (
        f"{render(POLICY_COLUMNS, rows)}\n\nmedians (and min-max) over {runs} run(s); detect/restore in "
        f"AWS-equivalent seconds\n(time scale x{factor:g}, {rate:g} user requests per AWS minute)\n\n"
        f"{render(GOAL_COLUMNS, goals)}\n\nissue 12's goals: met when the phoenix policy's median and worst "
        "run are within them;\ndetect counts from the release's first production traffic "
        "(0: stopped before any)"
    )
    return Outcome(
        text,
        {
            "mode": "policies",
            "rows": [asdict(r) for r in rows],
            "goals": [asdict(g) for g in goals],
            "runs": _runs_json(batches),
        },
    )


def factors_mode(runs: int, factors: tuple[float, float], rate: float, runner: Runner = run) -> Outcome:
    a, b = (Setting("phoenix", f, rate) for f in factors)
    batches = {s: bench_runs(s, runs, runner=runner) for s in (a, b)}
    rows = summarise(batches)
    items = compare_factors(rows, a, b)
    disagree = [i for i in items if not i.agree]
    text = (
        f"{render(factor_columns(a, b), items)}\n\nmedians over {runs} run(s) at each factor, AWS-equivalent "
        f"seconds; phoenix policy, {rate:g} user requests per AWS minute\n"
        f"agree: the two medians differ by at most {AGREEMENT:.0%} of the larger\n"
        + (
            f"{len(disagree)} figure(s) depend on the time factor"
            if disagree
            else f"every figure agrees at x{a.factor:g} and x{b.factor:g}"
        )
    )
    data = {
        "mode": "factors",
        "factors": list(factors),
        "agreement_within": AGREEMENT,
        "comparison": [asdict(i) for i in items],
        "rows": [asdict(r) for r in rows],
        "runs": _runs_json(batches),
    }
    return Outcome(text, data, 1 if disagree else 0)


def rates_mode(runs: int, factor: float, rates: list[float], runner: Runner = run) -> Outcome:
    batches = {s: bench_runs(s, runs, runner=runner) for s in (Setting("phoenix", factor, r) for r in rates)}
    rows = summarise(batches)
    text = (
        f"{render(RATE_COLUMNS, rows)}\n\nhow the verdicts move with load: phoenix policy, {runs} run(s) per "
        f"rate, time scale x{factor:g}\nfailed % as median (min-max)"
    )
    return Outcome(
        text,
        {"mode": "rates", "rates": rates, "rows": [asdict(r) for r in rows], "runs": _runs_json(batches)},
    )


def _numbers(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"positive numbers wanted: {text!r}")
    return values


def _two_numbers(text: str) -> tuple[float, float]:
    values = _numbers(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"two time factors wanted (A,B), not {text!r}")
    return values[0], values[1]


def _positive(text: str) -> float:
    values = _numbers(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"one number wanted, not {text!r}")
    return values[0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Drill scenarios, several runs: policies, time factors or loads")
    p.add_argument("--runs", type=int, default=BENCH_RUNS, help="runs per setting (default %(default)s)")
    p.add_argument(
        "--time-scale",
        type=_positive,
        default=BENCH_TIME_SCALE,
        help="AWS seconds per drill second (default %(default)g; not with --factors)",
    )
    p.add_argument(
        "--rate",
        type=_positive,
        help=f"user requests per AWS minute (default {BENCH_RATE:g}, {FACTORS_RATE:g} with --factors; "
        "not with --rates)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--factors", type=_two_numbers, help="A,B: the phoenix policy at two time factors")
    mode.add_argument("--rates", type=_numbers, help="R1,R2,...: the phoenix policy at several user loads")
    p.add_argument("--out", help="the JSON report (default build/drill/bench.json, bench-factors.json, ...)")
    return p


def main(argv: list[str] | None = None, runner: Runner = run) -> int:
    args = parser().parse_args(argv)
    if args.runs < 1:
        parser().error("--runs must be at least 1")
    if args.factors:
        rate = args.rate or FACTORS_RATE
        name, outcome = "factors", factors_mode(args.runs, args.factors, rate, runner)
    elif args.rates:
        name, outcome = "rates", rates_mode(args.runs, args.time_scale, args.rates, runner)
    else:
        name, outcome = "policies", policies_mode(args.runs, args.time_scale, args.rate or BENCH_RATE, runner)
    out = Path(args.out) if args.out else OUT_DIR / OUT_FILES[name]
    print()
    print(outcome.text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(outcome.data, indent=2, default=str))
    print(f"report: {out}")
    return outcome.status


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up tasks and workers on kill too
    sys.exit(main())
