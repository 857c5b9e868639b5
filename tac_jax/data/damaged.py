"""One `ValueError` naming the file for a damaged or foreign data file.

numpy, ``zipfile``, ``gzip`` and ``struct`` each raise their own exception on a file cut
short or of another format (``EOFError``, ``BadZipFile``, ``BadGzipFile``, ...), most
without the file's name. `reading` turns them into a ``ValueError`` that says which
file and what was expected, which the command line prints as one line.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator

# What the readers raise on a truncated, empty or foreign file. Not OSError in general:
# a missing or unreadable path keeps its own error (FileNotFoundError, PermissionError).
DAMAGED = (
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    zlib.error,
    struct.error,
)


def damaged_message(path: str | os.PathLike, expected: str, error: BaseException) -> str:
    """``expected <what> at <path>, got <an empty file | a damaged file (why)>``.

    >>> damaged_message("x.npy", "a .npy array file", EOFError("No data left in file"))
    'expected a .npy array file at x.npy, got a damaged or foreign file (No data left in file)'
    """
    path = os.fspath(path)
    try:
        empty = os.path.getsize(path) == 0
    except OSError:
        empty = False
    if empty:
        return f"expected {expected} at {path}, got an empty file"
    lines = str(error).strip().splitlines()
    why = lines[0] if lines else type(error).__name__
    return f"expected {expected} at {path}, got a damaged or foreign file ({why})"


@contextlib.contextmanager
def reading(path: str | os.PathLike, expected: str) -> Iterator[None]:
    """Re-raises what a reader raises on a damaged file (`DAMAGED`) as one
    ``ValueError`` naming ``path`` and ``expected``.

    Only the reading belongs in the block: a ``ValueError`` of one's own checks there
    would be reworded too.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.gz")
    >>> _ = open(path, "wb").write(b"not gzip")
    >>> with reading(path, "a gzip file"):  # doctest: +ELLIPSIS
    ...     _ = gzip.open(path).read()
    Traceback (most recent call last):
    ValueError: expected a gzip file at ..., got a damaged or foreign file (Not a gzipped ...)
    """
    try:
        yield
    except DAMAGED as error:
        raise ValueError(damaged_message(path, expected, error)) from None
