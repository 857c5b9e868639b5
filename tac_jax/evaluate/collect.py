"""One batched, jitted forward pass per dataset: everything the scores read.

A `Forward` is built once per run and reused for every dataset, so the model compiles
once per input dtype (uint8 splits, float OOD sets). One pass gives the base head's
logits, TAC's total activation vector (TAC runs), the penultimate features the head
reads (``"pre_logits"``) and the spatially pooled features of the chosen layers, all
as float32 numpy arrays. ODIN perturbs its input along a gradient and so needs its own
pass (`Forward.odin`); it is only run when asked for.

Inputs go through the run's own preprocessing, `tac_jax.train.step.as_float_images`
(uint8 → float in [0, 1] on the device; floats pass through), inside the jitted function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.batching import batched_apply
from tac_jax.features import feature_dict, pooled_features
from tac_jax.model import PADDING_MASK
from tac_jax.models import default_layers
from tac_jax.scores.logits import odin
from tac_jax.train.config import model_fields
from tac_jax.train.step import as_float_images

PENULTIMATE = "pre_logits"
# ODIN's settings (Liang et al., 2018), in the units the model takes: images in [0, 1].
ODIN_TEMPERATURE = 1000.0
ODIN_EPSILON = 0.0014
DEFAULT_BATCH = 256

Outputs = dict[str, Any]


def feature_layers(setup: Any) -> tuple[str, ...]:
    """The layers whose pooled features multi-layer Mahalanobis reads: TAC's tapped
    layers in TAC runs, else the model's default TAC layers (the same ones a TAC add-on
    on this base would tap)."""
    if setup.tac is not None:
        return tuple(setup.tac.layers)
    config = setup.config
    fields = model_fields(config)
    fields.pop("dtype", None)
    return tuple(default_layers(config.model.name, **fields))


def base_variables(setup: Any, state: Any) -> dict[str, Any]:
    """The base module's variables, in TAC and in base-only runs."""
    if setup.tac is not None:
        return setup.tac.base_variables(state.variables)
    return dict(state.variables)


