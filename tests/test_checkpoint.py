"""Tests for tac_jax.train.checkpoint."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

from tac_jax import parallel
from tac_jax.train import checkpoint
from tac_jax.train.checkpoint import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).with_name("_preemption_worker.py")


def make_state(seed: int) -> train_state.TrainState:
    """A TrainState after one Adam update, so every optimizer slot holds real numbers."""
    model = nn.Dense(3)
    params = model.init(jax.random.key(seed), jnp.ones((1, 4)))
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(0.1))
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5 + seed), params)
    return state.apply_gradients(grads=grads)


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert np.asarray(a).dtype == np.asarray(e).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def abstract_of(state):
    return jax.eval_shape(lambda: state)


def step_dirs(directory) -> list[str]:
    return sorted(p.name for p in pathlib.Path(directory).iterdir() if p.name.isdigit())


def test_round_trip_is_bit_exact(tmp_path):
    state = make_state(0)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.save(1, state, force=True)
        ckpt.wait()
        step, restored = ckpt.restore_latest(abstract_of(state))
    assert step == 1
    assert isinstance(restored, train_state.TrainState)
    assert restored.apply_fn is state.apply_fn
    assert int(restored.step) == 1
    assert_trees_equal(restored.params, state.params)
    assert_trees_equal(restored.opt_state, state.opt_state)
    # The Adam moments are non-zero, so the comparison above is not vacuous.
    assert float(jnp.abs(restored.opt_state[0].nu["params"]["kernel"]).sum()) > 0


def test_restore_accepts_concrete_state_as_template(tmp_path):
    state = {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.int32(7)}
    with Checkpointer(tmp_path, every_steps=1) as ckpt:
        ckpt.save(3, state)
        ckpt.wait()
        step, restored = ckpt.restore_latest(jax.tree.map(jnp.zeros_like, state))
    assert step == 3
    assert_trees_equal(restored, state)


def test_keep_two_leaves_the_newest_two(tmp_path):
    with Checkpointer(tmp_path, keep=2, every_steps=1) as ckpt:
        for step in range(1, 5):
            assert ckpt.save(step, {"x": jnp.float32(step)})
        ckpt.wait()
        assert ckpt.all_steps() == [3, 4]
    assert step_dirs(tmp_path) == ["3", "4"]
    assert checkpoint.latest_step(tmp_path) == 4


def test_every_steps_skips_and_force_saves(tmp_path):
    with Checkpointer(tmp_path, keep=10, every_steps=10) as ckpt:
        saved = {step: ckpt.save(step, {"x": jnp.float32(step)}) for step in (5, 10, 15, 20)}
        assert saved == {5: False, 10: True, 15: False, 20: True}
        assert ckpt.save(25, {"x": jnp.float32(25)}, force=True)
        # A forced save of a step already on disk (a stop right after a periodic save).
        assert not ckpt.save(25, {"x": jnp.float32(-1)}, force=True)
        ckpt.wait()
        assert ckpt.all_steps() == [10, 20, 25]
        _, restored = ckpt.restore_latest({"x": jnp.float32(0)})
    assert float(restored["x"]) == 25.0


def test_metadata_round_trip(tmp_path):
    config = {"model": "mlp", "lr": 0.1, "widths": [32, 16], "head": {"codes": None, "k": 3}}
    with Checkpointer(tmp_path, every_steps=1) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(2)}, metadata=config)
        ckpt.save(2, {"x": jnp.zeros(2)}, metadata={**config, "lr": 0.05})
        ckpt.save(3, {"x": jnp.zeros(2)})
        assert ckpt.read_metadata(1) == config
        assert ckpt.read_metadata(2)["lr"] == 0.05
        assert ckpt.read_metadata() == {}
        with pytest.raises(TypeError, match="JSON"):
            ckpt.save(4, {"x": jnp.zeros(2)}, metadata={"fn": print}, force=True)
    # The metadata item is plain JSON, readable without orbax; the state's checksums
    # sit beside the caller's keys.
    files = list((tmp_path / "1" / "metadata").glob("metadata"))
    raw = json.loads(files[0].read_text())
    assert raw.pop(checkpoint.CHECKSUMS_KEY)["leaves"].keys() == {"['x']"}
    assert raw == config


def test_metadata_accepts_config_dict(tmp_path):
    import ml_collections

    config = ml_collections.ConfigDict({"lr": 0.1, "model": {"depth": 2}})
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(1)}, metadata=config, force=True)
        assert ckpt.read_metadata(1) == {"lr": 0.1, "model": {"depth": 2}}


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "d" in p.parts]
    assert files
    return files


def _delete_data(step_dir: pathlib.Path) -> None:
    for p in _data_files(step_dir):
        p.unlink()


def _garble_data(step_dir: pathlib.Path) -> None:
    for p in _data_files(step_dir):
        p.write_bytes(b"not a checkpoint" * 8)


def _flip_bytes(step_dir: pathlib.Path) -> None:
    """Inverts 8 bytes in the middle of the largest array file: with arrays of some size,
    damage that orbax reads back without an error, which only the checksums see."""
    arrays = [p for p in _data_files(step_dir) if p.parent.parent.name.startswith("ocdbt.")]
    target = max(arrays, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    target.write_bytes(bytes(data))


def _garble_metadata(step_dir: pathlib.Path) -> None:
    (step_dir / "metadata" / "metadata").write_text('{"half": ')


# Orbax can leave an asyncio callback behind when a read fails; it is noise, not a failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "damage",
    [_delete_data, _garble_data, _garble_metadata],
    ids=["deleted", "garbled", "garbled-metadata"],
)
def test_damaged_latest_falls_back_to_previous(tmp_path, damage):
    states = {1: make_state(1), 2: make_state(2)}
    with Checkpointer(tmp_path, every_steps=1) as ckpt:
        for step, state in states.items():
            ckpt.save(step, state)
    damage(tmp_path / "2")

    with Checkpointer(tmp_path, every_steps=1) as ckpt:
        with pytest.warns(RuntimeWarning, match="step 2"):
            step, restored = ckpt.restore_latest(abstract_of(states[1]))
        assert step == 1
        assert_trees_equal(restored.params, states[1].params)
        # The damaged step is set aside, so the resumed run can write step 2 again.
        assert (tmp_path / "2.damaged").is_dir()
        assert ckpt.all_steps() == [1]
        assert ckpt.save(2, states[2])
    assert checkpoint.latest_step(tmp_path) == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_usable_checkpoint_returns_none(tmp_path):
    with Checkpointer(tmp_path / "empty") as ckpt:
        assert ckpt.restore_latest({"x": jnp.zeros(2)}) is None
    assert checkpoint.latest_step(tmp_path / "missing") is None

    with Checkpointer(tmp_path / "bad", every_steps=1) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(2)})
    _delete_data(tmp_path / "bad" / "1")
    with Checkpointer(tmp_path / "bad") as ckpt, pytest.warns(RuntimeWarning) as record:
        assert ckpt.restore_latest({"x": jnp.zeros(2)}) is None
        # Set aside, so that a run starting from scratch saves step 1 again.
        assert ckpt.all_steps() == []
        assert ckpt.save(1, {"x": jnp.ones(2)}, force=True)
    messages = [str(w.message) for w in record]
    assert any("step 1" in m for m in messages)
    assert any(m.startswith("None of the 1 checkpoints") for m in messages)
    assert sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["1", "1.damaged"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unreadable_metadata_is_skipped_by_read_metadata(tmp_path):
    with Checkpointer(tmp_path, every_steps=1) as ckpt:
        ckpt.save(1, {"x": jnp.zeros(2)}, metadata={"v": 1})
        ckpt.save(2, {"x": jnp.zeros(2)}, metadata={"v": 2})
    _garble_metadata(tmp_path / "2")
    with Checkpointer(tmp_path) as ckpt:
        with pytest.warns(RuntimeWarning, match="metadata of checkpoint step 2"):
            assert ckpt.read_metadata() == {"v": 1}
        with pytest.raises(ValueError):
            ckpt.read_metadata(2)


def test_flipped_bytes_are_found_by_the_checksums_unless_none_were_saved(tmp_path):
    """Orbax reads flipped bytes back as other values; the checksums saved with the state
    catch them. Checkpoints written before the checksums existed hold none: they still
    restore, unchecked."""
    x = jnp.arange(4096.0)
    with Checkpointer(tmp_path, every_steps=1) as ckpt:
        ckpt.save(1, {"x": x}, metadata={"v": 1})
        ckpt.save(2, {"x": x}, metadata={"v": 2})
    _flip_bytes(tmp_path / "2")
    with Checkpointer(tmp_path) as ckpt, pytest.warns(RuntimeWarning, match="checksums"):
        assert ckpt.restore_latest({"x": jnp.zeros(4096)})[0] == 1
    path = tmp_path / "1" / "metadata" / "metadata"
    raw = json.loads(path.read_text())
    del raw[checkpoint.CHECKSUMS_KEY]
    path.write_text(json.dumps(raw))
    _flip_bytes(tmp_path / "1")
    with Checkpointer(tmp_path) as ckpt:
        step, state = ckpt.restore_latest({"x": jnp.zeros(4096)})
        assert ckpt.read_metadata() == {"v": 1}
    # Without checksums the same damage goes unnoticed: nothing recorded what it was.
    assert step == 1 and not np.array_equal(np.asarray(state["x"]), np.asarray(x))


def test_reserved_metadata_key_is_refused(tmp_path):
    with Checkpointer(tmp_path) as ckpt, pytest.raises(TypeError, match="reserved key"):
        ckpt.save(1, {"x": jnp.zeros(1)}, metadata={checkpoint.CHECKSUMS_KEY: 1}, force=True)


def test_restore_into_named_sharding(tmp_path):
    mesh = parallel.make_mesh()
    init = lambda: {"w": jnp.arange(8.0 * 3).reshape(8, 3), "b": jnp.ones(3)}  # noqa: E731
    P = jax.sharding.PartitionSpec
    by_rows = lambda path, shape: P("data") if len(shape) == 2 else P()  # noqa: E731
    state, _ = parallel.create_sharded(init, mesh)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(4, state, force=True)
        abstract = parallel.abstract_sharded(init, mesh, param_sharding_rule=by_rows)
        step, restored = ckpt.restore_latest(abstract)
    assert step == 4
    assert restored["w"].sharding == jax.sharding.NamedSharding(mesh, P("data"))
    assert restored["b"].sharding == parallel.replicated(mesh)
    assert_trees_equal(restored, init())


_RESHARD = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    from tac_jax import parallel
    from tac_jax.train.checkpoint import Checkpointer

    init = lambda: {"w": jnp.arange(32.0).reshape(8, 4), "b": jnp.arange(4.0)}
    by_rows = lambda path, shape: P("data") if len(shape) == 2 else P()
    by_cols = lambda path, shape: P(None, "model") if len(shape) == 2 else P("model")
    saved, _ = parallel.create_sharded(init, parallel.make_mesh(), param_sharding_rule=by_rows)
    with Checkpointer(sys.argv[1]) as ckpt:
        ckpt.save(9, saved, force=True)
        ckpt.wait()
        mesh = parallel.make_mesh(data=2, model=2)
        abstract = parallel.abstract_sharded(init, mesh, param_sharding_rule=by_cols)
        step, state = ckpt.restore_latest(abstract)
    print(json.dumps({
        "step": step,
        "saved_shards": len(saved["w"].sharding.device_set),
        "w_spec": str(state["w"].sharding.spec),
        "w_shard": list(state["w"].addressable_shards[0].data.shape),
        "b_spec": str(state["b"].sharding.spec),
        "w": np.asarray(state["w"]).tolist(),
        "b": np.asarray(state["b"]).tolist(),
    }))
    """
)


