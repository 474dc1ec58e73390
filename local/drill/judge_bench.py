"""The canary judge (lambdas/canary_judge.py) in a Monte Carlo of simulated canaries, in seconds.

    python -m local.drill.judge_bench [--canaries 10000] [--seed 12] [--rate 200]

Each simulated canary is the default deployment configuration, CodeDeployDefault.ECSCanary10Percent5Minutes:
for 5 minutes, `--rate` user requests a minute (default 200, `make bench`'s load) of which each goes to the
replacement with probability 10 % (the canary sees about 20 a minute, the baseline about 180). Every request
fails with its version's error rate. The judge looks once a minute, at the end of each minute, at both
groups' cumulative counts since the canary started (as the health-check Lambda will read CloudWatch's sums),
and the canary is rolled back at its first Fail, or promoted after the fifth look. Looks are counted in AWS
seconds from the canary's start (look m at 60 m s); CloudWatch's delay in publishing ALB metrics is not
modelled: it adds to every figure alike.

Printed: one row per scenario (healthy-noisy: 2 % errors on both versions; healthy-quiet: none on either;
failing at 5, 10, 20 and 50 % against a 2 % baseline) with the canaries rolled back and their share, its 95 %
Wilson interval, the median look of detection and the share caught at the first look (within 60 s); then the
curve of detection against the canary's failure rate, with, for each rate, whether the first minute's sample
(about 20 canary requests) suffices to catch it within 60 s, and if not how many canary requests one look
needs for 99 % detection (computed exactly, not simulated). Exit status 1 when a goal of issue 12 is missed:
false rollbacks of a healthy release above 0.1 %, or detection of a 20 %-failing release below 99 % within the
canary; the missed goals are printed.

Each scenario draws from its own generator, seeded from `--seed` and the scenario's name: a row is the same
whether it runs alone (as tests/unit/test_canary_judge.py runs two) or with the others.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "lambdas") not in sys.path:  # the judge is a Lambda module: lambdas/ is not a package
    sys.path.insert(0, str(ROOT / "lambdas"))

import canary_judge as cj  # noqa: E402

from local.drill.table import Column, figure, render  # noqa: E402

CONFIG_NAME = "CodeDeployDefault.ECSCanary10Percent5Minutes"
SHARE = 0.10  # of production traffic on the replacement during the canary
LOOKS = 5  # one a minute for the canary's 5 minutes
LOOK_SECONDS = 60
RATE = 200.0  # user requests per AWS minute: make bench's load
BASELINE_ERRORS = 0.02  # the noisy-healthy scenario's background error rate, on both versions
CANARIES = 10_000
SEED = 12
FALSE_GOAL = 0.001  # false rollbacks of a healthy release, at most
DETECTION_GOAL = 0.99  # detection of a GOAL_ERRORS-failing release within the canary, at least
GOAL_ERRORS = 0.20
CURVE = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30, 0.50)
NEEDED_LIMIT = 10_000  # canary requests in one look: beyond this the search stops ("more than")


@dataclass(frozen=True)
class Scenario:
    name: str
    baseline_errors: float
    canary_errors: float

    @property
    def healthy(self) -> bool:
        """A rollback of this release is a false one (no worse than its baseline)."""
        return self.canary_errors <= self.baseline_errors


def failing(rate: float) -> Scenario:
    return Scenario(f"failing-{100 * rate:g}", BASELINE_ERRORS, rate)


NOISY = Scenario("healthy-noisy", BASELINE_ERRORS, BASELINE_ERRORS)
QUIET = Scenario("healthy-quiet", 0.0, 0.0)
GOAL = failing(GOAL_ERRORS)
ROWS = (NOISY, QUIET, failing(0.05), failing(0.10), GOAL, failing(0.50))


@dataclass(frozen=True)
class Outcome:
    """One scenario's simulated canaries; `looks`: the look (1 to LOOKS) each rolled back one failed at."""

    scenario: Scenario
    canaries: int
    looks: tuple[int, ...]

    @property
    def rolled_back(self) -> int:
        return len(self.looks)

    @property
    def share(self) -> float:
        return self.rolled_back / self.canaries

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.rolled_back, self.canaries)

    @property
    def first_look(self) -> float:
        """The share of all canaries rolled back at the first look: within 60 s of the canary's start."""
        return self.looks.count(1) / self.canaries

    @property
    def median_detect_s(self) -> float | None:
        return statistics.median(self.looks) * LOOK_SECONDS if self.looks else None


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default)."""
    if not trials:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


class Binomial:
    """Binomial draws by inversion: a uniform, bisected into the cumulative table of (n, p) built once."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tables: dict[tuple[int, float], list[float]] = {}

    def __call__(self, n: int, p: float) -> int:
        if n <= 0 or p <= 0.0:
            return 0
        if p >= 1.0:
            return n
        table = self.tables.get((n, p))
        if table is None:
            table = self.tables[n, p] = cumulative(binomial_pmf(n, p))
        return min(n, bisect.bisect_right(table, self.rng.random() * table[-1]))


