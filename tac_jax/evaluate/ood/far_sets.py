"""Far-OOD image sets from data every installation has, none of it a transform of the
in-distribution data.

- ``digits``: handwritten digits (scikit-learn's bundled UCI set, 1,797 images of
  8×8), upscaled to 20×20 and centred on a 28×28 canvas as MNIST is;
- ``glyphs``: typeset letters (a–z, A–Z) drawn with Pillow's embedded font at random
  sizes, stroke widths, offsets and small rotations (a notMNIST-like set);
- ``photos``: grayscale crops of scikit-learn's two bundled photographs (a temple and a
  flower), of random size and place, shrunk to 28×28 (natural scenes and textures).

Each set has two disjoint parts, so that choices made on ``"validation"`` are reported on
``"test"``: even- and odd-indexed digits; different random draws of glyphs (the same
alphabet); crops from the upper and the lower half of each photograph.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

FAR_SET_NAMES = ("digits", "glyphs", "photos")
PARTS = ("test", "validation")
SIZE = 28
_DIGIT_SIDE = 20
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _rng(seed: int, name: str, part: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{name}/{part}".encode())])


def _check(num: int, part: str) -> None:
    if num < 1:
        raise ValueError(f"expected num >= 1, got {num}")
    if part not in PARTS:
        raise ValueError(f"expected part in {PARTS}, got {part!r}")


def digits_images(num: int, *, seed: int = 0, part: str = "test") -> np.ndarray:
    """Handwritten digits as float32 ``(n, 28, 28, 1)`` in [0, 1]: ``part`` picks the
    even (899, ``"test"``) or odd (898, ``"validation"``) indices of the 1,797 images,
    ``seed`` which ``n = num`` of them when ``num`` is smaller."""
    from PIL import Image
    from sklearn.datasets import load_digits

    _check(num, part)
    data = load_digits().images.astype(np.float32) / 16.0
    data = data[0::2] if part == "test" else data[1::2]
    if num < len(data):
        data = data[np.sort(_rng(seed, "digits", part).choice(len(data), num, replace=False))]
    out = np.zeros((len(data), SIZE, SIZE, 1), np.float32)
    lo = (SIZE - _DIGIT_SIDE) // 2
    for i, image in enumerate(data):
        big = Image.fromarray(image, mode="F").resize((_DIGIT_SIDE, _DIGIT_SIDE), Image.BILINEAR)
        out[i, lo : lo + _DIGIT_SIDE, lo : lo + _DIGIT_SIDE, 0] = np.asarray(big)
    return np.clip(out, 0.0, 1.0)


def glyphs_images(num: int, *, seed: int = 0, part: str = "test") -> np.ndarray:
    """``num`` typeset letters as float32 ``(num, 28, 28, 1)`` in [0, 1], white on black.

    Raises:
      RuntimeError: if Pillow was built without FreeType (no scalable font).
    """
    from PIL import Image, ImageDraw, ImageFont, features

    _check(num, part)
    if not features.check("freetype2"):
        raise RuntimeError("expected Pillow with FreeType for the glyphs set, got none")
    rng = _rng(seed, "glyphs", part)
    fonts: dict[int, ImageFont.FreeTypeFont] = {}
    out = np.zeros((num, SIZE, SIZE, 1), np.float32)
    canvas = 2 * SIZE
    for i in range(num):
        size = int(rng.integers(16, 27))
        font = fonts.setdefault(size, ImageFont.load_default(size=size))
        letter = _LETTERS[int(rng.integers(len(_LETTERS)))]
        image = Image.new("L", (canvas, canvas), 0)
        draw = ImageDraw.Draw(image)
        centre = canvas / 2 + rng.uniform(-3, 3, size=2)
        stroke = int(rng.integers(0, 2))
        draw.text(
            tuple(centre),
            letter,
            fill=255,
            font=font,
            anchor="mm",
            stroke_width=stroke,
            stroke_fill=255,
        )
        image = image.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
        lo = (canvas - SIZE) // 2
        out[i, ..., 0] = np.asarray(image.crop((lo, lo, lo + SIZE, lo + SIZE)), np.float32) / 255
    return out


def photos_images(num: int, *, seed: int = 0, part: str = "test") -> np.ndarray:
    """``num`` grayscale photograph crops as float32 ``(num, 28, 28, 1)`` in [0, 1]:
    squares of side 24–160 px from the upper (``"validation"``) or lower (``"test"``)
    half of each of the two photographs, alternating between them."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    _check(num, part)
    rng = _rng(seed, "photos", part)
    halves = []
    for photo in load_sample_images().images:
        gray = Image.fromarray(photo).convert("L")
        w, h = gray.size
        box = (0, 0, w, h // 2) if part == "validation" else (0, h - h // 2, w, h)
        halves.append(gray.crop(box))
    out = np.zeros((num, SIZE, SIZE, 1), np.float32)
    for i in range(num):
        half = halves[i % len(halves)]
        w, h = half.size
        side = int(rng.integers(24, min(160, w, h) + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = half.crop((x, y, x + side, y + side)).resize((SIZE, SIZE), Image.BILINEAR)
        out[i, ..., 0] = np.asarray(crop, np.float32) / 255
    return out


FAR_SETS: dict[str, Callable[..., np.ndarray]] = {
    "digits": digits_images,
    "glyphs": glyphs_images,
    "photos": photos_images,
}
