r"""A tiny run for tests and smoke checks: an MLP on 512 Fashion-MNIST images, 20 steps.

Runs in well under a minute on a laptop CPU. TAC needs a trained base, so the add-on is
two commands (the base first); ``mode=scratch`` needs none:

    tac-jax train --config smoke --workdir runs/smoke_base \
        --config.mode=base
    tac-jax train --config smoke --workdir runs/smoke_tac \
        --config.base_workdir=runs/smoke_base
    tac-jax train --config smoke --workdir runs/smoke_scratch \
        --config.mode=scratch

Needs the Fashion-MNIST IDX files (`apt-get install dataset-fashion-mnist`, or set
TAC_JAX_FMNIST_DIR).
"""

from tac_jax.train.config import default_config


def get_config():
    config = default_config()
    config.mode = "addon"
    config.model.name = "mlp"
    config.model.features = (32, 32)
    config.data.source = "fashion_mnist"
    config.data.train_examples = 512
    config.data.test_examples = 512
    config.tac.projection = "small"
    config.optim.name = "sgd"
    config.optim.learning_rate = 0.05
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 2
    config.steps = 20
    config.batch_size = 32
    config.eval_batch_size = 256
    config.log_every = 5
    config.ckpt_every = 10
    config.keep = 2
    return config
