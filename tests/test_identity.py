"""Tests for tac_jax.train.identity: a run directory holds the run of one config."""

import doctest
import json

import jax.numpy as jnp
import pytest

from tac_jax.run import RunDir
from tac_jax.train import identity
from tac_jax.train.checkpoint import Checkpointer
from tac_jax.train.config import default_config
from tac_jax.train.identity import (
    RESUMABLE_KEYS,
    IdentityChangedError,
    changed_keys,
    claim_identity,
    identity_hash,
    run_identity,
)


def test_doctests():
    assert doctest.testmod(identity).failed == 0


def test_resumable_keys_leave_the_identity_and_hash_unchanged(tmp_path, monkeypatch):
    config = default_config()
    before = run_identity(config)
    assert not RESUMABLE_KEYS & set(before)
    config.steps, config.keep, config.mesh.data, config.tac.score_deepest = 5000, 9, 2, 3
    config.data.data_dir = "/elsewhere"
    assert run_identity(config) == before
    assert identity_hash(run_identity(config)) == identity_hash(before)
    config.optim.learning_rate = 0.5
    assert identity_hash(run_identity(config)) != identity_hash(before)
    # A relative base_workdir names the folder it means now.
    monkeypatch.chdir(tmp_path)
    config.base_workdir = "base"
    assert run_identity(config)["base_workdir"] == str(tmp_path / "base")


def test_a_key_added_since_with_its_default_is_unchanged():
    current = run_identity(default_config())
    recorded = {k: v for k, v in current.items() if k != "tac.mixup_alpha"}
    assert changed_keys(recorded, current) == []
    assert changed_keys(recorded, {**current, "tac.mixup_alpha": 0.2}) == [
        "tac.mixup_alpha: (absent) -> 0.2"
    ]
    assert changed_keys(current, recorded) == ["tac.mixup_alpha: 0.0 -> (absent)"]


def _checkpoint(run: RunDir) -> None:
    with Checkpointer(run.checkpoints) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(1)}, force=True)


def test_claim_records_then_refuses_another_config(tmp_path):
    run, config = RunDir(tmp_path), default_config()
    claim_identity(run, config)
    record = json.loads((tmp_path / "run_identity.json").read_text())
    assert record["sha256"] == identity_hash(record["identity"])
    # Nothing trained yet: another config simply replaces the record.
    config.seed = 1
    claim_identity(run, config)
    _checkpoint(run)
    config.steps = 7  # resumable
    claim_identity(run, config)
    config.steps = 0  # below the step reached (1)
    with pytest.raises(IdentityChangedError, match=r"expected config.steps >= 1, .* got 0"):
        claim_identity(run, config)
    config.steps = 1
    config.seed, config.model.features = 2, (8,)
    with pytest.raises(IdentityChangedError) as refused:
        claim_identity(run, config)
    assert str(refused.value) == (
        f"expected the config of the run in {tmp_path}, got changed keys: model.features: "
        "[64, 64] -> [8]; seed: 1 -> 2. Keep them, or pass --fresh (fresh=True) to set the "
        "old run aside into previous-<time>/ and start again"
    )


def test_a_run_from_before_identities_is_judged_by_its_config_json(tmp_path):
    run, config = RunDir(tmp_path), default_config()
    (tmp_path / "config.json").write_text(config.to_json())
    _checkpoint(run)
    config.optim.name = "adam"
    with pytest.raises(IdentityChangedError, match='optim.name: "sgd" -> "adam"'):
        claim_identity(run, config)
    config.optim.name = "sgd"
    claim_identity(run, config)
    assert (tmp_path / "run_identity.json").exists()
    (tmp_path / "run_identity.json").write_text("{garbled")
    with pytest.raises(IdentityChangedError, match="expected a readable run_identity.json"):
        claim_identity(run, config)
