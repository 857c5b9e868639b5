"""An OOD suite for text runs, built from what a Debian machine holds offline.

Around the token ids of a run's test split (`tac_jax.data.text.load_text_dataset`):

- "near": manual pages of the sections a "section" run was not trained on (4, 6, 9
  where present: ``held_out_sections``), and pages in languages it was not trained on
  (``held_out_languages``, from whatever other packages installed translations; for
  the "section" task they keep their section labels);
- "corruption": the test documents with their tokens shuffled (``shuffled_tokens``):
  the bag of words is kept, the order destroyed, the labels still hold;
- "synthetic": uniformly random token ids with the test documents' lengths
  (``random_tokens``), so length alone gives nothing away;
- "far": the copyright files of installed packages (``copyright_files``,
  ``/usr/share/doc/*/copyright``: dpkg installs them even where ``/usr/share/doc`` is
  otherwise excluded, as in Debian's container images).

Sets that come out empty on a machine (no other language installed, say) are left out.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tac_jax.data.arrays import check_labels
from tac_jax.data.manpages import DEFAULT_LANGUAGES, DEFAULT_ROOT, DEFAULT_SECTIONS, manpage_corpus
from tac_jax.data.vocab import PAD_ID, RESERVED, Vocab, encode
from tac_jax.evaluate.ood.suites import OODSet

DOC_ROOT = "/usr/share/doc"
ALL_SECTIONS = tuple("123456789")
# Pages and files shorter than this are mostly stubs ("see foo(1)").
MIN_CHARS = 200


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _subsample(
    tokens: np.ndarray, labels: np.ndarray | None, num: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    if num is None or len(tokens) <= num:
        return tokens, labels
    index = np.sort(rng.choice(len(tokens), num, replace=False))
    return tokens[index], None if labels is None else labels[index]


def _check_tokens(tokens: Any) -> np.ndarray:
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"expected integer token ids of shape (N, max_len), got dtype {tokens.dtype} "
            f"and shape {tokens.shape}"
        )
    return tokens.astype(np.int32)


def shuffle_tokens(tokens: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row's real (non-padding) tokens in a random order, padding left in place.

    Args:
      tokens: int `(N, T)` token ids, right-padded with 0.
      seed: fixes the permutations (one per row).

    Returns:
      int32 `(N, T)`: every row holds the same multiset of ids as before.

    >>> out = shuffle_tokens(np.array([[5, 6, 7, 0, 0]]), seed=0)
    >>> sorted(out[0, :3].tolist()), out[0, 3:].tolist()
    ([5, 6, 7], [0, 0])
    """
    tokens = _check_tokens(tokens)
    out = tokens.copy()
    rng = np.random.default_rng(seed)
    for row in range(len(out)):
        real = np.flatnonzero(out[row] != PAD_ID)
        out[row, real] = out[row, rng.permutation(real)]
    return out


def random_tokens(tokens: np.ndarray, vocab_size: int, seed: int = 0) -> np.ndarray:
    """Uniformly random word ids where ``tokens`` has real tokens, padding elsewhere.

    Args:
      tokens: int `(N, T)` token ids whose padding pattern (lengths) is kept.
      vocab_size: ids are drawn from the words, ``[len(RESERVED), vocab_size)``.
      seed: fixes the draw.

    Returns:
      int32 `(N, T)`.

    >>> out = random_tokens(np.array([[5, 6, 0]]), vocab_size=10)
    >>> bool(out[0, 0] >= 3 and out[0, 1] >= 3), int(out[0, 2])
    (True, 0)
    """
    tokens = _check_tokens(tokens)
    if vocab_size <= len(RESERVED):
        raise ValueError(f"expected vocab_size > {len(RESERVED)}, got {vocab_size}")
    drawn = np.random.default_rng(seed).integers(len(RESERVED), vocab_size, tokens.shape)
    return np.where(tokens != PAD_ID, drawn, PAD_ID).astype(np.int32)


def copyright_texts(root: str | os.PathLike = DOC_ROOT, min_chars: int = MIN_CHARS) -> list[str]:
    """The distinct copyright files of installed Debian packages, in path order.

    Args:
      root: the documentation tree, ``root/<package>/copyright``.
      min_chars: shortest text kept.

    Returns:
      A list of str (UTF-8, undecodable bytes replaced); empty without the tree.
    """
    root = os.fspath(root)
    texts, seen = [], set()
    names = sorted(os.listdir(root)) if os.path.isdir(root) else []
    for name in names:
        path = os.path.join(root, name, "copyright")
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        # Many packages ship the very same file (one source, several binaries).
        digest = hashlib.sha1(text.encode("utf-8")).digest()
        if len(text) >= min_chars and digest not in seen:
            seen.add(digest)
            texts.append(text)
    return texts


