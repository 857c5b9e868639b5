"""Random image augmentations as pure, jittable JAX functions.

Each function takes one image `(H, W, C)`, floating point in [0, 1], and returns an
image of the same shape and range; the random ones take a PRNG key first. Batches go
through `augment_batch`, which gives every example its own key. They are meant to
run inside the jitted train step, on the accelerator, so the host only gathers
indices and never becomes the bottleneck.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]

# Levels of the MNIST noise in the TAC authors' training code: their list also holds
# 0.5, but their sampler never draws the last entry, so 0.1-0.4 is what they train on.
MNIST_NOISE_LEVELS = (0.1, 0.2, 0.3, 0.4)


def _check_image(image: jax.Array) -> None:
    if image.ndim != 3:
        raise ValueError(f"expected one image of rank 3 (H, W, C), got shape {image.shape}")


def _resample(
    image: jax.Array, rows: jax.Array, cols: jax.Array, mode: str, cval: float = 0.0
) -> jax.Array:
    """Bilinear sampling of every channel at fractional source coordinates."""

    def channel(plane: jax.Array) -> jax.Array:
        return map_coordinates(plane, [rows, cols], order=1, mode=mode, cval=cval)

    out = jax.vmap(channel, in_axes=-1, out_axes=-1)(image)
    # Bilinear weights sum to one only up to rounding; keep the [0, 1] promise exact.
    return jnp.clip(out, 0.0, 1.0).astype(image.dtype)


def resized_crop(
    image: jax.Array, top: jax.Array, left: jax.Array, height: jax.Array, width: jax.Array
) -> jax.Array:
    """Crops a (fractional) box and resizes it bilinearly to the input size.

    Args:
      image: `(H, W, C)` in [0, 1].
      top, left: the box's corner, in pixels.
      height, width: the box's size, in pixels.

    Returns:
      `(H, W, C)`; the full box `(0, 0, H, W)` gives back `image`.
    """
    _check_image(image)
    h, w = image.shape[:2]
    # Pixel centres of the output mapped to the box (align_corners=False convention).
    rows = top + (jnp.arange(h) + 0.5) * (height / h) - 0.5
    cols = left + (jnp.arange(w) + 0.5) * (width / w) - 0.5
    grid_rows, grid_cols = jnp.meshgrid(rows, cols, indexing="ij")
    return _resample(image, grid_rows, grid_cols, mode="nearest")


def random_resized_crop(
    key: jax.Array,
    image: jax.Array,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jax.Array:
    """Crops a random box and resizes it back to the input size.

    The box covers a fraction of the area drawn from U(scale), with an aspect ratio
    (width / height) drawn log-uniformly from `ratio`. A box that would not fit is
    clipped to the image instead of redrawn, which keeps the function jittable.

    Args:
      key: a PRNG key.
      image: `(H, W, C)` in [0, 1].
      scale: the range of the box's share of the image area.
      ratio: the range of the box's aspect ratio.

    Returns:
      `(H, W, C)` in [0, 1].

    >>> image = jnp.ones((28, 28, 1))
    >>> random_resized_crop(jax.random.key(0), image).shape
    (28, 28, 1)
    """
    _check_image(image)
    h, w = image.shape[:2]
    # One draw for all four numbers: every random call compiles its own hash kernel.
    u = jax.random.uniform(key, (4,))
    area = (scale[0] + u[0] * (scale[1] - scale[0])) * h * w
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = jnp.exp(log_low + u[1] * (log_high - log_low))
    height = jnp.clip(jnp.sqrt(area / aspect), 1.0, h)
    width = jnp.clip(jnp.sqrt(area * aspect), 1.0, w)
    top = u[2] * (h - height)
    left = u[3] * (w - width)
    return resized_crop(image, top, left, height, width)


def rotate(image: jax.Array, degrees: jax.Array | float, fill: float = 0.0) -> jax.Array:
    """Rotates an image counter-clockwise about its centre, bilinearly.

    Args:
      image: `(H, W, C)` in [0, 1].
      degrees: the angle; positive turns counter-clockwise as displayed (row 0 on
        top), like `np.rot90` for 90.
      fill: the value of pixels rotated in from outside the image.

    Returns:
      `(H, W, C)` in [0, 1].

    >>> image = jnp.zeros((3, 3, 1)).at[1, 2, 0].set(1.0)
    >>> float(rotate(image, 90.0)[0, 1, 0])
    1.0
    """
    _check_image(image)
    h, w = image.shape[:2]
    theta = jnp.deg2rad(degrees)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    y, x = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2, indexing="ij")
    # Inverse map: each output pixel reads the source point rotated back by -theta
    # (rows grow downwards, hence the signs).
    src_x = cos * x - sin * y + (w - 1) / 2
    src_y = sin * x + cos * y + (h - 1) / 2
    return _resample(image, src_y, src_x, mode="constant", cval=fill)


def random_rotation(
    key: jax.Array, image: jax.Array, max_degrees: float = 30.0, fill: float = 0.0
) -> jax.Array:
    """Rotates by an angle drawn from U(-max_degrees, max_degrees).

    Args:
      key: a PRNG key.
      image: `(H, W, C)` in [0, 1].
      max_degrees: the largest rotation either way.
      fill: the value of pixels rotated in from outside the image.

    Returns:
      `(H, W, C)` in [0, 1].
    """
    degrees = jax.random.uniform(key, minval=-max_degrees, maxval=max_degrees)
    return rotate(image, degrees, fill)


def uniform_noise(key: jax.Array, image: jax.Array, amplitude: float | jax.Array) -> jax.Array:
    """Adds noise drawn from U(0, amplitude) to every pixel, then clips to [0, 1].

    The noise is non-negative, as in the TAC authors' MNIST pipeline: it brightens
    the background rather than centring on the clean image.

    Args:
      key: a PRNG key.
      image: `(H, W, C)` in [0, 1].
      amplitude: the noise's upper bound.

    Returns:
      `(H, W, C)` in [0, 1].
    """
    _check_image(image)
    noise = jax.random.uniform(key, image.shape, image.dtype) * amplitude
    return jnp.clip(image + noise, 0.0, 1.0)


def random_uniform_noise(
    key: jax.Array,
    image: jax.Array,
    levels: tuple[float, ...] = MNIST_NOISE_LEVELS,
    prob: float = 0.5,
) -> jax.Array:
    """With probability `prob`, adds `uniform_noise` at a level drawn from `levels`.

    Args:
      key: a PRNG key.
      image: `(H, W, C)` in [0, 1].
      levels: the amplitudes to choose from, uniformly.
      prob: the probability of adding noise at all.

    Returns:
      `(H, W, C)` in [0, 1].
    """
    _check_image(image)
    # One draw covers the coin, the level and the noise: each random call compiles
    # its own hash kernel, and compiling is what costs on CPU.
    u = jax.random.uniform(key, (image.size + 2,), image.dtype)
    index = jnp.minimum((u[1] * len(levels)).astype(jnp.int32), len(levels) - 1)
    amplitude = jnp.asarray(levels, image.dtype)[index]
    noisy = jnp.clip(image + u[2:].reshape(image.shape) * amplitude, 0.0, 1.0)
    return jnp.where(u[0] < prob, noisy, image)


def horizontal_flip(image: jax.Array) -> jax.Array:
    """Mirrors an `(H, W, C)` image left to right."""
    _check_image(image)
    return image[:, ::-1, :]


def random_horizontal_flip(key: jax.Array, image: jax.Array, prob: float = 0.5) -> jax.Array:
    """Mirrors the image left to right with probability `prob`.

    Args:
      key: a PRNG key.
      image: `(H, W, C)`.
      prob: the probability of flipping.

    Returns:
      `(H, W, C)`.
    """
    return jnp.where(jax.random.bernoulli(key, prob), horizontal_flip(image), image)


def pad_and_random_crop(key: jax.Array, image: jax.Array, padding: int = 4) -> jax.Array:
    """Zero-pads every side by `padding` pixels and crops back a random window.

    Args:
      key: a PRNG key.
      image: `(H, W, C)`.
      padding: pixels added on each side; the shift is at most this much.

    Returns:
      `(H, W, C)`: `image` shifted by up to `padding` pixels, zeros shifted in.
    """
    _check_image(image)
    h, w, c = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    top, left = jax.random.randint(key, (2,), 0, 2 * padding + 1)
    return jax.lax.dynamic_slice(padded, (top, left, 0), (h, w, c))


def mnist_augment(key: jax.Array, image: jax.Array) -> jax.Array:
    """The TAC MNIST training augmentation (METHODS §1).

    A random resized crop (area 0.5-1, aspect 3/4-4/3), a rotation of up to ±30°
    (zeros rotated in), then, half of the time, non-negative uniform noise of
    amplitude 0.1-0.4.

    Args:
      key: a PRNG key.
      image: `(H, W, C)` in [0, 1].

    Returns:
      `(H, W, C)` in [0, 1].
    """
    k_crop, k_rotate, k_noise = jax.random.split(key, 3)
    image = random_resized_crop(k_crop, image)
    image = random_rotation(k_rotate, image, 30.0)
    return random_uniform_noise(k_noise, image)


def cifar_augment(key: jax.Array, image: jax.Array) -> jax.Array:
    """The standard CIFAR training augmentation: a random flip and a 4-pixel shift.

    The TAC authors use a flip and RandAugment ("rand-m20-n2-mstd0.5"); RandAugment
    is not implemented here and the pad-and-crop shift stands in for it.

    Args:
      key: a PRNG key.
      image: `(H, W, C)` in [0, 1].

    Returns:
      `(H, W, C)` in [0, 1].
    """
    k_flip, k_crop = jax.random.split(key)
    return pad_and_random_crop(k_crop, random_horizontal_flip(k_flip, image), 4)


def augment_batch(key: jax.Array, images: jax.Array, fn: AugmentFn) -> jax.Array:
    """Applies a per-image augmentation to a batch, with one key per example.

    Args:
      key: a PRNG key, split into one independent key per example.
      images: `(N, H, W, C)`.
      fn: `fn(key, image) -> image`, e.g. `mnist_augment`.

    Returns:
      `(N, H, W, C)`.

    >>> images = jnp.zeros((4, 28, 28, 1))
    >>> augment_batch(jax.random.key(0), images, mnist_augment).shape
    (4, 28, 28, 1)
    """
    if images.ndim != 4:
        raise ValueError(f"expected images of rank 4 (N, H, W, C), got shape {images.shape}")
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(fn)(keys, images)
