"""Convolution as image patches × one matmul: XLA's CPU convolution is slow, its matmul is not.

`conv_general_dilated` is a drop-in for `jax.lax.conv_general_dilated` that the zoo's
convolutions (`tac_jax.models.conv_bn.Conv`) call. Where the backend is a CPU it gathers
the image patches that each output position sees (one strided slice per kernel offset,
concatenated on the channel axis) and multiplies them by the kernel reshaped to
``(kernel positions × in channels, out channels)``; on GPU and TPU it is `lax`'s
convolution. The parameters are the same arrays either way, so a checkpoint moves
between backends unchanged.

The backward pass is written out (`jax.custom_vjp`) rather than left to autodiff, which
would differentiate the slices into one padded copy of the input per kernel offset:

* kernel gradient: ``patches(x)ᵀ · dy``, one matmul;
* input gradient: ``dy · Wᵀ`` (one matmul, a column per kernel offset and input
  channel), then each kernel offset's columns added back at the input positions it
  came from ("col2im").

The batch is cut into chunks whose patches fit in about `CHUNK_BYTES`, so that the
matmul reads them back from cache rather than memory. On the paper's MNIST CNN this runs
TAC's scoring at 3.9× and a from-scratch train step at 3.1× the speed of `lax.conv` on a
2-core AVX-512 CPU (``experiments/bench/README.md``).

Covered by the patch path: channels-last inputs and outputs with the kernel's spatial axes
first (flax's layout), any number of spatial axes, strides, kernel dilation and explicit or
``"SAME"``/``"VALID"`` padding. Everything else (input dilation, feature or batch groups,
other layouts, negative padding) goes to `lax.conv_general_dilated` on every backend.
The patch path has no forward-mode derivative (``jax.jvp``); select ``"lax"`` with
`set_conv_impl` for code that needs one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "patches", "lax")
ENV_VAR = "TAC_JAX_CONV"
_impl: str | None = None  # set by `set_conv_impl`; None reads the environment


def conv_impl() -> str:
    """The implementation in force: `set_conv_impl`'s, else ``$TAC_JAX_CONV``, else auto.

    ``"auto"`` is patches × matmul on a CPU backend and `lax.conv` elsewhere.
    """
    impl = _impl if _impl is not None else os.environ.get(ENV_VAR, "auto") or "auto"
    if impl not in IMPLS:
        raise ValueError(f"expected {ENV_VAR} to be one of {', '.join(IMPLS)}, got {impl!r}")
    return impl


def resolved_conv_impl() -> str:
    """``"patches"`` or ``"lax"``: what the zoo's convolutions run on the default backend."""
    impl = conv_impl()
    if impl == "auto":
        return "patches" if jax.default_backend() == "cpu" else "lax"
    return impl


def set_conv_impl(impl: str | None) -> None:
    """Chooses the convolution of every zoo model traced from now on.

    Args:
      impl: ``"auto"`` (patches on CPU, `lax.conv` elsewhere), ``"patches"``,
        ``"lax"``, or None to follow ``$TAC_JAX_CONV`` again. Functions already
        jitted keep what they were traced with.
    """
    global _impl
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"expected a convolution of {', '.join(IMPLS)}, got {impl!r}")
    _impl = impl


@contextlib.contextmanager
def using_conv_impl(impl: str) -> Iterator[None]:
    """`set_conv_impl` for the duration of a ``with`` block."""
    global _impl
    before = _impl
    set_conv_impl(impl)
    try:
        yield
    finally:
        _impl = before


