r"""TAC add-on on the Fashion-MNIST base of `fmnist_base` (run that first).

The base is restored from ``base_workdir`` and frozen, so its accuracy is unchanged; only
TAC's per-layer projections train, with the authors' MNIST settings: all four convolutions
tapped, "small" (one Dense) projections, 16-wide Hadamard codes per layer, code noise
0.15, scale 10 (fixed), loss CE + 10·L1, SGD lr 0.1 momentum 0.9 wd 5e-5, clipping 1.0,
×0.1 decay halfway (their epoch-5-of-10 milestone). Same data and validation split as
the base.

    tac-jax train --config fmnist_base --workdir runs/fmnist_base
    tac-jax train --config fmnist_tac --workdir runs/fmnist_tac \
        --config.base_workdir=runs/fmnist_base
"""

from tac_jax.configs import fmnist_base


def get_config():
    config = fmnist_base.get_config()
    config.mode = "addon"
    config.base_workdir = "runs/fmnist_base"
    config.tac.layers = ()  # the model's default: conv1..conv4
    config.tac.projection = "small"
    config.tac.code_noise = 0.15
    config.tac.scale = 10.0
    config.tac.learn_scale = False
    config.tac.mixup_alpha = 0.0
    config.optim.learning_rate = 0.1
    config.schedule.name = "step"
    config.schedule.warmup_steps = 0
    config.schedule.decay_at = (0.5,)
    config.steps = 300
    config.ckpt_every = 100
    return config
