"""SNGP (Liu et al., 2020): spectral normalisation plus a Laplace random-feature GP head.

**Spectral normalisation** keeps every hidden map close to distance-preserving. Each
selected kernel ``W`` is viewed as the matrix ``(prod(shape[:-1]), shape[-1])`` (for a
conv kernel ``(kh·kw·c_in, c_out)``: this bounds the norm of the reshaped matrix, the
usual approximation, not that of the convolution operator). One power-iteration step
from the stored unit vector ``u`` is ``v = Wu/‖Wu‖, u = Wᵀv/‖Wᵀv‖``; then ``σ = vᵀWu``
(``u, v`` held constant, so gradients reach ``W`` through ``σ`` as in Miyato et al.) and

    W_sn = W / max(1, σ / c),

SNGP's soft bound: only norms above ``c`` (``coeff``) are scaled down to ``c``.

**The GP head** replaces the output layer by random Fourier features
``φ(h) = √(2/D) cos(hW + b)``, ``W ~ N(0, 1/ℓ²)``, ``b ~ U(0, 2π)``, for which
``E[φ(x)·φ(y)] = exp(−‖x − y‖²/(2ℓ²))``, followed by a linear map ``logits = φβ``
trained as usual. After training, one pass over the data gives the Laplace precision

    P = r·I + Σ_i p_i (1 − p_i) φ_i φ_iᵀ,

with ``p_i`` the max softmax probability (the multi-class convention of edward2's
``LaplaceRandomFeatureCovariance``), and the predictive variance ``s_i = φ_iᵀ P⁻¹ φ_i``
(edward2 also multiplies it by the ridge ``r``; the same at the default ``r = 1``). The
mean-field approximation ``logits / √(1 + λ s)`` with ``λ = π/8`` gives the confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_factor, cho_solve

SpectralState = dict[str, jax.Array]


def _path_name(path: tuple[Any, ...]) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _normalize(x: jax.Array, fallback: jax.Array | None = None) -> jax.Array:
    norm = jnp.linalg.norm(x)
    fallback = jnp.zeros_like(x) if fallback is None else fallback
    return jnp.where(norm > 0, x / jnp.where(norm > 0, norm, 1.0), fallback)


def _power_iteration(w: jax.Array, u: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """``(v, u)`` after ``steps`` rounds of ``v = Wu/‖Wu‖, u = Wᵀv/‖Wᵀv‖`` (0: ``v`` only)."""
    v = _normalize(w @ u)
    for step in range(steps):
        u = _normalize(w.T @ v, u)  # a zero kernel keeps its u
        if step + 1 < steps:
            v = _normalize(w @ u)
    return v, u


def init_spectral_state(
    params: Any, key: jax.Array, *, skip: Callable[[str], bool] | None = None
) -> SpectralState:
    """One random unit vector per kernel: the power-iteration state.

    Args:
      params: a parameter pytree; a leaf is a kernel when its last path name is
        ``"kernel"`` and it has rank >= 2.
      key: PRNG key.
      skip: optional predicate on the ``'/'``-joined path (e.g. the output head's
        ``lambda p: p.startswith("head/")``); kernels it accepts are left out.

    Returns:
      ``{path: u}`` with ``u`` of shape ``(kernel.shape[-1],)``, float32, unit norm.

    >>> params = {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
    >>> {p: u.shape for p, u in init_spectral_state(params, jax.random.key(0)).items()}
    {'Dense_0/kernel': (2,)}
    """
    kernels = [
        (name, leaf.shape[-1])
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if (name := _path_name(path)).split("/")[-1] == "kernel"
        and jnp.ndim(leaf) >= 2
        and not (skip is not None and skip(name))
    ]
    state = {}
    for i, (name, width) in enumerate(kernels):
        u = jax.random.normal(jax.random.fold_in(key, i), (width,), jnp.float32)
        state[name] = u / jnp.linalg.norm(u)
    return state


def spectral_normalize(
    params: Any,
    state: SpectralState,
    *,
    coeff: float = 0.95,
    power_iterations: int = 1,
    update: bool = True,
) -> tuple[Any, SpectralState]:
    """Rescales every kernel in ``state`` to spectral norm at most ``coeff``.

    Args:
      params: the parameter pytree (its structure and dtypes are kept).
      state: from `init_spectral_state`; its paths select the kernels.
      coeff: the bound ``c`` on each kernel's spectral norm.
      power_iterations: power-iteration steps from the stored ``u`` (training).
      update: ``False`` for evaluation: ``σ = ‖Wu‖`` from the stored ``u`` without
        iterating, and the state is returned unchanged.

    Returns:
      ``(params_sn, new_state)``; leaves not in ``state`` are unchanged.

    >>> params = {"kernel": jnp.diag(jnp.array([4.0, 1.0]))}  # σ = 4
    >>> sn, _ = spectral_normalize(params, {"kernel": jnp.array([1.0, 0.0])}, coeff=2.0)
    >>> jnp.diag(sn["kernel"]).tolist()
    [2.0, 0.5]
    """
    if isinstance(coeff, (int, float)) and coeff <= 0:
        raise ValueError(f"expected a positive spectral-norm bound, got {coeff}")
    if not isinstance(power_iterations, (int, np.integer)) or power_iterations < 1:
        raise ValueError(f"expected an integer number of iterations >= 1, got {power_iterations!r}")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [_path_name(path) for path, _ in flat]
    if missing := sorted(set(state) - set(names)):
        raise ValueError(f"expected spectral state only for paths in the parameters, got {missing}")
    leaves, new_state = [], dict(state)
    for name, (_, leaf) in zip(names, flat, strict=True):
        if name not in state:
            leaves.append(leaf)
            continue
        u = state[name]
        if jnp.ndim(leaf) < 2 or u.shape != (leaf.shape[-1],):
            raise ValueError(
                f"expected a kernel of rank >= 2 whose last axis matches u {u.shape} at "
                f"{name!r}, got {jnp.shape(leaf)}"
            )
        w = jnp.reshape(leaf, (-1, leaf.shape[-1])).astype(jnp.float32)
        steps = power_iterations if update else 0
        const = jax.lax.stop_gradient
        v, u = _power_iteration(const(w), const(u.astype(jnp.float32)), steps)
        sigma = v @ w @ u  # differentiable in W only
        leaves.append((w / jnp.maximum(1.0, sigma / coeff)).reshape(leaf.shape).astype(leaf.dtype))
        if update:
            new_state[name] = u
    return jax.tree_util.tree_unflatten(treedef, leaves), new_state


def random_feature_params(
    key: jax.Array, in_dim: int, num_features: int = 1024, lengthscale: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """Draws the fixed random-feature map: ``W ~ N(0, 1/ℓ²)``, ``b ~ U(0, 2π)``.

    Returns:
      ``W`` of shape ``(in_dim, D)`` and ``b`` of shape ``(D,)``, float32.

    >>> w, b = random_feature_params(jax.random.key(0), 3, 8)
    >>> w.shape, b.shape
    ((3, 8), (8,))
    """
    if in_dim < 1 or num_features < 1:
        raise ValueError(
            f"expected positive input and feature dimensions, got {in_dim} and {num_features}"
        )
    if lengthscale <= 0:
        raise ValueError(f"expected a positive length-scale, got {lengthscale}")
    key_w, key_b = jax.random.split(key)
    w = jax.random.normal(key_w, (in_dim, num_features), jnp.float32) / lengthscale
    b = jax.random.uniform(key_b, (num_features,), jnp.float32, 0.0, 2 * jnp.pi)
    return w, b


def random_features(h: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``φ(h) = √(2/D) cos(hW + b)``: ``(..., in_dim)`` → ``(..., D)``.

    >>> random_features(jnp.zeros((1, 2)), jnp.ones((2, 2)), jnp.zeros(2)).tolist()
    [[1.0, 1.0]]
    """
    if w.ndim != 2 or b.shape != (w.shape[1],) or jnp.shape(h)[-1:] != (w.shape[0],):
        raise ValueError(
            f"expected h (..., in_dim), W (in_dim, D) and b (D,), got h {jnp.shape(h)}, "
            f"W {w.shape} and b {b.shape}"
        )
    return jnp.sqrt(2.0 / w.shape[1]) * jnp.cos(jnp.asarray(h, jnp.float32) @ w + b)


def init_precision(num_features: int, ridge: float = 1.0) -> jax.Array:
    """The prior precision ``r·I`` of shape ``(D, D)``, float32.

    >>> init_precision(2, 0.5).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """
    if num_features < 1 or ridge <= 0:
        raise ValueError(
            f"expected a positive feature count and ridge, got {num_features} and {ridge}"
        )
    return ridge * jnp.eye(num_features, dtype=jnp.float32)


def _check_features(phi: jax.Array, matrix: jax.Array, what: str) -> None:
    d = matrix.shape[-1]
    if matrix.shape != (d, d) or jnp.ndim(phi) != 2 or jnp.shape(phi)[1] != d:
        raise ValueError(
            f"expected features (batch, D) and a square (D, D) {what}, got features "
            f"{jnp.shape(phi)} and {what} {matrix.shape}"
        )


def precision_update(
    precision: jax.Array, phi: jax.Array, logits: jax.Array, *, mask: jax.Array | None = None
) -> jax.Array:
    """``P + Σ_i m_i p_i (1 − p_i) φ_i φ_iᵀ``, ``p_i`` the max softmax probability.

    Args:
      precision: ``(D, D)`` accumulated precision.
      phi: ``(B, D)`` random features.
      logits: ``(B, C)`` the model's logits for the same examples.
      mask: optional ``(B,)`` weights, 0 for padding rows.

    >>> precision_update(jnp.eye(1), jnp.ones((1, 1)), jnp.zeros((1, 2))).tolist()
    [[1.25]]
    """
    _check_features(phi, precision, "precision")
    if jnp.ndim(logits) != 2 or jnp.shape(logits)[0] != jnp.shape(phi)[0]:
        raise ValueError(f"expected logits ({jnp.shape(phi)[0]}, C), got {jnp.shape(logits)}")
    p = jnp.max(jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1), axis=-1)
    weight = p * (1.0 - p)
    if mask is not None:
        if jnp.shape(mask) != weight.shape:
            raise ValueError(f"expected a mask of shape {weight.shape}, got {jnp.shape(mask)}")
        weight = weight * jnp.asarray(mask, jnp.float32)
    phi = jnp.asarray(phi, jnp.float32)
    return precision + (phi * weight[:, None]).T @ phi


