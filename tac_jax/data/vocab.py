"""A word-level vocabulary of our own: tokenizing, building, encoding and saving it."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from tac_jax.data.damaged import reading

PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
RESERVED = ("<pad>", "<unk>", "<cls>")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_VOCAB_FORMAT = "tac_jax.vocab"


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Splits text into words (Unicode letters, digits, ``_``) and single punctuation marks.

    >>> tokenize("ls -l lists FILEs.")
    ['ls', '-', 'l', 'lists', 'files', '.']
    """
    return _TOKEN.findall(text.lower() if lowercase else text)


@dataclasses.dataclass(frozen=True)
class Vocab:
    """A word-level vocabulary: ``tokens[i]`` is the token of id ``i``.

    Ids 0, 1 and 2 are reserved for padding, unknown words and a class token.
    """

    tokens: tuple[str, ...]
    lowercase: bool = True

    def __post_init__(self):
        if tuple(self.tokens[: len(RESERVED)]) != RESERVED:
            raise ValueError(
                f"expected the vocabulary to start with {RESERVED}, got {tuple(self.tokens[:3])}"
            )
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("expected distinct tokens, got duplicates")

    @functools.cached_property
    def ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)


def build_vocab(
    texts: Iterable[str], vocab_size: int, min_count: int = 2, lowercase: bool = True
) -> Vocab:
    """Keeps the most frequent tokens of `texts` (pass the training split only).

    Args:
      texts: the documents.
      vocab_size: the most ids, the three reserved ones included.
      min_count: drop tokens seen fewer times.
      lowercase: fold case before counting.

    Returns:
      A `Vocab`; ties in frequency are broken alphabetically, so it is deterministic.

    >>> build_vocab(["a b a", "b a c"], vocab_size=5).tokens
    ('<pad>', '<unk>', '<cls>', 'a', 'b')
    """
    if vocab_size <= len(RESERVED):
        raise ValueError(f"expected vocab_size > {len(RESERVED)}, got {vocab_size}")
    if min_count < 1:
        raise ValueError(f"expected min_count >= 1, got {min_count}")
    counts = Counter()
    for text in texts:
        counts.update(tokenize(text, lowercase))
    ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    ranked = [t for t in ranked if t not in RESERVED]
    return Vocab(RESERVED + tuple(ranked[: vocab_size - len(RESERVED)]), lowercase)


def encode(vocab: Vocab, texts: Sequence[str], max_len: int, add_cls: bool = False) -> np.ndarray:
    """Token ids of each text: the first `max_len`, right-padded with 0.

    Args:
      vocab: from `build_vocab`; unknown tokens become id 1.
      texts: the documents.
      max_len: the sequence length.
      add_cls: start each sequence with id 2 (it counts towards `max_len`).

    Returns:
      int32 `(len(texts), max_len)`.

    >>> vocab = build_vocab(["a b a", "b a c"], vocab_size=5)
    >>> encode(vocab, ["a c b", "b b b b b"], max_len=4).tolist()
    [[3, 1, 4, 0], [4, 4, 4, 4]]
    """
    if max_len < 1:
        raise ValueError(f"expected max_len >= 1, got {max_len}")
    out = np.zeros((len(texts), max_len), np.int32)
    start = [CLS_ID] if add_cls else []
    lookup, budget = vocab.ids, max_len - len(start)
    for row, text in enumerate(texts):
        text = text.lower() if vocab.lowercase else text
        words = itertools.islice(_TOKEN.finditer(text), budget)  # long pages: stop early
        ids = start + [lookup.get(m.group(), UNK_ID) for m in words]
        out[row, : len(ids)] = ids
    return out


def decode(vocab: Vocab, ids: Sequence[int]) -> list[str]:
    """The tokens of one id sequence, padding dropped.

    >>> decode(build_vocab(["a b a", "b a"], vocab_size=5), [3, 4, 1, 0])
    ['a', 'b', '<unk>']
    """
    return [vocab.tokens[i] for i in np.asarray(ids).tolist() if i != PAD_ID]


def save_vocab(vocab: Vocab, path: str | os.PathLike) -> None:
    """Writes the vocabulary as JSON."""
    payload = {"format": _VOCAB_FORMAT, "version": 1, "lowercase": vocab.lowercase}
    payload["tokens"] = list(vocab.tokens)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False)


def load_vocab(path: str | os.PathLike) -> Vocab:
    """Reads a vocabulary written by `save_vocab`.

    Raises:
      ValueError: if the file is not such a vocabulary (cut short, other JSON), naming it.
    """
    with reading(path, f"a {_VOCAB_FORMAT} JSON file"), open(path, encoding="utf-8") as f:
        payload = json.load(f)
    is_ours = isinstance(payload, dict) and payload.get("format") == _VOCAB_FORMAT
    if not is_ours or not isinstance(payload.get("tokens"), list):
        raise ValueError(f"expected a {_VOCAB_FORMAT} JSON file at {path}, got something else")
    return Vocab(tuple(payload["tokens"]), bool(payload.get("lowercase")))
