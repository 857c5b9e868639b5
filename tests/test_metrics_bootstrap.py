"""Bootstrap intervals over examples and t-intervals over seeds."""

import doctest
import math

import numpy as np
import pytest
from scipy import stats

from tac_jax.metrics import (
    aggregate_seeds,
    auroc,
    bootstrap,
    bootstrap_ci,
    bootstrap_ci_two_sample,
    misclassification_auroc,
)


def _paired(n, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n)
    correct = rng.random(n) < 1 / (1 + np.exp(-2 * scores))
    return scores, correct


def test_interval_contains_estimate_and_shrinks_with_data():
    widths = []
    for n in (100, 1600):
        scores, correct = _paired(n)
        est, low, high = bootstrap_ci(misclassification_auroc, scores, correct, num_resamples=300)
        assert est == misclassification_auroc(scores, correct)
        assert low < est < high
        widths.append(high - low)
    # The width goes as 1/sqrt(n): 16x the data gives about a quarter of the width.
    assert widths[1] < 0.5 * widths[0]


def test_mean_interval_matches_normal_theory():
    x = np.random.default_rng(1).normal(size=400)
    est, low, high = bootstrap_ci(np.mean, x, num_resamples=1000, confidence=0.9)
    half = stats.norm.ppf(0.95) * x.std() / math.sqrt(len(x))
    assert est == pytest.approx(x.mean())
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_resampling_is_joint_and_reproducible():
    x = np.arange(50.0)
    # Jointly resampled copies stay identical, so their difference never varies.
    est, low, high = bootstrap_ci(lambda a, b: float(np.max(np.abs(a - b))), x, x.copy())
    assert (est, low, high) == (0.0, 0.0, 0.0)
    a = bootstrap_ci(np.mean, x, num_resamples=100, seed=3)
    assert a == bootstrap_ci(np.mean, x, num_resamples=100, seed=3)
    assert a != bootstrap_ci(np.mean, x, num_resamples=100, seed=4)


def test_resamples_without_both_classes_are_skipped():
    scores, correct = np.arange(6.0), np.array([0, 0, 0, 0, 0, 1])
    est, low, high = bootstrap_ci(misclassification_auroc, scores, correct, num_resamples=200)
    assert est == 1.0 and low <= high <= 1.0


def test_two_sample_keeps_sizes_and_contains_estimate():
    rng = np.random.default_rng(2)
    s_in, s_out = rng.normal(1.0, size=300), rng.normal(size=120)
    sizes = set()

    def metric(a, b):
        sizes.add((len(a), len(b)))
        return auroc(a, b)

    est, low, high = bootstrap_ci_two_sample(metric, s_in, s_out, num_resamples=200)
    assert sizes == {(300, 120)}
    assert est == auroc(s_in, s_out) and low < est < high
    small = bootstrap_ci_two_sample(auroc, s_in[:60], s_out[:24], num_resamples=200)
    assert small[2] - small[1] > high - low


def test_aggregate_seeds():
    out = aggregate_seeds([1.0, 2.0, 3.0, 4.0])
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert out["n"] == 4 and out["mean"] == 2.5
    assert out["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert out["ci_low"] == pytest.approx(2.5 - half) and out["ci_high"] == pytest.approx(
        2.5 + half
    )
    assert aggregate_seeds([1.0, 2.0, 3.0])["ci_high"] == pytest.approx(2 + 4.302653 / math.sqrt(3))
    single = aggregate_seeds([0.7])
    assert single["mean"] == 0.7 and single["n"] == 1 and math.isnan(single["ci_low"])


@pytest.mark.parametrize(
    "call",
    [
        lambda: bootstrap_ci(np.mean),
        lambda: bootstrap_ci(np.mean, np.arange(3.0), np.arange(4.0)),
        lambda: bootstrap_ci(np.mean, np.arange(3.0), num_resamples=0),
        lambda: bootstrap_ci(np.mean, np.arange(3.0), confidence=1.0),
        lambda: bootstrap_ci(np.mean, np.array([])),
        lambda: bootstrap_ci_two_sample(auroc, [1.0], []),
        lambda: aggregate_seeds([]),
        lambda: aggregate_seeds([1.0, math.nan]),
        lambda: bootstrap_ci(misclassification_auroc, np.arange(3.0), np.ones(3)),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError, match="expected"):
        call()


def test_docstring_examples():
    assert doctest.testmod(bootstrap).failed == 0
