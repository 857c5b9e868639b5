"""Out-of-distribution detection metrics: AUROC, AUPR-In/Out, FPR at a fixed TPR.

Sign convention (shared by every metric in `tac_jax.metrics`): a score is higher for
"more in-distribution / more likely correct", and in-distribution is the positive class.
Tied scores are grouped into one operating point, as scikit-learn does, so every metric
here equals its scikit-learn counterpart on the same inputs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_scores(x: ArrayLike, name: str) -> np.ndarray:
    """A non-empty, finite, 1-D float64 copy of ``x``; ValueError otherwise."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"expected {name} to be a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"expected {name} to hold at least one value, got an empty array")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(f"expected {name} to be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = int(np.sum(~np.isfinite(a)))
        raise ValueError(f"expected finite {name}, got {bad} non-finite value(s)")
    return a


def as_binary(x: ArrayLike, name: str) -> np.ndarray:
    """A non-empty 1-D bool array from bools or 0/1 numbers; ValueError otherwise."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"expected {name} to be a 1-D array, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"expected {name} to hold at least one value, got an empty array")
    if a.dtype == np.bool_:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"expected {name} to be bool or 0/1, got dtype {a.dtype}")
    values = np.unique(a)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"expected {name} to hold only 0/1 values, got {values[:5].tolist()}")
    return a == 1


def check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"expected arrays of equal length, got lengths {lengths}")


def check_both_classes(labels: np.ndarray, name: str) -> None:
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        raise ValueError(
            f"expected {name} to contain both classes, got {n_pos} positive(s) out of {labels.size}"
        )


def _binary_clf_curve(scores: np.ndarray, labels: np.ndarray):
    """Cumulative false/true positives at each distinct score, highest score first.

    Returns:
      ``(fps, tps, thresholds)``: accepting every example with ``score >= thresholds[i]``
      yields ``fps[i]`` false and ``tps[i]`` true positives. One entry per distinct score,
      so ties move the curve diagonally in one step.
    """
    # Only sums over whole tie groups are read, so the sort need not be stable.
    order = np.argsort(-scores)
    s, y = scores[order], labels[order].astype(np.float64)
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(y)[last_of_group]
    fps = 1.0 + last_of_group - tps
    return fps, tps, s[last_of_group]


def _labelled(scores_in: ArrayLike, scores_out: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s_in = as_scores(scores_in, "scores_in")
    s_out = as_scores(scores_out, "scores_out")
    labels = np.r_[np.ones(s_in.size, bool), np.zeros(s_out.size, bool)]
    return np.r_[s_in, s_out], labels


def _auroc_from_curve(fps: np.ndarray, tps: np.ndarray) -> float:
    return float(np.trapezoid(np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]))


def _ap_from_curve(fps: np.ndarray, tps: np.ndarray) -> float:
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    # Step-wise sum sum_i (R_i - R_{i-1}) P_i: no interpolation, as average_precision_score.
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _reversed_curve(fps: np.ndarray, tps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve with the classes swapped and the scores negated, from the same groups."""
    neg_per_group = np.diff(np.r_[0.0, fps])[::-1]
    pos_per_group = np.diff(np.r_[0.0, tps])[::-1]
    return np.cumsum(pos_per_group), np.cumsum(neg_per_group)


def _fpr_at_tpr_from_curve(fps: np.ndarray, tps: np.ndarray, tpr: float) -> float:
    # Same float division as the ROC curve, so rates hitting tpr exactly compare equal.
    i = int(np.searchsorted(tps / tps[-1], tpr, side="left"))
    return float(fps[i] / fps[-1])


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    fps, tps, _ = _binary_clf_curve(scores, labels)
    return _auroc_from_curve(fps, tps)


def _check_tpr(tpr: float) -> None:
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"expected tpr in (0, 1], got {tpr}")


