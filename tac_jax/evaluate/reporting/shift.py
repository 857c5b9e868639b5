"""Covariate shift: accuracy, calibration and detection as corruptions grow stronger.

Ovadia et al. (2019), "Can you trust your model's uncertainty? Evaluating predictive
uncertainty under dataset shift", read a model's behaviour under shift off corrupted
copies of the test set at increasing severity: accuracy falls, and a trustworthy model's
calibration (ECE) should degrade gracefully rather than collapse. The corruption sets of
an OOD suite ("<corruption>_s<k>", kind "corruption", labels kept) already carry
accuracy, ECE and every score's detection AUROC; `shift_table` regroups them by
corruption and severity and averages over corruptions per severity, with the clean test
split as severity 0. `tac_jax.evaluate.ood.tfds_shift` reads CIFAR-10-C (Hendrycks &
Dietterich, 2019) through TFDS as such sets.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate.reporting.markdown import markdown_table

SEVERITIES = (1, 2, 3, 4, 5)
FIGURE_FILE = "shift.png"
_NAME = re.compile(r"^(?P<corruption>.+)_s(?P<severity>[1-5])$")
_METRICS = ("accuracy", "tac_accuracy", "ece")


def _finite(x: Any) -> float | None:
    """A float, or None for a missing, null or NaN value."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def shift_table(ood_sets: Mapping[str, Mapping[str, Any]], clean: Mapping[str, Any]) -> dict | None:
    """Accuracy, ECE and detection AUROC per corruption and severity, and their means.

    Args:
      ood_sets: ``{set: {"kind", "accuracy", ["tac_accuracy"], ["ece"], "scores":
        {score: {"auroc", ...}}}}`` (``metrics.json``'s ``ood.sets``). Only sets of kind
        "corruption" named "<corruption>_s<k>", k in 1..5, are used.
      clean: ``{"accuracy", "ece", ["tac_accuracy"]}`` of the clean test split.

    Returns:
      None without such sets, else ``{"corruptions": {c: {str(k): {"accuracy", "ece",
      ["tac_accuracy"], "auroc": {score: auroc}}}}, "by_severity": {"0": clean,
      str(k): {"accuracy", "ece", ["tac_accuracy"], "auroc": {score: mean}, "count"}},
      "scores": [score]}``; means are over the corruptions present at that severity,
      a missing or NaN value is None and left out of the means.

    >>> sets = {"fog_s1": {"kind": "corruption", "accuracy": 0.8, "ece": 0.1,
    ...                    "scores": {"msp": {"auroc": 0.6}}}}
    >>> shift_table(sets, {"accuracy": 0.9, "ece": 0.05})["by_severity"]["1"]
    {'accuracy': 0.8, 'ece': 0.1, 'auroc': {'msp': 0.6}, 'count': 1}
    """
    if "accuracy" not in clean:
        raise ValueError(f"expected clean to hold 'accuracy', got keys {sorted(clean)}")
    parsed = []
    for name, entry in ood_sets.items():
        match = _NAME.match(name)
        if entry.get("kind") == "corruption" and match:
            parsed.append((match["corruption"], int(match["severity"]), entry))
    if not parsed:
        return None
    scores = list(dict.fromkeys(s for _, _, e in parsed for s in e.get("scores", {})))
    tac = "tac_accuracy" in clean or any("tac_accuracy" in e for _, _, e in parsed)
    metrics = [m for m in _METRICS if tac or m != "tac_accuracy"]

    corruptions: dict[str, dict[str, Any]] = {}
    for corruption, severity, entry in sorted(parsed, key=lambda p: p[1]):
        cell = {m: _finite(entry.get(m)) for m in metrics}
        cell["auroc"] = {
            s: _finite(entry["scores"][s]["auroc"]) for s in scores if s in entry.get("scores", {})
        }
        corruptions.setdefault(corruption, {})[str(severity)] = cell

    by_severity: dict[str, dict[str, Any]] = {"0": {m: _finite(clean.get(m)) for m in metrics}}
    for severity in sorted({p[1] for p in parsed}):
        cells = [c[str(severity)] for c in corruptions.values() if str(severity) in c]
        row: dict[str, Any] = {m: _mean([c[m] for c in cells]) for m in metrics}
        row["auroc"] = {s: _mean([c["auroc"].get(s) for c in cells]) for s in scores}
        row["count"] = len(cells)
        by_severity[str(severity)] = row
    return {"corruptions": corruptions, "by_severity": by_severity, "scores": scores}


