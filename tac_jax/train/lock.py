"""One training at a time per run directory: an advisory lock on ``WORKDIR/train.lock``.

`workdir_lock` takes an exclusive `fcntl.flock` on the lock file for as long as the
training runs. The operating system drops the lock when the process ends, however it
ends (``kill -9`` included), so a lock is never left behind stale; the pid, host and
start time written into the file only serve the refusal message of a second training.
Readers (``evaluate``, ``score``) do not take it: they read only finished runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

from tac_jax.run import RunDir


class WorkdirLockedError(ValueError):
    """Another training holds the run directory."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextlib.contextmanager
def workdir_lock(workdir: str | os.PathLike) -> Iterator[str]:
    """Holds the training lock of ``workdir`` (which must exist) for the block.

    Args:
      workdir: the run directory.

    Yields:
      The lock file's path.

    Raises:
      WorkdirLockedError: at once, if another process holds it; the message names the
        holder.

    >>> import tempfile
    >>> workdir = tempfile.mkdtemp()
    >>> with workdir_lock(workdir):
    ...     with workdir_lock(workdir):  # doctest: +IGNORE_EXCEPTION_DETAIL
    ...         pass
    Traceback (most recent call last):
    WorkdirLockedError: expected no other training in ..., got one (pid ...)
    """
    path = RunDir(workdir).lock_file
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirLockedError(
                f"expected no other training in {os.fspath(workdir)}, got one ({_holder(fd)}) "
                f"holding {path}: wait for it to end, or stop it"
            ) from None
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
