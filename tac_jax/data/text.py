"""Text classification data: the man-page corpus split and encoded with a vocabulary
built on its training part, a stratified split, and TFDS text sets for users with a
network.

The pieces live in `tac_jax.data.troff` (markup to text), `tac_jax.data.manpages` (the
corpus) and `tac_jax.data.vocab` (the tokenizer); their names are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tac_jax.data.arrays import check_labels
from tac_jax.data.manpages import (
    DEFAULT_LANGUAGES,
    DEFAULT_ROOT,
    DEFAULT_SECTIONS,
    DPKG_INFO,
    TASKS,
    debian_packages,
    manpage_corpus,
    page_name,
)
from tac_jax.data.tfds import import_tfds
from tac_jax.data.troff import expand_escapes, read_man_page, troff_to_text
from tac_jax.data.vocab import (
    CLS_ID,
    PAD_ID,
    RESERVED,
    UNK_ID,
    Vocab,
    build_vocab,
    decode,
    encode,
    load_vocab,
    save_vocab,
    tokenize,
)


def stratified_split(
    labels: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    groups: Sequence[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits each class into train/val/test, the same way for the same seed.

    With `groups`, whole groups move together (e.g. a page and its translations), each
    class gets ``round(fraction * its groups)`` groups per held-out part, and every
    group must hold a single class.

    Args:
      labels: int `(N,)`.
      val_fraction: share of each class for validation, in [0, 1).
      test_fraction: share of each class for test, in [0, 1).
      seed: a non-negative integer.
      groups: optional `(N,)` hashable group keys.

    Returns:
      `(train, val, test)` sorted index arrays.

    >>> [len(part) for part in stratified_split(np.array([0] * 10 + [1] * 5), 0.2, 0.2, 0)]
    [9, 3, 3]
    """
    labels = check_labels(labels)
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"expected val_fraction and test_fraction in [0, 1) with a sum below 1, got "
            f"{val_fraction} and {test_fraction}"
        )
    keys = np.arange(len(labels)) if groups is None else list(groups)
    if len(keys) != len(labels):
        raise ValueError(f"expected {len(labels)} groups, got {len(keys)}")
    group_label = {}
    for key, label in zip(keys, labels.tolist(), strict=True):
        if group_label.setdefault(key, label) != label:
            raise ValueError(f"expected one class per group, got classes {group_label[key]} "
                             f"and {label} in group {key!r}")  # fmt: skip
    part = {}
    for c in np.unique(labels).tolist():
        members = sorted((k for k, v in group_label.items() if v == c), key=str)
        order = np.random.default_rng([seed, c]).permutation(len(members))
        n_test, n_val = round(test_fraction * len(members)), round(val_fraction * len(members))
        if (
            len(members) - n_test - n_val < 1
            or (val_fraction and not n_val)
            or (test_fraction and not n_test)
        ):
            raise ValueError(
                f"expected enough examples of class {c} for a non-empty train, val and test "
                f"part, got {len(members)} {'groups' if groups is not None else 'examples'}"
            )
        for rank, i in enumerate(order.tolist()):
            part[members[i]] = 2 if rank < n_test else 1 if rank < n_test + n_val else 0
    which = np.asarray([part[k] for k in keys])
    return tuple(np.flatnonzero(which == p) for p in range(3))


def load_text_dataset(
    task: str = "section",
    max_len: int = 256,
    vocab_size: int = 8192,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    *,
    min_count: int = 2,
    vocab: Vocab | None = None,
    **corpus_options: Any,
) -> dict[str, Any]:
    """The man-page corpus, split, with a vocabulary built on its training part.

    For the "section" task a page and its translations share a split (they are grouped
    by file name), so no test page has its translation in training.

    Args:
      task: "section" or "language"; see `manpage_corpus`.
      max_len: tokens per example (the first ones of a page).
      vocab_size: ids in the vocabulary, the reserved ones included.
      val_fraction: share of each class for validation.
      test_fraction: share of each class for test.
      seed: fixes the split (and any `max_per_class` subset).
      min_count: rarest token kept in the vocabulary.
      vocab: encode with this vocabulary (a trained run's) instead of building one;
        `vocab_size` and `min_count` are then unused.
      **corpus_options: passed to `manpage_corpus` (root, sections, languages,
        packages, min_chars, max_per_class, min_per_class).

    Returns:
      ``{"train"|"val"|"test": {"tokens": int32 (N, max_len), "label": int32 (N,)},
      "class_names": list, "vocab": Vocab}``.
    """
    texts, labels, class_names, paths = manpage_corpus(
        task, seed=seed, return_paths=True, **corpus_options
    )
    groups = [page_name(p) for p in paths] if task == "section" else None
    parts = stratified_split(labels, val_fraction, test_fraction, seed, groups)
    if vocab is None:
        vocab = build_vocab([texts[i] for i in parts[0]], vocab_size, min_count)
    out = {"class_names": class_names, "vocab": vocab}
    for name, index in zip(("train", "val", "test"), parts, strict=True):
        out[name] = {"tokens": encode(vocab, [texts[i] for i in index], max_len),
                     "label": labels[index]}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------
# TFDS text sets (ag_news_subset, imdb_reviews, ...)


def _as_str(value: Any) -> str:
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_tfds_text(
    name: str,
    split: str,
    text_key: str = "text",
    label_key: str = "label",
    data_dir: str | os.PathLike | None = None,
    *,
    method: str = "data_source",
    download: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Loads a TFDS text classification split as `(texts, labels)`.

    Args:
      name: e.g. "imdb_reviews" (text_key "text") or "ag_news_subset" (text_key
        "description", or "title").
      split: a TFDS split ("train", "test[:10%]", ...).
      text_key: the feature that holds the text.
      label_key: the feature that holds the label.
      data_dir: where TFDS keeps its data.
      method: "data_source" (no TensorFlow needed to read) or "load" (through tf.data).
      download: whether TFDS may download and prepare the dataset.

    Returns:
      A list of str and int32 `(N,)` labels.
    """
    if method not in ("data_source", "load"):
        raise ValueError(f"expected method in ('data_source', 'load'), got {method!r}")
    tfds = import_tfds()
    data_dir = None if data_dir is None else os.fspath(data_dir)
    texts, labels = [], []
    if method == "data_source":
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
        for i in range(len(source)):
            example = source[i]
            texts.append(_as_str(example[text_key]))
            labels.append(int(example[label_key]))
    else:
        dataset = tfds.load(name, split=split, data_dir=data_dir, download=download)
        for batch in tfds.as_numpy(dataset.batch(1024)):
            texts.extend(_as_str(t) for t in batch[text_key])
            labels.extend(int(x) for x in batch[label_key])
    if not texts:
        raise ValueError(f"expected at least one example in {name}/{split}, got none")
    return texts, check_labels(np.asarray(labels, np.int64))


__all__ = [
    "CLS_ID",
    "DEFAULT_LANGUAGES",
    "DEFAULT_ROOT",
    "DEFAULT_SECTIONS",
    "DPKG_INFO",
    "PAD_ID",
    "RESERVED",
    "TASKS",
    "UNK_ID",
    "Vocab",
    "build_vocab",
    "debian_packages",
    "decode",
    "encode",
    "expand_escapes",
    "load_text_dataset",
    "load_tfds_text",
    "load_vocab",
    "manpage_corpus",
    "page_name",
    "read_man_page",
    "save_vocab",
    "stratified_split",
    "tokenize",
    "troff_to_text",
]
