r"""The training-time methods on the main job's network, for `experiments/fmnist_methods`.

Each is the demo's base (`demo.py:base`: the strided 4-convolution CNN, 1,600 SGD steps
of 128 images, cosine from 0.05, 10 % validation) trained with one method instead of
plain cross-entropy; the argument picks it:

* ``confidence``: DeVries & Taylor's branch, budget β = 0.3, λ from 0.1;
* ``ensemble``: 5 members in one vmapped step (5× the compute of one base);
* ``sngp``: spectral norm ≤ 0.95 on every convolution, 1,024 random features on the
  layer-normalised pooled features;
* ``dropout``: the base with dropout 0.1 after every convolution, for MC dropout (20
  masks at evaluation).

    tac-jax train --config experiments/configs/fmnist_methods.py:ensemble \
        --workdir runs/methods/ensemble
    tac-jax evaluate --workdir runs/methods/ensemble
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo import get_config as demo_config  # noqa: E402

METHODS = ("confidence", "ensemble", "sngp", "dropout")


def get_config(method: str = "ensemble"):
    if method not in METHODS:
        raise ValueError(f"expected a method in {METHODS}, got {method!r}")
    config = demo_config("base")
    if method == "dropout":
        config.model.dropout_rate = 0.1
        return config
    config.method.name = method
    config.method.members = 5
    config.method.budget = 0.3
    config.method.sn_coeff = 0.95
    config.method.rff_features = 1024
    return config
