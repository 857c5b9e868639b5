"""Which scores a figure draws: `best_scores` on hand-made cases, and the figures that use it."""

import doctest
import math

import numpy as np
import pytest

from tac_jax.evaluate.reporting import figure_scores
from tac_jax.evaluate.reporting.figure_scores import best_scores

# Twelve scores: TAC's family first in the run's order, KNN the best detector.
METRIC = {
    "tac": 0.70, "tac_neg_l1": 0.72, "tac_neg_l2": 0.71, "tac_clip": 0.69, "tac_prob": 0.68,
    "tac_fused": 0.74, "msp": 0.66, "energy": 0.75, "knn": 0.93, "mahalanobis_multi": 0.91,
    "vim": 0.60, "odin": 0.65,
}  # fmt: skip


def test_doctests():
    assert doctest.testmod(figure_scores).failed == 0


def test_the_best_detectors_are_kept_with_tac_and_msp():
    chosen = best_scores(METRIC)
    assert chosen == [
        "knn", "mahalanobis_multi", "energy", "tac_fused", "tac_neg_l1", "tac_neg_l2",
        "tac", "msp",
    ]  # fmt: skip
    # KNN, the best, is in even when only the fixed references leave room for one more.
    assert best_scores(METRIC, limit=4) == ["knn", "tac_fused", "tac", "msp"]


def test_fixed_references_beyond_the_limit_and_absent_ones():
    assert best_scores(METRIC, limit=1) == ["tac_fused", "tac", "msp"]
    # A base-only run has neither tac nor tac_fused: the room goes to the best.
    base = {k: v for k, v in METRIC.items() if not k.startswith("tac")}
    assert best_scores(base, limit=3) == ["knn", "mahalanobis_multi", "msp"]
    assert best_scores(base, always=(), limit=3) == ["knn", "mahalanobis_multi", "energy"]


def test_ties_by_name_and_missing_values_last():
    metric = {"b": 0.5, "a": 0.5, "c": None, "d": math.nan, "e": 0.1}
    assert best_scores(metric, always=(), limit=5) == ["a", "b", "e", "c", "d"]
    assert best_scores(metric, always=(), limit=2) == ["a", "b"]
    # A fixed reference without a value is still drawn, ranked last.
    assert best_scores(metric, always=("d",), limit=2) == ["a", "d"]
    assert best_scores({}, limit=3) == []


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="expected a positive integer limit"):
        best_scores(METRIC, limit=limit)


def _drawn(fig):
    """The score names of a figure's labelled lines, per axes."""
    return [
        [line.get_label().split(" ")[0].rstrip(",") for line in ax.get_lines()
         if not line.get_label().startswith("_")]
        for ax in fig.axes
    ]  # fmt: skip


def test_roc_and_risk_coverage_figures_draw_the_best(tmp_path, monkeypatch):
    from tac_jax.evaluate.reporting import plots

    rng = np.random.default_rng(0)
    n = 200
    correct = rng.random(n) < 0.8
    # The same noise shifted by each score's METRIC value: OOD AUROC grows with it, so
    # KNN's is the highest; correctness is read best by `vim` alone.
    noise_in, noise_out = rng.normal(size=n), rng.normal(size=n)
    test = {k: noise_in + 3 * (v - 0.7) for k, v in METRIC.items()}
    ood = {k: noise_out for k in METRIC}
    test["vim"], ood["vim"] = correct * 3.0 + noise_in, noise_out + 3.0
    figures = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, d, name: figures.setdefault(name, fig))
    data = plots.PlotData(test, correct, {"noise": ood}, {"noise": "synthetic"}, value={})
    plots.roc_figures(str(tmp_path), data)
    (roc,) = _drawn(figures["roc_synthetic.png"])
    assert len(roc) == 8 and roc[0] == "knn"
    assert {"tac", "tac_fused", "msp", "mahalanobis_multi"} <= set(roc)
    plots.risk_coverage_figure(str(tmp_path), data)
    (risk,) = _drawn(figures["risk_coverage.png"])
    assert len(risk) == 8 and risk[0] == "vim"
