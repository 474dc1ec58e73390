"""canary_judge.judge: both target groups' cumulative counts (requests, failed requests) over the same minutes
and a policy -> Pass, Fail or Continue, with a reason. Properties over any counts (hypothesis), the exact
test against a brute-force sum, bad input, and a small run of the Monte Carlo (local/drill/judge_bench.py)
holding the issue's goals. No AWS, no clock, no environment."""

from __future__ import annotations

import math
from dataclasses import fields
from fractions import Fraction

import canary_judge as cj
import pytest
from canary_judge import Continue, Counts, Fail, Pass, Policy, judge
from hypothesis import assume, given
from hypothesis import strategies as st

from local.drill import judge_bench as bench

pytestmark = pytest.mark.unit

SEVERITY = {Pass: 0, Continue: 1, Fail: 2}
POLICIES = st.builds(
    Policy,
    odds_ratio_margin=st.sampled_from([1.0, 1.25, 1.5, 2.0]),
    min_excess=st.sampled_from([0.0, 0.005, 0.01, 0.05]),
    alpha=st.sampled_from([1e-4, 1e-3, 0.01, 0.05]),
    looks=st.integers(1, 30),
    min_requests=st.integers(1, 50),
)


@st.composite
def groups(draw: st.DrawFn, most: int = 5000) -> Counts:
    requests = draw(st.integers(0, most))
    return Counts(requests, draw(st.integers(0, requests)))


def severity(baseline: Counts, canary: Counts, policy: Policy = cj.DEFAULT_POLICY) -> int:
    return SEVERITY[type(judge(baseline, canary, policy))]


def brute_force_p(baseline: Counts, canary: Counts, odds_ratio: Fraction) -> Fraction:
    """P(canary errors >= observed) under Fisher's noncentral hypergeometric distribution, summed exactly."""
    k = baseline.errors + canary.errors
    support = range(max(0, k - baseline.requests), min(k, canary.requests) + 1)
    weight = {
        x: math.comb(canary.requests, x) * math.comb(baseline.requests, k - x) * odds_ratio**x
        for x in support
    }
    return sum((w for x, w in weight.items() if x >= canary.errors), Fraction(0)) / sum(weight.values())


# --------------------------------------------------------------------------------------------- verdicts
def test_an_obvious_regression_fails_with_its_numbers_in_the_reason() -> None:
    verdict = judge(Counts(180, 4), Counts(20, 9))
    assert isinstance(verdict, Fail)
    assert verdict.reason.startswith(
        "canary 9/20 failed (45 %) vs baseline 4/180 (2.2 %): worse beyond doubt, p = "
    )
    assert verdict.reason.endswith(" < 0.0002")


def test_a_canary_as_noisy_as_its_baseline_passes() -> None:
    verdict = judge(Counts(900, 18), Counts(100, 2))
    assert verdict == Pass("canary 2/100 failed (2 %) vs baseline 18/900 (2 %): no worse than the baseline")


def test_two_and_a_half_against_two_percent_is_noise_however_long_the_canary() -> None:
    verdict = judge(Counts(9_000_000, 180_000), Counts(1_000_000, 25_000))
    assert isinstance(verdict, Pass)
    assert "worse by less than the tolerance (up to 2.5 %)" in verdict.reason


def test_worse_but_not_yet_beyond_doubt_is_a_continue_that_says_so() -> None:
    verdict = judge(Counts(180, 4), Counts(20, 3))
    assert isinstance(verdict, Continue)
    assert "canary 3/20 failed (15 %)" in verdict.reason
    assert "not beyond doubt yet: p = 0.023 >= 0.0002" in verdict.reason


def test_quiet_versions_pass() -> None:
    assert judge(Counts(900, 0), Counts(100, 0)) == Pass(
        "canary 0/100 failed (0 %) vs baseline 0/900 (0 %): no worse than the baseline"
    )


@pytest.mark.parametrize(
    ("baseline", "canary", "reason"),
    [
        (Counts(180, 4), Counts(5, 5), "canary has 5 requests, fewer than the 10 needed for a verdict"),
        (Counts(180, 4), Counts(0, 0), "canary has no traffic yet"),
        (Counts(0, 0), Counts(20, 20), "baseline has no traffic: nothing to compare the canary with"),
        (Counts(9, 0), Counts(20, 20), "baseline has 9 requests, fewer than the 10 needed for a verdict"),
    ],
)
def test_below_the_minimum_sample_there_is_no_verdict(baseline: Counts, canary: Counts, reason: str) -> None:
    assert judge(baseline, canary) == Continue(reason)


