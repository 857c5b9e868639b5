"""Which scores a figure draws: the best of every family by the figure's own metric.

A figure with one curve per score reads well with about eight curves. Drawing TAC's
family first would hide the strongest baselines (when KNN or multi-layer Mahalanobis
detects attacked inputs best, the figure must show it), so each figure ranks every score
by the metric it is about and keeps the best, plus TAC's paper score, the fused TAC
score and MSP as fixed references.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# Always drawn when the run has them: the paper's confidence, the fused TAC score (the
# study's choice) and the softmax baseline.
ALWAYS = ("tac", "tac_fused", "msp")
LIMIT = 8


def _key(value: float | None) -> float:
    """The sort key of a metric: missing and NaN rank below every number."""
    if value is None or math.isnan(float(value)):
        return -math.inf
    return float(value)


def best_scores(
    metric_by_score: Mapping[str, float | None],
    *,
    always: Sequence[str] = ALWAYS,
    limit: int = LIMIT,
) -> list[str]:
    """The scores with the highest metric, plus the ``always`` ones present.

    Args:
      metric_by_score: ``{score: metric}``, higher is better (negate a lower-is-better
        metric); None or NaN ranks last.
      always: scores kept whatever their rank, when present in ``metric_by_score``.
      limit: how many scores to keep in all (more only when ``always`` alone has more).

    Returns:
      The chosen scores ranked by the metric, best first; ties broken by name, None and
      NaN last.

    >>> best_scores({"tac": 0.6, "knn": 0.9, "msp": 0.7, "vim": 0.8, "odin": None}, limit=4)
    ['knn', 'vim', 'msp', 'tac']
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"expected a positive integer limit, got {limit!r}")
    ranked = sorted(metric_by_score, key=lambda n: (-_key(metric_by_score[n]), n))
    fixed = {n for n in always if n in metric_by_score}
    room = max(limit - len(fixed), 0)
    others = [n for n in ranked if n not in fixed][:room]
    chosen = fixed | set(others)
    return [n for n in ranked if n in chosen]
