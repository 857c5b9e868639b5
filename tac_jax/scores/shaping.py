"""Activation shaping, then energy: SCALE and ASH-S.

Both reshape each input's penultimate activations ``a`` (``(D,)``, what the head reads)
by its own percentile-``p`` threshold, then score with the energy of the head's logits,
``logsumexp(a' W + b)``; the threshold is per sample, so nothing but the head is fitted.
With ``k = D − round(D·p/100)`` (at least 1) the number of activations above the
threshold and ``r = Σ_i a_i / Σ_{top k} a_i``:

- ASH-S (Djurisic et al., ICLR 2023): ``a' = exp(r) · a ⊙ [a among its k largest]``,
  pruning below the threshold and sharpening what is left;
- SCALE (Xu et al., ICLR 2024): ``a' = exp(r) · a``, the same sharpening without the
  pruning (the paper shows pruning is what hurts).

In-distribution inputs concentrate less of their activation in the top ``k``, so their
``r`` and energy grow more. As in the papers' code, the top ``k`` are counted (ties
broken by position), not compared with a threshold value.

Both methods assume non-negative, post-ReLU activations (then ``1 <= r <= D/k``). So
that features with negative entries still give finite scores, ``r`` is computed from
the positive parts ``max(a, 0)`` (the same for non-negative features, and still in
``[1, D/k]``); an input with no positive activation gets ``r = 1``. The shaping itself
multiplies ``a`` as it is. Both functions are jittable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tac_jax.scores.entry import FitData, Score, Stats
from tac_jax.scores.logits import check_features, check_head

# The papers' percentiles: SCALE's p = 85 (its code's and OpenOOD v1.5's default),
# ASH-S's p = 90 (its ImageNet headline setting and its code's CIFAR-10 config).
SCALE_PERCENTILE = 85.0
ASH_PERCENTILE = 90.0
_HI = jax.lax.Precision.HIGHEST


def kept_count(dim: int, percentile: float) -> int:
    """``k = D − round(D·p/100)``, at least 1: how many activations lie above the
    percentile-``p`` threshold (rounded half to even, as ``np.round`` in the papers'
    code).

    >>> kept_count(2048, 90), kept_count(512, 85), kept_count(4, 100)
    (205, 77, 1)
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"expected a percentile in [0, 100], got {percentile}")
    return max(dim - round(dim * percentile / 100.0), 1)


def _top(features: jax.Array, percentile: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The features as float32, their ``k`` largest entries' indices and ``r``."""
    a = check_features(features, "penultimate features")
    top, index = jax.lax.top_k(a, kept_count(a.shape[1], percentile))
    total = jnp.sum(jnp.maximum(a, 0.0), axis=-1)
    kept = jnp.sum(jnp.maximum(top, 0.0), axis=-1)
    # kept >= total·k/D > 0 whenever total > 0; no positive entry at all: r = 1.
    ratio = jnp.where(kept > 0, total / jnp.where(kept > 0, kept, 1.0), 1.0)
    return a, index, ratio


def _energy(a: jax.Array, head_kernel: jax.Array, head_bias: jax.Array) -> jax.Array:
    kernel, bias = check_head(head_kernel, head_bias, a.shape[1])
    return jax.nn.logsumexp(jnp.matmul(a, kernel, precision=_HI) + bias, axis=-1)


@functools.partial(jax.jit, static_argnames="percentile")
def scale_energy(
    features: jax.Array,
    head_kernel: jax.Array,
    head_bias: jax.Array,
    percentile: float = SCALE_PERCENTILE,
) -> jax.Array:
    """SCALE: ``logsumexp(exp(r)·a W + b)``, ``r = Σa / Σ_{top k} a``.

    Args:
      features: ``(B, D)`` penultimate activations, assumed non-negative (see the
        module docstring for negative entries).
      head_kernel: ``(D, C)`` the head's kernel (flax ``Dense`` layout).
      head_bias: ``(C,)`` the head's bias.
      percentile: ``p`` in ``[0, 100]``; the top ``k = D − round(D·p/100)`` are kept.

    Returns:
      ``(B,)`` energies, higher = more in-distribution.

    >>> a = jnp.array([[2.0, 2.0, 1.0, 1.0]])  # p = 50: k = 2, r = 6 / 4
    >>> round(float(scale_energy(a, jnp.ones((4, 1)), jnp.zeros(1), 50.0)[0]), 4)  # e^1.5·6
    26.8901
    """
    a, _, ratio = _top(features, percentile)
    return _energy(a * jnp.exp(ratio)[:, None], head_kernel, head_bias)


@functools.partial(jax.jit, static_argnames="percentile")
def ash_s_energy(
    features: jax.Array,
    head_kernel: jax.Array,
    head_bias: jax.Array,
    percentile: float = ASH_PERCENTILE,
) -> jax.Array:
    """ASH-S: ``logsumexp(exp(r)·(a ⊙ m) W + b)``, ``m`` the mask of the ``k`` largest
    activations and ``r = Σa / Σ_{top k} a``.

    Args:
      features: ``(B, D)`` penultimate activations, assumed non-negative (see the
        module docstring for negative entries).
      head_kernel: ``(D, C)`` the head's kernel (flax ``Dense`` layout).
      head_bias: ``(C,)`` the head's bias.
      percentile: ``p`` in ``[0, 100]``; the top ``k = D − round(D·p/100)`` are kept.

    Returns:
      ``(B,)`` energies, higher = more in-distribution.

    >>> a = jnp.array([[2.0, 2.0, 1.0, 1.0]])  # p = 50: keeps 2 + 2, r = 6 / 4
    >>> round(float(ash_s_energy(a, jnp.ones((4, 1)), jnp.zeros(1), 50.0)[0]), 4)  # e^1.5·4
    17.9268
    """
    a, index, ratio = _top(features, percentile)
    rows = jnp.arange(a.shape[0])[:, None]
    keep = jnp.zeros(a.shape, bool).at[rows, index].set(True)
    shaped = jnp.where(keep, a, 0.0) * jnp.exp(ratio)[:, None]
    return _energy(shaped, head_kernel, head_bias)


# -- The registry's entries (`tac_jax.scores.entry`) -----------------------------------


def _fit_head(data: FitData) -> Stats | None:
    # The percentile is each input's own: the head is all there is to keep.
    if data.head is None:
        return None
    kernel, bias = data.head
    return {"kernel": kernel, "bias": bias}


def _scale(v) -> jax.Array:
    s = v.stats("scale")
    return scale_energy(v.features, s["kernel"], s["bias"])


def _ash_s(v) -> jax.Array:
    s = v.stats("ash_s")
    return ash_s_energy(v.features, s["kernel"], s["bias"])


ENTRIES = (
    Score(
        "scale",
        "shaping",
        f"logsumexp(exp(r)·f W + b), r = Σf / Σ of the k = D − round(D·p/100) largest "
        f"entries of f, p = {SCALE_PERCENTILE:g} (SCALE; post-ReLU features)",
        _scale,
        needs=("fit", "features", "head"),
        fit=_fit_head,
    ),
    Score(
        "ash_s",
        "shaping",
        f"logsumexp(exp(r)·(f ⊙ m) W + b), m keeping the k = D − round(D·p/100) largest "
        f"entries of f, r = Σf / Σ of those, p = {ASH_PERCENTILE:g} (ASH-S; post-ReLU "
        "features)",
        _ash_s,
        needs=("fit", "features", "head"),
        fit=_fit_head,
    ),
)
