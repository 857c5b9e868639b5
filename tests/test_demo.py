"""The main job's config (tac_jax/configs/demo.py) and `run_demo`'s two stages."""

import json

import pytest

from tac_jax.config_io import load_config
from tac_jax.demo import DEMO_CONFIG, run_demo
from tac_jax.train.config import validate_config


@pytest.mark.parametrize("stage", ["base", "addon"])
def test_both_stages_are_valid_configs(stage):
    config = load_config(f"{DEMO_CONFIG}:{stage}")
    validate_config(config)
    # Two classes are held out, so the report has a near-OOD set.
    assert len(config.data.classes) == config.data.num_classes == 8
    assert config.data.validation_fraction > 0


def test_the_addon_reads_the_studys_score_settings():
    config = load_config(f"{DEMO_CONFIG}:addon")
    assert config.mode == "addon" and config.tac.projection == "large"
    assert 0 <= config.tac.score_deepest <= 4 and config.tac.fuse_weight >= 0
    with pytest.raises(ValueError, match="expected the stage"):
        load_config(f"{DEMO_CONFIG}:tac")


@pytest.mark.slow
def test_run_demo_trains_both_stages_into_one_workdir(tmp_path):
    messages = []
    out = run_demo(tmp_path, base_steps=30, tac_steps=30, evaluate=False, log=messages.append)
    assert out is None
    base = json.loads((tmp_path / "base" / "final_metrics.json").read_text())
    tac = json.loads((tmp_path / "final_metrics.json").read_text())
    # The add-on leaves the base's predictions exactly as they were.
    assert tac["test_accuracy"] == base["test_accuracy"] and "test_tac_accuracy" in tac
    assert any("training the TAC add-on" in m for m in messages)
