"""Misclassification detection and selective classification: risk-coverage, AURC, E-AURC,
AUGRC, E-AUGRC.

A selective classifier accepts the examples with the highest confidence scores and
rejects the rest. Risk is the error rate among the accepted, coverage the accepted
fraction. Tied scores are one group: a threshold accepts all of a group or none of it.
Where a metric asks for a coverage that falls inside a group (AURC, E-AURC, AUGRC,
accuracy at a coverage), the group is accepted in random order and the *expected* value
is reported, which is exact and needs no sampling: the expected number of errors among
the first ``j`` of a group of ``g`` with ``e`` errors is ``j * e / g``. Without ties this is the
usual per-example definition.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from tac_jax.metrics.ood import (
    as_binary,
    as_scores,
    binary_auroc,
    check_both_classes,
    check_same_length,
)


def _scores_and_correct(scores: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = as_scores(scores, "scores")
    c = as_binary(correct, "correct")
    check_same_length(scores=s, correct=c)
    return s, c


def _expected_errors(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Expected errors among the top ``k`` examples, for ``k = 1..n``.

    Within a tie group the cumulative error count is interpolated linearly between the
    group's ends: the expectation over random orderings of the group.
    """
    order = np.argsort(-scores)
    s, err = scores[order], (~correct[order]).astype(np.float64)
    n = s.size
    ends = np.r_[np.flatnonzero(np.diff(s)), n - 1]  # last index of each group
    starts = np.r_[0, ends[:-1] + 1]
    cum_at_end = np.cumsum(err)[ends]
    cum_before = np.r_[0.0, cum_at_end[:-1]]
    sizes = ends - starts + 1
    group = np.repeat(np.arange(ends.size), sizes)
    within = np.arange(n) - starts[group] + 1  # 1..g inside each group
    rate = (cum_at_end - cum_before) / sizes
    return cum_before[group] + within * rate[group]


def misclassification_auroc(scores: ArrayLike, correct: ArrayLike) -> float:
    """AUROC of separating correct (positive) from wrong predictions by score.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right; both values needed.

    Returns:
      `sklearn.metrics.roc_auc_score(correct, scores)`.

    >>> misclassification_auroc([0.9, 0.8, 0.3], [1, 0, 0])
    1.0
    """
    s, c = _scores_and_correct(scores, correct)
    check_both_classes(c, "correct")
    return binary_auroc(s, c)


