"""Tests for tac_jax.train.config."""

import json

import pytest

from tac_jax.train.config import config_from_dict, default_config, model_fields, validate_config


def test_default_config_is_valid_once_a_base_is_named():
    config = default_config()
    with pytest.raises(ValueError, match="expected config.base_workdir"):
        validate_config(config)
    config.base_workdir = "runs/base"
    validate_config(config)
    config.mode = "scratch"
    config.base_workdir = ""
    validate_config(config)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "joint", "expected config.mode in"),
        ("dtype", "float16", "expected config.dtype in"),
        ("steps", 0, "expected config.steps >= 1, got 0"),
        ("seed", -1, "expected a non-negative config.seed, got -1"),
    ],
)
def test_validate_config_names_the_bad_field(field, value, message):
    config = default_config()
    config.mode = "scratch"
    config[field] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score_deepest", -1, "expected config.tac.score_deepest >= 0, got -1"),
        ("fuse_weight", float("nan"), "expected a finite config.tac.fuse_weight >= 0, got nan"),
        ("fuse_weight", -0.5, "expected a finite config.tac.fuse_weight >= 0, got -0.5"),
    ],
)
def test_validate_config_checks_the_tac_score_settings(field, value, message):
    config = default_config()
    config.mode = "scratch"
    config.tac[field] = value
    with pytest.raises(ValueError, match=message):
        validate_config(config)
    config.eval_every = -1
    config.tac[field] = 0
    with pytest.raises(ValueError, match="expected config.eval_every >= 0, got -1"):
        validate_config(config)


def test_class_subset_must_match_num_classes():
    config = default_config()
    config.mode = "base"
    config.data.classes = (0, 3, 5)
    with pytest.raises(ValueError, match=r"num_classes == len\(config.data.classes\) = 3"):
        validate_config(config)
    config.data.num_classes = 3
    validate_config(config)


def test_config_round_trips_through_json_with_tuples():
    config = default_config()
    config.model.name = "mnist_cnn"
    config.model.channels = (16, 32)
    config.schedule.decay_at = (0.5, 0.75)
    back = config_from_dict(json.loads(config.to_json()))
    assert back.model.channels == (16, 32)
    assert back.schedule.decay_at == (0.5, 0.75)
    assert model_fields(back) == {"features": (64, 64), "channels": (16, 32)}
