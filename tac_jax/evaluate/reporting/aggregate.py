"""Several seeds' ``metrics.json`` summaries → one table with intervals over seeds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tac_jax.metrics.bootstrap import aggregate_seeds

HEADLINE = (
    ("misclassification_auroc", "misclassification AUROC", True),
    ("mean_ood_auroc", "mean OOD AUROC", True),
    ("mean_ood_auroc_near", "near OOD AUROC", True),
    ("mean_ood_auroc_far", "far OOD AUROC", True),
    ("mean_ood_auroc_corruption", "corruption AUROC", True),
    ("mean_ood_auroc_synthetic", "synthetic AUROC", True),
    ("aurc", "AURC", False),
    ("augrc", "AUGRC", False),
    ("value_c_err_1", "value, c_err=1", True),
    ("value_c_err_5", "value, c_err=5", True),
    ("value_c_err_10", "value, c_err=10", True),
)


def aggregate_summaries(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict]]:
    """Per score and summary field: mean, std and a 95 % t-interval over the runs.

    Args:
      runs: ``metrics.json`` contents of runs that differ only in their seed.

    Returns:
      ``{score: {field: aggregate_seeds(...)}}`` over the scores present in every run.
    """
    if not runs:
        raise ValueError("expected at least one run's metrics, got none")
    names = [n for n in runs[0]["summary"] if all(n in r["summary"] for r in runs)]
    out: dict[str, dict[str, dict]] = {}
    for name in names:
        fields = runs[0]["summary"][name]
        out[name] = {}
        for field, value in fields.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            values = [r["summary"][name].get(field) for r in runs]
            if any(v is None or not math.isfinite(v) for v in values):
                continue
            out[name][field] = aggregate_seeds([float(v) for v in values])
    return out


def _cell(stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return "–"
    if stats["n"] < 2:
        return f"{stats['mean']:.4f}"
    half = (stats["ci_high"] - stats["ci_low"]) / 2
    return f"{stats['mean']:.4f} ± {half:.4f}"


def summary_table(aggregated: Mapping[str, Mapping[str, Any]], fields=HEADLINE) -> str:
    """A markdown table, one row per score; the best mean of each column in bold."""
    present = [f for f in fields if any(f[0] in row for row in aggregated.values())]
    header = "| score | " + " | ".join(label for _, label, _ in present) + " |"
    lines = [header, "|---" * (len(present) + 1) + "|"]
    best = {}
    for key, _, higher in present:
        means = [row[key]["mean"] for row in aggregated.values() if key in row]
        best[key] = max(means) if higher else min(means)
    for name, row in aggregated.items():
        cells = []
        for key, _, _ in present:
            text = _cell(row.get(key))
            if key in row and row[key]["mean"] == best[key]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
