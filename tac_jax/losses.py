"""TAC's training losses as pure functions (METHODS §1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCALE_MIN, SCALE_MAX = 1e-4, 50.0


def check_code_shapes(a: jax.Array, codes: jax.Array) -> None:
    if a.ndim != 2 or codes.ndim != 2 or a.shape[1] != codes.shape[1]:
        raise ValueError(
            f"expected activations (batch, M) and codes (classes, M) with the same M, "
            f"got activations {a.shape} and codes {codes.shape}"
        )


def code_l1_loss(a: jax.Array, target_codes: jax.Array) -> jax.Array:
    """``L_bin = mean_{n,m} |a_nm − c̃_nm|``, element-wise L1 to the target codes.

    >>> float(code_l1_loss(jnp.array([[0.5, -1.0]]), jnp.array([[1.0, -1.0]])))
    0.25
    """
    if a.shape != target_codes.shape:
        raise ValueError(
            f"expected target codes of the activations' shape {a.shape}, got {target_codes.shape}"
        )
    return jnp.mean(jnp.abs(a - target_codes))


def code_distances(a: jax.Array, codes: jax.Array) -> jax.Array:
    """Mean absolute distance of each row of ``a`` to each class code → ``(B, C)``.

    ``codes`` may be per-example (``(B, C, M)``, e.g. after code noise) or shared
    (``(C, M)``).

    >>> code_distances(jnp.array([[1.0, 1.0]]), jnp.array([[1.0, 1.0], [1.0, -1.0]])).tolist()
    [[0.0, 1.0]]
    """
    if codes.ndim == 2:
        check_code_shapes(a, codes)
        return jnp.mean(jnp.abs(a[:, None, :] - codes[None, :, :]), axis=-1)
    if codes.ndim != 3 or codes.shape[0] != a.shape[0] or codes.shape[2] != a.shape[1]:
        raise ValueError(
            f"expected per-example codes (batch, classes, M) matching activations {a.shape}, "
            f"got {codes.shape}"
        )
    return jnp.mean(jnp.abs(a[:, None, :] - codes), axis=-1)


def flip_code_noise(key: jax.Array, codes: jax.Array, p: float) -> jax.Array:
    """Flips each code entry's sign with probability ``p`` ("code noise").

    Returns codes of the same shape; pass ``(B, C, M)`` to draw per example.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"expected a code-noise probability in [0, 1), got {p}")
    if p == 0.0:
        return codes
    flip = jax.random.bernoulli(key, p, codes.shape)
    return jnp.where(flip, -codes, codes)


def clamp_scale(scale: jax.Array | float) -> jax.Array:
    """The distance-softmax scale, clamped to ``[1e-4, 50]`` as the authors do."""
    return jnp.clip(jnp.asarray(scale, jnp.float32), SCALE_MIN, SCALE_MAX)


def distance_cross_entropy(
    a: jax.Array, codes: jax.Array, targets: jax.Array, scale: jax.Array | float
) -> jax.Array:
    """Cross-entropy of ``softmax_j(−s · d_nj)`` against (soft) one-hot ``targets``.

    Args:
      a: ``(B, M)`` total activation vectors.
      codes: ``(C, M)`` or per-example noisy ``(B, C, M)`` codes.
      targets: ``(B, C)`` probabilities (one-hot, or mixup-interpolated).
      scale: the scale ``s`` (clamped).

    Returns:
      The mean cross-entropy, a scalar.
    """
    d = code_distances(a, codes)
    if targets.shape != d.shape:
        raise ValueError(f"expected targets of shape {d.shape}, got {targets.shape}")
    logp = jax.nn.log_softmax(-clamp_scale(scale) * d, axis=-1)
    return -jnp.mean(jnp.sum(targets * logp, axis=-1))


def mixup(
    key: jax.Array, alpha: float, *arrays: jax.Array
) -> tuple[tuple[jax.Array, ...], jax.Array, jax.Array]:
    """Per-example mixup: ``t ~ Beta(α, α)``, partner from a random permutation.

    Every array (inputs, one-hot labels, target codes, …) is interpolated with the same
    ``t`` along its leading axis.

    Returns:
      ``(mixed_arrays, t, permutation)``.
    """
    if alpha <= 0:
        raise ValueError(f"expected a positive mixup alpha, got {alpha}")
    if not arrays:
        raise ValueError("expected at least one array to mix, got none")
    batch = arrays[0].shape[0]
    if any(x.shape[0] != batch for x in arrays):
        raise ValueError(f"expected arrays with one batch size, got {[x.shape[0] for x in arrays]}")
    key_t, key_p = jax.random.split(key)
    t = jax.random.beta(key_t, alpha, alpha, (batch,))
    perm = jax.random.permutation(key_p, batch)

    def mix(x: jax.Array) -> jax.Array:
        tt = t.reshape((batch,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        return tt * x + (1 - tt) * x[perm]

    return tuple(mix(x) for x in arrays), t, perm


def tac_loss(
    a: jax.Array,
    codes: jax.Array,
    targets: jax.Array,
    *,
    scale: jax.Array | float,
    key: jax.Array | None = None,
    code_noise: float = 0.0,
    target_codes: jax.Array | None = None,
    ce_weight: float = 1.0,
    l1_weight: float = 10.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``ce_weight · L_ce + l1_weight · L_bin`` (METHODS §1).

    Args:
      a: ``(B, M)`` total activation vectors.
      codes: ``(C, M)`` class codes.
      targets: ``(B, C)`` one-hot or soft labels.
      scale: the distance-softmax scale.
      key: PRNG key for code noise (required when ``code_noise > 0``).
      code_noise: probability of flipping each code entry, resampled per example.
      target_codes: ``(B, M)`` codes for the L1 term; default ``targets @ codes``
        (the true class code, or the mixup interpolation of two).

    Returns:
      ``(loss, {"ce": ..., "l1": ...})``.
    """
    check_code_shapes(a, codes)
    if targets.shape != (a.shape[0], codes.shape[0]):
        raise ValueError(
            f"expected targets of shape {(a.shape[0], codes.shape[0])}, got {targets.shape}"
        )
    if target_codes is None:
        target_codes = targets @ codes
    noisy = codes
    if code_noise > 0:
        if key is None:
            raise ValueError("expected a PRNG key for code noise > 0, got None")
        noisy = flip_code_noise(
            key, jnp.broadcast_to(codes, (a.shape[0],) + codes.shape), code_noise
        )
    ce = distance_cross_entropy(a, noisy, targets, scale)
    l1 = code_l1_loss(a, target_codes)
    return ce_weight * ce + l1_weight * l1, {"ce": ce, "l1": l1}
