"""The report folder's data files, beside the figures and ``report.md``.

- ``metrics.json``: every number (`tac_jax.evaluate.reporting.report` lists its keys);
- ``summary.csv``: ``metrics.json``'s ``summary``, one row per score, for a spreadsheet;
- ``scores.npz``: every score of every example, so any other metric can be computed
  without running the model again. Keys: ``test/<score>``, ``test/label``,
  ``test/prediction`` (and ``test/tac_prediction``, ``test/tac_soft_prediction`` on TAC
  runs) on the test split, ``ood/<set>/<score>`` on each OOD set.

Each file is written to a temporary name and renamed (`tac_jax.atomic_write`), so a
reader never sees a half-written one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tac_jax.atomic_write import atomic_path, write_atomic

SUMMARY_FILE = "summary.csv"
SCORES_FILE = "scores.npz"


def write_json(path: str | os.PathLike, value: Any) -> str:
    """Writes ``value`` as indented UTF-8 JSON (``metrics.json``), atomically.

    Returns:
      ``path`` as a string.
    """
    return write_atomic(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def _cell(value: Any) -> str:
    """A CSV cell: empty for None and NaN, the shortest exact text for a number."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "" if math.isnan(value) else repr(float(value))
    return str(value)


def summary_csv(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as CSV text: a ``score`` column, then every other column.

    Args:
      summary: ``{score: {column: value}}`` (``metrics.json``'s ``summary``).

    Returns:
      The CSV text; columns are the union of the rows' keys in first-seen order, a
      missing, None or NaN value an empty cell.

    >>> print(summary_csv({"tac": {"auroc": 0.75}, "msp": {"auroc": None, "aurc": 0.1}}), end="")
    score,auroc,aurc
    tac,0.75,
    msp,,0.1
    """
    columns = list(dict.fromkeys(key for row in summary.values() for key in row))
    if "score" in columns:
        raise ValueError(f"expected no column named 'score' in the summary, got {columns}")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["score", *columns])
    for name, row in summary.items():
        writer.writerow([name, *[_cell(row.get(c)) for c in columns]])
    return text.getvalue()


def score_arrays(
    test_scores: Mapping[str, np.ndarray],
    labels: np.ndarray,
    ood_scores: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """The arrays of ``scores.npz``, by key.

    Args:
      test_scores: ``{name: (N,)}`` every score and prediction on the test split.
      labels: ``(N,)`` the test labels.
      ood_scores: ``{set: {score: (N_set,)}}``.

    Returns:
      ``{"test/<name>": (N,), "test/label": (N,), "ood/<set>/<score>": (N_set,)}``.

    >>> sorted(score_arrays({"msp": np.ones(2)}, np.zeros(2, int), {"noise": {"msp": np.ones(3)}}))
    ['ood/noise/msp', 'test/label', 'test/msp']
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"expected 1-D labels, got shape {labels.shape}")
    arrays = {"test/label": labels}
    for name, values in test_scores.items():
        values = np.asarray(values)
        if name == "label" or "/" in name:
            raise ValueError(f"expected a score name without '/' other than 'label', got {name!r}")
        if values.shape != labels.shape:
            raise ValueError(
                f"expected test score {name!r} of shape {labels.shape}, got {values.shape}"
            )
        arrays[f"test/{name}"] = values
    for set_name, scores in ood_scores.items():
        if "/" in set_name:
            raise ValueError(f"expected an OOD set name without '/', got {set_name!r}")
        for name, values in scores.items():
            values = np.asarray(values)
            if values.ndim != 1:
                raise ValueError(
                    f"expected 1-D scores for {set_name}/{name}, got shape {values.shape}"
                )
            arrays[f"ood/{set_name}/{name}"] = values
    return arrays


def write_scores(
    path: str | os.PathLike,
    test_scores: Mapping[str, np.ndarray],
    labels: np.ndarray,
    ood_scores: Mapping[str, Mapping[str, np.ndarray]],
) -> str:
    """Writes `score_arrays` as a compressed ``.npz``, atomically.

    Returns:
      ``path`` as a string.
    """
    arrays = score_arrays(test_scores, labels, ood_scores)
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def write_data_files(
    directory: str | os.PathLike,
    summary: Mapping[str, Mapping[str, Any]],
    test_scores: Mapping[str, np.ndarray],
    labels: np.ndarray,
    ood_scores: Mapping[str, Mapping[str, np.ndarray]],
) -> list[str]:
    """Writes ``summary.csv`` and ``scores.npz`` into ``directory``.

    Returns:
      The file names written.
    """
    directory = os.fspath(directory)
    write_atomic(os.path.join(directory, SUMMARY_FILE), summary_csv(summary))
    write_scores(os.path.join(directory, SCORES_FILE), test_scores, labels, ood_scores)
    return [SUMMARY_FILE, SCORES_FILE]
