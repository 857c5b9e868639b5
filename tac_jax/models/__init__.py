"""The model zoo. Every model returns float32 logits and records named intermediates.

Conventions shared by all models:

* ``flax.linen`` modules with fields ``num_classes``, ``dtype`` (compute dtype),
  ``param_dtype`` (float32 parameters) and ``detach_head``.
* ``model.apply(variables, x, train=..., mutable=["intermediates", ...])`` returns
  ``(logits, state)``; ``tac_jax.features.feature_dict(state["intermediates"])`` gives
  the flat ``{name: activation}`` dict. Names are per model (see each class) and always
  include ``"pre_logits"``, the pooled ``(batch, features)`` vector the head reads.
  Intermediates keep the compute dtype.
* The head is ``Dense(num_classes, name="head")``; with ``detach_head`` it reads
  ``stop_gradient(pre_logits)``.
* BatchNorm statistics live in ``"batch_stats"``; dropout draws from the ``"dropout"`` rng.
* Images are NHWC floats in [0, 1]; the text model takes integer token ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from tac_jax.models.cnn import MnistCNN
from tac_jax.models.head import classifier_head
from tac_jax.models.mlp import MLP
from tac_jax.models.resnet import BasicBlock, BottleneckBlock, ResNet, ResNet18, ResNet50
from tac_jax.models.text import TextTransformer
from tac_jax.models.transformer import EncoderBlock
from tac_jax.models.vit import ViT, vit_b, vit_s, vit_ti
from tac_jax.models.wrn import WideBasicBlock, WideResNet

# Name → constructor taking ``num_classes`` and the model's fields as keywords.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "mnist_cnn": MnistCNN,
    "wrn": WideResNet,
    "resnet": ResNet,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "vit": ViT,
    "vit_ti": vit_ti,
    "vit_s": vit_s,
    "vit_b": vit_b,
    "text": TextTransformer,
}


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Builds a registered model.

    Args:
      name: a key of `MODELS`.
      num_classes: number of output logits.
      **kwargs: model fields (``depth``, ``dtype``, ``detach_head``, ...); for the
        ``vit_*`` presets they override the preset's sizes.

    Returns:
      The (unbound) module.

    >>> import jax, jax.numpy as jnp
    >>> from tac_jax.features import feature_dict
    >>> model = create_model("mlp", 3, features=(4,))
    >>> x = jnp.ones((2, 5))
    >>> variables = model.init(jax.random.key(0), x)
    >>> logits, state = model.apply(variables, x, mutable=["intermediates"])
    >>> logits.shape, sorted(feature_dict(state["intermediates"]))
    ((2, 3), ['dense1', 'pre_logits'])
    """
    if name not in MODELS:
        raise ValueError(f"expected a model name among {sorted(MODELS)}, got {name!r}")
    return MODELS[name](num_classes=num_classes, **kwargs)


def default_layers(name: str, **kwargs: Any) -> tuple[str, ...]:
    """The intermediates TAC taps by default for a registered model.

    The names depend on the model's size, so pass the same fields as to `create_model`:
    mnist_cnn every ``conv*``; wrn ``group1..3``; resnet every ``stage*``; mlp every
    ``dense*``; text every ``layer*``; vit four evenly spaced blocks ending at the last
    (``block3, 6, 9, 12`` at depth 12; all of them below depth 4).

    Args:
      name: a key of `MODELS`.
      **kwargs: model fields, as given to `create_model` (``num_classes`` is ignored).

    Returns:
      Intermediate names, shallowest first.

    >>> default_layers("vit_ti")
    ('block3', 'block6', 'block9', 'block12')
    >>> default_layers("mlp", features=(32, 32))
    ('dense1', 'dense2')
    """
    kwargs.pop("num_classes", None)
    return create_model(name, 1, **kwargs).default_layers()


__all__ = [
    "MODELS",
    "MLP",
    "BasicBlock",
    "BottleneckBlock",
    "EncoderBlock",
    "MnistCNN",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "TextTransformer",
    "ViT",
    "WideBasicBlock",
    "WideResNet",
    "classifier_head",
    "create_model",
    "default_layers",
    "vit_b",
    "vit_s",
    "vit_ti",
]
