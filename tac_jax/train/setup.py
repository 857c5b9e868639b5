"""From a config to the pieces of a run: model, optimizer, objective, initial state.

`build_setup` is what training uses; `load_run` rebuilds the same pieces from a
workdir's checkpoint (its metadata holds the config), which is how add-on training
restores its base and how evaluation reloads a trained model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from tac_jax.data.augment import cifar_augment, mnist_augment, random_horizontal_flip
from tac_jax.methods import MethodModel, create_method
from tac_jax.model import TACModel
from tac_jax.models import create_model, default_layers
from tac_jax.parallel import abstract_sharded, make_mesh
from tac_jax.predictor import BasePredictor
from tac_jax.run import CKPT_DIR, RunDir, UnfinishedRunError
from tac_jax.train.checkpoint import Checkpointer, latest_step
from tac_jax.train.config import COMPUTE_DTYPES, config_from_dict, model_fields, validate_config
from tac_jax.train.objectives import TACLossConfig
from tac_jax.train.optim import make_optimizer
from tac_jax.train.state import TrainState
from tac_jax.train.step import Objective, as_float_images, make_objective

# Every recorded feature but the one the head reads (a given base's default taps).
EVERY_LAYER = "re:^(?!pre_logits$).+"
AUGMENT_FNS = {
    "none": None,
    "mnist": mnist_augment,
    "cifar": cifar_augment,
    "flip": random_horizontal_flip,
}


def _model_input(x: jax.Array) -> jax.Array:
    """What the model sees of a batch after the step's preprocessing: float32 images, or
    integer token ids unchanged (an embedding lookup needs integers)."""
    x = as_float_images(x)
    return x if jnp.issubdtype(x.dtype, jnp.integer) else x.astype(jnp.float32)


@dataclasses.dataclass
class TrainSetup:
    """The pieces of one run, built from its config.

    Attributes:
      config: the run's config.
      input_shape: one example's shape, e.g. ``(28, 28, 1)``.
      input_dtype: the dtype batches arrive in (``uint8`` or ``float32`` images,
        ``int32`` token ids).
      base: the base flax module, in the compute dtype.
      tac: the resolved `TACModel` in TAC modes, else ``None``.
      method: the training-time method (`tac_jax.methods`) when the config names one,
        else ``None``.
      tx: the optimizer (the frozen base masked out in add-on mode).
      schedule: the learning rate of each update count.
      objective: the training loss, see `tac_jax.train.step.make_objective`.
      augment: the per-image training augmentation, or ``None``.
    """

    config: ml_collections.ConfigDict
    input_shape: tuple[int, ...]
    input_dtype: Any
    base: nn.Module
    tac: TACModel | None
    method: MethodModel | None
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    objective: Objective
    augment: Any

    @property
    def predictor(self) -> TACModel | MethodModel | BasePredictor:
        """What the run predicts with, behind one forward contract
        (`tac_jax.predictor`): the TAC model, the method, or the base."""
        if self.tac is not None:
            return self.tac
        return self.method if self.method is not None else BasePredictor(self.base)

    @property
    def model(self) -> nn.Module | TACModel | MethodModel:
        """What the train and eval steps run: the TAC model, the method, or the base."""
        if self.tac is not None:
            return self.tac
        return self.method if self.method is not None else self.base

    def example(self) -> jax.Array:
        """A one-example input batch of the right shape and dtype."""
        return jnp.zeros((1, *self.input_shape), self.input_dtype)

    def init(self, key: jax.Array) -> TrainState:
        """The initial state (jit it with ``out_shardings`` to create it sharded)."""
        x = _model_input(self.example())
        if self.tac is not None:
            variables = self.tac.init(key, x)
        elif self.method is not None:
            variables = self.method.init(key, x)
        else:
            variables = dict(self.base.init(key, x, train=False))
        variables = dict(variables)
        params = variables.pop("params")
        return TrainState.create(params, self.tx, variables)

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint stores to be rebuilt by `load_run`."""
        return {
            "config": self.config.to_dict(),
            "input_shape": list(self.input_shape),
            "input_dtype": jnp.dtype(self.input_dtype).name,
        }


