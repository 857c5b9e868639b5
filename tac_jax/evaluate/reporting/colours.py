"""One colour per score, the same in every figure of a report.

A score's colour is fixed by its position in the run's score list (``metrics.json``'s
``evaluation.scores``), not by which scores a figure happens to draw, so ``knn`` is the
same colour in the ROC curves, the risk–coverage curves and the adversarial figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# matplotlib's tab10, then colours from tab20/tab20b/tab20c/Set1/Set2/Set3/Dark2/Paired/
# Accent added greedily, each the farthest (CIELAB) from those already chosen; too light
# ones (L* ≥ 88) and those within 0.13 (RGB) of one chosen left out. The first 26 differ
# pairwise by ΔE > 23, all 38 by ΔE > 17: enough for the 33 scores of the largest run (a
# figure draws at most 8 of them).
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#a1d99b", "#ffbb78", "#f0027f",
    "#637939", "#fb9a99", "#aec7e8", "#1b9e77", "#b15928", "#393b79", "#e6ab02",
    "#8c6d31", "#7b4173", "#bd9e39", "#f7b6d2", "#9c9ede", "#e5d8bd", "#b3de69",
    "#dbdb8d", "#fc8d62", "#c49c94", "#8dd3c7", "#d6616b", "#ffd92f", "#bc80bd",
    "#bdbdbd", "#e6550d", "#31a354",
)  # fmt: skip
# Line widths: TAC's scores drawn thicker so they stand out.
_TAC_WIDTH, _WIDTH = 2.2, 1.1


def colour_map(names: Sequence[str]) -> dict[str, str]:
    """``{name: colour}`` by position in ``names`` (duplicates keep their first place).

    Names past the palette's length reuse its colours in order.

    Args:
      names: every name a report can draw, in a fixed order (a run's score list).

    Returns:
      A hex colour per distinct name.

    >>> colour_map(["tac", "msp", "tac"])
    {'tac': '#1f77b4', 'msp': '#d62728'}
    """
    if isinstance(names, str):
        raise TypeError(f"expected a sequence of names, got the string {names!r}")
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(dict.fromkeys(names))}


def score_styles(names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Line keyword arguments per score: its `colour_map` colour and a width.

    Args:
      names: the run's score list.

    Returns:
      ``{name: {"color", "lw"}}``, ready for ``ax.plot(..., **style[name])``.

    >>> score_styles(["tac", "msp"])["msp"]
    {'color': '#d62728', 'lw': 1.1}
    """
    return {
        name: {"color": colour, "lw": _TAC_WIDTH if name.startswith("tac") else _WIDTH}
        for name, colour in colour_map(names).items()
    }
