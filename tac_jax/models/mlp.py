"""A multi-layer perceptron on flattened inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.models.head import classifier_head
from tac_jax.models.inputs import check_float


class MLP(nn.Module):
    """Dense-ReLU layers on the flattened input, then a Dense head.

    Intermediates: ``"dense1"`` .. ``"denseN"`` (post-ReLU, ``(batch, width)``) and
    ``"pre_logits"`` (the last hidden layer, what the head reads).

    Attributes:
      num_classes: number of output logits.
      features: hidden layer widths, one per layer (at least one).
      dropout_rate: dropout after each hidden layer (rng ``"dropout"``).
      dtype: compute dtype.
      param_dtype: parameter dtype.
      detach_head: the head reads ``stop_gradient(pre_logits)``.

    >>> model = MLP(num_classes=3, features=(8,))
    >>> x = jnp.zeros((2, 4, 4, 1))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(model.apply, variables, x).shape
    (2, 3)
    """

    num_classes: int
    features: Sequence[int] = (256, 256)
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    detach_head: bool = False

    def default_layers(self) -> tuple[str, ...]:
        """Every hidden layer."""
        return tuple(f"dense{i + 1}" for i in range(len(self.features)))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(batch, num_classes)`` for inputs ``(batch, ...)``."""
        if x.ndim < 2:
            raise ValueError(f"expected inputs of shape (batch, ...), got shape {x.shape}")
        if not self.features:
            raise ValueError("expected at least one hidden layer width, got features=()")
        check_float(x)
        h = jnp.asarray(x, self.dtype).reshape(x.shape[0], -1)
        for i, width in enumerate(self.features):
            h = nn.Dense(width, dtype=self.dtype, param_dtype=self.param_dtype)(h)
            h = nn.relu(h)
            self.sow("intermediates", f"dense{i + 1}", h)
            h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
        return classifier_head(self, h)
