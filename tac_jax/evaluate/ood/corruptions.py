"""Image corruptions at five severities, for covariate-shift and OOD evaluation.

In the spirit of ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich, 2019) and MNIST-C
(Mu & Gilmer, 2019), with parameters chosen for small (28-32 pixel) images. Every
corruption is a pure NumPy function `fn(images, severity, rng)` on float images
`(N, H, W, C)` in [0, 1]; it returns an array of the same shape and dtype, clipped
to [0, 1], and depends on nothing but its arguments (randomness comes from `rng`, a
`np.random.Generator`). `corrupt` runs one by name with an integer seed.

Severity parameters (`SEVERITY_PARAMS`, severity 1 → 5):

=================  ==========================================  ===============================
name               parameter                                   values
=================  ==========================================  ===============================
gaussian_noise     std of additive N(0, std²)                  0.08, 0.12, 0.18, 0.26, 0.38
shot_noise         photons at full intensity, Poisson(λx)/λ    60, 25, 12, 5, 3
impulse_noise      salt-and-pepper share of values             0.03, 0.06, 0.09, 0.17, 0.27
gaussian_blur      Gaussian sigma, pixels                      0.5, 0.75, 1.0, 1.5, 2.0
motion_blur        line length, pixels (random angle)          3, 5, 7, 9, 11
contrast           factor towards the image mean               0.4, 0.3, 0.2, 0.1, 0.05
brightness         added to HSV value (hue, saturation kept)   0.1, 0.2, 0.3, 0.4, 0.5
pixelate           linear resolution kept (block averages)     0.6, 0.5, 0.4, 0.3, 0.25
jpeg               JPEG quality (Pillow)                       80, 60, 40, 25, 10
rotation           degrees, sign random per image              10, 20, 30, 45, 60
shift              translation, share of the image size        0.05, 0.1, 0.15, 0.2, 0.25
zoom               zoom-in factor about the centre             1.1, 1.2, 1.35, 1.5, 1.7
elastic            RMS displacement, pixels (smoothing σ = 4)  0.5, 1.0, 1.5, 2.0, 2.5
fog                weight of low-frequency noise               0.4, 0.6, 0.9, 1.3, 2.0
=================  ==========================================  ===============================

Geometric corruptions (rotation, shift, zoom) fill uncovered pixels with 0, the
background of MNIST-like data; the models of the TAC paper train with ±30° rotations,
so rotation at severities 1-3 is within their augmentation.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

SEVERITY_PARAMS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "motion_blur": (3, 5, 7, 9, 11),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg": (80, 60, 40, 25, 10),
    "rotation": (10, 20, 30, 45, 60),
    "shift": (0.05, 0.1, 0.15, 0.2, 0.25),
    "zoom": (1.1, 1.2, 1.35, 1.5, 1.7),
    "elastic": (0.5, 1.0, 1.5, 2.0, 2.5),
    "fog": (0.4, 0.6, 0.9, 1.3, 2.0),
}
ELASTIC_SIGMA = 4.0
# Grid sizes and relative weights of the octaves of `low_frequency_noise`.
_OCTAVES = ((2, 1.0), (4, 0.5), (8, 0.25))


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images of rank 4 (N, H, W, C), got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"expected floating-point images in [0, 1], got dtype {images.dtype}")
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise ValueError(
            f"expected images in [0, 1], got values in [{images.min()}, {images.max()}]"
        )
    return images


def _param(name: str, severity: int) -> float:
    if (
        not isinstance(severity, (int, np.integer))
        or isinstance(severity, bool)
        or not 1 <= severity <= 5
    ):
        raise ValueError(f"expected a severity in 1..5, got {severity}")
    return SEVERITY_PARAMS[name][int(severity) - 1]


def _finish(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.clip(out, 0.0, 1.0).astype(like.dtype)


def _per_channel(images: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Applies `fn` to the `(N, H, W)` stack of every channel."""
    return np.stack([fn(images[..., c]) for c in range(images.shape[-1])], axis=-1)


