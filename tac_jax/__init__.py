"""tac_jax: Total Activation Classifiers in JAX/Flax.

The public API, re-exported; the modules behind it may move. What the command line does
is one call each, imported on first use (they pull in orbax, matplotlib, scikit-learn):

    tac_jax.train(config, workdir)    # a config's name, a config file or a ConfigDict
    tac_jax.evaluate(workdir)         # every score, WORKDIR/report/
    tac_jax.score(workdir, input_path, output_path)
    tac_jax.Detector.from_module(model, variables, example)   # the scores on a model of yours
"""

import importlib

from tac_jax.batching import batched_apply, padded_batches
from tac_jax.codes import ClassCodes, make_codes, min_hamming_distance
from tac_jax.config_io import config_names, load_config
from tac_jax.features import capture_filter, feature_dict, pool, pooled_features, select_layers
from tac_jax.head import Projection, TACHead, reduce_slices, slice_assignment
from tac_jax.losses import (
    code_distances,
    code_l1_loss,
    distance_cross_entropy,
    flip_code_noise,
    mixup,
    tac_loss,
)
from tac_jax.model import TACModel, TACOutput
from tac_jax.scores.tac import (
    closest_code_distance,
    code_inner_product,
    tac_predict,
    tac_scores,
)

__version__ = "0.1.0"

__all__ = [
    "ClassCodes",
    "Detector",
    "Projection",
    "TACHead",
    "TACModel",
    "TACOutput",
    "batched_apply",
    "capture_filter",
    "closest_code_distance",
    "code_distances",
    "code_inner_product",
    "code_l1_loss",
    "config_names",
    "distance_cross_entropy",
    "evaluate",
    "feature_dict",
    "flip_code_noise",
    "load_config",
    "make_codes",
    "min_hamming_distance",
    "mixup",
    "padded_batches",
    "pool",
    "pooled_features",
    "reduce_slices",
    "score",
    "select_layers",
    "slice_assignment",
    "tac_loss",
    "tac_predict",
    "tac_scores",
    "train",
]


def __getattr__(name: str):
    # The entry points are imported on first use; `tac_jax.train` and `tac_jax.evaluate`
    # are packages that can be called (`tac_jax.callable_module`).
    if name in ("train", "evaluate"):
        return importlib.import_module(f"tac_jax.{name}")
    if name == "score":
        return importlib.import_module("tac_jax.evaluate").score_file
    if name == "Detector":
        return importlib.import_module("tac_jax.evaluate.engine.detector").Detector
    raise AttributeError(f"module 'tac_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "train", "evaluate", "score", "Detector"})
