"""GradNorm (Huang et al., 2021): the size of the head's gradient towards uniform.

The loss is ``KL(u ‖ softmax(z))`` with ``u`` uniform over the ``C`` classes and
``z = f W + b`` the head's logits. Its gradient with respect to the logits is
``softmax(z) − 1/C``, so the gradient with respect to the ``(D, C)`` kernel is the
outer product ``f ⊗ (softmax(z) − 1/C)`` and its L1 norm factorises:

    ‖∂L/∂W‖₁ = ‖f‖₁ · ‖softmax(z) − 1/C‖₁.

No backward pass is needed, and the score is per example and batched. A confident
prediction on a large feature vector gives a large gradient: in-distribution inputs
score higher, which is already this package's convention. (The paper's code uses
all-ones targets instead of ``1/C``, which scales every score by ``C`` and changes no
ordering.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tac_jax.scores.entry import Score
from tac_jax.scores.logits import check_features, check_logits


@jax.jit
def gradnorm(features_penultimate: jax.Array, logits: jax.Array) -> jax.Array:
    """Per-example L1 norm of ``∂ KL(u ‖ softmax(z)) / ∂W`` for the head kernel ``W``.

    Args:
      features_penultimate: ``(B, D)`` features the head reads (``"pre_logits"``).
      logits: ``(B, C)`` the head's logits for those features.

    Returns:
      ``(B,)`` scores, higher = more in-distribution.

    >>> gradnorm(jnp.array([[1.0, -2.0]]), jnp.array([[0.0, 0.0]])).tolist()  # uniform
    [0.0]
    """
    f = check_features(features_penultimate, "penultimate features")
    z = check_logits(logits)
    if f.shape[0] != z.shape[0]:
        raise ValueError(
            f"expected as many logit rows as feature rows, {f.shape[0]}, got {z.shape[0]}"
        )
    deviation = jax.nn.softmax(z, axis=-1) - 1.0 / z.shape[1]
    return jnp.sum(jnp.abs(f), axis=-1) * jnp.sum(jnp.abs(deviation), axis=-1)


ENTRIES = (
    Score(
        "gradnorm",
        "gradient",
        "‖f‖₁ · ‖softmax(z) − 1/C‖₁: the head gradient's L1 norm towards uniform",
        lambda v: gradnorm(v.features, v.logits),
        needs=("features",),
    ),
)
