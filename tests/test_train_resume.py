"""Interrupted runs resume exactly: after SIGKILL (from the last periodic checkpoint) and
after SIGTERM (which saves the step reached), the final state is bit for bit that of an
uninterrupted run."""

import json
import signal
import time

import numpy as np
import pytest
from _train_helpers import finish, load_state, run_worker, start_worker

from tac_jax.train.checkpoint import latest_step

pytestmark = [pytest.mark.slow]

OVERRIDES = (
    "--config.mode=scratch",
    "--config.steps=12",
    "--config.ckpt_every=4",
    "--config.batch_size=16",
    "--config.data.train_examples=64",
    "--config.data.test_examples=64",
    "--config.eval_batch_size=64",
    "--config.data.augment=flip",
)


def wait_for(condition, proc, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited before {what}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def first_step(stdout: str) -> int:
    return int(next(ln for ln in stdout.splitlines() if ln.startswith("START ")).split()[1])


def test_resume_after_kill_and_sigterm_is_exact(tmp_path):
    run_worker(tmp_path / "full", tmp_path / "full", *OVERRIDES)
    expected = load_state(tmp_path / "full.0.npz")
    workdir, ckpt = tmp_path / "run", tmp_path / "run" / "ckpt"

    # 1. SIGKILL once a periodic checkpoint exists: nothing else is saved.
    proc = start_worker(workdir, tmp_path / "a", "--sleep", "0.5", *OVERRIDES)
    try:
        wait_for(lambda: latest_step(ckpt) is not None, proc, "a checkpoint")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_step(ckpt)
    assert killed_at in (4, 8)

    # 2. Resume, then SIGTERM mid-run: it saves the step it reached and exits cleanly.
    proc = start_worker(workdir, tmp_path / "b", "--sleep", "0.5", *OVERRIDES)
    lines = []
    try:
        while not any(ln.startswith("STEP ") for ln in lines[1:]):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-3000:]
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0
    stdout = "".join(lines) + rest
    assert first_step(stdout) == killed_at + 1
    result = json.loads(next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))[7:])
    stopped_at = result["step"]
    assert result["preempted"] is True and killed_at < stopped_at < 12
    assert latest_step(ckpt) == stopped_at

    # 3. Resume to the end.
    stdout = finish([start_worker(workdir, tmp_path / "c", *OVERRIDES)])[0]
    assert first_step(stdout) == stopped_at + 1
    got = load_state(tmp_path / "c.0.npz")
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert int(got[".step"]) == 12
