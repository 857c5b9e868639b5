"""Confidence scores, all oriented so that higher = more in-distribution / more likely correct.

TAC's own scores live in `tac_jax.scores.tac`; the post-hoc alternatives it is measured
against in `logits` (MSP, max logit, energy, entropy, GEN, ODIN, ReAct, DOCTOR,
MaxLogit-pNorm), `feature` (Mahalanobis, Mahalanobis++, RMDS, KNN, ViM), `boundary`
(fDBD, NCI), `shaping` (SCALE, ASH-S), `gradient` (GradNorm), `purview` and `methods`
(the training-time methods' scores). Each family module ends with its ``ENTRIES``
(`tac_jax.scores.entry.Score`), which `tac_jax.evaluate.engine.registry.SCORES` gathers.
"""

from __future__ import annotations

from tac_jax.scores.boundary import BoundaryStats, fdbd_score, fit_boundary, nci_score
from tac_jax.scores.feature import (
    KNNStats,
    MahalanobisStats,
    ViMStats,
    fit_background,
    fit_knn,
    fit_mahalanobis,
    fit_mahalanobis_pp,
    fit_multilayer_mahalanobis,
    fit_vim,
    knn_neighbours,
    knn_score,
    l2_normalise,
    mahalanobis_distances,
    mahalanobis_pp_score,
    mahalanobis_score,
    multilayer_mahalanobis_score,
    rmds_score,
    vim_default_dim,
    vim_score,
)
from tac_jax.scores.gradient import gradnorm
from tac_jax.scores.logits import (
    doctor,
    doctor_beta,
    energy,
    gen,
    max_logit,
    maxlogit_pnorm,
    msp,
    neg_entropy,
    odin,
    react_energy,
    react_threshold,
    select_pnorm,
)
from tac_jax.scores.shaping import ash_s_energy, scale_energy
from tac_jax.scores.tac import (
    TAC_SCORE_NAMES,
    closest_code_distance,
    code_inner_product,
    tac_predict,
    tac_scores,
)

__all__ = [
    "BoundaryStats",
    "KNNStats",
    "MahalanobisStats",
    "TAC_SCORE_NAMES",
    "ViMStats",
    "ash_s_energy",
    "closest_code_distance",
    "code_inner_product",
    "doctor",
    "doctor_beta",
    "energy",
    "fdbd_score",
    "fit_background",
    "fit_boundary",
    "fit_knn",
    "fit_mahalanobis",
    "fit_mahalanobis_pp",
    "fit_multilayer_mahalanobis",
    "fit_vim",
    "gen",
    "gradnorm",
    "knn_neighbours",
    "knn_score",
    "l2_normalise",
    "mahalanobis_distances",
    "mahalanobis_pp_score",
    "mahalanobis_score",
    "max_logit",
    "maxlogit_pnorm",
    "msp",
    "multilayer_mahalanobis_score",
    "nci_score",
    "neg_entropy",
    "odin",
    "react_energy",
    "react_threshold",
    "rmds_score",
    "scale_energy",
    "select_pnorm",
    "tac_predict",
    "tac_scores",
    "vim_default_dim",
    "vim_score",
]
