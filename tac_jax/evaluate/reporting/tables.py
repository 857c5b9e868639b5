"""Metric tables over a dict of scores: one row per score, the same metrics for each.

Pure functions of arrays (no model, no files): `evaluate_run` builds the report from
them, and tests check them against the metrics computed one by one. Every score is
oriented higher = more in-distribution / more likely correct (METHODS §5).

Bootstrap intervals of AUROC reuse the draws of `tac_jax.metrics.bootstrap_ci` and
`bootstrap_ci_two_sample` (same seed, same resampled indices, same percentile rule)
but compute each resample's AUROC from example multiplicities against one sort of the
full sample, which is linear rather than ``n log n`` per resample: the intervals are
the same numbers, hundreds of times faster on a suite of dozens of sets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.metrics import (
    Costs,
    accuracy_at_coverage,
    augrc,
    aurc,
    brier,
    disagreement_policy,
    e_aurc,
    ece,
    gated_policy,
    misclassification_auroc,
    nll,
    ood_metrics,
    value_curve,
)

COVERAGES = (0.8, 0.9, 0.95)
C_ERR_GRID = tuple(float(c) for c in range(1, 11))
# r = 1, c_rej = 0, c_def = 0; c_err is swept over C_ERR_GRID.
DEFAULT_COSTS = Costs()
# Non-finite scores are ranked below (NaN, −inf) or above (+inf) every finite one.
_EXTREME = 1e300


def finite(scores: np.ndarray) -> np.ndarray:
    """Scores as float64 with NaN and −inf at the bottom, +inf at the top of the ranking.

    The metrics reject non-finite values; mapping them to fixed extremes keeps every
    comparison between sets consistent (a NaN is "least confident").

    >>> finite(np.array([np.nan, 1.0, np.inf])).tolist()
    [-1e+300, 1.0, 1e+300]
    """
    s = np.asarray(scores, np.float64)
    return np.nan_to_num(s, nan=-_EXTREME, posinf=_EXTREME, neginf=-_EXTREME)


def non_finite_counts(scores: Mapping[str, np.ndarray]) -> dict[str, int]:
    """How many non-finite values each score has (only scores with some)."""
    counts = {name: int(np.sum(~np.isfinite(s))) for name, s in scores.items()}
    return {name: c for name, c in counts.items() if c}


# -- AUROC from multiplicities ------------------------------------------------------------


class _Ranker:
    """AUROC of positives over negatives with per-example multiplicities.

    ``AUROC = Σ_j w⁻_j (W⁺(s > s_j) + ½ W⁺(s = s_j)) / (Σ w⁺ · Σ w⁻)``, the
    Mann-Whitney statistic; the positives are sorted once and the negatives located
    among them once, so each weighting costs ``O(n)``.
    """

    def __init__(self, pos: np.ndarray, neg: np.ndarray):
        self.order = np.argsort(pos, kind="stable")
        ranked = pos[self.order]
        self.low = np.searchsorted(ranked, neg, side="left")
        self.high = np.searchsorted(ranked, neg, side="right")

    def auroc(self, w_pos: np.ndarray, w_neg: np.ndarray) -> float:
        cum = np.r_[0.0, np.cumsum(w_pos[self.order], dtype=np.float64)]
        greater = cum[-1] - cum[self.high]
        ties = cum[self.high] - cum[self.low]
        total = cum[-1] * float(np.sum(w_neg))
        return float(np.dot(w_neg, greater + 0.5 * ties) / total)


def _interval(values: list[float], confidence: float) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    low, high = np.quantile(np.asarray(values), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _check_resamples(num_resamples: int, confidence: float) -> None:
    if num_resamples < 1:
        raise ValueError(f"expected num_resamples >= 1, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"expected confidence in (0, 1), got {confidence}")


def bootstrap_auroc_ci(
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    num_resamples: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The interval of ``bootstrap_ci_two_sample(auroc, scores_in, scores_out, ...)``.

    Args:
      scores_in: 1-D in-distribution scores (finite).
      scores_out: 1-D OOD scores (finite).
      num_resamples: bootstrap resamples; each resamples both sets independently.
      confidence: interval coverage.
      seed: the resampling seed.

    Returns:
      ``(low, high)``.

    >>> low, high = bootstrap_auroc_ci(np.arange(10.0), np.arange(10.0) - 3, 50)
    >>> bool(low <= 0.79 <= high)
    True
    """
    _check_resamples(num_resamples, confidence)
    a, b = np.asarray(scores_in, np.float64), np.asarray(scores_out, np.float64)
    ranker = _Ranker(a, b)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_resamples):
        ia = rng.integers(0, len(a), size=len(a))
        ib = rng.integers(0, len(b), size=len(b))
        w_a = np.bincount(ia, minlength=len(a)).astype(np.float64)
        w_b = np.bincount(ib, minlength=len(b)).astype(np.float64)
        values.append(ranker.auroc(w_a, w_b))
    return _interval(values, confidence)


