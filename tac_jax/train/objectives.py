"""Training objectives: the base classifier's cross-entropy and TAC's code losses.

Each is a pure function of (parameters, the rest of the variables, a batch, a key) that
returns ``(loss, (metrics, updates))`` for ``jax.value_and_grad(..., has_aux=True)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tac_jax.attacks import adversarial_half_batch, base_logits_fn, pgd, tac_logits_fn
from tac_jax.losses import mixup, tac_loss
from tac_jax.model import TACModel
from tac_jax.scores.tac import tac_predict


@dataclasses.dataclass(frozen=True)
class TACLossConfig:
    """Weights and regularisers of TAC's loss (METHODS §1; MNIST defaults).

    Attributes:
      ce_weight, l1_weight: weights of the distance-softmax CE and the L1 code loss.
      code_noise: probability of flipping each code entry (0.15 MNIST, 0.1 CIFAR).
      mixup_alpha: Beta(α, α) mixup of inputs, labels and target codes; 0 turns it off.
      head_weight: weight of the base head's cross-entropy in scratch mode.
      adversarial_epsilon: adversarial training as the authors do it: the first half of
        each batch is replaced by L∞ PGD inputs of this radius (images in [0, 1]); 0
        turns it off.
      adversarial_steps: PGD steps (of ε/10 each, random start).
      adversarial_target: what the training attack ascends: ``"base"`` (the base head's
        cross-entropy) or ``"tac"`` (TAC's code distances, with the current weights).
    """

    ce_weight: float = 1.0
    l1_weight: float = 10.0
    code_noise: float = 0.15
    mixup_alpha: float = 0.0
    head_weight: float = 1.0
    adversarial_epsilon: float = 0.0
    adversarial_steps: int = 10
    adversarial_target: str = "base"

    def __post_init__(self):
        if self.adversarial_epsilon < 0 or self.adversarial_steps < 1:
            raise ValueError(
                f"expected adversarial_epsilon >= 0 and adversarial_steps >= 1, got "
                f"{self.adversarial_epsilon} and {self.adversarial_steps}"
            )
        if self.adversarial_target not in ADVERSARIAL_TARGETS:
            raise ValueError(
                f"expected adversarial_target in {ADVERSARIAL_TARGETS}, got "
                f"{self.adversarial_target!r}"
            )


ADVERSARIAL_TARGETS = ("base", "tac")


def adversarial_half(model, variables, x, y, key, config: TACLossConfig) -> jax.Array:
    """``x`` with its first half replaced by PGD inputs against the current weights."""
    variables = jax.lax.stop_gradient(variables)
    make = tac_logits_fn if config.adversarial_target == "tac" else base_logits_fn
    logits_fn = make(model, variables)

    def attack(xb, yb, k):
        return pgd(logits_fn, xb, yb, config.adversarial_epsilon, key=k,
                   steps=config.adversarial_steps)  # fmt: skip

    return adversarial_half_batch(attack, x, y, key)


def split_batch(batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(image, label)`` of a training batch, checked."""
    if "image" not in batch or "label" not in batch:
        raise ValueError(f"expected a batch with 'image' and 'label', got keys {sorted(batch)}")
    x, y = batch["image"], batch["label"]
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"expected as many labels as inputs, got {y.shape[0]} labels for {x.shape[0]} inputs"
        )
    return x, y


def classifier_loss(
    model: nn.Module,
    params: Any,
    rest: Mapping[str, Any],
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    train: bool = True,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
    """Cross-entropy of a plain classifier (the "base" training mode)."""
    x, y = split_batch(batch)
    mutable = ["batch_stats"] if (train and "batch_stats" in rest) else False
    out = model.apply(
        {"params": params, **rest}, x, train=train, rngs={"dropout": key}, mutable=mutable
    )
    logits, updates = out if mutable else (out, {})
    targets = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)
    loss = jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return loss, ({"loss": loss, "accuracy": accuracy}, dict(updates))


def tac_objective(
    model: TACModel,
    params: Any,
    rest: Mapping[str, Any],
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    config: TACLossConfig = TACLossConfig(),
    *,
    train: bool = True,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
    """TAC's loss for one batch, in add-on or scratch mode.

    ``ce_weight · L_ce + l1_weight · L_bin``, plus (scratch mode) the base head's
    cross-entropy, which reaches only the head when the base detaches it.

    Args:
      model: a resolved `TACModel`.
      params: ``{"base", "tac"[, "scale"]}``.
      rest: the other variable collections (``batch_stats``).
      batch: ``{"image": (B, ...), "label": (B,) int}``.
      key: PRNG key for dropout, code noise and mixup.
      config: loss weights and regularisers.
      train: training mode.

    Returns:
      ``(loss, (metrics, updates))``.
    """
    x, y = split_batch(batch)
    codes = jnp.asarray(model.codes.matrix)
    key_mix, key_noise, key_drop = jax.random.split(key, 3)
    if train and config.adversarial_epsilon > 0:
        # Its own stream, so runs without it draw exactly what they always drew.
        key_adv = jax.random.fold_in(key, 1)
        if jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError("expected image inputs for adversarial training, got integer tokens")
        x = adversarial_half(model, {"params": params, **rest}, x, y, key_adv, config)
    targets = jax.nn.one_hot(y, model.num_classes)
    if config.mixup_alpha > 0:
        (x, targets), _, _ = mixup(key_mix, config.mixup_alpha, x, targets)
    out, updates = model.apply(
        {"params": params, **rest}, x, train=train, rngs={"dropout": key_drop}
    )
    loss, parts = tac_loss(
        out.activation,
        codes,
        targets,
        scale=model.current_scale(params),
        key=key_noise,
        code_noise=config.code_noise if train else 0.0,
        ce_weight=config.ce_weight,
        l1_weight=config.l1_weight,
    )
    metrics = {"tac_ce": parts["ce"], "tac_l1": parts["l1"]}
    if not model.frozen and config.head_weight > 0:
        head_ce = jnp.mean(optax.softmax_cross_entropy(out.logits, targets))
        loss = loss + config.head_weight * head_ce
        metrics["head_ce"] = head_ce
    tac_pred = tac_predict(out.activation, codes)
    metrics.update(
        loss=loss,
        accuracy=jnp.mean(jnp.argmax(out.logits, -1) == y),
        tac_accuracy=jnp.mean(tac_pred == y),
    )
    return loss, (metrics, updates)
