"""Uncertainty of a metric: percentile bootstrap over examples, t-intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def _check_interval_args(num_resamples: int, confidence: float) -> None:
    if not isinstance(num_resamples, (int, np.integer)) or num_resamples < 1:
        raise ValueError(f"expected num_resamples to be a positive integer, got {num_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"expected confidence in (0, 1), got {confidence}")


def _as_sample(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim < 1 or a.shape[0] == 0:
        raise ValueError(f"expected {name} to have at least one example, got shape {a.shape}")
    return a


def _percentile_interval(
    metric_fn: Callable[..., float],
    draw: Callable[[np.random.Generator], tuple[np.ndarray, ...]],
    num_resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_resamples):
        try:
            values.append(float(metric_fn(*draw(rng))))
        except ValueError:
            # A resample can lose a class (e.g. no errors left for an AUROC): the metric
            # is undefined there, so that resample is skipped rather than failing the run.
            continue
    if not values:
        raise ValueError(
            f"expected the metric to be defined on some resample, got an error on all "
            f"{num_resamples}"
        )
    alpha = 1.0 - confidence
    low, high = np.quantile(np.asarray(values), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: ArrayLike,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval, resampling examples jointly across ``arrays``.

    Each resample draws ``n`` example indices with replacement and applies the same indices
    to every array (e.g. scores and correctness stay paired). Resamples on which
    ``metric_fn`` raises ValueError (say, one class left) are skipped.

    Args:
      metric_fn: ``metric_fn(*arrays) -> float``.
      *arrays: arrays with the same first dimension ``n``, the examples.
      num_resamples: number of bootstrap resamples.
      confidence: interval coverage, e.g. 0.95.
      seed: seed of the resampling, so intervals are reproducible.

    Returns:
      ``(estimate, low, high)``: the metric on the full data and the interval's ends.

    >>> est, low, high = bootstrap_ci(np.mean, np.arange(100.0), num_resamples=200)
    >>> est, bool(low < est < high)
    (49.5, True)
    """
    _check_interval_args(num_resamples, confidence)
    if not arrays:
        raise ValueError("expected at least one array to resample, got none")
    data = [_as_sample(a, f"arrays[{i}]") for i, a in enumerate(arrays)]
    n = data[0].shape[0]
    if any(a.shape[0] != n for a in data):
        lengths = [a.shape[0] for a in data]
        raise ValueError(f"expected arrays with the same number of examples, got {lengths}")
    estimate = float(metric_fn(*data))

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        idx = rng.integers(0, n, size=n)
        return tuple(a[idx] for a in data)

    return (estimate, *_percentile_interval(metric_fn, draw, num_resamples, confidence, seed))


def bootstrap_ci_two_sample(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    sample_a: ArrayLike,
    sample_b: ArrayLike,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval, resampling two samples independently.

    For metrics over two populations of different sizes, such as OOD metrics over
    in-distribution and OOD scores: each resample keeps both sample sizes.

    Args:
      metric_fn: ``metric_fn(sample_a, sample_b) -> float``, e.g. `auroc`.
      sample_a: first sample, examples along the first axis (e.g. in-distribution scores).
      sample_b: second sample (e.g. OOD scores).
      num_resamples: number of bootstrap resamples.
      confidence: interval coverage, e.g. 0.95.
      seed: seed of the resampling.

    Returns:
      ``(estimate, low, high)``: the metric on the full samples and the interval's ends.

    >>> diff = lambda a, b: float(np.mean(a) - np.mean(b))
    >>> est, low, high = bootstrap_ci_two_sample(diff, np.arange(10.0), np.arange(20.0))
    >>> est, bool(low < est < high)
    (-5.0, True)
    """
    _check_interval_args(num_resamples, confidence)
    a = _as_sample(sample_a, "sample_a")
    b = _as_sample(sample_b, "sample_b")
    estimate = float(metric_fn(a, b))

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return a[rng.integers(0, len(a), size=len(a))], b[rng.integers(0, len(b), size=len(b))]

    return (estimate, *_percentile_interval(metric_fn, draw, num_resamples, confidence, seed))


def aggregate_seeds(values: Sequence[float] | ArrayLike, confidence: float = 0.95) -> dict:
    """Mean, standard deviation and t-interval of a metric over independent seeds.

    ``ci = mean +- t_{(1+confidence)/2, n-1} * std / sqrt(n)`` with the sample standard
    deviation (``ddof=1``). With one value the spread is unknown: std and the interval's
    ends are NaN.

    Args:
      values: the metric from each seed, finite.
      confidence: interval coverage, 0.95 by default.

    Returns:
      ``{"mean", "std", "ci_low", "ci_high", "n"}``; ``n`` is an int, the rest floats.

    >>> out = aggregate_seeds([1.0, 2.0, 3.0])
    >>> out["mean"], out["std"], round(out["ci_high"], 4)
    (2.0, 1.0, 4.4841)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"expected confidence in (0, 1), got {confidence}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"expected a non-empty 1-D list of values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"expected finite values, got {v.tolist()}")
    n = int(v.size)
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 1}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}
