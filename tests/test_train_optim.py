"""Tests for tac_jax.train.optim: schedules, decay masks and optimizer chains."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tac_jax.model import TACModel
from tac_jax.models import MLP
from tac_jax.train.optim import decay_boundaries, decay_mask, make_optimizer, make_schedule


def rates(schedule, counts):
    return [float(schedule(c)) for c in counts]


def test_constant_schedule_with_linear_warmup():
    s = make_schedule({"name": "constant", "warmup_steps": 4}, 0.2, 10)
    np.testing.assert_allclose(rates(s, range(6)), [0.05, 0.1, 0.15, 0.2, 0.2, 0.2], rtol=1e-6)


def test_step_schedule_with_fractions_and_steps():
    fractions = make_schedule({"name": "step", "decay_at": (0.5, 0.75)}, 1.0, 100)
    np.testing.assert_allclose(
        rates(fractions, [0, 49, 50, 74, 75, 99]), [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6
    )
    steps = make_schedule({"name": "step", "decay_at": (3,), "decay_factor": 0.5}, 0.4, 10)
    np.testing.assert_allclose(rates(steps, [2, 3, 9]), [0.4, 0.2, 0.2], rtol=1e-6)
    assert decay_boundaries((0.25, 40), 100) == [25, 40]


def test_cosine_schedule_after_warmup():
    s = make_schedule({"name": "cosine", "warmup_steps": 2, "end_factor": 0.1}, 1.0, 12)
    # Warm-up 0.5, 1.0; then the cosine over the 10 remaining updates.
    expected = [0.5, 1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 10)) for t in range(10)]
    np.testing.assert_allclose(rates(s, range(12)), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "linear"}, "expected a schedule name in"),
        ({"name": "step"}, "expected at least one decay point"),
        ({"name": "step", "decay_at": (0.75, 0.5)}, "expected increasing decay points"),
        ({"name": "constant", "warmup_steps": 10}, "expected 0 <= warmup_steps < total_steps=10"),
    ],
)
def test_bad_schedules_are_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(config, 0.1, 10)


def test_decay_mask_skips_biases_and_norm_scales():
    params = {
        "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
        "norm": {"scale": jnp.ones(2), "bias": jnp.ones(2)},
        "scale": jnp.ones(()),
    }
    assert decay_mask(params) == {
        "dense": {"kernel": True, "bias": False},
        "norm": {"scale": False, "bias": False},
        "scale": False,
    }


def test_sgd_clips_then_decays_then_steps():
    params = {"w": jnp.array([[3.0, 4.0]]), "bias": jnp.array([1.0])}
    grads = {"w": jnp.array([[30.0, 40.0]]), "bias": jnp.array([0.0])}
    tx, _ = make_optimizer(
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.5},
        {"name": "constant"},
        10,
    )
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    # Clipped to norm 1: (0.6, 0.8); plus 0.5 * w on the kernel only; times -lr.
    np.testing.assert_allclose(updates["w"], [[-0.1 * (0.6 + 1.5), -0.1 * (0.8 + 2.0)]], rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], [0.0])
    # Momentum: the second update adds 0.9 times the first trace.
    updates2, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates2["w"], 1.9 * updates["w"], rtol=1e-6)


def test_adamw_decays_kernels_but_not_biases():
    params = {"w": jnp.array([2.0, -2.0]), "bias": jnp.array([2.0])}
    grads = {"w": jnp.array([0.5, -0.5]), "bias": jnp.array([0.5])}
    tx, _ = make_optimizer(
        {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.1, "clip_norm": 0.0}, {}, 5
    )
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is lr * sign(g); decoupled decay adds lr * wd * w.
    np.testing.assert_allclose(updates["w"], [-0.01 - 0.002, 0.01 + 0.002], rtol=1e-4)
    np.testing.assert_allclose(updates["bias"], [-0.01], rtol=1e-4)


def test_frozen_base_gets_zero_updates_and_no_state():
    model = TACModel(MLP(10, features=(32,)), ["dense1"], num_classes=10, mode="addon")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
    params = variables["params"]
    inner, _ = make_optimizer({"name": "sgd", "weight_decay": 1e-2}, {}, 10)
    tx = model.optimizer(inner, params)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, state, params)
    for leaf in jax.tree.leaves(updates["base"]):
        np.testing.assert_array_equal(leaf, 0.0)
    assert all(np.all(np.asarray(u) != 0) for u in jax.tree.leaves(updates["tac"]))
    # Momentum buffers exist for TAC's leaves only (the integer leaf is the schedule's count).
    n_state = sum(x.size for x in jax.tree.leaves(state) if x.dtype == jnp.float32)
    assert n_state == sum(x.size for x in jax.tree.leaves(params["tac"]))


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"name": "lamb"}, "expected an optimizer name in"),
        ({"learning_rate": 0.0}, "expected a positive learning_rate, got 0.0"),
        ({"weight_decay": -1.0}, "expected non-negative weight_decay and clip_norm"),
    ],
)
def test_bad_optimizers_are_rejected(optim, message):
    with pytest.raises(ValueError, match=message):
        make_optimizer(optim, {}, 10)


def test_returned_schedule_is_the_one_the_optimizer_uses():
    tx, lr = make_optimizer(
        {"name": "sgd", "learning_rate": 1.0, "momentum": 0.0, "clip_norm": 0.0},
        {"name": "step", "decay_at": (2,)},
        4,
    )
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    seen = []
    for _ in range(4):
        updates, state = tx.update({"w": jnp.ones(())}, state, params)
        seen.append(-float(updates["w"]))
    np.testing.assert_allclose(seen, rates(lr, range(4)), rtol=1e-6)
    np.testing.assert_allclose(seen, [1.0, 1.0, 0.1, 0.1], rtol=1e-6)
    assert isinstance(tx, optax.GradientTransformation)
