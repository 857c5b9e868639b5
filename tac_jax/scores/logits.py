"""Confidence scores read from a classifier's logits (higher = more in-distribution).

MSP, max logit, energy, predictive entropy, ODIN (temperature and input perturbation)
and ReAct (clipped penultimate activations, then energy). Every function is pure and
jittable; each returns a ``(B,)`` float32 score.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from tac_jax.scores.entry import Score

# ODIN's settings (Liang et al., 2018), in the units the model takes: images in [0, 1].
ODIN_TEMPERATURE = 1000.0
ODIN_EPSILON = 0.0014


def check_logits(logits: jax.Array, name: str = "logits") -> jax.Array:
    """``logits`` as float32, after checking that it is ``(batch, classes)``."""
    if jnp.ndim(logits) != 2:
        raise ValueError(
            f"expected {name} of rank 2 (batch, classes), got shape {jnp.shape(logits)}"
        )
    return jnp.asarray(logits, jnp.float32)


def _check_positive(value: float | jax.Array, name: str) -> None:
    # Traced values (a temperature passed through jit) cannot be checked here.
    if isinstance(value, (int, float)) and not value > 0:
        raise ValueError(f"expected a positive {name}, got {value}")


@jax.jit
def msp(logits: jax.Array) -> jax.Array:
    """Maximum softmax probability (Hendrycks & Gimpel, 2017).

    Args:
      logits: ``(B, C)`` logits.

    Returns:
      ``(B,)`` ``max_c softmax(logits)_c``.

    >>> print(msp(jnp.array([[0.0, 0.0], [jnp.log(3.0), 0.0]])).round(4))
    [0.5  0.75]
    """
    return jnp.max(jax.nn.softmax(check_logits(logits), axis=-1), axis=-1)


@jax.jit
def max_logit(logits: jax.Array) -> jax.Array:
    """The largest logit (Hendrycks et al., 2022).

    >>> max_logit(jnp.array([[1.0, 3.0, -2.0]])).tolist()
    [3.0]
    """
    return jnp.max(check_logits(logits), axis=-1)


@functools.partial(jax.jit, static_argnames="temperature")
def energy(logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Negative free energy ``T·logsumexp(z/T)`` (Liu et al., 2020).

    The paper's energy is ``−T·logsumexp(z/T)``, low for in-distribution inputs; its
    negation keeps this package's "higher = more in-distribution" convention.

    Args:
      logits: ``(B, C)`` logits.
      temperature: ``T > 0``.

    Returns:
      ``(B,)`` scores.

    >>> round(energy(jnp.array([[0.0, 0.0]])).tolist()[0], 6)  # log 2
    0.693147
    """
    _check_positive(temperature, "temperature")
    z = check_logits(logits)
    return temperature * jax.nn.logsumexp(z / temperature, axis=-1)


@jax.jit
def neg_entropy(logits: jax.Array) -> jax.Array:
    """Negated predictive entropy ``Σ_c p_c log p_c`` (0 at a one-hot prediction).

    >>> round(neg_entropy(jnp.array([[0.0, 0.0]])).tolist()[0], 6)  # −log 2
    -0.693147
    """
    log_p = jax.nn.log_softmax(check_logits(logits), axis=-1)
    # xlogy-style: a probability that underflows to 0 contributes 0, not nan.
    return jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


@functools.partial(jax.jit, static_argnames=("gamma", "top"))
def gen(logits: jax.Array, gamma: float = 0.1, top: int = 100) -> jax.Array:
    """GEN (Liu et al., CVPR 2023): ``−Σ_{j ≤ M} p_(j)^γ (1 − p_(j))^γ`` over the ``M``
    largest softmax probabilities, a generalised entropy (0 at a one-hot prediction).

    >>> round(gen(jnp.array([[0.0, 0.0]])).tolist()[0], 4)  # −2 · 0.5^0.2
    -1.7411
    >>> bool(gen(jnp.array([[5.0, 0.0]]))[0] > gen(jnp.array([[1.0, 0.0]]))[0])
    True
    """
    _check_positive(gamma, "gamma")
    p = jax.nn.softmax(check_logits(logits), axis=-1)
    m = min(int(top), p.shape[-1])
    if m < 1:
        raise ValueError(f"expected top >= 1 probabilities, got {top}")
    largest = jax.lax.top_k(p, m)[0]
    return -jnp.sum(largest**gamma * (1.0 - largest) ** gamma, axis=-1)


