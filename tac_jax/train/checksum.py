"""Content checksums of a checkpointed state: damage that orbax reads without an error.

Orbax stores arrays without a checksum of their values, so a flipped byte in an array
file restores silently into a different network. `tree_checksums` records, for every
leaf, the sha256 of its dtype, shape and bytes (C order) as computed on the host from the
arrays being saved; `mismatched_leaves` recomputes them after a restore. The digests are
of whole (logical) arrays, so they do not depend on the sharding saved or restored into.

A leaf that this process cannot see whole (sharded across processes, not replicated) is
left out: the check covers what process 0 holds. Leaves are hashed in a few threads
(hashlib releases the GIL), at about a gigabyte per second and core.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

SCHEME = "sha256 of dtype, shape and C-order bytes, per leaf"


def _host_array(x: Any) -> np.ndarray | None:
    """The whole value of a leaf on the host, or None if this process holds only part."""
    if isinstance(x, jax.Array):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return None
    if isinstance(x, np.ndarray | np.generic | bool | int | float | complex):
        return np.asarray(x)
    return None


def _digest(a: np.ndarray) -> dict[str, Any]:
    h = hashlib.sha256(f"{a.dtype.name}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    return {"dtype": a.dtype.name, "shape": list(a.shape), "sha256": h.hexdigest()}


def _digests(tree: Any) -> dict[str, dict[str, Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {jax.tree_util.keystr(path): _host_array(x) for path, x in leaves}
    arrays = {k: a for k, a in arrays.items() if a is not None}
    workers = max(1, min(8, os.cpu_count() or 1, len(arrays)))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(zip(arrays, pool.map(_digest, arrays.values()), strict=True))


def tree_checksums(tree: Any) -> dict[str, Any]:
    """The checksums of every leaf this process sees whole, JSON-serialisable.

    Args:
      tree: a pytree of arrays (jax or numpy) or scalars.

    Returns:
      ``{"scheme": ..., "leaves": {path: {"dtype", "shape", "sha256"}}}``.

    >>> import jax.numpy as jnp
    >>> sums = tree_checksums({"w": jnp.zeros(2)})
    >>> sums["leaves"]["['w']"]["shape"], len(sums["leaves"]["['w']"]["sha256"])
    ([2], 64)
    """
    return {"scheme": SCHEME, "leaves": _digests(tree)}


def mismatched_leaves(tree: Any, recorded: Mapping[str, Any]) -> list[str]:
    """The paths of the leaves of ``tree`` whose bytes differ from ``recorded``.

    Leaves missing on either side, or restored with another dtype or shape than was
    saved (a deliberate cast by the caller), are not compared; checksums of an unknown
    scheme are not compared at all.

    Args:
      tree: a restored pytree.
      recorded: what `tree_checksums` returned for the saved tree.

    Returns:
      The differing leaves' paths, sorted; empty when everything matches.

    Raises:
      ValueError: if ``recorded`` is not the mapping `tree_checksums` writes.

    >>> import jax.numpy as jnp
    >>> sums = tree_checksums({"w": jnp.zeros(2)})
    >>> mismatched_leaves({"w": jnp.zeros(2)}, sums), mismatched_leaves({"w": jnp.ones(2)}, sums)
    ([], ["['w']"])
    """
    if not isinstance(recorded, Mapping) or not isinstance(recorded.get("leaves"), Mapping):
        raise ValueError(f"expected recorded checksums with 'leaves', got {str(recorded)[:200]}")
    if recorded.get("scheme") != SCHEME:
        return []
    saved = recorded["leaves"]
    now = _digests(tree)
    bad = []
    for path, digest in now.items():
        old = saved.get(path)
        if not isinstance(old, Mapping):
            continue
        if (old.get("dtype"), old.get("shape")) != (digest["dtype"], digest["shape"]):
            continue
        if old.get("sha256") != digest["sha256"]:
            bad.append(path)
    return sorted(bad)
