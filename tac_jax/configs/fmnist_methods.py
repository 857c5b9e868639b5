r"""The training-time methods on the main job's network, for `experiments/fmnist_methods`.

Each is the demo's base as it was when the table was measured (`demo:base` with all
ten classes: the strided 4-convolution CNN, 1,600 SGD steps of 128 images, cosine from
0.05, 10 % validation) trained with one method instead of plain cross-entropy; the
argument picks it (``base`` and ``addon`` are the TAC run they are compared with):

* ``confidence``: DeVries & Taylor's branch, budget β = 0.3, λ from 0.1;
* ``ensemble``: 5 members trained in one jitted step (5× the compute of one base). On a
  CPU the members written out one by one still step about 20 % faster than the vmapped
  step (the default ``member_axis``; 8.6× before convolutions ran as patches × matmul,
  `experiments/bench/README.md`), so the experiment unrolls them; on a GPU or TPU keep
  ``vmap``;
* ``sngp``: spectral norm ≤ 0.95 on every convolution, 1,024 random features on the
  layer-normalised pooled features;
* ``dropout``: the base with dropout 0.1 after every convolution, for MC dropout (20
  masks at evaluation);
* ``tac_adversarial``: not a method but TAC trained adversarially as the authors do: the
  demo's add-on (`demo:addon`) with the first half of every batch replaced by L∞ PGD
  inputs (ε = 0.1, 10 steps of ε/10, random start) against the frozen base head; 1,500
  steps, half the demo's, because each costs about ten of them on a CPU.

    tac-jax train --config fmnist_methods:ensemble \
        --workdir runs/methods/ensemble
    tac-jax evaluate --workdir runs/methods/ensemble
"""

from tac_jax.configs import demo

METHODS = ("confidence", "ensemble", "sngp", "dropout", "tac_adversarial")
# The TAC run the methods are compared with: "base" and "addon" (`experiments/fmnist_methods/run.py` trains them).
STAGES = ("base", "addon")


def _as_measured(config):
    """The demo's settings when the methods table was measured (commit 3e24807): all ten
    classes, a 1,600-step cosine base, all four convolutions tapped. The demo has since moved to the TAC study's
    recipe; these runs keep what their README reports."""
    config.data.classes = ()
    config.data.num_classes = 10
    config.eval_every = 0
    config.tac.layers = ()  # all four convolutions
    if config.mode == "base":
        config.schedule.name = "cosine"
        config.schedule.warmup_steps = 20
        config.schedule.decay_at = ()
        config.steps = 1600
    return config


def get_config(method: str = "ensemble"):
    if method not in METHODS + STAGES:
        raise ValueError(f"expected a method in {METHODS} or a stage in {STAGES}, got {method!r}")
    if method in STAGES:
        return _as_measured(demo.get_config(method))
    if method == "tac_adversarial":
        config = _as_measured(demo.get_config("addon"))
        config.tac.adversarial_epsilon = 0.1
        config.tac.adversarial_steps = 10
        config.tac.adversarial_target = "base"
        config.steps = 1500
        return config
    config = _as_measured(demo.get_config("base"))
    if method == "dropout":
        config.model.dropout_rate = 0.1
        return config
    config.method.name = method
    config.method.members = 5
    config.method.member_axis = "unroll"
    config.method.budget = 0.3
    config.method.sn_coeff = 0.95
    config.method.rff_features = 1024
    return config
