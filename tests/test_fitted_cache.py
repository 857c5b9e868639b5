"""The fitted-statistics cache (`tac_jax.evaluate.engine.fitted`) is keyed by the content
of the variables it was fitted with: a run retrained in place at the same step is
refitted; a damaged cache is refitted with a one-line warning and rewritten; a cache
that cannot be written is only warned about."""

import doctest
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.evaluate.engine import fitted as fitted_lib
from tac_jax.evaluate.engine.collect import make_forward
from tac_jax.evaluate.engine.scoring import fitted_for_run
from tac_jax.train.config import default_config
from tac_jax.train.setup import build_setup

NAMES = ("mahalanobis", "knn")
STEP = 100


def test_doctests():
    assert doctest.testmod(fitted_lib).failed == 0


@pytest.fixture(scope="module")
def tiny():
    """A base MLP on 4×4 images, its variables at two initialisations (two trainings
    of one run, both at step `STEP`) and a training split."""
    config = default_config()
    config.mode = "base"
    config.model.features = (8, 8)
    config.data.num_classes = 3
    setup = build_setup(config, (4, 4, 1), np.uint8)
    states = [setup.init(jax.random.key(k)) for k in (0, 1)]
    rng = np.random.default_rng(0)
    train = {
        "image": rng.integers(0, 256, (40, 4, 4, 1), dtype=np.uint8),
        "label": np.arange(40) % 3,
    }
    return setup, states, train


def fit(tiny, workdir, which=0):
    setup, states, train = tiny
    forward = make_forward(setup, states[which])
    messages = []
    out = fitted_for_run(workdir, forward, STEP, train, None, names=NAMES, log=messages.append)
    return out, any("fitting feature statistics" in m for m in messages), messages


def assert_same_stats(a, b):
    flat_a = jax.tree_util.tree_leaves_with_path(a.stats)
    flat_b = jax.tree_util.tree_leaves_with_path(b.stats)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (path, x), (_, y) in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


def test_retraining_in_place_at_the_same_step_refits(tiny, tmp_path):
    first, fitted, _ = fit(tiny, tmp_path)
    assert fitted and first.meta["weights"] == fitted_lib.variables_hash(
        make_forward(tiny[0], tiny[1][0]).variables
    )
    _, fitted, _ = fit(tiny, tmp_path)
    assert not fitted  # same variables: reused
    retrained, fitted, messages = fit(tiny, tmp_path, which=1)
    assert fitted and any("differ in weights" in m for m in messages), messages
    assert retrained.meta["step"] == first.meta["step"] == STEP
    assert retrained.meta["weights"] != first.meta["weights"]
    mean = lambda f: f.stats["mahalanobis"]["means"]  # noqa: E731
    assert not np.array_equal(mean(retrained), mean(first))
    # The cache now holds the retrained run's statistics.
    _, fitted, _ = fit(tiny, tmp_path, which=1)
    assert not fitted


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_cache_is_refitted_with_a_warning_and_rewritten(tiny, tmp_path, caplog, damage):
    clean, _, _ = fit(tiny, tmp_path / "clean")
    path = tmp_path / "run" / "report" / "fitted.npz"
    fit(tiny, tmp_path / "run")
    data = path.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"x" * 99}[damage]
    )
    with caplog.at_level(logging.WARNING):
        again, fitted, _ = fit(tiny, tmp_path / "run")
    assert fitted
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "unreadable fitted statistics" in warnings[0] and str(path) in warnings[0]
    assert_same_stats(again, clean)
    # Rewritten whole: it reloads, equal to a clean fit, without another warning.
    caplog.clear()
    reloaded, fitted, _ = fit(tiny, tmp_path / "run")
    assert not fitted and not caplog.records
    assert_same_stats(reloaded, clean)


def test_a_cache_that_cannot_be_written_is_warned_about(tiny, tmp_path, caplog):
    workdir = tmp_path / "file"
    workdir.write_text("a file where the run directory should be")
    with caplog.at_level(logging.WARNING):
        out, fitted, _ = fit(tiny, workdir)
    assert fitted and set(NAMES) <= set(out.stats)
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "could not save the fitted statistics" in record.getMessage()


def test_variables_hash_reads_content_not_containers():
    tree = {"a": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.zeros(3, jnp.bfloat16)}}
    as_numpy = jax.tree_util.tree_map(np.asarray, tree)
    assert fitted_lib.variables_hash(tree) == fitted_lib.variables_hash(as_numpy)
    changed = {"a": {**tree["a"], "bias": tree["a"]["bias"].at[1].set(1)}}
    assert fitted_lib.variables_hash(changed) != fitted_lib.variables_hash(tree)
    # The same bytes under another name, shape or dtype are other variables.
    renamed = {"b": tree["a"]}
    reshaped = {"a": {**tree["a"], "kernel": tree["a"]["kernel"].reshape(3, 2)}}
    ints = {"a": {**tree["a"], "kernel": tree["a"]["kernel"].view(jnp.int32)}}
    hashes = {fitted_lib.variables_hash(t) for t in (tree, renamed, reshaped, ints)}
    assert len(hashes) == 4
    keys = {"rng": jax.random.key(0)}
    assert fitted_lib.variables_hash(keys) != fitted_lib.variables_hash({"rng": jax.random.key(1)})
