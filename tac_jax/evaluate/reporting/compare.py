"""One table of every method: the evaluated runs of a comparison, side by side.

Each training-time method is its own run (a base with TAC, an ensemble, an SNGP
network, ...), evaluated by `tac_jax.evaluate.harness.evaluate_run` on the same suite
with the same seed, so every run sees the same OOD sets, corrupted copies and attacked
test subset. `compare_runs` reads their ``report/metrics.json`` and writes one
``compare.md`` and ``compare.json``: a row per (run, score), each score measured against
its own run's predictions (misclassification, value) and test scores (OOD, attacks), plus
a row per run for accuracy, calibration and accuracy under shift.

Which scores a run contributes: every score of a run trained without a method (the
post-hoc scores and TAC's), and a method run's own family (e.g. ``ensemble_*``) plus its
MSP, the same network's post-hoc baseline. A TAC add-on on a base an earlier run already
brought (e.g. TAC trained adversarially on the same base: every non-TAC score has the
same misclassification and OOD AUROCs) contributes only TAC's scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from tac_jax.evaluate.reporting.colours import colour_map
from tac_jax.evaluate.reporting.guarantee import DELTA
from tac_jax.evaluate.reporting.markdown import markdown_table

METRICS = os.path.join("report", "metrics.json")
# The evaluation settings that must agree for runs to be compared.
SAME = ("suite", "num_ood", "severities", "seed", "test_size", "epsilons")
METHOD_FAMILIES = ("confidence", "ensemble", "sngp")
VALUE_COSTS = (1, 5, 10)
# The target risk whose guaranteed (SGR) coverage the table shows.
GUARANTEE_RISK = 0.05


def load_metrics(workdir: str | os.PathLike) -> dict[str, Any]:
    """A run's ``report/metrics.json``.

    Raises:
      FileNotFoundError: if the run has not been evaluated.
    """
    path = os.path.join(os.fspath(workdir), METRICS)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"expected an evaluated run with {METRICS} (run `tac-jax evaluate` first), got "
            f"none in {workdir}"
        )
    with open(path) as f:
        return json.load(f)


def _method(m: Mapping[str, Any]) -> str:
    config = m.get("run", {}).get("config", {})
    return (config.get("method") or {}).get("name", "none")


def describe(m: Mapping[str, Any]) -> str:
    """What a run is: its method, or its mode (with adversarial TAC training)."""
    method = _method(m)
    if method != "none":
        return method
    config = m.get("run", {}).get("config", {})
    mode = config.get("mode", m.get("run", {}).get("mode", "?"))
    eps = (config.get("tac") or {}).get("adversarial_epsilon") or 0
    if mode in ("addon", "scratch"):
        return f"TAC {mode}" + (f", adversarial ε={eps:g}" if eps else "")
    return mode


def base_signature(m: Mapping[str, Any]) -> tuple:
    """The non-TAC scores' misclassification and mean OOD AUROCs: equal for two runs on
    one base network (a frozen base scores the same wherever its TAC head was trained)."""
    rows = m["summary"].items()
    return tuple(
        (n, r["misclassification_auroc"], r.get("mean_ood_auroc"))
        for n, r in rows
        if r["family"] != "tac"
    )


def contributed_scores(m: Mapping[str, Any], seen: Collection[tuple] = ()) -> list[str]:
    """The scores a run brings to the comparison (see the module docstring); a TAC run
    whose `base_signature` is in ``seen`` brings TAC's scores alone."""
    names = list(m["summary"])
    method = _method(m)
    tac = [n for n in names if m["summary"][n]["family"] == "tac"]
    if tac and base_signature(m) in seen:
        return tac
    if method not in METHOD_FAMILIES:
        return names
    own = [n for n in names if m["summary"][n]["family"] == method]
    return (["msp"] if "msp" in names else []) + own


def _check_comparable(runs: Mapping[str, Mapping[str, Any]]) -> None:
    first_label, first = next(iter(runs.items()))
    for label, m in runs.items():
        for key in SAME:
            a, b = first["evaluation"].get(key), m["evaluation"].get(key)
            if a != b:
                raise ValueError(
                    f"expected runs evaluated alike, got {key} = {b!r} in {label!r} and "
                    f"{a!r} in {first_label!r}"
                )


def _shift_at(m: Mapping[str, Any], severity: str, key: str) -> float | None:
    level = ((m.get("shift") or {}).get("by_severity") or {}).get(severity)
    return level.get(key) if level else None


