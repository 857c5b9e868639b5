r"""The paper's CIFAR-10 setting: WideResNet-28-10 on TFDS "cifar10".

Three variants, picked by the argument after the name (default ``addon``):

* ``base``: WRN-28-10 alone (dropout 0.3), the usual recipe: SGD lr 0.1 Nesterov
  momentum 0.9, weight decay 5e-4, cosine schedule, 200 epochs;
* ``addon``: TAC on the frozen base of a ``base`` run (``--config.base_workdir``), as the
  authors: the three block groups tapped (``group1..3``), "very_large" projections
  (Dense-ReLU-Dense-ReLU-Dense), code noise 0.1, scale 15 (fixed), loss CE + 10·L1, mixup
  with alpha 0.2, SGD lr 0.01 momentum 0.9 weight decay 5e-5, clipping 1.0, batch 128,
  10 epochs (their default; their first MultiStepLR milestone is epoch 10, so the rate
  stays constant);
* ``scratch``: base and TAC jointly, with the base recipe's schedule and length.

Augmentation: random flip and a 4-pixel pad-and-crop (the authors add RandAugment,
which tac_jax does not implement). 10% of the training set is held out as validation.
For bfloat16 compute (float32 parameters) add ``--config.dtype=bfloat16``.

    tac-jax train --config cifar10_wrn:base --workdir runs/cifar_base
    tac-jax train --config cifar10_wrn:addon --workdir runs/cifar_tac \
        --config.base_workdir=runs/cifar_base
    tac-jax train --config cifar10_wrn:scratch --workdir runs/cifar_scratch

Needs an accelerator, and tensorflow-datasets (``pip install 'tac_jax[tfds]'``) with
network access the first time, to download CIFAR-10.
"""

from tac_jax.train.config import default_config

TRAIN_EXAMPLES = 45_000  # 50,000 minus the 10% validation split
BATCH = 128


def epochs_to_steps(epochs: int) -> int:
    return epochs * TRAIN_EXAMPLES // BATCH


def get_config(variant: str = "addon"):
    if variant not in ("base", "addon", "scratch"):
        raise ValueError(f"expected a variant in ('base', 'addon', 'scratch'), got {variant!r}")
    config = default_config()
    config.mode = variant
    config.base_workdir = "runs/cifar_base" if variant == "addon" else ""
    config.model.name = "wrn"
    config.model.depth = 28
    config.model.widen_factor = 10
    config.model.dropout_rate = 0.3
    del config.model["features"]
    config.data.source = "tfds"
    config.data.name = "cifar10"
    config.data.num_classes = 10
    config.data.validation_fraction = 0.1
    config.data.augment = "cifar"
    config.tac.layers = ("group1", "group2", "group3")
    config.tac.projection = "very_large"
    config.tac.code_cap = 16
    config.tac.code_noise = 0.1
    config.tac.scale = 15.0
    config.tac.learn_scale = False
    config.tac.ce_weight = 1.0
    config.tac.l1_weight = 10.0
    config.tac.mixup_alpha = 0.2
    config.optim.name = "sgd"
    config.optim.momentum = 0.9
    config.optim.clip_norm = 1.0
    if variant == "addon":
        config.optim.learning_rate = 0.01
        config.optim.weight_decay = 5e-5
        config.schedule.name = "constant"
        config.steps = epochs_to_steps(10)
    else:
        config.optim.learning_rate = 0.1
        config.optim.nesterov = True
        config.optim.weight_decay = 5e-4
        config.schedule.name = "cosine"
        config.schedule.warmup_steps = epochs_to_steps(1)
        config.steps = epochs_to_steps(200)
    config.batch_size = BATCH
    config.eval_batch_size = 1000
    config.log_every = 100
    config.ckpt_every = 2000
    return config
