"""Out-of-distribution (OOD) suites built around an in-distribution test set.

A suite is a list of named `OODSet`s, each of one kind:

- "near": semantically close, e.g. classes held out of training (`split_held_out`)
  or CIFAR-100 for CIFAR-10;
- "far": unrelated data, e.g. handwritten digits, typeset letters and photographs
  (`far_ood_sets`) for Fashion-MNIST, SVHN for CIFAR-10;
- "corruption": in-distribution images under a corruption at a severity
  (`corruption_sets`); they keep their labels, so the same sets measure accuracy
  under covariate shift;
- "synthetic": noise and other generated images (`synthetic_sets`), and inverted
  in-distribution images (`inverted_set`).

`fmnist_suite` builds the default suite used on Fashion-MNIST here, from local data
only. `TFDS_SUITES` and `tfds_suite` describe the standard public OOD pairs, read
through a loader such as TFDS for users with a network.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.data.arrays import check_labels, keep_classes, to_float_images
from tac_jax.evaluate.ood.corruptions import CORRUPTIONS, low_frequency_noise
from tac_jax.evaluate.ood.far_sets import FAR_SETS

KINDS = ("near", "far", "corruption", "synthetic")
SYNTHETIC_NAMES = (
    "noise_uniform",
    "noise_gaussian",
    "constant",
    "blobs",
    "noise_low_frequency",
    "permuted_pixels",
)
# One or two corruptions per family (noise, blur, digital, weather, geometry), so
# three severities stay cheap to score on a laptop CPU.
FMNIST_CORRUPTIONS = (
    "gaussian_noise",
    "impulse_noise",
    "gaussian_blur",
    "contrast",
    "jpeg",
    "fog",
    "rotation",
)
# Pixels of the `blobs` set are on where the low-frequency field exceeds this.
_BLOB_THRESHOLD = 0.6
# Images of different sizes are resized in padded batches of this many, on canvases
# whose sides are multiples of _CANVAS_STEP, so few shapes are ever compiled.
_RESIZE_CHUNK = 16
_CANVAS_STEP = 64

Loader = Callable[[str, str], tuple[Any, np.ndarray]]


@dataclasses.dataclass(frozen=True, eq=False)
class OODSet:
    """A named set of inputs to score against the in-distribution test set.

    Attributes:
      name: a unique, file-name safe name, e.g. "gaussian_noise_s3".
      images: float32 `(N, H, W, C)` in [0, 1].
      kind: one of "near", "far", "corruption", "synthetic".
      labels: int32 `(N,)` in-distribution labels where they mean something
        (corruptions), else None.
    """

    name: str
    images: np.ndarray
    kind: str
    labels: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"expected kind in {KINDS}, got {self.kind!r}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(
                f"expected as many labels as images in {self.name!r}, got "
                f"{len(self.images)} images and {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.images)


def _rng(seed: int, name: str, *extra: int) -> np.random.Generator:
    """A generator per (seed, set name): sets do not depend on which others are built."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), *extra])


def split_held_out(
    images: np.ndarray,
    labels: np.ndarray,
    held_out: Sequence[int],
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, OODSet]:
    """Splits a labelled set into kept classes and held-out classes (open-set OOD).

    The kept classes are relabelled 0..k-1 in increasing order of their original id,
    so calling this on the training and on the test split with the same `held_out`
    gives the same mapping; the model is trained on the kept part.

    Args:
      images: `(N, ...)` inputs.
      labels: `(N,)` integer labels.
      held_out: the distinct original class ids to hold out.
      num_classes: the number of original classes; default `max(labels) + 1`.
        Pass it when a split may miss the last class.

    Returns:
      `(kept_images, kept_labels, ood)`: `kept_labels` int32 in [0, k), and `ood`
      the near-OOD `OODSet` "held_out" whose labels are the original class ids.

    >>> x, y = np.arange(6), np.array([0, 1, 2, 3, 1, 2])
    >>> kept_x, kept_y, ood = split_held_out(x, y, [1])
    >>> kept_y, ood.images
    (array([0, 1, 2, 1], dtype=int32), array([1, 4]))
    """
    labels = check_labels(labels)
    if len(images) != len(labels):
        raise ValueError(
            f"expected as many labels as images, got {len(images)} images and {len(labels)} labels"
        )
    num_classes = int(labels.max(initial=-1)) + 1 if num_classes is None else num_classes
    held = sorted({int(c) for c in held_out})
    if not held or held[0] < 0 or held[-1] >= num_classes or len(held) >= num_classes:
        raise ValueError(
            f"expected a non-empty proper subset of the classes 0..{num_classes - 1} "
            f"to hold out, got {list(held_out)}"
        )
    kept = [c for c in range(num_classes) if c not in held]
    kept_images, kept_labels = keep_classes(images, labels, kept)
    is_held = np.isin(labels, held)
    ood = OODSet("held_out", images[is_held], "near", labels=labels[is_held])
    return kept_images, kept_labels, ood


