import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.features import (
    capture_filter,
    feature_dict,
    pool,
    pooled_features,
    resolve_layers,
    select_layers,
)


class Sowing(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(3, name="a")(x)
        self.sow("intermediates", "first", h)
        h = nn.Dense(2, name="b")(h)
        self.sow("intermediates", "second", h)
        return h


def test_feature_dict_from_sow_keeps_names_and_values():
    x = jnp.ones((4, 5))
    variables = Sowing().init(jax.random.key(0), x)
    y, state = Sowing().apply(variables, x, mutable=["intermediates"])
    features = feature_dict(state["intermediates"])
    assert list(features) == ["first", "second"]
    np.testing.assert_array_equal(features["second"], y)


def test_feature_dict_from_capture_intermediates_named_by_module_path():
    x = jnp.ones((4, 5))
    variables = Sowing().init(jax.random.key(0), x)
    y, state = Sowing().apply(
        variables, x, capture_intermediates=capture_filter(["b"]), mutable=["intermediates"]
    )
    features = feature_dict(state["intermediates"])
    assert "b" in features and "a" not in features
    np.testing.assert_array_equal(features["b"], y)


def test_feature_dict_nested_paths():
    nested = {"enc": {"block1": {"__call__": (jnp.ones(2),)}}, "x": (jnp.zeros(1), jnp.ones(1))}
    features = feature_dict(nested)
    assert sorted(features) == ["enc/block1", "x"]
    # sow appends; the latest value wins.
    assert float(features["x"][0]) == 1.0


def test_resolve_layers_exact_glob_regex_and_order():
    names = ["conv1", "conv2", "conv10", "pre_logits"]
    assert resolve_layers(names, ["pre_logits", "conv1"]) == ["pre_logits", "conv1"]
    assert resolve_layers(names, ["conv?"]) == ["conv1", "conv2"]
    assert resolve_layers(names, ["re:conv[0-9]+"]) == ["conv1", "conv2", "conv10"]
    assert resolve_layers(names, ["conv*", "conv1"]) == ["conv1", "conv2", "conv10"]


def test_missing_layer_names_what_exists():
    with pytest.raises(ValueError, match=r"expected layer 'conv9'.*\['conv1', 'conv2'\]"):
        select_layers({"conv1": jnp.ones(1), "conv2": jnp.ones(1)}, ["conv9"])


def test_pool_by_hand():
    h = jnp.arange(16.0).reshape(2, 2, 2, 2)
    # Channel 0 of example 0 holds 0, 2, 4, 6 → mean 3; channel 1 holds 1, 3, 5, 7 → 4.
    np.testing.assert_allclose(pool(h), [[3.0, 4.0], [11.0, 12.0]])
    np.testing.assert_array_equal(pool(jnp.ones((3, 4))), jnp.ones((3, 4)))
    np.testing.assert_allclose(pool(jnp.arange(12.0).reshape(1, 2, 3, 2, 1)), [[5.5]])


def test_pool_masked_mean_ignores_padding():
    h = jnp.array([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = jnp.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(pool(h, mask), [[2.0], [4.0]])


def test_pool_bad_rank_and_mask():
    with pytest.raises(ValueError, match=r"expected activations of rank >= 2.*got shape \(3,\)"):
        pool(jnp.ones(3))
    with pytest.raises(ValueError, match=r"expected a \(batch, tokens\) mask"):
        pool(jnp.ones((2, 3, 4)), jnp.ones((2, 4)))


def test_pooled_features_applies_mask_only_to_sequences():
    feats = {"tok": jnp.array([[[1.0], [5.0]]]), "vec": jnp.array([[7.0]])}
    out = pooled_features(feats, ["tok", "vec"], mask=jnp.array([[1, 0]]))
    np.testing.assert_allclose(out["tok"], [[1.0]])
    np.testing.assert_allclose(out["vec"], [[7.0]])


def test_pool_jit_equals_eager_and_vmap_equals_loop():
    h = jax.random.normal(jax.random.key(1), (3, 4, 5, 6))
    np.testing.assert_allclose(jax.jit(pool)(h), pool(h), rtol=1e-6)
    stacked = jnp.stack([h, 2 * h])
    looped = jnp.stack([pool(h), pool(2 * h)])
    np.testing.assert_allclose(jax.vmap(pool)(stacked), looped, rtol=1e-6)