def test_restore_reshards_across_meshes(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RESHARD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["step"] == 9
    assert out["saved_shards"] == 4
    assert out["w_spec"] == str(jax.sharding.PartitionSpec(None, "model"))
    assert out["w_shard"] == [8, 2]
    assert out["b_spec"] == str(jax.sharding.PartitionSpec("model"))
    np.testing.assert_array_equal(out["w"], np.arange(32.0).reshape(8, 4))
    np.testing.assert_array_equal(out["b"], np.arange(4.0))


def _start_worker(directory, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(directory), *map(str, extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )


def _wait_for(proc, prefix: str, timeout: float = 90) -> str:
    """Reads the worker's stdout up to the first line starting with ``prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.strip()
    proc.kill()
    raise AssertionError(f"worker never printed {prefix!r}")


def _finish(proc, timeout: float = 60) -> tuple[int, int]:
    """Waits for a worker to exit; returns its exit code and the step it stopped at."""
    try:
        rest, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    stopped = [int(line.split()[1]) for line in rest.splitlines() if line.startswith("STOPPED")]
    return proc.returncode, stopped[0] if stopped else -1


def _assert_checkpoint_at(directory, step: int) -> None:
    assert checkpoint.latest_step(directory) == step
    with Checkpointer(directory) as ckpt:
        _, state = ckpt.restore_latest({"step": jnp.int32(0), "w": jnp.zeros(3)})
        assert ckpt.read_metadata() == {"stopped": True}
    assert int(state["step"]) == step
    np.testing.assert_array_equal(np.asarray(state["w"]), np.full(3, step, np.float32))


def test_sigterm_saves_the_reached_step_and_exits_zero(tmp_path):
    proc = _start_worker(tmp_path)
    assert _wait_for(proc, "READY") == "READY True"
    _wait_for(proc, "STEP 10")
    proc.send_signal(signal.SIGTERM)
    code, step = _finish(proc)
    assert code == 0
    assert step >= 10
    _assert_checkpoint_at(tmp_path, step)


def test_preemption_flag_is_process_wide():
    checkpoint.clear_preemption()
    assert not checkpoint.preemption_requested(5)
    checkpoint._on_sigterm(signal.SIGTERM, None)
    assert checkpoint.preemption_requested(5)
    checkpoint.clear_preemption()
    assert not checkpoint.preemption_requested()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    port = _free_port()
    procs = [_start_worker(tmp_path, port, i, 2, env=env) for i in range(2)]
    try:
        # JAX's preemption service owns SIGTERM here, so no Python handler goes in.
        assert [_wait_for(p, "READY") for p in procs] == ["READY False"] * 2
        _wait_for(procs[1], "STEP 10")
        procs[1].send_signal(signal.SIGTERM)
        results = [_finish(p, timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [code for code, _ in results] == [0, 0]
    steps = {step for _, step in results}
    assert len(steps) == 1
    _assert_checkpoint_at(tmp_path, steps.pop())
