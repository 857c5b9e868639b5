"""TensorFlow Datasets (TFDS) as in-memory numpy arrays.

`tensorflow_datasets` is imported only when a function here is called, so the rest
of the package works without it. Reading through `tfds.data_source` (the default)
needs no TensorFlow; preparing a dataset for the first time (download and encode)
and `method="load"` do.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tac_jax.data.arrays import check_labels

_INSTALL_HINT = (
    "expected the optional dependency tensorflow-datasets, got an ImportError; "
    "install it with `pip install 'tac_jax[tfds]'`"
)
_METHODS = ("data_source", "load")
_LOAD_BATCH = 4096


def import_tfds() -> Any:
    """Imports `tensorflow_datasets`, with an install hint when it is missing.

    Returns:
      The `tensorflow_datasets` module.

    Raises:
      ImportError: if tensorflow-datasets is not installed.
    """
    try:
        import tensorflow_datasets
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return tensorflow_datasets


def _stack(values: list[Any], key: str, name: str) -> np.ndarray:
    arrays = [np.asarray(v) for v in values]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"expected every {key!r} of {name} to have the same shape to stack them, got "
            f"{len(shapes)} shapes such as {sorted(shapes)[:3]}; resize them first"
        )
    return np.stack(arrays)


def _from_data_source(tfds: Any, name: str, split: str, data_dir: str | None, keys, download):
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    if len(source) == 0:
        raise ValueError(f"expected at least one example in {name}/{split}, got none")
    examples = [source[i] for i in range(len(source))]
    return {key: _stack([ex[key] for ex in examples], key, name) for key in keys}


def _from_load(tfds: Any, name: str, split: str, data_dir: str | None, keys, download):
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
    # Fixed-size batches, not batch_size=-1: the latter aborts the process (C++
    # length_error) with TensorFlow 2.21 on mocked data; batches work everywhere.
    batches = list(tfds.as_numpy(dataset.batch(_LOAD_BATCH)))
    if not batches:
        raise ValueError(f"expected at least one example in {name}/{split}, got none")
    return {key: np.concatenate([b[key] for b in batches]) for key in keys}


def load_tfds(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    image_key: str = "image",
    label_key: str = "label",
    *,
    method: str = "data_source",
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a whole TFDS split into memory as `(images, labels)`.

    Args:
      name: the TFDS name, e.g. "mnist", "cifar10", "svhn_cropped", "cifar100".
      split: a TFDS split, slices included ("train", "test", "train[:10%]", …).
      data_dir: where TFDS keeps its data; default `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`.
      image_key: the feature that holds the images.
      label_key: the feature that holds the labels.
      method: "data_source" reads through `tfds.data_source` (ArrayRecord files,
        no TensorFlow needed to read); "load" goes through `tfds.load` and
        `tfds.as_numpy` (needs TensorFlow, reads TFRecord datasets too).
      download: whether TFDS may download and prepare the dataset if it is
        missing from `data_dir`.

    Returns:
      `(images, labels)`: images as stored by TFDS (uint8 `(N, H, W, C)` for image
      sets; see `to_float_images`), labels as int32 `(N,)`.

    Raises:
      ImportError: if tensorflow-datasets is not installed.
      ValueError: on an unknown `method`, mismatched counts or images of different
        shapes.
    """
    if method not in _METHODS:
        raise ValueError(f"expected method in {_METHODS}, got {method!r}")
    tfds = import_tfds()
    data_dir = None if data_dir is None else os.fspath(data_dir)
    read = _from_data_source if method == "data_source" else _from_load
    arrays = read(tfds, name, split, data_dir, (image_key, label_key), download)
    images, labels = arrays[image_key], check_labels(arrays[label_key])
    if len(images) != len(labels):
        raise ValueError(
            f"expected as many labels as images in {name}/{split}, got {len(images)} images "
            f"and {len(labels)} labels"
        )
    return images, labels
