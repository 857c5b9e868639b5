"""The entry points of `import tac_jax`: train, evaluate and score, one call each."""

import doctest
import importlib
import inspect
import subprocess
import sys
import types

import ml_collections
import pytest

import tac_jax
from tac_jax import callable_module


@pytest.fixture
def fake_training(monkeypatch):
    """Records `train_and_evaluate`'s arguments instead of training."""
    calls = []

    def train_and_evaluate(config, workdir, **kwargs):
        calls.append((config, workdir, kwargs))
        return {"step": config.steps}

    monkeypatch.setattr(tac_jax.train.loop, "train_and_evaluate", train_and_evaluate)
    return calls


def test_import_is_cheap():
    code = (
        "import sys, tac_jax\n"
        "heavy = ('orbax', 'matplotlib', 'sklearn', 'tac_jax.train.loop', 'tac_jax.evaluate')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_three_entry_points_are_callable():
    assert callable(tac_jax.train) and callable(tac_jax.evaluate) and callable(tac_jax.score)
    assert {"train", "evaluate", "score", "load_config"} <= set(tac_jax.__all__)
    assert {"train", "evaluate", "score"} <= set(dir(tac_jax))
    assert list(inspect.signature(tac_jax.train).parameters)[:2] == ["config", "workdir"]
    assert list(inspect.signature(tac_jax.evaluate).parameters)[0] == "workdir"
    params = list(inspect.signature(tac_jax.score).parameters)
    assert params[:3] == ["workdir", "input_path", "output_path"]


def test_the_packages_stay_packages():
    assert isinstance(tac_jax.train, types.ModuleType) and tac_jax.train.__path__
    loop = importlib.import_module("tac_jax.train.loop")
    assert tac_jax.train.loop is loop and callable(loop.train_and_evaluate)
    assert tac_jax.evaluate.evaluate_run.__module__ == "tac_jax.evaluate.harness"
    assert tac_jax.score is tac_jax.evaluate.score_file
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        tac_jax.nope  # noqa: B018


def test_train_takes_a_config_dict(fake_training, tmp_path):
    config = tac_jax.load_config("smoke")
    config.steps = 7
    assert tac_jax.train(config, tmp_path, hooks=()) == {"step": 7}
    [(passed, workdir, kwargs)] = fake_training
    assert passed is config and workdir == tmp_path and kwargs == {"hooks": ()}


def test_train_takes_a_name_or_a_path(fake_training, tmp_path):
    tac_jax.train("demo:base", tmp_path / "a")
    path = tmp_path / "short.py"
    path.write_text(
        "from tac_jax.configs import smoke\n"
        "def get_config(steps='3'):\n"
        "    config = smoke.get_config()\n"
        "    config.steps = int(steps)\n"
        "    return config\n"
    )
    tac_jax.train(f"{path}:5", tmp_path / "b")
    tac_jax.train(path, tmp_path / "c")
    configs = [config for config, _, _ in fake_training]
    assert configs[0].mode == "base" and configs[0].steps == tac_jax.load_config("demo:base").steps
    assert [c.steps for c in configs[1:]] == [5, 3]
    assert isinstance(configs[0], ml_collections.ConfigDict)


def test_train_rejects_other_configs(fake_training, tmp_path):
    with pytest.raises(TypeError, match="expected a config name, path or ConfigDict, got a dict"):
        tac_jax.train({"steps": 1}, tmp_path)
    with pytest.raises(ValueError, match="expected a config name among"):
        tac_jax.train("smok", tmp_path)
    assert fake_training == []


def test_evaluate_calls_evaluate_run(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(
        tac_jax.evaluate, "evaluate_run", lambda workdir, **kw: calls.append((workdir, kw))
    )
    tac_jax.evaluate(tmp_path, num_ood=10, bootstrap=0)
    assert calls == [(tmp_path, {"num_ood": 10, "bootstrap": 0})]


def test_make_callable_needs_a_function():
    module = types.ModuleType("tac_jax_test_module")
    sys.modules[module.__name__] = module
    try:
        with pytest.raises(ValueError, match="expected a function run in tac_jax_test_module"):
            callable_module.make_callable(module.__name__, "run")
        module.run = lambda x: x + 1
        callable_module.make_callable(module.__name__, "run")
        assert module(1) == 2
    finally:
        del sys.modules[module.__name__]


def test_doctests():
    assert doctest.testmod(tac_jax.train).failed == 0
