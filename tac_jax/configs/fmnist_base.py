r"""Fashion-MNIST base classifier for this CPU: the paper's MNIST CNN, narrowed.

MnistCNN with channels (16, 32, 32, 64) (the paper's (64, 128, 256, 512) costs ~16x
more), plain cross-entropy, SGD (lr 0.1, momentum 0.9, wd 5e-5, as the authors) with a
cosine schedule, 500 steps of 128 (about one epoch). 10% of the training set is held out
as validation, for later threshold choices. The TAC add-on (`fmnist_tac`) and
`fmnist_scratch` use the same model and data.

    tac-jax train --config fmnist_base --workdir runs/fmnist_base
"""

from tac_jax.train.config import default_config


def get_config():
    config = default_config()
    config.mode = "base"
    config.model.name = "mnist_cnn"
    config.model.channels = (16, 32, 32, 64)
    del config.model["features"]
    config.data.source = "fashion_mnist"
    config.data.validation_fraction = 0.1
    config.data.augment = "none"
    config.optim.name = "sgd"
    config.optim.learning_rate = 0.1
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-5
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 20
    config.steps = 500
    config.batch_size = 128
    config.eval_batch_size = 1000
    config.log_every = 20
    config.ckpt_every = 200
    return config
