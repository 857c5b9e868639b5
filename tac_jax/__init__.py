"""tac_jax: Total Activation Classifiers in JAX/Flax.

The public API, re-exported; the modules behind it may move.
"""

from tac_jax.batching import batched_apply, padded_batches
from tac_jax.codes import ClassCodes, make_codes, min_hamming_distance
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
    "distance_cross_entropy",
    "feature_dict",
    "flip_code_noise",
    "make_codes",
    "min_hamming_distance",
    "mixup",
    "padded_batches",
    "pool",
    "pooled_features",
    "reduce_slices",
    "select_layers",
    "slice_assignment",
    "tac_loss",
    "tac_predict",
    "tac_scores",
]