def _channels_last(dimension_numbers: Any, ndim: int) -> bool:
    """Whether the layout is flax's: ``(N, spatial…, C)``, kernel ``(spatial…, I, O)``."""
    if dimension_numbers is None:
        return False
    spatial = tuple(range(1, ndim - 1))
    want = lax.ConvDimensionNumbers(
        lhs_spec=(0, ndim - 1, *spatial),
        rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
        out_spec=(0, ndim - 1, *spatial),
    )
    try:
        got = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
    except (TypeError, ValueError):
        return False
    return got == want


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """`jax.lax.conv_general_dilated`, as patches × matmul where `conv_impl` says so.

    The arguments are `lax.conv_general_dilated`'s. Cases the patch path does not cover
    (see the module docstring) always run `lax.conv_general_dilated`.

    >>> x = jnp.ones((1, 5, 5, 2)); w = jnp.ones((3, 3, 2, 4))
    >>> conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")).shape
    (1, 3, 3, 4)
    """
    args = (lhs, rhs, window_strides, padding)
    kwargs = dict(
        lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type,
    )  # fmt: skip
    if resolved_conv_impl() == "lax":
        return lax.conv_general_dilated(*args, **kwargs)
    nsp = lhs.ndim - 2
    ones = (1,) * nsp
    if (
        lhs.ndim != rhs.ndim
        or not _channels_last(dimension_numbers, lhs.ndim)
        or tuple(lhs_dilation or ones) != ones
        or feature_group_count != 1
        or batch_group_count != 1
        or rhs.shape[-2] != lhs.shape[-1]
    ):
        return lax.conv_general_dilated(*args, **kwargs)
    strides = tuple(int(s) for s in window_strides)
    dilation = tuple(int(d) for d in (rhs_dilation or ones))
    kernel = rhs.shape[:nsp]
    if isinstance(padding, str):
        dilated = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True))
        pads = lax.padtype_to_pads(lhs.shape[1:-1], dilated, strides, padding)
    else:
        pads = [tuple(int(p) for p in pair) for pair in padding]
    if any(p < 0 for pair in pads for p in pair):
        return lax.conv_general_dilated(*args, **kwargs)
    if any(p for pair in pads for p in pair):
        lhs = jnp.pad(lhs, [(0, 0), *pads, (0, 0)])
    dtype = preferred_element_type or jnp.result_type(lhs, rhs)
    return _patch_conv(lhs, rhs, strides, dilation, precision, dtype)


def _out_shape(size: Sequence[int], kernel: Sequence[int], strides, dilation) -> tuple[int, ...]:
    return tuple(
        (n - (k - 1) * d - 1) // s + 1
        for n, k, s, d in zip(size, kernel, strides, dilation, strict=True)
    )


def _offsets(kernel: Sequence[int]) -> list[tuple[int, ...]]:
    """Kernel positions in the kernel array's row-major order."""
    return list(itertools.product(*(range(k) for k in kernel)))


def patches(x: jax.Array, kernel: Sequence[int], strides, dilation) -> jax.Array:
    """``(N, out spatial…, Π kernel × C)``: what each output position of a VALID
    convolution sees, kernel offsets in row-major order, channels innermost."""
    n, *size, c = x.shape
    out = _out_shape(size, kernel, strides, dilation)
    if min(out, default=1) < 1:
        raise ValueError(f"expected an input of at least the kernel's size, got {x.shape}")
    pieces = []
    for offset in _offsets(kernel):
        start = [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [b + (m - 1) * s + 1 for b, m, s in zip(start, out, strides, strict=True)]
        pieces.append(lax.slice(x, (0, *start, 0), (n, *limit, c), (1, *strides, 1)))
    return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=-1)


def _col2im(z: jax.Array, size: Sequence[int], kernel, strides, dilation, c: int) -> jax.Array:
    """The transpose of `patches`: each kernel offset's columns of ``z`` added back at the
    input positions they were read from, giving ``(N, *size, c)``."""
    out = z.shape[1:-1]
    zero = jnp.zeros((), z.dtype)
    total = None
    for i, offset in enumerate(_offsets(kernel)):
        config = [(0, 0, 0)]
        for o, n, m, s, d in zip(offset, size, out, strides, dilation, strict=True):
            config.append((o * d, n - (o * d + (m - 1) * s + 1), s - 1))
        config.append((0, 0, 0))
        piece = lax.pad(z[..., i * c : (i + 1) * c], zero, config)
        total = piece if total is None else total + piece
    return total


