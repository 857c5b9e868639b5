"""One batched, jitted forward pass per dataset: everything the scores read.

A `Forward` is built once per run and reused for every dataset, so the model compiles
once per input dtype (uint8 splits, float OOD sets). One pass gives the base head's
logits, TAC's total activation vector (TAC runs), the penultimate features the head
reads (``"pre_logits"``) and the spatially pooled features of the chosen layers, and a
training-time method's per-example extras (`tac_jax.methods`), all as float32 numpy
arrays. The scores that need more than one plain pass have their own, each run only
when asked for (`PASSES`): ODIN and the learned confidence's perturbed input (an input
gradient), MC dropout (``T`` dropout masks) and Purview (per-example parameter
gradients).

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
from tac_jax.features import pooled_features
from tac_jax.methods.confidence import CONFIDENCE_EPSILON, perturb_towards_confidence
from tac_jax.methods.mc_dropout import (
    MC_SAMPLES,
    MC_SEED,
    check_mc_dropout,
    mc_dropout_logits,
    mc_dropout_scores,
)
from tac_jax.model import PADDING_MASK
from tac_jax.models import default_layers
from tac_jax.scores.logits import ODIN_EPSILON, ODIN_TEMPERATURE, odin
from tac_jax.scores.purview import purview_features
from tac_jax.train.config import model_fields
from tac_jax.train.step import as_float_images

PENULTIMATE = "pre_logits"
DEFAULT_BATCH = 256
# Per-example parameter gradients are memory-hungry: Purview runs in smaller batches.
PURVIEW_BATCH = 64
PASSES = ("odin", "confidence_perturbed", "mc_dropout", "purview")

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
    return setup.predictor.base_variables(state.variables)


def head_params(setup: Any, state: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The base head's ``(kernel (D, C), bias (C,))``, or None if the model has no
    top-level ``Dense`` named ``"head"`` (for a `tac_jax.tapped.Tapped` model: its
    ``head``) or a method does not predict with it."""
    if setup.method is not None and not setup.method.has_head:
        return None
    params = base_variables(setup, state)["params"]
    # A base may say where its head is (`tac_jax.tapped.Tapped.head_params`); ours name
    # it "head".
    locate = getattr(setup.base, "head_params", None)
    head = locate(params, int(setup.config.data.num_classes)) if locate else params.get("head")
    if head is None or "kernel" not in head or "bias" not in head:
        return None
    return np.asarray(head["kernel"], np.float32), np.asarray(head["bias"], np.float32)


@dataclasses.dataclass
class Forward:
    """The jitted passes of one run.

    Attributes:
      setup: the run's `tac_jax.train.setup.TrainSetup`.
      variables: the variables the passes read (TAC's, the method's, or the base's).
      layers: the layers whose pooled features are collected.
      has_tac: whether outputs hold TAC's ``activation``.
      apply_fn: ``(variables, x) → outputs``, jitted.
      passes: ``{name: (variables, x) → (B, ...) array}``, jitted, for the names of
        `PASSES` this run supports.
      pass_batch: the batch size of each pass (default: the caller's).
    """

    setup: Any
    variables: Any
    layers: tuple[str, ...]
    has_tac: bool
    apply_fn: Callable = dataclasses.field(repr=False)
    passes: dict[str, Callable] = dataclasses.field(default_factory=dict, repr=False)
    pass_batch: dict[str, int] = dataclasses.field(default_factory=dict)

    def apply(self, x: jax.Array) -> Outputs:
        """One batch → ``{"logits", "penultimate", "layers": {name: (B, C_l)}
        [, "activation"][, "extras": {name: (B, ...)}]}``."""
        return self.apply_fn(self.variables, x)

    def run_pass(self, name: str, x: jax.Array) -> jax.Array:
        """One batch through the extra pass ``name`` (see `PASSES`)."""
        if name not in self.passes:
            raise ValueError(
                f"expected a pass this run supports {sorted(self.passes)}, got {name!r}"
            )
        return self.passes[name](self.variables, x)


def _base_and_split(setup: Any) -> tuple[Any, Callable[[Any], dict[str, Any]]]:
    """The base module and ``variables → base variables`` of a run."""
    predictor = setup.predictor
    return predictor.base, predictor.base_variables


def predictive_logits_fn(setup: Any) -> Callable[[Any, jax.Array], jax.Array]:
    """``(variables, x) → (B, C)`` logits of what the run predicts with: the base head
    (base and TAC runs; TAC's own prediction is its code distances) or the method."""
    method = setup.method
    if method is not None:
        return lambda variables, x: method.apply(variables, x)[0].logits
    base, split = _base_and_split(setup)
    return lambda variables, x: base.apply(split(variables), x, train=False).astype(jnp.float32)


def supported_passes(setup: Any, state: Any) -> tuple[str, ...]:
    """The names of `PASSES` a run supports: input-gradient passes need float (image)
    inputs, the perturbed confidence a confidence run, MC dropout a base with dropout
    and no BatchNorm."""
    dtype = np.dtype(setup.input_dtype)
    images = dtype == np.uint8 or np.issubdtype(dtype, np.floating)
    base, split = _base_and_split(setup)
    names = ["purview"]
    if images:
        names.append("odin")
        if setup.method is not None and setup.method.name == "confidence":
            names.append("confidence_perturbed")
    if setup.method is None:
        try:
            check_mc_dropout(base, split(state.variables))
            names.append("mc_dropout")
        except ValueError:
            pass
    return tuple(n for n in PASSES if n in names)


