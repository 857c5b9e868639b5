"""The datasets a training config names, as in-memory numpy splits.

Images stay uint8 when stored so (the train step converts them on the device);
floating-point images are checked to lie in [0, 1]. Every split gets a channel axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tac_jax.data.arrays import keep_classes, load_labeled, split_validation, to_float_images
from tac_jax.data.fashion_mnist import load_fashion_mnist
from tac_jax.data.tfds import load_tfds

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


def load_splits(data: Any, seed: int) -> dict[str, Split]:
    """Loads ``train``, ``test`` and, with a validation fraction, ``validation``.

    Args:
      data: the ``config.data`` section (see `tac_jax.train.config.default_config`).
      seed: fixes which examples go to validation.

    Returns:
      ``{split: {"image": (N, H, W, C), "label": (N,) int32}}``.

    Raises:
      FileNotFoundError: if a file is missing.
      ValueError: on inconsistent data (labels out of range, mismatched shapes, ...).
    """
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
