"""The datasets a training config names, as in-memory numpy splits.

Images stay uint8 when stored so (the train step converts them on the device);
floating-point images are checked to lie in [0, 1]. Every split gets a channel axis.
Text becomes int32 token ids ``(N, max_len)`` under the same ``"image"`` key (the
model's input, whatever it is), encoded with a word vocabulary built on the training
split; a run keeps it as ``vocab.json`` so that evaluation encodes text the same way.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tac_jax.data.arrays import keep_classes, load_labeled, split_validation, to_float_images
from tac_jax.data.fashion_mnist import load_fashion_mnist
from tac_jax.data.text import load_text_dataset, load_tfds_text
from tac_jax.data.tfds import load_tfds
from tac_jax.data.vocab import Vocab, build_vocab, encode, load_vocab
from tac_jax.run import VOCAB_FILE
from tac_jax.train.config import is_text_data

Split = dict[str, np.ndarray]


def as_images(images: np.ndarray) -> np.ndarray:
    """``(N, H, W[, C])`` uint8 kept as uint8 with a channel axis; floats via
    `tac_jax.data.arrays.to_float_images` (float32, checked to lie in [0, 1]).

    >>> as_images(np.zeros((2, 4, 4), np.uint8)).shape
    (2, 4, 4, 1)
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(
                f"expected images of rank 3 (N, H, W) or 4 (N, H, W, C), got shape {images.shape}"
            )
        return images
    return to_float_images(images)


def _load_pair(data: Any, which: str) -> tuple[np.ndarray, np.ndarray]:
    data_dir = data.data_dir or None
    if data.source == "fashion_mnist":
        return load_fashion_mnist(which, data_dir)
    if data.source == "tfds":
        if not data.name:
            raise ValueError("expected config.data.name (a TFDS dataset name), got ''")
        split = data.train_split if which == "train" else data.test_split
        return load_tfds(data.name, split, data_dir, method=data.get("tfds_method", "data_source"))
    if data.source == "arrays":
        images = data.train_images if which == "train" else data.test_images
        labels = data.train_labels if which == "train" else data.test_labels
        if not images:
            raise ValueError(f"expected config.data.{which}_images (a file path), got ''")
        return load_labeled(images, labels or None)
    raise ValueError(
        f"expected a data source in ('fashion_mnist', 'tfds', 'arrays'), got {data.source!r}"
    )


