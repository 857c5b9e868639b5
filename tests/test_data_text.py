"""Tests for tac_jax.data.text: troff stripping, the man-page corpus, the vocabulary,
the stratified split and the TFDS text loader."""

import gzip
import os

import numpy as np
import pytest

from tac_jax.data import text
from tac_jax.data.tfds import import_tfds

PAGE = r""".\" Copyright notice: never part of the text
.TH GREP 1 2023-01-01 "GNU grep 3.8" "User Commands"
.de XX
.  ft B
..
.ie \n(.g .ds Aq \(aq
.el .ds Aq '
.if t \{\
.  sp 2
.\}
.SH NAME
grep \- print lines that match patterns
.SH SYNOPSIS
.B grep
.RI [ OPTION ...]
\fIPATTERNS\fR \" an inline comment
.SH DESCRIPTION
.PP
Searches \fBeach\fP file\(emor standard input\(emfor \(lqlines\(rq.
.IP "\-v, \-\-invert\-match" 4
Invert the sense\ of matching.
.TS
tab(;);
l l.
Code;Meaning
_
T{
0
T};found
.TE
See
.BR regex (7)
and caf\('e\&.
"""

EXPECTED = """NAME
grep - print lines that match patterns

SYNOPSIS
grep
[OPTION...]
PATTERNS

DESCRIPTION

Searches each file—or standard input—for “lines”.
-v, --invert-match
Invert the sense of matching.
Code;Meaning
0
;found
See
regex(7)
and café."""


def _write(path, source, compress=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(source)
    else:
        path.write_text(source, encoding="utf-8")
    return path


def _page(title, words, section):
    body = " ".join(f"{w}{i}" for i, w in enumerate(words * 30))
    return f".TH {title.upper()} {section}\n.SH NAME\n{title} \\- {body}\n"


def test_read_man_page_strips_troff(tmp_path):
    path = _write(tmp_path / "grep.1.gz", PAGE)
    assert text.read_man_page(path, header=False) == EXPECTED
    assert (
        text.read_man_page(path).splitlines()[0] == "GREP 1 2023-01-01 GNU grep 3.8 User Commands"
    )
    plain = _write(tmp_path / "grep.1", PAGE, compress=False)
    assert text.read_man_page(plain, header=False) == EXPECTED


def test_escapes_and_latin1(tmp_path):
    assert text.expand_escapes(r"\[u00E9]t\['e] \*(lqa\*(rq \s-1SMALL\s0 \e \N'65'") == (
        "été “a” SMALL \\ A"
    )
    assert text.expand_escapes(r"\h'2n'x\w'abc'y\fB\f(CWz\f[]") == "xyz"
    path = tmp_path / "old.5.gz"
    with gzip.open(path, "wb") as f:
        f.write(".SH NAME\nna\xefve\n".encode("latin-1"))
    assert text.read_man_page(path) == "NAME\nnaïve"


def _fake_tree(root):
    _write(root / "man1" / "ls.1.gz", _page("ls", ["list", "files"], 1))
    _write(root / "man1" / "cp.1.gz", _page("cp", ["copy", "files"], 1))
    _write(root / "man1" / "tiny.1.gz", ".TH TINY 1\n.SH NAME\ntiny \\- short\n")
    # The same page as cp.1 under another name: a duplicate.
    _write(root / "man1" / "cpx.1.gz", _page("cp", ["copy", "files"], 1))
    _write(root / "man2" / "open.2.gz", _page("open", ["open", "fd"], 2))
    _write(root / "man2" / "creat.2.gz", '.\\" redirect\n.so man2/open.2\n')
    os.symlink("open.2.gz", root / "man2" / "openat.2.gz")
    _write(root / "man2" / "read.2", _page("read", ["read", "bytes"], 2), compress=False)
    _write(root / "de" / "man1" / "ls.1.gz", _page("ls", ["Dateien", "auflisten"], 1))
    _write(root / "de" / "man2" / "open.2.gz", _page("open", ["öffnen", "Datei"], 2))


def test_manpage_corpus_from_fake_tree(tmp_path):
    _fake_tree(tmp_path)
    options = dict(root=tmp_path, packages=None, min_per_class=1)
    texts, labels, names, paths = text.manpage_corpus(
        "section", sections=("1", "2"), languages=("en", "de"), return_paths=True, **options
    )
    rel = [os.path.relpath(p, tmp_path) for p in paths]
    # Sorted per language and section; the .so stub, symlink, duplicate and short page go.
    assert rel == ["man1/cp.1.gz", "man1/ls.1.gz", "man2/open.2.gz", "man2/read.2",
                   "de/man1/ls.1.gz", "de/man2/open.2.gz"]  # fmt: skip
    assert names == ["1", "2"]
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 0, 1])
    assert labels.dtype == np.int32
    assert texts[0].startswith("NAME\ncp - copy0 files1") and "CP" not in texts[0]

    texts, labels, names = text.manpage_corpus(
        "language", sections=("1", "2"), languages=("en", "de"), **options
    )
    assert names == ["en", "de"]
    np.testing.assert_array_equal(labels, [0, 0, 0, 0, 1, 1])

    _, labels, _ = text.manpage_corpus(
        "section", sections=("1", "2"), languages=("en",), max_per_class=1, seed=3, **options
    )
    np.testing.assert_array_equal(labels, [0, 1])


