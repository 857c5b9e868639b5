"""The forward contract every model of a run follows, and `BasePredictor` for a plain
classifier.

A TAC model (`tac_jax.model.TACModel`), a training-time method
(`tac_jax.methods.wrap.MethodModel`) and a plain classifier all offer the same three
things: ``apply(variables, x, train=False) → (output, state)`` with ``output.logits``
(what the run predicts with) and ``output.features`` (the recorded intermediates, by
name), plus ``output.activation`` (TAC's total activation vector) or ``output.extras``
(a method's per-example arrays) when the model has them; ``base``, the base flax module;
and ``base_variables(variables)``, its variables. `tac_jax.evaluate.engine.collect`
reads every run through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from tac_jax.features import feature_dict


@dataclasses.dataclass(frozen=True)
class BaseOutput:
    """A plain classifier's forward pass.

    Attributes:
      logits: ``(B, C)``.
      features: every recorded intermediate, by name.
    """

    logits: jax.Array
    features: dict[str, jax.Array]


class BasePredictor:
    """A plain classifier behind the forward contract.

    Args:
      base: a flax module ``(x, train=...) → (B, C)`` logits that records its features
        in ``intermediates``.
    """

    def __init__(self, base: nn.Module):
        self.base = base

    def apply(
        self, variables: Mapping[str, Any], x: jax.Array, *, train: bool = False, rngs: Any = None
    ) -> tuple[BaseOutput, dict[str, Any]]:
        logits, state = self.base.apply(
            variables, x, train=train, rngs=rngs, mutable=["intermediates"]
        )
        return BaseOutput(logits, feature_dict(state["intermediates"])), dict(state)

    def base_variables(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return dict(variables)
