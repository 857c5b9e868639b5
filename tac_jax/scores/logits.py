"""Confidence scores read from a classifier's logits (higher = more in-distribution).

MSP, max logit, energy, predictive entropy, GEN, ODIN (temperature and input
perturbation), ReAct (clipped penultimate activations, then energy), DOCTOR and
MaxLogit-pNorm (misclassification scores; pNorm's ``p`` is chosen on held-out data by
`select_pnorm`). Every score function is pure and jittable; each returns a ``(B,)``
float32 score.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.metrics.selective import aurc
from tac_jax.scores.entry import HeldData, Score, Stats

# ODIN's settings (Liang et al., 2018), in the units the model takes: images in [0, 1].
ODIN_TEMPERATURE = 1000.0
ODIN_EPSILON = 0.0014
# MaxLogit-pNorm's grid (Cattelan & Silva, UAI 2024; their code's ``torch.arange(10)``):
# p = 0 stands for no normalisation, the centred max logit itself.
PNORM_GRID = tuple(float(p) for p in range(10))


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


def _softmax_and_rest(z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``softmax(z)``, the predicted class as a ``(B, C)`` mask, and ``1 − p_ŷ`` as the
    sum of the other classes' probabilities (by subtraction it would be 0 wherever
    ``p_ŷ`` rounds to 1 in float32)."""
    p = jax.nn.softmax(z, axis=-1)
    top = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=bool)
    return p, top, jnp.sum(jnp.where(top, 0.0, p), axis=-1)


@jax.jit
def doctor(logits: jax.Array) -> jax.Array:
    """DOCTOR's ``−D_α`` (Granese et al., NeurIPS 2021): ``D_α = (1 − Σ_c p_c²) / Σ_c p_c²``.

    ``Σ_c p_c²`` is the probability that two draws from the softmax agree; DOCTOR
    rejects when ``D_α`` is large. This is the black-box form (temperature 1, no input
    perturbation). ``1 − Σ p_c² = Σ_c p_c (1 − p_c)``, with ``1 − p_ŷ`` summed from the
    other classes, so confident predictions whose largest probability rounds to 1 in
    float32 still rank apart.

    Args:
      logits: ``(B, C)`` logits.

    Returns:
      ``(B,)`` scores in ``[−(C − 1), 0]``: ``−(C − 1)`` at a uniform softmax, 0 at a
      one-hot one.

    >>> s = doctor(jnp.array([[0.0, 0.0], [jnp.log(3.0), 0.0]]))  # p = (¾, ¼): −⅜/⅝
    >>> [round(x, 4) for x in s.tolist()]
    [-1.0, -0.6]
    """
    p, top, rest = _softmax_and_rest(check_logits(logits))
    complement = jnp.where(top, rest[:, None], 1.0 - p)
    gini = jnp.sum(p * complement, axis=-1)
    return -gini / jnp.sum(p * p, axis=-1)


@jax.jit
def doctor_beta(logits: jax.Array) -> jax.Array:
    """DOCTOR's ``−D_β`` (Granese et al., NeurIPS 2021): ``D_β = (1 − p_ŷ) / p_ŷ``.

    A monotone function of the MSP, so it ranks as `msp` does, except that ``1 − p_ŷ``
    is summed from the other classes and keeps apart the confident predictions whose
    MSP rounds to 1 in float32.

    Args:
      logits: ``(B, C)`` logits.

    Returns:
      ``(B,)`` scores in ``[−(C − 1), 0]``.

    >>> s = doctor_beta(jnp.array([[0.0, 0.0], [jnp.log(3.0), 0.0]]))  # −¼/¾
    >>> [round(x, 4) for x in s.tolist()]
    [-1.0, -0.3333]
    """
    p, _, rest = _softmax_and_rest(check_logits(logits))
    return -rest / jnp.max(p, axis=-1)


@jax.jit
def maxlogit_pnorm(logits: jax.Array, p: float | jax.Array) -> jax.Array:
    """MaxLogit-pNorm (Cattelan & Silva, UAI 2024): ``max_c (z_c − z̄) / ‖z − z̄‖_p``.

    The logits are centred on their mean ``z̄``, then divided by their ``p``-norm, which
    takes away the overall scale a network may grow without growing more right.

    Args:
      logits: ``(B, C)`` logits.
      p: the norm's order, ``p ≥ 1``, ``inf`` (the largest ``|z_c − z̄|``) or ``0``: no
        normalisation (the centred max logit). May be traced.

    Returns:
      ``(B,)`` scores; 0 where every logit is equal.

    >>> z = jnp.array([[3.0, 0.0, 0.0]])  # centred: (2, −1, −1)
    >>> [round(float(maxlogit_pnorm(z, p)[0]), 4) for p in (0.0, 1.0, 2.0, jnp.inf)]
    [2.0, 0.5, 0.8165, 1.0]
    """
    z = check_logits(logits)
    centred = z - jnp.mean(z, axis=-1, keepdims=True)
    largest = jnp.max(jnp.abs(centred), axis=-1)
    # ‖x‖_p = m·‖x/m‖_p with m = max|x|: no overflow of |x|^p for large p.
    scale = jnp.where(largest > 0, largest, 1.0)
    p = jnp.asarray(p, jnp.float32)
    order = jnp.where((p > 0) & jnp.isfinite(p), p, 1.0)
    ratio = jnp.abs(centred) / scale[:, None]
    norm = scale * jnp.sum(ratio**order, axis=-1) ** (1.0 / order)
    norm = jnp.where(p == 0, 1.0, jnp.where(jnp.isinf(p), scale, norm))
    return jnp.where(largest > 0, jnp.max(centred, axis=-1) / norm, 0.0)


