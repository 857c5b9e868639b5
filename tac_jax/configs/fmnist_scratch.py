r"""TAC trained from scratch with its Fashion-MNIST base (no separate base run needed).

The model and data of `fmnist_base`; base and TAC train jointly. The base head reads
stop-gradient features, so the body is shaped by TAC's losses only and the head by its
own cross-entropy. TAC settings as in `fmnist_tac`; SGD lr 0.1 with a cosine schedule.

    tac-jax train --config fmnist_scratch --workdir runs/fmnist_scratch
"""

from tac_jax.configs import fmnist_base


def get_config():
    config = fmnist_base.get_config()
    config.mode = "scratch"
    config.tac.projection = "small"
    config.tac.code_noise = 0.15
    config.tac.scale = 10.0
    config.tac.head_weight = 1.0
    config.optim.learning_rate = 0.1
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 20
    config.steps = 500
    return config
