"""Reading and writing IDX files (the MNIST / Fashion-MNIST format), gzipped or not."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from tac_jax.data.damaged import reading

# IDX type codes -> numpy dtypes (big-endian on disk).
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder(">") if dt.itemsize > 1 else dt: code for code, dt in _DTYPES.items()}


def _open(path: str | os.PathLike, mode: str):
    path = os.fspath(path)
    return gzip.open(path, mode) if path.endswith(".gz") else open(path, mode)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file into a numpy array of its stored shape and native byte order.

    Args:
      path: a `.idx`/`-ubyte` file, optionally gzipped (`.gz`).

    Returns:
      The array, e.g. uint8 `(60000, 28, 28)` for MNIST images.

    Raises:
      ValueError: if the file is not a well-formed IDX file (a damaged gzip stream
        included), naming the file.
    """
    what = "a gzip-compressed IDX file" if os.fspath(path).endswith(".gz") else "an IDX file"
    with reading(path, what), _open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(
            f"expected an IDX file of at least 4 bytes, got {len(data)} bytes in {path}"
        )
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _DTYPES:
        raise ValueError(
            f"expected an IDX magic number (two zero bytes, a type code in "
            f"{sorted(_DTYPES)}), got bytes {data[:4]!r} in {path}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"expected an IDX header of {header} bytes for {ndim} dimensions, got "
            f"{len(data)} bytes in {path}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"expected {expected} bytes of data for shape {shape} in {path}, "
            f"got {len(data) - header}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes `array` as an IDX file (gzipped when `path` ends with `.gz`)."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if big not in _CODES:
        raise ValueError(
            f"expected an IDX-representable dtype {sorted(map(str, _CODES))}, got {array.dtype}"
        )
    header = struct.pack(">HBB", 0, _CODES[big], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with _open(path, "wb") as f:
        f.write(header + array.astype(big).tobytes())
