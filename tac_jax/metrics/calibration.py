"""Calibration of predicted class probabilities: ECE and its reliability bins, Brier
score, NLL."""

from __future__ import annotations

from typing import NamedTuple

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


class Reliability(NamedTuple):
    """Confidence against accuracy in equal-width bins (a reliability diagram's data).

    Attributes:
      edges: ``(num_bins + 1,)`` bin edges on [0, 1].
      count: ``(num_bins,)`` examples per bin.
      accuracy: ``(num_bins,)`` share of hits per bin, NaN for an empty bin.
      confidence: ``(num_bins,)`` mean confidence per bin, NaN for an empty bin.
      ece: ``sum_b (n_b / n) |accuracy_b - confidence_b|``.
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    ece: float


def reliability_bins(confidence: ArrayLike, hit: ArrayLike, num_bins: int = 15) -> Reliability:
    """Bins confidences in equal-width bins and reads the accuracy of each.

    Bin ``b`` holds confidences in ``(b / num_bins, (b + 1) / num_bins]``; a confidence of
    exactly 0 goes to the first bin. This is the binning of `ece`, for any confidence
    in [0, 1] paired with whether the prediction it backs was right.

    Args:
      confidence: ``(num_examples,)`` confidences in [0, 1].
      hit: ``(num_examples,)`` whether each prediction was right (bool or 0/1).
      num_bins: number of equal-width bins on [0, 1].

    Returns:
      A `Reliability`.

    >>> r = reliability_bins([0.9, 0.6, 0.7, 0.55], [True, False, True, True], num_bins=10)
    >>> r.count[5:].tolist(), round(r.ece, 6)
    ([2, 1, 0, 1, 0], 0.1375)
    """
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"expected num_bins to be a positive integer, got {num_bins!r}")
    conf = np.asarray(confidence, np.float64)
    if conf.ndim != 1 or conf.size == 0:
        raise ValueError(f"expected a non-empty 1-D confidence, got shape {conf.shape}")
    if not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0:
        raise ValueError("expected finite confidences in [0, 1], got values outside that range")
    h = np.asarray(hit)
    if h.shape != conf.shape:
        raise ValueError(f"expected hit of shape {conf.shape}, got shape {h.shape}")
    if h.dtype != bool and not np.all((h == 0) | (h == 1)):
        raise ValueError(f"expected a boolean or 0/1 hit, got dtype {h.dtype}")
    h = h.astype(np.float64)
    edges = np.arange(num_bins + 1) / num_bins
    # side="left" puts a confidence equal to an edge in the bin below it (upper-inclusive).
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    hits = np.bincount(bins, weights=h, minlength=num_bins)
    total = np.bincount(bins, weights=conf, minlength=num_bins)
    gap = np.bincount(bins, weights=h - conf, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, hits / count, np.nan)
        mean_conf = np.where(count > 0, total / count, np.nan)
    # |sum over a bin of (hit - conf)| / n = (n_b / n) |acc_b - conf_b|; empty bins add 0.
    return Reliability(edges, count, accuracy, mean_conf, float(np.sum(np.abs(gap)) / conf.size))


def ece(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> float:
    """Expected calibration error of the top-1 prediction, equal-width bins.

    Confidence is the maximum probability and the prediction its argmax (first on ties),
    binned as in `reliability_bins`. ``ECE = sum_b (n_b / n) |accuracy_b - confidence_b|``.

    Args:
      probs: ``(num_examples, num_classes)`` probabilities, rows summing to 1.
      labels: ``(num_examples,)`` integer class labels.
      num_bins: number of equal-width confidence bins on [0, 1].

    Returns:
      ECE in [0, 1]; lower is better.

    >>> round(ece([[0.9, 0.1], [0.6, 0.4]], [0, 1], num_bins=10), 6)
    0.35
    """
    p, y = _probs_and_labels(probs, labels)
    return reliability_bins(p.max(axis=1), p.argmax(axis=1) == y, num_bins).ece


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
