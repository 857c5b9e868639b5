"""The convolution and BatchNorm factories the residual networks share."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn

from tac_jax.models.patch_conv import conv_general_dilated

# Flax's convolution with the zoo's `conv_general_dilated`: patches × matmul on a CPU,
# `lax.conv` elsewhere. Its parameters are nn.Conv's, names and shapes alike.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)

# He-normal on fan-out, the usual initialisation for ReLU networks with BatchNorm.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv_and_norm(train: bool, dtype: Any, param_dtype: Any) -> tuple[Any, Any]:
    """``(norm, conv)`` partials: BatchNorm (momentum 0.9, ε 1e-5, running statistics
    outside training) and bias-free He-initialised convolutions."""
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
        dtype=dtype, param_dtype=param_dtype,
    )  # fmt: skip
    conv = functools.partial(
        Conv, use_bias=False, kernel_init=conv_init, dtype=dtype, param_dtype=param_dtype
    )
    return norm, conv