def risk_coverage_curve(scores: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Selective risk against coverage, accepting the highest scores first.

    One point per distinct score: point ``i`` accepts every example whose score is at least
    the ``i``-th highest distinct score, so a tie group enters in one step. The curve starts
    at the first group (coverage > 0) and ends at coverage 1 with the overall error rate.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right.

    Returns:
      ``(coverage, risk)``, both 1-D float64 with coverage increasing to 1.

    >>> cov, risk = risk_coverage_curve([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])
    >>> cov.tolist(), risk.tolist()
    ([0.25, 0.75, 1.0], [0.0, 0.3333333333333333, 0.5])
    """
    s, c = _scores_and_correct(scores, correct)
    order = np.argsort(-s)
    ends = np.r_[np.flatnonzero(np.diff(s[order])), s.size - 1]
    accepted = ends + 1.0
    errors = np.cumsum(~c[order])[ends]
    return accepted / s.size, errors / accepted


def aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Area under the risk-coverage curve: mean selective risk over coverages ``k/n``.

    ``AURC = (1/n) sum_{k=1..n} errors(top k) / k``, with ties broken at random in
    expectation (see the module docstring). Lower is better.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right.

    Returns:
      AURC in [0, 1].

    >>> round(aurc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]), 6)
    0.333333
    """
    s, c = _scores_and_correct(scores, correct)
    k = np.arange(1, s.size + 1)
    return float(np.mean(_expected_errors(s, c) / k))


def _optimal_aurc(correct: np.ndarray) -> float:
    # A perfect ranking accepts every correct example before any wrong one.
    n, n_correct = correct.size, int(correct.sum())
    k = np.arange(n_correct + 1, n + 1)
    return float(np.sum((k - n_correct) / k) / n)


def e_aurc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Excess AURC: AURC minus that of a perfect ranking with the same accuracy.

    The optimum uses the same discrete sum as `aurc` (not its continuous approximation
    ``r + (1 - r) log(1 - r)``), so a perfect ranking scores exactly 0.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right.

    Returns:
      E-AURC >= 0; lower is better.

    >>> round(e_aurc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]), 6)
    0.125
    """
    s, c = _scores_and_correct(scores, correct)
    k = np.arange(1, s.size + 1)
    return float(np.mean(_expected_errors(s, c) / k)) - _optimal_aurc(c)


def augrc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Area under the generalized risk-coverage curve (Traub et al., NeurIPS 2024).

    The generalized risk at a threshold is the fraction of *all* examples that are
    accepted and wrong, ``errors(top k) / n`` at coverage ``k / n`` (AURC divides by the
    ``k`` accepted instead, which lets a few early errors dominate it). The curve runs
    from ``(0, 0)`` to ``(1, error rate)`` and is integrated by the trapezoidal rule, as
    the reference implementation (fd-shifts, IML-DKFZ) does:
    ``AUGRC = (1/n) sum_{k=1..n} (errors(top k-1) + errors(top k)) / (2n)``. (The
    right-endpoint sum of `aurc` would add ``err / (2n)`` here and put a perfect
    ranking above ``err² / 2``.)

    Ties: fd-shifts puts one curve point per distinct score and joins the points by
    straight lines; the expected error count inside a tie group (the module docstring)
    is that same line, so the two conventions give the same number. Values are on
    ``[0, 1]``, not fd-shifts' display scale of 1000.

    It is the probability that, of two examples drawn independently, the first is wrong
    and ranked above the second (a tie, drawing the same example included, counting
    half), which is ``err² / 2 + err · acc · (1 − AUROC)`` with the misclassification
    AUROC: lower is better, a perfect ranking scores `optimal_augrc` (``err² / 2``) and
    a random one ``err / 2`` in expectation.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right.

    Returns:
      AUGRC in [0, 1/2].

    Generalized risks at k = 1..4 are 0, 1/4, 1/4, 2/4; trapezoids of width 1/4:

    >>> augrc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])  # (0 + 1/8 + 1/4 + 3/8) / 4
    0.1875
    """
    s, c = _scores_and_correct(scores, correct)
    errors = _expected_errors(s, c)
    # sum_k (E_{k-1} + E_k) = 2 sum_k E_k - E_n, with E_0 = 0.
    return float((2.0 * errors.sum() - errors[-1]) / (2.0 * s.size * s.size))


def optimal_augrc(correct: ArrayLike) -> float:
    """The AUGRC of a perfect ranking (every right prediction before any wrong one):
    ``err² / 2`` with ``err`` the error rate.

    The trapezoidal sum of `augrc` gives exactly this over its ``m`` trailing errors,
    ``sum_{j=1..m} (2j - 1) / (2n²) = m² / (2n²)``, so the discrete optimum and the
    continuous one (fd-shifts' formula) agree and a perfect ranking's `e_augrc` is 0.

    Args:
      correct: 1-D bool or 0/1, whether each prediction was right.

    Returns:
      ``err² / 2`` in [0, 1/2].

    >>> optimal_augrc([1, 0, 1, 0])
    0.125
    """
    err = 1.0 - float(np.mean(as_binary(correct, "correct")))
    return 0.5 * err * err


def e_augrc(scores: ArrayLike, correct: ArrayLike) -> float:
    """Excess AUGRC: `augrc` minus `optimal_augrc`, what the ranking loses against a
    perfect one at the same accuracy (fd-shifts' ``e-augrc``); it equals
    ``err · acc · (1 − AUROC)``.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right.

    Returns:
      E-AUGRC >= 0; lower is better.

    >>> e_augrc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    0.0625
    """
    return augrc(scores, correct) - optimal_augrc(correct)


def accuracy_at_coverage(scores: ArrayLike, correct: ArrayLike, coverage: float) -> float:
    """Accuracy among the ``ceil(coverage * n)`` highest-scoring examples.

    If that cut falls inside a tie group, the group is accepted in random order and the
    expected accuracy is returned, so the accepted fraction is exactly the one asked for.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether each prediction was right.
      coverage: accepted fraction in (0, 1], e.g. 0.8, 0.9, 0.95.

    Returns:
      Accuracy in [0, 1] at that coverage.

    >>> accuracy_at_coverage([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 1], 0.5)
    1.0
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"expected coverage in (0, 1], got {coverage}")
    s, c = _scores_and_correct(scores, correct)
    # The tolerance keeps e.g. 0.9 * 10 = 9.000000000000002 from rounding up to 10.
    k = max(1, math.ceil(coverage * s.size - 1e-9))
    return float(1.0 - _expected_errors(s, c)[k - 1] / k)
