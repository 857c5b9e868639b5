"""Selective classification with a guaranteed risk, per score: the report's numbers.

For each score, method (SGR, Learn then Test; `tac_jax.metrics.guarantee`) and target
risk ``r*``, two views of the same guarantee, "the error rate among the accepted is at
most ``r*`` with probability ``1 - δ``":

* deployed: the threshold calibrated on the validation split, and the coverage and
  risk it achieves on the test split;
* repeated splits: the validation and test splits pooled, then split at random into
  calibration and test parts many times; the mean coverage and risk on the test parts
  and the fraction of splits whose risk stayed at most ``r*``.

Why the pool and not the test split alone: a random split of a pool is exchangeable by
construction, so the fraction of splits that hold measures the procedure's guarantee
itself, whatever differs between the validation and test splits (the deployed row
shows that), and the pool gives each split about as many calibration examples as the
validation split would, where halving the test split would give fewer. The risk of a
split is measured on its finite test part, so it scatters around the true risk: the
fraction that hold can dip below ``1 - δ`` when the true risk is close to ``r*``.

Non-finite scores are ranked as everywhere in the report
(`tac_jax.evaluate.reporting.tables.finite`: NaN and −inf least confident).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate.reporting.markdown import Cell, markdown_table
from tac_jax.evaluate.reporting.tables import finite
from tac_jax.metrics.guarantee import METHODS, accept, calibrate, repeated_splits

RISKS = (0.02, 0.05, 0.1)
DELTA = 0.1
SPLITS = 100
CALIBRATION_FRACTION = 0.5
# What calibrates the deployed threshold, and what measures it, in a report's words.
_CALIBRATION = {
    "validation": ("the validation split", "the test split"),
    "test_half": ("half the test split", "its other half"),
}


def _checked(
    scores: Mapping[str, Any], correct: Any, what: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    c = np.asarray(correct)
    if c.ndim != 1 or not (c.dtype == np.bool_ or np.isin(c, (0, 1)).all()):
        raise ValueError(f"expected {what}_correct as a 1-D bool array, got shape {c.shape}")
    out = {}
    for name, s in scores.items():
        s = np.asarray(s)
        if s.shape != c.shape:
            raise ValueError(
                f"expected {what} scores of shape {c.shape} like {what}_correct, got "
                f"{s.shape} for {name!r}"
            )
        out[name] = finite(s)
    return out, c.astype(bool)


def guarantee_table(
    val_scores: Mapping[str, Any],
    val_correct: Any,
    test_scores: Mapping[str, Any],
    test_correct: Any,
    *,
    risks: Sequence[float] = RISKS,
    delta: float = DELTA,
    methods: Sequence[str] = METHODS,
    splits: int = SPLITS,
    calibration_fraction: float = CALIBRATION_FRACTION,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (score, method, ``r*``): deployed and repeated-split numbers.

    Args:
      val_scores: ``{score: (N_val,)}`` on the validation split (calibration).
      val_correct: ``(N_val,)`` whether the gated prediction (the base head's) is right.
      test_scores: ``{score: (N_test,)}``, the same names.
      test_correct: ``(N_test,)``.
      risks: the target risks ``r*``, each in (0, 1).
      delta: ``δ`` in (0, 1).
      methods: from ``("sgr", "ltt")``.
      splits: random calibration/test splits of the pooled examples.
      calibration_fraction: the calibrated share of each split.
      seed: the splits' seed (the same splits for every score, method and ``r*``).

    Returns:
      Rows of plain Python numbers: ``score``, ``method``, ``risk`` (``r*``), ``delta``;
      deployed: ``threshold`` (``inf``: reject everything), ``val_accepted``,
      ``val_coverage``, ``val_risk``, ``bound`` (SGR) or ``p_value`` (LTT, else NaN),
      ``test_coverage``, ``test_risk`` (0 when nothing is accepted), ``test_held``
      (``test_risk <= r*``); repeated splits: ``split_coverage_mean``,
      ``split_coverage_std``, ``split_risk_mean``, ``split_risk_std``,
      ``split_held_fraction``, ``split_rejected_fraction`` (calibration accepted
      nothing), ``splits``. Infinite and NaN values are for
      `tac_jax.evaluate.reporting.measure.jsonable` to turn into null.

    >>> s = np.linspace(0, 1, 400)
    >>> rows = guarantee_table({"msp": s}, s > 0.1, {"msp": s}, s > 0.1, risks=[0.1],
    ...                        methods=["sgr"], splits=10)
    >>> [(r["score"], r["method"], r["risk"], r["test_held"], r["split_held_fraction"])
    ...  for r in rows]
    [('msp', 'sgr', 0.1, True, 1.0)]
    """
    val, val_c = _checked(val_scores, val_correct, "val")
    test, test_c = _checked(test_scores, test_correct, "test")
    if set(val) != set(test):
        raise ValueError(
            f"expected the same scores on both splits, got {sorted(val)} and {sorted(test)}"
        )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"expected methods from {METHODS}, got {unknown}")
    pooled_c = np.r_[val_c, test_c]
    rows = []
    for name in val:
        pooled = np.r_[val[name], test[name]]
        for method in methods:
            for risk in risks:
                cal = calibrate(val[name], val_c, risk, delta, method)
                taken = accept(test[name], cal.threshold)
                test_risk = float(np.mean(~test_c[taken])) if taken.any() else 0.0
                rep = repeated_splits(
                    pooled, pooled_c, risk, delta, method, splits=splits,
                    calibration_fraction=calibration_fraction, seed=seed,
                )  # fmt: skip
                rows.append(
                    {
                        "score": name,
                        "method": method,
                        "risk": float(risk),
                        "delta": float(delta),
                        "threshold": cal.threshold,
                        "val_accepted": cal.accepted,
                        "val_coverage": cal.coverage,
                        "val_risk": cal.risk,
                        "bound": cal.bound,
                        "p_value": cal.p_value,
                        "test_coverage": float(taken.mean()),
                        "test_risk": test_risk,
                        "test_held": bool(test_risk <= risk),
                        "split_coverage_mean": rep.coverage_mean,
                        "split_coverage_std": rep.coverage_std,
                        "split_risk_mean": rep.risk_mean,
                        "split_risk_std": rep.risk_std,
                        "split_held_fraction": rep.held_fraction,
                        "split_rejected_fraction": rep.rejected_fraction,
                        "splits": rep.splits,
                    }
                )
    return rows


