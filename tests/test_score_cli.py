"""Tests for ``tac-jax score``'s accept/reject arguments (``--risk``, ``--delta``,
``--guarantee``, ``--accept-score``): a bad one is one line on stderr and exit code 2,
before any run is loaded. (Scoring a trained run: tests/test_evaluate_e2e.py.)"""

import numpy as np
import pytest

from tac_jax import cli


@pytest.fixture
def args(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((4, 28, 28), np.uint8))
    # The workdir does not exist: an error about the arguments shows they came first.
    return ["score", "--workdir", str(tmp_path / "no_run"), "--input", str(path),
            "--output", str(tmp_path / "out.npz")]  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--risk", "0"], "expected risk in (0, 1), got 0.0"),
        (["--risk", "1.5"], "expected risk in (0, 1), got 1.5"),
        (["--risk", "nan"], "expected risk in (0, 1), got nan"),
        (["--risk", "0.05", "--delta", "1"], "expected delta in (0, 1), got 1.0"),
        (["--risk", "0.05", "--delta", "-0.1"], "expected delta in (0, 1), got -0.1"),
        (["--risk", "0.05", "--accept-score", "nope"], "to accept by, got 'nope'"),
        (["--delta", "0.2"], "expected --risk with --delta, got no --risk"),
        (["--guarantee", "ltt", "--accept-score", "msp"],
         "expected --risk with --guarantee, --accept-score, got no --risk"),
    ],
)  # fmt: skip
def test_bad_guarantee_arguments_fail_in_one_line_before_the_run_loads(
    args, extra, message, tmp_path, capsys
):
    assert cli.main([*args, *extra]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert err.startswith("tac-jax score: error: ") and err.count("\n") == 1, err
    assert message in err and "loading the run" not in out
    assert not (tmp_path / "out.npz").exists()


def test_guarantee_choices_and_defaults(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--risk", "0.1", "--guarantee", "crc"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "invalid choice: 'crc'" in capsys.readouterr().err
    parsed = cli.build_parser().parse_args([*args, "--risk", "0.05"])
    assert (parsed.risk, parsed.delta, parsed.guarantee, parsed.accept_score) == (
        0.05, None, None, None,
    )  # fmt: skip
    assert cli.DEFAULT_DELTA == 0.1
