"""Class codes: one fixed, unique ±1 code per class, built from per-layer blocks.

Each tapped layer gets a block of width ``k``; the full code is their concatenation,
of length ``M = L * k``. Two kinds (METHODS §1):

* ``"hadamard"``: ``k`` is the smallest power of two strictly greater than the class
  count; rows ``1..C`` of the Sylvester–Hadamard matrix of order ``k`` (the all-ones row
  is skipped), rows and columns shuffled independently per layer.
* ``"random"``: unique random ±1 vectors of density 0.5; each layer's block is
  ``k = cap`` wide (16 by default) and the concatenated codes are unique.

``"auto"`` (the authors' rule) takes Hadamard when its ``k`` fits under the cap, and
random codes of width ``cap`` otherwise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("auto", "hadamard", "random")


@dataclasses.dataclass(frozen=True)
class ClassCodes:
    """A class-code matrix and how it was built.

    Attributes:
      matrix: ``(num_classes, num_layers * width)`` float32 array of ±1.
      num_layers: number of per-layer blocks.
      width: entries per block (``k``, the slices per layer).
      kind: ``"hadamard"`` or ``"random"``.
      min_hamming: smallest Hamming distance between two class codes.
    """

    matrix: np.ndarray
    num_layers: int
    width: int
    kind: str
    min_hamming: int

    @property
    def num_classes(self) -> int:
        return self.matrix.shape[0]

    @property
    def length(self) -> int:
        return self.matrix.shape[1]


def sylvester_hadamard(order: int) -> np.ndarray:
    """The Sylvester–Hadamard matrix of ``order`` (a power of two), entries ±1.

    >>> sylvester_hadamard(2).tolist()
    [[1, 1], [1, -1]]
    """
    if order < 1 or order & (order - 1):
        raise ValueError(f"expected a Hadamard order that is a power of two, got {order}")
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < order:
        h = np.block([[h, h], [h, -h]])
    return h


def hadamard_width(num_classes: int) -> int:
    """The smallest power of two strictly greater than ``num_classes``."""
    return 1 << int(num_classes).bit_length()


def min_hamming_distance(matrix: np.ndarray) -> int:
    """Smallest pairwise Hamming distance between the rows of a ±1 (or 0/1) matrix.

    >>> min_hamming_distance(np.array([[1, 1, -1], [1, -1, -1], [-1, -1, 1]]))
    1
    """
    bits = np.asarray(matrix) > 0
    if bits.shape[0] < 2:
        return int(bits.shape[1]) if bits.ndim == 2 else 0
    # Hamming distance = M - (agreements); agreements from a ±1 inner product.
    signs = np.where(bits, 1, -1).astype(np.int32)
    agree = (signs @ signs.T + signs.shape[1]) // 2
    np.fill_diagonal(agree, -1)
    return int(signs.shape[1] - agree.max())


def _hadamard_block(num_classes: int, width: int, rng: np.random.Generator) -> np.ndarray:
    h = sylvester_hadamard(width)[1 : num_classes + 1]
    rows = rng.permutation(num_classes)
    cols = rng.permutation(width)
    return h[rows][:, cols]


def _random_codes(num_classes: int, length: int, rng: np.random.Generator) -> np.ndarray:
    if length <= 20:
        # Small spaces: draw distinct integers, so uniqueness costs no rejection loop.
        ints = rng.choice(1 << length, size=num_classes, replace=False)
        bits = (ints[:, None] >> np.arange(length)[None, :]) & 1
        return np.where(bits > 0, 1, -1).astype(np.int8)
    codes: dict[bytes, np.ndarray] = {}
    while len(codes) < num_classes:
        draw = rng.integers(0, 2, size=(num_classes - len(codes), length), dtype=np.int8)
        for row in draw:
            codes.setdefault(row.tobytes(), row)
    return np.where(np.stack(list(codes.values())) > 0, 1, -1).astype(np.int8)


def make_codes(
    num_classes: int,
    num_layers: int,
    *,
    kind: str = "auto",
    width: int | None = None,
    cap: int = 16,
    seed: int = 0,
) -> ClassCodes:
    """Builds unique class codes for ``num_classes`` classes over ``num_layers`` layers.

    Args:
      num_classes: number of classes ``C`` (at least 2).
      num_layers: number of tapped layers ``L`` (at least 1).
      kind: ``"auto"``, ``"hadamard"`` or ``"random"`` (see the module docstring).
      width: entries per layer block ``k``. Default: the Hadamard width for
        ``"hadamard"`` (and ``"auto"`` when it fits under ``cap``), else ``cap``.
      cap: the largest Hadamard width ``"auto"`` accepts, and the random width.
      seed: seeds the shuffles and random draws; same seed, same codes.

    Returns:
      A `ClassCodes` with a ``(C, L * k)`` float32 ±1 matrix.

    Raises:
      ValueError: on a bad kind or count, or when ``C`` classes cannot get unique codes
        of the asked width.

    >>> codes = make_codes(10, num_layers=4, seed=0)
    >>> codes.matrix.shape, codes.kind, codes.width
    ((10, 64), 'hadamard', 16)
    """
    if kind not in KINDS:
        raise ValueError(f"expected a code kind in {KINDS}, got {kind!r}")
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"expected at least 2 classes, got {num_classes}")
    if int(num_layers) != num_layers or num_layers < 1:
        raise ValueError(f"expected at least 1 tapped layer, got {num_layers}")
    if width is not None and width < 1:
        raise ValueError(f"expected a code width of at least 1, got {width}")
    rng = np.random.default_rng(seed)
    if kind == "auto":
        fits = hadamard_width(num_classes) <= cap and (
            width is None or width == hadamard_width(num_classes)
        )
        kind = "hadamard" if fits else "random"
        if kind == "random" and width is None:
            width = cap

    if kind == "hadamard":
        needed = hadamard_width(num_classes)
        width = needed if width is None else width
        if width & (width - 1) or width <= num_classes:
            raise ValueError(
                f"expected a Hadamard code width that is a power of two greater than "
                f"{num_classes} classes (e.g. {needed}), got {width}"
            )
        blocks = [_hadamard_block(num_classes, width, rng) for _ in range(num_layers)]
        matrix = np.concatenate(blocks, axis=1)
    else:
        width = cap if width is None else width
        length = num_layers * width
        if length < 63 and num_classes > (1 << length):
            raise ValueError(
                f"expected at most 2**{length} = {1 << length} classes for unique random "
                f"codes of width {width} over {num_layers} layers, got {num_classes} classes"
            )
        matrix = _random_codes(num_classes, length, rng)

    matrix = matrix.astype(np.float32)
    distance = min_hamming_distance(matrix)
    if distance == 0:  # Guaranteed by construction; kept because duplicate codes are fatal.
        raise ValueError("expected unique class codes, got duplicates")
    return ClassCodes(matrix, int(num_layers), int(width), kind, distance)