def test_manpage_corpus_package_filter_and_errors(tmp_path):
    root, info = tmp_path / "man", tmp_path / "info"
    _fake_tree(root)
    info.mkdir()
    (info / "manpages.list").write_text(f"{root}\n{root}/man1/ls.1.gz\n{root}/man2/read.2\n")
    texts, labels, _ = text.manpage_corpus(
        "section", root, ("1", "2"), ("en",), packages=("manpages",), dpkg_info=info,
        min_per_class=1,
    )  # fmt: skip
    assert [t.split()[3] for t in texts] == ["list0", "read0"]
    np.testing.assert_array_equal(labels, [0, 1])

    with pytest.raises(FileNotFoundError, match="apt-get install -y manpages manpages-dev"):
        text.manpage_corpus("section", root, ("1",), ("en",), dpkg_info=info)
    with pytest.raises(FileNotFoundError, match="manpages-de manpages-de-dev"):
        text.manpage_corpus("language", tmp_path / "none", languages=("de",))
    with pytest.raises(
        ValueError, match="expected task in \\('section', 'language'\\), got 'topic'"
    ):
        text.manpage_corpus("topic", root)
    with pytest.raises(ValueError, match="min_per_class=3 pages of section '1' under .*, got 2"):
        text.manpage_corpus("section", root, ("1", "2"), ("en",), packages=None, min_per_class=3)
    assert text.debian_packages("zh_CN") == ("manpages-zh",)
    assert text.debian_packages("sv") == ("manpages-sv",)


def test_vocab_encode_round_trip(tmp_path):
    vocab = text.build_vocab(["The cat, the DOG.", "the cat sat", "rare"], vocab_size=7)
    # Counts: the 3, cat 2, then ',' '.' dog sat rare once each (dropped by min_count=2).
    assert vocab.tokens == ("<pad>", "<unk>", "<cls>", "the", "cat")
    tokens = text.encode(vocab, ["the cat sat", "cat", "the the the the the the"], max_len=4)
    np.testing.assert_array_equal(tokens, [[3, 4, 1, 0], [4, 0, 0, 0], [3, 3, 3, 3]])
    assert tokens.dtype == np.int32
    np.testing.assert_array_equal(text.encode(vocab, ["cat the"], 3, add_cls=True), [[2, 4, 3]])
    assert text.decode(vocab, tokens[0]) == ["the", "cat", "<unk>"]

    small = text.build_vocab(["a a b b c c d"], vocab_size=5, min_count=1)
    assert small.tokens == ("<pad>", "<unk>", "<cls>", "a", "b")  # ties go alphabetically

    path = tmp_path / "vocab.json"
    text.save_vocab(vocab, path)
    assert text.load_vocab(path) == vocab
    path.write_text('{"tokens": []}')
    with pytest.raises(ValueError, match="expected a tac_jax.vocab JSON file"):
        text.load_vocab(path)
    with pytest.raises(ValueError, match="expected vocab_size > 3, got 3"):
        text.build_vocab(["a"], vocab_size=3)


