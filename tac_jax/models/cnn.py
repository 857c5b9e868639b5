"""The four-convolution MNIST network of the TAC paper."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.models.conv_bn import Conv
from tac_jax.models.head import classifier_head
from tac_jax.models.inputs import check_images


class MnistCNN(nn.Module):
    """Four 3×3 convolutions (stride 1, no padding, bias, leaky-ReLU), no pooling between.

    As in the TAC authors' MNIST model: a 28×28 input leaves 20×20 maps after the last
    convolution, and the head reads their spatial mean. There is no normalisation.

    Intermediates: ``"conv1"`` .. ``"conv4"`` (post-activation, ``(batch, H, W, C)``)
    and ``"pre_logits"`` (spatial mean of the last one, ``(batch, channels[-1])``).

    Attributes:
      num_classes: number of output logits.
      channels: output channels per convolution; ``(64, 128, 256, 512)`` in the paper.
      strides: stride of each convolution; all 1 in the paper. Strides of 2 make a
        cheaper network for CPU runs.
      negative_slope: leaky-ReLU slope (0.01, the default of the authors' PyTorch code).
      dropout_rate: dropout after each convolution (rng ``"dropout"``); 0 in the paper.
      dtype: compute dtype.
      param_dtype: parameter dtype.
      detach_head: the head reads ``stop_gradient(pre_logits)``.

    >>> model = MnistCNN(num_classes=10, channels=(4, 4, 4, 4))
    >>> x = jnp.zeros((1, 28, 28, 1))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(model.apply, variables, x).shape
    (1, 10)
    """

    num_classes: int
    channels: Sequence[int] = (64, 128, 256, 512)
    strides: Sequence[int] | None = None
    negative_slope: float = 0.01
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    detach_head: bool = False

    def default_layers(self) -> tuple[str, ...]:
        """Every convolution, as in the paper."""
        return tuple(f"conv{i + 1}" for i in range(len(self.channels)))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(batch, num_classes)`` for images ``(batch, H, W, C)`` in [0, 1]."""
        check_images(x)
        if not self.channels:
            raise ValueError("expected at least one convolution, got channels=()")
        conv = functools.partial(
            Conv, kernel_size=(3, 3), padding="VALID", dtype=self.dtype,
            param_dtype=self.param_dtype,
        )  # fmt: skip
        strides = self.strides or (1,) * len(self.channels)
        if len(strides) != len(self.channels):
            raise ValueError(
                f"expected one stride per convolution ({len(self.channels)}), got {len(strides)}"
            )
        h = jnp.asarray(x, self.dtype)
        for i, (width, stride) in enumerate(zip(self.channels, strides, strict=True)):
            h = conv(width, strides=(stride, stride))(h)
            h = nn.leaky_relu(h, negative_slope=self.negative_slope)
            self.sow("intermediates", f"conv{i + 1}", h)
            h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
        return classifier_head(self, jnp.mean(h, axis=(1, 2)))
