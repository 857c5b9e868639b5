"""Every file and argument error of ``tac-jax train``, ``evaluate`` and ``score`` is one
line on stderr naming the file (or the argument) and what was expected, with exit code
2 and no traceback, before any run is loaded; an unexpected error keeps its traceback."""

import doctest
import gzip
import math
import os

import numpy as np
import pytest

from tac_jax import cli
from tac_jax.data import damaged, pipeline
from tac_jax.data.arrays import load_array, load_labeled
from tac_jax.data.idx import read_idx, write_idx
from tac_jax.data.vocab import load_vocab
from tac_jax.train.config import default_config, validate_config

IMAGES = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)


def test_doctests():
    for module in (damaged, pipeline, cli):
        assert doctest.testmod(module).failed == 0, module


def refused(capsys, args, *expected):
    """Runs the command line; asserts exit code 2 and one line holding ``expected``."""
    assert cli.main(args) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert err.startswith(f"tac-jax {args[0]}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err + out
    for text in expected:
        assert str(text) in err, (text, err)
    return err


# -- damaged array files ---------------------------------------------------------------------


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.fixture
def damaged_files(tmp_path):
    """``{case: path}``: files cut short, empty, of another format or without the arrays."""
    write_idx(tmp_path / "good-idx3-ubyte.gz", IMAGES)
    gz = (tmp_path / "good-idx3-ubyte.gz").read_bytes()
    np.save(tmp_path / "good.npy", IMAGES)
    npy = (tmp_path / "good.npy").read_bytes()
    np.savez(tmp_path / "good.npz", x=IMAGES)
    npz = (tmp_path / "good.npz").read_bytes()
    np.savez(tmp_path / "keys.npz", a=IMAGES, b=IMAGES)
    np.save(tmp_path / "rows0.npy", IMAGES[:0])
    return {
        "truncated_gz": _write(tmp_path / "cut-idx3-ubyte.gz", gz[: len(gz) // 2]),
        "not_gzip": _write(tmp_path / "plain-idx3-ubyte.gz", b"IDX? no, text"),
        "short_idx_header": _write(tmp_path / "short-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00"),
        "empty_npy": _write(tmp_path / "empty.npy", b""),
        "truncated_npy": _write(tmp_path / "cut.npy", npy[:200]),
        "npy_without_rows": tmp_path / "rows0.npy",
        "truncated_npz": _write(tmp_path / "cut.npz", npz[:300]),
        "not_npz": _write(tmp_path / "text.npz", b"hello, not a zip"),
        "npz_without_images": tmp_path / "keys.npz",
    }


CASES = {
    "truncated_gz": "expected a gzip-compressed IDX file at",
    "not_gzip": "expected a gzip-compressed IDX file at",
    "short_idx_header": "expected an IDX header of 16 bytes",
    "empty_npy": "got an empty file",
    "truncated_npy": "expected a .npy array file",
    "npy_without_rows": "expected at least one input example",
    "truncated_npz": "expected an .npz archive of arrays",
    "not_npz": "expected an .npz archive of arrays",
    "npz_without_images": "expected a single array or one of the keys",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_score_refuses_a_damaged_input_in_one_line(case, damaged_files, tmp_path, capsys):
    path = damaged_files[case]
    # No run exists: the input is read and refused first.
    args = ["score", "--workdir", str(tmp_path / "no_run"), "--input", str(path)]
    refused(capsys, [*args, "--output", str(tmp_path / "s.npz")], CASES[case], path)
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("case", sorted(set(CASES) - {"npy_without_rows"}))
def test_evaluate_reads_the_ood_files_before_the_run(case, damaged_files, tmp_path, capsys):
    path = damaged_files[case]
    args = ["evaluate", "--workdir", str(tmp_path / "no_run"), "--ood", f"mine={path}"]
    err = refused(capsys, args, CASES[case], path)
    assert "run directory" not in err


def test_a_corruption_set_without_its_arrays_is_refused(tmp_path, capsys):
    path = tmp_path / "c.npz"
    np.savez(path, pixels=IMAGES, y=np.zeros(5, np.int32))  # no images key
    args = ["evaluate", "--workdir", str(tmp_path / "no_run"), "--ood", f"c={path}:corruption"]
    refused(capsys, args, "expected a single array or one of the keys", path)


def test_the_readers_name_the_file(damaged_files, tmp_path):
    with pytest.raises(ValueError, match="cut-idx3-ubyte.gz"):
        read_idx(damaged_files["truncated_gz"])
    with pytest.raises(ValueError, match="cut.npz"):
        load_labeled(damaged_files["truncated_npz"])
    with pytest.raises(ValueError, match="text.npz"):
        load_array(damaged_files["not_npz"], key="x")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_array(tmp_path / "missing.npy")  # a missing file keeps its own error
    vocab = _write(tmp_path / "vocab.json", b'{"format": "tac_jax.vocab", "tok')
    with pytest.raises(ValueError, match="vocab.json"):
        load_vocab(vocab)
    # A good file still reads.
    np.testing.assert_array_equal(read_idx(tmp_path / "good-idx3-ubyte.gz"), IMAGES)
    with gzip.open(tmp_path / "good-idx3-ubyte.gz") as f:
        assert f.read(4) == b"\x00\x00\x08\x03"


# -- arguments, before any work ----------------------------------------------------------


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--batch-size", "0"], "expected batch_size >= 1, got 0"),
        (["--batch-size", "-5"], "expected batch_size >= 1, got -5"),
        (["--num-ood", "0"], "expected num_ood >= 1, got 0"),
        (["--attack-size", "0"], "expected attack_size >= 1"),
        (["--scores", "msp,nonsense"], "got unknown ['nonsense']"),
        (["--scores", ","], "expected at least one score name"),
        (["--epsilons", "0.1,nan"], "expected finite epsilons >= 0"),
        (["--severities", "0,3"], "expected severities in 1..5"),
        (["--seed", "-1"], "expected seed >= 0"),
        (["--deepest", "-1"], "expected deepest >= 0"),
        (["--bootstrap", "-1"], "expected bootstrap >= 0"),
    ],
)
def test_evaluate_checks_every_argument_before_the_run(extra, expected, tmp_path, capsys):
    # The workdir does not exist: an error about the argument shows it came first.
    err = refused(capsys, ["evaluate", "--workdir", str(tmp_path / "no_run"), *extra], expected)
    assert "run directory" not in err


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--batch-size", "0"], "expected batch_size >= 1, got 0"),
        (["--scores", "nonsense"], "got unknown ['nonsense']"),
    ],
)
def test_score_checks_its_arguments_before_reading(extra, expected, tmp_path, capsys):
    args = ["score", "--workdir", str(tmp_path / "no_run"), "--input", str(tmp_path / "no.npy")]
    refused(capsys, [*args, "--output", str(tmp_path / "s.npz"), *extra], expected)