def roc_curve(
    scores: ArrayLike, labels: ArrayLike, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with tied scores grouped, the same points as `sklearn.metrics.roc_curve`.

    Args:
      scores: 1-D scores, higher meaning "more positive".
      labels: 1-D bool or 0/1 labels, 1 = positive; both classes must be present.
      drop_intermediate: drop points that lie on a straight line between their neighbours
        (they do not change the plotted curve), as scikit-learn does by default.

    Returns:
      ``(fpr, tpr, thresholds)``, increasing in fpr and tpr. Point ``i`` accepts every
      example with ``score >= thresholds[i]``; the first point is ``(0, 0)`` at
      ``thresholds[0] = inf``.

    >>> fpr, tpr, thr = roc_curve([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    check_same_length(scores=s, labels=y)
    check_both_classes(y, "labels")
    fps, tps, thresholds = _binary_clf_curve(s, y)
    if drop_intermediate and fps.size > 2:
        # Keep the end points and every point where the curve bends.
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the ROC curve, in-distribution as the positive class.

    Equals the probability that a random in-distribution score exceeds a random OOD
    score, ties counting one half (`sklearn.metrics.roc_auc_score`).

    Args:
      scores_in: 1-D scores of in-distribution examples.
      scores_out: 1-D scores of out-of-distribution examples.

    Returns:
      AUROC in [0, 1]; 0.5 is chance.

    >>> auroc([3.0, 2.0, 1.0], [1.0, 0.0])
    0.9166666666666666
    """
    return binary_auroc(*_labelled(scores_in, scores_out))


def aupr_in(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Average precision with in-distribution as the positive class.

    Args:
      scores_in: 1-D scores of in-distribution examples.
      scores_out: 1-D scores of out-of-distribution examples.

    Returns:
      `sklearn.metrics.average_precision_score` with in = 1 on ``scores``.

    >>> aupr_in([3.0, 1.0], [2.0, 0.0])
    0.8333333333333333
    """
    fps, tps, _ = _binary_clf_curve(*_labelled(scores_in, scores_out))
    return _ap_from_curve(fps, tps)


def aupr_out(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Average precision with OOD as the positive class, ranked by negated scores.

    Args:
      scores_in: 1-D scores of in-distribution examples.
      scores_out: 1-D scores of out-of-distribution examples.

    Returns:
      `sklearn.metrics.average_precision_score` with out = 1 on ``-scores``.

    >>> aupr_out([3.0, 1.0], [2.0, 0.0])
    0.8333333333333333
    """
    fps, tps, _ = _binary_clf_curve(*_labelled(scores_in, scores_out))
    return _ap_from_curve(*_reversed_curve(fps, tps))


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> float:
    """Fraction of OOD examples accepted at the threshold that accepts ``tpr`` of in-dist.

    Threshold rule: the *highest* threshold ``t`` (a distinct score value) such that the
    fraction of in-distribution scores ``>= t`` is at least ``tpr``; the result is the
    fraction of OOD scores ``>= t``. This is ``fpr[np.searchsorted(tpr_curve, tpr)]`` on
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``. With scikit-learn's
    default ``drop_intermediate=True`` the recipe agrees except when the first point
    reaching ``tpr`` sits in the middle of a straight run of tied groups, where it jumps to
    the end of that run; the rule here does not depend on that pruning.

    Args:
      scores_in: 1-D scores of in-distribution examples.
      scores_out: 1-D scores of out-of-distribution examples.
      tpr: the in-distribution acceptance rate to reach, in (0, 1].

    Returns:
      FPR in [0, 1]; lower is better.

    >>> fpr_at_tpr([5.0, 4.0, 3.0, 2.0], [4.5, 1.0], tpr=0.75)
    0.5
    """
    _check_tpr(tpr)
    fps, tps, _ = _binary_clf_curve(*_labelled(scores_in, scores_out))
    return _fpr_at_tpr_from_curve(fps, tps, tpr)


def ood_metrics(scores_in: ArrayLike, scores_out: ArrayLike) -> dict[str, float]:
    """The four OOD detection metrics of METHODS §5 in one dict.

    Args:
      scores_in: 1-D scores of in-distribution examples.
      scores_out: 1-D scores of out-of-distribution examples.

    Returns:
      ``{"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"}`` as floats in [0, 1].

    >>> ood_metrics([3.0, 2.0], [1.0, 0.0])["auroc"]
    1.0
    """
    # One sort serves all four: they are read off the same grouped curve.
    fps, tps, _ = _binary_clf_curve(*_labelled(scores_in, scores_out))
    return {
        "auroc": _auroc_from_curve(fps, tps),
        "aupr_in": _ap_from_curve(fps, tps),
        "aupr_out": _ap_from_curve(*_reversed_curve(fps, tps)),
        "fpr_at_95_tpr": _fpr_at_tpr_from_curve(fps, tps, 0.95),
    }