def bootstrap_misclassification_ci(
    scores: np.ndarray,
    correct: np.ndarray,
    num_resamples: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The interval of ``bootstrap_ci(misclassification_auroc, scores, correct, ...)``.

    Resamples examples jointly; a resample without a correct or without a wrong
    prediction is skipped, as there. ``(nan, nan)`` when every resample is.
    """
    _check_resamples(num_resamples, confidence)
    s = np.asarray(scores, np.float64)
    c = np.asarray(correct, bool)
    if c.all() or not c.any():
        return math.nan, math.nan
    ranker = _Ranker(s[c], s[~c])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_resamples):
        w = np.bincount(rng.integers(0, len(s), size=len(s)), minlength=len(s))
        w = w.astype(np.float64)
        w_pos, w_neg = w[c], w[~c]
        if w_pos.sum() == 0 or w_neg.sum() == 0:
            continue
        values.append(ranker.auroc(w_pos, w_neg))
    return _interval(values, confidence)


# -- tables ---------------------------------------------------------------------------


def _ci(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [float(interval[0]), float(interval[1])]


def misclassification_table(
    scores: Mapping[str, np.ndarray],
    correct: np.ndarray,
    *,
    coverages: Sequence[float] = COVERAGES,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Misclassification detection and selective classification, one row per score.

    Args:
      scores: ``{name: (N,)}`` confidence scores.
      correct: ``(N,)`` whether the gated prediction (the base head's) is right.
      coverages: accuracy is reported at these accepted fractions.
      bootstrap: resamples of the AUROC interval (0: none).
      confidence: interval coverage.
      seed: the resampling seed.

    Returns:
      ``{name: {"auroc", "auroc_ci", "aurc", "e_aurc", "augrc", "acc_at_80", ...}}``
      (``augrc``: `tac_jax.metrics.augrc`, Traub et al.'s generalized risk); ``auroc``
      is NaN when every prediction is right (or every one wrong).
    """
    correct = np.asarray(correct, bool)
    both = bool(correct.any() and not correct.all())
    out = {}
    for name, raw in scores.items():
        s = finite(raw)
        row: dict[str, Any] = {
            "auroc": misclassification_auroc(s, correct) if both else math.nan,
            "auroc_ci": None,
            "aurc": aurc(s, correct),
            "e_aurc": e_aurc(s, correct),
            "augrc": augrc(s, correct),
        }
        if bootstrap and both:
            row["auroc_ci"] = _ci(
                bootstrap_misclassification_ci(s, correct, bootstrap, confidence, seed)
            )
        for cov in coverages:
            row[f"acc_at_{round(cov * 100)}"] = accuracy_at_coverage(s, correct, cov)
        out[name] = row
    return out


def ood_table(
    scores_in: Mapping[str, np.ndarray],
    scores_out: Mapping[str, np.ndarray],
    *,
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """OOD detection of one set against the in-distribution test set, one row per score.

    Returns:
      ``{name: {"auroc", "auroc_ci", "aupr_in", "aupr_out", "fpr_at_95_tpr"}}``
      (`tac_jax.metrics.ood_metrics`, in-distribution positive).
    """
    out = {}
    for name in scores_in:
        s_in, s_out = finite(scores_in[name]), finite(scores_out[name])
        row: dict[str, Any] = dict(ood_metrics(s_in, s_out))
        row["auroc_ci"] = (
            _ci(bootstrap_auroc_ci(s_in, s_out, bootstrap, confidence, seed)) if bootstrap else None
        )
        out[name] = row
    return out


def mean_auroc(
    sets: Mapping[str, Mapping[str, Any]], names: Sequence[str], kinds: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean OOD AUROC per score over all sets and over the sets of each kind.

    Args:
      sets: ``{set: {"kind": str, "scores": {name: {"auroc": ...}}}}``.
      names: the scores.
      kinds: the kinds to report (absent kinds are left out).

    Returns:
      ``{name: {"all": mean, kind: mean, ...}}`` (empty when there are no sets).
    """
    out: dict[str, dict[str, float]] = {}
    if not sets:
        return out
    for name in names:
        row = {"all": float(np.mean([s["scores"][name]["auroc"] for s in sets.values()]))}
        for kind in kinds:
            values = [s["scores"][name]["auroc"] for s in sets.values() if s["kind"] == kind]
            if values:
                row[kind] = float(np.mean(values))
        out[name] = row
    return out


def _curve(curve: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: [float(x) for x in np.asarray(v)] for k, v in curve.items() if k != "c_err"}


def value_table(
    val_scores: Mapping[str, np.ndarray],
    val_correct: np.ndarray,
    test_scores: Mapping[str, np.ndarray],
    test_correct: np.ndarray,
    *,
    c_err_grid: Sequence[float] = C_ERR_GRID,
    costs: Costs = DEFAULT_COSTS,
) -> dict[str, dict[str, list[float]]]:
    """Reject value of the gated prediction, thresholds chosen on validation, per score.

    Returns:
      ``{name: {"value", "threshold", "coverage", "accuracy_accepted"}}``, each a list
      aligned with ``c_err_grid`` (`tac_jax.metrics.value_curve`).
    """
    return {
        name: _curve(
            value_curve(
                finite(val_scores[name]),
                val_correct,
                finite(test_scores[name]),
                test_correct,
                c_err_grid,
                costs,
            )
        )
        for name in test_scores
    }


def reference_values(
    test_correct: np.ndarray,
    *,
    c_err_grid: Sequence[float] = C_ERR_GRID,
    costs: Costs = DEFAULT_COSTS,
) -> dict[str, list[float]]:
    """The value of accepting everything, rejecting everything, and an oracle that
    rejects exactly the errors, per ``c_err``: the floor and ceiling any score sits in."""
    c = np.asarray(test_correct, bool)
    acc = float(np.mean(c))
    accept_all = [costs.r * acc - float(e) * (1 - acc) for e in c_err_grid]
    reject_all = [-costs.c_rej] * len(c_err_grid)
    oracle = [costs.r * acc - costs.c_rej * (1 - acc)] * len(c_err_grid)
    return {"accept_all": accept_all, "reject_all": reject_all, "oracle": oracle}


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's predictions and labels, for the combined policies."""

    scores: Mapping[str, np.ndarray]
    base_pred: np.ndarray
    tac_pred: np.ndarray | None
    labels: np.ndarray


POLICIES = {
    "base_gated_by_msp": "the base head's prediction, accepted when MSP clears the threshold",
    "base_gated_by_tac": "the base head's prediction, accepted when TAC's confidence `tac` "
    "clears the threshold",
    "tac_where_disagree": "TAC's prediction where the base head and TAC disagree (their "
    "common class elsewhere), accepted when `tac_tac_pred` clears the threshold",
    "reject_where_disagree": "reject wherever the base head and TAC disagree; elsewhere the "
    "common class, accepted when `tac` clears the threshold",
}


def policy_table(
    val: Split,
    test: Split,
    *,
    c_err_grid: Sequence[float] = C_ERR_GRID,
    costs: Costs = DEFAULT_COSTS,
) -> dict[str, dict[str, list[float]]]:
    """The value curves of the combined policies in `POLICIES` that these splits allow
    (the TAC ones need TAC's prediction and scores; each needs its gating score)."""

    def run(name: str, c_err: float) -> dict[str, float]:
        cost = dataclasses.replace(costs, c_err=float(c_err))
        if name.startswith("base_gated_by_"):
            key = name.removeprefix("base_gated_by_")
            return gated_policy(
                finite(val.scores[key]),
                val.base_pred,
                val.labels,
                finite(test.scores[key]),
                test.base_pred,
                test.labels,
                cost,
            )
        key, mode = ("tac_tac_pred", "tac") if name == "tac_where_disagree" else ("tac", "reject")
        return disagreement_policy(
            finite(val.scores[key]),
            val.base_pred,
            val.tac_pred,
            val.labels,
            finite(test.scores[key]),
            test.base_pred,
            test.tac_pred,
            test.labels,
            cost,
            on_disagreement=mode,
        )

    needs = {
        "base_gated_by_msp": ("msp",),
        "base_gated_by_tac": ("tac",),
        "tac_where_disagree": ("tac_tac_pred",),
        "reject_where_disagree": ("tac",),
    }
    out = {}
    for name, keys in needs.items():
        tac_needed = name != "base_gated_by_msp"
        if (tac_needed and test.tac_pred is None) or any(k not in test.scores for k in keys):
            continue
        rows = [run(name, c) for c in c_err_grid]
        curve = {
            k: [float(r[k]) for r in rows]
            for k in ("value", "threshold", "coverage", "accuracy_accepted")
        }
        if "disagreement" in rows[0]:
            curve["disagreement"] = [float(rows[0]["disagreement"])] * len(rows)
        out[name] = curve
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibration_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE (15 bins), Brier score and NLL of the head's softmax."""
    p = softmax(logits)
    return {"ece": ece(p, labels, 15), "brier": brier(p, labels), "nll": nll(p, labels)}
