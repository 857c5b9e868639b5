"""A run directory is consistent or refused in one line, never silently mixed.

Real (tiny) trainings through ``tac-jax train``: damaged checkpoints fall back to an
older step, or to scratch, and the redone steps are really saved; a changed config is
refused unless ``--fresh`` sets the old run aside; SIGTERM exits 75 and the same command
resumes; a second training on a locked workdir is refused, and ``kill -9`` leaves no
stale lock; unfinished runs are refused as an add-on's base and for scoring.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest
from _train_helpers import ROOT, SMOKE, cpu_env

from tac_jax import cli
from tac_jax.run import RunDir, UnfinishedRunError
from tac_jax.train.checkpoint import latest_step

CLI_WORKER = ROOT / "tests" / "_cli_worker.py"
TINY = (
    "--config.mode=base",
    "--config.steps=8",
    "--config.ckpt_every=4",
    "--config.keep=3",
    "--config.log_every=4",
    "--config.batch_size=16",
    "--config.data.train_examples=64",
    "--config.data.test_examples=64",
    "--config.eval_batch_size=64",
    "--config.progress=false",
)


def train_args(workdir, *more: str) -> list[str]:
    return ["train", "--config", SMOKE, "--workdir", str(workdir), *TINY, *more]


def params_of(workdir) -> dict[str, np.ndarray]:
    _, step, state = RunDir(workdir).load()
    assert step == 8
    leaves = jax.tree_util.tree_flatten_with_path(state.params)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def assert_same_params(workdir, expected: dict[str, np.ndarray], exact: bool = True) -> None:
    got = params_of(workdir)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if exact:
            np.testing.assert_array_equal(got[key], value, err_msg=key)
        else:  # trained partly in a subprocess compiled with other XLA flags
            np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-6, err_msg=key)


def ckpt_entries(workdir) -> list[str]:
    return sorted(p.name for p in (workdir / "ckpt").iterdir() if p.name[0].isdigit())


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err.strip()


def test_demo_stopped_by_sigterm_exits_75_without_evaluating(monkeypatch, tmp_path):
    import tac_jax.demo

    # run_demo returns None, not metrics, when a training stopped on SIGTERM.
    monkeypatch.setattr(tac_jax.demo, "run_demo", lambda *args, **kwargs: None)
    assert cli.main(["demo", "--workdir", str(tmp_path)]) == cli.EXIT_PREEMPTED == 75


def test_train_help_lists_the_exit_codes_and_fresh(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--fresh" in out and "previous-<UTC time>/" in out
    assert "\n  75  preempted (SIGTERM)" in out and "\n  2   refused, one line" in out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run (checkpoints at steps 4 and 8) and its step-8 parameters."""
    workdir = tmp_path_factory.mktemp("integrity") / "run"
    assert cli.main(train_args(workdir)) == 0
    return workdir, params_of(workdir)


@pytest.fixture
def copy(trained, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained[0], workdir)
    return workdir


