"""Tests for the ``tac-jax evaluate`` command line's OOD arguments (``--suite``, ``--ood``):
a bad argument is one line on stderr and exit code 2, before any run is loaded."""

import numpy as np
import pytest

from tac_jax import cli
from tac_jax.evaluate.ood.build import SUITES
from tac_jax.evaluate.ood.suites import TFDS_SUITES


@pytest.fixture
def images(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((4, 28, 28), np.uint8))
    return str(path)


@pytest.mark.parametrize(
    "ood, message",
    [
        (["x.npy"], r"expected an OOD set as NAME=PATH[:KIND], got 'x.npy'"),
        (["a={images}:weird"], "expected KIND in ('near', 'far', 'corruption', 'synthetic')"),
        (["a={missing}"], "expected an array file for OOD set 'a', got no such file"),
        (["a={images}", "a={images}:near"], "expected distinct OOD set names, got 'a' twice"),
    ],
    ids=["spec", "kind", "missing", "duplicate"],
)
def test_bad_ood_sets_fail_in_one_line_before_the_run_loads(ood, message, images, tmp_path, capsys):
    # The workdir does not exist: an error about the sets shows they were checked first.
    args = ["evaluate", "--workdir", str(tmp_path / "no_run")]
    for spec in ood:
        args += ["--ood", spec.format(images=images, missing=tmp_path / "missing.npy")]
    assert cli.main(args) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert err.startswith("tac-jax evaluate: error: ") and err.count("\n") == 1
    assert message in err and "loading the run" not in out


def test_suite_choices_are_the_harness_suites_tfds_ones_included(capsys):
    assert set(TFDS_SUITES) <= set(SUITES) and {"fmnist", "text", "none"} <= set(SUITES)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--workdir", "w", "--suite", "imagenet"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
    parser = cli.build_parser()
    args = parser.parse_args(["evaluate", "--workdir", "w", "--suite", "cifar10",
                              "--ood", "a=x.npy", "--ood", "b=y.npz:corruption"])  # fmt: skip
    assert args.suite == "cifar10" and args.ood == ["a=x.npy", "b=y.npz:corruption"]
    assert parser.parse_args(["evaluate", "--workdir", "w"]).ood is None
