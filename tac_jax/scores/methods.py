"""The registry's entries for the training-time methods' scores (`tac_jax.methods`):
the learned confidence, deep ensembles, MC dropout and SNGP. Their numbers come from the
method's own forward pass (``extras``) or its extra pass; SNGP's Laplace covariance is
fitted here."""

from __future__ import annotations

import jax
import numpy as np

from tac_jax.methods.confidence import CONFIDENCE_EPSILON
from tac_jax.methods.mc_dropout import MC_SAMPLES
from tac_jax.methods.sngp import (
    init_precision,
    posterior_covariance,
    precision_update,
    predictive_variance,
    sngp_score,
)
from tac_jax.scores.entry import FitData, Score, Stats

_ENSEMBLE_FORMULAS = {
    "msp": "max_c p̄_c with p̄ the mean softmax of the {what}",
    "entropy": "Σ_c p̄_c log p̄_c: the negated entropy of the {what}' mean softmax",
    "mi": "−(H[p̄] − mean_m H[p_m]): the negated mutual information (disagreement) of the {what}",
}


def _sampled(family: str, what: str, needs: tuple[str, ...], pass_name: str | None):
    def entry(kind: str, formula: str) -> Score:
        name = f"{family}_{kind}"
        if pass_name is None:
            compute = lambda v: v.output("extras")[name]  # noqa: E731
        else:
            compute = lambda v: v.output(pass_name)[name]  # noqa: E731
        return Score(name, family, formula.format(what=what), compute, needs, pass_name)

    return tuple(entry(kind, formula) for kind, formula in _ENSEMBLE_FORMULAS.items())


def _fit_gp(data: FitData) -> Stats | None:
    rff = data.outputs.get("extras", {}).get("rff")
    if rff is None:
        return None
    rff = np.asarray(rff, np.float32)
    precision = precision_update(init_precision(rff.shape[1]), rff, data.outputs["logits"])
    return {"covariance": np.asarray(posterior_covariance(precision), np.float32)}


def _sngp(v) -> jax.Array:
    rff = v.output("extras")["rff"]
    return sngp_score(v.logits, predictive_variance(rff, v.stats("sngp")["covariance"]))


ENTRIES = (
    Score(
        "confidence",
        "confidence",
        "c = sigmoid(w·f + b): the learned confidence branch (DeVries & Taylor, hints and "
        "budget β)",
        lambda v: v.output("extras")["confidence"],
        needs=("confidence",),
    ),
    Score(
        "confidence_perturbed",
        "confidence",
        f"c(x̃), x̃ = x − ε·sign(∇_x −log c(x)), ε = {CONFIDENCE_EPSILON:g} (inputs in [0, 1])",
        lambda v: v.output("confidence_perturbed"),
        needs=("confidence", "input"),
        pass_name="confidence_perturbed",
    ),
    *_sampled("ensemble", "ensemble members", ("ensemble",), None),
    *_sampled("mc_dropout", f"{MC_SAMPLES} dropout masks", ("dropout",), "mc_dropout"),
    Score(
        "sngp",
        "sngp",
        "max_c softmax(z / √(1 + π/8·φᵀΣφ))_c: the mean-field GP posterior, Σ the Laplace "
        "covariance over the training data",
        _sngp,
        needs=("sngp", "fit"),
        fit=_fit_gp,
    ),
)