def _matrix(w: jax.Array) -> jax.Array:
    return w.reshape(math.prod(w.shape[:-1]), w.shape[-1])


# The patches of one chunk of the batch stay about this size: small enough to be read back
# from cache by the matmul, large enough for the matmul to run at full speed. On a 2-core
# AVX-512 CPU, chunks of 2-6 MiB of patches run the paper CNN's convolutions at 1.6-2.1×
# the FLOP rate of the whole batch at once (`experiments/bench/README.md`).
CHUNK_BYTES = 6 * 2**20


def _chunk(x: jax.Array, w: jax.Array, strides, dilation) -> int:
    """Images per chunk: as many as keep one chunk's patches under `CHUNK_BYTES`."""
    out = _out_shape(x.shape[1:-1], w.shape[:-2], strides, dilation)
    per_image = math.prod(out) * math.prod(w.shape[:-1]) * x.dtype.itemsize
    return max(1, min(x.shape[0], CHUNK_BYTES // max(per_image, 1)))


def _split(a: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    """``a``'s leading axis as ``(chunks, chunk, …)`` plus the remainder ``(rest, …)``."""
    whole = a.shape[0] // chunk * chunk
    return a[:whole].reshape(-1, chunk, *a.shape[1:]), a[whole:]


def _unsplit(main: jax.Array, rest: jax.Array) -> jax.Array:
    main = main.reshape(-1, *main.shape[2:])
    return main if rest.shape[0] == 0 else jnp.concatenate([main, rest])


def _forward(x, w, strides, dilation, precision, dtype):
    wm = _matrix(w)

    def one(xc):
        p = patches(xc, w.shape[:-2], strides, dilation)
        return jnp.dot(p, wm, precision=precision, preferred_element_type=dtype)

    chunk = _chunk(x, w, strides, dilation)
    if chunk == x.shape[0]:  # no loop: quicker to compile
        return one(x)
    main, rest = _split(x, chunk)
    y = lax.map(one, main)
    return _unsplit(y, one(rest) if rest.shape[0] else rest[:0])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _patch_conv(x, w, strides, dilation, precision, dtype):
    return _forward(x, w, strides, dilation, precision, dtype)


def _patch_conv_fwd(x, w, strides, dilation, precision, dtype):
    return _forward(x, w, strides, dilation, precision, dtype), (x, w)


def _patch_conv_bwd(strides, dilation, precision, dtype, residuals, dy):
    x, w = residuals
    kernel, c = w.shape[:-2], w.shape[-2]
    wt = _matrix(w).T.astype(dy.dtype)
    acc = jnp.promote_types(w.dtype, jnp.float32)  # the kernel gradient sums in ≥ float32

    def one(xc, dyc):
        p = patches(xc, kernel, strides, dilation)
        p = p.reshape(-1, p.shape[-1])
        dw = jnp.dot(p.T, dyc.reshape(-1, dyc.shape[-1]), precision=precision,
                     preferred_element_type=acc)  # fmt: skip
        z = jnp.dot(dyc, wt, precision=precision)
        return dw, _col2im(z, xc.shape[1:-1], kernel, strides, dilation, c)

    chunk = _chunk(x, w, strides, dilation)
    if chunk == x.shape[0]:
        dw, dx = one(x, dy)
        return dx.astype(x.dtype), dw.reshape(w.shape).astype(w.dtype)
    (xm, xr), (dym, dyr) = _split(x, chunk), _split(dy, chunk)

    def body(dw, xs):
        dw_c, dx_c = one(*xs)
        return dw + dw_c, dx_c

    dw0 = jnp.zeros((math.prod(w.shape[:-1]), w.shape[-1]), acc)
    dw, dxm = lax.scan(body, dw0, (xm, dym))
    if xr.shape[0]:
        dw_r, dxr = one(xr, dyr)
        dw = dw + dw_r
    else:
        dxr = xr
    dx = _unsplit(dxm, dxr)
    return dx.astype(x.dtype), dw.reshape(w.shape).astype(w.dtype)


_patch_conv.defvjp(_patch_conv_fwd, _patch_conv_bwd)