def other_languages(root: str | os.PathLike, trained: Sequence[str]) -> tuple[str, ...]:
    """The language directories under a man-page tree that a run was not trained on."""
    root = os.fspath(root)
    names = sorted(os.listdir(root)) if os.path.isdir(root) else []
    return tuple(
        name
        for name in names
        if name not in trained
        and not name.startswith("man")
        and os.path.isdir(os.path.join(root, name))
    )


def _pages(data: Any, **options: Any) -> tuple[list[str], np.ndarray]:
    if data.get("data_dir"):
        options.update(root=data.data_dir, packages=None)
    texts, labels, _ = manpage_corpus(min_chars=MIN_CHARS, min_per_class=0, **options)
    return texts, labels


def _strings(data: Any, name: str) -> tuple[str, ...]:
    return tuple(str(v) for v in data.get(name, ()))


def manpage_near_sets(
    data: Any, vocab: Vocab, *, num: int | None = 2000, seed: int = 0
) -> list[OODSet]:
    """The near-OOD sets of a run on the man-page corpus: held_out_sections (the
    "section" task) and held_out_languages, each left out when no page is found.

    Args:
      data: the run's ``config.data`` (task, sections, languages, data_dir, max_len).
      vocab: the run's vocabulary.
      num: at most this many pages per set (a seeded subset); None keeps all.
      seed: fixes the subsets.

    Returns:
      "near" `OODSet`s of int32 token ids; held_out_languages keeps its section labels
      in the "section" task.
    """
    task = data.get("task", "section")
    languages = _strings(data, "languages") or DEFAULT_LANGUAGES
    sections = _strings(data, "sections") or (DEFAULT_SECTIONS if task == "section" else None)
    found: list[tuple[str, list[str], np.ndarray | None]] = []
    held = tuple(s for s in ALL_SECTIONS if s not in sections) if task == "section" else ()
    if held:
        texts, _ = _pages(data, task="section", sections=held, languages=languages)
        found.append(("held_out_sections", texts, None))
    foreign = other_languages(data.get("data_dir") or DEFAULT_ROOT, languages)
    if foreign:
        # Translations other packages installed: no manpages package to filter them by.
        texts, labels = _pages(data, task=task, sections=sections, languages=foreign, packages=None)
        found.append(("held_out_languages", texts, labels if task == "section" else None))
    sets = []
    for name, texts, labels in found:
        if texts:
            tokens = encode(vocab, texts, int(data.max_len))
            tokens, labels = _subsample(tokens, labels, num, _rng(seed, name))
            sets.append(OODSet(name, tokens, "near", labels=labels))
    return sets


def text_suite(
    data: Any,
    vocab: Vocab,
    test_tokens: np.ndarray,
    test_labels: np.ndarray,
    *,
    num: int | None = 2000,
    seed: int = 0,
    doc_root: str | os.PathLike = DOC_ROOT,
) -> list[OODSet]:
    """The OOD suite of a text run (see the module docstring).

    Args:
      data: the run's ``config.data``; the man-page corpus (source ``"manpages"``)
        adds `manpage_near_sets`, other text sources (TFDS) get the rest.
      vocab: the run's vocabulary, so that every set is encoded as training was.
      test_tokens: int `(N, max_len)` the test split's token ids.
      test_labels: `(N,)` its labels.
      num: at most this many documents per set (a seeded subset); None keeps all.
      seed: fixes the subsets, the shuffles and the random tokens.
      doc_root: where the copyright files are.

    Returns:
      `OODSet`s whose ``images`` are int32 token ids ``(n, max_len)``:
      [held_out_sections, held_out_languages,] shuffled_tokens, random_tokens
      [, copyright_files].

    >>> import ml_collections
    >>> from tac_jax.data.vocab import build_vocab
    >>> data = ml_collections.ConfigDict({"source": "tfds", "max_len": 8})
    >>> vocab = build_vocab(["a b c"], vocab_size=10, min_count=1)
    >>> tokens, labels = np.full((4, 8), 3), np.zeros(4, int)
    >>> [s.name for s in text_suite(data, vocab, tokens, labels, doc_root="/none")]
    ['shuffled_tokens', 'random_tokens']
    """
    tokens = _check_tokens(test_tokens)
    labels = check_labels(test_labels)
    if len(tokens) != len(labels):
        raise ValueError(
            f"expected as many labels as documents, got {len(tokens)} documents and "
            f"{len(labels)} labels"
        )
    sets = manpage_near_sets(data, vocab, num=num, seed=seed) if data.source == "manpages" else []
    tokens, labels = _subsample(tokens, labels, num, _rng(seed, "test"))
    sets.append(OODSet("shuffled_tokens", shuffle_tokens(tokens, seed), "corruption", labels))
    sets.append(OODSet("random_tokens", random_tokens(tokens, len(vocab), seed), "synthetic"))
    texts = copyright_texts(doc_root)
    if texts:
        far = encode(vocab, texts, int(data.max_len))
        far, _ = _subsample(far, None, num, _rng(seed, "copyright_files"))
        sets.append(OODSet("copyright_files", far, "far"))
    return sets