def compare_rows(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The comparison as JSON-able rows.

    Args:
      runs: ``{label: metrics.json contents}``, in display order.

    Returns:
      ``{"runs": {label: {...}}, "scores": [{"run", "score", ...}], "epsilons",
      "targets"}``.

    Raises:
      ValueError: if the runs were evaluated with different settings.
    """
    if not runs:
        raise ValueError("expected at least one evaluated run, got none")
    _check_comparable(runs)
    severities = [str(s) for s in next(iter(runs.values()))["evaluation"].get("severities", [])]
    top = severities[-1] if severities else None
    run_rows, score_rows = {}, []
    targets: list[str] = []
    seen: set[tuple] = set()
    for label, m in runs.items():
        run_rows[label] = {
            "method": describe(m),
            "model": m["run"].get("model"),
            "accuracy": m["accuracy"]["base"],
            "tac_accuracy": m["accuracy"].get("tac"),
            "ece": m["calibration"]["ece"],
            "nll": m["calibration"]["nll"],
            "shift_severity": top,
            "shift_accuracy": _shift_at(m, top, "accuracy") if top else None,
            "shift_ece": _shift_at(m, top, "ece") if top else None,
        }
        adversarial = m.get("adversarial") or {}
        for target in adversarial:
            if target not in targets:
                targets.append(target)
        # Robust accuracy: the base head under attack on itself, TAC's prediction under
        # attack on TAC's codes.
        for key, entry in (adversarial.get("base") or {}).get("by_epsilon", {}).items():
            run_rows[label][f"robust_accuracy_eps{float(key):g}"] = entry["robust_accuracy"]
        for key, entry in (adversarial.get("tac") or {}).get("by_epsilon", {}).items():
            run_rows[label][f"tac_robust_accuracy_eps{float(key):g}"] = entry.get(
                "tac_robust_accuracy"
            )
        for key, entry in (adversarial.get("base_fgsm") or {}).get("by_epsilon", {}).items():
            run_rows[label][f"fgsm_robust_accuracy_eps{float(key):g}"] = entry["robust_accuracy"]
        names = contributed_scores(m, seen)
        seen.add(base_signature(m))
        for name in names:
            s = m["summary"][name]
            row = {
                "run": label,
                "score": name,
                "family": s["family"],
                "misclassification_auroc": s["misclassification_auroc"],
                "augrc": s.get("augrc"),
                f"sgr_coverage_r{GUARANTEE_RISK:g}": s.get(f"sgr_coverage_r{GUARANTEE_RISK:g}"),
                "mean_ood_auroc": s.get("mean_ood_auroc"),
            }
            for kind in ("near", "far", "corruption", "synthetic"):
                row[f"mean_ood_auroc_{kind}"] = s.get(f"mean_ood_auroc_{kind}")
            for c in VALUE_COSTS:
                row[f"value_c_err_{c}"] = s.get(f"value_c_err_{c}")
            row.update({k: v for k, v in s.items() if k.startswith("adversarial_auroc_")})
            score_rows.append(row)
    epsilons = next(iter(runs.values()))["evaluation"].get("epsilons") or []
    return {"runs": run_rows, "scores": score_rows, "epsilons": epsilons, "targets": targets}


def render_compare(table: Mapping[str, Any]) -> str:
    """``compare.md`` from `compare_rows`' output."""
    runs = table["runs"]
    lines = [
        "# Every method, side by side",
        "",
        *([f"![{table['figure']}]({table['figure']})", ""] if table.get("figure") else []),
        "Each row is measured on its own run: misclassification, AUGRC, guaranteed "
        "coverage and value against that run's own predictions, OOD and attack detection "
        "against its own test scores. The runs share the suite, seed, corrupted copies and "
        "attacked test subset. Coverage at risk ≤ r* (SGR): the test coverage of the "
        f"threshold calibrated (δ = {DELTA:g}) to keep the error rate among the accepted "
        "at most r*.",
        "",
        "## Runs",
        "",
        "Robust accuracy: the run's prediction under PGD (FGSM: under FGSM) against "
        "itself; TAC robust accuracy: TAC's own prediction under PGD against TAC's codes.",
        "",
    ]
    sev = next(iter(runs.values()))["shift_severity"]
    eps = [float(e) for e in table["epsilons"]]
    header = ["run", "method", "accuracy ↑", "TAC accuracy ↑", "ECE ↓", "NLL ↓"]
    header += [f"accuracy at severity {sev} ↑", f"ECE at severity {sev} ↓"] if sev else []
    header += [f"robust accuracy ε={e:g} ↑" for e in eps]
    header += [f"TAC robust accuracy ε={e:g} ↑" for e in eps]
    fgsm = any(f"fgsm_robust_accuracy_eps{e:g}" in r for r in runs.values() for e in eps)
    header += [f"FGSM robust accuracy ε={e:g} ↑" for e in eps] if fgsm else []
    rows = []
    for label, r in runs.items():
        row = [label, r["method"], r["accuracy"], r["tac_accuracy"], r["ece"], r["nll"]]
        row += [r["shift_accuracy"], r["shift_ece"]] if sev else []
        row += [r.get(f"robust_accuracy_eps{e:g}") for e in eps]
        row += [r.get(f"tac_robust_accuracy_eps{e:g}") for e in eps]
        rows.append(row + ([r.get(f"fgsm_robust_accuracy_eps{e:g}") for e in eps] if fgsm else []))
    better = [None, None, "high", "high", "low", "low"] + (["high", "low"] if sev else [])
    better += ["high"] * ((3 if fgsm else 2) * len(eps))
    lines += [markdown_table(header, rows, better, 3), "", "## Scores", ""]
    kinds = [
        k
        for k in ("near", "far", "corruption", "synthetic")
        if any(r.get(f"mean_ood_auroc_{k}") is not None for r in table["scores"])
    ]
    coverage = f"sgr_coverage_r{GUARANTEE_RISK:g}"
    header = ["run", "score", "misclassification AUROC ↑", "AUGRC ↓",
              f"coverage at risk ≤ {GUARANTEE_RISK:g} (SGR) ↑", "mean OOD AUROC ↑"]  # fmt: skip
    header += [f"{k} ↑" for k in kinds] + [f"value c_err={c} ↑" for c in VALUE_COSTS]
    rows = []
    for r in table["scores"]:
        row = [r["run"], f"`{r['score']}`", r["misclassification_auroc"], r.get("augrc")]
        row += [r.get(coverage), r["mean_ood_auroc"]]
        row += [r.get(f"mean_ood_auroc_{k}") for k in kinds]
        rows.append(row + [r.get(f"value_c_err_{c}") for c in VALUE_COSTS])
    better = [None, None, "high", "low"] + ["high"] * (len(header) - 4)
    lines += [markdown_table(header, rows, better, 3), ""]
    if table["targets"] and table["epsilons"]:
        lines += [
            "## Adversarial detection",
            "",
            "AUROC of clean test inputs against their PGD copies (L∞, 10 steps, random "
            "start), attacking each run's prediction head (`base`) or TAC's codes (`tac`).",
            "",
        ]
        cols = [(t, e) for t in table["targets"] for e in table["epsilons"]]
        header = ["run", "score"] + [f"{t} ε={e:g} ↑" for t, e in cols]
        rows = [
            [r["run"], f"`{r['score']}`"]
            + [r.get(f"adversarial_auroc_{t}_eps{float(e):g}") for t, e in cols]
            for r in table["scores"]
        ]
        lines += [markdown_table(header, rows, [None, None] + ["high"] * len(cols), 3), ""]
    return "\n".join(lines)


FIGURE_FILE = "compare.png"


def compare_figure(directory: str | os.PathLike, runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Accuracy and ECE against corruption severity, one line per run (Ovadia et al.'s
    comparison of methods under shift), and robust accuracy against ε."""
    # matplotlib only when drawing.
    from tac_jax.evaluate.reporting.canvas import new_figure, save_figure

    colour = colour_map(list(runs))
    fig = new_figure(15, 4.2)
    axes = fig.subplots(1, 3)
    for label, m in runs.items():
        levels = ((m.get("shift") or {}).get("by_severity")) or {}
        sev = sorted(levels, key=int)
        kw = {"color": colour[label], "marker": "o", "label": label}
        if sev:
            axes[0].plot([int(k) for k in sev], [levels[k]["accuracy"] for k in sev], **kw)
            axes[1].plot([int(k) for k in sev], [levels[k]["ece"] for k in sev], **kw)
        base = (m.get("adversarial") or {}).get("base")
        if base:
            eps = [0.0] + [float(k) for k in base["by_epsilon"]]
            acc = [base["clean_accuracy"]]
            acc += [e["robust_accuracy"] for e in base["by_epsilon"].values()]
            axes[2].plot(eps, acc, **kw)
        tac = (m.get("adversarial") or {}).get("tac")
        if tac and tac.get("clean_tac_accuracy") is not None:
            eps = [0.0] + [float(k) for k in tac["by_epsilon"]]
            acc = [tac["clean_tac_accuracy"]]
            acc += [e.get("tac_robust_accuracy") for e in tac["by_epsilon"].values()]
            axes[2].plot(eps, acc, **{**kw, "ls": "--", "label": f"{label}: TAC's prediction"})
    titles = ("accuracy under shift", "ECE under shift", "robust accuracy (PGD on itself)")
    xlabels = ("corruption severity (0 = clean)",) * 2 + ("ε (L∞)",)
    ylabels = ("accuracy ↑", "ECE (15 bins) ↓", "accuracy on attacked inputs ↑")
    for ax, title, xl, yl in zip(axes, titles, xlabels, ylabels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, os.fspath(directory), FIGURE_FILE)


def compare_runs(
    workdirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Writes ``compare.md`` and ``compare.json`` of evaluated runs into ``out_dir``.

    Args:
      workdirs: evaluated runs (each with ``report/metrics.json``).
      out_dir: where to write.
      labels: a name per run (default: each workdir's base name).
      plots: also draw ``compare.png`` (`compare_figure`).

    Returns:
      What ``compare.json`` holds.
    """
    workdirs = [os.fspath(w) for w in workdirs]
    labels = list(labels) if labels else [os.path.basename(w.rstrip("/")) for w in workdirs]
    if len(labels) != len(workdirs) or len(set(labels)) != len(labels):
        raise ValueError(f"expected one distinct label per run, got {labels} for {workdirs}")
    runs = {lab: load_metrics(w) for lab, w in zip(labels, workdirs, strict=True)}
    table = compare_rows(runs)
    os.makedirs(out_dir, exist_ok=True)
    table["figure"] = compare_figure(out_dir, runs) if plots else None
    with open(os.path.join(out_dir, "compare.json"), "w") as f:
        json.dump(table, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out_dir, "compare.md"), "w") as f:
        f.write(render_compare(table))
    return table
