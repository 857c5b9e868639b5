"""Selective classification metrics: sklearn cross-checks and hand-worked cases."""

import doctest
import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from tac_jax.metrics import (
    accuracy_at_coverage,
    augrc,
    aurc,
    e_augrc,
    e_aurc,
    misclassification_auroc,
    optimal_augrc,
    risk_coverage_curve,
    selective,
)


def _random(seed, decimals=None, n=400):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n)
    correct = rng.random(n) < 1 / (1 + np.exp(-2 * scores))
    if decimals is not None:
        scores = np.round(scores, decimals)
    return scores, correct


def _brute_aurc(scores, correct):
    """Mean over every ordering of each tie group of the per-example AURC."""
    groups = [np.flatnonzero(scores == v) for v in np.unique(scores)[::-1]]
    total, count = 0.0, 0
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate(perms)
        errors = np.cumsum(~correct[order])
        total += np.mean(errors / np.arange(1, len(order) + 1))
        count += 1
    return total / count


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_misclassification_auroc_matches_sklearn(seed, decimals):
    scores, correct = _random(seed, decimals)
    np.testing.assert_allclose(
        misclassification_auroc(scores, correct), skm.roc_auc_score(correct, scores), rtol=1e-12
    )


def test_four_example_hand_case():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 0])
    # Selective risk at k = 1..4: 0, 1/2, 1/3, 2/4.
    assert aurc(scores, correct) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    # The perfect ranking [1, 1, 0, 0] has risks 0, 0, 1/3, 2/4.
    assert e_aurc(scores, correct) == pytest.approx(0.125)
    coverage, risk = risk_coverage_curve(scores, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.5])
    assert accuracy_at_coverage(scores, correct, 0.5) == 0.5
    assert accuracy_at_coverage(scores, correct, 0.75) == pytest.approx(2 / 3)


def test_ties_are_grouped_and_averaged():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    correct = np.array([True, True, False, False])
    coverage, risk = risk_coverage_curve(scores, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 1 / 3, 0.5])
    # Either order of the tie: risks (0, 0, 1/3, 1/2) or (0, 1/2, 1/3, 1/2).
    assert aurc(scores, correct) == pytest.approx((0 + 0.25 + 1 / 3 + 0.5) / 4)
    assert accuracy_at_coverage(scores, correct, 0.5) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_aurc_equals_average_over_tie_orders(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=7).astype(float)
    correct = rng.random(7) < 0.6
    assert aurc(scores, correct) == pytest.approx(_brute_aurc(scores, correct), rel=1e-12)


def test_aurc_without_ties_is_mean_of_per_example_risk():
    scores, correct = _random(11)
    order = np.argsort(-scores)
    risks = np.cumsum(~correct[order]) / np.arange(1, len(scores) + 1)
    assert aurc(scores, correct) == pytest.approx(np.mean(risks), rel=1e-12)
    assert accuracy_at_coverage(scores, correct, 0.9) == pytest.approx(1 - risks[359])


def test_perfect_and_reversed_rankings():
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 1, 1, 0], bool)
    perfect = correct.astype(float) + np.linspace(0, 0.1, 10)
    assert e_aurc(perfect, correct) == pytest.approx(0.0, abs=1e-15)
    assert e_aurc(-perfect, correct) > 0.3
    assert accuracy_at_coverage(perfect, correct, 0.6) == 1.0
    assert aurc(np.zeros(10), correct) == pytest.approx(0.4)  # all tied: risk 0.4 everywhere


