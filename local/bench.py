"""`make bench`: each scenario several times, medians, beside the same scenarios under the literal rule.

    python -m local.bench [--runs 3] [--time-scale 120] [--out build/drill/bench.json]

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
from pathlib import Path
from typing import Any

from local.drill import ROOT, run
from local.timescale import TimeScale

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
HEALTHY = {"healthy", "noisy-healthy"}


def classify(result: dict[str, Any]) -> str:
    if "deployment" not in result:
        return "error"
    if result.get("redeployment") and result["redeployment"]["status"] == "Succeeded":
        return "resurrected"
    if result["serving_after"] == result["release"]:
        return "promoted"
    return "rolled back"


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def summarise(runs: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name in BENCH_ORDER:
        for policy, reports in runs.items():
            results = [r for report in reports for r in report["scenarios"] if r["scenario"] == name]
            if not results:
                continue
            outcomes = Counter(classify(r) for r in results)
            if name in HEALTHY:
                false_rollbacks, missed = outcomes["rolled back"] + outcomes["resurrected"], 0
            else:
                false_rollbacks, missed = 0, outcomes["promoted"]
            rows.append(
                {
                    "scenario": name,
                    "policy": policy,
                    "runs": len(results),
                    "outcomes": dict(outcomes),
                    "false_rollbacks": false_rollbacks,
                    "missed_regressions": missed,
                    "median_detect_aws_s": _median(
                        [r["time_to_detect"]["aws"] for r in results if r.get("time_to_detect")]
                    ),
                    "median_restore_aws_s": _median(
                        [r["time_to_restore"]["aws"] for r in results if r.get("time_to_restore")]
                    ),
                    "median_failed_percent": _median([r["users"]["blast_radius_percent"] for r in results]),
                }
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':28s} {'policy':8s} {'outcomes':34s} {'false rb':>8s} {'missed':>6s} "
        f"{'detect s':>9s} {'restore s':>9s} {'failed %':>8s}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row["outcomes"].items()))

        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:g}"

        lines.append(
            f"{row['scenario']:28s} {row['policy']:8s} {outcomes:34s} {row['false_rollbacks']:>8d} "
            f"{row['missed_regressions']:>6d} {cell(row['median_detect_aws_s']):>9s} "
            f"{cell(row['median_restore_aws_s']):>9s} {cell(row['median_failed_percent']):>8s}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drill scenarios, several runs, two policies, medians")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=120.0)
    parser.add_argument("--out", default=str(ROOT / "build" / "drill" / "bench.json"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up tasks and workers on kill too
    runs: dict[str, list[dict[str, Any]]] = {"phoenix": [], "literal": []}
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
            for result in report["scenarios"]:
                print(f"  {result['scenario']:28s} {classify(result)}", flush=True)
            report.pop("timeline", None)
            report.pop("series", None)
            reports.append(report)
    rows = summarise(runs)
    print()
    print(table(rows))
    print(
        f"\nmedians over {args.runs} run(s); detect/restore in AWS-equivalent seconds "
        f"(time scale x{args.time_scale:g})"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "runs": runs}, indent=2, default=str))
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