def build_setup(
    config: ml_collections.ConfigDict,
    input_shape: Sequence[int],
    input_dtype: Any = jnp.uint8,
    *,
    base: nn.Module | None = None,
) -> TrainSetup:
    """Builds the model, optimizer and objective a config describes.

    Args:
      config: see `tac_jax.train.config.default_config`.
      input_shape: one example's shape, e.g. ``(28, 28, 1)`` or ``(max_len,)``.
      input_dtype: the dtype of the batches (int32 for token ids).
      base: the base module, instead of ``config.model`` (e.g. a user's classifier
        wrapped in `tac_jax.tapped.Tapped`); TAC taps ``config.tac.layers``, by default
        every layer it records.

    Returns:
      A `TrainSetup`.

    Raises:
      ValueError: on an invalid config (bad mode, unknown model, tapped layer missing,
        ...).
    """
    validate_config(config)
    num_classes = int(config.data.num_classes)
    fields = model_fields(config)
    fields.pop("dtype", None)
    dtype = COMPUTE_DTYPES[config.dtype]
    if base is None:
        base = create_model(config.model.name, num_classes, dtype=dtype, **fields)
        default = lambda: default_layers(config.model.name, **fields)  # noqa: E731
    else:
        default = lambda: (EVERY_LAYER,)  # noqa: E731
    input_shape = tuple(int(d) for d in input_shape)
    example = _model_input(jnp.zeros((1, *input_shape), jnp.dtype(input_dtype)))
    tac = None
    if config.mode != "base":
        t = config.tac
        layers = tuple(t.layers) or default()
        tac = TACModel(
            base,
            layers,
            num_classes,
            mode=config.mode,
            code_kind=t.code_kind,
            code_width=t.code_width or None,
            code_cap=t.code_cap,
            code_seed=t.code_seed,
            projection=t.projection,
            layer_norm=t.layer_norm,
            bottleneck=t.bottleneck,
            slicing=t.slicing,
            reduction=t.reduction,
            scale=t.scale,
            learn_scale=t.learn_scale,
            head_dtype=dtype,
        )
        tac.resolve(example)
    method = None
    if config.get("method") is not None:
        method = create_method(config.method, base, num_classes)
    tx, schedule = make_optimizer(config.optim, config.schedule, config.steps)
    if tac is not None:
        abstract = jax.eval_shape(tac.init, jax.random.key(0), example)
        tx = tac.optimizer(tx, abstract["params"])
    if method is not None:
        tx = method.optimizer(tx, None)
    loss_config = TACLossConfig(
        ce_weight=config.tac.ce_weight,
        l1_weight=config.tac.l1_weight,
        code_noise=config.tac.code_noise,
        mixup_alpha=config.tac.mixup_alpha,
        head_weight=config.tac.head_weight,
        adversarial_epsilon=float(config.tac.get("adversarial_epsilon", 0.0)),
        adversarial_steps=int(config.tac.get("adversarial_steps", 10)),
        adversarial_target=config.tac.get("adversarial_target", "base"),
    )
    if method is not None:
        objective = method.objective
    else:
        objective = make_objective(
            config.mode,
            tac if tac is not None else base,
            num_classes=num_classes,
            loss_config=loss_config,
            label_smoothing=config.label_smoothing,
        )
    return TrainSetup(
        config=config,
        input_shape=input_shape,
        input_dtype=jnp.dtype(input_dtype),
        base=base,
        tac=tac,
        method=method,
        tx=tx,
        schedule=schedule,
        objective=objective,
        augment=AUGMENT_FNS[config.data.augment],
    )


def load_run(
    workdir: str | os.PathLike, mesh: Mesh | None = None, step: int | None = None
) -> tuple[TrainSetup, int, TrainState]:
    """Rebuilds a run from its workdir's checkpoint.

    Without ``step`` the run must have finished training (`tac_jax.run.RunDir.finished`)
    and its final checkpoint must be readable: a half-trained network is never taken for
    the trained one. A ``step`` loads that checkpoint, finished run or not.

    Args:
      workdir: a workdir `tac_jax.train.loop.train_and_evaluate` wrote.
      mesh: where to place the state (default: every device, replicated).
      step: the checkpoint to load (default: the final one of a finished run).

    Returns:
      ``(setup, step, state)``.

    Raises:
      FileNotFoundError: if the workdir holds no checkpoint.
      UnfinishedRunError: without ``step``, if training has not ended, or its final
        checkpoint is damaged (it is then set aside as ``<step>.damaged``, so that
        running the same training again redoes it).
    """
    run = RunDir(workdir)
    directory = os.path.join(os.fspath(workdir), CKPT_DIR)
    if latest_step(directory) is None:
        raise FileNotFoundError(f"expected a checkpoint under {directory}, got none")
    progress = run.require_finished() if step is None else None
    mesh = make_mesh() if mesh is None else mesh
    with Checkpointer(directory) as ckpt:
        metadata = ckpt.read_metadata(step)
        if not metadata or "config" not in metadata:
            raise ValueError(
                f"expected checkpoint metadata with a config in {directory}, got {metadata}"
            )
        config = config_from_dict(metadata["config"])
        setup = build_setup(config, metadata["input_shape"], metadata["input_dtype"])
        abstract = abstract_sharded(setup.init, mesh, jax.random.key(0))
        if step is None:
            restored = ckpt.restore_latest(abstract)
            if restored is None:
                raise FileNotFoundError(f"expected a readable checkpoint in {directory}, got none")
            step, state = restored
            if step != progress.steps:
                raise UnfinishedRunError(
                    f"expected the final checkpoint of {run.path} (step {progress.steps}) to be "
                    f"readable, got step {step} as the newest readable one (the damaged ones are "
                    "set aside in ckpt/): run the same tac-jax train command again to redo them"
                )
        else:
            state = ckpt.restore(step, abstract)
    return setup, int(step), state
