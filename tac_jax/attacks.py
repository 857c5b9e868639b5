"""Adversarial attacks on any ``x → (B, C) logits`` function (METHODS §1).

FGSM and projected gradient ascent (PGD, L∞ or L2) maximise the cross-entropy of the
true labels. They are model-agnostic: `base_logits_fn` targets a `TACModel`'s base
head (the default in the paper's evaluation) and `tac_logits_fn` targets TAC's code
distances through the logits ``−‖a − K_j‖₁``. `adversarial_half_batch` perturbs the
first half of a training batch, as the authors' adversarial training does.

The loss is summed over the batch, so each example's input gradient is its own: the
logits function must treat examples independently (inference-mode BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from tac_jax.losses import check_code_shapes

NORMS = ("linf", "l2")
LogitsFn = Callable[[jax.Array], jax.Array]
Clip = tuple[float, float] | None


# -- checks ----------------------------------------------------------------------------


def _check_epsilon(epsilon: Any) -> None:
    # A traced epsilon (passed through jit) cannot be checked here.
    if isinstance(epsilon, (int, float)) and epsilon < 0:
        raise ValueError(f"expected a non-negative epsilon, got {epsilon}")


def _check_batch(x: jax.Array, y: jax.Array) -> None:
    if jnp.ndim(x) < 1:
        raise ValueError(f"expected a batch of inputs of rank >= 1, got shape {jnp.shape(x)}")
    if jnp.shape(y) != jnp.shape(x)[:1]:
        raise ValueError(
            f"expected one integer label per input, shape {jnp.shape(x)[:1]}, "
            f"got labels of shape {jnp.shape(y)}"
        )


def _check_clip(clip: Clip) -> None:
    if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
        raise ValueError(f"expected clip=(low, high) with low < high, or None, got {clip}")


def _clip(x: jax.Array, clip: Clip) -> jax.Array:
    return x if clip is None else jnp.clip(x, clip[0], clip[1])


# -- the loss and its input gradient ---------------------------------------------------


def _cross_entropy_sum(logits_fn: LogitsFn, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = logits_fn(x)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(
            f"expected logits_fn to return (batch, classes) = ({x.shape[0]}, C) logits, "
            f"got shape {logits.shape}"
        )
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.take_along_axis(log_p, y[:, None].astype(jnp.int32), axis=-1))


def _input_grad(logits_fn: LogitsFn, x: jax.Array, y: jax.Array) -> jax.Array:
    return jax.grad(_cross_entropy_sum, argnums=1)(logits_fn, x, y)


def _per_example_l2(v: jax.Array) -> jax.Array:
    """``‖v_i‖₂`` broadcastable against ``v``."""
    axes = tuple(range(1, v.ndim))
    return jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True))


# -- attacks ---------------------------------------------------------------------------


def fgsm(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    epsilon: float | jax.Array,
    *,
    clip: Clip = (0.0, 1.0),
) -> jax.Array:
    """Fast gradient sign method: ``x + ε·sign(∇_x CE(f(x), y))``, clipped to the range.

    Args:
      logits_fn: ``x → (B, C)`` logits.
      x: ``(B, ...)`` inputs.
      y: ``(B,)`` integer labels.
      epsilon: the L∞ step ``ε ≥ 0``.
      clip: the valid input range ``(low, high)``, or ``None`` for no clipping.

    Returns:
      Adversarial inputs, shaped and typed like ``x``.

    >>> f = lambda x: jnp.concatenate([x, -x], axis=-1)
    >>> fgsm(f, jnp.array([[0.5]]), jnp.array([0]), 0.25).tolist()
    [[0.25]]
    """
    _check_epsilon(epsilon)
    _check_batch(x, y)
    _check_clip(clip)
    g = _input_grad(logits_fn, x, y)
    return _clip(x + epsilon * jnp.sign(g), clip).astype(x.dtype)


def _random_start(key: jax.Array, x: jax.Array, epsilon: Any, norm: str) -> jax.Array:
    if norm == "linf":
        return jax.random.uniform(key, x.shape, jnp.float32, -1.0, 1.0) * epsilon
    # Uniform in the L2 ball: an isotropic direction and a radius ε·U^(1/d), where d is
    # the per-example dimension, so that volume (not radius) is uniform.
    key_dir, key_rad = jax.random.split(key)
    direction = jax.random.normal(key_dir, x.shape, jnp.float32)
    direction = direction / jnp.maximum(_per_example_l2(direction), 1e-12)
    d = x[0].size
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    radius = epsilon * jax.random.uniform(key_rad, shape) ** (1.0 / d)
    return direction * radius


def _ascent_direction(g: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent step of unit size in ``norm`` for a first-order model."""
    if norm == "linf":
        return jnp.sign(g)
    return g / jnp.maximum(_per_example_l2(g), 1e-12)


def _project(delta: jax.Array, epsilon: Any, norm: str) -> jax.Array:
    if norm == "linf":
        return jnp.clip(delta, -epsilon, epsilon)
    scale = jnp.minimum(1.0, epsilon / jnp.maximum(_per_example_l2(delta), 1e-12))
    return delta * scale