def shift_lines(section: Mapping[str, Any], *, scores: Sequence[str] | None = None) -> list[str]:
    """The report's covariate-shift lines: a by-severity and a per-corruption table.

    Args:
      section: a `shift_table` output (possibly read back from JSON).
      scores: the scores whose detection AUROC is shown; default all.

    Returns:
      Markdown lines, starting with a ``##`` heading.
    """
    names = list(section["scores"]) if scores is None else list(scores)
    unknown = [s for s in names if s not in section["scores"]]
    if unknown:
        raise ValueError(f"expected scores from {list(section['scores'])}, got {unknown}")
    by_severity = section["by_severity"]
    tac = "tac_accuracy" in by_severity["0"]
    metric_cols = ["accuracy ↑", *(["TAC accuracy ↑"] if tac else []), "ECE ↓"]
    auroc_cols = [f"AUROC `{s}` ↑" for s in names]

    def metric_cells(cell: Mapping[str, Any]) -> list[Any]:
        keys = ["accuracy", *(["tac_accuracy"] if tac else []), "ece"]
        return [_finite(cell.get(k)) for k in keys]

    rows = []
    for key in sorted(by_severity, key=int):
        cell = by_severity[key]
        auroc = cell.get("auroc", {})
        label = "0 (clean)" if key == "0" else key
        count = cell.get("count")
        rows.append([label, count, *metric_cells(cell), *[_finite(auroc.get(s)) for s in names]])
    header = ["severity", "corruptions", *metric_cols, *auroc_cols]
    lines = [
        "## Covariate shift",
        "",
        "Corrupted copies of test inputs, keeping their labels (Ovadia et al., 2019). Per "
        "severity, the mean over corruptions of the base head's accuracy and ECE (15 bins) "
        "and of each score's AUROC at telling the corrupted copies from the clean test "
        "split; severity 0 is the clean test split itself.",
        "",
        markdown_table(header, rows, [None] * len(header), 3),
        "",
    ]
    rows = []
    for corruption, cells in section["corruptions"].items():
        for key in sorted(cells, key=int):
            cell = cells[key]
            auroc = [_finite(cell["auroc"].get(s)) for s in names]
            rows.append([f"{corruption}_s{key}", *metric_cells(cell), *auroc])
    header = ["set", *metric_cols, *auroc_cols]
    lines += [
        "Per corruption and severity:",
        "",
        markdown_table(header, rows, [None] * len(header), 3),
        "",
    ]
    return lines


def shift_figure(directory: str | os.PathLike, section: Mapping[str, Any]) -> str:
    """``shift.png``: accuracy and ECE against severity, Ovadia et al.'s figure.

    Each severity ≥ 1 gets a box over its corruptions (whiskers at min and max), the
    mean is drawn as a line through the clean value at severity 0; TAC's mean accuracy,
    when present, as a dashed line.

    Args:
      directory: where to write the file (created if missing).
      section: a `shift_table` output.

    Returns:
      The file name, relative to ``directory`` (as the other figures).
    """
    # matplotlib only when drawing.
    from tac_jax.evaluate.reporting.canvas import new_figure, save_figure

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    by_severity = section["by_severity"]
    levels = sorted(int(k) for k in by_severity)
    fig = new_figure(10.0, 4.2)
    panels = [("accuracy", "accuracy ↑", fig.add_subplot(1, 2, 1))]
    panels.append(("ece", "ECE (15 bins) ↓", fig.add_subplot(1, 2, 2)))
    for metric, title, ax in panels:
        boxes, positions = [], []
        for level in levels[1:]:
            values = [
                v
                for cells in section["corruptions"].values()
                if (v := _finite(cells.get(str(level), {}).get(metric))) is not None
            ]
            if values:
                boxes.append(values)
                positions.append(level)
        if boxes:
            ax.boxplot(
                boxes,
                positions=positions,
                widths=0.5,
                whis=(0, 100),
                showfliers=False,
                manage_ticks=False,
            )
        means = [_finite(by_severity[str(k)].get(metric)) for k in levels]
        ax.plot(levels, _nans(means), "o-", color="#1f77b4", label="base head, mean")
        if metric == "accuracy" and "tac_accuracy" in by_severity["0"]:
            tac = [_finite(by_severity[str(k)].get("tac_accuracy")) for k in levels]
            ax.plot(levels, _nans(tac), "s--", color="#d62728", label="TAC, mean")
        ax.set_xticks(levels, [str(k) for k in levels])
        ax.set_xlim(min(levels) - 0.5, max(levels) + 0.5)
        ax.set(xlabel="corruption severity (0 = clean)", ylabel=title)
        ax.set_title(f"{title.split()[0]} under shift", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, directory, FIGURE_FILE)


def _nans(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]