def make_forward(
    setup: Any,
    state: Any,
    *,
    layers: Sequence[str] | None = None,
    odin_temperature: float = ODIN_TEMPERATURE,
    odin_epsilon: float = ODIN_EPSILON,
    confidence_epsilon: float = CONFIDENCE_EPSILON,
    mc_samples: int = MC_SAMPLES,
) -> Forward:
    """Builds the jitted passes of a run loaded with `tac_jax.train.setup.load_run`.

    Args:
      setup: the run's setup.
      state: its restored state.
      layers: the layers to pool and collect (default `feature_layers`).
      odin_temperature: ODIN's ``T``.
      odin_epsilon: ODIN's step, in input units (images in [0, 1]).
      confidence_epsilon: the learned confidence's test-time step, in input units.
      mc_samples: ``T``, the dropout masks of MC dropout.

    Returns:
      A `Forward`.
    """
    layers = tuple(feature_layers(setup) if layers is None else layers)
    method = setup.method
    predictor = setup.predictor
    base, split = predictor.base, predictor.base_variables

    def forward(variables, x):
        # One contract for TAC, method and base models (`tac_jax.predictor`).
        out, _ = predictor.apply(variables, as_float_images(x))
        logits, features = out.logits, out.features
        activation, extras = getattr(out, "activation", None), getattr(out, "extras", None)
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
        if extras:
            out["extras"] = {k: v.astype(jnp.float32) for k, v in extras.items()}
        return out

    logits_fn = predictive_logits_fn(setup)

    def odin_pass(variables, x):
        return odin(lambda x_in: logits_fn(variables, x_in), as_float_images(x),
                    odin_temperature, odin_epsilon)  # fmt: skip

    def confidence_pass(variables, x):
        def c_logit(x_in):
            return method.apply(variables, x_in)[0].extras["confidence_logit"]

        x_tilde = perturb_towards_confidence(c_logit, as_float_images(x), confidence_epsilon)
        return jax.nn.sigmoid(c_logit(x_tilde))

    def mc_pass(variables, x):
        sampled = mc_dropout_logits(
            base, split(variables), as_float_images(x), jax.random.key(MC_SEED), mc_samples
        )
        return mc_dropout_scores(sampled)

    # Purview differentiates the parameters of what predicts: the base (base and TAC
    # runs: a TAC add-on's own apply would stop the base's gradients) or the method.
    def purview_pass(variables, x):
        own = variables if method is not None else split(variables)
        rest = {k: v for k, v in own.items() if k != "params"}

        if method is not None:

            def example_logits(params, x1):
                return logits_fn({"params": params, **rest}, x1[None])[0]

        else:

            def example_logits(params, x1):
                out = base.apply({"params": params, **rest}, x1[None], train=False)
                return out[0].astype(jnp.float32)

        return purview_features(example_logits, own["params"], as_float_images(x))

    available = supported_passes(setup, state)
    all_passes = {
        "odin": odin_pass,
        "confidence_perturbed": confidence_pass,
        "mc_dropout": mc_pass,
        "purview": purview_pass,
    }
    return Forward(
        setup=setup,
        variables=state.variables,
        layers=layers,
        has_tac=setup.tac is not None,
        apply_fn=jax.jit(forward),
        passes={name: jax.jit(all_passes[name]) for name in available},
        pass_batch={"purview": PURVIEW_BATCH},
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
    passes: Sequence[str] = (),
) -> Outputs:
    """Runs the forward pass (and the extra passes asked for) over a whole dataset.

    Args:
      forward: from `make_forward`.
      images: ``(N, *input_shape)`` uint8 or float inputs in [0, 1] (a missing channel
        axis of size 1 is added).
      batch_size: examples per call; every batch (the last one padded) has this size,
        so each input dtype compiles once whatever the dataset size.
      odin: also run ODIN's perturbed pass (the same as ``passes=("odin",)``).
      passes: names from `PASSES` (each must be one the run supports).

    Returns:
      ``{"logits" (N, C), "penultimate" (N, D), "layers": {name: (N, C_l)}
      [, "activation" (N, M)][, "extras": {...}][, <pass name>: its output]}``, float32
      numpy arrays (MC dropout's pass gives a dict of its scores).
    """
    images = check_batchable(images, forward.setup.input_shape)
    if np.issubdtype(images.dtype, np.floating):
        # One float dtype, so float inputs share one compiled program; uint8 (and the
        # integer tokens of text models) pass through to the run's own preprocessing.
        images = images.astype(np.float32)
    if batch_size < 1:
        raise ValueError(f"expected a positive batch size, got {batch_size}")
    names = list(dict.fromkeys([*(["odin"] if odin else []), *passes]))
    unknown = [n for n in names if n not in forward.passes]
    if unknown:
        raise ValueError(
            f"expected passes this run supports {sorted(forward.passes)}, got {unknown}"
        )
    out = batched_apply(forward.apply, images, batch_size)
    for name in names:
        size = min(batch_size, forward.pass_batch.get(name, batch_size))
        out[name] = batched_apply(lambda x, n=name: forward.run_pass(n, x), images, size)
    return out


def take(outputs: Mapping[str, Any], index: np.ndarray) -> Outputs:
    """The rows ``index`` of every array of ``outputs`` (e.g. a validation half)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[index], dict(outputs))
