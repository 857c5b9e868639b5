"""The registry of confidence scores: what each is, what a run needs to compute it.

`SCORES` lists the scores in report order with what each is; all are oriented so that
higher means "more in-distribution / more likely correct" (METHODS §4–5). A score
*needs* capabilities a run may lack (`run_capabilities`): TAC's exist only for TAC
runs (``tac_weighted`` also needs a validation split), ReAct and ViM need the model's ``head`` Dense, the training-time methods' scores
need a run of that method (`tac_jax.methods`), MC dropout a base with dropout. A score
may also read an extra pass over its inputs (``ScoreInfo.pass_name``, see
`tac_jax.evaluate.engine.collect.PASSES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate.engine.collect import (
    CONFIDENCE_EPSILON,
    MC_SAMPLES,
    ODIN_EPSILON,
    ODIN_TEMPERATURE,
    head_params,
    supported_passes,
)
from tac_jax.evaluate.engine.fitted import KNN_K


@dataclasses.dataclass(frozen=True)
class ScoreInfo:
    """What a score is, for readers of a report.

    Attributes:
      family: ``"tac"``, ``"logits"``, ``"feature"``, ``"gradient"``, or the training-time
        method it belongs to (``"confidence"``, ``"ensemble"``, ``"mc_dropout"``,
        ``"sngp"``).
      formula: the definition, oriented higher = more confident.
      needs: run capabilities (`run_capabilities`): ``"tac"`` (a TAC run), ``"fit"``
        (training statistics), ``"features"`` (one network's penultimate features),
        ``"head"`` (the head's kernel and bias), ``"input"`` (inputs with a gradient),
        ``"dropout"`` (a base with dropout, no BatchNorm), ``"validation"`` (a
        validation split), or a method's name.
      pass_name: the extra pass over the inputs it reads, or None.
    """

    family: str
    formula: str
    needs: tuple[str, ...] = ()
    pass_name: str | None = None


_ENSEMBLE_FORMULAS = {
    "msp": "max_c p̄_c with p̄ the mean softmax of the {what}",
    "entropy": "Σ_c p̄_c log p̄_c: the negated entropy of the {what}' mean softmax",
    "mi": "−(H[p̄] − mean_m H[p_m]): the negated mutual information (disagreement) of the {what}",
}


def _sampled(family: str, what: str, needs: tuple[str, ...], pass_name: str | None):
    return {
        f"{family}_{kind}": ScoreInfo(family, formula.format(what=what), needs, pass_name)
        for kind, formula in _ENSEMBLE_FORMULAS.items()
    }


SCORES: dict[str, ScoreInfo] = {
    "tac": ScoreInfo(
        "tac",
        "⟨a, K_ŷ⟩: TAC's activation vector a against the code of the base head's "
        "prediction ŷ (the paper's confidence)",
        ("tac",),
    ),
    "tac_tac_pred": ScoreInfo(
        "tac", "⟨a, K_ỹ⟩ with TAC's own Hamming-decoded prediction ỹ", ("tac",)
    ),
    "tac_neg_l1": ScoreInfo("tac", "−min_j ‖a − K_j‖₁: L1 distance to the closest code", ("tac",)),
    "tac_neg_l2": ScoreInfo("tac", "−min_j ‖a − K_j‖₂: L2 distance to the closest code", ("tac",)),
    "tac_pred_l1": ScoreInfo(
        "tac", "−‖a − K_ŷ‖₁: L1 distance to the predicted class's code", ("tac",)
    ),
    "tac_clip": ScoreInfo(
        "tac", "⟨clip(a, −1, 1), K_ŷ⟩: agreement with the predicted code, capped at ±1", ("tac",)
    ),
    "tac_prob": ScoreInfo(
        "tac",
        "softmax_j(−s·d_j)[ŷ], d_j = mean_m |a_m − K_jm|: ŷ's probability under the distance "
        "softmax at the trained scale s",
        ("tac",),
    ),
    "tac_mahalanobis": ScoreInfo(
        "tac",
        "−min_c (a − μ_c)ᵀ Σ⁻¹ (a − μ_c) on TAC's activation vector a: class means and "
        "shared covariance of a on training examples, the empirical codes (our extension)",
        ("tac", "fit"),
    ),
    "tac_fused": ScoreInfo(
        "tac",
        "z(tac_weighted) + λ·z(tac_mahalanobis): both standardised on the validation split, "
        "λ = config.tac.fuse_weight (our extension)",
        ("tac", "fit", "validation"),
    ),
    "tac_weighted": ScoreInfo(
        "tac",
        "Σ_l w_l·mean_m clip(a_lm, −1, 1)K_ŷ,lm: per-layer agreements weighted by a "
        "non-negative logistic regression of correctness fitted on the validation split "
        "(our extension)",
        ("tac", "fit", "validation"),
    ),
    "msp": ScoreInfo("logits", "max_c softmax(z)_c"),
    "max_logit": ScoreInfo("logits", "max_c z_c"),
    "energy": ScoreInfo("logits", "logsumexp(z) (the negated free energy, T = 1)"),
    "entropy": ScoreInfo("logits", "Σ_c p_c log p_c (the negated predictive entropy)"),
    "odin": ScoreInfo(
        "logits",
        f"max_c softmax(z(x̃)/T)_c, T = {ODIN_TEMPERATURE:g}, x̃ one signed-gradient step "
        f"of ε = {ODIN_EPSILON:g} (inputs in [0, 1]) raising the predicted class",
        ("input",),
        "odin",
    ),
    "mahalanobis": ScoreInfo(
        "feature",
        "−min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c) on the penultimate features f; class means, "
        "shared covariance",
        ("fit", "features"),
    ),
    "mahalanobis_multi": ScoreInfo(
        "feature",
        "Σ over the pooled tapped layers of each layer's Mahalanobis score (unweighted sum)",
        ("fit", "features"),
    ),
    "knn": ScoreInfo(
        "feature",
        f"−‖f̂ − f̂_(k)‖: distance of the L2-normalised f̂ = f/‖f‖ to its k-th (k = {KNN_K}, "
        "at most the fitted examples) nearest normalised training feature",
        ("fit", "features"),
    ),
    "react": ScoreInfo(
        "feature",
        "logsumexp(min(f, c) W + b), c the 90th percentile of training activations",
        ("fit", "features", "head"),
    ),
    "vim": ScoreInfo(
        "feature",
        "logsumexp(z) − α‖(f − u) projected off the principal subspace‖ (virtual logit)",
        ("fit", "features", "head"),
    ),
    "gradnorm": ScoreInfo(
        "gradient",
        "‖f‖₁ · ‖softmax(z) − 1/C‖₁: the head gradient's L1 norm towards uniform",
        ("features",),
    ),
    "purview": ScoreInfo(
        "gradient",
        "Σ_l ‖∇_θl BCE(softmax(z), 1)‖²: per-layer squared gradient norms towards the "
        "all-ones confounding label, summed (Purview's untrained score; + because the "
        "gradient grows with confidence)",
        (),
        "purview",
    ),
    "purview_detector": ScoreInfo(
        "gradient",
        "−‖(log g − μ)/σ‖₂ on Purview's per-layer norms g: a diagonal Gaussian fitted on "
        "training examples (an option; the paper's detector is not public)",
        ("fit",),
        "purview",
    ),
    "confidence": ScoreInfo(
        "confidence",
        "c = sigmoid(w·f + b): the learned confidence branch (DeVries & Taylor, hints and "
        "budget β)",
        ("confidence",),
    ),
    "confidence_perturbed": ScoreInfo(
        "confidence",
        f"c(x̃), x̃ = x − ε·sign(∇_x −log c(x)), ε = {CONFIDENCE_EPSILON:g} (inputs in [0, 1])",
        ("confidence", "input"),
        "confidence_perturbed",
    ),
    **_sampled("ensemble", "ensemble members", ("ensemble",), None),
    **_sampled("mc_dropout", f"{MC_SAMPLES} dropout masks", ("dropout",), "mc_dropout"),
    "sngp": ScoreInfo(
        "sngp",
        "max_c softmax(z / √(1 + π/8·φᵀΣφ))_c: the mean-field GP posterior, Σ the Laplace "
        "covariance over the training data",
        ("sngp", "fit"),
    ),
}
TAC_NAMES = tuple(name for name, info in SCORES.items() if "tac" in info.needs)


def available_scores(capabilities: Collection[str]) -> tuple[str, ...]:
    """The scores whose needs ``capabilities`` cover, in `SCORES` order."""
    caps = set(capabilities)
    return tuple(name for name, info in SCORES.items() if set(info.needs) <= caps)


def run_capabilities(setup: Any, state: Any) -> frozenset[str]:
    """What a loaded run offers the scores (see `ScoreInfo.needs`)."""
    caps = {"fit"}
    dtype = np.dtype(setup.input_dtype)
    if dtype == np.uint8 or np.issubdtype(dtype, np.floating):
        caps.add("input")
    if setup.tac is not None:
        caps.add("tac")
    if float(setup.config.data.get("validation_fraction", 0.0)) > 0:
        caps.add("validation")
    if setup.method is not None:
        caps |= set(setup.method.capabilities())
    else:
        caps.add("features")
        if head_params(setup, state) is not None:
            caps.add("head")
    if "mc_dropout" in supported_passes(setup, state):
        caps.add("dropout")
    return frozenset(caps)


_WHY = {
    "tac": "a run without a TAC head",
    "validation": "no validation split (config.data.validation_fraction 0)",
    "head": "no 'head' Dense the prediction comes from",
    "input": "integer inputs cannot be perturbed",
    "features": "no single network's features (an ensemble)",
    "dropout": "no dropout, or BatchNorm statistics",
    "confidence": "not a learned-confidence run",
    "ensemble": "not an ensemble run",
    "sngp": "not an SNGP run",
}


def resolve_scores(
    requested: Sequence[str] | None, capabilities: Collection[str]
) -> tuple[str, ...]:
    """``requested`` (default: every available score) checked and put in `SCORES` order.

    Raises:
      ValueError: on an unknown score or one this run cannot compute.
    """
    available = available_scores(capabilities)
    if requested is None:
        return available
    requested = [requested] if isinstance(requested, str) else list(requested)
    unknown = [name for name in requested if name not in SCORES]
    if unknown:
        raise ValueError(f"expected score names from {list(SCORES)}, got unknown {unknown}")
    missing = [name for name in requested if name not in available]
    if missing:
        lacking = {n for m in missing for n in SCORES[m].needs if n not in capabilities}
        reasons = sorted(_WHY.get(n, n) for n in lacking)
        raise ValueError(
            f"expected scores this run can compute {list(available)}, got {missing} "
            f"({'; '.join(reasons)})"
        )
    if not requested:
        raise ValueError("expected at least one score name, got none")
    return tuple(name for name in SCORES if name in requested)


def score_passes(names: Sequence[str]) -> tuple[str, ...]:
    """The extra passes ``names`` read, in `tac_jax.evaluate.engine.collect.PASSES` order."""
    return tuple(dict.fromkeys(SCORES[n].pass_name for n in names if SCORES[n].pass_name))


def needs_fit(names: Sequence[str]) -> bool:
    """Whether any of ``names`` reads fitted training statistics."""
    return any("fit" in SCORES[name].needs for name in names)
