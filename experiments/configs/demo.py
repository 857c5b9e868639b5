r"""The main job's model: a strided 4-convolution CNN on Fashion-MNIST, sized for a CPU.

The paper's MNIST CNN (3×3 convolutions, no padding, leaky-ReLU, all four tapped) with
channels (32, 64, 128, 128) and strides (1, 2, 2, 1), so one 128-image step costs a
fraction of a second on two cores. 10 % of the training set is held out as validation
(thresholds of the reject/defer value are chosen there). ``mode`` picks the stage; the
TAC stage restores the base from ``base_workdir``. `tac-jax demo` runs both stages and
the evaluation:

    tac-jax demo --workdir runs/demo

or by hand:

    tac-jax train --config experiments/configs/demo.py --workdir runs/demo/base \
        --config.mode=base
    tac-jax train --config experiments/configs/demo.py --workdir runs/demo \
        --config.base_workdir=runs/demo/base
    tac-jax evaluate --workdir runs/demo
"""

from tac_jax.train.config import default_config


def get_config():
    config = default_config()
    config.mode = "addon"
    config.base_workdir = "runs/demo/base"
    config.model.name = "mnist_cnn"
    config.model.channels = (32, 64, 128, 128)
    config.model.strides = (1, 2, 2, 1)
    del config.model["features"]
    config.data.source = "fashion_mnist"
    config.data.validation_fraction = 0.1
    config.data.augment = "none"
    config.tac.layers = ()  # the model's default: conv1..conv4
    config.tac.projection = "small"
    config.tac.code_noise = 0.15
    config.tac.scale = 10.0
    config.optim.name = "sgd"
    config.optim.learning_rate = 0.05
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-5
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 20
    config.steps = 800
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.log_every = 50
    config.ckpt_every = 400
    return config
