"""The numbers of a report: each section of ``metrics.json`` from the scores of the test
split, the OOD sets and the validation split (`tac_jax.evaluate.reporting.tables` holds
the per-score tables these assemble)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate.engine.registry import SCORES
from tac_jax.evaluate.ood.suites import OODSet
from tac_jax.evaluate.reporting import tables
from tac_jax.evaluate.reporting.guarantee import guarantee_section
from tac_jax.metrics import Costs
from tac_jax.metrics.calibration import ece

Log = Callable[[str], None]
Score = Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]]


def threshold_split(
    n: int, has_validation: bool, seed: int
) -> tuple[str, np.ndarray | None, np.ndarray]:
    """Where the value thresholds are chosen.

    With a validation split, thresholds come from it and the whole test split reports.
    Without one, the test split is halved by a fixed permutation of ``seed``: the first
    half chooses, the second reports.

    Returns:
      ``(name, val_index, test_index)``: ``val_index`` is None with a validation split.

    >>> name, val, test = threshold_split(4, False, 0)
    >>> name, len(val), len(test), sorted(np.r_[val, test].tolist())
    ('test_half', 2, 2, [0, 1, 2, 3])
    """
    if has_validation:
        return "validation", None, np.arange(n)
    if n < 2:
        raise ValueError(f"expected at least 2 test examples to halve, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return "test_half", np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def jsonable(x: Any) -> Any:
    """``x`` with numpy scalars and arrays as Python values; JSON has no NaN or infinity:
    they become null (documented in the report)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def summary_rows(metrics: dict[str, Any], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One row per score: the headline numbers of every section."""
    grid = metrics["value"]["c_err"]
    # The deployed SGR threshold's test coverage at each target risk.
    guaranteed: dict[str, dict[str, Any]] = {}
    for g in metrics.get("guarantee", {}).get("rows", []):
        if g["method"] == "sgr":
            guaranteed.setdefault(g["score"], {})[f"sgr_coverage_r{g['risk']:g}"] = g[
                "test_coverage"
            ]
    rows = {}
    for name in names:
        mis = metrics["misclassification"][name]
        row = {
            "family": SCORES[name].family,
            "misclassification_auroc": mis["auroc"],
            "aurc": mis["aurc"],
            "e_aurc": mis["e_aurc"],
            "augrc": mis["augrc"],
            "acc_at_90": mis.get("acc_at_90"),
        }
        row.update(guaranteed.get(name, {}))
        for key, value in metrics["ood"]["mean_auroc"].get(name, {}).items():
            row[f"mean_ood_auroc_{key}" if key != "all" else "mean_ood_auroc"] = value
        values = metrics["value"]["scores"][name]["value"]
        for c, v in zip(grid, values, strict=True):
            row[f"value_c_err_{c:g}"] = v
        for target, section in metrics.get("adversarial", {}).items():
            for key, entry in section["by_epsilon"].items():
                auroc = entry["detection"].get(name, {}).get("auroc")
                row[f"adversarial_auroc_{target}_eps{float(key):g}"] = auroc
        rows[name] = row
    return rows


def score_suite(
    sets: Sequence[OODSet],
    score: Score,
    test_scores: dict[str, np.ndarray],
    has_tac: bool,
    bootstrap: int,
    seed: int,
    say: Log,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]], dict[str, tuple]]:
    """Scores every OOD set and compares it with the test split.

    Returns:
      ``(entries, scores, tac_outputs)``: the ``ood.sets`` section of ``metrics.json``,
      each set's raw scores, and per set (TAC runs) ``(activation, base prediction,
      kind)``, what the per-layer diagnostics read.
    """
    entries: dict[str, Any] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    profiles: dict[str, tuple] = {}
    for i, oodset in enumerate(sets):
        say(f"OOD set {i + 1}/{len(sets)}: {oodset.name} ({len(oodset)} images)")
        s, out = score(oodset.images)
        raw[oodset.name] = {n: s[n] for n in test_scores}
        entry: dict[str, Any] = {"kind": oodset.kind, "size": len(oodset)}
        if oodset.labels is not None:
            # Corrupted sets keep their labels: accuracy under covariate shift.
            entry["accuracy"] = float(np.mean(s["prediction"] == oodset.labels))
            entry["ece"] = ece(tables.softmax(out["logits"]), oodset.labels, 15)
            if has_tac:
                entry["tac_accuracy"] = float(np.mean(s["tac_prediction"] == oodset.labels))
        entry["scores"] = tables.ood_table(
            test_scores, raw[oodset.name], bootstrap=bootstrap, seed=seed
        )
        entries[oodset.name] = entry
        if has_tac:
            profiles[oodset.name] = (out["activation"], s["prediction"], oodset.kind)
    return entries, raw, profiles


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Where thresholds are chosen and where they are measured (see `threshold_split`).

    Attributes:
      split: ``"validation"`` or ``"test_half"``.
      val_scores: every score and prediction on the examples that choose thresholds.
      val_labels: their labels.
      held_scores: the same on the examples that report.
      held_labels: their labels.
    """

    split: str
    val_scores: dict[str, np.ndarray]
    val_labels: np.ndarray
    held_scores: dict[str, np.ndarray]
    held_labels: np.ndarray

    @property
    def val_correct(self) -> np.ndarray:
        return self.val_scores["prediction"] == self.val_labels

    @property
    def held_correct(self) -> np.ndarray:
        return self.held_scores["prediction"] == self.held_labels

    def info(self) -> dict[str, Any]:
        """``threshold_split``, ``val_size`` and ``value_test_size`` (``evaluation``)."""
        return {
            "threshold_split": self.split,
            "val_size": int(len(self.val_labels)),
            "value_test_size": int(len(self.held_labels)),
        }