def select_pnorm(
    logits: np.ndarray,
    correct: np.ndarray,
    grid: tuple[float, ...] = PNORM_GRID,
    msp_fallback: bool = True,
) -> tuple[float, bool]:
    """MaxLogit-pNorm's ``p``: the one of ``grid`` with the lowest AURC on held-out data.

    Cattelan & Silva choose ``p`` by AURC on a held-out tuning split, grid
    ``p ∈ {0, …, 9}`` (0: no normalisation), and fall back to the MSP when it has the
    lower AURC there (their code's default). AURC here is `tac_jax.metrics.aurc`, ties
    in expectation; a tie between candidates goes to the MSP, then to the earlier ``p``.

    Args:
      logits: ``(N, C)`` held-out logits.
      correct: ``(N,)`` whether each prediction (``argmax``) was right.
      grid: the candidate orders.
      msp_fallback: whether the MSP competes.

    Returns:
      ``(p, use_msp)``: the chosen order, and whether the MSP beat every order.

    Raises:
      ValueError: on mismatched shapes, an empty grid, or held-out data with no error or
        no correct prediction (every order has the same AURC: nothing to choose by).

    Below, the wrong second prediction has the larger MSP (its logits are larger) but
    the smaller normalised margin for every ``p ≥ 1``; ``p = 1`` is the first order that
    ranks it last:

    >>> select_pnorm(np.array([[2.0, 0.0, 0.0], [30.0, 27.0, 0.0]]), np.array([True, False]))
    (1.0, False)
    """
    z = np.asarray(logits, np.float32)
    c = np.asarray(correct, bool)
    if z.ndim != 2 or c.shape != (len(z),) or not len(z):
        raise ValueError(
            f"expected (N, C) held-out logits and N correctness flags, got shapes {z.shape} "
            f"and {c.shape}"
        )
    if not grid:
        raise ValueError("expected at least one order p in the grid, got none")
    if c.all() or not c.any():
        kind = "correct" if c.all() else "wrong"
        raise ValueError(
            "expected held-out data with both errors and correct predictions to choose "
            f"MaxLogit-pNorm's p, got every one {kind}"
        )
    best, best_p, use_msp = np.inf, float(grid[0]), False
    if msp_fallback:
        best, use_msp = aurc(np.asarray(msp(z)), c), True
    for p in grid:
        area = aurc(np.asarray(maxlogit_pnorm(z, float(p))), c)
        if area < best:
            best, best_p, use_msp = area, float(p), False
    return best_p, use_msp


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


def _fit_pnorm(data: HeldData) -> Stats:
    logits = np.asarray(data.outputs["logits"], np.float32)
    p, use_msp = select_pnorm(logits, np.argmax(logits, axis=-1) == np.asarray(data.labels))
    # The fallback is a Python int: a compile-time constant, so only one branch is traced.
    return {"p": np.float32(p), "msp_fallback": int(use_msp)}


def _pnorm(v) -> jax.Array:
    stats = v.stats("maxlogit_pnorm")
    if stats["msp_fallback"]:
        return msp(v.logits)
    return maxlogit_pnorm(v.logits, stats["p"])


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
    Score(
        "doctor", "logits",
        "−(1 − Σ_c p_c²)/Σ_c p_c² (DOCTOR's −D_α, temperature 1, no input perturbation)",
        lambda v: doctor(v.logits),
    ),
    Score(
        "doctor_beta", "logits",
        "−(1 − p_ŷ)/p_ŷ (DOCTOR's −D_β: ranks as MSP, 1 − p_ŷ summed from the other "
        "classes so that an MSP rounding to 1 still ranks)",
        lambda v: doctor_beta(v.logits),
    ),
    Score(
        "maxlogit_pnorm", "logits",
        "max_c (z_c − z̄)/‖z − z̄‖_p with p ∈ {0 (no normalisation), 1, …, 9} of least AURC "
        "on the validation split, or the MSP if its validation AURC is no higher "
        "(MaxLogit-pNorm with its authors' fallback)",
        _pnorm,
        needs=("fit", "validation"),
        fit_held=_fit_pnorm,
        fitted_what="MaxLogit-pNorm's order p (chosen on a validation split with errors)",
        fitted_note=lambda s: (
            "the MSP (no p had a lower validation AURC)" if s["msp_fallback"]
            else f"p = {float(s['p']):g}" if float(s["p"]) else "no normalisation (p = 0)"
        ),
    ),
)  # fmt: skip
