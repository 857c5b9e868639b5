"""Loading and validating in-memory datasets: `.npy`, `.npz` and IDX files."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tac_jax.data.damaged import reading
from tac_jax.data.idx import read_idx

# Keys tried, in order, when an `.npz` holds several arrays and none was named.
_IMAGE_KEYS = ("x", "images", "image", "inputs")
_LABEL_KEYS = ("y", "labels", "label", "targets")
_NPY = "a .npy array file (numpy.save, no pickles)"
_NPZ = "an .npz archive of arrays (numpy.savez, no pickles)"


def _pick_npz_key(keys: list[str], key: str | None, defaults: tuple[str, ...], path: str) -> str:
    if key is not None:
        if key not in keys:
            raise ValueError(f"expected key {key!r} in {path}, got keys {sorted(keys)}")
        return key
    if len(keys) == 1:
        return keys[0]
    for candidate in defaults:
        if candidate in keys:
            return candidate
    raise ValueError(
        f"expected a single array or one of the keys {list(defaults)} in {path}, "
        f"got keys {sorted(keys)}; pass key= to choose one"
    )


def load_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Loads one array from a `.npy`, `.npz` or IDX file (gzipped IDX included).

    Args:
      path: the file. `.npy` and `.npz` are read with `np.load` (no pickles); any
        other name is read as IDX (`*-ubyte`, `*.idx`, optionally `.gz`).
      key: for `.npz`, the array to read. By default the only array in the file,
        else the first of "x", "images", "image", "inputs" that is present.

    Returns:
      The array as stored (e.g. uint8 `(60000, 28, 28)` for MNIST images).

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if the file is malformed or `key` cannot be resolved.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.zeros((2, 3), np.uint8))
    >>> load_array(path).shape
    (2, 3)
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"expected an array file at {path}, got no such file")
    if path.endswith(".npy"):
        if key is not None:
            raise ValueError(f"expected key=None for a .npy file, got key={key!r} for {path}")
        with reading(path, _NPY):
            return np.load(path, allow_pickle=False)
    if path.endswith(".npz"):
        with _open_npz(path) as archive:
            name = _pick_npz_key(list(archive.keys()), key, _IMAGE_KEYS, path)
            with reading(path, _NPZ):
                return archive[name]
    return read_idx(path)


def npz_keys(path: str | os.PathLike) -> list[str]:
    """The names of the arrays in an ``.npz`` file, without reading them.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      ValueError: if it is not a readable ``.npz`` archive (naming the file).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"expected an array file at {path}, got no such file")
    with _open_npz(path) as archive:
        return list(archive.keys())


def _open_npz(path: str) -> Any:
    with reading(path, _NPZ):
        archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"expected {_NPZ} at {path}, got a single .npy array")
    return archive


def check_labels(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Validates class labels and returns them as int32.

    Args:
      labels: a 1-D array of non-negative integer class ids.
      num_classes: if given, every label must be smaller than it.

    Returns:
      `labels` as an int32 array.

    Raises:
      ValueError: on a wrong rank, a non-integer dtype or an out-of-range label.

    >>> check_labels(np.array([0, 2, 1], np.uint8)).dtype
    dtype('int32')
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"expected labels of rank 1 (N,), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected integer labels, got dtype {labels.dtype}")
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise ValueError(f"expected non-negative labels, got minimum {low}")
        if num_classes is not None and high >= num_classes:
            raise ValueError(f"expected labels below num_classes={num_classes}, got maximum {high}")
    return labels.astype(np.int32)