def pgd(
    logits_fn: LogitsFn,
    x: jax.Array,
    y: jax.Array,
    epsilon: float | jax.Array,
    *,
    key: jax.Array | None = None,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | jax.Array | None = None,
    random_start: bool = True,
    clip: Clip = (0.0, 1.0),
) -> jax.Array:
    """Projected gradient ascent of the cross-entropy inside an ε-ball around ``x``.

    Each step moves by ``α·sign(g)`` (L∞) or ``α·g/‖g‖₂`` (L2, per example), then
    projects onto the ε-ball around ``x`` and onto the valid range. Clipping to a box
    that contains ``x`` only shrinks each coordinate of the perturbation, so the result
    stays inside the ball. The last iterate is returned.

    Args:
      logits_fn: ``x → (B, C)`` logits.
      x: ``(B, ...)`` inputs (inside ``clip``).
      y: ``(B,)`` integer labels.
      epsilon: the ball's radius ``ε ≥ 0``.
      key: PRNG key for the random start (required when ``random_start``).
      norm: ``"linf"`` or ``"l2"``.
      steps: number of gradient steps (a Python int).
      step_size: ``α``; default ``ε/10`` for L∞ (the authors' choice with 10 steps)
        and ``2.5·ε/steps`` for L2.
      random_start: start from ``x + δ₀`` with ``δ₀ ~ U(−ε, ε)`` per coordinate (L∞)
        or uniform in the L2 ball (uniform in volume: an isotropic direction and the
        radius ``ε·U^(1/d)``).
      clip: the valid input range ``(low, high)``, or ``None``.

    Returns:
      Adversarial inputs, shaped and typed like ``x``.

    >>> f = lambda x: jnp.concatenate([x, -x], axis=-1)
    >>> x_adv = pgd(f, jnp.array([[0.5]]), jnp.array([0]), 0.2, steps=4, step_size=0.1,
    ...             random_start=False)
    >>> print(x_adv)
    [[0.3]]
    """
    _check_epsilon(epsilon)
    _check_batch(x, y)
    _check_clip(clip)
    if norm not in NORMS:
        raise ValueError(f"expected a norm in {NORMS}, got {norm!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"expected a non-negative integer number of steps, got {steps!r}")
    if random_start and key is None:
        raise ValueError("expected a PRNG key for random_start=True, got None")
    if step_size is None:
        step_size = epsilon / 10 if norm == "linf" else 2.5 * epsilon / max(steps, 1)

    x0 = x.astype(jnp.float32)
    delta = jnp.zeros_like(x0)
    if random_start:
        delta = _random_start(key, x0, epsilon, norm)
        delta = _clip(x0 + delta, clip) - x0

    def step(_, delta):
        move = _ascent_direction(_input_grad(logits_fn, x0 + delta, y), norm)
        delta = _project(delta + step_size * move, epsilon, norm)
        return _clip(x0 + delta, clip) - x0

    delta = jax.lax.fori_loop(0, steps, step, delta)
    return (x0 + delta).astype(x.dtype)


def adversarial_half_batch(
    attack_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
) -> jax.Array:
    """Replaces the first ``B // 2`` inputs by adversarial ones, as in adversarial training.

    The adversarial half passes through ``stop_gradient``: the attack is a data
    transformation, and the training loss must not differentiate through it.

    Args:
      attack_fn: ``(x, y, key) → x_adv``, e.g.
        ``lambda x, y, k: pgd(f, x, y, 0.3, key=k)``.
      x: ``(B, ...)`` inputs.
      y: ``(B,)`` labels.
      key: PRNG key passed to ``attack_fn``.

    Returns:
      The mixed batch; rows ``B // 2`` onwards are ``x``'s own.

    >>> flip = lambda x, y, k: 1.0 - x
    >>> adversarial_half_batch(flip, jnp.zeros((3, 1)), jnp.zeros(3, int), None).tolist()
    [[1.0], [0.0], [0.0]]
    """
    _check_batch(x, y)
    half = x.shape[0] // 2
    x_adv = jax.lax.stop_gradient(attack_fn(x[:half], y[:half], key))
    if x_adv.shape != x[:half].shape:
        raise ValueError(
            f"expected attack_fn to return inputs of shape {x[:half].shape}, got {x_adv.shape}"
        )
    return jnp.concatenate([x_adv.astype(x.dtype), x[half:]], axis=0)


# -- logits to attack ------------------------------------------------------------------


def tac_code_logits(activation: jax.Array, codes: jax.Array) -> jax.Array:
    """``−‖a − K_j‖₁`` per class: logits whose cross-entropy pulls ``a`` off its code.

    Args:
      activation: ``(B, M)`` total activation vectors.
      codes: ``(C, M)`` class codes.

    Returns:
      ``(B, C)`` logits.

    >>> tac_code_logits(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0], [1.0, -1.0]])).tolist()
    [[-1.0, -1.0]]
    """
    check_code_shapes(activation, codes)
    return -jnp.sum(jnp.abs(activation[:, None, :] - codes[None, :, :]), axis=-1)


def base_logits_fn(model: Any, variables: Any, **kwargs: Any) -> LogitsFn:
    """``x → `` the base head's ``(B, C)`` logits of a `TACModel`, in inference mode.

    Args:
      model: an initialised `tac_jax.model.TACModel`.
      variables: its variables.
      **kwargs: passed to ``model.apply`` (e.g. ``mask=`` for text).
    """
    return lambda x: model.apply(variables, x, **kwargs)[0].logits


def tac_logits_fn(model: Any, variables: Any, **kwargs: Any) -> LogitsFn:
    """``x → tac_code_logits(a(x), K)`` for a `TACModel`, in inference mode.

    Input gradients flow through the base in add-on mode too (whose own ``apply`` stops
    them at the features); the values are those of ``model.apply``.

    Args:
      model: an initialised `tac_jax.model.TACModel`.
      variables: its variables.
      **kwargs: passed to ``model.apply``.
    """
    model.require_resolved()
    codes = jnp.asarray(model.codes.matrix, jnp.float32)
    runner = model
    return lambda x: tac_code_logits(runner.apply(variables, x, **kwargs)[0].activation, codes)
