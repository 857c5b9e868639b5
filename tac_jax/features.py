"""Capturing intermediate activations from `flax.linen` modules, selecting and pooling them.

Features enter TAC one way only: as a flat ``{name: array}`` dict read from the
``intermediates`` collection. Our own models write it with
``self.sow("intermediates", name, x)``; modules we do not own are captured with
flax's ``capture_intermediates=`` and a name filter. Both end up here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import unfreeze

Features = dict[str, jax.Array]
_CALL = "__call__"


def feature_dict(intermediates: Mapping[str, Any]) -> Features:
    """Flattens an ``intermediates`` collection into ``{"path/to/name": array}``.

    Sown values are tuples (``sow`` appends); the last value is kept. Entries that
    ``capture_intermediates`` stores under ``__call__`` are named after their module.

    >>> feature_dict({"block1": {"relu": (jnp.ones(2),)}, "head": {"__call__": (jnp.ones(3),)}})
    ... # doctest: +SKIP
    {'block1/relu': Array([1., 1.]), 'head': Array([1., 1., 1.])}
    """
    out: Features = {}

    def visit(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                visit(value, path + (str(key),))
            return
        if isinstance(node, (tuple, list)):
            if not node:
                return
            node = node[-1]
        name_parts = path[:-1] if path and path[-1] == _CALL else path
        out["/".join(name_parts)] = node

    visit(unfreeze(intermediates) if not isinstance(intermediates, dict) else intermediates, ())
    return out


def _matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith("re:"):
        regex = re.compile(pattern[3:])
        return lambda name: regex.fullmatch(name) is not None
    if any(ch in pattern for ch in "*?["):
        return lambda name: fnmatch.fnmatchcase(name, pattern)
    return lambda name: name == pattern


def resolve_layers(available: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Names in ``available`` chosen by ``patterns``, in pattern order then name order.

    A pattern is an exact name, a glob (``"block*"``) or a regex prefixed ``"re:"``.

    Raises:
      ValueError: if a pattern matches no available name.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ValueError("expected at least one layer name or pattern, got none")
    chosen: list[str] = []
    for pattern in patterns:
        match = _matcher(pattern)
        hits = [name for name in available if match(name)]
        if not hits:
            raise ValueError(
                f"expected layer {pattern!r} among the recorded intermediates "
                f"{sorted(available)}, got no match"
            )
        chosen.extend(name for name in hits if name not in chosen)
    return chosen


def select_layers(features: Mapping[str, jax.Array], patterns: Sequence[str]) -> Features:
    """The features named by ``patterns`` (see `resolve_layers`), in that order."""
    return {name: features[name] for name in resolve_layers(list(features), patterns)}


def capture_filter(patterns: Sequence[str]) -> Callable[[nn.Module, str], bool]:
    """A ``capture_intermediates=`` filter keeping the ``__call__`` outputs of modules
    whose path (``"Dense_0"``, ``"encoder/block1"``) matches one of ``patterns``."""
    matchers = [_matcher(p) for p in patterns]

    def keep(module: nn.Module, method_name: str) -> bool:
        if method_name != _CALL or not module.path:
            return False
        name = "/".join(module.path)
        return any(m(name) for m in matchers)

    return keep


def pool(h: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean over every axis but the first (batch) and last (channel).

    Args:
      h: activations of shape ``(B, C)``, ``(B, T, C)``, ``(B, H, W, C)``, ...
      mask: optional ``(B, T)`` padding mask (1 = real token) for sequences ``(B, T, C)``;
        the mean is over real tokens only.

    Returns:
      ``(B, C)`` pooled features.

    >>> pool(jnp.arange(8.0).reshape(1, 2, 2, 2)).tolist()
    [[3.0, 4.0]]
    """
    if h.ndim < 2:
        raise ValueError(
            f"expected activations of rank >= 2 (batch, ..., channel), got shape {h.shape}"
        )
    if mask is None:
        if h.ndim == 2:
            return h
        return jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
    if h.ndim != 3 or mask.shape != h.shape[:2]:
        raise ValueError(
            f"expected a (batch, tokens) mask for (batch, tokens, channel) activations, "
            f"got mask shape {mask.shape} for activations of shape {h.shape}"
        )
    weights = mask.astype(h.dtype)[..., None]
    total = jnp.sum(h * weights, axis=1)
    count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    return total / count


def pooled_features(
    features: Mapping[str, jax.Array], layers: Sequence[str], mask: jax.Array | None = None
) -> Features:
    """Selects ``layers`` and pools each; the mask applies only to rank-3 features."""
    chosen = select_layers(features, layers)
    return {
        name: pool(h, mask if (mask is not None and h.ndim == 3) else None)
        for name, h in chosen.items()
    }
