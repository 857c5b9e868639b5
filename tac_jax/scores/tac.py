"""TAC's prediction and confidence scores (higher = more confident).

The activation vector ``a`` is the concatenation of one block of ``k`` entries per tapped
layer, shallowest first, as the codes are (`tac_jax.codes`); `blocks` views it per layer,
`deepest_blocks` keeps the last ones. `fit_block_weights` fits the layer-weighted
confidence on held-out data (our extension, not the paper's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.losses import check_code_shapes, code_distances
from tac_jax.scores.entry import FitData, HeldData, Score, Stats, as_stats
from tac_jax.scores.feature import MahalanobisStats, fit_mahalanobis, mahalanobis_score

TAC_SCORE_NAMES = (
    "tac",
    "tac_tac_pred",
    "tac_neg_l1",
    "tac_neg_l2",
    "tac_pred_l1",
    "tac_clip",
    "tac_prob",
)


def tac_predict(a: jax.Array, codes: jax.Array) -> jax.Array:
    """Hamming decoding: ``argmax_j ⟨sign(a), K_j⟩``.

    >>> tac_predict(jnp.array([[0.3, -2.0]]), jnp.array([[1.0, 1.0], [1.0, -1.0]])).tolist()
    [1]
    """
    check_code_shapes(a, codes)
    return jnp.argmax(jnp.sign(a) @ codes.T, axis=-1)


def soft_predict(a: jax.Array, codes: jax.Array) -> jax.Array:
    """Soft decoding: ``argmin_j ‖a − K_j‖₁`` (the magnitudes count, not only signs).

    >>> soft_predict(jnp.array([[0.1, -0.1, 3.0]]), jnp.array([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]])).tolist()
    [1]
    """
    check_code_shapes(a, codes)
    return jnp.argmin(code_distances(a, codes), axis=-1)


def predicted_l1(a: jax.Array, codes: jax.Array, prediction: jax.Array) -> jax.Array:
    """``−‖a − K_ŷ‖₁``: the L1 distance to the predicted class's code, negated.

    >>> predicted_l1(jnp.array([[0.5, -3.0]]), jnp.array([[1.0, -1.0]]), jnp.array([0])).tolist()
    [-2.5]
    """
    check_code_shapes(a, codes)
    return -jnp.sum(jnp.abs(a - codes[prediction]), axis=-1)


def clipped_inner_product(a: jax.Array, codes: jax.Array, prediction: jax.Array) -> jax.Array:
    """``⟨clip(a, −1, 1), K_ŷ⟩``: an entry beyond its code value earns no more than
    matching it, so one large activation cannot outweigh the others.

    >>> clipped_inner_product(jnp.array([[5.0, 0.5]]), jnp.array([[1.0, -1.0]]), jnp.array([0])).tolist()
    [0.5]
    """
    return code_inner_product(jnp.clip(a, -1.0, 1.0), codes, prediction)


def distance_probability(
    a: jax.Array, codes: jax.Array, prediction: jax.Array, scale: float | jax.Array
) -> jax.Array:
    """``softmax_j(−s·d_j)[ŷ]`` with ``d_j = mean_m |a_m − K_jm|``: the probability of
    ``ŷ`` under the distance softmax TAC is trained with, at its scale ``s``.

    >>> p = distance_probability(jnp.array([[1.0, -1.0]]), jnp.array([[1.0, -1.0], [-1.0, 1.0]]), jnp.array([0]), 1.0)
    >>> round(float(p[0]), 4)  # e^0 / (e^0 + e^-2)
    0.8808
    """
    check_code_shapes(a, codes)
    d = code_distances(a, codes)
    p = jax.nn.softmax(-jnp.asarray(scale, jnp.float32) * d, axis=-1)
    return jnp.take_along_axis(p, prediction[:, None], axis=-1)[:, 0]


def blocks(x: jax.Array, width: int) -> jax.Array:
    """``(..., L·k)`` → ``(..., L, k)``: one row per tapped layer, shallowest first.

    >>> blocks(jnp.arange(6.0)[None], 3).shape
    (1, 2, 3)
    """
    if width < 1 or x.shape[-1] % width:
        raise ValueError(
            f"expected a length divisible by the block width {width}, got {x.shape[-1]}"
        )
    return x.reshape(*x.shape[:-1], x.shape[-1] // width, width)


def deepest_blocks(x: jax.Array, width: int, count: int) -> jax.Array:
    """The entries of the deepest ``count`` blocks of ``(..., L·k)`` (0 or ≥ L: all).

    >>> deepest_blocks(jnp.arange(6.0), 2, 1).tolist()
    [4.0, 5.0]
    """
    num = x.shape[-1] // width if width >= 1 else 0
    if width < 1 or num * width != x.shape[-1]:
        raise ValueError(
            f"expected a length divisible by the block width {width}, got {x.shape[-1]}"
        )
    if count < 0:
        raise ValueError(f"expected a non-negative block count, got {count}")
    if count == 0 or count >= num:
        return x
    return x[..., (num - count) * width :]


def block_agreements(
    a: jax.Array, codes: jax.Array, prediction: jax.Array, width: int
) -> jax.Array:
    """Per tapped layer, ``mean_m clip(a_lm, −1, 1)·K_ŷ,lm`` in [−1, 1]: ``(B, L)``.

    >>> block_agreements(jnp.array([[1.0, 1.0, 2.0, -0.5]]), jnp.array([[1.0, 1.0, 1.0, 1.0]]), jnp.array([0]), 2).tolist()
    [[1.0, 0.25]]
    """
    check_code_shapes(a, codes)
    agree = jnp.clip(a, -1.0, 1.0) * codes[prediction]
    return jnp.mean(blocks(agree, width), axis=-1)


def fit_block_weights(
    agreements: np.ndarray, correct: np.ndarray, l2: float = 1e-3
) -> tuple[np.ndarray, float]:
    """Non-negative per-layer weights ``w`` and a bias ``b`` of a logistic regression
    ``P(correct) = σ(w·g + b)`` on held-out per-layer agreements ``g``
    (`block_agreements`), with an L2 penalty ``l2·‖w‖²`` on the mean log-loss.

    The weights are kept ≥ 0: a layer may be ignored, never counted against the
    prediction, so the score stays "agreement with the code is confidence" off the
    data it was fitted on. Fitted with L-BFGS-B from zero weights.

    Args:
      agreements: ``(N, L)`` held-out agreements.
      correct: ``(N,)`` whether the base prediction was right.
      l2: the penalty.

    Returns:
      ``(w, b)``: float32 ``(L,)`` weights and the bias.

    Raises:
      ValueError: on mismatched shapes, or held-out data with no error or no correct
        example (nothing to tell apart).
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    g = np.asarray(agreements, np.float64)
    y = np.asarray(correct, np.float64)
    if g.ndim != 2 or y.shape != (len(g),) or not len(g):
        raise ValueError(
            f"expected (N, L) agreements and N labels, got shapes {g.shape} and {y.shape}"
        )
    if y.min() == y.max():
        raise ValueError(
            "expected held-out data with both errors and correct predictions, got one kind"
        )
    n, num = g.shape

    def loss(theta):
        w, b = theta[:num], theta[num]
        z = g @ w + b
        # log(1 + e^z) − y z, stably; its gradient is σ(z) − y.
        value = np.mean(np.logaddexp(0.0, z) - y * z) + l2 * np.sum(w * w)
        r = (expit(z) - y) / n
        return value, np.concatenate([g.T @ r + 2 * l2 * w, [r.sum()]])

    bounds = [(0.0, None)] * num + [(None, None)]
    result = minimize(loss, np.zeros(num + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[:num].astype(np.float32), float(result.x[num])


def weighted_agreement(agreements: jax.Array, weights: jax.Array) -> jax.Array:
    """``Σ_l w_l g_l``: the layer-weighted TAC confidence (the fitted logit, less its bias).

    >>> weighted_agreement(jnp.array([[0.5, 1.0]]), jnp.array([0.0, 2.0])).tolist()
    [2.0]
    """
    return agreements @ weights


def fused_confidence(
    weighted: jax.Array, mahalanobis: jax.Array, stats: jax.Array, weight: float | jax.Array
) -> jax.Array:
    """``z(weighted) + λ·z(mahalanobis)``: the layer-weighted agreement (errors) and the
    Gaussian fit of the activation vector (OOD) on one scale, each standardised by its
    held-out mean and standard deviation, ``stats = [μ_w, σ_w, μ_m, σ_m]``.

    >>> fused_confidence(jnp.array([3.0]), jnp.array([-10.0]), jnp.array([1.0, 2.0, -6.0, 4.0]), 0.5).tolist()
    [0.5]
    """
    z_w = (weighted - stats[0]) / stats[1]
    z_m = (mahalanobis - stats[2]) / stats[3]
    return z_w + jnp.asarray(weight, jnp.float32) * z_m


def code_inner_product(a: jax.Array, codes: jax.Array, prediction: jax.Array) -> jax.Array:
    """``⟨a, K_ŷ⟩`` with ``ŷ`` a given prediction (the base head's, in the paper).

    >>> code_inner_product(jnp.array([[0.5, -1.0]]), jnp.array([[1.0, -1.0]]), jnp.array([0])).tolist()
    [1.5]
    """
    check_code_shapes(a, codes)
    if prediction.shape != a.shape[:1]:
        raise ValueError(
            f"expected one prediction per example, shape {a.shape[:1]}, got {prediction.shape}"
        )
    return jnp.sum(a * codes[prediction], axis=-1)


def closest_code_distance(a: jax.Array, codes: jax.Array, ord: int = 1) -> jax.Array:
    """``min_j ‖a − K_j‖_ord`` for ``ord`` 1 or 2 (a distance: lower = more confident)."""
    check_code_shapes(a, codes)
    if ord == 1:
        d = jnp.sum(jnp.abs(a[:, None, :] - codes[None]), axis=-1)
    elif ord == 2:
        # ‖a − K_j‖² = ‖a‖² − 2⟨a, K_j⟩ + M, since every K_j entry is ±1.
        sq = jnp.sum(a * a, -1, keepdims=True) - 2 * a @ codes.T + jnp.sum(codes * codes, -1)
        d = jnp.sqrt(jnp.maximum(sq, 0.0))
    else:
        raise ValueError(f"expected a distance order of 1 or 2, got {ord}")
    return jnp.min(d, axis=-1)


@jax.jit
def tac_scores(
    a: jax.Array, logits: jax.Array, codes: jax.Array, scale: float | jax.Array = 10.0
) -> dict[str, jax.Array]:
    """Every TAC output for a batch, in one jitted call.

    Args:
      a: ``(B, M)`` total activation vectors.
      logits: ``(B, C)`` the base head's logits.
      codes: ``(C, M)`` class codes.
      scale: the distance-softmax scale ``s`` TAC was trained with.

    Returns:
      ``prediction`` (base head), ``tac_prediction`` (Hamming decoding),
      ``tac_soft_prediction`` (`soft_predict`),
      ``tac`` (``⟨a, K_ŷ⟩`` with the base head's ``ŷ``: the paper's confidence),
      ``tac_tac_pred`` (the same with TAC's own prediction),
      ``tac_neg_l1`` and ``tac_neg_l2`` (negative distance to the closest code),
      ``tac_pred_l1`` (`predicted_l1`), ``tac_clip`` (`clipped_inner_product`) and
      ``tac_prob`` (`distance_probability`), all with the base head's ``ŷ``.
    """
    if logits.shape != (a.shape[0], codes.shape[0]):
        raise ValueError(
            f"expected logits of shape {(a.shape[0], codes.shape[0])}, got {logits.shape}"
        )
    a = a.astype(jnp.float32)
    prediction = jnp.argmax(logits, axis=-1)
    tac_prediction = tac_predict(a, codes)
    return {
        "prediction": prediction,
        "tac_prediction": tac_prediction,
        "tac_soft_prediction": soft_predict(a, codes),
        "tac": code_inner_product(a, codes, prediction),
        "tac_tac_pred": code_inner_product(a, codes, tac_prediction),
        "tac_neg_l1": -closest_code_distance(a, codes, 1),
        "tac_neg_l2": -closest_code_distance(a, codes, 2),
        "tac_pred_l1": predicted_l1(a, codes, prediction),
        "tac_clip": clipped_inner_product(a, codes, prediction),
        "tac_prob": distance_probability(a, codes, prediction, scale),
    }


def fuse_statistics(scores: dict[str, np.ndarray]) -> np.ndarray:
    """``[μ, σ]`` of ``tac_weighted`` then ``tac_mahalanobis`` on held-out scores
    (σ floored at 1e-6), what ``tac_fused`` standardises with."""
    out = []
    for name in ("tac_weighted", "tac_mahalanobis"):
        s = np.asarray(scores[name], np.float64)
        s = s[np.isfinite(s)]
        if s.size < 2:
            raise ValueError(f"expected at least 2 finite held-out {name} scores, got {s.size}")
        out += [s.mean(), max(s.std(), 1e-6)]
    return np.asarray(out, np.float32)


# -- The registry's entries (`tac_jax.scores.entry`) -----------------------------------


def batch_outputs(v) -> dict[str, jax.Array]:
    """`tac_scores` of a `tac_jax.scores.entry.View`'s batch, on the deepest
    ``options.deepest`` blocks (0: all); computed once per batch."""

    def make():
        a, codes, width, deepest = v.activation, v.codes, v.options.width, v.options.deepest
        if deepest:
            a, codes = deepest_blocks(a, width, deepest), deepest_blocks(codes, width, deepest)
        return tac_scores(a, v.logits, codes, v.settings["scale"])

    return v.memo("tac", make)


def _paper(name: str, formula: str) -> Score:
    return Score(name, "tac", formula, lambda v: batch_outputs(v)[name], needs=("tac",))


def _fit_activation_gaussian(data: FitData) -> Stats | None:
    if "activation" not in data.outputs:
        return None
    a = np.asarray(data.outputs["activation"], np.float32)
    return as_stats(fit_mahalanobis(a, data.labels, data.num_classes))


def _fit_layer_weights(data: HeldData) -> Stats:
    prediction = np.argmax(np.asarray(data.outputs["logits"]), axis=-1)
    agreements = block_agreements(
        jnp.asarray(data.outputs["activation"], jnp.float32),
        jnp.asarray(data.codes, jnp.float32),
        jnp.asarray(prediction),
        int(data.width),
    )
    weights, bias = fit_block_weights(np.asarray(agreements), prediction == data.labels)
    return {"weights": weights, "bias": np.float32(bias)}


def _weighted(v) -> jax.Array:
    g = block_agreements(v.activation, v.codes, v.prediction, v.options.width)
    return weighted_agreement(g, v.stats("tac_weighted")["weights"])


def _fit_fuse(data: HeldData) -> Stats:
    return {"moments": fuse_statistics(data.scores(("tac_weighted", "tac_mahalanobis")))}


def _fused(v) -> jax.Array:
    return fused_confidence(
        v.score("tac_weighted"),
        v.score("tac_mahalanobis"),
        v.stats("tac_fused")["moments"],
        v.settings["fuse"],
    )


_WEIGHTS = "TAC's layer weights (fitted on a validation split) and the code width"

ENTRIES = (
    _paper(
        "tac",
        "⟨a, K_ŷ⟩: TAC's activation vector a against the code of the base head's "
        "prediction ŷ (the paper's confidence)",
    ),
    _paper("tac_tac_pred", "⟨a, K_ỹ⟩ with TAC's own Hamming-decoded prediction ỹ"),
    _paper("tac_neg_l1", "−min_j ‖a − K_j‖₁: L1 distance to the closest code"),
    _paper("tac_neg_l2", "−min_j ‖a − K_j‖₂: L2 distance to the closest code"),
    _paper("tac_pred_l1", "−‖a − K_ŷ‖₁: L1 distance to the predicted class's code"),
    _paper("tac_clip", "⟨clip(a, −1, 1), K_ŷ⟩: agreement with the predicted code, capped at ±1"),
    _paper(
        "tac_prob",
        "softmax_j(−s·d_j)[ŷ], d_j = mean_m |a_m − K_jm|: ŷ's probability under the distance "
        "softmax at the trained scale s",
    ),
    Score(
        "tac_mahalanobis",
        "tac",
        "−min_c (a − μ_c)ᵀ Σ⁻¹ (a − μ_c) on TAC's activation vector a: class means and "
        "shared covariance of a on training examples, the empirical codes (our extension)",
        lambda v: mahalanobis_score(MahalanobisStats(**v.stats("tac_mahalanobis")), v.activation),
        needs=("tac", "fit"),
        fit=_fit_activation_gaussian,
        fitted_what="TAC activation statistics",
    ),
    Score(
        "tac_fused",
        "tac",
        "z(tac_weighted) + λ·z(tac_mahalanobis): both standardised on the validation split, "
        "λ = config.tac.fuse_weight (our extension)",
        _fused,
        needs=("tac", "fit", "validation"),
        fit_held=_fit_fuse,
        uses=("tac_weighted", "tac_mahalanobis"),
        fitted_what="tac_fused's validation statistics",
    ),
    Score(
        "tac_weighted",
        "tac",
        "Σ_l w_l·mean_m clip(a_lm, −1, 1)K_ŷ,lm: per-layer agreements weighted by a "
        "non-negative logistic regression of correctness fitted on the validation split "
        "(our extension)",
        _weighted,
        needs=("tac", "fit", "validation"),
        fit_held=_fit_layer_weights,
        blockwise=True,
        fitted_what=_WEIGHTS,
    ),
)
