"""`make bench`: each scenario several times, medians, beside the same scenarios under the literal rule.

    python -m local.drill.bench [--runs 3] [--time-scale 120] [--out build/drill/bench.json]

Two policies, each run RUNS times on a fresh stand-in (all scenarios of a run share one, as in `make demo`;
when a faulty release is left serving, a clean one is shipped before the next scenario, unmeasured):
- phoenix: the test-traffic gate (AfterAllowTestTraffic hook), a canary shift, CodeDeploy's alarm rollback on
  the health and target-group alarms, and the auto-rollback Lambda (stop, or resurrect after completion);
- literal: what the spec describes word for word - no test-traffic gate, an all-at-once shift, and a rollback
  only after ALARM_THRESHOLD failed one-minute health checks (the auto-rollback Lambda on the health alarm).
Printed: per scenario and policy, the outcomes over the runs (promoted / rolled back / resurrected), decision
quality (false rollbacks of healthy releases, missed regressions) and the medians of time to detect, time to
restore (AWS-equivalent seconds) and failed user requests (percent).
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import statistics
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

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
    "bad-under-traffic",
    "hanging",
    "noisy-healthy",
    "regression-after-completion",
]


def classify(result: Result) -> str:
    if result.deployment is None:
        return "error"
    if result.redeployment and result.redeployment.status == "Succeeded":
        return "resurrected"
    if result.serving_after == result.release:
        return "promoted"
    return "rolled back"


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
    """One scenario under one policy, over the runs."""

    scenario: str
    policy: str
    runs: int
    outcomes: dict[str, int]
    false_rollbacks: int
    missed_regressions: int
    detect_aws_s: Spread | None
    restore_aws_s: Spread | None
    failed_percent: Spread | None


def summarise(runs: dict[str, list[Report]]) -> list[Row]:
    rows = []
    for name in BENCH_ORDER:
        # A release that should be promoted and is not is a false rollback; the other way round, a miss.
        healthy = SCENARIOS[name].expected.serving is Serving.RELEASE
        for policy, reports in runs.items():
            results = [r for report in reports for r in report.scenarios if r.scenario == name]
            if not results:
                continue
            outcomes = Counter(classify(r) for r in results)
            rows.append(
                Row(
                    scenario=name,
                    policy=policy,
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


COLUMNS: list[Column[Row]] = [
    Column("scenario", 28, lambda row: row.scenario),
    Column("policy", 8, lambda row: row.policy),
    Column("outcomes", 34, lambda row: ", ".join(f"{k} {v}" for k, v in sorted(row.outcomes.items()))),
    Column("false rb", 8, lambda row: str(row.false_rollbacks), ">"),
    Column("missed", 6, lambda row: str(row.missed_regressions), ">"),
    Column("detect s (min-max)", 20, lambda row: _cell(row.detect_aws_s), ">"),
    Column("restore s (min-max)", 20, lambda row: _cell(row.restore_aws_s), ">"),
    Column("failed % (min-max)", 18, lambda row: _cell(row.failed_percent), ">"),
]


def _cell(spread: Spread | None) -> str:
    return figure(None) if spread is None else spread.cell()


def _without_chart(report: Report) -> dict[str, object]:
    return {k: v for k, v in report.to_json().items() if k not in ("timeline", "series")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drill scenarios, several runs, two policies, medians")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=120.0)
    parser.add_argument("--out", default=str(ROOT / "build" / "drill" / "bench.json"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up tasks and workers on kill too
    runs: dict[str, list[Report]] = {"phoenix": [], "literal": []}
    for n in range(args.runs):
        for policy, reports in runs.items():
            print(f"run {n + 1}/{args.runs}, policy {policy} ...", flush=True)
            report = run(
                BENCH_ORDER,
                TimeScale(factor=args.time_scale),
                quiet=True,
                out=io.StringIO(),
                literal=policy == "literal",
                reset=True,
            )
            for result in report.scenarios:
                print(f"  {result.scenario:28s} {classify(result)}", flush=True)
            reports.append(report)
    rows = summarise(runs)
    print()
    print(render(COLUMNS, rows))
    print(
        f"\nmedians (and min-max) over {args.runs} run(s); detect/restore in AWS-equivalent seconds "
        f"(time scale x{args.time_scale:g})"
    )
    data = {
        "rows": [asdict(row) for row in rows],
        "runs": {policy: [_without_chart(r) for r in reports] for policy, reports in runs.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=2, default=str))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
