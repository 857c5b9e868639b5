"""The value of a classifier allowed to reject or defer (METHODS §1).

Per example, with costs ``r, c_err, c_rej, c_def``:

- accepted and correct: ``+r``; accepted and wrong: ``-c_err``;
- rejected: ``-c_rej``; or, when deferring to a fallback (``fallback_correct`` given), the
  fallback's outcome instead, ``+r`` if it is right and ``-c_err`` if wrong, minus ``c_def``.

An example is accepted when its confidence score is ``>= threshold``. The value of a
score is the mean per-example value on test at the threshold that maximises it on a
separate validation split. Defaults: ``r = 1, c_err = 1, c_rej = 0, c_def = 0``; sweep
``c_err`` (e.g. 1..10) with `value_curve`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from tac_jax.metrics.ood import as_binary, as_scores, check_same_length

# Relative slack when comparing candidate values, so float rounding in cumulative sums
# does not decide between thresholds that are equally good.
_TIE_RTOL = 1e-12


@dataclasses.dataclass(frozen=True)
class Costs:
    """Reward and costs of the reject/defer value; all non-negative and finite.

    Attributes:
      r: reward for an accepted correct prediction (or a correct fallback).
      c_err: cost of an accepted wrong prediction (or a wrong fallback).
      c_rej: cost of rejecting an example (used without a fallback).
      c_def: cost of deferring an example to the fallback (used with a fallback).
    """

    r: float = 1.0
    c_err: float = 1.0
    c_rej: float = 0.0
    c_def: float = 0.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(
                value, bool
            ):
                raise ValueError(f"expected Costs.{field.name} to be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"expected Costs.{field.name} to be finite and non-negative, got {value}"
                )


_DEFAULT_COSTS = Costs()


def _outcomes(
    correct: np.ndarray, costs: Costs, fallback_correct: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example value if accepted and if rejected."""
    accept = np.where(correct, float(costs.r), -float(costs.c_err))
    if fallback_correct is None:
        reject = np.full(correct.shape, -float(costs.c_rej))
    else:
        reject = np.where(fallback_correct, float(costs.r), -float(costs.c_err)) - costs.c_def
    return accept, reject