def binomial_pmf(n: int, p: float) -> list[float]:
    """P(X = x) for x in 0..n, X ~ Binomial(n, p), in log space (no underflow of the first terms)."""
    if p <= 0.0:
        return [1.0] + [0.0] * n
    if p >= 1.0:
        return [0.0] * n + [1.0]
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return [
        math.exp(log_n - math.lgamma(x + 1) - math.lgamma(n - x + 1) + x * log_p + (n - x) * log_q)
        for x in range(n + 1)
    ]


def cumulative(pmf: Sequence[float]) -> list[float]:
    table, total = [], 0.0
    for mass in pmf:
        total += mass
        table.append(total)
    return table


def simulate(
    scenario: Scenario, canaries: int, seed: int, rate: float = RATE, policy: cj.Policy = cj.DEFAULT_POLICY
) -> Outcome:
    """`canaries` canaries of the default configuration, each judged at every look until its first Fail."""
    draw = Binomial(random.Random(f"{seed}/{scenario.name}"))  # noqa: S311 - a simulation, not cryptography
    per_minute = round(rate)
    looks: list[int] = []
    for _ in range(canaries):
        n_b = x_b = n_c = x_c = 0
        for look in range(1, LOOKS + 1):
            to_canary = draw(per_minute, SHARE)
            n_c += to_canary
            x_c += draw(to_canary, scenario.canary_errors)
            n_b += per_minute - to_canary
            x_b += draw(per_minute - to_canary, scenario.baseline_errors)
            if isinstance(cj.judge(cj.Counts(n_b, x_b), cj.Counts(n_c, x_c), policy), cj.Fail):
                looks.append(look)
                break
    return Outcome(scenario, canaries, tuple(looks))


# --------------------------------------------------------------------------------------------- one look
def one_look_detection(
    canary_requests: int, canary_errors: float, baseline_errors: float, policy: cj.Policy = cj.DEFAULT_POLICY
) -> float:
    """The probability that one look with `canary_requests` canary requests (and the baseline's share of
    the same minutes beside them) fails the canary: exact, summed over both groups' error counts.

    For each baseline count the fewest canary errors that fail is found once: it never falls as baseline
    errors rise (a worse baseline makes the same canary less suspect) and failing is monotone in the
    canary's errors (tests/unit/test_canary_judge.py holds the judge to both)."""
    n_c = canary_requests
    n_b = round(n_c * (1 - SHARE) / SHARE)
    canary_tail = [1.0 - c for c in [0.0, *cumulative(binomial_pmf(n_c, canary_errors))]]  # P(X >= x)
    detected, threshold = 0.0, 0
    for x_b, mass in enumerate(binomial_pmf(n_b, baseline_errors)):
        if mass < 1e-12:
            continue
        while threshold <= n_c and not isinstance(
            cj.judge(cj.Counts(n_b, x_b), cj.Counts(n_c, threshold), policy), cj.Fail
        ):
            threshold += 1
        if threshold > n_c:
            break
        detected += mass * max(0.0, canary_tail[threshold])
    return detected


