r"""TAC on text: a small Transformer classifying Debian's manual pages, offline.

The corpus is built from Debian packages (about 20 MB of downloads):

    apt-get install -y manpages manpages-dev manpages-de manpages-de-dev \
        manpages-fr manpages-fr-dev manpages-es manpages-es-dev \
        manpages-pl manpages-pl-dev manpages-ru manpages-ru-dev

Each example is one page, markup stripped, its first ``data.max_len`` words. Two tasks,
six classes each (see `tac_jax.data.text.manpage_corpus`; counts on Debian 12):

* ``data.task="section"`` (default): the page's section, 1, 2, 3, 5, 7 or 8 (1024, 968,
  2301, 337, 484 and 410 pages across the six languages; a page and its translations
  share a split);
* ``data.task="language"``: en, de, fr, es, pl or ru (1100, 1301, 1214, 626, 586, 847).

Three variants, picked by the argument after the name (default ``scratch``, which
needs no other run): ``base`` (the Transformer alone), ``addon`` (TAC on the frozen base
of a ``base`` run) and ``scratch`` (both jointly). Every encoder layer is tapped. Sized
for a CPU: two layers of width 64, 600 steps of 32 pages. Measured results (section
task, base 0.887 and TAC 0.891 test accuracy, with the commands and the machine) are in
experiments/manpages_text/README.md:

    tac-jax train --config manpages_text --workdir runs/text
    tac-jax train --config manpages_text:base --workdir runs/text_base
    tac-jax train --config manpages_text:addon --workdir runs/text_tac \
        --config.base_workdir=runs/text_base
    tac-jax train --config manpages_text --workdir runs/text_lang \
        --config.data.task=language
"""

from tac_jax.train.config import default_config

VOCAB_SIZE = 8192
MAX_LEN = 256


def get_config(variant: str = "scratch"):
    if variant not in ("base", "addon", "scratch"):
        raise ValueError(f"expected a variant in ('base', 'addon', 'scratch'), got {variant!r}")
    config = default_config()
    config.mode = variant
    config.base_workdir = "runs/text_base" if variant == "addon" else ""

    config.data.source = "manpages"
    config.data.task = "section"
    config.data.max_len = MAX_LEN
    config.data.vocab_size = VOCAB_SIZE
    config.data.num_classes = 6
    config.data.validation_fraction = 0.1
    config.data.test_fraction = 0.2
    config.data.max_per_class = 0  # 0 keeps every page

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
    config.schedule.warmup_steps = 50
    config.steps = 600  # 5 epochs of the ~3,800 training pages; longer overfits
    config.batch_size = 32
    config.eval_batch_size = 256
    config.log_every = 50
    config.ckpt_every = 200
    return config
