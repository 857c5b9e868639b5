"""Tests for tac_jax/evaluate/reporting/layers.py (per-layer diagnostics)."""

import numpy as np
import pytest

from tac_jax.evaluate.reporting.layers import HISTOGRAM_EDGES, layer_diagnostics

RNG = np.random.default_rng(0)
# Three classes, two tapped layers of width 4.
CODES = np.array(
    [[1, 1, -1, -1, 1, -1, 1, -1], [1, -1, 1, -1, -1, 1, 1, -1], [-1, 1, 1, -1, 1, 1, -1, -1]],
    np.float32,
)


def _case(n=600):
    labels = RNG.integers(0, 3, n)
    prediction = np.where(RNG.random(n) < 0.8, labels, (labels + 1) % 3)
    a = np.empty((n, 8), np.float32)
    # Layer 0: noise. Layer 1: the true class's code, blurred, so it agrees with the
    # prediction's code when the prediction is right.
    a[:, :4] = RNG.normal(size=(n, 4))
    a[:, 4:] = CODES[labels, 4:] + 0.3 * RNG.normal(size=(n, 4))
    ood_a = np.concatenate([RNG.normal(size=(200, 4)), 0.2 * RNG.normal(size=(200, 4))], 1)
    ood = {"far_set": (ood_a.astype(np.float32), RNG.integers(0, 3, 200), "far")}
    return a, labels, prediction, ood


def test_the_informative_layer_stands_out():
    a, labels, prediction, ood = _case()
    out = layer_diagnostics(a, labels, prediction, CODES, 4, ["conv1", "conv2"], ood)
    assert out["layers"] == ["conv1", "conv2", "all"] and out["kinds"] == ["far"]
    noise, signal = out["rows"]["conv1"], out["rows"]["conv2"]
    assert abs(noise["accuracy"] - 1 / 3) < 0.1 and signal["accuracy"] > 0.95
    assert abs(noise["misclassification_auroc"] - 0.5) < 0.08
    assert signal["misclassification_auroc"] > 0.95
    assert abs(noise["ood_auroc"]["far"] - 0.5) < 0.08 and signal["ood_auroc"]["far"] > 0.85
    # Layer 2's entries sit near ±1: most within 0.25 of a code value; far fewer for noise.
    assert signal["near_code"] > 0.5 > noise["near_code"]
    # Histograms count every entry, in distribution and per OOD kind.
    assert sum(signal["histogram"]["in"]) == a.shape[0] * 4
    assert sum(signal["histogram"]["far"]) == 200 * 4
    assert len(out["edges"]) == len(HISTOGRAM_EDGES)
    # "all" is the paper's confidence: the inner product over both layers.
    every = out["rows"]["all"]
    assert sum(every["histogram"]["in"]) == a.size
    assert noise["misclassification_auroc"] < every["misclassification_auroc"]


def test_the_block_confidence_by_hand():
    a = np.array([[1.0, 1.0, -1.0, -1.0, 0.5, 0.5, 0.5, 0.5]], np.float32)
    a = np.repeat(a, 2, 0)
    a[1, :4] *= -1
    labels, prediction = np.array([0, 0]), np.array([0, 0])
    out = layer_diagnostics(a, labels, prediction, CODES, 4, ["a", "b"])
    # Row 0 decodes to class 0 on layer "a"; row 1 (all signs flipped) does not.
    assert out["rows"]["a"]["accuracy"] == 0.5 and out["kinds"] == []
    # Every prediction right: no misclassification AUROC, reported as None.
    assert out["rows"]["a"]["misclassification_auroc"] is None


def test_shapes_are_checked():
    a, labels, prediction, _ = _case(10)
    with pytest.raises(ValueError, match="activations matching codes"):
        layer_diagnostics(a, labels, prediction, CODES, 4, ["only_one"])