def needed_requests(
    canary_errors: float,
    baseline_errors: float = BASELINE_ERRORS,
    policy: cj.Policy = cj.DEFAULT_POLICY,
    target: float = DETECTION_GOAL,
) -> int | None:
    """About the fewest canary requests one look needs to catch `canary_errors` with probability `target`
    (doubling, then bisection to 1 %: detection is not strictly monotone in the sample, discreteness makes
    it saw-toothed, so this is the first crossing found); None beyond NEEDED_LIMIT."""
    low, high = 0, policy.min_requests
    while one_look_detection(high, canary_errors, baseline_errors, policy) < target:
        low, high = high, high * 2
        if low >= NEEDED_LIMIT:
            return None
    while high - low > max(1, high // 100):
        middle = (low + high) // 2
        if one_look_detection(middle, canary_errors, baseline_errors, policy) >= target:
            high = middle
        else:
            low = middle
    return high


# --------------------------------------------------------------------------------------------- report
def percent(share: float) -> str:
    return f"{100 * share:.2f} %" if share < 0.1 else f"{100 * share:.1f} %"


def interval_text(outcome: Outcome) -> str:
    low, high = outcome.interval
    return f"{100 * low:.2f}-{100 * high:.2f} %"


def goal_text(outcome: Outcome) -> str:
    if outcome.scenario.healthy:
        return f"false <= {100 * FALSE_GOAL:g} %: " + ("met" if outcome.share <= FALSE_GOAL else "MISSED")
    if outcome.scenario == GOAL:
        met = outcome.share >= DETECTION_GOAL
        return f"detected >= {100 * DETECTION_GOAL:g} %: " + ("met" if met else "MISSED")
    return "-"


def missed(outcomes: Sequence[Outcome]) -> list[str]:
    """The goals missed, in words; empty when all are met."""
    problems = []
    for outcome in outcomes:
        name = outcome.scenario.name
        if outcome.scenario.healthy and outcome.share > FALSE_GOAL:
            problems.append(f"{name}: {percent(outcome.share)} false rollbacks > {100 * FALSE_GOAL:g} %")
        if outcome.scenario == GOAL and outcome.share < DETECTION_GOAL:
            problems.append(f"{name}: {percent(outcome.share)} detected < {100 * DETECTION_GOAL:g} %")
    return problems


def rows_table(outcomes: Sequence[Outcome]) -> str:
    columns: list[Column[Outcome]] = [
        Column("scenario", 14, lambda o: o.scenario.name),
        Column("baseline", 8, lambda o: f"{100 * o.scenario.baseline_errors:g} %", ">"),
        Column("canary", 6, lambda o: f"{100 * o.scenario.canary_errors:g} %", ">"),
        Column("canaries", 8, lambda o: str(o.canaries), ">"),
        Column("rolled back", 11, lambda o: str(o.rolled_back), ">"),
        Column("share", 8, lambda o: percent(o.share), ">"),
        Column("95 % CI (Wilson)", 16, interval_text, ">"),
        Column("median look s", 13, lambda o: figure(o.median_detect_s, ".0f"), ">"),
        Column("within 60 s", 11, lambda o: percent(o.first_look), ">"),
        Column("goal", 0, goal_text),
    ]
    return render(columns, outcomes)


@dataclass(frozen=True)
class Point:
    outcome: Outcome
    needed: int | None  # canary requests one look needs for 99 % detection (None: beyond NEEDED_LIMIT)
    tolerated: bool  # the canary's rate is within the policy's tolerance of the baseline's: never failed


def sixty_seconds(point: Point) -> str:
    """Whether the first look (60 s) catches this rate 99 times in 100 at this load, else what it needs."""
    if point.tolerated:
        return "never: within the tolerance"
    if point.outcome.first_look >= DETECTION_GOAL:
        return "yes, at this load"
    if point.needed is None:
        return f"no: a look needs > {NEEDED_LIMIT} canary requests"
    users = math.ceil(point.needed / SHARE)
    return f"no: needs ~{point.needed} canary requests in the minute ({users} users/min at {100 * SHARE:g} %)"


def curve_table(points: Sequence[Point]) -> str:
    columns: list[Column[Point]] = [
        Column("canary errors", 13, lambda p: f"{100 * p.outcome.scenario.canary_errors:g} %", ">"),
        Column("detected in 5 min", 17, lambda p: percent(p.outcome.share), ">"),
        Column("95 % CI (Wilson)", 16, lambda p: interval_text(p.outcome), ">"),
        Column("median look s", 13, lambda p: figure(p.outcome.median_detect_s, ".0f"), ">"),
        Column("within 60 s", 11, lambda p: percent(p.outcome.first_look), ">"),
        Column("99 % within 60 s?", 0, sixty_seconds),
    ]
    return render(columns, points)


def policy_text(policy: cj.Policy) -> str:
    return (
        f"odds ratio margin {policy.odds_ratio_margin:g}, min excess {100 * policy.min_excess:g} points, "
        f"alpha {policy.alpha:g} over {policy.looks} looks ({cj.p_text(policy.per_look_alpha)} a look), "
        f"min requests {policy.min_requests}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--canaries", type=int, default=CANARIES, help="simulated canaries per row")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--rate", type=float, default=RATE, help="user requests per AWS minute")
    parser.add_argument("--no-curve", action="store_true", help="the table only (for tuning)")
    tuning = parser.add_argument_group("policy", "the judge's policy, instead of its defaults (for tuning)")
    for spec in fields(cj.Policy):
        default = getattr(cj.DEFAULT_POLICY, spec.name)
        tuning.add_argument(
            f"--{spec.name.replace('_', '-')}",
            type=type(default),
            default=default,
            metavar="N",
            help=f"{cj.POLICY_VARIABLES[spec.name][1]} (default {default:g})",
        )
    args = parser.parse_args(argv)
    if args.canaries < 1 or args.rate < 1:
        parser.error("--canaries and --rate must be at least 1")
    try:
        policy = cj.Policy(**{spec.name: getattr(args, spec.name) for spec in fields(cj.Policy)})
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()
    print(
        f"Canary judge, Monte Carlo: {args.canaries} canaries per row, seed {args.seed}. {CONFIG_NAME} at "
        f"{args.rate:g} user requests per AWS minute: {100 * SHARE:g} % to the canary "
        f"(~{SHARE * args.rate:g} a minute), one look a minute for {LOOKS} minutes, rolled back at the first "
        "Fail."
    )
    origin = "lambdas/canary_judge.py defaults" if policy == cj.DEFAULT_POLICY else "NOT the defaults"
    print(f"Policy ({origin}): {policy_text(policy)}.\n")
    outcomes: dict[Scenario, Outcome] = {}

    def run(scenario: Scenario) -> Outcome:
        if scenario not in outcomes:
            outcomes[scenario] = simulate(scenario, args.canaries, args.seed, args.rate, policy)
        return outcomes[scenario]

    rows = [run(scenario) for scenario in ROWS]
    print(rows_table(rows))
    points = []
    for rate in () if args.no_curve else CURVE:
        outcome = run(failing(rate) if rate != BASELINE_ERRORS else NOISY)
        tolerated = rate <= cj.tolerated_rate(BASELINE_ERRORS, policy) + 1e-12
        needed = None if tolerated else needed_requests(rate, BASELINE_ERRORS, policy)
        points.append(Point(outcome, needed, tolerated))
    if points:
        print(f"\nDetection against the canary's failure rate (baseline {100 * BASELINE_ERRORS:g} %):\n")
        print(curve_table(points))
    problems = missed(rows)
    print(
        f"\n{len(outcomes)} scenarios x {args.canaries} canaries in {time.perf_counter() - started:.1f} s "
        f"(one core). Goals: false rollbacks <= {100 * FALSE_GOAL:g} %, detection of "
        f"{100 * GOAL_ERRORS:g} % >= {100 * DETECTION_GOAL:g} % within the canary: "
        + ("all met." if not problems else "MISSED: " + "; ".join(problems) + ".")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