def corruption_sets(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
) -> list[OODSet]:
    """One set per (corruption, severity), named "<corruption>_s<severity>".

    Args:
      images: float `(N, H, W, C)` in [0, 1] (or uint8: see `to_float_images`).
      labels: `(N,)` labels, kept on every set for covariate-shift accuracy.
      corruptions: names from `CORRUPTIONS`; default all of them.
      severities: integers in 1..5.
      seed: the base seed; each set draws from its own stream.

    Returns:
      A list of "corruption" `OODSet`s, corruption-major, severities in the given order.

    >>> x = np.zeros((4, 28, 28, 1), np.float32)
    >>> [s.name for s in corruption_sets(x, corruptions=["contrast"], severities=[1, 5])]
    ['contrast_s1', 'contrast_s5']
    """
    images = to_float_images(images)
    labels = None if labels is None else check_labels(labels)
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"expected corruptions from {sorted(CORRUPTIONS)}, got {unknown}")
    sets = []
    for name in names:
        for severity in severities:
            out = CORRUPTIONS[name](images, severity, _rng(seed, name, int(severity)))
            sets.append(OODSet(f"{name}_s{severity}", out, "corruption", labels=labels))
    return sets


def synthetic_sets(images: np.ndarray, num: int | None = None, seed: int = 0) -> list[OODSet]:
    """Generated images of the in-distribution shape, one set per `SYNTHETIC_NAMES` entry.

    - noise_uniform: every value U(0, 1);
    - noise_gaussian: N(mean, std²) with the per-channel mean and std of `images`,
      clipped to [0, 1];
    - constant: one U(0, 1) value per image and channel;
    - blobs: binary shapes, low-frequency noise above 0.6;
    - noise_low_frequency: the smooth noise itself (`low_frequency_noise`);
    - permuted_pixels: in-distribution images with their pixel positions shuffled
      (one permutation per image, shared by its channels): the intensity histogram
      is kept, the structure destroyed.

    Args:
      images: float `(N, H, W, C)` in-distribution images in [0, 1] (or uint8).
      num: images per set; default N. permuted_pixels cycles through `images`.
      seed: the base seed.

    Returns:
      A list of "synthetic" `OODSet`s without labels.
    """
    images = to_float_images(images)
    n = len(images) if num is None else int(num)
    if n <= 0 or not len(images):
        raise ValueError(f"expected at least one image and num > 0, got {len(images)} and {num}")
    shape = (n, *images.shape[1:])
    mean, std = images.mean(axis=(0, 1, 2)), images.std(axis=(0, 1, 2))
    made = {
        "noise_uniform": _rng(seed, "noise_uniform").random(shape),
        "noise_gaussian": _rng(seed, "noise_gaussian").normal(mean, std, shape),
        "constant": np.broadcast_to(_rng(seed, "constant").random((n, 1, 1, shape[-1])), shape),
        "blobs": low_frequency_noise(_rng(seed, "blobs"), shape) > _BLOB_THRESHOLD,
        "noise_low_frequency": low_frequency_noise(_rng(seed, "noise_low_frequency"), shape),
        "permuted_pixels": _permute_pixels(images[np.arange(n) % len(images)], seed),
    }
    return [
        OODSet(name, np.clip(made[name], 0.0, 1.0).astype(np.float32), "synthetic")
        for name in SYNTHETIC_NAMES
    ]


