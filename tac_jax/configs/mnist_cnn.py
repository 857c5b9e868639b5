r"""The paper's MNIST setting: its four-convolution CNN on TFDS "mnist".

Three variants, picked by the argument after the name (default ``addon``):

* ``base``: the CNN alone, cross-entropy (the authors start from a pre-trained base
  whose training recipe is not public; we reuse their TAC optimizer settings for it);
* ``addon``: TAC on the frozen base of a ``base`` run (``--config.base_workdir``);
* ``scratch``: base and TAC jointly.

As the authors: channels (64, 128, 256, 512), all four convolutions tapped, "small"
projections, code noise 0.15, scale 10 (fixed), loss CE + 10·L1, SGD lr 0.1 momentum 0.9
weight decay 5e-5, global-norm clipping 1.0, batch 8, 10 epochs with a ×0.1 decay after
epoch 5 (their MultiStepLR milestone 5 of their default 10 epochs), the MNIST
augmentation (random resized crop, ±30° rotation, uniform noise). Ours: 10% of the
training set is held out as validation (so an epoch is 6750 steps), and the global
batch is 8 whatever the device count (it must divide by the data-parallel devices).

    tac-jax train --config mnist_cnn:base --workdir runs/mnist_base
    tac-jax train --config mnist_cnn:addon --workdir runs/mnist_tac \
        --config.base_workdir=runs/mnist_base
    tac-jax train --config mnist_cnn:scratch --workdir runs/mnist_scratch

Needs tensorflow-datasets (``pip install 'tac_jax[tfds]'``) and network access the first
time, to download MNIST.
"""

from tac_jax.train.config import default_config

TRAIN_EXAMPLES = 54_000  # 60,000 minus the 10% validation split
EPOCHS = 10
BATCH = 8


def get_config(variant: str = "addon"):
    if variant not in ("base", "addon", "scratch"):
        raise ValueError(f"expected a variant in ('base', 'addon', 'scratch'), got {variant!r}")
    config = default_config()
    config.mode = variant
    config.base_workdir = "runs/mnist_base" if variant == "addon" else ""
    config.model.name = "mnist_cnn"
    config.model.channels = (64, 128, 256, 512)
    del config.model["features"]
    config.data.source = "tfds"
    config.data.name = "mnist"
    config.data.num_classes = 10
    config.data.validation_fraction = 0.1
    config.data.augment = "mnist"
    config.tac.layers = ("conv1", "conv2", "conv3", "conv4")
    config.tac.projection = "small"
    config.tac.code_cap = 16
    config.tac.code_noise = 0.15
    config.tac.scale = 10.0
    config.tac.learn_scale = False
    config.tac.ce_weight = 1.0
    config.tac.l1_weight = 10.0
    config.optim.name = "sgd"
    config.optim.learning_rate = 0.1
    config.optim.momentum = 0.9
    config.optim.weight_decay = 5e-5
    config.optim.clip_norm = 1.0
    config.schedule.name = "step"
    config.schedule.decay_at = (0.5,)
    config.schedule.decay_factor = 0.1
    config.steps = EPOCHS * TRAIN_EXAMPLES // BATCH
    config.batch_size = BATCH
    config.eval_batch_size = 1000
    config.log_every = 500
    config.ckpt_every = 5000
    return config
