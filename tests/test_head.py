import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.head import Projection, TACHead, reduce_slices, slice_assignment


def test_uniform_slices_drop_leftover_channels():
    np.testing.assert_array_equal(slice_assignment(7, 3), [[0, 1], [2, 3], [4, 5]])


def test_random_slices_fixed_by_seed_and_disjoint():
    a = slice_assignment(20, 4, "random", seed=5)
    b = slice_assignment(20, 4, "random", seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 5) and len(np.unique(a)) == 20
    assert not np.array_equal(a, slice_assignment(20, 4, "random", seed=6))


def test_too_few_channels_for_slices():
    with pytest.raises(ValueError, match="expected at least 16 channels.*got 8"):
        slice_assignment(8, 16)


def test_reduce_mean_and_median_by_hand():
    f = jnp.array([[1.0, 2.0, 9.0, 4.0, 4.0, 10.0]])
    assignment = slice_assignment(6, 2)  # [[0, 1, 2], [3, 4, 5]]
    np.testing.assert_allclose(reduce_slices(f, assignment, "mean"), [[4.0, 6.0]])
    np.testing.assert_allclose(reduce_slices(f, assignment, "median"), [[2.0, 4.0]])


def test_reduce_rejects_unpooled_features():
    with pytest.raises(ValueError, match=r"expected pooled features.*got \(2, 3, 4\)"):
        reduce_slices(jnp.ones((2, 3, 4)), slice_assignment(4, 2))


@pytest.mark.parametrize(
    "kind, dense_layers", [("none", 0), ("small", 1), ("large", 2), ("very_large", 3)]
)
def test_projection_depths_keep_width(kind, dense_layers):
    f = jnp.ones((2, 12))
    variables = Projection(kind).init(jax.random.key(0), f)
    params = variables.get("params", {})
    assert len(params) == dense_layers
    assert Projection(kind).apply(variables, f).shape == (2, 12)


def test_projection_bottleneck_and_layer_norm():
    proj = Projection("large", layer_norm=True, bottleneck=0.25)
    params = proj.init(jax.random.key(0), jnp.ones((2, 16)))["params"]
    assert params["dense1"]["kernel"].shape == (16, 4)
    assert params["dense2"]["kernel"].shape == (4, 16)
    assert "norm1" in params


def test_no_projection_head_is_slice_means():
    head = TACHead(layers=("a", "b"), width=2, projection="none")
    pooled = {"a": jnp.array([[1.0, 3.0, 5.0, 7.0]]), "b": jnp.array([[2.0, 2.0, 8.0, 9.0, 0.0]])}
    a = head.apply({}, pooled)
    # a: slices [1,3],[5,7] → 2, 6; b: [2,2],[8,9] (leftover 0 dropped) → 2, 8.5.
    np.testing.assert_allclose(a, [[2.0, 6.0, 2.0, 8.5]])


def test_head_missing_layer_and_batch_mismatch():
    head = TACHead(layers=("a", "b"), width=2, projection="none")
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        head.apply({}, {"a": jnp.ones((1, 4))})
    with pytest.raises(
        ValueError, match=r"expected one batch size across layers, got sizes \[1, 2\]"
    ):
        head.apply({}, {"a": jnp.ones((1, 4)), "b": jnp.ones((2, 4))})


def test_head_jit_equals_eager_and_vmap_equals_loop():
    head = TACHead(layers=("a",), width=4, projection="very_large")
    f = jax.random.normal(jax.random.key(0), (3, 16))
    variables = head.init(jax.random.key(1), {"a": f})
    eager = head.apply(variables, {"a": f})
    jitted = jax.jit(head.apply)(variables, {"a": f})
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    one = jax.vmap(lambda row: head.apply(variables, {"a": row[None]})[0])(f)
    np.testing.assert_allclose(one, eager, rtol=1e-5, atol=1e-6)
