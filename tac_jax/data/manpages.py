"""Debian's manual pages as an offline, labelled text corpus.

The corpus needs no download beyond Debian packages (a few MB each):
``apt-get install manpages manpages-dev manpages-de manpages-de-dev manpages-fr
manpages-fr-dev manpages-es manpages-es-dev manpages-pl manpages-pl-dev manpages-ru
manpages-ru-dev``. Each example is one page with its troff markup stripped; the label
is its section ("1", "2", ...) or its language ("en", "de", ...).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tac_jax.data.troff import is_redirect, read_source, troff_to_text

TASKS = ("section", "language")
DEFAULT_ROOT = "/usr/share/man"
DPKG_INFO = "/var/lib/dpkg/info"
DEFAULT_SECTIONS = ("1", "2", "3", "5", "7", "8")
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "pl", "ru")

_DEV_LANGUAGES = {"en", "cs", "da", "de", "es", "fr", "it", "ja", "nl", "pl", "pt_BR", "ru", "uk"}


def debian_packages(language: str) -> tuple[str, ...]:
    """The Debian packages that hold the manual pages (sections 1-8) of a language.

    >>> debian_packages("pt_BR")
    ('manpages-pt-br', 'manpages-pt-br-dev')
    """
    if language == "en":
        return ("manpages", "manpages-dev")
    base = "manpages-zh" if language.startswith("zh") else "manpages-" + language.lower()
    base = base.replace("_", "-")
    return (base, base + "-dev") if language in _DEV_LANGUAGES else (base,)


def _install_hint(languages: Iterable[str]) -> str:
    packages = " ".join(p for lang in languages for p in debian_packages(lang))
    return f"install them with `apt-get update && apt-get install -y {packages}` (as root)"


def _package_files(packages: Sequence[str], dpkg_info: str, languages: Sequence[str]) -> set:
    files = set()
    for package in packages:
        names = [f"{package}.list"] + sorted(
            n for n in _listdir(dpkg_info) if n.startswith(package + ":") and n.endswith(".list")
        )
        found = [
            os.path.join(dpkg_info, n) for n in names if os.path.isfile(os.path.join(dpkg_info, n))
        ]
        if not found:
            raise FileNotFoundError(
                f"expected the Debian package {package} to be installed (its file list "
                f"{os.path.join(dpkg_info, package + '.list')}), got no such file; "
                + _install_hint(languages)
            )
        for list_path in found:
            with open(list_path, encoding="utf-8", errors="replace") as f:
                files.update(os.path.normpath(line.rstrip("\n")) for line in f)
    return files


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def page_name(path: str) -> str:
    """A page's file name without ``.gz``: the same for a page and its translations.

    >>> page_name("/usr/share/man/de/man1/ls.1.gz")
    'ls.1'
    """
    name = os.path.basename(path)
    return name[:-3] if name.endswith(".gz") else name


def _page_text(path: str) -> str | None:
    """A page's plain text (None for a ``.so`` redirect), parsed once per process per
    version of the file: training, validation and the text OOD suite read the same pages."""
    stat = os.stat(path)
    return _parsed(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=50_000)
def _parsed(path: str, mtime_ns: int, size: int) -> str | None:
    source = read_source(path)
    return None if is_redirect(source) else troff_to_text(source, header=False)


def manpage_corpus(
    task: str = "section",
    root: str | os.PathLike = DEFAULT_ROOT,
    sections: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
    *,
    packages: Sequence[str] | str | None = "auto",
    dpkg_info: str | os.PathLike = DPKG_INFO,
    min_chars: int = 200,
    max_per_class: int | None = None,
    min_per_class: int = 100,
    seed: int = 0,
    return_paths: bool = False,
) -> tuple[Any, ...]:
    """Manual pages as a labelled text corpus.

    Pages are read from ``root/man<section>`` (language "en") and
    ``root/<language>/man<section>``, in sorted path order. Symbolic links and ``.so``
    stubs are skipped, not resolved: both point at a page that is read on its own.
    Pages whose text (title line removed) is identical to an earlier page are dropped,
    as are pages shorter than `min_chars`. The "section" task reads every language in
    `languages` too: the translations add pages to sections 1, 5 and 8, which English
    has few of in the manpages packages.

    Args:
      task: "section" (label = section, e.g. "3") or "language" (label = language).
      root: the man-page tree.
      sections: the sections to read; for "section" these are the classes. Default
        ("1", "2", "3", "5", "7", "8") for "section", every section 1-9 for "language".
      languages: the language directories to read ("en" is the top level); for
        "language" these are the classes. Default ("en", "de", "fr", "es", "pl", "ru").
      packages: keep only pages installed by these Debian packages, so the corpus does
        not depend on what else a machine has installed. "auto" names the manpages
        packages of `languages` (see `debian_packages`); None keeps every page.
      dpkg_info: where dpkg keeps the package file lists.
      min_chars: shortest page text kept.
      max_per_class: keep at most this many pages per class (a seeded random subset,
        still in path order); None keeps all.
      min_per_class: fewest pages a class may have.
      seed: seeds the `max_per_class` subset.
      return_paths: also return the page paths.

    Returns:
      `(texts, labels, class_names)` (and `paths` with `return_paths`): a list of
      str, int32 `(N,)` labels indexing `class_names`.

    Raises:
      FileNotFoundError: if the tree or a package is missing; it names the packages.
      ValueError: on an unknown task or a class with fewer than `min_per_class` pages.
    """
    if task not in TASKS:
        raise ValueError(f"expected task in {TASKS}, got {task!r}")
    root = os.path.normpath(os.fspath(root))
    languages = tuple(languages or DEFAULT_LANGUAGES)
    default_sections = DEFAULT_SECTIONS if task == "section" else tuple("123456789")
    sections = tuple(str(s) for s in (sections or default_sections))
    classes = sections if task == "section" else languages
    if len(set(classes)) != len(classes):
        raise ValueError(f"expected distinct {task}s, got {classes}")
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"expected manual pages under {root}, got no such directory; "
            + _install_hint(languages)
        )
    if packages == "auto":
        packages = [p for lang in languages for p in debian_packages(lang)]
    allowed = (
        None if packages is None else _package_files(packages, os.fspath(dpkg_info), languages)
    )

    records, seen = [], set()
    for language in languages:
        base = root if language == "en" else os.path.join(root, language)
        for section in sections:
            directory = os.path.join(base, "man" + section)
            for name in _listdir(directory):
                path = os.path.join(directory, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                if allowed is not None and path not in allowed:
                    continue
                text = _page_text(path)
                if text is None:
                    continue
                digest = hashlib.sha1(text.encode("utf-8")).digest()
                if len(text) < min_chars or digest in seen:
                    continue
                seen.add(digest)
                label = classes.index(section if task == "section" else language)
                records.append((path, text, label))

    counts = Counter(label for _, _, label in records)
    for index, name in enumerate(classes):
        if counts[index] < min_per_class:
            raise ValueError(
                f"expected at least min_per_class={min_per_class} pages of {task} {name!r} "
                f"under {root}, got {counts[index]}; pick other {task}s or "
                + _install_hint(languages)
                + " (images that exclude /usr/share/man in /etc/dpkg/dpkg.cfg.d/ need that "
                "exclusion removed first)"
            )
    if max_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = set()
        for index in range(len(classes)):
            members = [i for i, r in enumerate(records) if r[2] == index]
            if len(members) > max_per_class:
                members = rng.choice(members, max_per_class, replace=False).tolist()
            keep.update(members)
        records = [r for i, r in enumerate(records) if i in keep]
    paths = [r[0] for r in records]
    texts = [r[1] for r in records]
    labels = np.asarray([r[2] for r in records], np.int32)
    out = (texts, labels, list(classes))
    return (*out, paths) if return_paths else out
