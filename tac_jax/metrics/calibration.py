"""Calibration of predicted class probabilities: ECE, Brier score, NLL."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_EPS = 1e-12
# float32 softmax rows sum to 1 only to about 1e-6; anything further off is not a distribution.
_SUM_TOL = 1e-3


def _probs_and_labels(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(
            f"expected probs of shape (num_examples, num_classes >= 2), got shape {p.shape}"
        )
    p = p.astype(np.float64)
    if not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0:
        raise ValueError("expected finite probs in [0, 1], got values outside that range")
    row_sums = p.sum(axis=1)
    if np.max(np.abs(row_sums - 1.0)) > _SUM_TOL:
        worst = float(row_sums[np.argmax(np.abs(row_sums - 1.0))])
        raise ValueError(f"expected each row of probs to sum to 1, got a row summing to {worst}")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(f"expected labels of shape ({p.shape[0]},), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or np.any(y != np.round(y)):
            raise ValueError(f"expected integer class labels, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(
            f"expected labels in [0, {p.shape[1]}), got values in [{y.min()}, {y.max()}]"
        )
    return p, y


def ece(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> float:
    """Expected calibration error of the top-1 prediction, equal-width bins.

    Confidence is the maximum probability and the prediction its argmax (first on ties).
    Bin ``b`` holds confidences in ``(b / num_bins, (b + 1) / num_bins]``; a confidence of
    exactly 0 goes to the first bin. ``ECE = sum_b (n_b / n) |accuracy_b - confidence_b|``.

    Args:
      probs: ``(num_examples, num_classes)`` probabilities, rows summing to 1.
      labels: ``(num_examples,)`` integer class labels.
      num_bins: number of equal-width confidence bins on [0, 1].

    Returns:
      ECE in [0, 1]; lower is better.

    >>> round(ece([[0.9, 0.1], [0.6, 0.4]], [0, 1], num_bins=10), 6)
    0.35
    """
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"expected num_bins to be a positive integer, got {num_bins!r}")
    p, y = _probs_and_labels(probs, labels)
    confidence = p.max(axis=1)
    hit = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.arange(num_bins + 1) / num_bins
    # side="left" puts a confidence equal to an edge in the bin below it (upper-inclusive).
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    gap = np.bincount(bins, weights=hit - confidence, minlength=num_bins)
    # |sum over a bin of (hit - conf)| / n = (n_b / n) |acc_b - conf_b|; empty bins add 0.
    return float(np.sum(np.abs(gap)) / count.sum())


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score: mean over examples of ``sum_k (p_k - onehot_k)^2``.

    For two classes this is twice scikit-learn's binary ``brier_score_loss`` on the
    positive-class probability; for more classes it equals scikit-learn's multi-class one.

    Args:
      probs: ``(num_examples, num_classes)`` probabilities, rows summing to 1.
      labels: ``(num_examples,)`` integer class labels.

    Returns:
      Brier score in [0, 2]; lower is better.

    >>> round(brier([[0.9, 0.1], [0.6, 0.4]], [0, 1]), 6)
    0.37
    """
    p, y = _probs_and_labels(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.size), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped at 1e-12.

    Args:
      probs: ``(num_examples, num_classes)`` probabilities, rows summing to 1.
      labels: ``(num_examples,)`` integer class labels.

    Returns:
      NLL in nats, >= 0; lower is better.

    >>> round(nll([[0.5, 0.5], [0.25, 0.75]], [0, 1]), 6)
    0.490415
    """
    p, y = _probs_and_labels(probs, labels)
    p_true = np.clip(p[np.arange(y.size), y], _EPS, 1.0)
    return float(-np.mean(np.log(p_true)))
