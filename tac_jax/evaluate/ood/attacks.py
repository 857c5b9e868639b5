"""Adversarial inputs as an out-of-distribution set: `make_attack` compiles L∞ (or L2)
PGD, or FGSM, once for every ε, and `attack_dataset` attacks a test set in fixed-size
batches (`tac_jax.evaluate.robustness` measures every score on them)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.attacks import NORMS, LogitsFn, fgsm, pgd
from tac_jax.batching import padded_batches
from tac_jax.evaluate.engine.scoring import check_inputs

Attack = Callable[[Any, Any, Any, jax.Array], jax.Array]


ATTACKS = ("pgd", "fgsm")


def make_attack(
    logits_fn: LogitsFn,
    *,
    method: str = "pgd",
    norm: str = "linf",
    steps: int = 10,
    random_start: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
) -> Attack:
    """A jitted attack ``(x, y, epsilon, key) → x_adv`` on ``logits_fn``: PGD or FGSM.

    ε is a traced argument (cast to float32), so every ε shares one compiled program.
    PGD's step size is pgd's default, ε/10 for L∞ and 2.5·ε/steps for L2; FGSM is one
    L∞ step of ε from the input (no random start; ``norm``, ``steps`` and
    ``random_start`` must be left at their defaults, and the key is unused). With ε = 0
    the input comes back (clipped to ``clip``). The returned function carries
    ``settings``: ``{"norm", "steps", "random_start"}`` for PGD (as before FGSM existed),
    ``{"method": "fgsm", "norm": "linf", "steps": 1, "random_start": False}`` for FGSM.

    Args:
      logits_fn: ``x → (B, C)`` logits, e.g. `tac_jax.attacks.base_logits_fn(...)`.
      method: ``"pgd"`` or ``"fgsm"``.
      norm: ``"linf"`` or ``"l2"`` (PGD only).
      steps: gradient steps (PGD only).
      random_start: start from a uniform point of the ε-ball (PGD only).
      clip: the valid input range, or None.

    Returns:
      The attack.

    >>> attack = make_attack(lambda x: jnp.concatenate([x, -x], -1), random_start=False)
    >>> x_adv = attack(jnp.array([[0.5]]), jnp.array([0]), 0.1, jax.random.key(0))
    >>> round(float(x_adv[0, 0]), 4)  # 10 steps of ε/10 push x down to 0.5 - ε
    0.4
    """
    if method not in ATTACKS:
        raise ValueError(f"expected an attack method in {ATTACKS}, got {method!r}")
    if norm not in NORMS:
        raise ValueError(f"expected a norm in {NORMS}, got {norm!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"expected a non-negative integer number of steps, got {steps!r}")
    if method == "fgsm":
        if (norm, steps, random_start) != ("linf", 10, True):
            raise ValueError(
                "FGSM is one L∞ step from the input: expected norm, steps and random_start "
                f"left at their defaults, got {norm!r}, {steps!r}, {random_start!r}"
            )
        settings = {"method": "fgsm", "norm": "linf", "steps": 1, "random_start": False}
        one_step = jax.jit(functools.partial(fgsm, logits_fn, clip=clip))

        def run(x, y, eps, *, key):
            del key  # FGSM is deterministic
            return one_step(x, y, eps)

    else:
        settings = {"norm": norm, "steps": steps, "random_start": random_start}
        run = jax.jit(functools.partial(pgd, logits_fn, clip=clip, **settings))

    def attack(x: Any, y: Any, epsilon: Any, key: jax.Array) -> jax.Array:
        if isinstance(epsilon, int | float) and not epsilon >= 0:
            raise ValueError(f"expected a non-negative epsilon, got {epsilon}")
        eps = jnp.asarray(epsilon, jnp.float32)  # one dtype, so one compilation
        return run(jnp.asarray(x, jnp.float32), jnp.asarray(y), eps, key=key)

    attack.settings = settings
    return attack


def _float_inputs(images: Any) -> np.ndarray:
    # The checks of `score_file`'s inputs, then uint8 to [0, 1].
    x = check_inputs(images)
    return x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x


def attack_dataset(
    attack: Attack,
    images: Any,
    labels: Any,
    epsilon: float,
    *,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Attacks a whole set in fixed-size batches, one compilation for every batch.

    Args:
      attack: ``(x, y, epsilon, key) → x_adv``, e.g. from `make_attack`.
      images: ``(N, ...)`` uint8 (divided by 255) or float inputs in [0, 1].
      labels: ``(N,)`` integer labels.
      epsilon: the ball's radius, ≥ 0.
      batch_size: rows per call; the last batch is padded by repeating its last row.
      seed: batch ``i`` gets the key ``fold_in(key(seed), i)``.

    Returns:
      float32 ``(N, ...)`` adversarial inputs.

    >>> shift = lambda x, y, eps, key: x + eps
    >>> attack_dataset(shift, np.zeros((3, 1), np.uint8), np.zeros(3, int), 0.5,
    ...                batch_size=2).tolist()
    [[0.5], [0.5], [0.5]]
    """
    x = _float_inputs(images)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"expected ({len(x)},) integer labels, got shape {y.shape} and dtype {y.dtype}"
        )
    if not epsilon >= 0:
        raise ValueError(f"expected a non-negative epsilon, got {epsilon}")
    base = jax.random.key(seed)
    outputs, valids = [], []
    for i, ((xb, yb), valid) in enumerate(padded_batches((x, y), batch_size)):
        outputs.append(attack(xb, yb, epsilon, jax.random.fold_in(base, i)))
        valids.append(valid)
    parts = [np.asarray(out, np.float32)[:v] for out, v in zip(outputs, valids, strict=True)]
    return np.concatenate(parts, axis=0)