def _permute_pixels(images: np.ndarray, seed: int) -> np.ndarray:
    n, h, w, c = images.shape
    # argsort of random keys: an independent permutation per image, vectorised.
    order = np.argsort(_rng(seed, "permuted_pixels").random((n, h * w)), axis=1)
    flat = images.reshape(n, h * w, c)
    return np.take_along_axis(flat, order[..., None], axis=1).reshape(images.shape)


def far_ood_sets(
    num: int, *, seed: int = 0, part: str = "test", like: np.ndarray | None = None
) -> list[OODSet]:
    """The three far-OOD sets of `tac_jax.evaluate.ood.far_sets` (handwritten digits, typeset
    letters, photograph crops), ``num`` images each at most, of ``part`` ``"test"`` or
    ``"validation"`` (disjoint), brought to the size and channels of ``like``'s images.

    >>> [s.name for s in far_ood_sets(4)]
    ['digits', 'glyphs', 'photos']
    """
    sets = []
    for name, build in FAR_SETS.items():
        images = build(num, seed=seed, part=part)
        if like is not None:
            like = to_float_images(np.asarray(like[:1]))
            images = match_images(images, *like.shape[1:4])
        sets.append(OODSet(name, images, "far"))
    return sets


def inverted_set(images: np.ndarray) -> OODSet:
    """The synthetic set "inverted": `1 − x`, white objects turned dark on light.

    Args:
      images: float `(N, H, W, C)` in [0, 1] (or uint8).

    Returns:
      A "synthetic" `OODSet` without labels (a transform of the in-distribution
      images, so not counted as far-OOD).
    """
    images = to_float_images(images)
    return OODSet("inverted", 1.0 - images, "synthetic")


def fmnist_suite(
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    num: int = 2000,
    severities: Sequence[int] = (1, 3, 5),
    corruptions: Sequence[str] | None = None,
    seed: int = 0,
    far_part: str = "test",
) -> list[OODSet]:
    """The default OOD suite on Fashion-MNIST, from local data only.

    A random subset of `num` test images (the same for every set) gives, in order:
    the three far sets of `far_ood_sets` (digits, glyphs, photos: ``far_part`` of them),
    the six `synthetic_sets` (`SYNTHETIC_NAMES`), the synthetic set "inverted", and one
    "<corruption>_s<severity>" set per corruption and severity; the corruptions
    default to `FMNIST_CORRUPTIONS` (gaussian_noise, impulse_noise, gaussian_blur,
    contrast, jpeg, fog, rotation), so 3 + 6 + 1 + 7·3 = 31 sets of at most `num`
    images. Held-out classes need a model trained without them: see `split_held_out`.

    Args:
      x_test: uint8 `(N, 28, 28)` or float `(N, 28, 28, 1)` test images.
      y_test: `(N,)` test labels (kept on the corruption sets).
      num: images per set (all N if N is smaller).
      severities: corruption severities, integers in 1..5.
      corruptions: corruption names; default `FMNIST_CORRUPTIONS`.
      seed: selects the subset and seeds every set.
      far_part: ``"test"`` or ``"validation"``: which disjoint part of the far sets.

    Returns:
      The list of `OODSet`s.
    """
    images, labels = to_float_images(x_test), check_labels(y_test)
    if len(images) != len(labels):
        raise ValueError(
            f"expected as many labels as images, got {len(images)} images and {len(labels)} labels"
        )
    if num <= 0:
        raise ValueError(f"expected num > 0, got {num}")
    if num < len(images):
        pick = np.sort(_rng(seed, "subset").choice(len(images), num, replace=False))
        images, labels = images[pick], labels[pick]
    names = FMNIST_CORRUPTIONS if corruptions is None else corruptions
    return [
        *far_ood_sets(num, seed=seed, part=far_part, like=images),
        *synthetic_sets(images, seed=seed),
        inverted_set(images),
        *corruption_sets(images, labels, corruptions=names, severities=severities, seed=seed),
    ]


