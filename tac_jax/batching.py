"""Batched application of a jitted function over large arrays, without recompiling.

The last, short batch is padded to the full batch size, so the function sees one
shape and compiles once; padded rows are dropped from the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np


def padded_batches(arrays: Any, batch_size: int) -> Iterator[tuple[Any, int]]:
    """Yields ``(batch, valid)``: pytrees of ``batch_size`` rows and how many are real.

    Padding repeats the last real row, so the function sees valid inputs.
    """
    leaves = jax.tree_util.tree_leaves(arrays)
    if not leaves:
        raise ValueError("expected at least one array to batch, got an empty pytree")
    sizes = {np.shape(x)[0] for x in leaves}
    if len(sizes) != 1:
        raise ValueError(f"expected arrays with one leading size, got sizes {sorted(sizes)}")
    if batch_size < 1:
        raise ValueError(f"expected a positive batch size, got {batch_size}")
    (total,) = sizes
    if total == 0:
        raise ValueError("expected at least one example to batch, got 0")
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        valid = stop - start

        def take(x: Any, start: int = start, stop: int = stop, valid: int = valid) -> np.ndarray:
            part = np.asarray(x[start:stop])
            if valid == batch_size:
                return part
            pad = np.repeat(part[-1:], batch_size - valid, axis=0)
            return np.concatenate([part, pad], axis=0)

        yield jax.tree_util.tree_map(take, arrays), valid


def batched_apply(
    fn: Callable[..., Any],
    arrays: Any,
    batch_size: int,
    *,
    progress: Callable[[Iterator], Iterator] | None = None,
) -> Any:
    """Applies ``fn`` to ``arrays`` in fixed-size batches and concatenates the outputs.

    Args:
      fn: a (jitted) function from a batch pytree to a pytree of ``(batch, ...)`` arrays.
      arrays: a pytree of arrays with one leading size ``N``.
      batch_size: rows per call; the last batch is padded, so ``fn`` compiles once.
      progress: optional wrapper for the batch iterator (e.g. ``tqdm``).

    Returns:
      ``fn``'s output pytree with ``N`` rows, as numpy arrays.

    >>> import jax.numpy as jnp
    >>> batched_apply(jax.jit(lambda x: x * 2), np.arange(5.0), 2).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    batches = padded_batches(arrays, batch_size)
    if progress is not None:
        batches = progress(batches)
    outputs, valids = [], []
    for batch, valid in batches:
        outputs.append(fn(batch))  # Dispatch is asynchronous; convert after the loop.
        valids.append(valid)
    parts = [
        jax.tree_util.tree_map(lambda x, v=v: np.asarray(x)[:v], out)
        for out, v in zip(outputs, valids, strict=True)
    ]
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *parts)