@pytest.mark.parametrize("seed", range(3))
def test_curve_ends_at_overall_risk_and_coverage_one(seed):
    scores, correct = _random(seed, decimals=1)
    coverage, risk = risk_coverage_curve(scores, correct)
    assert coverage[-1] == 1.0 and np.all(np.diff(coverage) > 0)
    assert risk[-1] == pytest.approx(1 - correct.mean())
    assert len(coverage) == len(np.unique(scores))
    assert accuracy_at_coverage(scores, correct, 1.0) == pytest.approx(correct.mean())


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="expected"):
        misclassification_auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="expected"):
        aurc([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ValueError, match="expected"):
        aurc([0.1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="expected"):
        risk_coverage_curve([0.1, 0.2], [0.5, 1])
    with pytest.raises(ValueError, match="expected"):
        accuracy_at_coverage([0.1, 0.2], [1, 0], 0.0)
    with pytest.raises(ValueError, match="expected"):
        accuracy_at_coverage([0.1, 0.2], [1, 0], 1.5)


def test_docstring_examples():
    assert doctest.testmod(selective).failed == 0


def _generalized_rc_area(scores, correct):
    """The generalized risk-coverage curve integrated as fd-shifts does: thresholds at
    the distinct scores from the lowest up, one point per threshold, then (0, 0), joined
    by straight lines (trapezoids)."""
    order = np.argsort(scores, kind="stable")
    s, wrong = scores[order], ~correct[order]
    n = len(s)
    coverage, risk = [1.0], [wrong.sum() / n]
    for i in range(n - 1):  # reject the i + 1 lowest
        if s[i] != s[i + 1]:
            coverage.append((n - i - 1) / n)
            risk.append(wrong[i + 1 :].sum() / n)
    coverage.append(0.0)
    risk.append(0.0)
    coverage, risk = np.array(coverage), np.array(risk)
    return float(np.sum((coverage[:-1] - coverage[1:]) * (risk[:-1] + risk[1:]) / 2))


def test_augrc_four_example_hand_case():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 0, 1, 0])
    # Generalized risk at coverage k/4: 0, 1/4, 1/4, 2/4, from (0, 0); trapezoids of 1/4.
    assert augrc(scores, correct) == pytest.approx((0 + 1 / 8 + 1 / 4 + 3 / 8) / 4)
    assert optimal_augrc(correct) == 0.125  # err = 1/2
    assert e_augrc(scores, correct) == pytest.approx(0.1875 - 0.125)
    # A tie group of two with one error: its segment is the straight line 0 → 1/3.
    scores = np.array([0.9, 0.5, 0.5])
    correct = np.array([True, True, False])
    assert augrc(scores, correct) == pytest.approx((0 + (0 + 1 / 3) / 2 * 2) / 3)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_augrc_matches_a_direct_integration(seed, decimals):
    scores, correct = _random(seed, decimals)
    assert augrc(scores, correct) == pytest.approx(_generalized_rc_area(scores, correct), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("decimals", [None, 1])
def test_augrc_is_err_squared_half_plus_the_auroc_shortfall(seed, decimals):
    # Two independent draws: the first wrong and ranked above the second (ties half).
    scores, correct = _random(seed, decimals)
    err = 1 - correct.mean()
    shortfall = err * (1 - err) * (1 - skm.roc_auc_score(correct, scores))
    assert augrc(scores, correct) == pytest.approx(err**2 / 2 + shortfall, rel=1e-12)
    assert e_augrc(scores, correct) == pytest.approx(shortfall, rel=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_augrc_equals_average_over_tie_orders(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=7).astype(float)
    correct = rng.random(7) < 0.6
    groups = [np.flatnonzero(scores == v) for v in np.unique(scores)[::-1]]
    areas = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate(perms)
        areas.append(_generalized_rc_area(-np.arange(7.0), correct[order]))
    assert augrc(scores, correct) == pytest.approx(np.mean(areas), rel=1e-12)


def test_augrc_optimum_and_random_ranking():
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 1, 1, 0], bool)  # err = 0.4
    perfect = correct.astype(float) + np.linspace(0, 0.1, 10)
    assert augrc(perfect, correct) == pytest.approx(0.4**2 / 2, abs=1e-15)
    assert e_augrc(perfect, correct) == pytest.approx(0.0, abs=1e-15)
    assert augrc(-perfect, correct) == pytest.approx(0.4**2 / 2 + 0.4 * 0.6)  # AUROC 0
    # All tied: the straight line from (0, 0) to (1, err), area err / 2.
    assert augrc(np.zeros(10), correct) == pytest.approx(0.2)
    # Random scores: E[errors(top k)] = k·err, so E[AUGRC] = err / 2 exactly; here the
    # mean over every one of the 4! orders of four examples, then over random ones.
    small = np.array([True, False, True, True])
    areas = [augrc(np.array(p, float), small) for p in itertools.permutations(range(4))]
    assert np.mean(areas) == pytest.approx(0.25 / 2, rel=1e-12)
    rng = np.random.default_rng(0)
    correct = rng.random(200) < 0.7
    areas = [augrc(rng.random(200), correct) for _ in range(300)]
    assert np.mean(areas) == pytest.approx((1 - correct.mean()) / 2, abs=0.003)
    assert optimal_augrc(np.ones(5)) == 0.0 and optimal_augrc(np.zeros(5, bool)) == 0.5
    assert augrc(np.arange(5.0), np.zeros(5, bool)) == pytest.approx(0.5)


def test_augrc_bad_inputs_raise():
    with pytest.raises(ValueError, match="expected"):
        augrc([0.1, 0.2], [1, 0, 1])
    with pytest.raises(ValueError, match="expected"):
        augrc([0.1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="expected"):
        optimal_augrc([])
