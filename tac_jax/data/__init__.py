"""Datasets for tac_jax: local arrays (`.npy`/`.npz`/IDX), Fashion-MNIST, TFDS,
on-device augmentation, deterministic sharded batching, and text (Debian's manual
pages, TFDS text sets, a word vocabulary)."""

from tac_jax.data.arrays import (
    check_labels,
    keep_classes,
    load_array,
    load_labeled,
    split_validation,
    to_float_images,
)
from tac_jax.data.augment import (
    augment_batch,
    cifar_augment,
    horizontal_flip,
    mnist_augment,
    pad_and_random_crop,
    random_horizontal_flip,
    random_resized_crop,
    random_rotation,
    random_uniform_noise,
    resized_crop,
    rotate,
    uniform_noise,
)
from tac_jax.data.fashion_mnist import (
    CLASS_NAMES as FASHION_MNIST_CLASSES,
)
from tac_jax.data.fashion_mnist import (
    fashion_mnist_dir,
    load_fashion_mnist,
)
from tac_jax.data.idx import read_idx, write_idx
from tac_jax.data.manpages import debian_packages, manpage_corpus
from tac_jax.data.pipeline import (
    BatchIterator,
    epoch_permutation,
    eval_batches,
    global_batch_indices,
    process_batch_indices,
    steps_per_epoch,
)
from tac_jax.data.text import load_text_dataset, load_tfds_text, stratified_split
from tac_jax.data.tfds import load_tfds
from tac_jax.data.troff import read_man_page, troff_to_text
from tac_jax.data.vocab import Vocab, build_vocab, decode, encode, load_vocab, save_vocab, tokenize

__all__ = [
    "FASHION_MNIST_CLASSES",
    "BatchIterator",
    "augment_batch",
    "check_labels",
    "cifar_augment",
    "epoch_permutation",
    "eval_batches",
    "fashion_mnist_dir",
    "global_batch_indices",
    "horizontal_flip",
    "keep_classes",
    "load_array",
    "load_fashion_mnist",
    "load_labeled",
    "load_tfds",
    "mnist_augment",
    "pad_and_random_crop",
    "process_batch_indices",
    "random_horizontal_flip",
    "random_resized_crop",
    "random_rotation",
    "random_uniform_noise",
    "read_idx",
    "resized_crop",
    "rotate",
    "split_validation",
    "steps_per_epoch",
    "to_float_images",
    "uniform_noise",
    "write_idx",
    "Vocab",
    "build_vocab",
    "debian_packages",
    "decode",
    "encode",
    "load_text_dataset",
    "load_tfds_text",
    "load_vocab",
    "manpage_corpus",
    "read_man_page",
    "save_vocab",
    "stratified_split",
    "tokenize",
    "troff_to_text",
]
