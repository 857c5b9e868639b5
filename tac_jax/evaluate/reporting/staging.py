"""Writing a folder (the report) so that readers see the old complete one or the new one.

`staged_dir` hands out a fresh folder beside the destination, ``NAME.partial-<pid>``;
everything is written there. When the block ends without error the destination is
swapped: the old folder is renamed ``NAME.old-<pid>``, the new one renamed into place
(the files named in ``carry``, such as the fitted-statistics cache, are linked across
first), and the old one removed. On an error the staging folder is removed and the old
folder is untouched. A run killed part-way leaves a ``.partial-`` (or ``.old-``) folder
whose process is gone; the next call removes it, and puts a lone ``.old-`` folder back
in place if the swap itself was cut between its two renames.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator, Sequence

PARTIAL = "partial"
OLD = "old"


def staging_path(final: str | os.PathLike, kind: str = PARTIAL, pid: int | None = None) -> str:
    """``FINAL.partial-<pid>`` (or ``.old-``), beside ``final``.

    >>> staging_path("runs/a/report", pid=7)
    'runs/a/report.partial-7'
    """
    pid = os.getpid() if pid is None else int(pid)
    return f"{os.fspath(final).rstrip(os.sep)}.{kind}-{pid}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no cheap probe: leave the folder alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def recover(final: str | os.PathLike) -> None:
    """Cleans up after a process killed while writing ``final``: removes its staging
    folders (``.partial-``, and ``.old-`` when ``final`` exists) and, when ``final``
    is missing, puts its ``.old-`` folder back. Folders of live processes are left alone.
    """
    final = os.fspath(final).rstrip(os.sep)
    folder, name = os.path.split(final)
    pattern = re.compile(rf"{re.escape(name)}\.({PARTIAL}|{OLD})-(\d+)")
    try:
        entries = os.listdir(folder or ".")
    except FileNotFoundError:
        return
    stale = []
    for entry in sorted(entries):
        match = pattern.fullmatch(entry)
        if match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2))):
            stale.append((match.group(1), os.path.join(folder, entry)))
    for kind, path in stale:
        if kind == OLD and not os.path.exists(final):
            os.rename(path, final)  # the swap was cut between its renames: the old report
        else:
            shutil.rmtree(path, ignore_errors=True)
    # Ours can only be left over from an earlier process with the same id.
    for kind in (PARTIAL, OLD):
        shutil.rmtree(staging_path(final, kind), ignore_errors=True)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, *, carry: Sequence[str] = ()) -> Iterator[str]:
    """A fresh folder beside ``final`` to write into; it replaces ``final`` when the
    block ends without error.

    The staging folder is made on entry, so an unwritable parent fails before any work.

    Args:
      final: the folder to replace (it may not exist yet); its parent must exist.
      carry: names of files in ``final`` that the new folder keeps when it did not
        write them itself (linked across at the swap, e.g. a cache).

    Yields:
      The staging folder's path.

    Raises:
      FileNotFoundError: if the parent folder does not exist.
      OSError: if the staging folder cannot be made (e.g. ``PermissionError``).

    >>> import tempfile
    >>> final = os.path.join(tempfile.mkdtemp(), "report")
    >>> with staged_dir(final) as out:
    ...     _ = open(os.path.join(out, "a.txt"), "w").write("new")
    >>> sorted(os.listdir(final))
    ['a.txt']
    """
    final = os.fspath(final).rstrip(os.sep)
    parent = os.path.dirname(os.path.abspath(final))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"expected an existing folder for {final}, got no folder {parent}")
    recover(final)
    staging = staging_path(final)
    os.mkdir(staging)
    old = staging_path(final, OLD)
    try:
        yield staging
        for name in carry:
            _keep(os.path.join(final, name), os.path.join(staging, name))
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.isdir(old) and not os.path.exists(final):
            os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _keep(source: str, target: str) -> None:
    """A second name for ``source`` at ``target`` (a copy across file systems), so the
    old folder stays whole until the swap."""
    if not os.path.isfile(source) or os.path.exists(target):
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
