"""Selective classification with a guaranteed risk: a threshold on any confidence score.

Given a labelled calibration split (a score per example and whether the prediction was
right), a target selective risk ``r*`` and a confidence ``1 - δ``, each method returns a
threshold such that accepting ``score >= threshold`` on new examples from the same
distribution has an error rate among the accepted of at most ``r*``, with probability
at least ``1 - δ`` over the draw of the calibration split. When no threshold can be
certified the result rejects everything (threshold ``+inf``, coverage 0).

* `sgr`: Selection with Guaranteed Risk (Geifman & El-Yaniv, "Selective
  Classification for Deep Neural Networks", NeurIPS 2017, Algorithm 1): a binary
  search over the sorted calibration scores with the binomial tail bound
  `binomial_upper_bound` at ``δ / ⌈log₂ m⌉`` per step.
* `ltt`: Learn then Test (Angelopoulos, Bates, Candès, Jordan & Lei, 2021): a
  Hoeffding–Bentkus p-value (`hoeffding_bentkus_p_value`) for "selective risk > r*" at
  each threshold of a grid, tested in a fixed sequence from the highest threshold down.

`repeated_splits` measures either on one set of examples: random calibration/test
splits, and how often the test risk stayed ≤ r*.

Scores are oriented as everywhere in `tac_jax.metrics`: higher means "more likely
correct"; calibration scores must be finite (map NaN/±inf first, e.g. with
`tac_jax.evaluate.reporting.tables.finite`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from tac_jax.metrics.ood import as_binary, as_scores, check_same_length

METHODS = ("sgr", "ltt")
LTT_GRID = 100


class ThresholdResult(NamedTuple):
    """A calibrated threshold: accept ``score >= threshold`` (`accept`).

    Attributes:
      threshold: the threshold; ``+inf`` accepts nothing.
      coverage: the accepted fraction of the calibration split.
      risk: the error rate among the accepted calibration examples (0 if none).
      accepted: how many calibration examples were accepted.
      bound: SGR's upper confidence bound on the selective risk at this threshold (NaN
        for LTT, and when nothing is accepted).
      p_value: LTT's p-value of "selective risk > r*" at this threshold (NaN for SGR,
        and when nothing is accepted).
      method: ``"sgr"`` or ``"ltt"``.
    """

    threshold: float
    coverage: float
    risk: float
    accepted: int
    bound: float
    p_value: float
    method: str


class SplitSummary(NamedTuple):
    """`repeated_splits`' measurements on the test part of each split.

    Attributes:
      coverage_mean, coverage_std: the accepted fraction of the test part.
      risk_mean, risk_std: the error rate among the accepted test examples (0 where
        nothing was accepted).
      held_fraction: the fraction of splits whose test risk was ≤ r*.
      rejected_fraction: the fraction of splits whose calibration rejected everything.
      splits: the number of splits.
    """

    coverage_mean: float
    coverage_std: float
    risk_mean: float
    risk_std: float
    held_fraction: float
    rejected_fraction: float
    splits: int


def _check_level(value: float, name: str) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"expected {name} in (0, 1), got {value}")
    return value


def _check_counts(errors: ArrayLike, n: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    k, m = np.asarray(errors), np.asarray(n)
    for name, a in (("errors", k), ("n", m)):
        if not (np.issubdtype(a.dtype, np.integer) or np.all(a == np.floor(a))):
            raise ValueError(f"expected integer {name}, got {a.tolist()}")
    if np.any(k < 0) or np.any(k > m):
        raise ValueError(f"expected 0 <= errors <= n, got errors {k.tolist()} and n {m.tolist()}")
    return k.astype(np.int64), m.astype(np.int64)


def binomial_upper_bound(errors: int, n: int, delta: float) -> float:
    """The largest risk ``r`` with ``P(Binomial(n, r) <= errors) >= δ``.

    The one-sided Clopper–Pearson upper bound: if ``errors`` is a Binomial(n, r) count,
    ``r`` is at most this with probability at least ``1 - δ``. It is Geifman & El-Yaniv's
    ``B*(r̂, δ, S_m)`` (their Lemma 3.1, after Gascuel & Caraux 1992), solved in closed
    form: ``P(Binomial(n, r) <= k) = P(Beta(k + 1, n - k) > r)``, so the bound is the
    Beta(k + 1, n - k) quantile at ``1 - δ`` (and 1 when ``k = n``).

    Args:
      errors: ``k``, the observed errors, ``0 <= k <= n``.
      n: the number of trials, ``n >= 1``.
      delta: ``δ`` in (0, 1).

    Returns:
      The bound in ``[k / n, 1]``.

    >>> round(binomial_upper_bound(0, 10, 0.05), 4)  # 1 - 0.05 ** (1 / 10)
    0.2589
    >>> binomial_upper_bound(3, 3, 0.1)
    1.0
    """
    delta = _check_level(delta, "delta")
    k, m = _check_counts(errors, n)
    if k.ndim or m.ndim:
        raise ValueError(f"expected scalar errors and n, got shapes {k.shape} and {m.shape}")
    if int(m) < 1:
        raise ValueError(f"expected n >= 1, got {int(m)}")
    return _bound(int(k), int(m), delta)


def _bound(k: int, n: int, delta: float) -> float:
    # betainccinv(a, b, δ) = Beta(a, b).isf(δ), without scipy.stats' per-call overhead.
    return 1.0 if k == n else float(special.betainccinv(k + 1, n - k, delta))


def hoeffding_bentkus_p_value(errors: ArrayLike, n: ArrayLike, risk: float) -> np.ndarray:
    """Learn-then-Test's Hoeffding–Bentkus p-value of ``H0: risk > r*`` for a 0/1 loss.

    ``p = min(exp(-n h1(min(r̂, r*), r*)), e · P(Binomial(n, r*) <= k))`` with
    ``r̂ = k / n`` and ``h1(a, b) = a log(a/b) + (1 - a) log((1 - a)/(1 - b))``
    (Angelopoulos et al. 2021, the Hoeffding–Bentkus p-value; the Bentkus term of a
    binary loss is the binomial tail). The errors are counted exactly (``k``), not
    recovered as ``ceil(n · r̂)``. ``n = 0`` gives 1 (no evidence).

    Args:
      errors: ``(…)`` error counts ``k``.
      n: ``(…)`` trial counts, ``n >= k``.
      risk: ``r*`` in (0, 1).

    Returns:
      ``(…)`` p-values in (0, 1].

    >>> hoeffding_bentkus_p_value([0, 0], [0, 50], 0.1).round(4).tolist()  # (1 - 0.1) ** 50
    [1.0, 0.0052]
    """
    alpha = _check_level(risk, "risk")
    k, m = _check_counts(errors, n)
    k, m = np.broadcast_arrays(k, m)
    safe = np.maximum(m, 1)
    a = np.minimum(k / safe, alpha)
    h1 = special.xlogy(a, a / alpha) + special.xlogy(1.0 - a, (1.0 - a) / (1.0 - alpha))
    hoeffding = np.exp(-m * h1)
    bentkus = math.e * stats.binom.cdf(k, m, alpha)
    return np.where(m > 0, np.minimum(1.0, np.minimum(hoeffding, bentkus)), 1.0)


def _calibration(scores: ArrayLike, correct: ArrayLike, risk: float, delta: float):
    s = as_scores(scores, "scores")
    c = as_binary(correct, "correct")
    check_same_length(scores=s, correct=c)
    return s, c, _check_level(risk, "risk"), _check_level(delta, "delta")


class _Tails:
    """Accepted and error counts of ``score >= t`` for any calibration score ``t``."""

    def __init__(self, scores: np.ndarray, correct: np.ndarray):
        order = np.argsort(scores)  # tie order is irrelevant: counts span whole groups
        self.sorted = scores[order]
        # errors_from[i]: errors among sorted positions i..m-1; errors_from[m] = 0.
        wrong = (~correct[order]).astype(np.int64)
        self.errors_from = np.r_[np.cumsum(wrong[::-1])[::-1], 0]
        self.m = scores.size

    def counts(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.searchsorted(self.sorted, thresholds, side="left")
        return self.m - first, self.errors_from[first]


def _result(threshold, accepted, errors, m, method, bound=math.nan, p_value=math.nan):
    accepted, errors = int(accepted), int(errors)
    return ThresholdResult(
        threshold=float(threshold),
        coverage=accepted / m,
        risk=errors / accepted if accepted else 0.0,
        accepted=accepted,
        bound=float(bound),
        p_value=float(p_value),
        method=method,
    )


def _reject_all(m: int, method: str) -> ThresholdResult:
    return _result(math.inf, 0, 0, m, method)


def sgr(scores: ArrayLike, correct: ArrayLike, risk: float, delta: float) -> ThresholdResult:
    """Selection with Guaranteed Risk (Geifman & El-Yaniv, NeurIPS 2017, Algorithm 1).

    With the calibration scores sorted ascending, ``s_1 <= … <= s_m``, and
    ``k = ⌈log₂ m⌉``: ``z_min = 1, z_max = m``; ``k`` times, ``z = ⌈(z_min + z_max)/2⌉``,
    ``θ = s_z``, ``r̂`` the error rate among the examples with score ``>= θ`` (``n`` of
    them, ``e`` errors) and ``b* = binomial_upper_bound(e, n, δ / k)``; if
    ``b* <= r*`` then ``z_max = z`` (try more coverage) else ``z_min = z``. Each of the
    ``k`` evaluated thresholds holds its bound with probability ``1 - δ/k``, so all hold
    together with probability ``1 - δ`` (Bonferroni), whichever is returned.

    Deviations from the paper, none of which weakens the guarantee:

    * the paper outputs the last evaluated threshold and its bound, which may exceed
      ``r*``; here the result is the evaluated threshold with ``b* <= r*`` of largest
      coverage (the final ``z_max``), and "reject everything" if none qualified;
    * the paper tests ``b* < r*``, the authors' code ``b* <= r*``; this follows the code;
    * ties: ``r̂`` and ``n`` count every example with score ``>= θ`` (the paper's
      ``r̂(f, g_i | S_m)``), where the authors' code counts sorted positions ``z..m``;
    * ``m = 1`` runs one step (``⌈log₂ 1⌉ = 0`` would run none).

    As in the paper, ``z = 1`` (accepting every example) is never evaluated, so the
    coverage is at most that of ``θ = s_2``.

    Args:
      scores: ``(m,)`` finite calibration scores, higher = more likely correct.
      correct: ``(m,)`` bool or 0/1, whether each prediction was right.
      risk: the target selective risk ``r*`` in (0, 1).
      delta: ``δ`` in (0, 1): the guarantee holds with probability ``>= 1 - δ``.

    Returns:
      `ThresholdResult` with ``bound = b*`` (``method="sgr"``).

    >>> s = np.arange(20.0)
    >>> out = sgr(s, s >= 2, risk=0.5, delta=0.1)  # errors at the two lowest scores
    >>> out.threshold, out.coverage, out.accepted, round(out.bound, 4)
    (1.0, 0.95, 19, 0.2707)
    """
    s, c, r_star, delta = _calibration(scores, correct, risk, delta)
    m = s.size
    tails = _Tails(s, c)
    steps = max(1, (m - 1).bit_length())  # ⌈log₂ m⌉ without floating point
    z_min, z_max = 1, m
    best = None
    for _ in range(steps):
        z = (z_min + z_max + 1) // 2
        theta = tails.sorted[z - 1]
        (n,), (e,) = tails.counts(np.array([theta]))
        bound = _bound(int(e), int(n), delta / steps)
        if bound <= r_star:
            z_max = z
            best = _result(theta, n, e, m, "sgr", bound=bound)
        else:
            z_min = z
    return best if best is not None else _reject_all(m, "sgr")


def ltt_grid(scores: ArrayLike, risk: float, delta: float, size: int = LTT_GRID) -> np.ndarray:
    """Learn-then-Test's default thresholds, highest (most conservative) first.

    The ``j``-th highest calibration score for ``size`` counts ``j`` evenly spaced from
    ``n_min`` to ``m`` (each threshold accepts at least ``j`` examples), where
    ``n_min = ⌈log δ / log(1 - r*)⌉`` is the fewest accepted examples whose p-value can
    reach ``δ`` (none of them wrong): a threshold above that could never be rejected and
    would stop the fixed sequence at once. Empty when ``n_min > m``.

    >>> ltt_grid(np.arange(100.0), risk=0.1, delta=0.1, size=3).tolist()  # n_min = 22
    [78.0, 39.0, 0.0]
    """
    s = as_scores(scores, "scores")
    alpha, delta = _check_level(risk, "risk"), _check_level(delta, "delta")
    if size < 1:
        raise ValueError(f"expected a grid size >= 1, got {size}")
    return _grid(np.sort(s), alpha, delta, size)


def _grid(ascending: np.ndarray, alpha: float, delta: float, size: int) -> np.ndarray:
    m = ascending.size
    n_min = max(1, math.ceil(math.log(delta) / math.log1p(-alpha) - 1e-9))
    if n_min > m:
        return np.empty(0)
    counts = np.ceil(np.linspace(n_min, m, size) - 1e-9).astype(np.int64)
    return np.unique(ascending[m - counts])[::-1]


def ltt(
    scores: ArrayLike,
    correct: ArrayLike,
    risk: float,
    delta: float,
    grid: ArrayLike | None = None,
) -> ThresholdResult:
    """Learn then Test (Angelopoulos et al., 2021) for the selective risk.

    For each threshold ``λ`` of the grid, from the highest down, the null hypothesis
    ``H_λ: P(wrong | score >= λ) > r*`` gets the Hoeffding–Bentkus p-value of the
    ``k`` errors among the ``n_λ`` accepted calibration examples
    (`hoeffding_bentkus_p_value`). Fixed-sequence testing rejects ``H_λ`` while
    ``p <= δ`` and stops at the first ``p > δ``; every rejected threshold controls the
    selective risk (family-wise error ``<= δ``), and the lowest is returned.

    The selective risk is handled as in the paper's selective-classification example
    (its ``pfdr`` experiments): conditionally on acceptance, with ``n = n_λ``. Given
    which calibration examples score ``>= λ``, their errors are independent
    Bernoulli(``R(λ)``), so a p-value valid for a Binomial(n_λ, R(λ)) count is valid
    conditionally, hence unconditionally. (Their code drops thresholds with ``n_λ < 25``;
    the default grid instead starts at the fewest accepted examples that can reject.)
    A 0/1 loss would also allow the plain binomial p-value ``P(Binomial(n, r*) <= k)``,
    smaller by up to the factor ``e``; this follows the Hoeffding–Bentkus choice.

    The default grid (`ltt_grid`) is made of calibration scores, so, as for SGR's
    candidates, each threshold is itself an order statistic of the data: the argument
    above holds up to the example at the threshold. Pass a ``grid`` fixed in advance
    (e.g. ``np.linspace(0, 1, 100)`` for a probability) for the textbook guarantee.

    Args:
      scores: ``(m,)`` finite calibration scores, higher = more likely correct.
      correct: ``(m,)`` bool or 0/1, whether each prediction was right.
      risk: the target selective risk ``r*`` in (0, 1).
      delta: ``δ`` in (0, 1).
      grid: the thresholds (any order: tested from the highest); default `ltt_grid`.

    Returns:
      `ThresholdResult` with the p-value at the returned threshold (``method="ltt"``).

    >>> s = np.arange(100.0)
    >>> ltt(s, s >= 20, risk=0.2, delta=0.1).threshold  # 20 errors at the lowest scores
    9.0
    """
    s, c, alpha, delta = _calibration(scores, correct, risk, delta)
    m = s.size
    tails = _Tails(s, c)
    if grid is None:
        lambdas = _grid(tails.sorted, alpha, delta, LTT_GRID)
    else:
        lambdas = np.unique(as_scores(grid, "grid"))[::-1]
    if lambdas.size == 0:
        return _reject_all(m, "ltt")
    n, e = tails.counts(lambdas)
    p = hoeffding_bentkus_p_value(e, n, alpha)
    failed = np.flatnonzero(p > delta)
    rejected = lambdas.size if failed.size == 0 else int(failed[0])
    if rejected == 0:
        return _reject_all(m, "ltt")
    j = rejected - 1
    return _result(lambdas[j], n[j], e[j], m, "ltt", p_value=p[j])


def check_guarantee(risk: float, delta: float, method: str = "sgr") -> tuple[float, float]:
    """Checks a target before any work: ``0 < r* < 1``, ``0 < δ < 1``, a known method.

    Returns:
      ``(risk, delta)`` as floats.

    Raises:
      ValueError: one sentence naming what was expected and what was given.

    >>> check_guarantee(0.05, 0.1, "ltt")
    (0.05, 0.1)
    """
    if method not in METHODS:
        raise ValueError(f"expected method in {METHODS}, got {method!r}")
    return _check_level(risk, "risk"), _check_level(delta, "delta")


def calibrate(
    scores: ArrayLike, correct: ArrayLike, risk: float, delta: float, method: str = "sgr"
) -> ThresholdResult:
    """`sgr` or `ltt` by name (``method`` in `METHODS`).

    >>> s = np.arange(20.0)
    >>> calibrate(s, s >= 2, 0.5, 0.1, "sgr").threshold
    1.0
    """
    if method == "sgr":
        return sgr(scores, correct, risk, delta)
    if method == "ltt":
        return ltt(scores, correct, risk, delta)
    raise ValueError(f"expected method in {METHODS}, got {method!r}")


def accept(scores: ArrayLike, threshold: float) -> np.ndarray:
    """Which examples a calibrated threshold accepts: ``score >= threshold``.

    A threshold of ``+inf`` ("reject everything") accepts nothing, not even a score of
    ``+inf``; a NaN score is never accepted.

    >>> accept([0.2, 0.5, np.nan, np.inf], 0.5).tolist()
    [False, True, False, True]
    >>> accept([np.inf], np.inf).tolist()
    [False]
    """
    s = np.asarray(scores, np.float64)
    if math.isnan(threshold):
        raise ValueError("expected a threshold that is a number or +inf, got NaN")
    if threshold == math.inf:
        return np.zeros(s.shape, bool)
    return s >= threshold


def repeated_splits(
    scores: ArrayLike,
    correct: ArrayLike,
    risk: float,
    delta: float,
    method: str = "sgr",
    *,
    splits: int = 100,
    calibration_fraction: float = 0.5,
    seed: int = 0,
) -> SplitSummary:
    """How a method does on fresh data: calibrate on a random part, measure on the rest.

    Each split permutes the examples (``numpy.random.default_rng(seed)``), calibrates on
    the first ``round(calibration_fraction · n)`` and measures the coverage and the
    selective risk of the threshold on the others. A split whose threshold accepts no
    test example counts as risk 0 and coverage 0 (it cannot err), so it "holds".

    The test risk is measured on a finite test part, so it scatters around the true
    selective risk: the fraction of splits with test risk ``<= r*`` can fall below
    ``1 - δ`` even when the guarantee holds, if the true risk is close to ``r*``.

    Args:
      scores: ``(n,)`` finite scores, higher = more likely correct.
      correct: ``(n,)`` bool or 0/1.
      risk: ``r*`` in (0, 1).
      delta: ``δ`` in (0, 1).
      method: ``"sgr"`` or ``"ltt"``.
      splits: the number of random splits, ``>= 1``.
      calibration_fraction: the calibrated part, in (0, 1); both parts non-empty.
      seed: the permutations' seed.

    Returns:
      `SplitSummary`.

    >>> s = np.linspace(0, 1, 400)
    >>> out = repeated_splits(s, s > 0.1, 0.1, 0.1, splits=5)
    >>> out.held_fraction, out.splits
    (1.0, 5)
    """
    check_guarantee(risk, delta, method)
    s, c, r_star, delta = _calibration(scores, correct, risk, delta)
    if splits < 1:
        raise ValueError(f"expected splits >= 1, got {splits}")
    fraction = _check_level(calibration_fraction, "calibration_fraction")
    n_cal = round(fraction * s.size)
    if not 0 < n_cal < s.size:
        raise ValueError(
            f"expected a calibration_fraction leaving both parts non-empty, got "
            f"{calibration_fraction} of {s.size} examples"
        )
    rng = np.random.default_rng(seed)
    coverage, risks, rejected = np.zeros(splits), np.zeros(splits), np.zeros(splits, bool)
    for i in range(splits):
        perm = rng.permutation(s.size)
        cal, test = perm[:n_cal], perm[n_cal:]
        result = calibrate(s[cal], c[cal], r_star, delta, method)
        taken = accept(s[test], result.threshold)
        rejected[i] = result.accepted == 0
        coverage[i] = taken.mean()
        risks[i] = (~c[test][taken]).mean() if taken.any() else 0.0
    return SplitSummary(
        coverage_mean=float(coverage.mean()),
        coverage_std=float(coverage.std()),
        risk_mean=float(risks.mean()),
        risk_std=float(risks.std()),
        held_fraction=float(np.mean(risks <= r_star)),
        rejected_fraction=float(rejected.mean()),
        splits=int(splits),
    )


__all__ = [
    "LTT_GRID",
    "METHODS",
    "SplitSummary",
    "ThresholdResult",
    "accept",
    "binomial_upper_bound",
    "calibrate",
    "check_guarantee",
    "hoeffding_bentkus_p_value",
    "ltt",
    "ltt_grid",
    "repeated_splits",
    "sgr",
]