def match_images(images: Any, height: int, width: int, channels: int) -> np.ndarray:
    """Brings images of another dataset to the in-distribution size and channels.

    Resizes with `jax.image` (bilinear, antialiased when shrinking) and converts
    grayscale → RGB by repeating the channel, RGB → grayscale with the ITU-R 601
    luma weights (0.299, 0.587, 0.114); an alpha channel is dropped.

    Args:
      images: uint8 or float in [0, 1], `(N, H, W)` or `(N, H, W, C)`, or a sequence
        of `(H, W)` / `(H, W, C)` images, possibly of different sizes.
      height: the target height.
      width: the target width.
      channels: 1 or 3.

    Returns:
      float32 `(N, height, width, channels)` in [0, 1].

    >>> match_images(np.zeros((2, 32, 32, 3), np.uint8), 28, 28, 1).shape
    (2, 28, 28, 1)
    """
    if channels not in (1, 3):
        raise ValueError(f"expected channels in (1, 3), got {channels}")
    if not isinstance(images, np.ndarray | jax.Array):
        images = [to_float_images(np.asarray(image)[None])[0] for image in images]
        if not images:
            raise ValueError("expected at least one image, got none")
        if len({image.shape for image in images}) > 1:
            images = [_convert_channels(image, channels) for image in images]
            return np.clip(_resize_ragged(images, height, width), 0.0, 1.0)
    x = to_float_images(np.asarray(images))
    if x.shape[-1] != 1 or channels == 1:
        # Convert before resizing unless that triples the data.
        x = _convert_channels(x, channels)
    if x.shape[1:3] != (height, width):
        shape = (len(x), height, width, x.shape[-1])
        x = np.asarray(jax.image.resize(jnp.asarray(x), shape, method="linear"))
    return np.clip(_convert_channels(x, channels), 0.0, 1.0).astype(np.float32)


def _convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.shape[-1] not in (1, 3):
        raise ValueError(f"expected images with 1, 3 or 4 channels, got {x.shape[-1]}")
    if x.shape[-1] == 3 and channels == 1:
        return x @ np.array([[0.299], [0.587], [0.114]], np.float32)
    if x.shape[-1] == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    return x


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _resize_on_canvas(canvas: jax.Array, sizes: jax.Array, height: int, width: int) -> jax.Array:
    """Resizes the top-left `sizes[i]` corner of each zero-padded canvas.

    The last channel is a mask of ones over the image. Kernel weights are
    normalised over the whole canvas; dividing by the resized mask normalises them
    over the image alone, which is what `jax.image.resize` does at the borders.
    """

    def one(image: jax.Array, size: jax.Array) -> jax.Array:
        scale = jnp.array([height, width], jnp.float32) / size
        shape = (height, width, image.shape[-1])
        return jax.image.scale_and_translate(
            image, shape, (0, 1), scale, jnp.zeros(2), method="linear"
        )

    out = jax.vmap(one)(canvas, sizes)
    return out[..., :-1] / jnp.maximum(out[..., -1:], 1e-12)


