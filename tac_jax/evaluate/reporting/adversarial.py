"""Adversarial evaluation: robust accuracy and how well each score flags attacked inputs.

The TAC paper's claim (e) (METHODS §1) is that small-norm attacks match TAC's class
codes worse than clean inputs do, so TAC's confidence drops on them. This module
measures it: the attacked inputs come from
`tac_jax.evaluate.ood.attacks`, and `adversarial_table` reports, per ε, the
accuracy left on the attacked copies and every score's detection metrics with the
clean inputs as positives and their attacked copies as negatives (the same metrics as
`tables.ood_table`, so they read like the OOD sets' rows).

`adversarial_lines` and `adversarial_figure` turn a table into report lines and a PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate.reporting.colours import colour_map, score_styles
from tac_jax.evaluate.reporting.figure_scores import best_scores
from tac_jax.evaluate.reporting.markdown import markdown_table
from tac_jax.evaluate.reporting.tables import ood_table

FIGURE_FILE = "adversarial.png"
_TARGET_STYLES = ("-", "--", ":", "-.")


def _accuracy(prediction: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(prediction) == labels))


def _success(clean_pred: np.ndarray, adv_pred: np.ndarray, labels: np.ndarray) -> float:
    """The share of clean-correct examples the attack made wrong (NaN when none is right)."""
    right = np.asarray(clean_pred) == labels
    if not right.any():
        return math.nan
    return float(np.mean(np.asarray(adv_pred)[right] != labels[right]))


def _check_outputs(outputs: Mapping[str, Any], keys: Sequence[str], n: int, what: str) -> None:
    for key in keys:
        if key not in outputs:
            raise ValueError(f"expected {what} to hold {key!r}, got keys {sorted(outputs)}")
        if np.shape(outputs[key]) != (n,):
            raise ValueError(
                f"expected {what}[{key!r}] of shape ({n},), got {np.shape(outputs[key])}"
            )


def adversarial_table(
    clean: Mapping[str, np.ndarray],
    adversarial: Mapping[float, Mapping[str, np.ndarray]],
    labels: np.ndarray,
    names: Sequence[str],
    *,
    attack: Mapping[str, Any] | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Robust accuracy and detection of attacked inputs, per ε.

    Args:
      clean: ``{"prediction": (N,), ["tac_prediction": (N,)], name: (N,) scores}`` on
        the clean inputs; scores higher = more in-distribution.
      adversarial: ``{epsilon: the same dict}`` on the attacked copies of those inputs.
      labels: ``(N,)`` integer labels.
      names: the scores to evaluate.
      attack: how the inputs were attacked (e.g. `make_attack`'s ``settings``), kept
        as the section's ``"attack"`` for the report.
      bootstrap: resamples of the AUROC intervals (0: none).
      seed: the resampling seed.

    Returns:
      ``{"size", "scores", ["attack"], "clean_accuracy", ["clean_tac_accuracy"],
      "epsilons", "by_epsilon": {str(ε): {"epsilon", "robust_accuracy",
      ["tac_robust_accuracy"], "attack_success", ["tac_attack_success"], "detection":
      {name: {"auroc", "auroc_ci", "aupr_in", "aupr_out", "fpr_at_95_tpr"}}}}}``, with
      bracketed keys present only when given; ε ascending.

    >>> clean = {"prediction": np.array([0, 1]), "s": np.array([1.0, 2.0])}
    >>> adv = {0.1: {"prediction": np.array([0, 0]), "s": np.array([0.0, 0.5])}}
    >>> t = adversarial_table(clean, adv, np.array([0, 1]), ["s"])
    >>> row = t["by_epsilon"]["0.1"]
    >>> row["robust_accuracy"], row["attack_success"], row["detection"]["s"]["auroc"]
    (0.5, 0.5, 1.0)
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected 1-D integer labels, got shape {y.shape} and dtype {y.dtype}")
    if not adversarial:
        raise ValueError("expected at least one epsilon in adversarial, got none")
    n, names = len(y), list(names)
    tac = "tac_prediction" in clean
    keys = ["prediction", *(["tac_prediction"] if tac else []), *names]
    _check_outputs(clean, keys, n, "clean")
    epsilons = sorted(float(e) for e in adversarial)
    if epsilons[0] < 0 or len(set(epsilons)) != len(adversarial):
        raise ValueError(f"expected distinct non-negative epsilons, got {list(adversarial)}")
    out: dict[str, Any] = {"size": n, "scores": names}
    if attack is not None:
        out["attack"] = dict(attack)
    out["clean_accuracy"] = _accuracy(clean["prediction"], y)
    if tac:
        out["clean_tac_accuracy"] = _accuracy(clean["tac_prediction"], y)
    out["epsilons"] = epsilons
    by_epsilon = {}
    for key in sorted(adversarial, key=float):
        adv = adversarial[key]
        _check_outputs(adv, keys, n, f"adversarial[{key}]")
        row: dict[str, Any] = {"epsilon": float(key)}
        for prefix in ("", "tac_") if tac else ("",):
            pred = f"{prefix}prediction"
            row[f"{prefix}robust_accuracy"] = _accuracy(adv[pred], y)
            row[f"{prefix}attack_success"] = _success(clean[pred], adv[pred], y)
        row["detection"] = ood_table(
            {s: clean[s] for s in names}, {s: adv[s] for s in names}, bootstrap=bootstrap, seed=seed
        )
        by_epsilon[str(float(key))] = row
    out["by_epsilon"] = by_epsilon
    return out


def _num(x: Any) -> float | None:
    """NaN (or JSON's null) as None, which `markdown_table` shows as "–"."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def epsilon_text(epsilon: float) -> str:
    """ε as written in papers: ``0.3``, or ``20/255`` when a short decimal is inexact.

    >>> epsilon_text(0.3), epsilon_text(20 / 255), epsilon_text(0.0)
    ('0.3', '20/255', '0')
    """
    text = f"{epsilon:.4g}"
    k = round(epsilon * 255)
    if float(text) != epsilon and math.isclose(epsilon * 255, k, abs_tol=1e-6):
        return f"{k}/255"
    return text


def adversarial_lines(section: Mapping[str, Any], *, target: str) -> list[str]:
    """The report's lines for one attacked target: a paragraph and two tables.

    Args:
      section: an `adversarial_table` output (possibly read back from JSON).
      target: what the attack ascended, e.g. ``"base head"`` or ``"TAC codes"``.

    Returns:
      Markdown lines, starting with a ``##`` heading.
    """
    settings = section.get("attack", {})
    method = settings.get("method", "pgd")
    norm = {"linf": "L∞", "l2": "L2"}.get(settings.get("norm"), settings.get("norm", "?"))
    steps = settings.get("steps", "?")
    size = "ε/10" if settings.get("norm", "linf") == "linf" else "2.5·ε/steps"
    start = ", random start" if settings.get("random_start") else ""
    if method == "fgsm":
        name, how = "FGSM", "FGSM (one L∞ step of ε from the input)"
    else:
        name, how = "PGD", f"{norm} PGD ({steps} steps of {size}{start})"
    rows_by_eps = [section["by_epsilon"][k] for k in section["by_epsilon"]]
    eps_list = ", ".join(epsilon_text(r["epsilon"]) for r in rows_by_eps)
    tac = "clean_tac_accuracy" in section
    lines = [
        f"## Adversarial inputs: {name} on the {target}",
        "",
        f"{how} ascending the cross-entropy of the "
        f"{target}, on {section['size']} test inputs, ε ∈ {{{eps_list}}}. Robust accuracy "
        "is the accuracy on the attacked copies; attack success is the share of correctly "
        "classified inputs the attack made wrong. Detection takes the clean inputs as "
        "positives and their attacked copies as negatives: an AUROC above 0.5 means the "
        "score ranks attacked inputs lower (the TAC paper's claim (e)).",
        "",
    ]
    header = ["ε", "base accuracy", "base attack success"]
    if tac:
        header += ["TAC accuracy", "TAC attack success"]
    clean_row: list[Any] = ["clean", section["clean_accuracy"], None]
    if tac:
        clean_row += [section["clean_tac_accuracy"], None]
    rows = [clean_row]
    for r in rows_by_eps:
        row = [epsilon_text(r["epsilon"]), _num(r["robust_accuracy"]), _num(r["attack_success"])]
        if tac:
            row += [_num(r.get("tac_robust_accuracy")), _num(r.get("tac_attack_success"))]
        rows.append(row)
    lines += [markdown_table(header, rows, [None] * len(header), 3), ""]
    names = list(section["scores"])
    if names:
        header = ["score", *[f"AUROC ε={epsilon_text(r['epsilon'])}" for r in rows_by_eps]]
        rows = [[f"`{n}`", *[_num(r["detection"][n]["auroc"]) for r in rows_by_eps]] for n in names]
        lines += [
            "Detection AUROC of clean vs attacked inputs, best per column in bold:",
            "",
            markdown_table(header, rows, [None] + ["high"] * len(rows_by_eps), 3),
            "",
        ]
    return lines


def _is_pgd(section: Mapping[str, Any]) -> bool:
    return section.get("attack", {}).get("method", "pgd") == "pgd"


def figure_scores(sections: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The scores `adversarial_figure` draws: the best detectors of PGD inputs.

    Each score is ranked by its best detection AUROC over every ε and every PGD section
    (FGSM sections are only in the tables); `best_scores` keeps the top ones plus TAC's
    and MSP.

    Args:
      sections: ``{target: adversarial_table output}``.

    Returns:
      The chosen scores, best first.

    >>> row = {"detection": {"tac": {"auroc": 0.6}, "knn": {"auroc": 0.9}}}
    >>> figure_scores({"base": {"scores": ["tac", "knn"], "by_epsilon": {"0.3": row}}})
    ['knn', 'tac']
    """
    values: dict[str, list[float]] = {}
    for section in sections.values():
        if not _is_pgd(section):
            continue
        for name in section["scores"]:
            aurocs = [_nan(r["detection"][name]["auroc"]) for r in section["by_epsilon"].values()]
            values.setdefault(name, []).extend(v for v in aurocs if not math.isnan(v))
    return best_scores({name: max(v, default=None) for name, v in values.items()})


def adversarial_figure(
    directory: str | os.PathLike, sections: Mapping[str, Mapping[str, Any]]
) -> str:
    """``adversarial.png``: robust accuracy and detection AUROC against ε.

    Left: the base head's (solid) and TAC's (dashed) accuracy, one colour per section
    (attack and target), the clean accuracy drawn at ε = 0. Right: each score's
    detection AUROC under PGD, one line style per target, for the scores of
    `figure_scores` (the best detectors, TAC's and MSP always among them), each in its
    report-wide colour (`colour_map` of the sections' score list).

    Args:
      directory: where to write the file (created if missing).
      sections: ``{target: adversarial_table output}``.

    Returns:
      The file name, relative to ``directory`` (as the other figures).
    """
    # matplotlib only when drawing.
    from tac_jax.evaluate.reporting.canvas import new_figure, save_figure

    if not sections:
        raise ValueError("expected at least one adversarial section, got none")
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    fig = new_figure(11.0, 4.6)
    ax_acc, ax_det = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = colour_map([f"target{i}" for i in range(len(sections))])
    style = score_styles([n for s in sections.values() for n in s["scores"]])
    chosen = figure_scores(sections)
    for i, (target, section) in enumerate(sections.items()):
        rows = [section["by_epsilon"][k] for k in section["by_epsilon"]]
        eps = [r["epsilon"] for r in rows]
        colour = colours[f"target{i}"]
        lines = [("robust_accuracy", "clean_accuracy", "base", "-")]
        if "clean_tac_accuracy" in section:
            lines.append(("tac_robust_accuracy", "clean_tac_accuracy", "TAC", "--"))
        for key, clean_key, label, ls in lines:
            xs, ys = list(eps), [_nan(r.get(key)) for r in rows]
            if not xs or xs[0] > 0:
                xs, ys = [0.0, *xs], [_nan(section[clean_key]), *ys]
            ax_acc.plot(xs, ys, ls=ls, marker="o", ms=3, color=colour, label=f"{label}, {target}")
        if not _is_pgd(section):
            continue  # detection under FGSM is in the report's tables
        ls = _TARGET_STYLES[i % len(_TARGET_STYLES)]
        for name in (n for n in chosen if n in section["scores"]):
            ys = [_nan(r["detection"][name]["auroc"]) for r in rows]
            label = name if len(sections) == 1 else f"{name}, {target}"
            ax_det.plot(eps, ys, ls=ls, marker="o", ms=3, label=label, **style[name])
    ax_acc.set(xlabel="ε", ylabel="accuracy on attacked inputs", ylim=(0, 1.02))
    ax_acc.set_title("Robust accuracy (each attack on its target)", fontsize=10)
    ax_acc.legend(fontsize=7)
    ax_det.axhline(0.5, color="0.7", lw=0.8, ls=":")
    ax_det.set(xlabel="ε", ylabel="AUROC, clean (+) vs attacked (−)", ylim=(0, 1.02))
    ax_det.set_title("Detection of PGD inputs", fontsize=10)
    ax_det.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save_figure(fig, directory, FIGURE_FILE)


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)
