"""troff (man, mdoc, tbl) to plain text, in pure Python: neither ``man`` nor ``groff``
is needed to read a manual page."""

from __future__ import annotations

import gzip
import os
import re
import unicodedata

from tac_jax.data.damaged import reading

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


def read_source(path: str) -> str:
    """The text of a (gzipped) troff file: UTF-8, or Latin-1 when it is not UTF-8."""
    opener = gzip.open if path.endswith(".gz") else open
    with reading(path, "a (gzipped) troff page"), opener(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older pages predate UTF-8; Latin-1 never fails


def is_redirect(source: str) -> bool:
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
    return troff_to_text(read_source(os.fspath(path)), header=header)
