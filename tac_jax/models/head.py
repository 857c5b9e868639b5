"""The classification head every model in the zoo ends with."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def classifier_head(
    model: nn.Module, pre_logits: jax.Array, *, dropout_rate: float = 0.0, train: bool = False
) -> jax.Array:
    """Records ``pre_logits`` and applies the model's ``Dense(num_classes, name="head")``.

    Call it from inside a model's compact ``__call__``: the Dense then becomes that
    model's own ``head`` submodule and ``pre_logits`` a top-level intermediate. The
    model must define ``num_classes``, ``detach_head`` and ``param_dtype``.

    The head computes in float32 whatever the model's compute dtype, because logits
    feed softmax-based scores (MSP, energy, ...) whose tails bfloat16 would flatten.
    With ``detach_head`` the head reads ``stop_gradient(pre_logits)``, so a
    cross-entropy on its logits trains the head and nothing below it.

    Args:
      model: the calling module.
      pre_logits: pooled ``(batch, features)`` representation.
      dropout_rate: dropout between ``pre_logits`` (recorded before it) and the head.
      train: whether dropout is active (rng ``"dropout"``).

    Returns:
      ``(batch, num_classes)`` float32 logits.
    """
    if model.num_classes < 1:
        raise ValueError(f"expected num_classes >= 1, got {model.num_classes}")
    model.sow("intermediates", "pre_logits", pre_logits)
    if dropout_rate:
        pre_logits = nn.Dropout(dropout_rate)(pre_logits, deterministic=not train)
    if model.detach_head:
        pre_logits = jax.lax.stop_gradient(pre_logits)
    head = nn.Dense(
        model.num_classes, dtype=jnp.float32, param_dtype=model.param_dtype, name="head"
    )
    return head(pre_logits.astype(jnp.float32))