@pytest.mark.parametrize(
    ("baseline", "canary", "reason"),
    [
        ((180, 4), (20, 25), "canary errors 25 > requests 20"),
        ((180, -1), (20, 2), "baseline errors must be a whole number >= 0, got -1"),
        ((180, 4), (20.5, 2), "canary requests must be a whole number >= 0, got 20.5"),
        ((180, 4), (math.nan, 2), "canary requests must be a whole number >= 0, got nan"),
        ((math.inf, 4), (20, 2), "baseline requests must be a whole number >= 0, got inf"),
        ((180, 4), (None, 2), "canary requests must be a whole number >= 0, got None"),
        ((180, 4), ("20", 2), "canary requests must be a whole number >= 0, got '20'"),
        ((180, 4), (True, 0), "canary requests must be a whole number >= 0, got True"),
        ((180, 4, 1), (20, 2), "baseline counts must be (requests, errors), got (180, 4, 1)"),
        (None, (20, 2), "baseline counts must be (requests, errors), got None"),
        ((10**10, 4), (20, 2), "baseline requests 10000000000 is more than 1e+09: not a believable reading"),
    ],
)
def test_bad_input_is_a_continue_that_says_what_was_wrong(
    baseline: object, canary: object, reason: str
) -> None:
    assert judge(baseline, canary) == Continue(f"bad input, no verdict: {reason}")  # type: ignore[arg-type]


def test_cloudwatch_sums_are_floats_and_are_read_as_counts() -> None:
    assert judge(Counts(180.0, 4.0), Counts(20.0, 9.0)) == judge(Counts(180, 4), Counts(20, 9))  # type: ignore[arg-type]


@given(
    baseline=st.one_of(st.tuples(st.integers(), st.integers()), st.none(), st.text(), st.lists(st.floats())),
    canary=st.tuples(st.one_of(st.integers(), st.floats(), st.none()), st.one_of(st.integers(), st.floats())),
)
def test_any_input_gets_a_verdict_with_a_reason_never_an_exception(baseline: object, canary: object) -> None:
    verdict = judge(baseline, canary)  # type: ignore[arg-type]
    assert isinstance(verdict, Pass | Fail | Continue)
    assert verdict.reason


# --------------------------------------------------------------------------------------------- properties
@given(baseline=groups(), canary_requests=st.integers(0, 2000), data=st.data(), policy=POLICIES)
def test_a_canary_no_worse_than_its_baseline_never_fails(
    baseline: Counts, canary_requests: int, data: st.DataObject, policy: Policy
) -> None:
    assume(baseline.requests > 0)
    most = canary_requests * baseline.errors // baseline.requests  # at most the baseline's rate
    canary = Counts(canary_requests, data.draw(st.integers(0, most)))
    assert not isinstance(judge(baseline, canary, policy), Fail)


@given(baseline=groups(), canary_requests=st.integers(0, 2000), data=st.data(), policy=POLICIES)
def test_a_canary_worse_only_within_the_tolerance_never_fails(
    baseline: Counts, canary_requests: int, data: st.DataObject, policy: Policy
) -> None:
    assume(baseline.requests > 0)
    tolerated = cj.tolerated_rate(baseline.errors / baseline.requests, policy)
    canary = Counts(canary_requests, data.draw(st.integers(0, math.floor(canary_requests * tolerated))))
    assert not isinstance(judge(baseline, canary, policy), Fail)


@given(baseline=groups(), canary_requests=st.integers(0, 300), policy=POLICIES)
def test_more_canary_errors_never_make_a_verdict_milder(
    baseline: Counts, canary_requests: int, policy: Policy
) -> None:
    """Pass, then Continue, then Fail as the canary's errors rise, all else equal: never Fail then Pass."""
    verdicts = [severity(baseline, Counts(canary_requests, x), policy) for x in range(canary_requests + 1)]
    assert verdicts == sorted(verdicts)


