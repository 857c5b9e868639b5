"""The total activation vector: per-layer projection, slicing and reduction.

For each tapped layer ``l`` with pooled features ``f_l ∈ R^{C_l}`` (METHODS §1):
a trainable projection ``P_l: R^{C_l} → R^{C_l}``, a split into ``k`` slices, and one
scalar per slice. The vector ``a = concat_l a_l`` has length ``M = L · k`` and lines up
with the class-code matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PROJECTIONS = ("none", "small", "large", "very_large")
SLICINGS = ("uniform", "random")
REDUCTIONS = ("mean", "median")


def slice_assignment(
    channels: int, width: int, slicing: str = "uniform", seed: int = 0
) -> np.ndarray:
    """Channel indices of each slice, ``(width, channels // width)``.

    ``"uniform"`` takes contiguous slices of size ``s = channels // width`` (leftover
    channels dropped); ``"random"`` a fixed random assignment of ``width * s`` channels.

    >>> slice_assignment(5, 2).tolist()
    [[0, 1], [2, 3]]
    """
    if slicing not in SLICINGS:
        raise ValueError(f"expected a slicing in {SLICINGS}, got {slicing!r}")
    if channels < width:
        raise ValueError(
            f"expected at least {width} channels to cut into {width} slices, got {channels}"
        )
    size = channels // width
    if slicing == "uniform":
        order = np.arange(width * size)
    else:
        order = np.random.default_rng(seed).permutation(channels)[: width * size]
    return order.reshape(width, size)


def reduce_slices(
    f: jax.Array, assignment: np.ndarray | jax.Array, reduction: str = "mean"
) -> jax.Array:
    """Reduces each slice of ``f`` (``(B, C_l)``) to a scalar → ``(B, width)``.

    >>> reduce_slices(jnp.array([[1.0, 3.0, 5.0, 9.0]]), np.array([[0, 1], [2, 3]])).tolist()
    [[2.0, 7.0]]
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"expected a reduction in {REDUCTIONS}, got {reduction!r}")
    if f.ndim != 2:
        raise ValueError(f"expected pooled features of shape (batch, channels), got {f.shape}")
    groups = f[:, assignment]  # (B, width, size)
    if reduction == "mean":
        return jnp.mean(groups, axis=-1)
    return jnp.median(groups, axis=-1)


class Projection(nn.Module):
    """A per-layer projection ``R^{C} → R^{C}``.

    Attributes:
      kind: ``"none"``; ``"small"`` (one Dense); ``"large"`` (Dense-ReLU-Dense);
        ``"very_large"`` (Dense-ReLU-Dense-ReLU-Dense).
      layer_norm: LayerNorm before each ReLU.
      bottleneck: hidden width as a fraction of ``C`` (1.0 keeps ``C``).
    """

    kind: str = "small"
    layer_norm: bool = False
    bottleneck: float = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, f: jax.Array) -> jax.Array:
        if self.kind not in PROJECTIONS:
            raise ValueError(f"expected a projection in {PROJECTIONS}, got {self.kind!r}")
        if self.kind == "none":
            return f
        channels = f.shape[-1]
        hidden = max(1, int(round(channels * self.bottleneck)))
        depth = {"small": 1, "large": 2, "very_large": 3}[self.kind]
        h = f
        for i in range(depth):
            last = i == depth - 1
            h = nn.Dense(channels if last else hidden, dtype=self.dtype, name=f"dense{i + 1}")(h)
            if not last:
                if self.layer_norm:
                    h = nn.LayerNorm(dtype=self.dtype, name=f"norm{i + 1}")(h)
                h = nn.relu(h)
        return h


class TACHead(nn.Module):
    """Maps pooled per-layer features to the total activation vector ``(B, L · width)``.

    Attributes:
      layers: names of the tapped layers, in code-block order.
      width: slices per layer (the code block width ``k``).
      projection, layer_norm, bottleneck: see `Projection`.
      slicing: ``"uniform"`` or ``"random"`` (fixed by ``seed``).
      reduction: ``"mean"`` or ``"median"``.
      seed: seeds the random slicing (per layer: ``seed + index``).
    """

    layers: Sequence[str]
    width: int
    projection: str = "small"
    layer_norm: bool = False
    bottleneck: float = 1.0
    slicing: str = "uniform"
    reduction: str = "mean"
    seed: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pooled: Mapping[str, jax.Array]) -> jax.Array:
        missing = [name for name in self.layers if name not in pooled]
        if missing:
            raise ValueError(
                f"expected pooled features for layers {list(self.layers)}, "
                f"got {sorted(pooled)} (missing {missing})"
            )
        batch = {pooled[name].shape[0] for name in self.layers}
        if len(batch) != 1:
            raise ValueError(f"expected one batch size across layers, got sizes {sorted(batch)}")
        blocks = []
        for index, name in enumerate(self.layers):
            f = pooled[name]
            f = Projection(
                self.projection,
                self.layer_norm,
                self.bottleneck,
                self.dtype,
                name=f"proj_{index}",
            )(f)
            assignment = slice_assignment(f.shape[-1], self.width, self.slicing, self.seed + index)
            blocks.append(reduce_slices(f.astype(jnp.float32), assignment, self.reduction))
        return jnp.concatenate(blocks, axis=-1)
