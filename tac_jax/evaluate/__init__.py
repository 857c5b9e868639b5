"""Evaluation inputs: image corruptions at five severities and the OOD suites built
from them, from held-out classes, synthetic noise and public benchmark pairs."""

from tac_jax.evaluate.corruptions import (
    CORRUPTIONS,
    SEVERITY_PARAMS,
    corrupt,
    low_frequency_noise,
)
from tac_jax.evaluate.suites import (
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

__all__ = [
    "CORRUPTIONS",
    "FMNIST_CORRUPTIONS",
    "SEVERITY_PARAMS",
    "SYNTHETIC_NAMES",
    "TFDS_SHAPES",
    "TFDS_SUITES",
    "OODSet",
    "TfdsOOD",
    "corrupt",
    "corruption_sets",
    "fmnist_suite",
    "inverted_set",
    "load_tfds_images",
    "low_frequency_noise",
    "match_images",
    "split_held_out",
    "synthetic_sets",
    "tfds_suite",
]
