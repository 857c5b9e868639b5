"""The jitted, sharded train and eval steps.

A step is built in two layers: a pure function of ``(state, batch)`` (`train_step_fn`,
`eval_step_fn`), then `shard_train_step` / `shard_eval_step` jit it with explicit
shardings on the mesh: the batch split over ``"data"``, the state as the caller placed
it (replicated by default), the state donated. Keeping the layers apart lets a caller
wrap the pure function (e.g. with ``chex.assert_max_traces``) before jitting it.

Randomness is ``fold_in(key(seed), state.step)``: the step, not a key carried in the
state or on the host, fixes every draw, so a resumed run repeats the same randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from tac_jax.data.augment import augment_batch
from tac_jax.methods import MethodModel
from tac_jax.model import TACModel
from tac_jax.parallel import data_sharding, replicated
from tac_jax.scores.tac import tac_predict
from tac_jax.train.objectives import TACLossConfig, classifier_loss, tac_objective
from tac_jax.train.state import TrainState

Batch = Mapping[str, jax.Array]
Objective = Callable[[Any, Mapping[str, Any], Batch, jax.Array], tuple[jax.Array, Any]]
AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]
STEP_MODES = ("base", "addon", "scratch")


def as_float_images(x: jax.Array) -> jax.Array:
    """uint8 images become float32 in [0, 1] on the device; other inputs pass through,
    the int32 token ids of text models unchanged.

    Batches travel as uint8 when the data is uint8: a quarter of the host-to-device bytes.
    """
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    return x


def make_objective(
    mode: str,
    model: nn.Module | TACModel,
    *,
    num_classes: int,
    loss_config: TACLossConfig | None = None,
    label_smoothing: float = 0.0,
) -> Objective:
    """The loss of one training mode as ``objective(params, rest, batch, key)``.

    Args:
      mode: ``"base"`` (cross-entropy of ``model``, a plain flax module), or
        ``"addon"`` / ``"scratch"`` (TAC's loss; ``model`` is a resolved `TACModel` of
        that mode).
      model: the module or TAC model.
      num_classes: the class count.
      loss_config: TAC's loss weights (TAC modes; default `TACLossConfig()`).
      label_smoothing: of the cross-entropy (base mode).

    Returns:
      A function returning ``(loss, (metrics, updated collections))``.
    """
    if mode not in STEP_MODES:
        raise ValueError(f"expected a training mode in {STEP_MODES}, got {mode!r}")
    if mode == "base":
        if isinstance(model, TACModel):
            raise ValueError("expected a plain flax module for mode 'base', got a TACModel")

        def base_objective(params, rest, batch, key):
            return classifier_loss(
                model,
                params,
                rest,
                batch,
                key,
                num_classes=num_classes,
                label_smoothing=label_smoothing,
            )

        return base_objective
    if not isinstance(model, TACModel) or model.mode != mode:
        got = model.mode if isinstance(model, TACModel) else type(model).__name__
        raise ValueError(f"expected a TACModel in mode {mode!r}, got {got!r}")

    loss_config = TACLossConfig() if loss_config is None else loss_config

    def tac(params, rest, batch, key):
        return tac_objective(model, params, rest, batch, key, loss_config)

    return tac


def train_step_fn(
    objective: Objective,
    tx: optax.GradientTransformation,
    *,
    seed: int = 0,
    augment: AugmentFn | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure update step ``(state, batch) -> (state, metrics)``.

    Args:
      objective: from `make_objective`.
      tx: the optimizer the state was created with.
      seed: the run's seed; the step's key is ``fold_in(key(seed), state.step)``.
      augment: a per-image ``fn(key, image)`` from `tac_jax.data.augment`, applied on
        the device with one key per example.

    Returns:
      The step function; its metrics are global-batch means plus ``grad_norm``.
    """

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(jax.random.key(seed), state.step)
        key_augment, key_loss = jax.random.split(key)
        images = as_float_images(batch["image"])
        if augment is not None:
            images = augment_batch(key_augment, images, augment)
        batch = {**batch, "image": images}

        def loss_fn(params):
            return objective(params, state.collections, batch, key_loss)

        (_, (metrics, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads, tx, updates)
        return state, {**metrics, "grad_norm": optax.global_norm(grads)}

    return train_step


def eval_step_fn(
    model: nn.Module | TACModel,
) -> Callable[[TrainState, Batch, jax.Array], tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
    """The pure evaluation step ``(state, batch, mask) -> (outputs, counts)``.

    Args:
      model: the plain base module (base mode), a `tac_jax.methods.MethodModel`, or a
        resolved `TACModel`.

    Returns:
      A function giving ``outputs``: ``logits`` (and, for a TAC model, ``activation``)
      per example; and ``counts``: ``count`` (rows where ``mask`` is true), ``correct``
      (base head) and, for a TAC model, ``tac_correct`` (TAC's Hamming decoding),
      summed over the global batch.
    """

    def eval_step(state: TrainState, batch: Batch, mask: jax.Array):
        images = as_float_images(batch["image"])
        labels = batch["label"]
        outputs, counts = {}, {}
        if isinstance(model, TACModel):
            result, _ = model.apply(state.variables, images, train=False)
            logits = result.logits
            outputs["activation"] = result.activation
            tac_hit = tac_predict(result.activation, jnp.asarray(model.codes.matrix)) == labels
            counts["tac_correct"] = jnp.sum(tac_hit & mask)
        elif isinstance(model, MethodModel):
            result, _ = model.apply(state.variables, images, train=False)
            logits = result.logits
        else:
            logits = model.apply(state.variables, images, train=False).astype(jnp.float32)
        outputs["logits"] = logits
        counts["correct"] = jnp.sum((jnp.argmax(logits, -1) == labels) & mask)
        counts["count"] = jnp.sum(mask)
        return outputs, counts

    return eval_step


def shard_train_step(
    step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]],
    mesh: Mesh,
    state_shardings: Any,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """Jits a train step on ``mesh``: batch over ``"data"``, the state donated.

    Args:
      step_fn: from `train_step_fn` (possibly wrapped).
      mesh: the ``("data", "model")`` mesh.
      state_shardings: a `TrainState` of shardings (from `tac_jax.parallel`).

    Returns:
      The jitted step; metrics come back replicated.
    """
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, data_sharding(mesh)),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,),
    )


def shard_eval_step(
    step_fn: Callable[[TrainState, Batch, jax.Array], Any],
    mesh: Mesh,
    state_shardings: Any,
) -> Callable[[TrainState, Batch, jax.Array], Any]:
    """Jits an eval step: per-example outputs stay split over ``"data"``; the counts
    come back replicated, so every process can read them."""
    rows = data_sharding(mesh)
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, rows, rows),
        out_shardings=(rows, replicated(mesh)),
    )