def guarantee_section(
    val_scores: Mapping[str, Any],
    val_correct: Any,
    test_scores: Mapping[str, Any],
    test_correct: Any,
    *,
    risks: Sequence[float] = RISKS,
    delta: float = DELTA,
    methods: Sequence[str] = METHODS,
    splits: int = SPLITS,
    calibration_fraction: float = CALIBRATION_FRACTION,
    seed: int = 0,
    calibration: str = "validation",
) -> dict[str, Any]:
    """``metrics.json``'s ``guarantee`` section: the settings and `guarantee_table`'s rows.

    Args:
      calibration: what ``val_*`` is: ``"validation"`` (the validation split, measured
        on the test split) or ``"test_half"`` (a run without one: half the test split,
        measured on the other half); the rest as in `guarantee_table`.

    Returns:
      ``{"delta", "risks", "methods", "splits", "calibration_fraction", "seed",
      "calibration", "val_size", "test_size", "pool", "rows": [...]}``; ``pool`` names
      what the repeated splits draw from.
    """
    if calibration not in _CALIBRATION:
        raise ValueError(f"expected calibration in {sorted(_CALIBRATION)}, got {calibration!r}")
    rows = guarantee_table(
        val_scores, val_correct, test_scores, test_correct, risks=risks, delta=delta,
        methods=methods, splits=splits, calibration_fraction=calibration_fraction, seed=seed,
    )  # fmt: skip
    return {
        "delta": float(delta),
        "risks": [float(r) for r in risks],
        "methods": list(methods),
        "splits": int(splits),
        "calibration_fraction": float(calibration_fraction),
        "seed": int(seed),
        "calibration": calibration,
        "val_size": int(len(val_correct)),
        "test_size": int(len(test_correct)),
        "pool": "validation+test" if calibration == "validation" else "test",
        "rows": rows,
    }


