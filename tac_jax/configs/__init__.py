"""The training configs that ship with tac_jax, found by name from any folder.

Each module has ``get_config(arg)`` returning an ``ml_collections.ConfigDict``; its
docstring holds the commands that run it. ``NAME:ARG`` picks a variant:

    tac-jax train --config smoke --workdir runs/smoke --config.mode=scratch
    tac-jax train --config demo:base --workdir runs/demo/base

Fashion-MNIST, on a CPU:

* ``smoke``: an MLP on 512 images, 20 steps; for tests and smoke checks;
* ``demo`` (``base``, ``addon``): the main job, the TAC study's recipe sized for a CPU;
* ``tac_study`` (``base``, ``addon``): the TAC study's networks, the authors' MNIST recipe;
* ``fmnist_base``, ``fmnist_tac``, ``fmnist_scratch``: a narrowed MNIST CNN, its TAC
  add-on and TAC trained from scratch;
* ``fmnist_methods`` (``confidence``, ``ensemble``, ``sngp``, ``dropout``,
  ``tac_adversarial``, ``base``, ``addon``): the training-time methods TAC is compared with.

The paper's settings, on an accelerator with TFDS (``base``, ``addon``, ``scratch``):

* ``mnist_cnn``: the four-convolution CNN on MNIST;
* ``cifar10_wrn``: WideResNet-28-10 on CIFAR-10.

Text (``base``, ``addon``, ``scratch``): a small Transformer encoder on

* ``manpages_text``: Debian's manual pages (section or language), offline;
* ``imdb_text``: IMDB reviews (TFDS);
* ``ag_news_text``: AG News (TFDS).

A config outside the package is a file path instead of a name (``path/to/config.py`` or
``path/to/config.py:ARG``); see `tac_jax.config_io.load_config`.
"""
