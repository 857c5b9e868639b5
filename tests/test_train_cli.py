"""Tests for the ``tac-jax train`` command line and its config overrides."""

import pathlib
import subprocess
import sys

import ml_collections
import pytest
from _train_helpers import ROOT, SMOKE

from tac_jax import cli
from tac_jax.config_io import (
    apply_overrides,
    load_config,
    parse_value,
    split_override_args,
)


def sample_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.steps = 10
    config.lr = 0.1
    config.progress = True
    config.name = "mlp"
    config.channels = (16, 32)
    config.layers = ("conv1",)
    config.decay_at = ()
    config.optional = None
    config.optim = ml_collections.ConfigDict({"momentum": 0.9, "nesterov": False})
    return config


def test_overrides_take_the_type_of_the_field():
    config = apply_overrides(
        sample_config(),
        split_override_args(
            [
                "--config.steps=25",
                "--config.lr=1",
                "--config.progress=false",
                "--config.name",
                "mnist_cnn",
                "--config.channels=(8,8,16)",
                "--config.layers=conv2,conv4",
                "--config.decay_at=0.5,0.75",
                "--config.optional=3",
                "--config.optim.nesterov=yes",
                "--config.optim.momentum=0.95",
            ]
        ),
    )
    assert config.steps == 25 and isinstance(config.steps, int)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.progress is False
    assert config.name == "mnist_cnn"
    assert config.channels == (8, 8, 16)
    assert config.layers == ("conv2", "conv4")
    assert config.decay_at == (0.5, 0.75)
    assert config.optional == 3
    assert config.optim.nesterov is True
    assert config.optim.momentum == 0.95


@pytest.mark.parametrize(
    ("text", "current", "expected"),
    [
        ("7", 0, 7),
        ("2.5e-3", 1.0, 0.0025),
        ("On", False, True),
        ("0", True, False),
        ("", (), ()),
        ("(3,)", (1, 2), (3,)),
        ("[1, 2]", (), (1, 2)),
        ("4", (1, 2), (4,)),
        ("'quoted'", "x", "'quoted'"),
    ],
)
def test_parse_value(text, current, expected):
    assert parse_value(text, current) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--config.stepz=3", "expected a config key among [channels, decay_at"),
        ("--config.steps=3.5", "expected an integer for config.steps, got '3.5'"),
        ("--config.progress=maybe", "expected a boolean for config.progress"),
        ("--config.optim.lr.x=1", "expected a config section at config.optim.lr"),
        ("--config.optim=1", "expected a leaf field, got the section config.optim"),
    ],
)
def test_bad_overrides_are_value_errors(override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(".", r"\.")):
        apply_overrides(sample_config(), split_override_args([override]))


def test_split_override_args_rejects_other_flags():
    with pytest.raises(ValueError, match="expected an override of the form --config.KEY=VALUE"):
        split_override_args(["--steps=3"])
    with pytest.raises(ValueError, match="expected a value for --config.steps"):
        split_override_args(["--config.steps"])


def test_load_config_reads_get_config_and_its_argument(tmp_path):
    path = tmp_path / "variant.py"
    path.write_text(
        "import ml_collections\n"
        "def get_config(arg='a'):\n"
        "    return ml_collections.ConfigDict({'variant': arg})\n"
    )
    assert load_config(path).variant == "a"
    assert load_config(f"{path}:b").variant == "b"
    assert load_config(SMOKE).model.name == "mlp"
    with pytest.raises(FileNotFoundError, match="expected a config file at"):
        load_config(tmp_path / "missing.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="expected a get_config\\(\\) function"):
        load_config(tmp_path / "empty.py")


def test_bad_key_is_one_line_and_exit_code_2(tmp_path, capsys):
    code = cli.main(
        ["train", "--config", str(SMOKE), "--workdir", str(tmp_path), "--config.nope=1"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("tac-jax train: error: expected a config key among [")
    assert "got 'nope'" in err
    assert not any(pathlib.Path(tmp_path).iterdir())  # nothing ran


def test_missing_config_file_is_exit_code_2(tmp_path, capsys):
    code = cli.main(["train", "--config", str(tmp_path / "x.py"), "--workdir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("got no such file")


def test_console_script_reports_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tac_jax.cli",
            "train",
            "--config",
            str(SMOKE),
            "--workdir",
            str(tmp_path),
            "--config.steps=many",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "tac-jax train: error: expected an integer for config.steps, got 'many'\n"
    )


def test_unknown_flag_of_the_parser_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--workdir", "w"])
    assert exit_info.value.code == 2
    assert "--config" in capsys.readouterr().err
