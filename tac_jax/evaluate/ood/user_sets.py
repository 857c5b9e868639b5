"""OOD sets of the user's own: array files named as ``NAME=PATH[:KIND]`` (`OODFile`) or
in-memory `OODSet`s, checked against the run that scores them and added to a suite.

A spec names the set, its file (`.npy`, `.npz` or IDX: `tac_jax.data.arrays.load_array`)
and, optionally, its kind (default "far"). The images are uint8 (divided by 255) or
float in [0, 1], shaped like the run's inputs (`(N, H, W)` for one channel or
`(N, H, W, C)`). A "corruption" set read from an `.npz` that also holds labels
("y", "labels", "label" or "targets") keeps them, so the report shows its accuracy.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zlib
from collections.abc import Sequence

import numpy as np

from tac_jax.data.arrays import (
    check_labels,
    load_array,
    load_labeled,
    npz_keys,
    to_float_images,
)
from tac_jax.evaluate.ood.suites import KINDS, OODSet

OOD_SPEC = "NAME=PATH[:KIND]"
DEFAULT_KIND = "far"
# File-name safe: set names become figure labels and keys of metrics.json.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# A bare word after the last ':' is meant as a kind, never as the end of a path.
_WORD = re.compile(r"[A-Za-z_]*")


@dataclasses.dataclass(frozen=True)
class OODFile:
    """An OOD set stored in an array file, read once the run's input shape is known.

    Attributes:
      name: the set's name in the report: letters, digits, "_", "." and "-".
      path: a `.npy`, `.npz` or IDX file.
      kind: one of `KINDS`; "corruption" sets keep the labels of an `.npz` that has them.
    """

    name: str
    path: str
    kind: str = DEFAULT_KIND

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"expected an OOD set name of letters, digits, '_', '.' or '-', got {self.name!r}"
            )
        if self.kind not in KINDS:
            raise ValueError(f"expected kind in {KINDS} for {self.name!r}, got {self.kind!r}")


def parse_ood_spec(text: str) -> OODFile:
    """Parses ``NAME=PATH`` or ``NAME=PATH:KIND`` (KIND in `KINDS`, default "far").

    The text after the last ":" is the kind when it is a bare word; any other ":"
    belongs to the path (a path ending in ":word" needs an explicit ``:KIND``).

    Args:
      text: the spec, e.g. ``"svhn=data/svhn.npy"`` or ``"blur=blur.npz:corruption"``.

    Returns:
      The `OODFile`; the file is not read (see `check_user_sets`, `load_ood_file`).

    Raises:
      ValueError: on a missing ``=``, an empty path, a bad name or an unknown kind.

    >>> parse_ood_spec("svhn=data/svhn.npy")
    OODFile(name='svhn', path='data/svhn.npy', kind='far')
    >>> parse_ood_spec("blur=C:/data/blur.npz:corruption").path
    'C:/data/blur.npz'
    """
    name, equals, rest = text.partition("=")
    if not equals or not name or not rest:
        raise ValueError(f"expected an OOD set as {OOD_SPEC}, got {text!r}")
    path, colon, tail = rest.rpartition(":")
    if not colon or not _WORD.fullmatch(tail):
        path, tail = rest, DEFAULT_KIND
    if not path:
        raise ValueError(f"expected an OOD set as {OOD_SPEC}, got {text!r}")
    if tail not in KINDS:
        raise ValueError(f"expected KIND in {KINDS} in {text!r}, got {tail!r}")
    return OODFile(name, path, tail)


def check_user_sets(sets: Sequence[OODSet | OODFile | ReadOODFile]) -> None:
    """Checks what needs no run: the types, distinct names and that every file exists.

    Raises:
      TypeError: on an entry that is neither an `OODSet` nor an `OODFile`.
      ValueError: on a name given twice.
      FileNotFoundError: on a missing file.

    >>> check_user_sets([OODSet("a", np.zeros((1, 2, 2, 1)), "far")] * 2)
    Traceback (most recent call last):
    ValueError: expected distinct OOD set names, got 'a' twice
    """
    seen = set()
    for entry in sets:
        if not isinstance(entry, OODSet | OODFile | ReadOODFile):
            raise TypeError(f"expected OODSet or OODFile entries, got {type(entry).__name__}")
        if entry.name in seen:
            raise ValueError(f"expected distinct OOD set names, got {entry.name!r} twice")
        seen.add(entry.name)
        if isinstance(entry, OODFile) and not os.path.isfile(entry.path):
            raise FileNotFoundError(
                f"expected an array file for OOD set {entry.name!r}, got no such file {entry.path}"
            )


def user_set(
    name: str,
    images: np.ndarray,
    kind: str = DEFAULT_KIND,
    labels: np.ndarray | None = None,
    *,
    input_shape: Sequence[int],
    num: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    source: str | None = None,
) -> OODSet:
    """An `OODSet` of the user's images, checked against the run's input shape.

    Args:
      name: the set's name.
      images: uint8 or float in [0, 1], `(N, H, W)` or `(N, H, W, C)`.
      kind: one of `KINDS`.
      labels: `(N,)` in-distribution labels, only on a "corruption" set.
      input_shape: the run's `(H, W, C)`.
      num: keep at most this many images, drawn without replacement by a generator
        of ``(seed, name)``, in their original order; None keeps all.
      seed: the subsampling seed.
      num_classes: the run's classes, which the labels must lie below.
      source: where the images come from (a file), named in errors.

    Returns:
      The `OODSet`, float32 images in [0, 1].

    >>> s = user_set("mine", np.zeros((5, 4, 4), np.uint8), input_shape=(4, 4, 1), num=3)
    >>> s.images.shape, s.images.dtype.name, s.kind
    ((3, 4, 4, 1), 'float32', 'far')
    """
    where = source or f"OOD set {name!r}"
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3:
        raise ValueError(
            f"expected a run on images (H, W, C) to score {where}, got input shape {input_shape}"
        )
    try:
        x = to_float_images(images)
        y = None if labels is None else check_labels(labels, num_classes)
    except ValueError as error:
        raise ValueError(f"{error} (in {where})") from None
    if x.shape[1:] != input_shape or not len(x):
        raise ValueError(
            f"expected images of shape (N, {', '.join(map(str, input_shape))}) like the "
            f"run's inputs, N > 0, in {where}, got shape {x.shape}"
        )
    if y is not None and kind != "corruption":
        raise ValueError(
            f"expected labels only on a 'corruption' set, got labels on {kind!r} set {name!r}"
        )
    if y is not None and len(y) != len(x):
        raise ValueError(
            f"expected as many labels as images in {where}, got {len(x)} images and {len(y)} labels"
        )
    if num is not None and num < len(x):
        if num <= 0:
            raise ValueError(f"expected num > 0 or None, got {num}")
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        pick = np.sort(rng.choice(len(x), num, replace=False))
        x, y = x[pick], None if y is None else y[pick]
    return OODSet(name, x, kind, labels=y)


def _read(file: OODFile) -> tuple[np.ndarray, np.ndarray | None]:
    is_npz = file.path.endswith(".npz") and os.path.isfile(file.path)
    if file.kind == "corruption" and is_npz and len(npz_keys(file.path)) > 1:
        return load_labeled(file.path)
    return load_array(file.path), None


@dataclasses.dataclass(frozen=True)
class ReadOODFile:
    """An `OODFile` already read (`read_user_sets`): its arrays as stored, checked
    against the run's input shape later."""

    file: OODFile
    images: np.ndarray
    labels: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.file.name


