"""Scores of a set of predictive distributions: deep ensembles and MC dropout.

Both give ``M`` softmax distributions per input (``M`` members, or ``M`` dropout masks).
The prediction is the argmax of the mean ``p̄ = mean_m p_m``; the scores are oriented
higher = more confident (METHODS §5):

* ``mean_msp``: ``max_c p̄_c``;
* ``neg_predictive_entropy``: ``−H[p̄]``;
* ``neg_mutual_information``: ``−(H[p̄] − mean_m H[p_m])``, the members' disagreement
  (the epistemic part of the predictive entropy), negated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check(member_logits: jax.Array) -> jax.Array:
    if member_logits.ndim != 3:
        raise ValueError(
            f"expected (members, batch, classes) logits, got shape {member_logits.shape}"
        )
    return member_logits.astype(jnp.float32)


def _entropy(log_p: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def mean_log_probs(member_logits: jax.Array) -> jax.Array:
    """``log p̄``, ``(B, C)``: the log of the members' mean softmax (usable as logits).

    >>> z = jnp.log(jnp.array([[[0.9, 0.1]], [[0.5, 0.5]]]))
    >>> jnp.exp(mean_log_probs(z)).round(3).tolist()
    [[0.7, 0.3]]
    """
    log_p = jax.nn.log_softmax(_check(member_logits), axis=-1)
    return jax.nn.logsumexp(log_p, axis=0) - jnp.log(log_p.shape[0])


def ensemble_scores(member_logits: jax.Array) -> dict[str, jax.Array]:
    """``prediction`` and the three scores of ``(M, B, C)`` member logits.

    >>> same = jnp.log(jnp.array([[[0.5, 0.5]], [[0.5, 0.5]]]))
    >>> split = jnp.log(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]) + 1e-30)
    >>> float(ensemble_scores(same)["neg_mutual_information"][0])  # agree: no epistemic part
    0.0
    >>> round(float(ensemble_scores(split)["neg_mutual_information"][0]), 4)  # −log 2
    -0.6931
    """
    log_p = jax.nn.log_softmax(_check(member_logits), axis=-1)
    log_mean = jax.nn.logsumexp(log_p, axis=0) - jnp.log(log_p.shape[0])
    total = _entropy(log_mean)
    expected = jnp.mean(_entropy(log_p), axis=0)
    return {
        "prediction": jnp.argmax(log_mean, axis=-1),
        "mean_msp": jnp.max(jnp.exp(log_mean), axis=-1),
        "neg_predictive_entropy": -total,
        "neg_mutual_information": -jnp.maximum(total - expected, 0.0),
    }