def _warp(images: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear sampling of each image at per-image source coordinates `(N, H, W)`."""
    batch = np.broadcast_to(np.arange(len(images))[:, None, None], rows.shape)
    coords = np.stack([batch, rows, cols]).astype(np.float64)
    # The batch coordinate is integral, so order=1 never mixes two images.
    return _per_channel(
        images, lambda plane: ndimage.map_coordinates(plane, coords, order=1, mode=mode, cval=0.0)
    )


def _centred_grid(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = images.shape[1:3]
    return np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")


def _bilinear_matrix(size: int, grid: int) -> np.ndarray:
    """`(size, grid)` weights that stretch `grid` samples linearly over `size` pixels."""
    pos = np.linspace(0.0, grid - 1, size)
    low = np.minimum(np.floor(pos).astype(int), grid - 2)
    frac = pos - low
    matrix = np.zeros((size, grid))
    matrix[np.arange(size), low] = 1.0 - frac
    matrix[np.arange(size), low + 1] = frac
    return matrix


def low_frequency_noise(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Smooth random fields: uniform noise on coarse grids (2, 4, 8 cells), upsampled.

    Octaves are weighted 1, 1/2, 1/4 and each field is rescaled to span [0, 1].

    Args:
      rng: the source of randomness.
      shape: `(N, H, W, C)`; every image and channel gets its own field.

    Returns:
      A float64 array of `shape` with values in [0, 1].

    >>> low_frequency_noise(np.random.default_rng(0), (2, 28, 28, 1)).shape
    (2, 28, 28, 1)
    """
    n, h, w, c = shape
    field = np.zeros((n, h, w, c))
    for grid, weight in _OCTAVES:
        coarse = rng.random((n, grid + 1, grid + 1, c))
        rows, cols = _bilinear_matrix(h, grid + 1), _bilinear_matrix(w, grid + 1)
        field += weight * np.einsum("hi,nijc,wj->nhwc", rows, coarse, cols, optimize=True)
    low = field.min(axis=(1, 2), keepdims=True)
    high = field.max(axis=(1, 2), keepdims=True)
    return (field - low) / np.maximum(high - low, 1e-12)


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Adds N(0, std²) to every value; std from `SEVERITY_PARAMS["gaussian_noise"]`."""
    x, std = _check_images(images), _param("gaussian_noise", severity)
    return _finish(x + rng.normal(0.0, std, x.shape), x)


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (photon) noise: `Poisson(λ·x) / λ`, so dark pixels are noisier in relative terms."""
    x, lam = _check_images(images), _param("shot_noise", severity)
    return _finish(rng.poisson(x * lam) / lam, x)


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a share of the values set to 0 or 1 (half each)."""
    x, amount = _check_images(images), _param("impulse_noise", severity)
    u = rng.random(x.shape)
    return _finish(np.where(u < amount / 2, 0.0, np.where(u > 1 - amount / 2, 1.0, x)), x)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur over height and width (reflecting borders)."""
    del rng  # deterministic
    x, sigma = _check_images(images), _param("gaussian_blur", severity)
    return _finish(ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect"), x)


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """A normalised `(length, length)` kernel along a centred line at `angle` radians."""
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 8 * length)
    centre = (length - 1) / 2
    rows = np.rint(centre - t * np.sin(angle)).astype(int)
    cols = np.rint(centre + t * np.cos(angle)).astype(int)
    kernel = np.zeros((length, length))
    np.add.at(kernel, (rows, cols), 1.0)
    return kernel / kernel.sum()


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Averages along a line of the given length, at an angle drawn per image."""
    x, length = _check_images(images), int(_param("motion_blur", severity))
    angles = rng.uniform(0.0, np.pi, len(x))
    out = np.empty(x.shape, np.float64)
    for i, angle in enumerate(angles):
        kernel = _line_kernel(length, angle)
        for c in range(x.shape[-1]):
            out[i, ..., c] = ndimage.convolve(
                x[i, ..., c].astype(np.float64), kernel, mode="reflect"
            )
    return _finish(out, x)


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pulls every value towards its image's mean: `mean + factor·(x − mean)`."""
    del rng  # deterministic
    x, factor = _check_images(images), _param("contrast", severity)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _finish(mean + factor * (x - mean), x)


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Adds to the HSV value (the largest channel), keeping hue and saturation.

    For one channel this is `x + delta`; for colour, scaling a pixel by `V'/V` keeps
    its hue and saturation, and black pixels become grey of value `delta`.
    """
    del rng  # deterministic
    x, delta = _check_images(images), _param("brightness", severity)
    value = x.max(axis=-1, keepdims=True).astype(np.float64)
    new_value = np.minimum(value + delta, 1.0)
    scale = np.divide(new_value, value, out=np.zeros_like(value), where=value > 0)
    return _finish(np.where(value > 0, x * scale, new_value), x)


def _block_ids(size: int, keep: float) -> tuple[np.ndarray, int]:
    blocks = max(1, int(round(size * keep)))
    return (np.arange(size) * blocks) // size, blocks


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Replaces blocks of pixels by their mean, keeping `round(keep·size)` blocks per axis.

    With 28 pixels and keep = 0.25 (severity 5) the blocks are exactly 4×4.
    """
    del rng  # deterministic
    x, keep = _check_images(images), _param("pixelate", severity)
    row_ids, n_rows = _block_ids(x.shape[1], keep)
    col_ids, n_cols = _block_ids(x.shape[2], keep)
    rows = np.eye(n_rows)[row_ids]  # (H, blocks): one-hot block membership
    cols = np.eye(n_cols)[col_ids]
    sums = np.einsum("hi,nhwc,wj->nijc", rows, x.astype(np.float64), cols, optimize=True)
    means = sums / np.outer(rows.sum(0), cols.sum(0))[None, :, :, None]
    return _finish(means[:, row_ids][:, :, col_ids], x)


def jpeg(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Round-trips every image through real JPEG compression (Pillow) at a quality.

    One or three channels are encoded as grayscale or RGB; any other count channel
    by channel.
    """
    from PIL import Image

    del rng  # deterministic
    x, quality = _check_images(images), int(_param("jpeg", severity))
    pixels = np.rint(x * 255.0).astype(np.uint8)
    planes = (
        [pixels] if x.shape[-1] in (1, 3) else [pixels[..., c : c + 1] for c in range(x.shape[-1])]
    )
    decoded = []
    for plane in planes:
        out = np.empty(plane.shape, np.uint8)
        for i, image in enumerate(plane):
            buffer = io.BytesIO()
            array = image[..., 0] if image.shape[-1] == 1 else image
            Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
            restored = np.asarray(Image.open(buffer))
            out[i] = restored.reshape(image.shape)
        decoded.append(out)
    return _finish(np.concatenate(decoded, axis=-1) / 255.0, x)


def rotation(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Rotates about the centre by ±degrees (sign drawn per image; + is counter-clockwise)."""
    x, degrees = _check_images(images), _param("rotation", severity)
    theta = np.deg2rad(degrees) * rng.choice([-1.0, 1.0], len(x))[:, None, None]
    y, xx = _centred_grid(x)
    h, w = x.shape[1:3]
    # Inverse map: each output pixel reads the source point rotated back (rows grow down).
    src_cols = np.cos(theta) * xx - np.sin(theta) * y + (w - 1) / 2
    src_rows = np.sin(theta) * xx + np.cos(theta) * y + (h - 1) / 2
    return _finish(_warp(x, src_rows, src_cols, mode="constant"), x)


def shift(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Translates by a share of the image size in a direction drawn per image."""
    x, share = _check_images(images), _param("shift", severity)
    h, w = x.shape[1:3]
    direction = rng.uniform(0.0, 2 * np.pi, len(x))[:, None, None]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    src_rows = rows - share * h * np.sin(direction)
    src_cols = cols - share * w * np.cos(direction)
    return _finish(_warp(x, src_rows, src_cols, mode="constant"), x)


def zoom(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zooms in about the centre by a factor, cropping the border."""
    del rng  # deterministic
    x, factor = _check_images(images), _param("zoom", severity)
    y, xx = _centred_grid(x)
    h, w = x.shape[1:3]
    rows = np.broadcast_to(y / factor + (h - 1) / 2, (len(x), h, w))
    cols = np.broadcast_to(xx / factor + (w - 1) / 2, (len(x), h, w))
    return _finish(_warp(x, rows, cols, mode="constant"), x)


def elastic(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Elastic deformation: a smooth random displacement field (σ = `ELASTIC_SIGMA`).

    The field is Gaussian noise smoothed over height and width and rescaled so its
    root-mean-square displacement per image is the severity's number of pixels.
    """
    x, amplitude = _check_images(images), _param("elastic", severity)
    n, h, w = x.shape[:3]
    fields = []
    for _ in range(2):
        noise = rng.normal(size=(n, h, w))
        smooth = ndimage.gaussian_filter(noise, sigma=(0, ELASTIC_SIGMA, ELASTIC_SIGMA))
        rms = np.sqrt(np.mean(smooth**2, axis=(1, 2), keepdims=True))
        fields.append(amplitude * smooth / np.maximum(rms, 1e-12))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    # Edge replication, not reflection: reflection would pull the object in from the border.
    return _finish(_warp(x, rows + fields[0], cols + fields[1], mode="nearest"), x)


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Adds grey low-frequency noise, then rescales so the image maximum is kept.

    `(x + a·fog)·max/(max + a)`: the scene loses contrast as the fog thickens.
    """
    x, weight = _check_images(images), _param("fog", severity)
    n, h, w = x.shape[:3]
    haze = low_frequency_noise(rng, (n, h, w, 1))
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    return _finish((x + weight * haze) * peak / (peak + weight), x)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "contrast": contrast,
    "brightness": brightness,
    "pixelate": pixelate,
    "jpeg": jpeg,
    "rotation": rotation,
    "shift": shift,
    "zoom": zoom,
    "elastic": elastic,
    "fog": fog,
}


def corrupt(
    images: np.ndarray, name: str, severity: int, seed: int | Sequence[int] = 0
) -> np.ndarray:
    """Applies one corruption by name, reproducibly for a seed.

    Args:
      images: float `(N, H, W, C)` in [0, 1].
      name: a key of `CORRUPTIONS`.
      severity: an integer in 1..5.
      seed: seeds `np.random.default_rng` (an int or a sequence of ints).

    Returns:
      The corrupted images, same shape and dtype, in [0, 1].

    Raises:
      ValueError: on an unknown name, a severity outside 1..5 or bad images.

    >>> x = np.full((1, 28, 28, 1), 0.5, np.float32)
    >>> round(float(corrupt(x, "brightness", 2).mean()), 4)
    0.7
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"expected a corruption in {sorted(CORRUPTIONS)}, got {name!r}")
    _param(name, severity)
    return CORRUPTIONS[name](images, severity, np.random.default_rng(seed))