def test_evaluate_on_a_missing_workdir_is_one_line(tmp_path, capsys):
    missing = tmp_path / "no_run"
    refused(capsys, ["evaluate", "--workdir", str(missing)], "expected a run directory", missing)
    assert not missing.exists()  # not made by the report's staging


# -- read-only run directories -------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path):
    """A folder this process cannot write: a chmod-ed one, or (as root, who ignores
    modes) a sysfs folder."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for candidate in ("/sys", "/sys/kernel"):
        try:
            os.mkdir(os.path.join(candidate, f"tac_jax_probe_{os.getpid()}"))
        except OSError:
            yield __import__("pathlib").Path(candidate)
            return
        os.rmdir(os.path.join(candidate, f"tac_jax_probe_{os.getpid()}"))
    pytest.skip("no read-only folder to test with")


def test_evaluate_in_a_read_only_workdir_is_one_line(read_only, capsys):
    err = refused(capsys, ["evaluate", "--workdir", str(read_only)], read_only)
    assert "report.partial-" in err and "loading the run" not in err


def test_train_in_a_read_only_workdir_is_one_line(read_only, capsys):
    workdir = read_only / "run"
    refused(capsys, ["train", "--config", "smoke", "--workdir", str(workdir),
                     "--config.mode=base", "--config.steps=1"], workdir)  # fmt: skip


# -- config numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("optim.learning_rate", math.nan, "expected config.optim.learning_rate in (0, inf)"),
        ("optim.learning_rate", 0.0, "expected config.optim.learning_rate in (0, inf), got 0"),
        ("optim.learning_rate", -0.1, "expected config.optim.learning_rate in (0, inf)"),
        ("optim.learning_rate", math.inf, "expected config.optim.learning_rate in (0, inf)"),
        ("optim.weight_decay", math.nan, "expected config.optim.weight_decay in [0, inf)"),
        ("optim.momentum", 1.5, "expected config.optim.momentum in [0, 1)"),
        ("optim.b2", math.nan, "expected config.optim.b2 in [0, 1)"),
        ("optim.clip_norm", -1.0, "expected config.optim.clip_norm in [0, inf)"),
        ("schedule.end_factor", math.inf, "expected config.schedule.end_factor in [0, inf)"),
        ("schedule.decay_at", (0.5, math.nan), "expected config.schedule.decay_at[1] > 0"),
        ("label_smoothing", math.nan, "expected config.label_smoothing in [0, 1)"),
        ("tac.code_noise", math.inf, "expected a finite number for config.tac.code_noise"),
        ("method.ridge", math.nan, "expected a finite number for config.method.ridge"),
    ],
)
def test_validate_config_refuses_non_finite_and_out_of_range_numbers(key, value, expected):
    config = default_config()
    config.base_workdir = "runs/base"
    section, name = key.rsplit(".", 1) if "." in key else (None, key)
    (config[section] if section else config)[name] = value
    with pytest.raises(ValueError) as info:
        validate_config(config)
    assert str(info.value).startswith(expected), str(info.value)


def test_train_refuses_a_nan_learning_rate_in_one_line(tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ["train", "--config", "smoke", "--workdir", str(workdir), "--config.mode=base"]
    refused(capsys, [*args, "--config.optim.learning_rate=nan"], "config.optim.learning_rate")
    assert not (workdir / "ckpt").exists()


# -- batch sizes -------------------------------------------------------------------------


def test_eval_batches_cut_a_huge_batch_to_the_split():
    arrays = {"x": np.arange(5)}
    batches = list(pipeline.eval_batches(arrays, 10**9))
    assert [b["x"].shape for b, _ in batches] == [(5,)]
    assert pipeline.capped_eval_batch(10**9, 5, devices=8) % 8 == 0
    assert pipeline.capped_eval_batch(12, 5, devices=8) % 4 == 0  # 12 splits over 4, not 8
    for p in range(2):  # still split evenly over processes
        ((batch, mask),) = pipeline.eval_batches(arrays, 2 * 10**8, p, 2)
        assert batch["x"].shape == mask.shape and len(mask) * 2 >= 5


# -- what stays a traceback ------------------------------------------------------------------


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def bug(args, extra):
        raise RuntimeError("a bug")

    def no_file(args, extra):
        raise OSError(28, "No space left on device")  # names no file: not a file error

    for run, error in ((bug, RuntimeError), (no_file, OSError)):
        monkeypatch.setattr(cli, "cmd_bench", run)  # looked up when the parser is built
        with pytest.raises(error):
            cli.main(["bench", "--preset", "smoke"])
