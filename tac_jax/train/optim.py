"""Optimizers and learning-rate schedules from a config.

The chain is global-norm clipping, then SGD with momentum (weight decay added to the
gradient first, as PyTorch's SGD does) or AdamW (decoupled decay). Biases and
normalisation scales are never decayed. In TAC modes the result is wrapped by
`tac_jax.model.TACModel.optimizer`, so a frozen base gets zero updates and no state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "step", "cosine")

# Leaves with these names are biases or LayerNorm/BatchNorm scales (and TAC's own
# distance scale): decaying them pulls activations towards zero rather than regularising.
NO_DECAY_NAMES = frozenset({"bias", "scale"})


def _get(config: Any, name: str, default: Any) -> Any:
    value = config.get(name, default) if config is not None else default
    return default if value is None else value


def decay_boundaries(decay_at: Sequence[float], total_steps: int) -> list[int]:
    """Turns decay points into step counts: values below 1 are fractions of the run,
    values of 1 or more are step counts.

    Args:
      decay_at: increasing fractions in (0, 1) and/or steps >= 1.
      total_steps: the length of the run.

    Returns:
      The optimizer update counts at which the learning rate is multiplied.

    >>> decay_boundaries((0.5, 0.75), 100)
    [50, 75]
    >>> decay_boundaries((30, 60), 100)
    [30, 60]
    """
    steps = []
    for value in decay_at:
        if value <= 0:
            raise ValueError(f"expected decay points > 0, got {list(decay_at)}")
        steps.append(int(round(value * total_steps)) if value < 1 else int(value))
    if steps != sorted(steps):
        raise ValueError(f"expected increasing decay points, got {list(decay_at)}")
    return steps


def make_schedule(config: Any, learning_rate: float, total_steps: int) -> optax.Schedule:
    """A learning-rate schedule over optimizer update counts ``0 .. total_steps - 1``.

    Args:
      config: a mapping (or ConfigDict) with ``name`` (``"constant"``, ``"step"``,
        ``"cosine"``), ``warmup_steps`` (linear warm-up from ``lr / warmup_steps``),
        ``decay_at`` and ``decay_factor`` (step decay: multiply by the factor at each
        point; see `decay_boundaries`), ``end_factor`` (cosine: the final share of
        the rate).
      learning_rate: the peak rate.
      total_steps: the length of the run.

    Returns:
      ``schedule(count) -> learning rate``.

    >>> s = make_schedule({"name": "step", "decay_at": (0.5,)}, 0.1, 10)
    >>> [round(float(s(c)), 4) for c in (0, 4, 5, 9)]
    [0.1, 0.1, 0.01, 0.01]
    """
    name = _get(config, "name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"expected a schedule name in {SCHEDULES}, got {name!r}")
    if total_steps < 1:
        raise ValueError(f"expected total_steps >= 1, got {total_steps}")
    warmup = int(_get(config, "warmup_steps", 0))
    if not 0 <= warmup < total_steps:
        raise ValueError(f"expected 0 <= warmup_steps < total_steps={total_steps}, got {warmup}")
    factor = float(_get(config, "decay_factor", 0.1))
    end = float(_get(config, "end_factor", 0.0))
    boundaries = decay_boundaries(tuple(_get(config, "decay_at", ())), total_steps)
    if name == "step" and not boundaries:
        raise ValueError("expected at least one decay point for the 'step' schedule, got none")
    decay_steps = total_steps - warmup

    def schedule(count: jax.Array) -> jax.Array:
        count = jnp.asarray(count)
        if name == "step":
            drops = sum((count >= b).astype(jnp.int32) for b in boundaries)
            value = jnp.asarray(factor, jnp.float32) ** drops
        elif name == "cosine":
            progress = jnp.clip((count - warmup) / decay_steps, 0.0, 1.0)
            value = end + (1.0 - end) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
        else:
            value = jnp.ones((), jnp.float32)
        if warmup:
            value = jnp.where(count < warmup, (count + 1) / warmup, value)
        return learning_rate * value

    return schedule


def decay_mask(params: Any) -> Any:
    """True for the leaves weight decay applies to: all but biases and norm scales.

    >>> decay_mask({"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}})
    {'dense': {'bias': False, 'kernel': True}}
    """

    def leaf(path: tuple[Any, ...], _: Any) -> bool:
        last = path[-1] if path else None
        name = getattr(last, "key", getattr(last, "name", None))
        return name not in NO_DECAY_NAMES

    return jax.tree_util.tree_map_with_path(leaf, params)


def make_optimizer(
    optim: Mapping[str, Any] | Any,
    schedule: Mapping[str, Any] | Any,
    total_steps: int,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Builds the gradient transformation and its learning-rate schedule.

    Args:
      optim: ``name`` (``"sgd"`` or ``"adamw"``), ``learning_rate``, ``momentum`` and
        ``nesterov`` (SGD), ``b1``, ``b2``, ``eps`` (AdamW), ``weight_decay`` (0: none),
        ``clip_norm`` (global-norm clipping; 0: none; default 1.0).
      schedule: see `make_schedule`.
      total_steps: the length of the run.

    Returns:
      ``(tx, schedule)``; ``schedule(count)`` is the rate of update ``count`` (0-based).

    >>> tx, lr = make_optimizer({"name": "sgd", "learning_rate": 0.1}, {}, 100)
    >>> round(float(lr(0)), 6)
    0.1
    """
    name = _get(optim, "name", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"expected an optimizer name in {OPTIMIZERS}, got {name!r}")
    learning_rate = float(_get(optim, "learning_rate", 0.1))
    if learning_rate <= 0:
        raise ValueError(f"expected a positive learning_rate, got {learning_rate}")
    weight_decay = float(_get(optim, "weight_decay", 0.0))
    clip_norm = float(_get(optim, "clip_norm", 1.0))
    if weight_decay < 0 or clip_norm < 0:
        raise ValueError(
            f"expected non-negative weight_decay and clip_norm, got {weight_decay} and {clip_norm}"
        )
    lr = make_schedule(schedule, learning_rate, total_steps)
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    if name == "sgd":
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
        momentum = float(_get(optim, "momentum", 0.9))
        nesterov = bool(_get(optim, "nesterov", False))
        parts.append(optax.sgd(lr, momentum=momentum or None, nesterov=nesterov))
    else:
        parts.append(
            optax.adamw(
                lr,
                b1=float(_get(optim, "b1", 0.9)),
                b2=float(_get(optim, "b2", 0.999)),
                eps=float(_get(optim, "eps", 1e-8)),
                weight_decay=weight_decay,
                mask=decay_mask,
            )
        )
    return optax.chain(*parts), lr
