"""The canary judge: is the replacement worse than the original, over the same minutes, beyond doubt?

`judge(baseline, canary, policy)` reads two target groups' cumulative counts since the canary started
(requests and failed requests: CloudWatch's RequestCount and HTTPCode_Target_5XX_Count sums per target group)
and answers, purely (no AWS, no clock, no environment, standard library only):
- Fail(reason): the canary fails more often than the baseline, beyond the tolerance and beyond doubt;
- Pass(reason): the canary's error rate so far is within the tolerance of the baseline's;
- Continue(reason): no verdict: bad input, too few requests, or worse than tolerated but not yet beyond doubt.
A Pass is about the sample so far, not final: the next look, with more requests, can still fail the canary.
The reason says it in numbers ("canary 9/20 failed (45 %) vs baseline 4/180 (2.2 %): worse beyond doubt,
p = 8.2e-8 < 0.0002"). Bad input (negative, fractional, not finite, errors > requests, absurdly large) is a
Continue that says what was wrong, never an exception: a judge that cannot read its input must not roll back.

The statistic: an exact conditional test on the 2x2 table, one-sided, and a tolerance on the observed rates.
- The question is Kayenta's (Spinnaker's default canary judge compares each metric of the canary with the
  baseline over the same interval, with a statistical test and an allowed effect size, rather than a fixed
  threshold), asked of counts: CloudWatch gives sums per target group, not per-request samples, so the test
  is on the table (canary, baseline) x (failed, served). Comparing with the baseline over the same minutes
  cancels what both versions share (background errors, a failing dependency, the load).
- H0: the canary's error odds are at most R times the baseline's (R = Policy.odds_ratio_margin; 1 by default,
  "no worse"). Given the table's margins (each group's requests and the total of errors), the canary's error
  count has Fisher's noncentral hypergeometric distribution with odds ratio R whatever the baseline's true
  error rate: conditioning removes that unknown exactly, so the p-value P(canary errors >= observed) is exact
  for any sample, however small or lopsided (20 canary against 180 baseline requests, zero errors anywhere),
  with no normal approximation. R = 1 is Fisher's exact test. R > 1 tests "worse by more than R in odds", for
  a replacement expected to be a little worse (cold caches), at a cost in detection (docs/canary-judge.md).
- The tolerance: a Fail also needs the canary's observed rate above `tolerated_rate`: the baseline's plus
  Policy.min_excess (half a point by default), or odds R times the baseline's, whichever is higher. So 2.5 %
  against 2 % is noise and never fails however long the canary, nor does 0.05 % against 0 % once a long canary
  makes it significant. It is a gate on the observed rates beside the test (Kayenta's allowed effect size
  beside its significance): it only ever removes failures, so the test's error bound stands.
- Looks: the judge runs at every look of one canary (the health-check Lambda, every minute or more often) on
  cumulative counts, so it is a sequential test. Each look tests at alpha / looks (Bonferroni): the chance
  that any of `looks` looks fails a canary at the edge of H0 is at most alpha, whatever the correlation
  between looks. With R = 1 the edge is a canary exactly as good as its baseline: false rollbacks of a
  healthy release are at most alpha (0.1 %) by construction, and in fact fewer (cumulative looks are strongly
  correlated): local/drill/judge_bench.py measures it. Looking more often than `looks` times spends more
  than alpha: set CANARY_LOOKS to how many times the judge is asked during one canary.

Why not the alternatives:
- a fixed threshold on the canary's rate (the 5 % alarm): wrong both ways on a small canary, where one
  failure is 5 % at 20 requests a minute (at the demo's 6 a minute, a noisy-healthy release was falsely rolled
  back once in five bench runs), and blind to a background the baseline shares;
- a normal approximation (two-proportion z, Farrington-Manning): a false-rollback rate of 0.1 % lives in a
  tail it gets wrong with a handful of errors;
- a rank test (Mann-Whitney U, which Kayenta's default judge applies to time series) on per-minute rates:
  five points per group are far too few, and the counts say more than the rates;
- a Bayesian beta-binomial posterior: needs a prior and numerical integration, and its frequentist error
  rates must be measured anyway; the exact test states them.
- an SPRT or an always-valid mixture test: valid at any number of looks, but it needs the canary's baseline
  rate as a known value (or more machinery) and gives up power at the five looks a canary actually has.

Latency is not judged: CloudWatch gives TargetResponseTime per target group as statistics (average,
percentiles), not counts, and an exact comparison needs the samples. The ALB's own 5XX
(HTTPCode_ELB_5XX_Count) exists only per load balancer and cannot be attributed to a target group.

Policy's fields become the health-check Lambda's variables (POLICY_VARIABLES: name and meaning); the defaults
are tuned by local/drill/judge_bench.py (`python -m local.drill.judge_bench`): with the default deployment
configuration (10 % of 200 requests a minute for 5 minutes), false rollbacks of a 2 %-noisy release <= 0.1 %
and detection of a 20 %-failing one >= 99 % within the canary.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Final, NamedTuple

# The largest count believed: more requests than this in one canary is a bad reading, and it keeps the exact
# test's work bounded (its sums run over a few standard deviations of the error count).
MAX_REQUESTS: Final = 10**9
# Terms of the hypergeometric sums smaller than this share of the sum so far are dropped (the distribution is
# log-concave: every later term is smaller still).
TOLERANCE: Final = 1e-15


def _whole(value: object) -> int:
    """`value` as a count if it is one (an int, or an integral float as CloudWatch's sums are), else -1."""
    if isinstance(value, bool):
        return -1
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return -1


def _number(value: object) -> float:
    """`value` as a finite number, else NaN (which fails every bound)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)


class Counts(NamedTuple):
    """One target group's cumulative counts over the canary's minutes so far."""

    requests: int
    errors: int


@dataclass(frozen=True)
class Policy:
    """What the judge tolerates and how sure it must be; POLICY_VARIABLES names each as a variable."""

    odds_ratio_margin: float = 1.0
    min_excess: float = 0.005
    alpha: float = 1e-3
    looks: int = 5
    min_requests: int = 10

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {getattr(self, name)!r}"
            for name, rule, holds in (
                ("odds_ratio_margin", "a number >= 1", _number(self.odds_ratio_margin) >= 1),
                ("min_excess", "a number in [0, 1)", 0 <= _number(self.min_excess) < 1),
                ("alpha", "a number in (0, 1)", 0 < _number(self.alpha) < 1),
                ("looks", "a whole number >= 1", _whole(self.looks) >= 1),
                ("min_requests", "a whole number >= 1", _whole(self.min_requests) >= 1),
            )
            if not holds
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def per_look_alpha(self) -> float:
        """The level each look is tested at: alpha spread evenly over the looks of one canary."""
        return self.alpha / self.looks


DEFAULT_POLICY: Final = Policy()

# Each Policy field as a Lambda environment variable, with its meaning in one line.
POLICY_VARIABLES: Final[Mapping[str, tuple[str, str]]] = {
    "odds_ratio_margin": (
        "CANARY_ODDS_RATIO_MARGIN",
        "the canary's error odds may be up to this many times the baseline's (the tested tolerance)",
    ),
    "min_excess": (
        "CANARY_MIN_EXCESS",
        "or its error rate may exceed the baseline's by up to this share (0.005: half a point), if more",
    ),
    "alpha": (
        "CANARY_ALPHA",
        "the false-rollback bound: the most often a canary exactly at the tested tolerance is failed",
    ),
    "looks": (
        "CANARY_LOOKS",
        "how many times the judge looks during one canary: each look tests at alpha / looks",
    ),
    "min_requests": (
        "CANARY_MIN_REQUESTS",
        "no verdict until both the canary and the baseline have served this many requests",
    ),
}


def policy_from_env(env: Mapping[str, str]) -> Policy:
    """A Policy from POLICY_VARIABLES (each unset one keeps its default); ValueError names a bad variable."""
    values: dict[str, float | int] = {}
    for spec in fields(Policy):
        variable, _ = POLICY_VARIABLES[spec.name]
        raw = env.get(variable, "").strip()
        if not raw:
            continue
        default = getattr(DEFAULT_POLICY, spec.name)
        try:
            values[spec.name] = int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            kind = "a whole number" if isinstance(default, int) else "a number"
            raise ValueError(f"{variable} must be {kind}, got {raw!r}") from None
    try:
        return Policy(**values)  # type: ignore[arg-type]
    except ValueError as error:
        message = str(error)
        for name, (variable, _) in POLICY_VARIABLES.items():
            message = message.replace(f"{name} must", f"{variable} must")
        raise ValueError(message) from None


# --------------------------------------------------------------------------------------------- verdicts
@dataclass(frozen=True)
class Pass:
    """The canary's error rate so far is within the tolerance of the baseline's."""

    reason: str


@dataclass(frozen=True)
class Fail:
    """The canary is worse than the baseline beyond the tolerance and beyond doubt: roll it back."""

    reason: str


@dataclass(frozen=True)
class Continue:
    """No verdict yet (or none possible from this input): keep the canary, look again."""

    reason: str


Verdict = Pass | Fail | Continue


# --------------------------------------------------------------------------------------------- the exact test
def excess_p_value(baseline: Counts, canary: Counts, odds_ratio: float = 1.0) -> float:
    """P(the canary has at least its observed errors | the table's margins, true odds ratio = odds_ratio).

    One-sided, exact: Fisher's noncentral hypergeometric distribution of the canary's errors given both
    groups' requests and the total of errors. `odds_ratio` 1 is Fisher's exact test. Counts must be valid
    (0 <= errors <= requests: judge() checks them) and odds_ratio > 0; the sums start at the distribution's
    mode and stop when their terms no longer count.
    """
    if not odds_ratio > 0:
        raise ValueError(f"odds_ratio must be > 0, got {odds_ratio!r}")
    n_canary, x_canary = canary
    n_baseline, x_baseline = baseline
    k = x_canary + x_baseline
    low, high = max(0, k - n_baseline), min(k, n_canary)
    if x_canary <= low:
        return 1.0

    # P(x + 1) / P(x) = (n_canary - x)(k - x) R / ((x + 1)(spare + x)), for low <= x < high
    spare = n_baseline - k + 1

    def ratio(x: int) -> float:
        return (n_canary - x) * (k - x) * odds_ratio / ((x + 1) * (spare + x))

    # ratio(x) = 1 is a quadratic, a x^2 + b x + c = 0: its lower root (in a stable form) is near the mode.
    a, b = odds_ratio - 1.0, -(odds_ratio * (n_canary + k) + spare + 1.0)
    c = odds_ratio * n_canary * k - spare
    denominator = -b + math.sqrt(max(0.0, b * b - 4.0 * a * c))
    mode = _mode(2.0 * c / denominator if denominator > 0 else low, low, high, ratio)
    # The distribution relative to its mode, walked both ways until the terms no longer count (inlined: the
    # Monte Carlo calls this a million times); `above`: the part at or over the observed count.
    total = 1.0
    above = 1.0 if mode >= x_canary else 0.0
    term, x = 1.0, mode
    while x < high:
        term *= (n_canary - x) * (k - x) * odds_ratio / ((x + 1) * (spare + x))
        x += 1
        total += term
        if x >= x_canary:
            above += term
        if term < TOLERANCE * total:
            break
    reached = x
    term, x = 1.0, mode
    while x > low:
        x -= 1
        term *= (x + 1) * (spare + x) / ((n_canary - x) * (k - x) * odds_ratio)
        total += term
        if x >= x_canary:
            above += term
        if term < TOLERANCE * total:
            break
    if x_canary <= reached and above > 1e-6 * total:
        return min(1.0, above / total)
    # A tail under 1e-6, where the terms the walk dropped could count: summed afresh from the observed count.
    log_gap = _log_weight(x_canary, n_canary, n_baseline, k, odds_ratio) - _log_weight(
        mode, n_canary, n_baseline, k, odds_ratio
    )
    term = math.exp(log_gap) if log_gap > -745 else 0.0
    tail, x = term, x_canary
    while x < high and term > 0.0:
        term *= ratio(x)
        x += 1
        tail += term
        if term < TOLERANCE * tail:
            break
    return min(1.0, tail / total)


def _mode(guess: float, low: int, high: int, ratio: Callable[[int], float]) -> int:
    """The most likely canary error count: from `guess`, to where ratio(x) = P(x + 1) / P(x) crosses 1."""
    mode = min(high, max(low, math.ceil(guess))) if math.isfinite(guess) else low
    while mode < high and ratio(mode) >= 1.0:
        mode += 1
    while mode > low and ratio(mode - 1) < 1.0:
        mode -= 1
    return mode


def _log_weight(x: int, n_canary: int, n_baseline: int, k: int, odds_ratio: float) -> float:
    return _log_choose(n_canary, x) + _log_choose(n_baseline, k - x) + x * math.log(odds_ratio)


def _log_choose(n: int, r: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(r + 1) - math.lgamma(n - r + 1)


def tolerated_rate(baseline_rate: float, policy: Policy) -> float:
    """The highest canary error rate within the tolerance of `baseline_rate`: odds up to odds_ratio_margin
    times the baseline's, or up to min_excess above its rate, whichever is higher."""
    odds = policy.odds_ratio_margin * baseline_rate
    by_odds = odds / (1.0 - baseline_rate + odds) if baseline_rate < 1.0 else 1.0
    return min(1.0, max(by_odds, baseline_rate + policy.min_excess))


# --------------------------------------------------------------------------------------------- input
def _read(name: str, counts: object) -> Counts | str:
    """Valid counts, or what is wrong with them."""
    if not isinstance(counts, tuple | list) or len(counts) != 2:
        return f"{name} counts must be (requests, errors), got {counts!r}"
    requests, errors = counts[0], counts[1]
    read = Counts(_whole(requests), _whole(errors))
    for field_name, raw, value in (("requests", requests, read.requests), ("errors", errors, read.errors)):
        if value < 0:
            return f"{name} {field_name} must be a whole number >= 0, got {raw!r}"
        if value > MAX_REQUESTS:
            return f"{name} {field_name} {value} is more than {MAX_REQUESTS:.0e}: not a believable reading"
    if read.errors > read.requests:
        return f"{name} errors {read.errors} > requests {read.requests}"
    return read


# --------------------------------------------------------------------------------------------- the judge
def percent(share: float) -> str:
    """45 %, 2.2 %, 0.05 %: two significant figures, none after the point from 10 %, no trailing zeros."""
    value = 100.0 * share
    if value >= 10:
        text = f"{value:.0f}"
    elif value >= 1:
        text = f"{value:.1f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.2g}"
    return f"{text} %"


def p_text(p: float) -> str:
    """1.6e-6, 0.0031, 0.5: what a person reads."""
    text = f"{p:.2g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def p_is(p: float) -> str:
    """The p-value as a reason gives it: "p = 1.6e-6", or "p < 1e-15" below what the sums resolve."""
    return "p < 1e-15" if p < 1e-15 else f"p = {p_text(p)}"


@dataclass(frozen=True)
class Comparison:
    """What the rules read: both groups' counts, the policy, and what is wrong with the input if anything (the
    counts are then zero)."""

    baseline: Counts
    canary: Counts
    policy: Policy
    problem: str = ""

    @functools.cached_property
    def baseline_rate(self) -> float:
        return self.baseline.errors / self.baseline.requests

    @functools.cached_property
    def canary_rate(self) -> float:
        return self.canary.errors / self.canary.requests

    @functools.cached_property
    def tolerated(self) -> float:
        return tolerated_rate(self.baseline_rate, self.policy)

    @functools.cached_property
    def p_value(self) -> float:
        return excess_p_value(self.baseline, self.canary, self.policy.odds_ratio_margin)

    @property
    def level(self) -> str:
        return p_text(self.policy.per_look_alpha)

    @property
    def summary(self) -> str:
        (n_b, x_b), (n_c, x_c) = self.baseline, self.canary
        return (
            f"canary {x_c}/{n_c} failed ({percent(self.canary_rate)}) "
            f"vs baseline {x_b}/{n_b} ({percent(self.baseline_rate)})"
        )

    def too_few(self, name: str, counts: Counts) -> str:
        if not counts.requests:
            what = (
                "no traffic: nothing to compare the canary with" if name == "baseline" else "no traffic yet"
            )
            return f"{name} has {what}"
        return (
            f"{name} has {counts.requests} requests, fewer than the {self.policy.min_requests} "
            "needed for a verdict"
        )


JudgeRule = tuple[Callable[[Comparison], bool], Callable[[Comparison], Verdict]]

# In this order, the first that holds.
JUDGE_RULES: Final[tuple[JudgeRule, ...]] = (
    (lambda c: bool(c.problem), lambda c: Continue(f"bad input, no verdict: {c.problem}")),
    (
        lambda c: c.canary.requests < c.policy.min_requests,
        lambda c: Continue(c.too_few("canary", c.canary)),
    ),
    (
        lambda c: c.baseline.requests < c.policy.min_requests,
        lambda c: Continue(c.too_few("baseline", c.baseline)),
    ),
    (
        lambda c: c.canary_rate <= c.baseline_rate,
        lambda c: Pass(f"{c.summary}: no worse than the baseline"),
    ),
    (
        lambda c: c.canary_rate <= c.tolerated + 1e-12,  # at the tolerance exactly, whatever the rounding
        lambda c: Pass(f"{c.summary}: worse by less than the tolerance (up to {percent(c.tolerated)})"),
    ),
    (
        lambda c: c.p_value < c.policy.per_look_alpha,
        lambda c: Fail(f"{c.summary}: worse beyond doubt, {p_is(c.p_value)} < {c.level}"),
    ),
    (
        lambda c: True,
        lambda c: Continue(
            f"{c.summary}: worse than tolerated ({percent(c.tolerated)}), not beyond doubt yet: "
            f"{p_is(c.p_value)} >= {c.level}"
        ),
    ),
)


def judge(baseline: Counts, canary: Counts, policy: Policy = DEFAULT_POLICY) -> Verdict:
    """Pass, Fail or Continue, with a reason, from both target groups' cumulative counts over the same
    minutes. Pure; never raises on bad counts (they are a Continue that says what was wrong)."""
    read = _read("baseline", baseline), _read("canary", canary)
    problem = next((r for r in read if isinstance(r, str)), "")
    counts = [r if isinstance(r, Counts) else Counts(0, 0) for r in read]
    comparison = Comparison(counts[0], counts[1], policy, problem)
    return next(then(comparison) for when, then in JUDGE_RULES if when(comparison))
