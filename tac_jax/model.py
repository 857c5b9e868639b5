"""Turning a base flax module, tapped layer names and a class count into a TAC model.

Two modes share one code path:

* ``"addon"``: the base is frozen. It always runs in inference mode (BatchNorm running
  statistics, no dropout), its parameters pass through ``stop_gradient`` (so their
  gradients are exactly zero) and `trainable_mask` keeps them out of the optimizer: its
  outputs are bit-identical to the base alone and only TAC's parameters train.
* ``"scratch"``: base and TAC train jointly. If the base has a ``detach_head`` field
  (every model in `tac_jax.models` does), its head reads stop-gradient features, so the
  body is shaped by TAC's losses and the head by its own cross-entropy (METHODS §1).

Features are read from the ``intermediates`` collection: ``capture="sow"`` for modules
that ``sow`` them (ours), ``capture="modules"`` for modules we do not own, whose
sub-module outputs flax captures by path (``capture_intermediates=`` with a filter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tac_jax import codes as codes_lib
from tac_jax.features import capture_filter, feature_dict, pooled_features, resolve_layers
from tac_jax.head import TACHead

MODES = ("addon", "scratch")
CAPTURES = ("sow", "modules")
PADDING_MASK = "padding_mask"  # A (B, T) feature that sequence models sow for pooling.


@dataclasses.dataclass(frozen=True)
class TACOutput:
    """What one forward pass of a `TACModel` gives.

    Attributes:
      logits: ``(B, C)`` the base head's logits.
      activation: ``(B, M)`` the total activation vector.
      features: every recorded intermediate, by name (for feature-based scores).
    """

    logits: jax.Array
    activation: jax.Array
    features: dict[str, jax.Array]


jax.tree_util.register_dataclass(
    TACOutput, data_fields=["logits", "activation", "features"], meta_fields=[]
)


class TACModel:
    """A base classifier plus a TAC head.

    Args:
      base: a ``flax.linen`` module mapping inputs to ``(B, C)`` logits.
      layers: tapped layers: exact names, globs (``"block*"``) or ``"re:…"`` regexes,
        resolved against the recorded intermediates at `init` (or `resolve`).
      num_classes: the class count ``C``.
      mode: ``"addon"`` or ``"scratch"`` (see the module docstring).
      capture: ``"sow"`` or ``"modules"``.
      code_kind, code_width, code_cap, code_seed: see `tac_jax.codes.make_codes`.
      projection, layer_norm, bottleneck, slicing, reduction: see `tac_jax.head.TACHead`.
      scale: the distance-softmax scale ``s``; ``learn_scale`` makes it a parameter
        (the authors' code keeps it fixed, and so do our defaults).
      detach_head: whether the base head reads stop-gradient features in scratch mode
        (default: when the base supports it).

    Example:
      >>> from tac_jax.models import MnistCNN  # doctest: +SKIP
      >>> model = TACModel(MnistCNN(10), ["conv*"], num_classes=10)  # doctest: +SKIP
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))  # doctest: +SKIP
      >>> out, _ = model.apply(variables, images)  # doctest: +SKIP
    """

    def __init__(
        self,
        base: nn.Module,
        layers: Sequence[str],
        num_classes: int,
        *,
        mode: str = "addon",
        capture: str = "sow",
        code_kind: str = "auto",
        code_width: int | None = None,
        code_cap: int = 16,
        code_seed: int = 0,
        projection: str = "small",
        layer_norm: bool = False,
        bottleneck: float = 1.0,
        slicing: str = "uniform",
        reduction: str = "mean",
        scale: float = 10.0,
        learn_scale: bool = False,
        detach_head: bool | None = None,
        head_dtype: Any = jnp.float32,
    ):
        if mode not in MODES:
            raise ValueError(f"expected a TAC mode in {MODES}, got {mode!r}")
        if capture not in CAPTURES:
            raise ValueError(f"expected a capture kind in {CAPTURES}, got {capture!r}")
        if isinstance(layers, str):
            layers = [layers]
        if not layers:
            raise ValueError("expected at least one tapped layer, got none")
        if detach_head is None:
            detach_head = mode == "scratch" and hasattr(base, "detach_head")
        if detach_head:
            if not hasattr(base, "detach_head"):
                raise ValueError(
                    f"expected a base module with a detach_head field for detach_head=True, "
                    f"got {type(base).__name__}"
                )
            base = base.clone(detach_head=True)
        self.base = base
        self.patterns = tuple(layers)
        self.num_classes = int(num_classes)
        self.mode = mode
        self.capture = capture
        self.scale = float(scale)
        self.learn_scale = bool(learn_scale)
        self._code_args = dict(kind=code_kind, width=code_width, cap=code_cap, seed=code_seed)
        self._head_args = dict(
            projection=projection,
            layer_norm=layer_norm,
            bottleneck=bottleneck,
            slicing=slicing,
            reduction=reduction,
            seed=code_seed,
            dtype=head_dtype,
        )
        self.layers: tuple[str, ...] | None = None
        self.codes: codes_lib.ClassCodes | None = None
        self.head: TACHead | None = None
        self._input_ndim: int | None = None

    # -- construction ---------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        return self.mode == "addon"

    def _run_base(self, base_variables, x, *, train, rngs, capture_all=False, **kwargs):
        mutable = ["intermediates"] + (["batch_stats"] if train and not self.frozen else [])
        capture = None
        if self.capture == "modules":
            capture = True if capture_all else capture_filter(self.layers or self.patterns)
        return self.base.apply(
            base_variables,
            x,
            train=train,
            rngs=rngs,
            mutable=mutable,
            capture_intermediates=capture or False,
            **kwargs,
        )

    def resolve(self, x: jax.Array, **kwargs: Any) -> tuple[str, ...]:
        """Resolves the layer patterns against what the base records for input ``x``.

        Builds the class codes and the head. Costs no computation (``jax.eval_shape``).

        Raises:
          ValueError: if a layer pattern matches no recorded intermediate, or the
            classes cannot get unique codes.
        """
        if self.layers is not None:
            return self.layers

        def names(x):
            variables = self.base.init(jax.random.key(0), x, train=False, **kwargs)
            _, state = self._run_base(
                variables, x, train=False, rngs=None, capture_all=True, **kwargs
            )
            return feature_dict(state.get("intermediates", {}))

        self._input_ndim = x.ndim
        shapes = jax.eval_shape(names, x)
        available = [name for name in shapes if name != PADDING_MASK]
        self.layers = tuple(resolve_layers(available, self.patterns))
        self.codes = codes_lib.make_codes(self.num_classes, len(self.layers), **self._code_args)
        self.head = TACHead(layers=self.layers, width=self.codes.width, **self._head_args)
        return self.layers

    def init(self, key: jax.Array, x: jax.Array, **kwargs: Any) -> dict[str, Any]:
        """Initialises ``{"params": {"base", "tac"[, "scale"]}, <base collections>}``.

        Args:
          key: PRNG key.
          x: an example input batch (only its shape and dtype matter).
          **kwargs: passed to the base module (e.g. ``mask=`` for text).
        """
        self.resolve(x, **kwargs)

        # One compiled program: initialising op by op compiles every random draw apart.
        @jax.jit
        def init(key, x, kwargs):
            key_base, key_head = jax.random.split(key)
            base_variables = dict(self.base.init(key_base, x, train=False, **kwargs))
            base_variables.pop("intermediates", None)
            _, state = self._run_base(base_variables, x, train=False, rngs=None, **kwargs)
            pooled = self._pool(feature_dict(state["intermediates"]))
            head_params = self.head.init(key_head, pooled)["params"]
            params = {"base": base_variables.pop("params"), "tac": head_params}
            if self.learn_scale:
                params["scale"] = jnp.asarray(self.scale, jnp.float32)
            return {"params": params, **base_variables}

        return init(key, x, kwargs)

    def with_base(
        self, variables: Mapping[str, Any], base_variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``variables`` with the base's parameters and collections replaced, e.g. by a
        pre-trained base restored before add-on training."""
        base_variables = dict(base_variables)
        base_variables.pop("intermediates", None)
        params = dict(variables["params"])
        params["base"] = base_variables.pop("params")
        return {"params": params, **base_variables}

    def base_variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The base module's own variables, usable with ``self.base.apply``."""
        rest = {k: v for k, v in variables.items() if k != "params"}
        return {"params": variables["params"]["base"], **rest}

    # -- forward --------------------------------------------------------------------

    def require_resolved(self) -> None:
        if self.layers is None:
            raise ValueError(
                "expected a resolved TACModel (call init or resolve first), got layer "
                f"patterns {list(self.patterns)} not yet resolved"
            )

    def _pool(self, features: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return pooled_features(features, self.layers, features.get(PADDING_MASK))

    def apply(
        self,
        variables: Mapping[str, Any],
        x: jax.Array,
        *,
        train: bool = False,
        rngs: Mapping[str, jax.Array] | None = None,
        **kwargs: Any,
    ) -> tuple[TACOutput, dict[str, Any]]:
        """One forward pass.

        Args:
          variables: from `init` (or `with_base`).
          x: an input batch.
          train: training mode for the base (ignored in add-on mode: a frozen base
            always runs in inference mode) and for the head.
          rngs: e.g. ``{"dropout": key}`` for a base with dropout in scratch training.
          **kwargs: passed to the base module.

        Returns:
          ``(TACOutput, updates)``: ``updates`` holds the base's changed collections
          (``batch_stats`` in scratch training), to merge into ``variables``.
        """
        self.require_resolved()
        if x.ndim != self._input_ndim:
            raise ValueError(
                f"expected inputs of rank {self._input_ndim} (batch first, as at init), "
                f"got shape {x.shape}"
            )
        base_variables = self.base_variables(variables)
        if self.frozen:
            base_variables = jax.lax.stop_gradient(base_variables)
        base_train = train and not self.frozen
        logits, state = self._run_base(base_variables, x, train=base_train, rngs=rngs, **kwargs)
        features = feature_dict(state.pop("intermediates"))
        activation = self.head.apply({"params": variables["params"]["tac"]}, self._pool(features))
        out = TACOutput(logits=logits.astype(jnp.float32), activation=activation, features=features)
        return out, dict(state)

    def current_scale(self, params: Mapping[str, Any]) -> jax.Array:
        """The distance-softmax scale: the learned parameter, or the fixed value."""
        if self.learn_scale:
            return params["scale"]
        return jnp.asarray(self.scale, jnp.float32)

    def param_labels(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``"frozen"`` / ``"trainable"`` for every leaf of ``params``.

        The base is frozen in add-on mode; everything trains in scratch mode.
        """
        return {
            name: jax.tree_util.tree_map(
                lambda _, n=name: "frozen" if (self.frozen and n == "base") else "trainable", sub
            )
            for name, sub in params.items()
        }

    def optimizer(self, tx: optax.GradientTransformation, params: Mapping[str, Any]):
        """``tx`` for trainable parameters and zero updates for frozen ones.

        ``optax.multi_transform`` rather than ``optax.masked``: a masked-out leaf must get
        a zero update (not its raw gradient), and no optimizer state or weight decay.
        """
        return optax.multi_transform(
            {"trainable": tx, "frozen": optax.set_to_zero()}, self.param_labels(params)
        )
