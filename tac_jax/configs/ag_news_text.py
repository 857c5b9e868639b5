r"""TAC on AG News (TFDS "ag_news_subset": 120,000 news descriptions, 4 topics).

The same small Transformer as ``manpages_text``; the text is the article description
(``data.text_key="title"`` for titles). The word vocabulary is built from the training
split. Variants ``base``, ``addon`` and ``scratch`` (default) as there:

    tac-jax train --config ag_news_text --workdir runs/ag_news
    tac-jax train --config ag_news_text:base --workdir runs/ag_news_base
    tac-jax train --config ag_news_text:addon --workdir runs/ag_news_tac \
        --config.base_workdir=runs/ag_news_base

Needs tensorflow-datasets (``pip install 'tac_jax[tfds]'``) and network access the first
time, to download the data.
"""

from tac_jax.train.config import default_config

VOCAB_SIZE = 16384
MAX_LEN = 64  # descriptions average about 40 words


def get_config(variant: str = "scratch"):
    if variant not in ("base", "addon", "scratch"):
        raise ValueError(f"expected a variant in ('base', 'addon', 'scratch'), got {variant!r}")
    config = default_config()
    config.mode = variant
    config.base_workdir = "runs/ag_news_base" if variant == "addon" else ""

    config.data.source = "tfds"
    config.data.name = "ag_news_subset"
    config.data.train_split = "train"
    config.data.test_split = "test"
    config.data.text_key = "description"
    config.data.label_key = "label"
    config.data.max_len = MAX_LEN
    config.data.vocab_size = VOCAB_SIZE
    config.data.num_classes = 4
    config.data.validation_fraction = 0.05

    config.model.name = "text"
    del config.model["features"]
    config.model.vocab_size = VOCAB_SIZE
    config.model.max_len = MAX_LEN
    config.model.hidden_size = 64
    config.model.depth = 2
    config.model.num_heads = 4
    config.model.mlp_dim = 128
    config.model.dropout_rate = 0.1
    config.model.pad_id = 0

    config.tac.layers = ("layer*",)
    config.optim.name = "adamw"
    config.optim.learning_rate = 1e-3
    config.optim.weight_decay = 1e-2
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 200
    config.steps = 4000  # about one epoch at batch 32
    config.batch_size = 32
    config.eval_batch_size = 500
    config.log_every = 100
    config.ckpt_every = 1000
    return config