def posterior_covariance(precision: jax.Array) -> jax.Array:
    """``P⁻¹`` through a Cholesky factorisation, symmetrised.

    >>> posterior_covariance(jnp.array([[4.0, 0.0], [0.0, 16.0]])).tolist()
    [[0.25, 0.0], [0.0, 0.0625]]
    """
    if jnp.ndim(precision) != 2 or precision.shape[0] != precision.shape[1]:
        raise ValueError(f"expected a square (D, D) precision, got {jnp.shape(precision)}")
    factor = cho_factor(precision, lower=True)
    cov = cho_solve(factor, jnp.eye(precision.shape[0], dtype=precision.dtype))
    return (cov + cov.T) / 2


def predictive_variance(phi: jax.Array, covariance: jax.Array) -> jax.Array:
    """``s_i = φ_iᵀ Σ φ_i`` for each example, ``(B,)``, without the ``B×B`` matrix.

    >>> predictive_variance(jnp.array([[1.0, 2.0]]), jnp.eye(2)).tolist()
    [5.0]
    """
    _check_features(phi, covariance, "covariance")
    phi = jnp.asarray(phi, jnp.float32)
    return jnp.sum((phi @ covariance) * phi, axis=-1)


def mean_field_logits(
    logits: jax.Array, variance: jax.Array, factor: float = jnp.pi / 8
) -> jax.Array:
    """``logits / √(1 + λ s)``, the mean-field approximation of the softmax posterior.

    >>> mean_field_logits(jnp.array([[2.0, 0.0]]), jnp.array([3.0]), factor=1.0).tolist()
    [[1.0, 0.0]]
    """
    if jnp.ndim(logits) != 2 or jnp.shape(variance) != (jnp.shape(logits)[0],):
        raise ValueError(
            f"expected logits (batch, C) and variances (batch,), got {jnp.shape(logits)} "
            f"and {jnp.shape(variance)}"
        )
    if isinstance(factor, (int, float)) and factor < 0:
        raise ValueError(f"expected a non-negative mean-field factor, got {factor}")
    return logits / jnp.sqrt(1.0 + factor * jnp.asarray(variance, jnp.float32))[:, None]


def sngp_score(logits: jax.Array, variance: jax.Array, factor: float = jnp.pi / 8) -> jax.Array:
    """Max softmax probability of the mean-field logits, ``(B,)`` (higher = more confident).

    >>> sngp_score(jnp.zeros((1, 4)), jnp.ones(1)).tolist()
    [0.25]
    """
    return jnp.max(jax.nn.softmax(mean_field_logits(logits, variance, factor), axis=-1), axis=-1)
