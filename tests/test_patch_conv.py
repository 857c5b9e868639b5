"""Tests for tac_jax.models.patch_conv: patches × matmul equals lax.conv, values and gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.models import create_model, patch_conv
from tac_jax.models.patch_conv import (
    conv_general_dilated,
    conv_impl,
    patches,
    set_conv_impl,
    using_conv_impl,
)

NHWC = ("NHWC", "HWIO", "NHWC")
RTOL, ATOL = 2e-5, 2e-5

# (input shape, kernel shape, strides, padding, kernel dilation, dimension numbers)
CASES = [
    ((3, 9, 9, 2), (3, 3, 2, 5), (1, 1), "VALID", (1, 1), NHWC),
    ((3, 9, 9, 2), (3, 3, 2, 5), (2, 2), "SAME", (1, 1), NHWC),
    ((2, 8, 7, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (1, 1)), (1, 1), NHWC),  # WRN/ResNet
    ((2, 10, 10, 3), (3, 2, 3, 4), (3, 1), ((2, 0), (1, 3)), (1, 1), NHWC),  # uneven
    ((2, 12, 12, 2), (3, 3, 2, 3), (1, 2), "SAME", (2, 3), NHWC),  # dilated kernel
    ((2, 8, 8, 6), (1, 1, 6, 4), (2, 2), "VALID", (1, 1), NHWC),  # strided 1×1 shortcut
    ((2, 8, 8, 3), (4, 4, 3, 5), (4, 4), "VALID", (1, 1), NHWC),  # ViT patch embedding
    ((2, 11, 4), (3, 4, 6), (2,), "SAME", (1,), ("NWC", "WIO", "NWC")),  # 1-d
    ((1, 5, 6, 4, 2), (2, 3, 2, 2, 3), (1, 2, 1), "VALID", (1, 1, 2), ("NDHWC", "DHWIO", "NDHWC")),
]


def _both(x, w, strides, padding, dilation, dn):
    def run(impl):
        def f(x, w):
            with using_conv_impl(impl):
                return conv_general_dilated(
                    x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=dn
                )

        return jax.jit(f)

    return run("patches"), run("lax")


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_values_and_gradients_equal_lax_conv(case):
    shape, kshape, strides, padding, dilation, dn = case
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), kshape)
    ours, ref = _both(x, w, strides, padding, dilation, dn)
    y = ours(x, w)
    np.testing.assert_allclose(y, ref(x, w), rtol=RTOL, atol=ATOL)
    dy = jax.random.normal(jax.random.key(2), y.shape)
    got = jax.vjp(ours, x, w)[1](dy)
    want = jax.vjp(ref, x, w)[1](dy)
    for g, r in zip(got, want, strict=True):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL * float(jnp.max(jnp.abs(r))))


def test_patches_by_hand():
    # A 1×3×3×1 image 0..8, 2×2 kernel, stride 1: the top-left output sees 0, 1, 3, 4.
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    p = patches(x, (2, 2), (1, 1), (1, 1))
    assert p.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(p[0, 0, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(p[0, 1, 1], [4, 5, 7, 8])
    # Stride 2 in width, kernel dilated 2 in height: rows {0, 2}, one column step of 2.
    p = patches(x, (2, 1), (1, 2), (2, 1))
    np.testing.assert_array_equal(p[0, 0, :, :], [[0, 6], [2, 8]])


def test_uncovered_cases_fall_back_to_lax():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 2, 4))  # two feature groups
    with using_conv_impl("patches"):
        grouped = conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2
        )
        nchw = conv_general_dilated(
            x.transpose(0, 3, 1, 2), w[:, :, :1].repeat(4, 2).transpose(3, 2, 0, 1), (1, 1),
            "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"),
        )  # fmt: skip
        negative = conv_general_dilated(x, w[:, :, :1].repeat(4, 2), (1, 1), ((-1, 0), (0, 0)),
                                        dimension_numbers=NHWC)  # fmt: skip
    ref = jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=2
    )
    np.testing.assert_allclose(grouped, ref, rtol=1e-6)
    assert nchw.shape == (2, 4, 4, 4)
    assert negative.shape == (2, 3, 4, 4)


def test_bfloat16_matches_lax_within_bfloat16_rounding():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 16), jnp.bfloat16)
    w = jax.random.normal(jax.random.key(1), (3, 3, 16, 8), jnp.bfloat16)
    ours, ref = _both(x, w, (1, 1), "SAME", (1, 1), NHWC)
    y = ours(x, w)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        y.astype(np.float32), ref(x, w).astype(np.float32), rtol=5e-2, atol=0.25
    )
    dx, dw = jax.grad(lambda x, w: jnp.sum(ours(x, w).astype(jnp.float32)), (0, 1))(x, w)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16


def test_vmapped_kernels_equal_per_member_convolutions():
    # The deep ensemble vmaps every kernel: the patch path batches its matmuls.
    x = jax.random.normal(jax.random.key(0), (3, 7, 7, 2))
    w = jax.random.normal(jax.random.key(1), (4, 3, 3, 2, 5))

    def f(w):
        with using_conv_impl("patches"):
            return conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=NHWC)

    got = jax.vmap(f)(w)
    for m in range(4):
        want = jax.lax.conv_general_dilated(x, w[m], (2, 2), "SAME", dimension_numbers=NHWC)
        np.testing.assert_allclose(got[m], want, rtol=RTOL, atol=ATOL)
    g = jax.grad(lambda w: jnp.sum(jax.vmap(f)(w) ** 2))(w)
    for m in range(4):
        want = jax.grad(
            lambda v: jnp.sum(
                jax.lax.conv_general_dilated(x, v, (2, 2), "SAME", dimension_numbers=NHWC) ** 2
            )
        )(w[m])
        np.testing.assert_allclose(g[m], want, rtol=RTOL, atol=ATOL * float(jnp.max(want)))


ZOO = {
    "mnist_cnn": (dict(channels=(4, 8, 8, 16), strides=(1, 2, 2, 1)), (2, 20, 20, 1)),
    "wrn": (dict(depth=10, widen_factor=1), (2, 8, 8, 3)),  # one block per group
    # One block per stage: every kind of convolution of the network, a quarter of the
    # compile. ResNet-18's convolutions (3×3 stride 1 and 2, strided 1×1) are WRN's.
    "resnet50": (dict(num_filters=2, stage_sizes=(1, 1, 1, 1)), (2, 32, 32, 3)),
    "vit": (dict(patch_size=4, hidden_size=8, num_heads=2, mlp_dim=8, depth=1), (2, 8, 8, 3)),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_models_give_lax_outputs_and_gradients_from_one_parameter_tree(name):
    # In float64, so that BatchNorm on a small batch does not turn float32 rounding into
    # visible differences: the two paths must then agree to ~1e-10.
    fields, shape = ZOO[name]
    with jax.enable_x64(True):
        model = create_model(
            name, num_classes=5, dtype=jnp.float64, param_dtype=jnp.float64, **fields
        )
        x = jax.random.uniform(jax.random.key(0), shape, jnp.float64)
        y = jax.random.randint(jax.random.key(1), (shape[0],), 0, 5)

        def loss(params, rest, impl):
            with using_conv_impl(impl):
                logits, state = model.apply(
                    {"params": params, **rest}, x, train=True, mutable=["batch_stats"]
                )
            nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
            return nll, state

        trees = {}
        for impl in ("patches", "lax"):
            with using_conv_impl(impl):
                variables = model.init(jax.random.key(2), x)
            trees[impl] = jax.tree.map(lambda a: (a.shape, a.dtype), variables)
        assert trees["patches"] == trees["lax"]  # same names and shapes: checkpoints move
        params = variables.pop("params")
        step = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=2)
        (lp, sp), gp = step(params, variables, "patches")
        (ll, sl), gl = step(params, variables, "lax")
    assert np.isfinite(ll) and abs(float(lp) - float(ll)) <= 1e-10 * abs(float(ll))
    close = functools.partial(np.testing.assert_allclose, rtol=1e-8, atol=1e-10)
    jax.tree.map(close, sp, sl)
    jax.tree.map(close, gp, gl)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(gl)) > 1e-3


def test_impl_selection(monkeypatch):
    set_conv_impl(None)
    monkeypatch.setenv(patch_conv.ENV_VAR, "lax")
    assert conv_impl() == "lax"
    monkeypatch.setenv(patch_conv.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="TAC_JAX_CONV"):
        conv_impl()
    monkeypatch.delenv(patch_conv.ENV_VAR)
    assert conv_impl() == "auto"
    with using_conv_impl("patches"):
        assert conv_impl() == "patches"
    assert conv_impl() == "auto"
    with pytest.raises(ValueError, match="expected a convolution"):
        set_conv_impl("cudnn")


def test_auto_is_patches_on_cpu_only():
    x = jnp.ones((1, 5, 5, 1))
    w = jnp.ones((3, 3, 1, 2))
    with using_conv_impl("auto"):
        jaxpr = jax.make_jaxpr(
            lambda x, w: conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC)
        )(x, w)
    uses_lax = "conv_general_dilated" in str(jaxpr)
    assert uses_lax == (jax.default_backend() != "cpu")


@pytest.mark.parametrize("batch", [5, 4])
def test_batch_chunks_and_their_remainder_equal_lax(monkeypatch, batch):
    # Chunks of 2 images: 5 = 2 + 2 + a remainder of 1, 4 = 2 + 2.
    x = jax.random.normal(jax.random.key(0), (batch, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    per_image = 4 * 4 * 9 * 3 * 4  # 4×4 outputs (stride 2, SAME), 9 offsets × 3 channels, f32
    monkeypatch.setattr(patch_conv, "CHUNK_BYTES", 2 * per_image)
    assert patch_conv._chunk(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), w, (2, 2), (1, 1)) == 2
    ours, ref = _both(x, w, (2, 2), "SAME", (1, 1), NHWC)
    y = ours(x, w)
    np.testing.assert_allclose(y, ref(x, w), rtol=RTOL, atol=ATOL)
    dy = jax.random.normal(jax.random.key(2), y.shape)
    for g, r in zip(jax.vjp(ours, x, w)[1](dy), jax.vjp(ref, x, w)[1](dy), strict=True):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=ATOL * float(jnp.max(jnp.abs(r))))
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), (0, 1)))(x, w))
    assert "while" in jaxpr or "scan" in jaxpr  # the chunked path ran


def test_doctests():
    import doctest

    assert doctest.testmod(patch_conv).failed == 0
