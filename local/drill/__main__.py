"""`make demo`: releases go bad on purpose and heal themselves, offline, with real traffic, measured.

    python -m local.drill [--scenario NAME] [--time-scale 120] [--rate 120] [--report build/drill/report.json]

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
from pathlib import Path

from local.drill.chart import write_html
from local.drill.run import DEMO_RATE, run, summary_table
from local.drill.scenarios import ORDER, SCENARIOS
from local.timescale import TimeScale
from scripts.stacks import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", default="all", help=f"one of {', '.join(ORDER)} or all")
    parser.add_argument("--time-scale", type=float, default=120.0, help="AWS seconds per drill second")
    parser.add_argument(
        "--rate", type=float, default=DEMO_RATE, help="simulated users' requests per AWS minute"
    )
    parser.add_argument("--report", default=str(ROOT / "build" / "drill" / "report.json"))
    parser.add_argument("--html", default=str(ROOT / "build" / "drill" / "report.html"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up tasks and workers on kill too
    names = ORDER if args.scenario in ("all", "") else [args.scenario]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(ORDER)}")
    if args.time_scale <= 0 or args.rate <= 0:
        parser.error("--time-scale and --rate must be positive")
    report = run(names, TimeScale(factor=args.time_scale), user_rate=args.rate)
    print()
    print(summary_table(report.scenarios))
    data = report.to_json()
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(data, indent=2, default=str))
    write_html(data, Path(args.html))
    print(f"\nreport: {args.report}\nchart:  {args.html}\nwall time {report.wall_seconds} s")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