def _first(images: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= 0:
        return images, labels
    if n > len(images):
        raise ValueError(f"expected at most {len(images)} examples to keep, got {n}")
    return images[:n], labels[:n]


def load_splits(data: Any, seed: int, *, vocab: Vocab | None = None) -> dict[str, Split]:
    """Loads ``train``, ``test`` and, with a validation fraction, ``validation``.

    Args:
      data: the ``config.data`` section (see `tac_jax.train.config.default_config`).
      seed: fixes which examples go to validation.
      vocab: text sources: encode with this vocabulary (a run's `run_vocab`) rather
        than one built on the training split.

    Returns:
      ``{split: {"image": (N, H, W, C), "label": (N,) int32}}``; text sources give
      int32 token ids ``(N, max_len)`` as ``"image"``.

    Raises:
      FileNotFoundError: if a file is missing.
      ValueError: on inconsistent data (labels out of range, mismatched shapes, ...).
    """
    if is_text_data(data):
        return load_text_splits(data, seed, vocab)[0]
    out = {}
    for which in ("train", "test"):
        images, labels = _load_pair(data, which)
        if data.classes:
            images, labels = keep_classes(images, labels, list(data.classes))
        if labels.size and int(labels.max()) >= data.num_classes:
            raise ValueError(
                f"expected {which} labels below config.data.num_classes={data.num_classes}, "
                f"got maximum {int(labels.max())}"
            )
        out[which] = (images, labels)
    train_images, train_labels = out["train"]
    splits = {}
    if data.validation_fraction > 0:
        train_images, train_labels, val_images, val_labels = split_validation(
            train_images, train_labels, data.validation_fraction, seed
        )
        splits["validation"] = {"image": as_images(val_images), "label": val_labels}
    train_images, train_labels = _first(train_images, train_labels, data.train_examples)
    test_images, test_labels = _first(*out["test"], data.test_examples)
    splits["train"] = {"image": as_images(train_images), "label": train_labels}
    splits["test"] = {"image": as_images(test_images), "label": test_labels}
    shapes = {name: split["image"].shape[1:] for name, split in splits.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected one image shape across splits, got {shapes}")
    return splits


def run_vocab(workdir: str | os.PathLike) -> Vocab | None:
    """The vocabulary a text run saved in ``workdir``, or None (an image run)."""
    path = os.path.join(os.fspath(workdir), VOCAB_FILE)
    return load_vocab(path) if os.path.exists(path) else None


def _check_text_labels(labels: np.ndarray, num_classes: int, which: str) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        raise ValueError(
            f"expected {which} labels below config.data.num_classes={num_classes}, "
            f"got maximum {int(labels.max())}"
        )


def _tfds_text(data: Any, seed: int, vocab: Vocab | None) -> tuple[dict[str, Split], Vocab]:
    def read(split: str) -> tuple[list[str], np.ndarray]:
        return load_tfds_text(
            data.name, split, data.text_key, data.get("label_key", "label"),
            data.data_dir or None, method=data.get("tfds_method", "data_source"),
        )  # fmt: skip

    if not data.name:
        raise ValueError("expected config.data.name (a TFDS dataset name), got ''")
    # Texts are selected by index, as images are by rows, so both sources split alike.
    texts, labels = read(data.train_split)
    index = np.arange(len(texts))
    parts = {}
    if data.validation_fraction > 0:
        index, labels, val_index, val_labels = split_validation(
            index, labels, data.validation_fraction, seed
        )
        parts["validation"] = ([texts[i] for i in val_index], val_labels)
    index, labels = _first(index, labels, data.train_examples)
    parts["train"] = ([texts[i] for i in index], labels)
    texts, labels = read(data.test_split)
    index, labels = _first(np.arange(len(texts)), labels, data.test_examples)
    parts["test"] = ([texts[i] for i in index], labels)
    if vocab is None:
        vocab = build_vocab(parts["train"][0], data.vocab_size, data.get("min_count", 2))
    splits = {
        name: {"image": encode(vocab, texts, data.max_len), "label": labels}
        for name, (texts, labels) in parts.items()
    }
    return splits, vocab


def load_text_splits(
    data: Any, seed: int, vocab: Vocab | None = None
) -> tuple[dict[str, Split], Vocab]:
    """The splits of a text source and the vocabulary that encoded them.

    ``"manpages"`` splits each class into train, validation and test
    (`tac_jax.data.text.load_text_dataset`); a TFDS text set keeps its own test split
    and holds out ``validation_fraction`` of its training split.

    Args:
      data: the ``config.data`` section of a text source.
      seed: fixes the split.
      vocab: encode with it; None builds one on the training split.

    Returns:
      ``({split: {"image": int32 (N, max_len), "label": int32 (N,)}}, vocab)``.

    Raises:
      FileNotFoundError: if the corpus is missing (it names the packages to install).
      ValueError: on a class count that is not ``data.num_classes``.
    """
    if data.source == "tfds":
        splits, vocab = _tfds_text(data, seed, vocab)
    elif data.source == "manpages":
        options = {
            "max_per_class": int(data.get("max_per_class", 0)) or None,
            "min_per_class": int(data.get("min_per_class", 100)),
        }
        if data.data_dir:
            # A tree of one's own is no dpkg install: keep every page found there.
            options.update(root=data.data_dir, packages=None)
        for name in ("sections", "languages"):
            if tuple(data.get(name, ())):
                options[name] = tuple(str(v) for v in data[name])
        corpus = load_text_dataset(
            data.get("task", "section"), data.max_len, data.vocab_size,
            data.validation_fraction, data.get("test_fraction", 0.2), seed,
            min_count=data.get("min_count", 2), vocab=vocab,
            **options,
        )  # fmt: skip
        if len(corpus["class_names"]) != data.num_classes:
            raise ValueError(
                f"expected config.data.num_classes to be {len(corpus['class_names'])} (the "
                f"classes {corpus['class_names']}), got {data.num_classes}"
            )
        vocab = corpus["vocab"]
        renamed = {"train": "train", "val": "validation", "test": "test"}
        splits = {
            new: {"image": corpus[old]["tokens"], "label": corpus[old]["label"]}
            for old, new in renamed.items()
            if len(corpus[old]["label"]) or new != "validation"
        }
    else:
        raise ValueError(f"expected a text source ('manpages' or 'tfds'), got {data.source!r}")
    for name, split in splits.items():
        _check_text_labels(split["label"], data.num_classes, name)
    return splits, vocab
