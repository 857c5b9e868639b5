"""Training-time uncertainty methods: learned confidence, deep ensembles, MC dropout and SNGP.

`create_method` builds the method a config names (``config.method.name``) around its
base module. MC dropout needs no training of its own: any base with dropout is sampled
at evaluation (`tac_jax.methods.mc_dropout`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from tac_jax.methods.models import (
    METHOD_CLASSES,
    ConfidenceModel,
    EnsembleModel,
    SNGPModel,
)
from tac_jax.methods.wrap import MethodModel, MethodOutput

METHODS = ("none", *METHOD_CLASSES)


def create_method(config: Any, base: nn.Module, num_classes: int) -> MethodModel | None:
    """The method ``config.method`` describes around ``base``, or None for ``"none"``.

    Args:
      config: the ``method`` section of a training config (see
        `tac_jax.train.config.default_config`).
      base: the base module.
      num_classes: ``C``.

    Raises:
      ValueError: on an unknown method name or invalid settings.
    """
    name = config.name
    if name not in METHODS:
        raise ValueError(f"expected config.method.name in {METHODS}, got {name!r}")
    if name == "none":
        return None
    if name == "confidence":
        return ConfidenceModel(base, num_classes, budget=config.budget, lmbda=config.lmbda)
    if name == "ensemble":
        return EnsembleModel(
            base,
            num_classes,
            members=int(config.members),
            member_axis=config.get("member_axis", "vmap"),
        )
    return SNGPModel(
        base,
        num_classes,
        coeff=config.sn_coeff,
        power_iterations=int(config.power_iterations),
        num_features=int(config.rff_features),
        lengthscale=float(config.lengthscale),
        ridge=float(config.ridge),
    )


__all__ = [
    "METHODS",
    "ConfidenceModel",
    "EnsembleModel",
    "MethodModel",
    "MethodOutput",
    "SNGPModel",
    "create_method",
]
