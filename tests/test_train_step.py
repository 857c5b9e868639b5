"""Tests for tac_jax.train.step: the jitted update and eval steps of every mode."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import SMOKE

from tac_jax.config_io import load_config
from tac_jax.parallel import create_sharded, make_mesh, shard_batch
from tac_jax.train.setup import build_setup
from tac_jax.train.step import (
    as_float_images,
    eval_step_fn,
    make_objective,
    shard_eval_step,
    shard_train_step,
    train_step_fn,
)

STEPS = 6


def fixed_batch(seed: int, n: int = 32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
        "label": rng.integers(0, 10, (n,)).astype(np.int32),
    }


def flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def train(mode: str, dtype: str = "float32") -> dict:
    """Trains STEPS updates on one fixed batch, then one on another batch of that shape,
    through a step that may be traced only once."""
    config = load_config(SMOKE)
    config.mode = mode
    config.dtype = dtype
    config.base_workdir = "unused: the step does not read it"
    config.optim.learning_rate = 0.1
    config.schedule.name = "constant"
    config.schedule.warmup_steps = 0
    setup = build_setup(config, (28, 28, 1), np.uint8)
    mesh = make_mesh()
    state, shardings = create_sharded(setup.init, mesh, jax.random.key(0))
    initial = flat(state)
    fn = chex.assert_max_traces(train_step_fn(setup.objective, setup.tx, seed=config.seed), n=1)
    step = shard_train_step(fn, mesh, shardings)
    batch = shard_batch(fixed_batch(0), mesh)
    history = []
    for _ in range(STEPS):
        state, metrics = step(state, batch)
        history.append(jax.device_get(metrics))
    state, _ = step(state, shard_batch(fixed_batch(1), mesh))
    return {"setup": setup, "state": state, "initial": initial, "history": history, "mesh": mesh}


@pytest.fixture(scope="module", params=["base", "addon", "scratch-bf16"])
def run(request):
    chex.clear_trace_counter()
    mode, _, dtype = request.param.partition("-")
    return {"mode": mode, **train(mode, {"bf16": "bfloat16"}.get(dtype, "float32"))}


def test_loss_is_finite_and_decreases_on_a_fixed_batch(run):
    losses = [float(m["loss"]) for m in run["history"]]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05, losses
    if run["mode"] != "base":
        l1 = [float(m["tac_l1"]) for m in run["history"]]
        assert l1[-1] < l1[0]


def test_step_counts_updates_and_keeps_float32_params(run):
    state = run["state"]
    assert int(state.step) == STEPS + 1
    dtypes = {x.dtype for x in jax.tree.leaves(state.params)}
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert state.params is not None
    for name, value in flat(state.params).items():
        assert np.isfinite(value).all(), name


@pytest.mark.parametrize("run", ["addon"], indirect=True)
def test_addon_leaves_the_base_bit_identical(run):
    before, after = run["initial"], flat(run["state"])
    base_keys = [k for k in before if k.startswith(".params['base']")]
    tac_keys = [k for k in before if k.startswith(".params['tac']")]
    assert base_keys and tac_keys
    for key in base_keys:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert any(not np.array_equal(after[k], before[k]) for k in tac_keys)
    # No optimizer state for the frozen base: only TAC's leaves carry momentum.
    opt_leaves = flat(run["state"].opt_state)
    assert opt_leaves and not any("'base'" in k for k in opt_leaves)


@pytest.mark.parametrize("run", ["scratch-bf16"], indirect=True)
def test_bfloat16_computes_in_bfloat16(run):
    setup, state = run["setup"], run["state"]
    out, _ = setup.tac.apply(state.variables, jnp.zeros((2, 28, 28, 1)))
    assert out.features["dense1"].dtype == jnp.bfloat16
    assert out.logits.dtype == jnp.float32


def test_eval_step_counts_match_numpy(run):
    setup, state, mesh = run["setup"], run["state"], run["mesh"]
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = shard_eval_step(eval_step_fn(setup.model), mesh, shardings)
    batch = fixed_batch(2, n=16)
    mask = np.arange(16) < 11
    outputs, counts = step(state, *shard_batch((batch, mask), mesh))
    logits = np.asarray(outputs["logits"])
    assert logits.shape == (16, 10)
    hits = (logits.argmax(-1) == batch["label"]) & mask
    assert int(counts["count"]) == 11
    assert int(counts["correct"]) == int(hits.sum())
    if setup.tac is not None:
        codes = np.asarray(setup.tac.codes.matrix)
        activation = np.asarray(outputs["activation"])
        tac_hits = (np.sign(activation) @ codes.T).argmax(-1) == batch["label"]
        assert int(counts["tac_correct"]) == int((tac_hits & mask).sum())
    else:
        assert "tac_correct" not in counts


def test_as_float_images_scales_uint8_only():
    x = jnp.array([[0, 255]], jnp.uint8)
    np.testing.assert_array_equal(as_float_images(x), [[0.0, 1.0]])
    y = jnp.array([[0.25]], jnp.float32)
    assert as_float_images(y) is y


def test_make_objective_rejects_mismatched_models():
    config = load_config(SMOKE)
    config.mode = "base"
    setup = build_setup(config, (28, 28, 1))
    with pytest.raises(ValueError, match="expected a training mode in"):
        make_objective("joint", setup.base, num_classes=10)
    with pytest.raises(ValueError, match="expected a TACModel in mode 'addon', got 'MLP'"):
        make_objective("addon", setup.base, num_classes=10)
