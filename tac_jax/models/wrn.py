"""Wide residual networks (Zagoruyko & Komodakis, 2016) with pre-activation blocks."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.models.conv_bn import conv_and_norm
from tac_jax.models.head import classifier_head
from tac_jax.models.inputs import check_images


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3×3(stride)-BN-ReLU-dropout-conv3×3, plus the shortcut.

    When the shape changes, the shortcut is a strided 1×1 convolution of the
    pre-activated input, as in the original WRN code.
    """

    features: int
    strides: int = 1
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm, conv = conv_and_norm(train, self.dtype, self.param_dtype)
        pre = nn.relu(norm(name="norm1")(x))
        y = conv(self.features, (3, 3), self.strides, padding=1, name="conv1")(pre)
        y = nn.relu(norm(name="norm2")(y))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = conv(self.features, (3, 3), padding=1, name="conv2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = conv(self.features, (1, 1), self.strides, padding=0, name="shortcut")(pre)
        return x + y


class WideResNet(nn.Module):
    """WRN-depth-k: a 3×3 stem with 16 channels, then three groups of (depth − 4) / 6
    pre-activation blocks with 16k, 32k, 64k channels and strides 1, 2, 2, then BN-ReLU,
    global average pooling and the head.

    Intermediates: ``"group1"``, ``"group2"`` (the residual stream leaving each group,
    before any normalisation), ``"group3"`` (the last group *after* the final BN-ReLU,
    so that the head reads the spatial mean of the last tapped layer, as in TAC), each
    ``(batch, H, W, C)``, and ``"pre_logits"`` ``(batch, 64k)``.

    The TAC authors' CIFAR-10 network differs slightly: its stem has BN-ReLU, its blocks
    stride on the second convolution, and it taps and pools group 3 without the final
    BN-ReLU. It used ``dropout_rate=0.3``.

    Attributes:
      num_classes: number of output logits.
      depth: total depth, of the form 6n + 4 (28 gives 4 blocks per group).
      widen_factor: the width multiplier k (10 gives group widths 160/320/640).
      dropout_rate: dropout between the two convolutions of each block (rng ``"dropout"``).
      dtype: compute dtype.
      param_dtype: parameter dtype.
      detach_head: the head reads ``stop_gradient(pre_logits)``.

    >>> model = WideResNet(num_classes=10, depth=10, widen_factor=1)
    >>> x = jnp.zeros((1, 8, 8, 3))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(model.apply, variables, x).shape
    (1, 10)
    """

    num_classes: int
    depth: int = 28
    widen_factor: int = 10
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    detach_head: bool = False

    def default_layers(self) -> tuple[str, ...]:
        """The three block groups, as in the paper's CIFAR-10 setting."""
        return ("group1", "group2", "group3")

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(batch, num_classes)`` for images ``(batch, H, W, C)`` in [0, 1]."""
        check_images(x)
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ValueError(f"expected depth of the form 6n+4, got {self.depth}")
        blocks_per_group = (self.depth - 4) // 6
        norm, conv = conv_and_norm(train, self.dtype, self.param_dtype)
        h = conv(16, (3, 3), padding=1, name="stem")(jnp.asarray(x, self.dtype))
        for g, (width, strides) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            for b in range(blocks_per_group):
                h = WideBasicBlock(
                    width * self.widen_factor,
                    strides=strides if b == 0 else 1,
                    dropout_rate=self.dropout_rate,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"group{g}_block{b + 1}",
                )(h, train=train)
            if g == 3:
                h = nn.relu(norm(name="final_norm")(h))
            self.sow("intermediates", f"group{g}", h)
        return classifier_head(self, jnp.mean(h, axis=(1, 2)))
