"""Tests for tac_jax.train.state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tac_jax.train.state import TrainState


def test_create_drops_intermediates_and_starts_at_zero():
    state = TrainState.create(
        {"w": jnp.ones(2)},
        optax.sgd(0.1, momentum=0.9),
        {"batch_stats": {"mean": jnp.zeros(2)}, "intermediates": {"h": jnp.ones(3)}},
    )
    assert int(state.step) == 0 and state.step.dtype == jnp.int32
    assert sorted(state.collections) == ["batch_stats"]
    assert sorted(state.variables) == ["batch_stats", "params"]
    # Every leaf is an array: the state is checkpointed and donated as one tree.
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))


def test_apply_gradients_updates_params_and_merges_collections():
    tx = optax.sgd(0.5)
    state = TrainState.create(
        {"w": jnp.array([1.0, 2.0])}, tx, {"batch_stats": {"m": jnp.zeros(1)}}
    )
    state = state.apply_gradients(
        {"w": jnp.array([1.0, -2.0])}, tx, {"batch_stats": {"m": jnp.ones(1)}}
    )
    np.testing.assert_allclose(state.params["w"], [0.5, 3.0])
    np.testing.assert_allclose(state.collections["batch_stats"]["m"], [1.0])
    assert int(state.step) == 1
    kept = state.apply_gradients({"w": jnp.zeros(2)}, tx)
    np.testing.assert_allclose(kept.collections["batch_stats"]["m"], [1.0])
    assert int(kept.step) == 2