def test_stratified_split():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 5)
    train, val, test = text.stratified_split(labels, 0.2, 0.4, seed=0)
    assert [np.bincount(labels[p], minlength=3).tolist() for p in (train, val, test)] == [
        [4, 8, 2], [2, 4, 1], [4, 8, 2]
    ]  # fmt: skip
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(35))
    again = text.stratified_split(labels, 0.2, 0.4, seed=0)
    other = text.stratified_split(labels, 0.2, 0.4, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(test, other[2])

    groups = ["a", "a", "b", "b", "c", "c", "d", "e"]
    train, val, test = text.stratified_split(
        np.array([0, 0, 0, 0, 0, 0, 1, 1]), 0.0, 0.34, seed=0, groups=groups
    )
    assert len(test) == 3 and {groups[i] for i in test}.isdisjoint(groups[i] for i in train)
    assert len(val) == 0
    with pytest.raises(ValueError, match="expected one class per group"):
        text.stratified_split(np.array([0, 1]), 0.0, 0.5, 0, groups=["a", "a"])
    with pytest.raises(ValueError, match="expected enough examples of class 2"):
        text.stratified_split(np.array([0, 0, 0, 1, 1, 1, 2]), 0.3, 0.3, 0)


def test_load_text_dataset_on_fake_tree(tmp_path):
    for i in range(12):
        for section, lang in (("1", "en"), ("2", "en"), ("1", "de")):
            base = tmp_path if lang == "en" else tmp_path / lang
            words = [f"w{section}{lang}", f"page{i}"]
            _write(base / f"man{section}" / f"p{i}.{section}.gz", _page(f"p{i}", words, section))
    data = text.load_text_dataset(
        "section", max_len=16, vocab_size=50, val_fraction=0.25, test_fraction=0.25, seed=0,
        root=tmp_path, sections=("1", "2"), languages=("en", "de"), packages=None,
        min_per_class=1,
    )  # fmt: skip
    assert data["class_names"] == ["1", "2"]
    sizes = {k: data[k]["tokens"].shape for k in ("train", "val", "test")}
    # 12 page names per section, 3 each to val and test; section 1 pages come in 2 languages.
    assert sizes == {"train": (12 + 6, 16), "val": (6 + 3, 16), "test": (6 + 3, 16)}
    assert data["train"]["tokens"].dtype == np.int32 and data["test"]["label"].dtype == np.int32
    assert len(data["vocab"]) <= 50


def test_real_manpage_corpus():
    # CI installs the packages (scripts/setup.sh); a missing package fails here loudly.
    texts, labels, names = text.manpage_corpus("language")
    counts = np.bincount(labels, minlength=len(names))
    assert names == ["en", "de", "fr", "es", "pl", "ru"]
    assert counts.min() >= 500 and len(texts) >= 5000, dict(
        zip(names, counts.tolist(), strict=True)
    )
    _, labels, names = text.manpage_corpus("section", languages=("en", "de"))
    counts = np.bincount(labels, minlength=len(names))
    assert names == ["1", "2", "3", "5", "7", "8"]
    assert counts.min() >= 100, dict(zip(names, counts.tolist(), strict=True))


@pytest.mark.parametrize(
    "name, text_key, num_classes",
    [("ag_news_subset", "description", 4), ("imdb_reviews", "text", 2)],
)
def test_load_tfds_text_from_mocked_data(name, text_key, num_classes):
    tfds = import_tfds()
    with tfds.testing.mock_data(num_examples=5):
        texts, labels = text.load_tfds_text(name, "train", text_key=text_key)
        again, _ = text.load_tfds_text(name, "train", text_key=text_key)
    assert len(texts) == 5 and all(isinstance(t, str) for t in texts)
    assert texts == again
    assert labels.dtype == np.int32 and labels.shape == (5,)
    assert labels.min() >= 0 and labels.max() < num_classes
    vocab = text.build_vocab(texts, vocab_size=20, min_count=1)
    assert text.encode(vocab, texts, 8).shape == (5, 8)


def test_load_tfds_text_through_tf_data():
    tfds = import_tfds()
    with tfds.testing.mock_data(num_examples=3):
        texts, labels = text.load_tfds_text("imdb_reviews", "test", method="load")
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert labels.dtype == np.int32
    with pytest.raises(ValueError, match="expected method in"):
        text.load_tfds_text("imdb_reviews", "test", method="stream")