def flip_bytes(step_dir) -> None:
    """Inverts 16 bytes in the middle of the step's largest array file: orbax reads it
    back without an error."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    target.write_bytes(bytes(data))


def garble_metadata(step_dir) -> None:
    (step_dir / "metadata" / "metadata").write_text('{"config": {"steps": 8,')


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_flipped_bytes_in_the_final_checkpoint_are_redone_from_the_previous_one(trained, copy):
    flip_bytes(copy / "ckpt" / "8")
    with pytest.warns(RuntimeWarning, match="step 8 .*checksums saved with them"):
        assert cli.main(train_args(copy)) == 0
    assert ckpt_entries(copy) == ["4", "8", "8.damaged"]
    # Resumed from step 4, step 8 is saved again, bit for bit the undamaged one.
    assert_same_params(copy, trained[1])
    assert json.loads((copy / "final_metrics.json").read_text())["step"] == 8


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_reader_refuses_a_run_whose_final_checkpoint_is_damaged(copy, tmp_path, capsys):
    garble_metadata(copy / "ckpt" / "8")
    with (
        pytest.warns(RuntimeWarning, match="step 8 .*JSONDecodeError"),
        pytest.raises(UnfinishedRunError, match="got step 4 as the newest readable one"),
    ):
        RunDir(copy).load()
    # Set aside, so the run now reads as unfinished and `train` redoes step 8.
    assert ckpt_entries(copy) == ["4", "8.damaged"]
    assert RunDir(copy).progress().describe() == "at step 4 of 8"
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    out = tmp_path / "scores.npz"
    code = cli.main(["score", "--workdir", str(copy), "--input", str(tmp_path / "x.npy"),
                     "--output", str(out)])  # fmt: skip
    assert code == 2 and not out.exists()
    assert one_line(capsys.readouterr().err) == (
        f"tac-jax score: error: expected a finished run in {copy}, got one at step 4 of 8: "
        "resume it by running the same tac-jax train command again"
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_when_every_checkpoint_is_damaged_training_restarts_and_saves(trained, copy):
    flip_bytes(copy / "ckpt" / "4")
    garble_metadata(copy / "ckpt" / "8")
    with pytest.warns(RuntimeWarning) as record:
        assert cli.main(train_args(copy)) == 0
    messages = [str(w.message) for w in record]
    assert any("step 8" in m and "JSONDecodeError" in m for m in messages)
    assert any("step 4" in m and "checksums saved with them" in m for m in messages)
    assert any(m.startswith("None of the 2 checkpoints") for m in messages)
    assert ckpt_entries(copy) == ["4", "4.damaged", "8", "8.damaged"]
    # The new step 8 restores cleanly and holds the retrained weights (training is
    # deterministic, so they are the original run's).
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert_same_params(copy, trained[1])


@pytest.mark.slow
def test_a_changed_config_is_refused_and_fresh_sets_the_old_run_aside(copy, capsys):
    before = sorted(p.name for p in copy.rglob("*"))
    assert cli.main(train_args(copy, "--config.model.features=16")) == 2
    assert one_line(capsys.readouterr().err) == (
        f"tac-jax train: error: expected the config of the run in {copy}, got changed keys: "
        "model.features: [32, 32] -> [16]. Keep them, or pass --fresh (fresh=True) to set "
        "the old run aside into previous-<time>/ and start again"
    )
    assert sorted(p.name for p in copy.rglob("*")) == before  # untouched

    assert cli.main(train_args(copy, "--config.model.features=16", "--fresh")) == 0
    (previous,) = copy.glob("previous-*")
    assert sorted(p.name for p in previous.iterdir()) == [
        "ckpt", "config.json", "final_metrics.json", "metrics.jsonl", "run_identity.json",
    ]  # fmt: skip
    assert ckpt_entries(previous) == ["4", "8"]
    setup, step, _ = RunDir(copy).load()
    assert setup.config.model.features == (16,) and step == 8
    assert ckpt_entries(copy) == ["4", "8"] and RunDir(copy).finished()
    identity = json.loads((copy / "run_identity.json").read_text())["identity"]
    assert identity["model.features"] == [16] and "steps" not in identity


def start(workdir, *more: str, sleep: float = 0.25, hold: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CLI_WORKER), str(sleep), *train_args(workdir, *more)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**cpu_env(1), "HOLD_AT": str(hold)},
        cwd=ROOT,
    )


def read_until(proc: subprocess.Popen, line: str) -> None:
    while (got := proc.stdout.readline()) != line + "\n":
        assert got, f"exited before {line!r}: {proc.stderr.read()[-3000:]}"


@pytest.mark.slow
def test_sigterm_exits_75_and_the_unfinished_run_is_refused_until_resumed(
    trained, tmp_path, capsys
):
    workdir = tmp_path / "run"
    proc = start(workdir)
    try:
        read_until(proc, "STEP 5")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-3000:]
    step = latest_step(workdir / "ckpt")
    assert 5 <= step < 8
    assert err.strip().splitlines()[-1] == (
        f"tac-jax train: preempted at step {step} of 8 (checkpoint saved): run the same "
        "command again to resume"
    )
    assert not (workdir / "final_metrics.json").exists() and not RunDir(workdir).finished()

    # An add-on on this base is refused before it trains.
    addon = tmp_path / "addon"
    args = ["train", "--config", SMOKE, "--workdir", str(addon), f"--config.base_workdir={workdir}"]
    assert cli.main(args) == 2
    assert one_line(capsys.readouterr().err) == (
        f"tac-jax train: error: expected config.base_workdir to hold a finished run, got "
        f"{workdir} at step {step} of 8: finish the base's training first (run its tac-jax "
        "train command again)"
    )
    assert latest_step(addon / "ckpt") is None

    # The same command resumes and finishes it.
    assert cli.main(train_args(workdir)) == 0
    assert RunDir(workdir).finished()
    assert_same_params(workdir, trained[1], exact=False)


@pytest.mark.slow
def test_a_second_training_is_refused_and_kill_9_leaves_no_stale_lock(trained, tmp_path, capsys):
    workdir = tmp_path / "run"
    procs = [start(workdir, f"--config.seed={seed}", hold=6) for seed in (0, 1)]
    try:
        # Whichever locks first trains; the other is refused at once, before writing.
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "neither training was refused"
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = procs[1 - procs.index(loser)]
        _, err = loser.communicate()
        assert loser.returncode == 2 and winner.poll() is None
        assert one_line(err).startswith(
            f"tac-jax train: error: expected no other training in {workdir}, got one "
            f"(pid {winner.pid} on "
        )
        # The winner holds at step 6 until killed: wait for its step-4 save to land.
        read_until(winner, "STEP 6")
        while latest_step(workdir / "ckpt") != 4:
            assert time.monotonic() < deadline, "the step-4 checkpoint never landed"
            time.sleep(0.05)
        winner.send_signal(signal.SIGKILL)
        winner.wait(timeout=30)
    finally:
        for p in procs:
            p.kill()
    seed = procs.index(winner)
    assert latest_step(workdir / "ckpt") == 4
    assert json.loads((workdir / "config.json").read_text())["seed"] == seed
    # The loser cannot sneak in after the winner died either: its config is another run.
    assert cli.main(train_args(workdir, f"--config.seed={1 - seed}")) == 2
    assert f"seed: {seed} -> {1 - seed}" in one_line(capsys.readouterr().err)
    # The lock went with the killed process: the same command resumes.
    assert cli.main(train_args(workdir, f"--config.seed={seed}")) == 0
    assert RunDir(workdir).finished()
    if seed == 0:
        assert_same_params(workdir, trained[1], exact=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a disk that fills up for real (mounting one needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk) -> None:
    with open(disk / "filler", "wb") as f, pytest.raises(OSError, match="No space left"):
        while True:
            f.write(b"\0" * 65536)
            f.flush()


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_output_and_is_one_line(trained, small_disk, capsys):
    x = small_disk / "x.npy"
    np.save(x, np.zeros((4, 28, 28), np.uint8))
    out = small_disk / "scores.npz"
    args = ["score", "--workdir", str(trained[0]), "--input", str(x), "--output", str(out)]
    assert cli.main([*args, "--scores", "msp"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    fill(small_disk)
    # The same command on the full disk: one line naming the output, exit 2; the previous
    # scores stay whole and no temporary file is left.
    assert cli.main([*args, "--scores", "msp,energy"]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"tac-jax score: error: No space left on device: {out}"
    )
    assert out.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "scores.npz", "x.npy"]


@pytest.mark.slow
def test_a_checkpoint_save_on_a_full_disk_fails_and_the_same_command_recovers(small_disk, capsys):
    # 1 MiB with 0.7 MiB taken: the config and logs fit, the checkpoints do not all fit.
    with open(small_disk / "filler", "wb") as f:
        f.write(b"\0" * (700 * 1024))
    workdir = small_disk / "run"
    assert cli.main(train_args(workdir)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tac-jax train: error: ") and "RESOURCE_EXHAUSTED" in err
    assert not RunDir(workdir).finished() and latest_step(workdir / "ckpt") in (None, 4)
    assert not (workdir / "final_metrics.json").exists()
    # Space freed, the same command trains the run to its end: nothing half-saved counts.
    (small_disk / "filler").unlink()
    assert cli.main(train_args(workdir)) == 0
    assert RunDir(workdir).finished() and latest_step(workdir / "ckpt") == 8
