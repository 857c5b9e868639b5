"""Learned confidence (DeVries & Taylor, 2018): a confidence branch trained with hints.

Beside the classifier's softmax ``p`` a branch ``c = sigmoid(w·f + b) ∈ (0, 1)`` reads the
penultimate features ``f``. On about half the batch the network gets *hints*: with
``u ~ U(0, 1)`` and ``b ~ Bernoulli(u)`` per example,

    c' = b·c + (1 − b),    p' = c'·p + (1 − c')·onehot(y),

so a low ``c`` buys a prediction nudged towards the label, at the price of the penalty
``−log c``. The loss is ``−mean log p'_y + λ·(−mean log c)``; λ starts at 0.1 and follows
the budget β every step: ``λ ← λ/1.01`` when the confidence loss is below β, else
``λ ← λ/0.99`` (METHODS §2). ``c`` (higher = more confident) is the score; at test time
the input may first move one signed-gradient step that raises ``c``
(`perturb_towards_confidence`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

EPS = 1e-12
# The test-time step of the perturbed confidence (DeVries & Taylor tune it on OOD data;
# this default is fixed beforehand, in the units of images in [0, 1]).
CONFIDENCE_EPSILON = 0.002
LAMBDA_INIT = 0.1
BUDGET = 0.3


def _clip(p: jax.Array) -> jax.Array:
    return jnp.clip(p, EPS, 1.0 - EPS)


def hinted_predictions(
    key: jax.Array, probs: jax.Array, confidence: jax.Array, onehot: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The hinted ``(p', c')``: ``c' = b·c + 1 − b``, ``p' = c'·p + (1 − c')·onehot``.

    Args:
      key: PRNG key for ``u ~ U(0, 1)`` and ``b ~ Bernoulli(u)`` (one per example).
      probs: ``(B, C)`` softmax probabilities.
      confidence: ``(B,)`` confidences in (0, 1).
      onehot: ``(B, C)`` one-hot labels.

    Returns:
      ``(p' (B, C), c' (B,))``.
    """
    if probs.shape != onehot.shape or confidence.shape != probs.shape[:1]:
        raise ValueError(
            f"expected probs and onehot of one shape (B, C) and confidence (B,), got "
            f"{probs.shape}, {onehot.shape} and {confidence.shape}"
        )
    key_u, key_b = jax.random.split(key)
    u = jax.random.uniform(key_u, confidence.shape)
    b = jax.random.bernoulli(key_b, u).astype(confidence.dtype)
    c = b * confidence + (1.0 - b)
    p = c[:, None] * probs + (1.0 - c[:, None]) * onehot
    return p, c


def confidence_loss(
    key: jax.Array,
    logits: jax.Array,
    confidence_logit: jax.Array,
    onehot: jax.Array,
    lmbda: jax.Array | float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``−mean log p'_y + λ·(−mean log c)`` with hints, and its two parts.

    Args:
      key: PRNG key of the hints.
      logits: ``(B, C)`` classifier logits.
      confidence_logit: ``(B,)`` the branch's pre-sigmoid output.
      onehot: ``(B, C)`` targets (one-hot, or soft).
      lmbda: the current λ.

    Returns:
      ``(loss, {"nll", "confidence_loss", "confidence"})``; ``confidence_loss`` is
      ``−mean log c``, what the budget compares with β.

    >>> z = jnp.array([[0.0, 0.0]])
    >>> loss, parts = confidence_loss(jax.random.key(0), z, jnp.array([20.0]),
    ...                               jnp.array([[1.0, 0.0]]), 0.1)
    >>> round(float(parts["nll"]), 4)  # c ≈ 1: no hint can move p' off p
    0.6931
    """
    probs = _clip(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    confidence = _clip(jax.nn.sigmoid(confidence_logit.astype(jnp.float32)))
    p, _ = hinted_predictions(key, probs, confidence, onehot.astype(jnp.float32))
    nll = -jnp.mean(jnp.sum(jnp.log(_clip(p)) * onehot, axis=-1))
    conf_loss = -jnp.mean(jnp.log(confidence))
    loss = nll + lmbda * conf_loss
    return loss, {"nll": nll, "confidence_loss": conf_loss, "confidence": jnp.mean(confidence)}


def update_lambda(lmbda: jax.Array, conf_loss: jax.Array, budget: float = BUDGET) -> jax.Array:
    """One step of the budget: ``λ/1.01`` if the confidence loss is under β, else ``λ/0.99``.

    >>> float(update_lambda(jnp.float32(0.1), jnp.float32(0.5), 0.3)) > 0.1
    True
    """
    return jnp.where(conf_loss < budget, lmbda / 1.01, lmbda / 0.99).astype(jnp.float32)


def perturb_towards_confidence(
    confidence_logit_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    epsilon: float,
    *,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> jax.Array:
    """DeVries & Taylor's test-time step ``x̃ = x − ε·sign(∇_x(−log c(x)))``.

    The step raises every example's confidence; in-distribution inputs gain more than
    OOD ones. Our inputs live in [0, 1], so the result is clipped back there.

    Args:
      confidence_logit_fn: ``x → (B,)`` pre-sigmoid confidences (examples independent).
      x: ``(B, ...)`` inputs.
      epsilon: the step size in input units.
      clip: the valid input range, or None.

    >>> f = lambda x: 4.0 * x[:, 0]
    >>> perturb_towards_confidence(f, jnp.array([[0.5]]), 0.1).tolist()
    [[0.6000000238418579]]
    """

    def neg_log_c(x):
        return -jnp.sum(jax.nn.log_sigmoid(confidence_logit_fn(x).astype(jnp.float32)))

    g = jax.grad(neg_log_c)(x.astype(jnp.float32))
    out = x - epsilon * jnp.sign(g)
    if clip is not None:
        out = jnp.clip(out, clip[0], clip[1])
    return out.astype(x.dtype)