def head_params(setup: Any, state: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The base head's ``(kernel (D, C), bias (C,))``, or None if the model has no
    top-level ``Dense`` named ``"head"``."""
    head = base_variables(setup, state)["params"].get("head")
    if head is None or "kernel" not in head or "bias" not in head:
        return None
    return np.asarray(head["kernel"], np.float32), np.asarray(head["bias"], np.float32)


@dataclasses.dataclass
class Forward:
    """The jitted passes of one run.

    Attributes:
      setup: the run's `tac_jax.train.setup.TrainSetup`.
      variables: the variables the passes read (TAC's, or the base's).
      layers: the layers whose pooled features are collected.
      has_tac: whether outputs hold TAC's ``activation``.
      apply_fn: ``(variables, x) → outputs``, jitted.
      odin_fn: ``(base variables, x) → (B,)`` ODIN scores, jitted.
    """

    setup: Any
    variables: Any
    layers: tuple[str, ...]
    has_tac: bool
    apply_fn: Callable = dataclasses.field(repr=False)
    odin_fn: Callable = dataclasses.field(repr=False)

    def apply(self, x: jax.Array) -> Outputs:
        """One batch → ``{"logits", "penultimate", "layers": {name: (B, C_l)}[, "activation"]}``."""
        return self.apply_fn(self.variables, x)

    def odin(self, x: jax.Array) -> jax.Array:
        """One batch → ``(B,)`` ODIN scores (an input-gradient step, then a forward pass)."""
        variables = self.variables
        if self.has_tac:
            variables = self.setup.tac.base_variables(variables)
        return self.odin_fn(variables, x)


def make_forward(
    setup: Any,
    state: Any,
    *,
    layers: Sequence[str] | None = None,
    odin_temperature: float = ODIN_TEMPERATURE,
    odin_epsilon: float = ODIN_EPSILON,
) -> Forward:
    """Builds the jitted passes of a run loaded with `tac_jax.train.setup.load_run`.

    Args:
      setup: the run's setup.
      state: its restored state.
      layers: the layers to pool and collect (default `feature_layers`).
      odin_temperature: ODIN's ``T``.
      odin_epsilon: ODIN's step, in input units (images in [0, 1]).

    Returns:
      A `Forward`.
    """
    layers = tuple(feature_layers(setup) if layers is None else layers)
    tac = setup.tac
    base = tac.base if tac is not None else setup.base

    def forward(variables, x):
        x = as_float_images(x)
        if tac is not None:
            out, _ = tac.apply(variables, x)
            logits, features, activation = out.logits, out.features, out.activation
        else:
            logits, st = base.apply(variables, x, train=False, mutable=["intermediates"])
            features, activation = feature_dict(st["intermediates"]), None
        if PENULTIMATE not in features:
            raise ValueError(
                f"expected the model to record {PENULTIMATE!r} (the features its head reads), "
                f"got intermediates {sorted(features)}"
            )
        pooled = pooled_features(features, layers, features.get(PADDING_MASK))
        out = {
            "logits": logits.astype(jnp.float32),
            "penultimate": features[PENULTIMATE].astype(jnp.float32),
            "layers": {name: h.astype(jnp.float32) for name, h in pooled.items()},
        }
        if activation is not None:
            out["activation"] = activation.astype(jnp.float32)
        return out

    def odin_pass(base_vars, x):
        def logits_fn(x_in):
            return base.apply(base_vars, x_in, train=False).astype(jnp.float32)

        return odin(logits_fn, as_float_images(x), odin_temperature, odin_epsilon)

    return Forward(
        setup=setup,
        variables=state.variables,
        layers=layers,
        has_tac=tac is not None,
        apply_fn=jax.jit(forward),
        odin_fn=jax.jit(odin_pass),
    )


def check_batchable(images: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """``images`` with a channel axis added where the run's inputs have one of size 1.

    Raises:
      ValueError: if the per-example shape is not the run's input shape.
    """
    images = np.asarray(images)
    shape = tuple(int(d) for d in input_shape)
    if images.ndim == len(shape) and shape[-1] == 1 and images.shape[1:] == shape[:-1]:
        images = images[..., None]
    if images.ndim != len(shape) + 1 or images.shape[1:] != shape:
        raise ValueError(
            f"expected inputs of shape (N, {', '.join(map(str, shape))}) (the run's input "
            f"shape), got shape {images.shape}"
        )
    return images


def collect(
    forward: Forward,
    images: np.ndarray,
    *,
    batch_size: int = DEFAULT_BATCH,
    odin: bool = False,
) -> Outputs:
    """Runs the forward pass (and, if asked, ODIN's) over a whole dataset.

    Args:
      forward: from `make_forward`.
      images: ``(N, *input_shape)`` uint8 or float inputs in [0, 1] (a missing channel
        axis of size 1 is added).
      batch_size: examples per call; every batch (the last one padded) has this size,
        so each input dtype compiles once whatever the dataset size.
      odin: also run ODIN's perturbed pass, under ``"odin"``.

    Returns:
      ``{"logits" (N, C), "penultimate" (N, D), "layers": {name: (N, C_l)}
      [, "activation" (N, M)][, "odin" (N,)]}``, float32 numpy arrays.
    """
    images = check_batchable(images, forward.setup.input_shape)
    if np.issubdtype(images.dtype, np.floating):
        # One float dtype, so float inputs share one compiled program; uint8 (and the
        # integer tokens of text models) pass through to the run's own preprocessing.
        images = images.astype(np.float32)
    if batch_size < 1:
        raise ValueError(f"expected a positive batch size, got {batch_size}")
    out = batched_apply(forward.apply, images, batch_size)
    if odin:
        out["odin"] = batched_apply(forward.odin, images, batch_size)
    return out


def take(outputs: Mapping[str, Any], index: np.ndarray) -> Outputs:
    """The rows ``index`` of every array of ``outputs`` (e.g. a validation half)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[index], dict(outputs))