@given(canary=groups(300), baseline_requests=st.integers(0, 3000), policy=POLICIES)
def test_more_baseline_errors_never_turn_a_canary_into_a_failure(
    canary: Counts, baseline_requests: int, policy: Policy
) -> None:
    """A worse baseline makes the same canary less suspect (judge_bench's exact one-look sum relies on it)."""
    failed = [
        isinstance(judge(Counts(baseline_requests, x), canary, policy), Fail)
        for x in range(0, baseline_requests + 1, max(1, baseline_requests // 200))
    ]
    assert failed == sorted(failed, reverse=True)


# --------------------------------------------------------------------------------------------- the exact test
def test_fishers_exact_test_on_the_lady_tasting_tea() -> None:
    """Fisher's own example: 3 of 4 cups right against 1 of 4, one-sided p = 17/70."""
    assert cj.excess_p_value(Counts(4, 1), Counts(4, 3)) == pytest.approx(17 / 70, rel=1e-12)


@given(
    baseline=groups(120),
    canary=groups(40),
    odds_ratio=st.sampled_from([Fraction(1), Fraction(5, 4), Fraction(3, 2), Fraction(2), Fraction(1, 2)]),
)
def test_the_p_value_is_the_exact_tail_of_the_noncentral_hypergeometric(
    baseline: Counts, canary: Counts, odds_ratio: Fraction
) -> None:
    expected = brute_force_p(baseline, canary, odds_ratio)
    got = cj.excess_p_value(baseline, canary, float(odds_ratio))
    assert got == pytest.approx(float(expected), rel=1e-7, abs=1e-300)


@given(baseline=groups(10**6), canary=groups(10**5), odds_ratio=st.sampled_from([1.0, 1.5]))
def test_the_p_value_is_a_probability_for_large_counts_too(
    baseline: Counts, canary: Counts, odds_ratio: float
) -> None:
    assert 0.0 <= cj.excess_p_value(baseline, canary, odds_ratio) <= 1.0


# --------------------------------------------------------------------------------------------- policy
def test_the_policy_reads_its_variables_and_names_a_bad_one() -> None:
    assert cj.policy_from_env({}) == cj.DEFAULT_POLICY
    env = {"CANARY_ALPHA": "0.002", "CANARY_LOOKS": "10", "CANARY_ODDS_RATIO_MARGIN": " 1.5 "}
    assert cj.policy_from_env(env) == Policy(alpha=0.002, looks=10, odds_ratio_margin=1.5)
    assert cj.policy_from_env(env).per_look_alpha == pytest.approx(0.0002)
    with pytest.raises(ValueError, match=r"CANARY_LOOKS must be a whole number, got '2\.5'"):
        cj.policy_from_env({"CANARY_LOOKS": "2.5"})
    with pytest.raises(ValueError, match=r"CANARY_ALPHA must be a number in \(0, 1\), got 0\.0"):
        cj.policy_from_env({"CANARY_ALPHA": "0"})
    with pytest.raises(ValueError, match="CANARY_ODDS_RATIO_MARGIN must be a number >= 1, got nan"):
        cj.policy_from_env({"CANARY_ODDS_RATIO_MARGIN": "nan"})
    assert set(cj.POLICY_VARIABLES) == {spec.name for spec in fields(Policy)}


def test_the_tolerance_is_the_odds_margin_or_the_excess_whichever_is_more() -> None:
    assert cj.tolerated_rate(0.02, Policy()) == pytest.approx(0.025)  # half a point
    assert cj.tolerated_rate(0.0, Policy()) == pytest.approx(0.005)
    assert cj.tolerated_rate(0.10, Policy(odds_ratio_margin=1.5)) == pytest.approx(0.15 / 1.05)
    assert cj.tolerated_rate(1.0, Policy()) == 1.0


# --------------------------------------------------------------------------------------------- Monte Carlo
def test_a_small_monte_carlo_holds_the_issues_goals() -> None:
    """2,000 canaries a row, fixed seed (the bench runs 10,000): false rollbacks of a 2 %-noisy release
    within 0.3 %, a 20 %-failing one caught in at least 98 % of canaries, both before the canary ends."""
    noisy = bench.simulate(bench.NOISY, 2000, seed=12)
    failing = bench.simulate(bench.GOAL, 2000, seed=12)
    assert noisy.share <= 0.003
    assert failing.share >= 0.98
    assert set(failing.looks) <= set(range(1, bench.LOOKS + 1))
    assert bench.simulate(bench.QUIET, 500, seed=12).rolled_back == 0


def test_a_row_is_the_same_alone_or_with_the_others() -> None:
    assert bench.simulate(bench.failing(0.1), 300, seed=5) == bench.simulate(bench.failing(0.1), 300, seed=5)


def test_the_bench_names_the_goals_it_misses() -> None:
    noisy = bench.Outcome(bench.NOISY, 10_000, (2,) * 11)
    missed = bench.Outcome(bench.GOAL, 10_000, (3,) * 9_800)
    assert bench.missed([noisy, missed]) == [
        "healthy-noisy: 0.11 % false rollbacks > 0.1 %",
        "failing-20: 98.0 % detected < 99 %",
    ]
    assert bench.missed([bench.Outcome(bench.NOISY, 10_000, (2,) * 10)]) == []


def test_wilson_interval() -> None:
    low, high = bench.wilson(0, 10_000)
    assert low == 0.0
    assert high == pytest.approx(3.84e-4, rel=0.01)
    low, high = bench.wilson(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_one_look_detection_is_exact_for_a_tiny_case() -> None:
    """10 canary requests (90 baseline) all failing against a quiet baseline: detected whenever the canary's
    10 fail, and a single look sees that with probability 0.5 ** 10 at a 50 % rate."""
    assert bench.one_look_detection(10, 1.0, 0.0) == pytest.approx(1.0)
    assert bench.one_look_detection(10, 0.0, 0.0) == 0.0
    assert 0.0 < bench.one_look_detection(10, 0.5, 0.0) < 1.0


def test_the_command_prints_the_table_and_exits_by_the_goals(capsys: pytest.CaptureFixture[str]) -> None:
    status = bench.main(["--canaries", "300", "--seed", "12", "--no-curve"])
    out = capsys.readouterr().out
    assert "healthy-noisy" in out
    assert "failing-50" in out
    assert "Detection against" not in out
    assert status == (1 if "MISSED" in out else 0)
