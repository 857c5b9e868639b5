"""Scores from the geometry of the head's decision regions: fDBD and NCI.

Both read the penultimate features ``f`` the head ``z = f W + b`` reads, the head itself
and ``μ``, the mean training feature, and both are oriented higher = more
in-distribution:

- fDBD (Liu & Qin, ICML 2024): how far ``f`` is from the decision boundaries between its
  predicted class and the others, relative to how far it is from ``μ``. Confident
  in-distribution features sit deep inside their class region; OOD features lie near
  the boundaries for their distance from the data.
- NCI (Liu & Qin, CVPR 2025, arXiv 2311.01479): under neural collapse the centred
  features of a class align with that class's weight vector, and in-distribution
  features lie further from the origin than OOD ones; the score adds the alignment of
  ``f − μ`` with ``w_ŷ`` and a small multiple of the L1 norm of ``f``.

Fitting keeps the mean and the head (`fit_boundary`); both scores are jittable.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.scores.entry import FitData, Score, Stats, as_stats
from tac_jax.scores.feature import fit_features
from tac_jax.scores.logits import check_features, check_head

# NCI's weight on the L1 feature norm: OpenOOD v1.5's default (configs/postprocessors/
# nci.yml), the authors' own integration of the method.
NCI_ALPHA = 1e-4
_HI = jax.lax.Precision.HIGHEST
_TINY = 1e-12


class BoundaryStats(NamedTuple):
    """What fDBD and NCI read besides the features.

    Attributes:
      mean: ``(D,)`` the mean training feature ``μ``.
      kernel: ``(D, C)`` the head's kernel (flax ``Dense`` layout: ``z = f W + b``).
      bias: ``(C,)`` the head's bias.
      gaps: ``(C, C)`` ``‖w_i − w_j‖``, the norms of the weight differences that turn a
        logit margin into a distance to the ``i``/``j`` boundary.
    """

    mean: jax.Array
    kernel: jax.Array
    bias: jax.Array
    gaps: jax.Array


def weight_gaps(head_kernel: jax.Array) -> np.ndarray:
    """``(C, C)`` ``‖w_i − w_j‖`` between the columns of a ``(D, C)`` kernel (float64
    arithmetic, so the Gram expansion loses nothing that matters).

    >>> weight_gaps(np.array([[0.0, 3.0, 0.0], [0.0, 4.0, 4.0]])).tolist()
    [[0.0, 5.0, 4.0], [5.0, 0.0, 3.0], [4.0, 3.0, 0.0]]
    """
    w = np.asarray(head_kernel, np.float64)
    gram = w.T @ w
    sq = np.diag(gram)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)).astype(np.float32)


def fit_boundary(
    train_features: jax.Array, head_kernel: jax.Array, head_bias: jax.Array
) -> BoundaryStats:
    """The mean training feature and the head, as fDBD and NCI read them.

    Args:
      train_features: ``(N, D)`` in-distribution penultimate features.
      head_kernel: ``(D, C)`` the head's kernel, ``C >= 2``.
      head_bias: ``(C,)`` the head's bias.

    Returns:
      `BoundaryStats`.

    >>> kernel = np.array([[1.0, -1.0], [0.0, 0.0]])
    >>> stats = fit_boundary(np.array([[0.0, 1.0], [2.0, 3.0]]), kernel, np.zeros(2))
    >>> stats.mean.tolist(), stats.gaps.tolist()
    ([1.0, 2.0], [[0.0, 2.0], [2.0, 0.0]])
    """
    f = np.asarray(train_features)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected training features of shape (N >= 1, dim), got shape {f.shape}")
    kernel, bias = check_head(head_kernel, head_bias, f.shape[1])
    if kernel.shape[1] < 2:
        raise ValueError(f"expected a head of at least 2 classes, got {kernel.shape[1]}")
    # A float64 accumulator (numpy buffers the cast), so large N loses no precision.
    mean = np.mean(f, axis=0, dtype=np.float64).astype(np.float32)
    return BoundaryStats(jnp.asarray(mean), kernel, bias, jnp.asarray(weight_gaps(kernel)))


def _logits(stats: BoundaryStats, features: jax.Array) -> tuple[jax.Array, jax.Array]:
    f = check_features(features)
    if f.shape[1] != stats.mean.shape[0]:
        raise ValueError(
            f"expected features of dimension {stats.mean.shape[0]}, got shape {f.shape}"
        )
    return f, jnp.matmul(f, stats.kernel, precision=_HI) + stats.bias


def _distance_to_mean(stats: BoundaryStats, f: jax.Array) -> tuple[jax.Array, jax.Array]:
    centred = f - stats.mean
    return centred, jnp.linalg.norm(centred, axis=-1)


@jax.jit
def fdbd_score(stats: BoundaryStats, features: jax.Array) -> jax.Array:
    """fDBD: the mean distance to the decision boundaries of the predicted class, over
    the distance to the training mean.

    ``mean_{j ≠ ŷ} |z_ŷ − z_j| / ‖w_ŷ − w_j‖ / ‖f − μ‖`` with ``z = f W + b`` and
    ``ŷ = argmax z``: the numerator's terms are the Euclidean distances from ``f`` to
    the hyperplanes where class ``j`` would tie with ``ŷ``. (OpenOOD sums instead of
    averaging, which ranks the same.) Identical weight columns give an (effectively)
    infinite distance, and ``f = μ`` a very large score, never NaN.

    Args:
      stats: from `fit_boundary`.
      features: ``(B, D)`` penultimate features.

    Returns:
      ``(B,)`` scores, ``>= 0``.

    >>> kernel, gaps = jnp.array([[1.0, -1.0], [0.0, 0.0]]), jnp.array([[0.0, 2.0], [2.0, 0.0]])
    >>> stats = BoundaryStats(jnp.array([3.0, 0.0]), kernel, jnp.zeros(2), gaps)
    >>> fdbd_score(stats, jnp.array([[3.0, 4.0]])).tolist()  # z = (3, −3): (6 / 2) / 4
    [0.75]
    """
    f, z = _logits(stats, features)
    classes = z.shape[1]
    if classes < 2:
        raise ValueError(f"expected a head of at least 2 classes, got {classes}")
    pred = jnp.argmax(z, axis=-1)
    margin = jnp.max(z, axis=-1, keepdims=True) - z
    distance = margin / jnp.maximum(stats.gaps[pred], _TINY)
    others = jnp.arange(classes) != pred[:, None]
    mean_distance = jnp.sum(jnp.where(others, distance, 0.0), axis=-1) / (classes - 1)
    _, to_mean = _distance_to_mean(stats, f)
    return mean_distance / jnp.maximum(to_mean, _TINY)


@functools.partial(jax.jit, static_argnames="alpha")
def nci_score(stats: BoundaryStats, features: jax.Array, alpha: float = NCI_ALPHA) -> jax.Array:
    """NCI: ``w_ŷᵀ(f − μ) / ‖f − μ‖ + α‖f‖₁``.

    The first term is the proximity of the centred feature to the predicted class's
    weight vector (a cosine up to ``‖w_ŷ‖``, which neural collapse makes equal across
    classes; the authors' code divides by ``‖f − μ‖`` only, as here), the second a
    filter that favours features far from the origin. ``f = μ`` gives 0 proximity.

    Args:
      stats: from `fit_boundary` (its ``gaps`` are not read).
      features: ``(B, D)`` penultimate features.
      alpha: the L1-norm weight ``α >= 0`` (default `NCI_ALPHA`).

    Returns:
      ``(B,)`` scores.

    >>> stats = BoundaryStats(jnp.zeros(2), jnp.array([[1.0, -1.0], [0.0, 0.0]]), jnp.zeros(2),
    ...                       jnp.zeros((2, 2)))
    >>> print(nci_score(stats, jnp.array([[3.0, 4.0]]), alpha=0.1).round(4))  # 3/5 + 0.1·7
    [1.3]
    """
    if isinstance(alpha, (int, float)) and alpha < 0:
        raise ValueError(f"expected a non-negative alpha, got {alpha}")
    f, z = _logits(stats, features)
    w_pred = stats.kernel.T[jnp.argmax(z, axis=-1)]
    centred, to_mean = _distance_to_mean(stats, f)
    proximity = jnp.sum(w_pred * centred, axis=-1) / jnp.maximum(to_mean, _TINY)
    return proximity + alpha * jnp.sum(jnp.abs(f), axis=-1)


# -- The registry's entries (`tac_jax.scores.entry`) -----------------------------------


def _fit(data: FitData) -> Stats | None:
    if data.head is None or np.shape(data.head[0])[1] < 2:
        return None
    return as_stats(fit_boundary(fit_features(data), *data.head))


ENTRIES = (
    Score(
        "fdbd",
        "boundary",
        "mean_{j≠ŷ} |z_ŷ − z_j| / ‖w_ŷ − w_j‖, divided by ‖f − μ‖: the mean distance of f "
        "to the decision boundaries of its predicted class ŷ over its distance to the "
        "training mean μ (fDBD)",
        lambda v: fdbd_score(BoundaryStats(**v.stats("fdbd")), v.features),
        needs=("fit", "features", "head"),
        fit=_fit,
    ),
    Score(
        "nci",
        "boundary",
        f"w_ŷᵀ(f − μ)/‖f − μ‖ + α‖f‖₁, α = {NCI_ALPHA:g}: alignment of the centred feature "
        "with the predicted class's weight plus an L1 feature-norm term (NCI; μ the "
        "training mean)",
        lambda v: nci_score(BoundaryStats(**v.stats("nci")), v.features),
        needs=("fit", "features", "head"),
        fit=_fit,
    ),
)