def thresholds(
    test_scores: dict[str, np.ndarray],
    labels: np.ndarray,
    validation: dict[str, np.ndarray] | None,
    score: Score,
    seed: int,
) -> Thresholds:
    """The validation split scored (or the test split halved): what the value table and
    the guaranteed-risk thresholds calibrate on, and what they report on."""
    split_name, val_index, test_index = threshold_split(len(labels), validation is not None, seed)
    if val_index is None:
        val_scores, _ = score(validation["image"])
        val_labels = np.asarray(validation["label"])
    else:
        val_scores = {k: v[val_index] for k, v in test_scores.items()}
        val_labels = labels[val_index]
    held = {k: v[test_index] for k, v in test_scores.items()}
    return Thresholds(split_name, val_scores, val_labels, held, labels[test_index])


def value_metrics(
    data: Thresholds, names: Sequence[str], grid: list[float], costs: Costs
) -> dict[str, Any]:
    """The ``value`` section: per score, combined policies, references; thresholds
    chosen on ``data``'s first part, values on its second."""
    val_scores, held, val_labels, held_labels = (
        data.val_scores, data.held_scores, data.val_labels, data.held_labels,
    )  # fmt: skip
    return {
        "c_err": grid,
        "scores": tables.value_table(
            {n: val_scores[n] for n in names},
            data.val_correct,
            {n: held[n] for n in names},
            data.held_correct,
            c_err_grid=grid,
            costs=costs,
        ),
        "policies": tables.policy_table(
            tables.Split(
                val_scores, val_scores["prediction"], val_scores.get("tac_prediction"), val_labels
            ),
            tables.Split(held, held["prediction"], held.get("tac_prediction"), held_labels),
            c_err_grid=grid,
            costs=costs,
        ),
        "reference": tables.reference_values(data.held_correct, c_err_grid=grid, costs=costs),
    }


def guarantee_metrics(data: Thresholds, names: Sequence[str], seed: int) -> dict[str, Any]:
    """The ``guarantee`` section (`tac_jax.evaluate.reporting.guarantee`): thresholds of
    guaranteed selective risk calibrated on ``data``'s first part, measured on its
    second, and over repeated random splits of the two pooled."""
    return guarantee_section(
        {n: data.val_scores[n] for n in names},
        data.val_correct,
        {n: data.held_scores[n] for n in names},
        data.held_correct,
        seed=seed,
        calibration=data.split,
    )