def _resize_ragged(images: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Resizes images of different sizes with one compilation per canvas size.

    `jax.image.resize` compiles once per input shape, which for thousands of
    differently sized images (dtd) costs far more than the resizing itself.
    """
    channels = images[0].shape[-1]
    canvas_h = -(-max(image.shape[0] for image in images) // _CANVAS_STEP) * _CANVAS_STEP
    canvas_w = -(-max(image.shape[1] for image in images) // _CANVAS_STEP) * _CANVAS_STEP
    out = []
    for start in range(0, len(images), _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK]
        canvas = np.zeros((_RESIZE_CHUNK, canvas_h, canvas_w, channels + 1), np.float32)
        sizes = np.ones((_RESIZE_CHUNK, 2), np.float32)
        for i, image in enumerate(chunk):
            h, w = image.shape[:2]
            canvas[i, :h, :w, :channels] = image
            canvas[i, :h, :w, channels] = 1.0
            sizes[i] = h, w
        resized = _resize_on_canvas(jnp.asarray(canvas), jnp.asarray(sizes), height, width)
        out.append(np.asarray(resized)[: len(chunk)])
    return np.concatenate(out)


class TfdsOOD(NamedTuple):
    """One OOD set of a public benchmark, as TFDS names it."""

    name: str
    tfds_name: str
    split: str
    kind: str
    note: str


# In-distribution TFDS name → (height, width, channels) of its images.
TFDS_SHAPES = {"cifar10": (32, 32, 3), "mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1)}
TFDS_SUITES: dict[str, list[TfdsOOD]] = {
    "cifar10": [
        TfdsOOD("svhn", "svhn_cropped", "test", "far", "32×32 RGB digits: no resize"),
        TfdsOOD("cifar100", "cifar100", "test", "near", "32×32 RGB: no resize"),
        TfdsOOD("textures", "dtd", "test", "far", "RGB of varying size: resize to 32×32"),
        TfdsOOD(
            "places365", "places365_small", "validation", "far", "256×256 RGB: resize to 32×32"
        ),
    ],
    "mnist": [
        TfdsOOD("fashion_mnist", "fashion_mnist", "test", "far", "28×28 grayscale: no resize"),
        TfdsOOD("kmnist", "kmnist", "test", "far", "28×28 grayscale: no resize"),
    ],
    "fashion_mnist": [
        TfdsOOD("mnist", "mnist", "test", "far", "28×28 grayscale: no resize"),
        TfdsOOD("kmnist", "kmnist", "test", "far", "28×28 grayscale: no resize"),
    ],
}


def load_tfds_images(
    name: str, split: str, data_dir: str | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Reads a TFDS split as a list of images, which may differ in size (dtd).

    Args:
      name: the TFDS name.
      split: a TFDS split, slices included ("test[:2000]").
      data_dir: where TFDS keeps its data; default `$TFDS_DATA_DIR` or
        `~/tensorflow_datasets`.

    Returns:
      `(images, labels)`: a list of uint8 `(H, W, C)` arrays and int labels.

    Raises:
      ImportError: if tensorflow-datasets is not installed.
      FileNotFoundError: if the split is neither on disk nor downloadable.
    """
    from tac_jax.data.tfds import import_tfds

    tfds = import_tfds()
    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
        source = tfds.data_source(name, split=split, **({"data_dir": data_dir} if data_dir else {}))
        examples = [source[i] for i in range(len(source))]
    except Exception as error:  # TFDS says "missing" as KeyError, ValueError, download errors…
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise FileNotFoundError(
            f"expected the TFDS dataset {name!r} ({split}) in {where} or a network to "
            f"download it, got {type(error).__name__}: {reason}"
        ) from error
    labels = np.asarray([ex["label"] for ex in examples])
    return [np.asarray(ex["image"]) for ex in examples], labels


def tfds_suite(name: str, *, load: Loader | None = None, num: int | None = 2000) -> list[OODSet]:
    """The standard OOD sets of an in-distribution TFDS dataset (see `TFDS_SUITES`).

    Args:
      name: the in-distribution dataset, a key of `TFDS_SUITES`.
      load: `load(tfds_name, split) -> (images, labels)`; images as an array or a
        list of images of any size, uint8 or float in [0, 1]. Default
        `load_tfds_images` (needs tensorflow-datasets and, the first time, a network).
      num: read only the first `num` examples of each split (a TFDS slice
        "split[:num]"), which keeps places365's 36,500 validation images of
        256×256 out of memory; these splits are not sorted by class. None reads all.

    Returns:
      One `OODSet` per entry, matched to the in-distribution shape (`match_images`),
      without labels.

    >>> fake = lambda name, split: (np.zeros((3, 32, 32, 3), np.uint8), np.zeros(3, int))
    >>> [(s.name, s.images.shape) for s in tfds_suite("mnist", load=fake)]
    [('fashion_mnist', (3, 28, 28, 1)), ('kmnist', (3, 28, 28, 1))]
    """
    if name not in TFDS_SUITES:
        raise ValueError(
            f"expected an in-distribution dataset in {sorted(TFDS_SUITES)}, got {name!r}"
        )
    load = load_tfds_images if load is None else load
    height, width, channels = TFDS_SHAPES[name]
    sets = []
    for spec in TFDS_SUITES[name]:
        split = spec.split if num is None else f"{spec.split}[:{int(num)}]"
        images, _ = load(spec.tfds_name, split)
        sets.append(OODSet(spec.name, match_images(images, height, width, channels), spec.kind))
    return sets
