"""Configs by name (`tac_jax.configs`) and by file path."""

import doctest
import subprocess
import sys

import ml_collections
import pytest

from tac_jax import config_io
from tac_jax.config_io import config_names, load_config
from tac_jax.train.config import MODES, validate_config

VARIANT_FILE = (
    "import ml_collections\n"
    "def get_config(arg='a'):\n"
    "    return ml_collections.ConfigDict({'variant': arg})\n"
)


def test_config_names_are_the_modules_of_the_package():
    names = config_names()
    assert names == tuple(sorted(names))
    assert {"smoke", "demo", "tac_study", "fmnist_methods", "mnist_cnn", "cifar10_wrn"} <= set(
        names
    )


@pytest.mark.parametrize("name", config_names())
def test_every_config_loads_by_name_and_validates(name):
    config = load_config(name)
    assert isinstance(config, ml_collections.ConfigDict) and config.mode in MODES
    if config.mode == "addon" and not config.base_workdir:
        config.base_workdir = "runs/base"  # the smoke config takes it on the command line
    validate_config(config)


def test_name_and_argument_pick_a_variant():
    assert load_config("demo:base").mode == "base"
    assert load_config("demo").mode == "addon"
    # Configs that import one another through the package see the same values.
    assert load_config("fmnist_methods:base").model.channels == (32, 64, 128, 128)
    assert load_config("fmnist_methods:ensemble").method.members == 5
    with pytest.raises(ValueError, match="expected the stage 'base' or 'addon', got 'tac'"):
        load_config("demo:tac")


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        load_config("smok")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("expected a config name among [ag_news_text, cifar10_wrn, ")
    assert message.endswith("or a config file, got 'smok'")


def test_an_argument_to_a_config_without_variants_is_an_error():
    with pytest.raises(ValueError, match="expected smoke without an argument"):
        load_config("smoke:tiny")


def test_a_file_path_with_and_without_argument(tmp_path):
    path = tmp_path / "variant.py"
    path.write_text(VARIANT_FILE)
    assert load_config(path).variant == "a"
    assert load_config(f"{path}:b").variant == "b"
    with pytest.raises(FileNotFoundError, match="expected a config file at .*missing.py"):
        load_config(tmp_path / "missing.py")


def test_a_file_can_start_from_a_packaged_config(tmp_path):
    path = tmp_path / "longer.py"
    path.write_text(
        "from tac_jax.configs import smoke\n"
        "def get_config():\n"
        "    config = smoke.get_config()\n"
        "    config.steps = 50\n"
        "    return config\n"
    )
    config = load_config(path)
    assert config.steps == 50 and config.model.name == "mlp"


def test_an_existing_file_wins_over_a_name(tmp_path, monkeypatch):
    (tmp_path / "smoke").write_text(VARIANT_FILE)
    monkeypatch.chdir(tmp_path)
    assert load_config("smoke:b").variant == "b"
    assert load_config("demo:base").mode == "base"  # no such file: the name


def test_names_resolve_from_any_folder(tmp_path):
    code = "from tac_jax.config_io import load_config; print(load_config('demo:base').steps)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(load_config("demo:base").steps)


def test_doctests():
    assert doctest.testmod(config_io).failed == 0
