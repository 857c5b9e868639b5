"""ResNets (He et al., 2016) with basic or bottleneck blocks, for small or ImageNet-sized inputs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.models.conv_bn import conv_and_norm
from tac_jax.models.head import classifier_head
from tac_jax.models.inputs import check_images


class BasicBlock(nn.Module):
    """conv3×3(stride)-BN-ReLU-conv3×3-BN, plus the shortcut, then ReLU.

    The last BN's scale starts at zero so that each block starts as the identity
    (Goyal et al., 2017), which makes deep ResNets train from the first step.
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm, conv = conv_and_norm(train, self.dtype, self.param_dtype)
        y = conv(self.features, (3, 3), self.strides, padding=1, name="conv1")(x)
        y = nn.relu(norm(name="norm1")(y))
        y = conv(self.features, (3, 3), padding=1, name="conv2")(y)
        y = norm(scale_init=nn.initializers.zeros, name="norm2")(y)
        return nn.relu(_shortcut(self, x, y.shape[-1], train) + y)


class BottleneckBlock(nn.Module):
    """conv1×1-BN-ReLU-conv3×3(stride)-BN-ReLU-conv1×1(4×)-BN, plus the shortcut, then ReLU.

    The stride sits on the 3×3 convolution (the "v1.5" variant); the last BN's scale
    starts at zero as in `BasicBlock`.
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm, conv = conv_and_norm(train, self.dtype, self.param_dtype)
        out = self.features * self.expansion
        y = nn.relu(norm(name="norm1")(conv(self.features, (1, 1), name="conv1")(x)))
        y = conv(self.features, (3, 3), self.strides, padding=1, name="conv2")(y)
        y = nn.relu(norm(name="norm2")(y))
        y = conv(out, (1, 1), name="conv3")(y)
        y = norm(scale_init=nn.initializers.zeros, name="norm3")(y)
        return nn.relu(_shortcut(self, x, out, train) + y)


def _shortcut(block: nn.Module, x: jax.Array, features: int, train: bool) -> jax.Array:
    """Identity, or a strided 1×1 convolution + BN where the shape changes."""
    if block.strides == 1 and x.shape[-1] == features:
        return x
    norm, conv = conv_and_norm(train, block.dtype, block.param_dtype)
    x = conv(features, (1, 1), block.strides, name="shortcut_conv")(x)
    return norm(name="shortcut_norm")(x)


class ResNet(nn.Module):
    """A ResNet: stem, stages of residual blocks (stage i has ``num_filters·2^i``
    channels, times 4 for bottlenecks; every stage after the first halves the
    resolution), global average pooling and the head.

    Intermediates: ``"stage1"`` .. ``"stageS"`` (post-ReLU output of each stage,
    ``(batch, H, W, C)``) and ``"pre_logits"`` (spatial mean of the last stage).

    Attributes:
      num_classes: number of output logits.
      stage_sizes: blocks per stage; ``(2, 2, 2, 2)`` is ResNet-18, ``(3, 4, 6, 3)`` with
        bottlenecks ResNet-50.
      block_cls: `BasicBlock` or `BottleneckBlock`.
      num_filters: channels of the stem and of the first stage's blocks.
      small_inputs: a 3×3 stride-1 stem without max-pooling, for 32×32 images; otherwise
        the ImageNet stem (7×7 stride 2, then 3×3 stride-2 max-pooling).
      dropout_rate: dropout on the pooled features before the head (rng ``"dropout"``);
        ``pre_logits`` is recorded before it.
      dtype: compute dtype.
      param_dtype: parameter dtype.
      detach_head: the head reads ``stop_gradient(pre_logits)``.

    >>> model = ResNet18(num_classes=10, num_filters=4, small_inputs=True)
    >>> x = jnp.zeros((1, 8, 8, 3))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(model.apply, variables, x).shape
    (1, 10)
    """

    num_classes: int
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block_cls: type[nn.Module] = BasicBlock
    num_filters: int = 64
    small_inputs: bool = False
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    detach_head: bool = False

    def default_layers(self) -> tuple[str, ...]:
        """Every stage."""
        return tuple(f"stage{i + 1}" for i in range(len(self.stage_sizes)))

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(batch, num_classes)`` for images ``(batch, H, W, C)`` in [0, 1]."""
        check_images(x)
        if not self.stage_sizes or min(self.stage_sizes) < 1:
            raise ValueError(
                f"expected at least one stage of at least one block, got {self.stage_sizes}"
            )
        norm, conv = conv_and_norm(train, self.dtype, self.param_dtype)
        h = jnp.asarray(x, self.dtype)
        if self.small_inputs:
            h = conv(self.num_filters, (3, 3), padding=1, name="stem_conv")(h)
        else:
            h = conv(self.num_filters, (7, 7), 2, padding=3, name="stem_conv")(h)
        h = nn.relu(norm(name="stem_norm")(h))
        if not self.small_inputs:
            h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for s, num_blocks in enumerate(self.stage_sizes):
            for b in range(num_blocks):
                h = self.block_cls(
                    self.num_filters * 2**s,
                    strides=2 if s > 0 and b == 0 else 1,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"stage{s + 1}_block{b + 1}",
                )(h, train=train)
            self.sow("intermediates", f"stage{s + 1}", h)
        pooled = jnp.mean(h, axis=(1, 2))
        return classifier_head(self, pooled, dropout_rate=self.dropout_rate, train=train)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock)
