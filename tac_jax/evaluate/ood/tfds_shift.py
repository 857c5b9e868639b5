"""CIFAR-10-C (Hendrycks & Dietterich, 2019) read through TFDS as labelled "corruption"
OOD sets, what `tac_jax.evaluate.reporting.shift` regroups by corruption and severity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tac_jax.data.arrays import check_labels, to_float_images
from tac_jax.evaluate.ood.suites import Loader, OODSet, load_tfds_images

SEVERITIES = (1, 2, 3, 4, 5)
# The 15 benchmark corruptions of CIFAR-10-C and its 4 extra ones, as TFDS names them.
CIFAR10_C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "frosted_glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic",
    "pixelate", "jpeg_compression", "gaussian_blur", "saturate", "spatter", "speckle_noise",
)  # fmt: skip


def _as_array(images: Any) -> np.ndarray:
    if isinstance(images, np.ndarray):
        return images
    images = [np.asarray(image) for image in images]
    if len({image.shape for image in images}) > 1:
        raise ValueError("expected images of one size, got images of several sizes")
    return np.stack(images) if images else np.zeros((0, 1, 1, 1), np.float32)


def tfds_corruption_sets(
    name: str = "cifar10_corrupted",
    *,
    corruptions: Sequence[str],
    severities: Sequence[int] = SEVERITIES,
    split: str = "test",
    num: int | None = 2000,
    load: Loader | None = None,
    seed: int = 0,
) -> list[OODSet]:
    """Corrupted test sets read through TFDS (CIFAR-10-C), as labelled OOD sets.

    TFDS names each (corruption, severity) a config: "cifar10_corrupted/fog_3".

    Args:
      name: the TFDS dataset.
      corruptions: corruption names (`CIFAR10_C_CORRUPTIONS` for cifar10_corrupted).
      severities: integers in 1..5.
      split: the split to read.
      num: examples kept per set, drawn without replacement by a generator of
        ``seed`` (the same indices for every set of the same size); None keeps all.
      load: ``load(full_name, split) -> (images, labels)``; default
        `tac_jax.evaluate.ood.suites.load_tfds_images` (needs tensorflow-datasets and, the
        first time, a network).
      seed: the subsampling seed.

    Returns:
      "corruption" `OODSet`s named "<corruption>_s<k>", corruption-major, with float32
      images in [0, 1] and int32 labels.

    >>> fake = lambda name, split: (np.zeros((5, 32, 32, 3), np.uint8), np.arange(5))
    >>> sets = tfds_corruption_sets(corruptions=["fog"], severities=[1, 3], num=2, load=fake)
    >>> [(s.name, s.images.shape, s.labels.dtype.name) for s in sets]
    [('fog_s1', (2, 32, 32, 3), 'int32'), ('fog_s3', (2, 32, 32, 3), 'int32')]
    """
    names = [corruptions] if isinstance(corruptions, str) else list(corruptions)
    if not names:
        raise ValueError("expected at least one corruption, got none")
    if name == "cifar10_corrupted":
        unknown = [c for c in names if c not in CIFAR10_C_CORRUPTIONS]
        if unknown:
            raise ValueError(f"expected corruptions from {CIFAR10_C_CORRUPTIONS}, got {unknown}")
    bad = [s for s in severities if isinstance(s, bool) or s not in SEVERITIES]
    if bad or not len(severities):
        raise ValueError(f"expected severities in {SEVERITIES}, got {list(severities)}")
    if num is not None and num <= 0:
        raise ValueError(f"expected num > 0 or None, got {num}")
    load = load_tfds_images if load is None else load
    sets = []
    for corruption in names:
        for severity in severities:
            images, labels = load(f"{name}/{corruption}_{int(severity)}", split)
            x, y = to_float_images(_as_array(images)), check_labels(labels)
            if len(x) != len(y):
                raise ValueError(
                    f"expected as many labels as images, got {len(x)} images and {len(y)} labels"
                )
            if num is not None and num < len(x):
                pick = np.sort(np.random.default_rng(seed).choice(len(x), num, replace=False))
                x, y = x[pick], y[pick]
            sets.append(OODSet(f"{corruption}_s{int(severity)}", x, "corruption", labels=y))
    return sets