def _number(x: Any) -> float | None:
    """A float, or None for a missing, null or NaN value."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _threshold(row: Mapping[str, Any]) -> str:
    t = row.get("threshold")
    if not row.get("val_accepted") or t is None or t == math.inf:
        return "reject all"
    return f"{t:.4g}"


def _value(cell: Cell) -> float | None:
    return cell[0] if isinstance(cell, tuple) else cell if isinstance(cell, float) else None


def _with_std(mean: Any, std: Any) -> Cell:
    std = _number(std)
    return (_number(mean), "" if std is None else f" ± {std:.3f}")


def guarantee_markdown(
    rows: Sequence[Mapping[str, Any]], *, scores: Sequence[str] | None = None
) -> str:
    """The rows of `guarantee_table` (or read back from ``metrics.json``) as markdown:
    one table per ``r*``, best coverages in bold.

    Args:
      rows: `guarantee_table`'s rows.
      scores: the scores shown, in this order (default: all, in the rows' order).

    >>> row = {"score": "msp", "method": "sgr", "risk": 0.1, "threshold": 0.5,
    ...        "val_accepted": 80, "val_coverage": 0.8, "test_coverage": 0.75,
    ...        "test_risk": 0.08, "test_held": True, "split_coverage_mean": 0.7,
    ...        "split_coverage_std": 0.05, "split_risk_mean": 0.09,
    ...        "split_held_fraction": 0.95}
    >>> print(guarantee_markdown([row]))
    r* = 0.1:
    <BLANKLINE>
    | score | method | threshold | val cov. | test cov. ↑ | test risk | test ≤ r* | splits: cov. ↑ | splits: risk | splits ≤ r* |
    |---|---|---|---|---|---|---|---|---|---|
    | `msp` | sgr | 0.5 | 0.800 | 0.750 | 0.080 | yes | 0.700 ± 0.050 | 0.090 | 0.950 |
    """
    names = list(dict.fromkeys(r["score"] for r in rows)) if scores is None else list(scores)
    header = [
        "score", "method", "threshold", "val cov.", "test cov. ↑", "test risk", "test ≤ r*",
        "splits: cov. ↑", "splits: risk", "splits ≤ r*",
    ]  # fmt: skip
    better = [None, None, None, None, "high", None, None, "high", None, None]
    tables = []
    for risk in dict.fromkeys(r["risk"] for r in rows):
        chosen = [r for r in rows if r["risk"] == risk and r["score"] in names]
        chosen.sort(key=lambda r: names.index(r["score"]))
        table_rows: list[list[Cell]] = [
            [
                f"`{r['score']}`",
                r["method"],
                _threshold(r),
                _number(r.get("val_coverage")),
                _number(r.get("test_coverage")),
                _number(r.get("test_risk")),
                "yes" if r.get("test_held") else "no",
                _with_std(r.get("split_coverage_mean"), r.get("split_coverage_std")),
                _number(r.get("split_risk_mean")),
                _number(r.get("split_held_fraction")),
            ]
            for r in chosen
        ]
        if table_rows:
            # No bold where every threshold rejects everything.
            shown = [b if b is None or any(_value(r[j]) for r in table_rows) else None
                     for j, b in enumerate(better)]  # fmt: skip
            tables.append(f"r* = {risk:g}:\n\n" + markdown_table(header, table_rows, shown, 3))
    return "\n\n".join(tables)


def guarantee_lines(
    section: Mapping[str, Any], *, scores: Sequence[str] | None = None
) -> list[str]:
    """The report's lines for `guarantee_section`'s output (possibly read back from
    JSON): a ``##`` heading, what the numbers mean, and `guarantee_markdown`."""
    methods = " and ".join(
        {"sgr": "SGR (Geifman & El-Yaniv, 2017)", "ltt": "Learn then Test (Angelopoulos et "
         "al., 2021)"}.get(m, m) for m in section["methods"]
    )  # fmt: skip
    calibrated, measured = _CALIBRATION[section.get("calibration", "validation")]
    pooled = "validation and test" if section.get("pool") != "test" else "the test split's halves"
    return [
        "## Selective classification with a guaranteed risk",
        "",
        f"Thresholds by {methods} such that the base head's error rate among the accepted "
        f"is at most r* with probability {1 - section['delta']:g} (δ = {section['delta']:g}). "
        f"Deployed: calibrated on {calibrated} ({section['val_size']} examples), "
        f"measured on {measured} ({section['test_size']}); test risk is 0 when nothing "
        f"is accepted. Splits: {pooled} pooled and split at random "
        f"{section['splits']} times ({section['calibration_fraction']:g} calibration); "
        f"mean ± std coverage, mean risk and the fraction of splits with risk ≤ r*.",
        "",
        guarantee_markdown(section["rows"], scores=scores),
        "",
    ]


__all__ = [
    "guarantee_lines",
    "guarantee_markdown",
    "guarantee_section",
    "guarantee_table",
]
