"""Tests for tac_jax.run.RunDir: how far a run got, and setting an old run aside."""

import json

import jax.numpy as jnp
import pytest

from tac_jax.run import RunDir, UnfinishedRunError
from tac_jax.train.checkpoint import Checkpointer


def _write_run(path, *, steps: int, reached: int, final: int | None) -> RunDir:
    run = RunDir(path)
    with Checkpointer(run.checkpoints, every_steps=1) as ckpt:
        ckpt.save(reached, {"x": jnp.zeros(1)})
    (path / "config.json").write_text(json.dumps({"steps": steps}))
    if final is not None:
        (path / "final_metrics.json").write_text(json.dumps({"step": final}))
    return run


@pytest.mark.parametrize(
    ("steps", "reached", "final", "describe", "finished"),
    [
        (20, 20, 20, "at step 20 of 20", True),
        (20, 12, None, "at step 12 of 20", False),  # preempted
        (40, 25, 20, "at step 25 of 40", False),  # extended, then preempted
        (40, 20, 20, "at step 20 of 40", False),  # extended, not started
    ],
)
def test_progress(tmp_path, steps, reached, final, describe, finished):
    run = _write_run(tmp_path, steps=steps, reached=reached, final=final)
    progress = run.progress()
    assert (progress.step, progress.steps, progress.final_step) == (reached, steps, final)
    assert progress.describe() == describe and run.finished() is finished
    if finished:
        assert run.require_finished() == progress
    else:
        with pytest.raises(UnfinishedRunError, match=f"got one {describe}: resume it"):
            run.require_finished()


def test_an_empty_directory_is_unfinished(tmp_path):
    assert RunDir(tmp_path).progress().describe() == "with no checkpoint"
    assert not RunDir(tmp_path / "missing").finished()


def test_set_aside_moves_the_run_and_keeps_the_lock(tmp_path):
    run = _write_run(tmp_path, steps=1, reached=1, final=1)
    (tmp_path / "train.lock").write_text("")
    (tmp_path / "report").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    first = run.set_aside()
    name = first.rsplit("/", 1)[1]
    assert name.startswith("previous-") and name.endswith("Z")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", name, "train.lock"]
    assert sorted(p.name for p in (tmp_path / first).iterdir()) == [
        "ckpt", "config.json", "final_metrics.json", "report"
    ]  # fmt: skip
    assert run.set_aside() is None  # nothing left to move
    # A second set-aside within the same second gets its own folder.
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    second = run.set_aside()
    assert second != first and (tmp_path / second / "metrics.jsonl").exists()
