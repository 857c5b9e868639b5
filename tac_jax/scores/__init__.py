"""Confidence scores, all oriented so that higher = more in-distribution / more likely correct.

TAC's own scores live in `tac_jax.scores.tac`; the post-hoc alternatives it is measured
against in `logits` (MSP, max logit, energy, entropy, ODIN, ReAct), `feature`
(Mahalanobis, KNN, ViM) and `gradient` (GradNorm). `POSTHOC_SCORES` names each
alternative and what it needs, so a report can iterate over them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

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

# What a score reads: the head's "logits"; the "penultimate" features it reads
# ("pre_logits"); recorded intermediate "features" by name; the "head" kernel and bias;
# the raw "input+model" (it runs the model itself); "fit" on in-distribution training data.
NEEDS = ("logits", "penultimate", "features", "head", "input+model", "fit")


@dataclasses.dataclass(frozen=True)
class PosthocScore:
    """One post-hoc score: what it needs and the functions that compute it.

    Attributes:
      name: the registry key.
      needs: a subset of `NEEDS`.
      score: the scoring function (see its docstring for the arguments).
      fit: the fitting function on training data, when ``"fit"`` is needed.
      call: how ``score`` is called, for readers of a report.
    """

    name: str
    needs: tuple[str, ...]
    score: Callable
    fit: Callable | None
    call: str


def _entry(name, needs, score, fit=None, call=""):
    return name, PosthocScore(name, tuple(needs), score, fit, call)


POSTHOC_SCORES: dict[str, PosthocScore] = dict(
    [
        _entry("msp", ["logits"], msp, call="msp(logits)"),
        _entry("max_logit", ["logits"], max_logit, call="max_logit(logits)"),
        _entry("energy", ["logits"], energy, call="energy(logits, temperature=1.0)"),
        _entry("entropy", ["logits"], neg_entropy, call="neg_entropy(logits)"),
        _entry(
            "odin",
            ["input+model"],
            odin,
            call="odin(apply_logits_fn, x, temperature=1000.0, epsilon=0.0014)",
        ),
        _entry(
            "mahalanobis",
            ["penultimate", "fit"],
            mahalanobis_score,
            fit_mahalanobis,
            call="mahalanobis_score(fit_mahalanobis(train_f, train_y, C), f)",
        ),
        _entry(
            "mahalanobis_multi",
            ["features", "fit"],
            multilayer_mahalanobis_score,
            fit_multilayer_mahalanobis,
            call="multilayer_mahalanobis_score(fit_multilayer_mahalanobis(train_feats, "
            "train_y, layers, C), feats)",
        ),
        _entry(
            "knn",
            ["penultimate", "fit"],
            knn_score,
            fit_knn,
            call="knn_score(fit_knn(train_f), f, k=50)",
        ),
        _entry(
            "react",
            ["penultimate", "head", "fit"],
            react_energy,
            react_threshold,
            call="react_energy(f, kernel, bias, react_threshold(train_f, 90))",
        ),
        _entry(
            "vim",
            ["penultimate", "logits", "head", "fit"],
            vim_score,
            fit_vim,
            call="vim_score(fit_vim(train_f, kernel, bias), f, logits)",
        ),
        _entry("gradnorm", ["penultimate", "logits"], gradnorm, call="gradnorm(f, logits)"),
    ]
)

__all__ = [
    "NEEDS",
    "POSTHOC_SCORES",
    "TAC_SCORE_NAMES",
    "KNNStats",
    "MahalanobisStats",
    "PosthocScore",
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
