"""The pre-LayerNorm Transformer encoder block shared by `ViT` and `TextTransformer`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MlpBlock(nn.Module):
    """Dense(mlp_dim)-GELU-dropout-Dense(d)-dropout."""

    mlp_dim: int
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        dense = dict(
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(stddev=1e-6),
        )
        y = nn.gelu(nn.Dense(self.mlp_dim, **dense)(x))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = nn.Dense(x.shape[-1], **dense)(y)
        return nn.Dropout(self.dropout_rate)(y, deterministic=not train)


class EncoderBlock(nn.Module):
    """x + dropout(MHA(LN(x))), then x + MLP(LN(x)).

    Attributes:
      num_heads: attention heads; must divide the width.
      mlp_dim: hidden width of the MLP.
      dropout_rate: dropout on both residual branches and inside the MLP.
      attention_dropout_rate: dropout on the attention weights.
      dtype: compute dtype.
      param_dtype: parameter dtype.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, *, mask: jax.Array | None = None, train: bool = False
    ) -> jax.Array:
        """``x`` is ``(batch, tokens, width)``; ``mask`` broadcasts to
        ``(batch, heads, tokens, tokens)`` and is True where attention is allowed."""
        norm = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = nn.LayerNorm(name="norm1", **norm)(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.xavier_uniform(),
            dropout_rate=self.attention_dropout_rate,
            deterministic=not train,
            name="attention",
        )(y, y, mask=mask)
        x = x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = nn.LayerNorm(name="norm2", **norm)(x)
        y = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, self.param_dtype, name="mlp")(
            y, train=train
        )
        return x + y


def check_heads(hidden_size: int, num_heads: int) -> None:
    """Raises ``ValueError`` unless ``num_heads`` divides ``hidden_size``."""
    if num_heads < 1 or hidden_size % num_heads:
        raise ValueError(
            f"expected num_heads to divide hidden_size, got num_heads={num_heads} "
            f"and hidden_size={hidden_size}"
        )
