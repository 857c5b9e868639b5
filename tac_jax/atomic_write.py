"""Writing files so that a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the destination's own folder (so the rename
stays on one file system) and is renamed over the destination with `os.replace`, which
is atomic on POSIX and Windows. The temporary name keeps the destination's extension,
so writers that infer a format from it (``np.savez``, ``Figure.savefig``) still work.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path to write; renamed to ``path`` when the block ends without error.

    On an error the temporary file is removed and ``path`` is left as it was. An
    `OSError` of the write itself (a full disk, a read-only folder) is raised again
    naming ``path``.

    Args:
      path: the destination file; its folder must exist.

    Yields:
      A path in the same folder, with the same extension, not yet existing.

    >>> import tempfile, numpy as np
    >>> out = os.path.join(tempfile.mkdtemp(), "x.npz")
    >>> with atomic_path(out) as tmp:
    ...     np.savez(tmp, a=np.arange(3))
    >>> np.load(out)["a"].tolist()
    [0, 1, 2]
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if e.filename not in (None, tmp) or e.errno is None:
            raise
        # A full disk or a read-only folder: the error names the destination, not the
        # temporary file (a write's own error names no file at all).
        raise type(e)(e.errno, e.strerror, path) from e
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> str:
    """Writes ``data`` (text as UTF-8, or bytes) to ``path`` atomically.

    Args:
      path: the destination file; its folder must exist.
      data: the whole content.

    Returns:
      ``path`` as a string.

    >>> import tempfile
    >>> out = write_atomic(os.path.join(tempfile.mkdtemp(), "a.txt"), "hello\\n")
    >>> open(out).read()
    'hello\\n'
    """
    if not isinstance(data, (str, bytes)):
        raise TypeError(f"expected str or bytes, got {type(data).__name__}")
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        if isinstance(data, str):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
        else:
            with open(tmp, "wb") as f:
                f.write(data)
    return path
