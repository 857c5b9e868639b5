"""A Transformer encoder classifier for token sequences."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tac_jax.models.head import classifier_head
from tac_jax.models.transformer import EncoderBlock, check_heads


class TextTransformer(nn.Module):
    """Token and learned position embeddings, pre-LN encoder layers, a final LayerNorm,
    then the mean over real (non-padding) tokens as ``pre_logits``.

    Padding keys are masked out of every attention, so real tokens never see padding
    and appending padding leaves the logits unchanged. Padding positions still get
    (meaningless) outputs; pool intermediates with the recorded mask.

    Intermediates: ``"layer1"`` .. ``"layerN"`` (``(batch, tokens, hidden_size)``),
    ``"padding_mask"`` (``(batch, tokens)`` bool, True on real tokens) and
    ``"pre_logits"`` (``(batch, hidden_size)``).

    Attributes:
      num_classes: number of output logits.
      vocab_size: number of token ids.
      max_len: longest sequence the position embedding covers.
      hidden_size: token width.
      depth: number of encoder layers.
      num_heads: attention heads.
      mlp_dim: hidden width of each layer's MLP.
      dropout_rate: dropout on the embeddings and on every residual branch.
      attention_dropout_rate: dropout on attention weights.
      pad_id: the padding token id, used to build the mask when none is given.
      dtype: compute dtype.
      param_dtype: parameter dtype.
      detach_head: the head reads ``stop_gradient(pre_logits)``.

    >>> model = TextTransformer(num_classes=2, vocab_size=50, max_len=16, hidden_size=8,
    ...                         depth=1, num_heads=2, mlp_dim=16)
    >>> tokens = jnp.array([[5, 6, 7, 0]])
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), tokens)  # shapes only
    >>> jax.eval_shape(model.apply, variables, tokens).shape
    (1, 2)
    """

    num_classes: int
    vocab_size: int = 30522
    max_len: int = 512
    hidden_size: int = 256
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 1024
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    pad_id: int = 0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    detach_head: bool = False

    def default_layers(self) -> tuple[str, ...]:
        """Every encoder layer."""
        return tuple(f"layer{i + 1}" for i in range(self.depth))

    @nn.compact
    def __call__(
        self, tokens: jax.Array, *, mask: jax.Array | None = None, train: bool = False
    ) -> jax.Array:
        """Logits ``(batch, num_classes)``.

        Args:
          tokens: integer token ids ``(batch, tokens)``.
          mask: ``(batch, tokens)``, true on real tokens; ``tokens != pad_id`` if None.
          train: enables dropout (rng ``"dropout"``).

        Returns:
          ``(batch, num_classes)`` float32 logits.
        """
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"expected integer token ids of shape (batch, tokens), got dtype "
                f"{tokens.dtype} and shape {tokens.shape}"
            )
        if tokens.shape[1] > self.max_len:
            raise ValueError(
                f"expected at most max_len={self.max_len} tokens, got {tokens.shape[1]}"
            )
        check_heads(self.hidden_size, self.num_heads)
        if mask is None:
            mask = tokens != self.pad_id
        elif mask.shape != tokens.shape:
            raise ValueError(
                f"expected a mask of the tokens' shape {tokens.shape}, got {mask.shape}"
            )
        mask = jnp.asarray(mask, bool)
        self.sow("intermediates", "padding_mask", mask)

        h = nn.Embed(
            self.vocab_size, self.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
            embedding_init=nn.initializers.normal(stddev=0.02), name="token_embedding",
        )(tokens)  # fmt: skip
        pos = self.param(
            "pos_embedding",
            nn.initializers.normal(stddev=0.02),
            (1, self.max_len, self.hidden_size),
            self.param_dtype,
        )
        h = h + pos[:, : tokens.shape[1]].astype(self.dtype)
        h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
        # Mask keys only: every query, padding included, keeps at least one real key
        # to attend to whenever the sequence has one.
        attention_mask = mask[:, None, None, :]
        for i in range(self.depth):
            h = EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.attention_dropout_rate,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"encoder_layer{i + 1}",
            )(h, mask=attention_mask, train=train)
            self.sow("intermediates", f"layer{i + 1}", h)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="encoder_norm")(h)
        weights = mask.astype(jnp.float32)[..., None]
        total = jnp.sum(h.astype(jnp.float32) * weights, axis=1)
        pre_logits = total / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        return classifier_head(self, pre_logits.astype(self.dtype))
