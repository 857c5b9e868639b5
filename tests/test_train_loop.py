"""End-to-end runs of `train_and_evaluate` on the smoke config: base, then a TAC add-on
restoring that base, then TAC from scratch."""

import json

import jax
import numpy as np
import pytest
from _train_helpers import SMOKE

from tac_jax import cli
from tac_jax.config_io import load_config
from tac_jax.data.fashion_mnist import load_fashion_mnist
from tac_jax.train.checkpoint import latest_step
from tac_jax.train.loop import train_and_evaluate
from tac_jax.train.setup import load_run
from tac_jax.train.writer import read_metrics

pytestmark = [pytest.mark.slow]


def smoke(**fields):
    config = load_config(SMOKE)
    config.progress = False
    for key, value in fields.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    base, addon, scratch = root / "base", root / "addon", root / "scratch"
    # The base goes through the command line, overrides included.
    args = ["train", "--config", str(SMOKE), "--workdir", str(base)]
    assert cli.main([*args, "--config.mode=base", "--config.progress=false"]) == 0
    addon_results = train_and_evaluate(smoke(base_workdir=str(base)), addon)
    # The scratch run also records its validation learning curve every 10 steps.
    scratch_config = smoke(mode="scratch", eval_every=10)
    scratch_config.data.validation_fraction = 0.05
    scratch_results = train_and_evaluate(scratch_config, scratch)
    return {
        "base": (base, json.loads((base / "final_metrics.json").read_text())),
        "addon": (addon, addon_results),
        "scratch": (scratch, scratch_results),
    }


def train_losses(workdir, name="loss"):
    return [r[name] for r in read_metrics(workdir, "train")]


def test_base_run_writes_config_metrics_and_checkpoints(runs):
    workdir, results = runs["base"]
    config = json.loads((workdir / "config.json").read_text())
    assert config["mode"] == "base" and config["steps"] == 20
    train = read_metrics(workdir, "train")
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert all(r["images_per_sec"] > 0 and r["learning_rate"] >= 0 for r in train)
    losses = train_losses(workdir)
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    (test,) = read_metrics(workdir, "test")
    assert test == {"step": 20, "split": "test", "accuracy": results["test_accuracy"], "count": 512}
    # 20 steps lift a linear-ish model well above chance (0.1) on Fashion-MNIST.
    assert results["test_accuracy"] > 0.3
    assert sorted(int(p.name) for p in (workdir / "ckpt").iterdir() if p.name.isdigit()) == [10, 20]


def test_addon_keeps_the_base_head_bit_identical(runs):
    base_dir, base_results = runs["base"]
    addon_dir, addon_results = runs["addon"]
    # The base head's accuracy is unchanged, exactly.
    assert addon_results["test_accuracy"] == base_results["test_accuracy"]
    assert 0.0 <= addon_results["test_tac_accuracy"] <= 1.0
    assert train_losses(addon_dir, "tac_l1")[-1] < train_losses(addon_dir, "tac_l1")[0]

    base_setup, base_step, base_state = load_run(base_dir)
    addon_setup, addon_step, addon_state = load_run(addon_dir)
    assert (base_step, addon_step) == (20, 20)
    base_vars = base_state.variables
    frozen = addon_setup.tac.base_variables(addon_state.variables)
    for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(base_vars), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    images, _ = load_fashion_mnist("test")
    x = images[:64, :, :, None].astype(np.float32) / 255.0
    expected = base_setup.base.apply(base_vars, x, train=False)
    out, _ = addon_setup.tac.apply(addon_state.variables, x)
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(expected))


def test_scratch_trains_base_and_tac_jointly(runs):
    workdir, results = runs["scratch"]
    for name in ("loss", "tac_l1", "head_ce"):
        losses = train_losses(workdir, name)
        assert np.all(np.isfinite(losses)), name
    assert train_losses(workdir, "tac_l1")[-1] < train_losses(workdir, "tac_l1")[0]
    assert set(results) == {"step", "test_accuracy", "test_tac_accuracy", "test_count"} | {
        "validation_accuracy", "validation_tac_accuracy", "validation_count",
    }  # fmt: skip
    assert results["step"] == 20 and results["test_count"] == 512


def test_a_finished_run_restarts_into_evaluation_only(runs):
    workdir, results = runs["base"]
    again = train_and_evaluate(smoke(mode="base"), workdir)
    assert again == results
    assert latest_step(workdir / "ckpt") == 20
    assert [r["step"] for r in read_metrics(workdir, "test")] == [20, 20]


def test_addon_refuses_a_base_workdir_of_another_mode(runs, tmp_path):
    scratch_dir, _ = runs["scratch"]
    with pytest.raises(
        ValueError, match="expected config.base_workdir to hold a run of mode 'base'"
    ):
        train_and_evaluate(smoke(base_workdir=str(scratch_dir)), tmp_path)
    with pytest.raises(FileNotFoundError, match="expected a checkpoint under"):
        train_and_evaluate(smoke(base_workdir=str(tmp_path / "nothing")), tmp_path)


def test_the_validation_learning_curve_is_recorded(runs):
    workdir, results = runs["scratch"]
    curve = read_metrics(workdir, "validation")
    # Step 10 from eval_every, step 20 the final evaluation (not written twice).
    assert [r["step"] for r in curve] == [10, 20]
    assert all(0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["tac_accuracy"] <= 1.0 for r in curve)
    assert curve[-1]["accuracy"] == results["validation_accuracy"]
    assert curve[-1]["tac_accuracy"] == results["validation_tac_accuracy"]
    # The base run has no validation split: no curve, whatever eval_every says.
    assert read_metrics(runs["base"][0], "validation") == []
