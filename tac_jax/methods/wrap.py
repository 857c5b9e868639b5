"""What the training-time methods share: one output type and a base-model runner.

A method wraps a plain base module (`tac_jax.models`) the way `tac_jax.model.TACModel`
does: it is a Python object with ``init``, ``apply`` and ``objective``, and its
variables are ``{"params": {"base": ..., <its own>}, <the base's collections>,
<its own collections>}``. Every ``apply`` returns a `MethodOutput`: the method's
predictive logits (what its prediction is the argmax of), the base's recorded
intermediates, and per-example extras (its own scores, or what they are computed from).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from tac_jax.features import feature_dict


@dataclasses.dataclass(frozen=True)
class MethodOutput:
    """One forward pass of a method.

    Attributes:
      logits: ``(B, C)`` predictive logits (log-probabilities for an ensemble).
      features: the base's recorded intermediates, by name (one member's for an
        ensemble: the first).
      extras: per-example arrays, ``(B, ...)``, named after what they are.
    """

    logits: jax.Array
    features: dict[str, jax.Array]
    extras: dict[str, jax.Array]


jax.tree_util.register_dataclass(
    MethodOutput, data_fields=["logits", "features", "extras"], meta_fields=[]
)


class MethodModel:
    """The base class: a base module, its class count, and the variable layout.

    Subclasses set ``name`` and ``own_collections`` (the collections the method adds,
    which the base never sees) and implement ``init``, ``apply`` and ``objective``.

    Attributes:
      base: the base flax module.
      num_classes: ``C``.
      has_head: whether the base's ``head`` Dense is the method's output layer (ReAct
        and ViM read it).
      has_features: whether ``features`` are one network's (the feature-based scores
        read them).
    """

    name = "method"
    own_collections: tuple[str, ...] = ()
    has_head = True
    has_features = True

    def __init__(self, base: nn.Module, num_classes: int):
        if num_classes < 2:
            raise ValueError(f"expected at least 2 classes, got {num_classes}")
        self.base = base
        self.num_classes = int(num_classes)

    def base_variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The base module's variables, usable with ``self.base.apply``."""
        rest = {
            k: v for k, v in variables.items() if k != "params" and k not in self.own_collections
        }
        return {"params": variables["params"]["base"], **rest}

    def run_base(
        self,
        base_variables: Mapping[str, Any],
        x: jax.Array,
        *,
        train: bool,
        rngs: Mapping[str, jax.Array] | None,
    ) -> tuple[jax.Array, dict[str, jax.Array], dict[str, Any]]:
        """``(logits, intermediates, updated collections)`` of the base."""
        mutable = ["intermediates"] + (
            ["batch_stats"] if train and "batch_stats" in base_variables else []
        )
        logits, state = self.base.apply(
            dict(base_variables), x, train=train, rngs=rngs, mutable=mutable
        )
        state = dict(state)
        features = feature_dict(state.pop("intermediates", {}))
        return logits.astype(jnp.float32), features, state

    def init_base(self, key: jax.Array, x: jax.Array) -> dict[str, Any]:
        """The base's variables without intermediates."""
        variables = dict(self.base.init(key, x, train=False))
        variables.pop("intermediates", None)
        return variables

    def optimizer(
        self, tx: optax.GradientTransformation, params: Any
    ) -> optax.GradientTransformation:
        """The optimizer for ``params``; ``tx`` as it is unless a method changes it."""
        del params
        return tx

    def capabilities(self) -> frozenset[str]:
        """What the evaluation can compute on this method's runs (see
        `tac_jax.evaluate.engine.registry.SCORES`'s ``needs``)."""
        caps = {self.name}
        if self.has_head:
            caps.add("head")
        if self.has_features:
            caps.add("features")
        return frozenset(caps)