def load_labeled(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike | None = None,
    *,
    images_key: str | None = None,
    labels_key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads images and their labels, from two files or from one `.npz`.

    Args:
      images_path: the images file (see `load_array`).
      labels_path: the labels file. If None, `images_path` must be an `.npz` that
        holds both, under "x"/"images"/… and "y"/"labels"/… (or the given keys).
      images_key: `.npz` key of the images.
      labels_key: `.npz` key of the labels.

    Returns:
      `(images, labels)`: images as stored, labels as int32 `(N,)`.

    Raises:
      ValueError: if the counts differ or the labels are not 1-D integers.
    """
    if labels_path is None:
        path = os.fspath(images_path)
        if not path.endswith(".npz"):
            raise ValueError(f"expected an .npz file when labels_path is None, got {path}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"expected an array file at {path}, got no such file")
        with _open_npz(path) as archive:
            keys = list(archive.keys())
            images_name = _pick_npz_key(keys, images_key, _IMAGE_KEYS, path)
            labels_name = _pick_npz_key(keys, labels_key, _LABEL_KEYS, path)
            with reading(path, _NPZ):
                images, labels = archive[images_name], archive[labels_name]
    else:
        images = load_array(images_path, images_key)
        labels = load_array(labels_path, labels_key)
    labels = check_labels(labels)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected as many labels as images, got {images.shape[0]} images "
            f"and {labels.shape[0]} labels"
        )
    return images, labels


def to_float_images(images: np.ndarray) -> np.ndarray:
    """Converts images to float32 `(N, H, W, C)` with values in [0, 1].

    Args:
      images: uint8 `(N, H, W)` or `(N, H, W, C)` (divided by 255), or floating
        point of the same shapes already in [0, 1]. A missing channel axis is
        added.

    Returns:
      A float32 array of shape `(N, H, W, C)`.

    Raises:
      ValueError: on a wrong rank, an unsupported dtype, NaNs or values outside
        [0, 1].

    >>> to_float_images(np.full((2, 4, 4), 255, np.uint8)).shape
    (2, 4, 4, 1)
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"expected images of rank 3 (N, H, W) or 4 (N, H, W, C), got shape {images.shape}"
        )
    if images.dtype == np.uint8:
        out = images.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(images.dtype, np.floating):
        out = images.astype(np.float32)
        if np.isnan(out).any():
            raise ValueError(f"expected images without NaNs, got {int(np.isnan(out).sum())} NaNs")
        if out.size and (out.min() < 0.0 or out.max() > 1.0):
            raise ValueError(
                f"expected float images in [0, 1], got values in "
                f"[{float(out.min())}, {float(out.max())}]"
            )
    else:
        raise ValueError(f"expected uint8 or floating images, got dtype {images.dtype}")
    if out.ndim == 3:
        out = out[..., None]
    return out


def split_validation(
    images: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Splits off a random validation set, the same one for the same seed.

    Both parts keep the original order of the examples, so the split depends only on
    `(len(images), fraction, seed)`.

    Args:
      images: `(N, ...)` inputs.
      labels: `(N,)` labels.
      fraction: the share of examples that goes to validation, in (0, 1).
      seed: a non-negative integer.

    Returns:
      `(train_images, train_labels, val_images, val_labels)`, with
      `round(fraction * N)` validation examples.

    >>> x, y = np.arange(10), np.arange(10)
    >>> [len(a) for a in split_validation(x, y, 0.2, seed=0)]
    [8, 8, 2, 2]
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(
            f"expected as many labels as images, got {n} images and {len(labels)} labels"
        )
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"expected fraction in (0, 1), got {fraction}")
    n_val = int(round(fraction * n))
    if not 0 < n_val < n:
        raise ValueError(
            f"expected fraction={fraction} of {n} examples to leave both parts non-empty, "
            f"got {n_val} validation examples"
        )
    is_val = np.zeros(n, bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return images[~is_val], labels[~is_val], images[is_val], labels[is_val]


def keep_classes(
    images: np.ndarray, labels: np.ndarray, classes: list[int] | tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Keeps the examples of some classes and relabels them 0..k-1.

    The new label of class `classes[i]` is `i`, so a model trained on the subset and
    the held-out remainder (for open-set OOD) agree on what each output means.

    Args:
      images: `(N, ...)` inputs.
      labels: `(N,)` integer labels.
      classes: the distinct original class ids to keep, in the new order.

    Returns:
      `(images, labels)` of the kept examples, labels as int32 in [0, len(classes)).

    >>> x, y = np.arange(6), np.array([0, 1, 2, 0, 1, 2])
    >>> keep_classes(x, y, [2, 0])
    (array([0, 2, 3, 5]), array([1, 0, 1, 0], dtype=int32))
    """
    labels = check_labels(labels)
    if len(images) != len(labels):
        raise ValueError(
            f"expected as many labels as images, got {len(images)} images and {len(labels)} labels"
        )
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"expected a non-empty list of distinct classes, got {classes}")
    if min(classes) < 0:
        raise ValueError(f"expected non-negative class ids, got {classes}")
    lookup = np.full(max(int(labels.max(initial=0)), max(classes)) + 1, -1, np.int32)
    lookup[classes] = np.arange(len(classes), dtype=np.int32)
    new_labels = lookup[labels]
    keep = new_labels >= 0
    return images[keep], new_labels[keep]