def odin(
    apply_logits_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
) -> jax.Array:
    """ODIN (Liang et al., 2018): temperature scaling plus a small input perturbation.

    The input moves by ``ε`` per coordinate in the direction that raises the
    temperature-scaled softmax of the predicted class,
    ``x̃ = x − ε·sign(−∇_x log S_ŷ(x; T))``, and the score is ``max softmax(f(x̃)/T)``.
    In-distribution inputs gain more from the step than OOD ones. ``ε`` is in the units
    ``apply_logits_fn`` takes (the paper divides the step by the per-channel std of its
    input normalisation; fold that into ``ε`` if the model normalises inside).

    Args:
      apply_logits_fn: ``x → (B, C)`` logits, e.g. ``lambda x: model.apply(v, x)[0].logits``.
        It must treat examples independently (inference-mode BatchNorm), so that the
        gradient of the summed loss is each example's own gradient.
      x: ``(B, ...)`` inputs.
      temperature: ``T > 0``.
      epsilon: perturbation size ``ε ≥ 0``; ``0`` gives ``msp(logits / T)``.

    Returns:
      ``(B,)`` scores in ``[1/C, 1]``.

    >>> f = lambda x: x @ jnp.eye(2)
    >>> print(odin(f, jnp.array([[1.0, 0.0]]), temperature=1.0, epsilon=0.0).round(3))
    [0.731]
    """
    _check_positive(temperature, "temperature")
    if isinstance(epsilon, (int, float)) and epsilon < 0:
        raise ValueError(f"expected a non-negative epsilon, got {epsilon}")
    if jnp.ndim(x) < 1:
        raise ValueError(f"expected a batch of inputs of rank >= 1, got shape {jnp.shape(x)}")

    def log_score(x_in: jax.Array, label: jax.Array) -> jax.Array:
        log_p = jax.nn.log_softmax(check_logits(apply_logits_fn(x_in)) / temperature, axis=-1)
        return jnp.sum(jnp.take_along_axis(log_p, label[:, None], axis=-1))

    logits = check_logits(apply_logits_fn(x))
    if logits.shape[0] != jnp.shape(x)[0]:
        raise ValueError(
            f"expected one row of logits per input, {jnp.shape(x)[0]}, got {logits.shape[0]}"
        )
    label = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1))
    grad = jax.grad(log_score)(x, label)
    x_tilde = x - epsilon * jnp.sign(-grad).astype(jnp.result_type(x))
    return msp(check_logits(apply_logits_fn(x_tilde)) / temperature)


@jax.jit
def react_energy(
    features_penultimate: jax.Array,
    head_kernel: jax.Array,
    head_bias: jax.Array,
    clip: float | jax.Array,
) -> jax.Array:
    """ReAct (Sun et al., 2021): clip penultimate activations at ``clip``, then energy.

    Args:
      features_penultimate: ``(B, D)`` features the head reads (``"pre_logits"``).
      head_kernel: ``(D, C)`` the head's kernel (flax ``Dense`` layout: ``z = f W + b``).
      head_bias: ``(C,)`` the head's bias.
      clip: the activation ceiling, usually `react_threshold` of training features.

    Returns:
      ``(B,)`` ``logsumexp(min(f, clip) W + b)``.

    >>> print(react_energy(jnp.array([[5.0, 0.0]]), jnp.eye(2), jnp.zeros(2), 1.0).round(4))
    [1.3133]
    """
    f = check_features(features_penultimate, "penultimate features")
    kernel, bias = check_head(head_kernel, head_bias, f.shape[1])
    logits = jnp.minimum(f, clip) @ kernel + bias
    return jax.nn.logsumexp(logits, axis=-1)


@functools.partial(jax.jit, static_argnames="percentile")
def react_threshold(train_features: jax.Array, percentile: float = 90.0) -> jax.Array:
    """The ReAct ceiling: a percentile of every training activation value.

    Args:
      train_features: ``(N, D)`` in-distribution penultimate features.
      percentile: in ``[0, 100]``; the paper's default is 90.

    Returns:
      A scalar threshold.

    >>> print(react_threshold(jnp.arange(11.0)[:, None], 90).round(4))
    9.0
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"expected a percentile in [0, 100], got {percentile}")
    f = check_features(train_features, "training features")
    return jnp.percentile(f.reshape(-1), percentile)


def check_features(features: jax.Array, name: str = "features") -> jax.Array:
    """``features`` as float32, after checking that it is ``(batch, dim)``."""
    if jnp.ndim(features) != 2:
        raise ValueError(f"expected {name} of rank 2 (batch, dim), got shape {jnp.shape(features)}")
    return jnp.asarray(features, jnp.float32)


def check_head(
    head_kernel: jax.Array, head_bias: jax.Array, dim: int
) -> tuple[jax.Array, jax.Array]:
    """A ``(dim, C)`` kernel and ``(C,)`` bias as float32, after checking their shapes."""
    if jnp.ndim(head_kernel) != 2 or jnp.shape(head_kernel)[0] != dim:
        raise ValueError(
            f"expected a head kernel of shape ({dim}, classes), got {jnp.shape(head_kernel)}"
        )
    classes = jnp.shape(head_kernel)[1]
    if jnp.shape(head_bias) != (classes,):
        raise ValueError(f"expected a head bias of shape ({classes},), got {jnp.shape(head_bias)}")
    return jnp.asarray(head_kernel, jnp.float32), jnp.asarray(head_bias, jnp.float32)


# -- The registry's entries (`tac_jax.scores.entry`) -----------------------------------

ENTRIES = (
    Score("msp", "logits", "max_c softmax(z)_c", lambda v: msp(v.logits)),
    Score("max_logit", "logits", "max_c z_c", lambda v: max_logit(v.logits)),
    Score(
        "energy", "logits", "logsumexp(z) (the negated free energy, T = 1)",
        lambda v: energy(v.logits),
    ),
    Score(
        "entropy", "logits", "Σ_c p_c log p_c (the negated predictive entropy)",
        lambda v: neg_entropy(v.logits),
    ),
    Score(
        "gen", "logits",
        "−Σ_{j ≤ M} p_(j)^γ (1 − p_(j))^γ over the M = min(100, C) largest softmax "
        "probabilities, γ = 0.1 (GEN, a generalised entropy)",
        lambda v: gen(v.logits),
    ),
    Score(
        "odin",
        "logits",
        f"max_c softmax(z(x̃)/T)_c, T = {ODIN_TEMPERATURE:g}, x̃ one signed-gradient step "
        f"of ε = {ODIN_EPSILON:g} (inputs in [0, 1]) raising the predicted class",
        lambda v: v.output("odin"),
        needs=("input",),
        pass_name="odin",
    ),
)  # fmt: skip
