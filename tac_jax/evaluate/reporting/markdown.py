"""Markdown tables with the best number of each column in bold."""

from __future__ import annotations

from collections.abc import Sequence

Cell = float | int | str | None | tuple[float | None, str]


def _number(x: float | int | None, digits: int) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def _value(cell: Cell) -> float | None:
    if isinstance(cell, tuple):
        return cell[0]
    return cell if isinstance(cell, int | float) else None


def markdown_table(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    better: Sequence[str | None],
    digits: int = 4,
) -> str:
    """A markdown table with the best number of each column in bold.

    Args:
      header: column titles.
      rows: cells: numbers, None (shown "–"), strings, or ``(number, suffix)`` pairs
        (e.g. an interval shown after the number).
      better: per column ``"high"``, ``"low"`` or None (no bold).
      digits: decimals shown.

    Returns:
      The table; ties at the shown precision are all bold.

    >>> print(markdown_table(["s", "auroc"], [["a", 0.9], ["b", 0.8]], [None, "high"], 2))
    | s | auroc |
    |---|---|
    | a | **0.90** |
    | b | 0.80 |
    """
    best: list[str | None] = []
    for j, rule in enumerate(better):
        shown = [_value(r[j]) for r in rows]
        shown = [round(v, digits) for v in shown if v is not None]
        if rule is None or not shown or len(rows) < 2:
            best.append(None)
        else:
            best.append(_number(max(shown) if rule == "high" else min(shown), digits))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = []
        for j, cell in enumerate(row):
            suffix = ""
            if isinstance(cell, tuple):
                cell, suffix = cell
            if isinstance(cell, str):
                text = cell
            else:
                text = _number(cell, digits)
                if best[j] is not None and cell is not None and text == best[j]:
                    text = f"**{text}**"
            cells.append(text + suffix)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
