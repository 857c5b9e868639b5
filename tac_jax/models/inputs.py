"""Input checks shared by the models; shapes and dtypes are static, so they run at trace time."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_images(x: jax.Array) -> None:
    """Raises ``ValueError`` unless ``x`` is a float ``(batch, height, width, channels)`` array."""
    if x.ndim != 4:
        raise ValueError(
            f"expected images of shape (batch, height, width, channels), got shape {x.shape}"
        )
    check_float(x)


def check_float(x: jax.Array) -> None:
    """Raises ``ValueError`` unless ``x`` is floating point (inputs are scaled to [0, 1])."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"expected floating-point inputs scaled to [0, 1], got dtype {x.dtype}")