def _split(
    scores: ArrayLike, correct: ArrayLike, fallback_correct: ArrayLike | None, prefix: str = ""
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    s = as_scores(scores, f"{prefix}scores")
    c = as_binary(correct, f"{prefix}correct")
    arrays = {f"{prefix}scores": s, f"{prefix}correct": c}
    fb = None
    if fallback_correct is not None:
        fb = as_binary(fallback_correct, f"{prefix}fallback_correct")
        arrays[f"{prefix}fallback_correct"] = fb
    check_same_length(**arrays)
    return s, c, fb


def _search(scores: np.ndarray, accept: np.ndarray, reject: np.ndarray) -> tuple[float, float]:
    """Best threshold over -inf, every distinct score and +inf; lowest threshold on ties."""
    order = np.argsort(-scores)
    s = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    base = reject.sum()
    # Mean value when accepting the top groups, for ascending thresholds.
    totals = base + np.cumsum((accept - reject)[order])[ends]
    values = np.r_[totals[-1], totals[::-1], base] / s.size
    thresholds = np.r_[-np.inf, s[ends][::-1], np.inf]
    best = values.max()
    i = int(np.flatnonzero(values >= best - _TIE_RTOL * max(1.0, abs(best)))[0])
    return float(thresholds[i]), float(values[i])


def _report(
    scores: np.ndarray,
    correct: np.ndarray,
    accept: np.ndarray,
    reject: np.ndarray,
    threshold: float,
    can_accept: np.ndarray | None = None,
) -> dict[str, float]:
    accepted = scores >= threshold
    if can_accept is not None:
        accepted &= can_accept
    return {
        "threshold": float(threshold),
        "value": float(np.mean(np.where(accepted, accept, reject))),
        "coverage": float(np.mean(accepted)),
        "accuracy_accepted": float(np.mean(correct[accepted])) if accepted.any() else math.nan,
    }


def value_at_threshold(
    scores: ArrayLike,
    correct: ArrayLike,
    threshold: float,
    costs: Costs = _DEFAULT_COSTS,
    fallback_correct: ArrayLike | None = None,
) -> float:
    """Mean per-example value when accepting every example with ``score >= threshold``.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether the accepted prediction would be right.
      threshold: acceptance threshold; ``-inf`` accepts all, ``inf`` rejects all.
      costs: reward and costs.
      fallback_correct: 1-D bool or 0/1, whether the fallback is right on each example;
        given, rejected examples are deferred to it, else they cost ``c_rej``.

    Returns:
      The mean value per example.

    >>> value_at_threshold([0.9, 0.7, 0.4, 0.2], [1, 0, 1, 0], 0.5, Costs(c_err=3.0))
    -0.5
    """
    s, c, fb = _split(scores, correct, fallback_correct)
    if math.isnan(threshold):
        raise ValueError(f"expected a threshold that is a number or +-inf, got {threshold}")
    accept, reject = _outcomes(c, costs, fb)
    return float(np.mean(np.where(s >= threshold, accept, reject)))


def best_threshold(
    scores: ArrayLike,
    correct: ArrayLike,
    costs: Costs = _DEFAULT_COSTS,
    fallback_correct: ArrayLike | None = None,
) -> tuple[float, float]:
    """The threshold maximising the mean value on these (validation) examples.

    Candidates are ``-inf`` (accept all), every distinct score, and ``inf`` (reject all).
    Among equally good candidates the lowest threshold (the largest coverage) wins, so an
    accept-all choice is returned as ``-inf`` and carries over to unseen scores.

    Args:
      scores: 1-D confidence scores, higher meaning "more likely correct".
      correct: 1-D bool or 0/1, whether the accepted prediction would be right.
      costs: reward and costs.
      fallback_correct: optional 1-D fallback correctness (deferral), as in
        `value_at_threshold`.

    Returns:
      ``(threshold, value)``: the chosen threshold and its mean value on these examples.

    >>> best_threshold([0.9, 0.7, 0.4, 0.2], [1, 1, 0, 0])
    (0.7, 0.5)
    """
    s, c, fb = _split(scores, correct, fallback_correct)
    return _search(s, *_outcomes(c, costs, fb))


def _selective(
    val: tuple[ArrayLike, ArrayLike, ArrayLike | None],
    test: tuple[ArrayLike, ArrayLike, ArrayLike | None],
    costs: Costs,
    val_can_accept: np.ndarray | None = None,
    test_can_accept: np.ndarray | None = None,
) -> dict[str, float]:
    if (val[2] is None) != (test[2] is None):
        raise ValueError(
            "expected fallback correctness for both val and test or for neither, got it for "
            + ("val only" if test[2] is None else "test only")
        )
    v_s, v_c, v_fb = _split(*val, prefix="val_")
    t_s, t_c, t_fb = _split(*test, prefix="test_")
    v_acc, v_rej = _outcomes(v_c, costs, v_fb)
    if val_can_accept is not None:
        # Examples that may never be accepted do not depend on the threshold.
        v_acc = np.where(val_can_accept, v_acc, v_rej)
    threshold, _ = _search(v_s, v_acc, v_rej)
    t_acc, t_rej = _outcomes(t_c, costs, t_fb)
    return _report(t_s, t_c, t_acc, t_rej, threshold, test_can_accept)


def selective_value(
    val_scores: ArrayLike,
    val_correct: ArrayLike,
    test_scores: ArrayLike,
    test_correct: ArrayLike,
    costs: Costs = _DEFAULT_COSTS,
    *,
    val_fallback_correct: ArrayLike | None = None,
    test_fallback_correct: ArrayLike | None = None,
) -> dict[str, float]:
    """Value on test at the threshold chosen on validation by `best_threshold`.

    Args:
      val_scores: 1-D validation confidence scores.
      val_correct: 1-D validation correctness of the prediction being gated.
      test_scores: 1-D test confidence scores.
      test_correct: 1-D test correctness.
      costs: reward and costs.
      val_fallback_correct: fallback correctness on validation, for deferral.
      test_fallback_correct: fallback correctness on test; give both or neither.

    Returns:
      ``{"threshold", "value", "coverage", "accuracy_accepted"}`` on test; coverage is the
      accepted fraction and ``accuracy_accepted`` is NaN when nothing is accepted.

    >>> selective_value([0.9, 0.7, 0.4, 0.2], [1, 1, 0, 0], [0.8, 0.6], [1, 0])["value"]
    0.5
    """
    return _selective(
        (val_scores, val_correct, val_fallback_correct),
        (test_scores, test_correct, test_fallback_correct),
        costs,
    )


def value_curve(
    val_scores: ArrayLike,
    val_correct: ArrayLike,
    test_scores: ArrayLike,
    test_correct: ArrayLike,
    c_err_grid: Sequence[float] | ArrayLike,
    costs: Costs = _DEFAULT_COSTS,
    *,
    val_fallback_correct: ArrayLike | None = None,
    test_fallback_correct: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """`selective_value` for each error cost in ``c_err_grid``, other costs from ``costs``.

    Args:
      val_scores: 1-D validation confidence scores.
      val_correct: 1-D validation correctness.
      test_scores: 1-D test confidence scores.
      test_correct: 1-D test correctness.
      c_err_grid: 1-D non-negative error costs, e.g. ``[1, 2, 5, 10]``.
      costs: ``r``, ``c_rej`` and ``c_def`` (its ``c_err`` is replaced by the grid).
      val_fallback_correct: fallback correctness on validation, for deferral.
      test_fallback_correct: fallback correctness on test; give both or neither.

    Returns:
      ``{"c_err", "threshold", "value", "coverage", "accuracy_accepted"}``, each a 1-D
      float64 array aligned with ``c_err_grid``.

    >>> curve = value_curve([0.9, 0.5, 0.1], [1, 0, 1], [0.95, 0.3], [1, 1], [0.5, 2.0])
    >>> curve["threshold"].tolist(), curve["value"].tolist()
    ([-inf, 0.9], [1.0, 0.5])
    """
    grid = as_scores(c_err_grid, "c_err_grid")
    rows = [
        selective_value(
            val_scores,
            val_correct,
            test_scores,
            test_correct,
            dataclasses.replace(costs, c_err=float(c_err)),
            val_fallback_correct=val_fallback_correct,
            test_fallback_correct=test_fallback_correct,
        )
        for c_err in grid
    ]
    out = {"c_err": grid}
    for key in ("threshold", "value", "coverage", "accuracy_accepted"):
        out[key] = np.array([row[key] for row in rows], dtype=np.float64)
    return out


def _as_predictions(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"expected {name} to be a non-empty 1-D array, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"expected {name} to hold integer class indices, got dtype {a.dtype}")
    return a


def _correct(pred: ArrayLike, labels: ArrayLike, prefix: str) -> np.ndarray:
    p = _as_predictions(pred, f"{prefix}pred")
    y = _as_predictions(labels, f"{prefix}labels")
    check_same_length(**{f"{prefix}pred": p, f"{prefix}labels": y})
    return p == y


def gated_policy(
    val_scores: ArrayLike,
    val_pred: ArrayLike,
    val_labels: ArrayLike,
    test_scores: ArrayLike,
    test_pred: ArrayLike,
    test_labels: ArrayLike,
    costs: Costs = _DEFAULT_COSTS,
    *,
    val_fallback_correct: ArrayLike | None = None,
    test_fallback_correct: ArrayLike | None = None,
) -> dict[str, float]:
    """One head's prediction, accepted when a confidence score clears a threshold.

    The confidence may come from any score (the head's own, TAC's, ...); this is
    `selective_value` with ``correct = pred == labels``.

    Args:
      val_scores: 1-D validation confidence scores.
      val_pred: 1-D integer validation predictions of the gated head.
      val_labels: 1-D integer validation labels.
      test_scores: 1-D test confidence scores.
      test_pred: 1-D integer test predictions.
      test_labels: 1-D integer test labels.
      costs: reward and costs.
      val_fallback_correct: fallback correctness on validation, for deferral.
      test_fallback_correct: fallback correctness on test; give both or neither.

    Returns:
      As `selective_value`.

    >>> gated_policy([0.9, 0.2], [3, 1], [3, 2], [0.95, 0.1], [0, 0], [0, 1])["coverage"]
    0.5
    """
    return selective_value(
        val_scores,
        _correct(val_pred, val_labels, "val_"),
        test_scores,
        _correct(test_pred, test_labels, "test_"),
        costs,
        val_fallback_correct=val_fallback_correct,
        test_fallback_correct=test_fallback_correct,
    )


def disagreement_policy(
    val_scores: ArrayLike,
    val_base_pred: ArrayLike,
    val_tac_pred: ArrayLike,
    val_labels: ArrayLike,
    test_scores: ArrayLike,
    test_base_pred: ArrayLike,
    test_tac_pred: ArrayLike,
    test_labels: ArrayLike,
    costs: Costs = _DEFAULT_COSTS,
    *,
    on_disagreement: str = "tac",
    val_fallback_correct: ArrayLike | None = None,
    test_fallback_correct: ArrayLike | None = None,
) -> dict[str, float]:
    """A policy combining the base head and TAC's prediction, gated by a confidence.

    Definition, per example, with ``t`` the threshold chosen on validation:

    - base and TAC agree: predict the common class; accept if ``score >= t``, else reject.
    - they disagree and ``on_disagreement="tac"``: predict TAC's class; accept if
      ``score >= t``, else reject. Since TAC's class is also the common one where they
      agree, this policy equals `gated_policy` on TAC's predictions.
    - they disagree and ``on_disagreement="reject"``: always reject (or defer), treating
      disagreement itself as a sign of error; ``t`` then only gates the agreeing examples
      and is chosen with the disagreeing ones rejected.

    Args:
      val_scores: 1-D validation confidence scores (any score, e.g. TAC's).
      val_base_pred: 1-D integer validation predictions of the base head.
      val_tac_pred: 1-D integer validation predictions of TAC.
      val_labels: 1-D integer validation labels.
      test_scores: 1-D test confidence scores.
      test_base_pred: 1-D integer test predictions of the base head.
      test_tac_pred: 1-D integer test predictions of TAC.
      test_labels: 1-D integer test labels.
      costs: reward and costs.
      on_disagreement: ``"tac"`` or ``"reject"``, as above.
      val_fallback_correct: fallback correctness on validation, for deferral.
      test_fallback_correct: fallback correctness on test; give both or neither.

    Returns:
      As `selective_value`, plus ``"disagreement"``: the fraction of test examples on which
      the two predictions differ.

    >>> out = disagreement_policy(
    ...     [0.9, 0.8, 0.1], [0, 1, 2], [0, 2, 2], [0, 2, 2],
    ...     [0.9, 0.8], [1, 0], [1, 1], [1, 0], on_disagreement="reject")
    >>> out["coverage"], out["disagreement"]
    (0.5, 0.5)
    """
    if on_disagreement not in ("tac", "reject"):
        raise ValueError(f'expected on_disagreement "tac" or "reject", got {on_disagreement!r}')
    agree = {}
    correct = {}
    for prefix, base, tac, labels in (
        ("val_", val_base_pred, val_tac_pred, val_labels),
        ("test_", test_base_pred, test_tac_pred, test_labels),
    ):
        b = _as_predictions(base, f"{prefix}base_pred")
        t = _as_predictions(tac, f"{prefix}tac_pred")
        y = _as_predictions(labels, f"{prefix}labels")
        check_same_length(**{f"{prefix}base_pred": b, f"{prefix}tac_pred": t, f"{prefix}labels": y})
        agree[prefix], correct[prefix] = b == t, t == y
    gate = on_disagreement == "reject"
    out = _selective(
        (val_scores, correct["val_"], val_fallback_correct),
        (test_scores, correct["test_"], test_fallback_correct),
        costs,
        val_can_accept=agree["val_"] if gate else None,
        test_can_accept=agree["test_"] if gate else None,
    )
    out["disagreement"] = float(1.0 - np.mean(agree["test_"]))
    return out
