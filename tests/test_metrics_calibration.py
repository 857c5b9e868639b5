"""Calibration metrics: hand cases and sklearn / numpy cross-checks."""

import doctest

import numpy as np
import pytest
from sklearn import metrics as skm

from tac_jax.metrics import brier, calibration, ece, nll, reliability_bins


def _random(seed, n=500, num_classes=5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, num_classes))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, num_classes, size=n)
    return probs, labels


def test_ece_hand_case():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])
    # 10 bins: 0.9 alone in (0.8, 0.9], right: |1 - 0.9| / 4.
    # 0.6 and 0.55 share (0.5, 0.6]: accuracy 1/2, confidence 0.575: 2/4 * 0.075.
    # 0.7 alone in (0.6, 0.7], right: |1 - 0.7| / 4.
    expected = 0.1 / 4 + 0.5 * 0.075 + 0.3 / 4
    assert ece(probs, labels, num_bins=10) == pytest.approx(expected)


def test_ece_bin_edges_are_upper_inclusive():
    # Confidence 0.6 sits on an edge of 5 bins and belongs to (0.4, 0.6], with 0.5.
    probs = np.array([[0.6, 0.4], [0.5, 0.5]])
    labels = np.array([0, 1])
    assert ece(probs, labels, num_bins=5) == pytest.approx(abs(0.5 - 0.55))
    assert ece(probs, labels, num_bins=1) == pytest.approx(abs(0.5 - 0.55))


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_a_loop_over_bins(seed):
    probs, labels = _random(seed)
    conf, hit = probs.max(1), probs.argmax(1) == labels
    expected = 0.0
    for lo, hi in zip(np.arange(15) / 15, np.arange(1, 16) / 15, strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            expected += in_bin.mean() * abs(hit[in_bin].mean() - conf[in_bin].mean())
    assert ece(probs, labels) == pytest.approx(expected, rel=1e-12)


def test_perfectly_calibrated_and_confident():
    probs = np.eye(3)[[0, 1, 2, 0]]
    labels = np.array([0, 1, 2, 0])
    assert ece(probs, labels) == 0.0
    assert brier(probs, labels) == 0.0
    assert nll(probs, labels) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_brier_matches_numpy_and_sklearn(seed):
    probs, labels = _random(seed)
    onehot = np.eye(probs.shape[1])[labels]
    direct = np.mean(np.sum((probs - onehot) ** 2, axis=1))
    assert brier(probs, labels) == pytest.approx(direct, rel=1e-12)
    assert brier(probs, labels) == pytest.approx(skm.brier_score_loss(labels, probs), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_binary_brier_is_twice_sklearn(seed):
    rng = np.random.default_rng(seed)
    p1 = rng.random(300)
    labels = rng.integers(0, 2, size=300)
    probs = np.stack([1 - p1, p1], axis=1)
    assert brier(probs, labels) == pytest.approx(2 * skm.brier_score_loss(labels, p1), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_nll_matches_sklearn_log_loss(seed):
    probs, labels = _random(seed)
    expected = skm.log_loss(labels, probs, labels=np.arange(probs.shape[1]))
    assert nll(probs, labels) == pytest.approx(expected, rel=1e-12)


def test_nll_clips_zero_probability():
    assert nll([[1.0, 0.0]], [1]) == pytest.approx(-np.log(1e-12))


@pytest.mark.parametrize(
    "probs,labels",
    [
        ([0.5, 0.5], [0]),  # not 2-D
        ([[0.5, 0.6]], [0]),  # row does not sum to 1
        ([[1.5, -0.5]], [0]),  # outside [0, 1]
        ([[0.5, 0.5]], [2]),  # label out of range
        ([[0.5, 0.5]], [0, 1]),  # length mismatch
        ([[0.5, 0.5]], [0.5]),  # non-integer label
        ([[np.nan, 0.5]], [0]),
    ],
)
def test_bad_inputs_raise(probs, labels):
    for fn in (ece, brier, nll):
        with pytest.raises(ValueError, match="expected"):
            fn(probs, labels)


def test_bad_num_bins_raises():
    with pytest.raises(ValueError, match="expected"):
        ece([[0.5, 0.5]], [0], num_bins=0)


def test_docstring_examples():
    assert doctest.testmod(calibration).failed == 0


def test_reliability_bins_hand_case():
    # 4 bins: 0.1 → (0, .25]; 0.3, 0.5 → (.25, .5] (0.5 on the upper edge); 0.9 → (.75, 1].
    r = reliability_bins([0.1, 0.3, 0.5, 0.9], [False, True, False, True], num_bins=4)
    np.testing.assert_array_equal(r.edges, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(r.count, [1, 2, 0, 1])
    np.testing.assert_allclose(r.accuracy, [0.0, 0.5, np.nan, 1.0])
    np.testing.assert_allclose(r.confidence, [0.1, 0.4, np.nan, 0.9])
    assert r.ece == pytest.approx((0.1 + 2 * 0.1 + 0.1) / 4)


@pytest.mark.parametrize("seed", range(2))
def test_ece_is_the_reliability_bins_ece(seed):
    probs, labels = _random(seed)
    r = reliability_bins(probs.max(1), probs.argmax(1) == labels)
    assert r.ece == ece(probs, labels)
    assert r.count.sum() == len(labels)
    full = r.count > 0
    weighted = np.sum(r.count[full] * np.abs(r.accuracy[full] - r.confidence[full]))
    assert r.ece == pytest.approx(weighted / len(labels), rel=1e-12)


@pytest.mark.parametrize(
    ("confidence", "hit"),
    [([], []), ([0.5, 1.2], [1, 0]), ([0.5, np.nan], [1, 0]), ([0.5], [1, 0]), ([0.5], [2])],
    ids=["empty", "above_1", "nan", "shape", "hit_not_0_1"],
)
def test_reliability_bins_rejects_bad_inputs(confidence, hit):
    with pytest.raises(ValueError, match="expected"):
        reliability_bins(confidence, hit)
