"""MC dropout (Gal & Ghahramani, 2016): dropout kept on at test time, ``T`` samples.

The ``T`` predictive distributions are scored like an ensemble's
(`tac_jax.methods.ensemble`). Only the dropout masks may vary between samples: a model
whose ``train=True`` also switches BatchNorm to batch statistics would score a different
network, so such models are refused (`check_mc_dropout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.methods.ensemble import ensemble_scores

# Dropout masks per input, and the seed they are drawn from.
MC_SAMPLES = 20
MC_SEED = 0


def dropout_rate(base: nn.Module) -> float:
    """The base's ``dropout_rate`` field (0 when it has none)."""
    return float(getattr(base, "dropout_rate", 0.0) or 0.0)


def check_mc_dropout(base: nn.Module, variables: Mapping[str, Any]) -> None:
    """Raises unless sampling ``base`` with ``train=True`` only resamples dropout.

    Raises:
      ValueError: if the model has no dropout, or has BatchNorm statistics.
    """
    if dropout_rate(base) <= 0:
        raise ValueError(
            f"expected a model with dropout_rate > 0 for MC dropout, got "
            f"{type(base).__name__} with dropout_rate {dropout_rate(base)}"
        )
    if "batch_stats" in variables:
        raise ValueError(
            "expected a model without BatchNorm for MC dropout (train=True would also switch "
            f"BatchNorm to batch statistics), got {type(base).__name__} with batch_stats"
        )


def mc_dropout_logits(
    base: nn.Module, variables: Mapping[str, Any], x: jax.Array, key: jax.Array, samples: int
) -> jax.Array:
    """``(T, B, C)`` logits of ``T`` dropout masks (one key per sample), vmapped."""
    if not isinstance(samples, int) or samples < 2:
        raise ValueError(f"expected at least 2 MC dropout samples, got {samples!r}")
    keys = jax.random.split(key, samples)

    def one(k):
        return base.apply(dict(variables), x, train=True, rngs={"dropout": k})

    return jax.vmap(one)(keys).astype(jnp.float32)


def mc_dropout_scores(member_logits: jax.Array) -> dict[str, jax.Array]:
    """``mc_dropout_msp`` (mean MSP), ``mc_dropout_entropy`` and ``mc_dropout_mi``
    (negated mutual information) of ``(T, B, C)`` sampled logits."""
    s = ensemble_scores(member_logits)
    return {
        "mc_dropout_msp": s["mean_msp"],
        "mc_dropout_entropy": s["neg_predictive_entropy"],
        "mc_dropout_mi": s["neg_mutual_information"],
    }