def read_user_sets(sets: Sequence[OODSet | OODFile]) -> list[OODSet | ReadOODFile]:
    """Checks the entries (`check_user_sets`) and reads every file now, so that a
    missing, damaged or foreign file is refused before a run is loaded.

    Raises:
      FileNotFoundError: on a missing file.
      ValueError: on a name given twice, or a file that is not a readable array file
        (naming it).
    """
    check_user_sets(sets)
    return [ReadOODFile(s, *_read(s)) if isinstance(s, OODFile) else s for s in sets]


def load_ood_file(
    file: OODFile | ReadOODFile,
    input_shape: Sequence[int],
    *,
    num: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> OODSet:
    """Reads an `OODFile` (or takes a `ReadOODFile`'s arrays) into an `OODSet` (see
    `user_set` for the arguments).

    A "corruption" `.npz` with more than one array is read with its labels
    (`tac_jax.data.arrays.load_labeled`); any other file gives images only.

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: on unreadable arrays, a shape other than the run's, or bad labels.
    """
    read = file if isinstance(file, ReadOODFile) else ReadOODFile(file, *_read(file))
    file = read.file
    return user_set(
        file.name, read.images, file.kind, read.labels, input_shape=input_shape, num=num,
        seed=seed, num_classes=num_classes, source=file.path,
    )  # fmt: skip


def resolve_user_sets(
    sets: Sequence[OODSet | OODFile | ReadOODFile],
    input_shape: Sequence[int],
    *,
    num: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
) -> list[OODSet]:
    """Checks the entries (`check_user_sets`), reads the files and brings every set to
    float32 images of the run's shape, at most ``num`` each (`user_set`)."""
    check_user_sets(sets)
    options = dict(input_shape=input_shape, num=num, seed=seed, num_classes=num_classes)
    return [
        load_ood_file(s, **options)
        if isinstance(s, OODFile | ReadOODFile)
        else user_set(s.name, s.images, s.kind, s.labels, **options)
        for s in sets
    ]


def add_user_sets(suite: Sequence[OODSet], extra: Sequence[OODSet]) -> list[OODSet]:
    """The suite's sets followed by the user's, whose names must be new.

    >>> a = OODSet("digits", np.zeros((1, 2, 2, 1)), "far")
    >>> add_user_sets([a], [a])
    Traceback (most recent call last):
    ValueError: expected OOD set names distinct from the suite's, got 'digits' in both
    """
    taken = {s.name for s in suite}
    for s in extra:
        if s.name in taken:
            raise ValueError(
                f"expected OOD set names distinct from the suite's, got {s.name!r} in both"
            )
    return [*suite, *extra]
