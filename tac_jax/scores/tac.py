"""TAC's prediction and confidence scores (higher = more confident)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tac_jax.losses import check_code_shapes

TAC_SCORE_NAMES = ("tac", "tac_tac_pred", "tac_neg_l1", "tac_neg_l2")


def tac_predict(a: jax.Array, codes: jax.Array) -> jax.Array:
    """Hamming decoding: ``argmax_j ⟨sign(a), K_j⟩``.

    >>> tac_predict(jnp.array([[0.3, -2.0]]), jnp.array([[1.0, 1.0], [1.0, -1.0]])).tolist()
    [1]
    """
    check_code_shapes(a, codes)
    return jnp.argmax(jnp.sign(a) @ codes.T, axis=-1)


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
def tac_scores(a: jax.Array, logits: jax.Array, codes: jax.Array) -> dict[str, jax.Array]:
    """Every TAC output for a batch, in one jitted call.

    Args:
      a: ``(B, M)`` total activation vectors.
      logits: ``(B, C)`` the base head's logits.
      codes: ``(C, M)`` class codes.

    Returns:
      ``prediction`` (base head), ``tac_prediction`` (Hamming decoding),
      ``tac`` (``⟨a, K_ŷ⟩`` with the base head's ``ŷ``: the paper's confidence),
      ``tac_tac_pred`` (the same with TAC's own prediction),
      ``tac_neg_l1`` and ``tac_neg_l2`` (negative distance to the closest code).
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
        "tac": code_inner_product(a, codes, prediction),
        "tac_tac_pred": code_inner_product(a, codes, tac_prediction),
        "tac_neg_l1": -closest_code_distance(a, codes, 1),
        "tac_neg_l2": -closest_code_distance(a, codes, 2),
    }
