"""Fashion-MNIST from local IDX files (Debian's `dataset-fashion-mnist` or any copy)."""

from __future__ import annotations

import os

import numpy as np

from tac_jax.data.arrays import load_labeled

ENV_VAR = "TAC_JAX_FMNIST_DIR"
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_SIZES = {"train": 60000, "test": 10000}

_HOW_TO_GET = (
    "install it with `apt-get update && apt-get install -y dataset-fashion-mnist` "
    f"(as root; it installs into {DEFAULT_DIR}), or put the four IDX files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    f"t10k-labels-idx1-ubyte.gz) in a directory and set {ENV_VAR} to it"
)


def fashion_mnist_dir(data_dir: str | os.PathLike | None = None) -> str:
    """Resolves the directory that holds the Fashion-MNIST IDX files.

    Args:
      data_dir: an explicit directory. If None, the environment variable
        `TAC_JAX_FMNIST_DIR`, then `/usr/share/datasets/fashion-mnist`.

    Returns:
      The directory, which is not checked for the files (`load_fashion_mnist` is).

    >>> fashion_mnist_dir("/data/fmnist")
    '/data/fmnist'
    """
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get(ENV_VAR) or DEFAULT_DIR


def _find(directory: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"expected Fashion-MNIST file {stem}.gz (or {stem}) in {directory}, got no such "
        f"file; {_HOW_TO_GET}"
    )


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split of Fashion-MNIST.

    Args:
      split: "train" (60000 examples) or "test" (10000 examples).
      data_dir: the directory of the IDX files; see `fashion_mnist_dir`.

    Returns:
      `(images, labels)`: uint8 `(N, 28, 28)` and int32 `(N,)` in [0, 10).

    Raises:
      FileNotFoundError: if the files are missing; the message says how to get them.
      ValueError: on an unknown split or malformed files.
    """
    if split not in _FILES:
        raise ValueError(f"expected split in {sorted(_FILES)}, got {split!r}")
    directory = fashion_mnist_dir(data_dir)
    images_stem, labels_stem = _FILES[split]
    images, labels = load_labeled(_find(directory, images_stem), _find(directory, labels_stem))
    if images.shape != (_SIZES[split], 28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images of shape {(_SIZES[split], 28, 28)} for the {split} split, "
            f"got {images.dtype} {images.shape} in {directory}"
        )
    return images, labels
