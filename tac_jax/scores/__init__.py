"""Confidence scores, all oriented so that higher = more in-distribution / more likely correct.

TAC's own scores live in `tac_jax.scores.tac`; the post-hoc alternatives it is measured
against in `logits` (MSP, max logit, energy, entropy, ODIN, ReAct), `feature`
(Mahalanobis, KNN, ViM), `gradient` (GradNorm), `purview` and `methods` (the
training-time methods' scores). Each family module ends with its ``ENTRIES``
(`tac_jax.scores.entry.Score`), which `tac_jax.evaluate.engine.registry.SCORES` gathers.
"""

from __future__ import annotations

from tac_jax.scores.feature import (
    KNNStats,
    MahalanobisStats,
    ViMStats,
    fit_knn,
    fit_mahalanobis,
    fit_multilayer_mahalanobis,
    fit_vim,
    knn_neighbours,
    knn_score,
    l2_normalise,
    mahalanobis_distances,
    mahalanobis_score,
    multilayer_mahalanobis_score,
    vim_default_dim,
    vim_score,
)
from tac_jax.scores.gradient import gradnorm
from tac_jax.scores.logits import (
    energy,
    max_logit,
    msp,
    neg_entropy,
    odin,
    react_energy,
    react_threshold,
)
from tac_jax.scores.tac import (
    TAC_SCORE_NAMES,
    closest_code_distance,
    code_inner_product,
    tac_predict,
    tac_scores,
)

__all__ = [
    "TAC_SCORE_NAMES",
    "KNNStats",
    "MahalanobisStats",
    "ViMStats",
    "closest_code_distance",
    "code_inner_product",
    "energy",
    "fit_knn",
    "fit_mahalanobis",
    "fit_multilayer_mahalanobis",
    "fit_vim",
    "gradnorm",
    "knn_neighbours",
    "knn_score",
    "l2_normalise",
    "mahalanobis_distances",
    "mahalanobis_score",
    "max_logit",
    "msp",
    "multilayer_mahalanobis_score",
    "neg_entropy",
    "odin",
    "react_energy",
    "react_threshold",
    "tac_predict",
    "tac_scores",
    "vim_default_dim",
    "vim_score",
]
