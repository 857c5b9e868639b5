"""Vision Transformers (Dosovitskiy et al., 2021) with pre-LN encoder blocks."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.models.conv_bn import Conv
from tac_jax.models.head import classifier_head
from tac_jax.models.inputs import check_images
from tac_jax.models.transformer import EncoderBlock, check_heads

# (hidden_size, depth, num_heads, mlp_dim) of the named sizes.
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
}
_NUM_TAPS = 4


def evenly_spaced_blocks(depth: int, taps: int = _NUM_TAPS) -> tuple[str, ...]:
    """``taps`` block names spread evenly up to the last one (rounding up).

    >>> evenly_spaced_blocks(12)
    ('block3', 'block6', 'block9', 'block12')
    """
    taps = min(taps, depth)
    return tuple(f"block{-(-depth * (j + 1) // taps)}" for j in range(taps))


class ViT(nn.Module):
    """Patch embedding (a convolution with kernel = stride = patch size), learned
    position embeddings, pre-LN encoder blocks, a final LayerNorm, then the class
    token or the mean over tokens as ``pre_logits``.

    The position embedding is sized from the input at initialisation, so a model
    applies to one image size only.

    Intermediates: ``"block1"`` .. ``"blockN"`` (token sequences ``(batch, tokens,
    hidden_size)``, class token first when ``pool="cls"``) and ``"pre_logits"``
    ``(batch, hidden_size)``.

    Attributes:
      num_classes: number of output logits.
      hidden_size: token width.
      depth: number of encoder blocks.
      num_heads: attention heads.
      mlp_dim: hidden width of each block's MLP.
      patch_size: side of the square patches.
      pool: ``"cls"`` (a learned class token) or ``"gap"`` (mean over patch tokens).
      dropout_rate: dropout on the embeddings and on every residual branch.
      attention_dropout_rate: dropout on attention weights.
      dtype: compute dtype.
      param_dtype: parameter dtype.
      detach_head: the head reads ``stop_gradient(pre_logits)``.

    >>> model = ViT(num_classes=10, hidden_size=8, depth=1, num_heads=2, mlp_dim=16,
    ...             patch_size=4)
    >>> x = jnp.zeros((1, 8, 8, 3))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
    >>> jax.eval_shape(model.apply, variables, x).shape
    (1, 10)
    """

    num_classes: int
    hidden_size: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_dim: int = 768
    patch_size: int = 16
    pool: str = "cls"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    detach_head: bool = False

    def default_layers(self) -> tuple[str, ...]:
        """Four blocks evenly spaced up to the last (3, 6, 9, 12 at depth 12), or all of
        them when there are fewer."""
        return evenly_spaced_blocks(self.depth)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(batch, num_classes)`` for images ``(batch, H, W, C)`` in [0, 1]."""
        check_images(x)
        check_heads(self.hidden_size, self.num_heads)
        if self.pool not in ("cls", "gap"):
            raise ValueError(f"expected pool 'cls' or 'gap', got {self.pool!r}")
        p = self.patch_size
        if x.shape[1] % p or x.shape[2] % p:
            raise ValueError(
                f"expected image sides divisible by patch_size={p}, got shape {x.shape}"
            )
        h = Conv(
            self.hidden_size, (p, p), strides=(p, p), padding="VALID",
            dtype=self.dtype, param_dtype=self.param_dtype, name="embedding",
        )(jnp.asarray(x, self.dtype))  # fmt: skip
        h = h.reshape(h.shape[0], -1, self.hidden_size)
        if self.pool == "cls":
            cls = self.param(
                "cls", nn.initializers.zeros, (1, 1, self.hidden_size), self.param_dtype
            )
            cls = jnp.broadcast_to(cls.astype(self.dtype), (h.shape[0], 1, self.hidden_size))
            h = jnp.concatenate([cls, h], axis=1)
        pos = self.param(
            "pos_embedding",
            nn.initializers.normal(stddev=0.02),
            (1, h.shape[1], self.hidden_size),
            self.param_dtype,
        )
        h = h + pos.astype(self.dtype)
        h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
        for i in range(self.depth):
            h = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"encoder_block{i + 1}",
            )(h, train=train)
            self.sow("intermediates", f"block{i + 1}", h)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="encoder_norm")(h)
        pre_logits = h[:, 0] if self.pool == "cls" else jnp.mean(h, axis=1)
        return classifier_head(self, pre_logits)


def _preset(size: str, num_classes: int, patch_size: int, **kwargs: Any) -> ViT:
    hidden_size, depth, num_heads, mlp_dim = PRESETS[size]
    config = dict(hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim)
    return ViT(num_classes=num_classes, patch_size=patch_size, **{**config, **kwargs})


def vit_ti(num_classes: int, patch_size: int = 16, **kwargs: Any) -> ViT:
    """ViT-Ti: width 192, 12 blocks, 3 heads, MLP 768; ``kwargs`` override any field."""
    return _preset("ti", num_classes, patch_size, **kwargs)


def vit_s(num_classes: int, patch_size: int = 16, **kwargs: Any) -> ViT:
    """ViT-S: width 384, 12 blocks, 6 heads, MLP 1536; ``kwargs`` override any field."""
    return _preset("s", num_classes, patch_size, **kwargs)


def vit_b(num_classes: int, patch_size: int = 16, **kwargs: Any) -> ViT:
    """ViT-B: width 768, 12 blocks, 12 heads, MLP 3072; ``kwargs`` override any field."""
    return _preset("b", num_classes, patch_size, **kwargs)
