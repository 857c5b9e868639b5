"""Text classification data: Debian's manual pages as an offline corpus, a word-level
vocabulary of our own, a stratified split, and TFDS text sets for users with a network.

The man-page corpus needs no download beyond Debian packages (a few MB each):
``apt-get install manpages manpages-dev manpages-de manpages-de-dev manpages-fr
manpages-fr-dev manpages-es manpages-es-dev manpages-pl manpages-pl-dev manpages-ru
manpages-ru-dev``. Each example is one page with its troff markup stripped; the label
is its section ("1", "2", ...) or its language ("en", "de", ...).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import itertools
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tac_jax.data.arrays import check_labels
from tac_jax.data.tfds import import_tfds

TASKS = ("section", "language")
DEFAULT_ROOT = "/usr/share/man"
DPKG_INFO = "/var/lib/dpkg/info"
DEFAULT_SECTIONS = ("1", "2", "3", "5", "7", "8")
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "pl", "ru")
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
RESERVED = ("<pad>", "<unk>", "<cls>")

# ---------------------------------------------------------------------------------------
# troff to plain text

_GLYPHS = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "“",
    "rq": "”", "oq": "‘", "cq": "’", "bu": "•", "co": "©", "rg": "®", "tm": "™",
    "de": "°", "mu": "×", "di": "÷", "+-": "±", "pl": "+", "eq": "=", "ti": "~",
    "ha": "^", "ga": "`", "ul": "_", "rs": "\\", "sl": "/", "bv": "|", "ba": "|",
    "or": "|", "->": "→", "<-": "←", "<=": "≤", ">=": "≥", "!=": "≠", "Fo": "«",
    "Fc": "»", "fo": "‹", "fc": "›", "Eu": "€", "Po": "£", "ss": "ß", "sc": "§",
    "ps": "¶", "dg": "†", "ct": "¢", "aa": "´", "at": "@", "sh": "#", "Do": "$",
    "lB": "[", "rB": "]", "lC": "{", "rC": "}", "la": "⟨", "ra": "⟩",
}  # fmt: skip
_ACCENTS = {"'": "\u0301", "`": "\u0300", ":": "\u0308", "^": "\u0302", "~": "\u0303",
            ",": "\u0327", "o": "\u030a", "v": "\u030c"}  # fmt: skip
_STRINGS = {"lq": "“", "rq": "”", "Aq": "'", "R": "®", "Tm": "™", "C+": "C++",
            "--": "—", 'L"': "“", 'R"': "”", "C`": "“", "C'": "”", "PI": "π"}  # fmt: skip
_CHARS = {"-": "-", "e": "\\", "E": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ",
          "t": " ", "'": "'", "`": "`", ".": "."}  # fmt: skip
_SILENT = set("&)/,%:c|^{}udrpza!")  # zero-width or layout-only escapes

_ARG = r"(?:\[[^\]\n]*\]|\(..|.)"
_ESCAPE = re.compile(
    r"\\(?:\[(?P<glyph>[^\]\n]*)\]|\((?P<glyph2>..)|\*(?P<string>" + _ARG + r")"
    r"|n[-+]?" + _ARG + r"|[fFmMkgYV$]" + _ARG + r"|s[-+]?(?:\(\d\d|\[[^\]\n]*\]|'[^'\n]*'|\d)"
    r"|(?P<delim>[ABbCDhHlLNoRSvwxXZ])(?P<quote>['\"|])(?P<darg>.*?)(?P=quote)"
    r"|(?P<char>.))"
)
_PAIR = re.compile(r"\\(.)", re.DOTALL)

_HEADER = {"TH", "Dd", "Dt", "Os"}
_HEADING = {"SH", "SS", "Sh", "Ss"}
_BREAK = _HEADING | {"PP", "LP", "P", "Pp", "Lp", "sp"}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_LAYOUT = {"TP", "TQ", "PD", "RS", "RE", "HP", "EX", "EE", "YS", "IX", "Vb", "Ve", "UN",
           "Bl", "El", "Bd", "Ed", "Bk", "Ek", "Sm", "TE"}  # fmt: skip
_SKIP_BLOCKS = {"EQ": "EN", "PS": "PE"}
_DEFINE = {"de", "de1", "dei", "am", "am1", "ami"}
_CONDITIONAL = {"if", "ie", "el", "while"}
_MDOC_CALLABLE = {"Ar", "Cm", "Dv", "Er", "Ev", "Fa", "Fl", "Fn", "Ft", "Ic", "Li", "Nm",
                  "No", "Ns", "Op", "Oo", "Oc", "Pa", "Ql", "Dq", "Sq", "Pq", "Bq", "Aq",
                  "Em", "Sy", "Va", "Xr", "Tn", "Ux", "Bx"}  # fmt: skip


def _glyph(name: str) -> str:
    if name in _GLYPHS:
        return _GLYPHS[name]
    if re.fullmatch(r"u[0-9A-Fa-f]{4,6}(_[0-9A-Fa-f]{4,6})*", name):
        return unicodedata.normalize("NFC", "".join(chr(int(c, 16)) for c in name[1:].split("_")))
    if len(name) == 2 and name[0] in _ACCENTS and name[1].isalpha():
        return unicodedata.normalize("NFC", name[1] + _ACCENTS[name[0]])
    return ""


def _string(arg: str) -> str:
    name = arg[1:-1] if arg.startswith("[") else arg[1:] if arg.startswith("(") else arg
    return _STRINGS.get(name, "")


def _replace(match: re.Match) -> str:
    if match.group("glyph") is not None:
        return _glyph(match.group("glyph"))
    if match.group("glyph2") is not None:
        return _glyph(match.group("glyph2"))
    if match.group("string") is not None:
        return _string(match.group("string"))
    if match.group("delim") in ("C", "N"):
        arg = match.group("darg")
        return (
            _glyph(arg) if match.group("delim") == "C" else chr(int(arg)) if arg.isdigit() else ""
        )
    char = match.group("char")
    if char is None or char in _SILENT:
        return ""
    return _CHARS.get(char, char)  # troff prints an unknown escaped character as itself


def expand_escapes(text: str) -> str:
    """Replaces troff escapes with plain characters (fonts and sizes vanish).

    >>> expand_escapes(r"\\fBls\\fR \\-l \\(em a \\(lqlong\\(rq list")
    'ls -l — a “long” list'
    """
    return _ESCAPE.sub(_replace, text)


def _strip_comment(line: str) -> str:
    if '\\"' not in line and "\\#" not in line:
        return line
    for match in _PAIR.finditer(line):
        if match.group(1) in '"#':
            return line[: match.start()]
    return line


def _brace_depth(line: str) -> int:
    pairs = [m.group(1) for m in _PAIR.finditer(line)]
    return pairs.count("{") - pairs.count("}")


def _split_args(text: str) -> list[str]:
    """Splits request arguments on blanks; double quotes group, ``""`` is a quote."""
    if '"' not in text and "\\ " not in text and "\\\t" not in text:
        return text.split()
    args, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        quoted, current = text[i] == '"', []
        i += quoted
        while i < n:
            if text[i] == "\\" and i + 1 < n:
                current.append(text[i : i + 2])
                i += 2
            elif quoted and text[i] == '"':
                if text[i + 1 : i + 2] == '"':
                    current.append('"')
                    i += 2
                else:
                    i += 1
                    break
            elif not quoted and text[i] in " \t":
                break
            else:
                current.append(text[i])
                i += 1
        args.append("".join(current))
    return args


def _mdoc_args(args: list[str]) -> list[str]:
    out, flag = [], False
    for arg in args:
        if arg == "Fl":
            flag = True
        elif arg not in _MDOC_CALLABLE:
            out.append("-" + arg if flag else arg)
            flag = False
    return out + (["-"] if flag else [])


def _request_text(name: str, args: list[str], header: bool) -> str | None:
    """The text a request line contributes, or None for a line that shows nothing."""
    if name in _HEADER:
        return " ".join(args) if header else None
    if name in _ALTERNATING:
        return "".join(args)
    if name == "IP":
        return args[0] if args else None
    if name in _LAYOUT or (name in _BREAK and name not in _HEADING) or name[:1].islower():
        return None  # lowercase names are troff requests, which lay out but print nothing
    if len(name) == 2 and name[0].isupper() and name[1].islower():
        args = _mdoc_args([name, *args] if name in _MDOC_CALLABLE else args)
    return " ".join(args) if args else None


def _logical_lines(source: str) -> list[str]:
    lines, pending = [], ""
    for line in source.splitlines():
        if not line.endswith("\\"):
            lines.append(pending + line)
            pending = ""
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an escaped newline continues the line
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    return lines + ([pending] if pending else [])


def troff_to_text(source: str, *, header: bool = True) -> str:
    """Strips man/mdoc/tbl markup from a troff source and returns its text.

    Comments, macro and register definitions, conditionals, equations and pictures are
    dropped; macros such as ``.SH``, ``.B`` and ``.BR`` keep their argument text; tables
    keep their cells; escapes become plain characters.

    Args:
      source: the troff source.
      header: keep the ``.TH`` (or mdoc ``.Dt``/``.Dd``/``.Os``) title line. It names
        the page's section, so a section classifier must not see it.

    Returns:
      Plain text, one output line per input text line, blank lines between paragraphs.

    >>> troff_to_text('.TH LS 1\\n.SH NAME\\nls \\\\- list\\n.BR cp (1)', header=False)
    'NAME\\nls - list\\ncp(1)'
    """
    out: list[str] = []
    skip_until, depth, table = None, 0, None
    for raw in _logical_lines(source):
        line = _strip_comment(raw)
        control = line[:1] in (".", "'")
        if not (control or depth or table) and skip_until is None:
            if line or not raw:  # a comment-only line is not a paragraph break
                out.append(line)
            continue
        rest = line[1:].lstrip(" \t") if control else ""
        name = rest.split(None, 1)[0] if rest else ""
        if depth > 0:
            depth += _brace_depth(line)
            continue
        if skip_until is not None:
            if control and "." + name == skip_until:
                skip_until = None
            continue
        if table == "format" and not control:
            table = "data" if line.rstrip().endswith(".") else "format"
            continue
        if control:
            args = _split_args(rest[len(name) :])
            if name in _CONDITIONAL:
                depth = max(_brace_depth(line), 0)
            elif name in _DEFINE:
                skip_until = "." + args[1] if len(args) > 1 else ".."
            elif name == "ig":
                skip_until = "." + args[0] if args else ".."
            elif name in _SKIP_BLOCKS:
                skip_until = "." + _SKIP_BLOCKS[name]
            elif name in ("TS", "T&"):
                table = "format"
            else:
                table = None if name == "TE" else table
                if name in _BREAK:
                    out.append("")
                text = _request_text(name, args, header)
                if text is not None:
                    out.append(text)
            continue
        if table == "data":
            if line.strip(" \t_=") == "":
                continue
            line = line.replace("T{", "").replace("T}", "")
            if line.strip():  # text blocks open and close on lines of their own
                out.append(line)
    # Escapes never span lines (continuations are joined), so one pass does them all.
    text = "\n".join(" ".join(line.split()) for line in expand_escapes("\n".join(out)).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _read_source(path: str) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older pages predate UTF-8; Latin-1 never fails


def _is_redirect(source: str) -> bool:
    """True for a ``.so other/page.N`` stub, which only points at another page."""
    for line in source.splitlines():
        if line.strip() and not line.startswith((r".\"", r"'\"")):
            return line.startswith(".so ")
    return False


def read_man_page(path: str | os.PathLike, *, header: bool = True) -> str:
    """Reads a (gzipped) troff man page and returns its plain text.

    Pure Python: neither ``man`` nor ``groff`` is needed.

    Args:
      path: a page such as ``/usr/share/man/man1/ls.1.gz`` (``.gz`` or uncompressed).
      header: keep the title line; see `troff_to_text`.

    Returns:
      The page's text (UTF-8, or Latin-1 for old pages that are not UTF-8).
    """
    return troff_to_text(_read_source(os.fspath(path)), header=header)


# ---------------------------------------------------------------------------------------
# the man-page corpus

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


def _page_name(path: str) -> str:
    name = os.path.basename(path)
    return name[:-3] if name.endswith(".gz") else name


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
                source = _read_source(path)
                if _is_redirect(source):
                    continue
                text = troff_to_text(source, header=False)
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


# ---------------------------------------------------------------------------------------
# a word-level vocabulary

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
    """Reads a vocabulary written by `save_vocab`."""
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    if not isinstance(payload, dict) or payload.get("format") != _VOCAB_FORMAT:
        raise ValueError(f"expected a {_VOCAB_FORMAT} JSON file at {path}, got something else")
    return Vocab(tuple(payload["tokens"]), bool(payload["lowercase"]))


# ---------------------------------------------------------------------------------------
# splits and the ready-to-train dataset


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
      **corpus_options: passed to `manpage_corpus` (root, sections, languages,
        packages, min_chars, max_per_class, min_per_class).

    Returns:
      ``{"train"|"val"|"test": {"tokens": int32 (N, max_len), "label": int32 (N,)},
      "class_names": list, "vocab": Vocab}``.
    """
    texts, labels, class_names, paths = manpage_corpus(
        task, seed=seed, return_paths=True, **corpus_options
    )
    groups = [_page_name(p) for p in paths] if task == "section" else None
    parts = stratified_split(labels, val_fraction, test_fraction, seed, groups)
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
