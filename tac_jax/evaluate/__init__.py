"""Evaluation, in three parts: the scoring engine (`engine`: one forward pass, the
registry of scores, their fitted statistics, `engine.detector.Detector`), OOD data
(`ood`: corruptions, the suites built from held-out classes, far sets, synthetic noise,
public benchmark pairs and the user's arrays) and reporting (`reporting`: the metric
tables, figures and ``report.md``). `evaluate_run` (`harness`) measures every score of a
trained run and writes its report; `score_file` scores an array file with a trained run.

The package is also a function: ``tac_jax.evaluate(workdir, **kwargs)`` is `evaluate_run`."""

from tac_jax.callable_module import make_callable
from tac_jax.evaluate.engine.scoring import SCORES, score_file
from tac_jax.evaluate.harness import evaluate_run
from tac_jax.evaluate.ood.corruptions import (
    CORRUPTIONS,
    SEVERITY_PARAMS,
    corrupt,
    low_frequency_noise,
)
from tac_jax.evaluate.ood.suites import (
    FMNIST_CORRUPTIONS,
    SYNTHETIC_NAMES,
    TFDS_SHAPES,
    TFDS_SUITES,
    OODSet,
    TfdsOOD,
    corruption_sets,
    fmnist_suite,
    inverted_set,
    load_tfds_images,
    match_images,
    split_held_out,
    synthetic_sets,
    tfds_suite,
)
from tac_jax.evaluate.ood.user_sets import OODFile, parse_ood_spec

__all__ = [
    "CORRUPTIONS",
    "FMNIST_CORRUPTIONS",
    "SEVERITY_PARAMS",
    "SYNTHETIC_NAMES",
    "TFDS_SHAPES",
    "TFDS_SUITES",
    "OODFile",
    "OODSet",
    "SCORES",
    "TfdsOOD",
    "corrupt",
    "corruption_sets",
    "evaluate_run",
    "fmnist_suite",
    "inverted_set",
    "load_tfds_images",
    "low_frequency_noise",
    "match_images",
    "parse_ood_spec",
    "score_file",
    "split_held_out",
    "synthetic_sets",
    "tfds_suite",
]

# `tac_jax.evaluate` names this package; see `tac_jax.callable_module` for why it is callable.
make_callable(__name__, "evaluate_run")
