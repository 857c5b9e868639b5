"""Tests for tac_jax.metrics.guarantee: the binomial bound, SGR, Learn then Test, and
their guarantee against the true risk of a population with a known risk curve."""

import doctest
import math

import numpy as np
import pytest
from scipy import optimize, stats

from tac_jax.metrics import guarantee
from tac_jax.metrics.guarantee import (
    accept,
    binomial_upper_bound,
    calibrate,
    hoeffding_bentkus_p_value,
    ltt,
    ltt_grid,
    repeated_splits,
    sgr,
)

# The population of the guarantee tests: score s ~ U(0, 1), P(wrong | s) = A (1 - s), so
# the selective risk of accepting s >= t is A (1 - t) / 2 and the coverage 1 - t.
A = 0.4


def true_risk(threshold: float) -> float:
    return 0.0 if threshold == math.inf else A * (1.0 - min(max(threshold, 0.0), 1.0)) / 2.0


def draw(rng, m):
    s = rng.uniform(size=m)
    return s, rng.uniform(size=m) >= A * (1.0 - s)


def test_doctests():
    assert doctest.testmod(guarantee).failed == 0


@pytest.mark.parametrize("n", [1, 2, 7, 50, 1000])
@pytest.mark.parametrize("delta", [0.001, 0.05, 0.5])
def test_binomial_bound_inverts_the_binomial_cdf(n, delta):
    for k in sorted({k for k in (0, 1, n // 3, n - 1) if k < n}):
        # Brute force: the root of P(Binomial(n, r) <= k) = δ, decreasing in r.
        gap = lambda r, k: stats.binom.cdf(k, n, r) - delta
        expected = optimize.brentq(gap, k / n, 1.0, args=(k,), xtol=1e-14)
        bound = binomial_upper_bound(k, n, delta)
        assert bound == pytest.approx(expected, abs=1e-9), (k, n, delta)
        assert stats.binom.cdf(k, n, bound) == pytest.approx(delta, rel=1e-6)
    assert binomial_upper_bound(n, n, delta) == 1.0
    assert binomial_upper_bound(0, n, delta) == pytest.approx(1.0 - delta ** (1.0 / n))


def test_hoeffding_bentkus_p_value_is_the_formula_and_valid():
    k, n, alpha = np.array([0, 3, 10, 30]), np.array([40, 40, 40, 40]), 0.2
    r = k / n
    a = np.minimum(r, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.nan_to_num(a * np.log(a / alpha)) + (1 - a) * np.log((1 - a) / (1 - alpha))
    expected = np.minimum(1, np.minimum(np.exp(-n * h1), math.e * stats.binom.cdf(k, n, alpha)))
    np.testing.assert_allclose(hoeffding_bentkus_p_value(k, n, alpha), expected, rtol=1e-12)
    assert hoeffding_bentkus_p_value(30, 40, alpha) == 1.0  # r̂ > r*: no evidence
    # Validity at the boundary of H0 (risk exactly r*), exactly: P(p <= δ) <= δ.
    for m in (10, 57, 300):
        ks = np.arange(m + 1)
        p = hoeffding_bentkus_p_value(ks, np.full_like(ks, m), alpha)
        for delta in (0.01, 0.1, 0.3):
            assert stats.binom.pmf(ks, m, alpha)[p <= delta].sum() <= delta


def test_sgr_on_a_hand_made_case():
    # m = 8: ⌈log₂ 8⌉ = 3 steps at δ/3 = 0.1. Scores 1..8, wrong at 1 and 3.
    s = np.arange(1.0, 9.0)
    c = np.array([0, 1, 0, 1, 1, 1, 1, 1], bool)
    # z = 5: top 4, no error, 1 - 0.1^(1/4) = 0.438 <= 0.45: more coverage.
    # z = 3: top 6, one error, bound 0.510 > 0.45: less.
    # z = 4: top 5, no error, 1 - 0.1^(1/5) = 0.369: the answer.
    assert binomial_upper_bound(1, 6, 0.1) > 0.45 >= binomial_upper_bound(0, 4, 0.1)
    out = sgr(s, c, risk=0.45, delta=0.3)
    assert out.threshold == 4.0 and out.accepted == 5 and out.coverage == 5 / 8
    assert out.risk == 0.0 and out.method == "sgr" and math.isnan(out.p_value)
    assert out.bound == pytest.approx(1 - 0.1 ** (1 / 5))
    # A tie at the threshold is accepted as a group: the bound counts all of it.
    tied = sgr(np.r_[1, 2, 3, 4, 4, 6, 7, 8.0], c, risk=0.45, delta=0.3)
    assert tied.threshold == 4.0 and tied.accepted == 5


def test_sgr_with_separating_scores_covers_about_the_accuracy():
    rng = np.random.default_rng(1)
    s = rng.uniform(size=2000)
    c = s > 0.2
    out = sgr(s, c, risk=0.01, delta=0.1)
    accuracy = c.mean()
    # Every correct example, and at most the few errors a 1% bound allows.
    assert accuracy <= out.coverage <= accuracy + 0.01
    assert out.risk <= out.bound <= 0.01


@pytest.mark.parametrize("method", ["sgr", "ltt"])
def test_the_guarantee_holds_against_the_true_risk(method):
    rng = np.random.default_rng(0)
    risk, delta, draws = 0.1, 0.1, 300
    violations, coverage = [], []
    for _ in range(draws):
        out = calibrate(*draw(rng, 1000), risk, delta, method)
        violations.append(true_risk(out.threshold) > risk)
        coverage.append(0.0 if out.threshold == math.inf else 1.0 - out.threshold)
    assert np.mean(violations) <= delta
    # Not vacuous: the best threshold covers half (A (1 - t) / 2 = 0.1 at t = 0.5).
    assert 0.15 < np.mean(coverage) < 0.5


def test_the_guarantee_test_would_catch_a_threshold_without_one():
    # The largest coverage with empirical risk <= r*, no bound: fails about half the time.
    rng = np.random.default_rng(0)
    violations = []
    for _ in range(300):
        s, c = draw(rng, 1000)
        order = np.argsort(-s)
        empirical = np.cumsum(~c[order]) / np.arange(1, s.size + 1)
        threshold = s[order][np.flatnonzero(empirical <= 0.1).max()]
        violations.append(true_risk(threshold) > 0.1)
    assert np.mean(violations) > 0.3


def test_ltt_tests_from_the_highest_threshold_and_stops_at_the_first_failure():
    s = np.arange(100.0)
    c = s >= 20  # the errors are the 20 lowest scores
    grid = [0.0, 60.0, 30.0, 90.0, 25.0, 10.0]  # tested from the highest
    n = np.array([10, 40, 70, 75, 90, 100])  # accepted at 90, 60, 30, 25, 10, 0
    e = np.array([0, 0, 0, 0, 10, 20])
    p = hoeffding_bentkus_p_value(e, n, 0.2)
    # 90: too few to reject; 60, 30, 25, 10: rejected; 0 (risk 0.2 = r*): not.
    np.testing.assert_array_equal(p <= 0.1, [False, True, True, True, True, False])
    out = ltt(s, c, risk=0.2, delta=0.1, grid=grid)
    assert out.threshold == math.inf and out.coverage == 0.0  # stopped at once
    out = ltt(s, c, risk=0.2, delta=0.1, grid=grid[:3] + grid[4:])
    assert (out.threshold, out.accepted, out.risk) == (10.0, 90, 10 / 90)
    assert out.p_value == pytest.approx(p[4]) and math.isnan(out.bound)


def test_ltt_grid_starts_where_a_rejection_is_possible():
    s = np.arange(1000.0)
    grid = ltt_grid(s, risk=0.05, delta=0.1)
    n_min = math.ceil(math.log(0.1) / math.log(0.95))  # 45
    assert np.all(np.diff(grid) < 0) and grid[-1] == 0.0
    assert (s >= grid[0]).sum() >= n_min and (s >= grid[0]).sum() <= n_min + 1
    assert ltt_grid(np.arange(10.0), risk=0.05, delta=0.1).size == 0


@pytest.mark.parametrize("method", ["sgr", "ltt"])
def test_edge_cases(method):
    s = np.linspace(0, 1, 200)
    every = calibrate(s, np.ones(200, bool), 0.1, 0.1, method)
    assert every.risk == 0.0
    # LTT can accept all; SGR never evaluates z = 1 (accepting all), as in the paper.
    assert every.coverage == (1.0 if method == "ltt" else 199 / 200)
    for correct, risk in [(np.zeros(200, bool), 0.1), (s > 0.5, 1e-4)]:
        out = calibrate(s, correct, risk, 0.1, method)
        assert (out.threshold, out.coverage, out.accepted, out.risk) == (math.inf, 0.0, 0, 0.0)
        assert not accept(s, out.threshold).any()
    one = calibrate([0.5], [True], 0.5, 0.5, method)
    assert one.threshold in (0.5, math.inf)


def test_accept_is_score_at_least_threshold():
    s = np.array([0.1, 0.5, 0.7, np.nan, np.inf, -np.inf])
    np.testing.assert_array_equal(accept(s, 0.5), s >= 0.5)
    assert not accept(s, math.inf).any()
    assert accept(s, -math.inf).sum() == 5  # all but the NaN


def test_repeated_splits_measures_on_the_held_out_part():
    rng = np.random.default_rng(3)
    s, c = draw(rng, 4000)
    out = repeated_splits(s, c, 0.1, 0.1, "sgr", splits=40, seed=7)
    assert out == repeated_splits(s, c, 0.1, 0.1, "sgr", splits=40, seed=7)
    assert out.splits == 40 and out.rejected_fraction == 0.0
    assert out.held_fraction >= 0.85 and 0.2 < out.coverage_mean < 0.5
    assert 0.0 < out.risk_mean <= 0.1 and out.coverage_std > 0.0
    # The first split, by hand.
    perm = np.random.default_rng(7).permutation(4000)
    cal, test = perm[:2000], perm[2000:]
    first = sgr(s[cal], c[cal], 0.1, 0.1)
    one = repeated_splits(s, c, 0.1, 0.1, "sgr", splits=1, seed=7)
    taken = s[test] >= first.threshold
    assert one.coverage_mean == pytest.approx(taken.mean())
    assert one.risk_mean == pytest.approx((~c[test][taken]).mean())
    # Rejecting everything: coverage 0, risk 0, and the split holds.
    none = repeated_splits(s, c, 1e-5, 0.1, "ltt", splits=3, calibration_fraction=0.25)
    assert none == (0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: sgr([0.1, 0.2], [1, 0], 0.0, 0.1), "expected risk in (0, 1), got 0.0"),
        (lambda: sgr([0.1, 0.2], [1, 0], 1.0, 0.1), "expected risk in (0, 1), got 1.0"),
        (lambda: ltt([0.1, 0.2], [1, 0], 0.1, 1.5), "expected delta in (0, 1), got 1.5"),
        (lambda: ltt([0.1, 0.2], [1, 0], float("nan"), 0.1), "expected risk in (0, 1), got nan"),
        (lambda: sgr([0.1, 0.2], [1, 0, 1], 0.1, 0.1), "expected arrays of equal length"),
        (lambda: sgr([0.1, np.nan], [1, 0], 0.1, 0.1), "expected finite scores"),
        (lambda: sgr([], [], 0.1, 0.1), "expected scores to hold at least one value"),
        (lambda: calibrate([0.1], [1], 0.1, 0.1, "crc"), "expected method in ('sgr', 'ltt')"),
        (lambda: binomial_upper_bound(3, 2, 0.1), "expected 0 <= errors <= n"),
        (lambda: binomial_upper_bound(0, 0, 0.1), "expected n >= 1, got 0"),
        (lambda: binomial_upper_bound(0.5, 2, 0.1), "expected integer errors"),
        (lambda: accept([1.0], float("nan")), "expected a threshold that is a number or +inf"),
        (lambda: repeated_splits([0.1, 0.2], [1, 0], 0.1, 0.1, splits=0), "expected splits >= 1"),
        (
            lambda: repeated_splits([0.1, 0.2], [1, 0], 0.1, 0.1, calibration_fraction=0.1),
            "expected a calibration_fraction leaving both parts non-empty",
        ),
    ],
)
def test_bad_arguments_are_one_line_value_errors(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)
