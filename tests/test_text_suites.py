"""Tests for tac_jax/evaluate/ood/text_suites.py and the text path of tac_jax/train/dataset.py,
on a fake man-page tree."""

import gzip

import numpy as np
import pytest

from tac_jax.data.vocab import build_vocab
from tac_jax.evaluate.ood.text_suites import (
    copyright_texts,
    other_languages,
    random_tokens,
    shuffle_tokens,
    text_suite,
)
from tac_jax.train.config import default_config, validate_config
from tac_jax.train.dataset import load_splits, load_text_splits

TOKENS = np.array([[5, 6, 7, 8, 0, 0], [9, 0, 0, 0, 0, 0], [4, 4, 5, 5, 6, 6]])


def _page(path, name, words, section):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = " ".join(f"{w}{i % 7}" for i, w in enumerate(words * 40))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(f".TH {name.upper()} {section}\n.SH NAME\n{name} \\- {body}\n")


@pytest.fixture
def tree(tmp_path):
    """Sections 1 and 2 (trained), 4 (held out) in English; section 1 in Swedish."""
    man = tmp_path / "man"
    for i in range(10):
        _page(man / "man1" / f"c{i}.1.gz", f"c{i}", ["command", "option", f"x{i}"], 1)
        _page(man / "man2" / f"s{i}.2.gz", f"s{i}", ["syscall", "errno", f"y{i}"], 2)
    for i in range(3):
        _page(man / "man4" / f"d{i}.4.gz", f"d{i}", ["device", "ioctl", f"z{i}"], 4)
        _page(man / "sv" / "man1" / f"c{i}.1.gz", f"c{i}", ["kommando", "flagga", f"w{i}"], 1)
    docs = tmp_path / "doc"
    for package, text in (("a", "GPL " * 80), ("b", "GPL " * 80), ("c", "MIT " * 90)):
        (docs / package).mkdir(parents=True)
        (docs / package / "copyright").write_text(text)
    (docs / "short").mkdir()
    (docs / "short" / "copyright").write_text("public domain")
    return man, docs


def _data(man, **fields):
    config = default_config()
    config.data.source = "manpages"
    config.data.data_dir = str(man)
    config.data.sections = ("1", "2")
    config.data.languages = ("en",)
    config.data.num_classes = 2
    config.data.validation_fraction = 0.2
    config.data.test_fraction = 0.2
    config.data.max_len = 12
    config.data.vocab_size = 40
    config.data.min_per_class = 1
    for key, value in fields.items():
        config.data[key] = value
    return config.data


def test_shuffle_tokens_keeps_each_rows_words_and_padding():
    out = shuffle_tokens(TOKENS, seed=0)
    assert out.dtype == np.int32
    for row, original in zip(out, TOKENS, strict=True):
        assert sorted(row.tolist()) == sorted(original.tolist())
        np.testing.assert_array_equal(row == 0, original == 0)
    np.testing.assert_array_equal(out, shuffle_tokens(TOKENS, seed=0))
    long = np.arange(1, 65)[None]
    assert not np.array_equal(shuffle_tokens(long, seed=1), long)
    with pytest.raises(ValueError, match="expected integer token ids of shape"):
        shuffle_tokens(np.zeros((2, 3), np.float32))


def test_random_tokens_keep_lengths_and_avoid_reserved_ids():
    out = random_tokens(np.repeat(TOKENS, 50, axis=0), vocab_size=10, seed=0)
    real = np.repeat(TOKENS, 50, axis=0) != 0
    assert np.all(out[~real] == 0)
    assert out[real].min() == 3 and out[real].max() == 9  # every word id turns up
    with pytest.raises(ValueError, match="expected vocab_size > 3, got 3"):
        random_tokens(TOKENS, vocab_size=3)


def test_copyright_texts_are_distinct_and_long_enough(tree):
    _, docs = tree
    texts = copyright_texts(docs)
    assert [t.split()[0] for t in texts] == ["GPL", "MIT"]  # b duplicates a; short is short
    assert copyright_texts(docs / "missing") == []


def test_text_suite_on_a_fake_tree(tree):
    man, docs = tree
    data = _data(man)
    splits, vocab = load_text_splits(data, seed=0)
    test = splits["test"]
    assert other_languages(man, ("en",)) == ("sv",)
    sets = text_suite(data, vocab, test["image"], test["label"], num=2, seed=0, doc_root=docs)
    summary = [(s.name, s.kind, len(s), s.labels is not None) for s in sets]
    assert summary == [
        ("held_out_sections", "near", 2, False),
        ("held_out_languages", "near", 2, True),
        ("shuffled_tokens", "corruption", 2, True),
        ("random_tokens", "synthetic", 2, False),
        ("copyright_files", "far", 2, False),
    ]
    assert all(s.images.dtype == np.int32 and s.images.shape[1] == 12 for s in sets)
    np.testing.assert_array_equal(sets[1].labels, [0, 0])  # Swedish section-1 pages
    full = text_suite(data, vocab, test["image"], test["label"], num=None, doc_root=docs)
    assert len(full[0]) == 3 and len(full[1]) == 3 and len(full[2]) == len(test["label"])
    # A page of section 4 is mostly words the vocabulary has never seen.
    assert np.mean(full[0].images == 1) > np.mean(test["image"] == 1)


def test_load_splits_encodes_text_with_a_given_vocabulary(tree):
    man, _ = tree
    data = _data(man)
    splits, vocab = load_text_splits(data, seed=0)
    assert set(splits) == {"train", "validation", "test"}
    assert [len(splits[k]["label"]) for k in ("train", "validation", "test")] == [12, 4, 4]
    assert splits["train"]["image"].dtype == np.int32 and splits["train"]["image"].shape[1] == 12
    other = build_vocab(["command option syscall"], vocab_size=10, min_count=1)
    again = load_splits(data, 0, vocab=other)
    assert again["train"]["image"].max() < len(other)
    np.testing.assert_array_equal(load_splits(data, 0, vocab=vocab)["test"]["image"],
                                  splits["test"]["image"])  # fmt: skip
    no_val = load_splits(_data(man, validation_fraction=0.0), 0)
    assert set(no_val) == {"train", "test"}
    with pytest.raises(ValueError, match="expected config.data.num_classes to be 2"):
        load_splits(_data(man, num_classes=3), 0)


def test_validate_config_rejects_image_options_on_text():
    config = default_config()
    config.mode = "base"
    config.data.source = "manpages"
    config.data.augment = "flip"
    with pytest.raises(ValueError, match="expected config.data.augment 'none' for text data"):
        validate_config(config)
    config.data.augment = "none"
    config.model.vocab_size = 100
    with pytest.raises(ValueError, match="config.data.vocab_size <= config.model.vocab_size=100"):
        validate_config(config)
