"""Selective classification metrics: sklearn cross-checks and hand-worked cases."""

import doctest
import itertools

import numpy as np
import pytest
from sklearn import metrics as skm

from tac_jax.metrics import (
    accuracy_at_coverage,
    aurc,
    e_aurc,
    misclassification_auroc,
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
