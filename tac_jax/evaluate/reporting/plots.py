"""The report's figures, as PNG files (drawn with `tac_jax.evaluate.reporting.canvas`).

Figures with one curve per score draw the best scores by the figure's own metric
(`tac_jax.evaluate.reporting.figure_scores.best_scores`: at most 8, TAC's paper score,
``tac_fused`` and MSP always among them), each in its colour for the whole report
(`tac_jax.evaluate.reporting.colours`):

- ``roc_<kind>.png``: ROC curves, the test split against all sets of one OOD kind
  pooled; scores ranked by their mean AUROC over the kind's sets;
- ``risk_coverage.png``: selective risk against coverage for the base head's
  predictions; scores ranked by AURC;
- ``value.png``: the reject value against the error cost ``c_err``, with the combined
  policies dashed and the accept-all / oracle references; scores ranked by their mean
  value over the ``c_err`` grid;
- ``reliability.png``: accuracy per confidence bin of the base head's softmax and of
  ``tac_prob`` (`tac_jax.evaluate.reporting.reliability`);
- ``histograms.png``: TAC's confidence and MSP on correct and wrong test predictions
  and on each OOD kind;
- ``activation_profiles.png``: TAC's activation vector of a correctly classified, a
  misclassified and an OOD input, drawn against the code of the predicted class.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from tac_jax.evaluate.ood.suites import KINDS
from tac_jax.evaluate.reporting.canvas import new_figure, save_figure
from tac_jax.evaluate.reporting.colours import PALETTE, score_styles
from tac_jax.evaluate.reporting.figure_scores import best_scores
from tac_jax.evaluate.reporting.reliability import reliability_figure
from tac_jax.evaluate.reporting.tables import finite, softmax
from tac_jax.metrics import aurc, auroc, risk_coverage_curve, roc_curve

# Curves are downsampled to at most this many points: enough to draw, small files.
_MAX_POINTS = 2000


@dataclasses.dataclass
class PlotData:
    """What the figures are drawn from.

    Attributes:
      test_scores: ``{score: (N,)}`` on the test split, in the run's score order (which
        fixes each score's colour).
      correct: ``(N,)`` whether the base head is right.
      ood_scores: ``{set: {score: (N_set,)}}``.
      kinds: ``{set: kind}``.
      value: the ``value`` section of ``metrics.json``.
      activation: ``(N, M)`` TAC's activation vectors on the test split, or None.
      prediction: ``(N,)`` the base head's predictions.
      labels: ``(N,)`` test labels.
      codes: ``(C, M)`` TAC's class codes, or None.
      ood_activation: ``{set: (k, M)}`` activation vectors of a few OOD inputs.
      code_width: entries per layer block of the codes (for the block separators).
      layers: the ``layers`` section of ``metrics.json`` (`tac_jax.evaluate.reporting.layers`),
        or None.
      logits: ``(N, C)`` the base head's logits on the test split (for the reliability
        diagram), or None.
    """

    test_scores: Mapping[str, np.ndarray]
    correct: np.ndarray
    ood_scores: Mapping[str, Mapping[str, np.ndarray]]
    kinds: Mapping[str, str]
    value: Mapping[str, Any]
    activation: np.ndarray | None = None
    prediction: np.ndarray | None = None
    labels: np.ndarray | None = None
    codes: np.ndarray | None = None
    ood_activation: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    code_width: int | None = None
    layers: Mapping[str, Any] | None = None
    logits: np.ndarray | None = None


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(arrays[0])
    if n <= _MAX_POINTS:
        return arrays
    index = np.unique(np.r_[np.linspace(0, n - 1, _MAX_POINTS).astype(int), n - 1])
    return tuple(a[index] for a in arrays)


def _mean_auroc(data: PlotData, members: list[str]) -> dict[str, float]:
    """Each score's AUROC averaged over ``members`` (as ``metrics.json``'s mean_auroc)."""
    return {
        name: float(np.mean([auroc(finite(s), finite(data.ood_scores[m][name])) for m in members]))
        for name, s in data.test_scores.items()
    }


def roc_figures(directory: str, data: PlotData) -> list[str]:
    """One ``roc_<kind>.png`` per OOD kind present, the best scores of that kind."""
    style = score_styles(list(data.test_scores))
    out = []
    for kind in KINDS:
        members = [s for s, k in data.kinds.items() if k == kind]
        if not members:
            continue
        mean = _mean_auroc(data, members)
        fig = new_figure(6.5, 5.5)
        ax = fig.add_subplot()
        for name in best_scores(mean):
            s_in = finite(data.test_scores[name])
            s_out = finite(np.concatenate([data.ood_scores[s][name] for s in members]))
            labels = np.r_[np.ones(len(s_in), bool), np.zeros(len(s_out), bool)]
            fpr, tpr, _ = roc_curve(np.r_[s_in, s_out], labels)
            fpr, tpr = _thin(fpr, tpr)
            text = f"{name} ({mean[name]:.3f}, {auroc(s_in, s_out):.3f})"
            ax.plot(fpr, tpr, label=text, **style[name])
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set(
            xlabel="false positive rate (OOD accepted)",
            ylabel="true positive rate (test accepted)",
            title=f"ROC, test vs {kind} OOD ({len(members)} set(s) pooled)",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(fontsize=7, loc="lower right", title="score (AUROC: mean over sets, pooled)",
                  title_fontsize=7)  # fmt: skip
        fig.tight_layout()
        out.append(save_figure(fig, directory, f"roc_{kind}.png"))
    return out


def risk_coverage_figure(directory: str, data: PlotData) -> str:
    """``risk_coverage.png``: error rate among the accepted against coverage, the scores
    with the lowest AURC."""
    style = score_styles(list(data.test_scores))
    area = {n: aurc(finite(s), data.correct) for n, s in data.test_scores.items()}
    fig = new_figure(6.5, 5.0)
    ax = fig.add_subplot()
    for name in best_scores({n: -a for n, a in area.items()}):
        coverage, risk = risk_coverage_curve(finite(data.test_scores[name]), data.correct)
        coverage, risk = _thin(coverage, risk)
        ax.plot(coverage, risk, label=f"{name} ({area[name]:.4f})", **style[name])
    ax.set(
        xlabel="coverage (fraction accepted)",
        ylabel="risk (error rate among accepted)",
        title="Risk–coverage, base head's predictions (test)",
        xlim=(0, 1),
    )
    ax.legend(fontsize=7, ncol=2, title="score (AURC)", title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, directory, "risk_coverage.png")


def _mean_value(curve: Any) -> float | None:
    values = np.asarray(curve, float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def value_figure(directory: str, data: PlotData) -> str:
    """``value.png``: reject value against ``c_err`` per policy and for the scores with
    the highest mean value over the grid."""
    value = data.value
    grid = np.asarray(value["c_err"], float)
    style = score_styles([*data.test_scores, *value["scores"]])
    names = best_scores({n: _mean_value(r["value"]) for n, r in value["scores"].items()})
    fig = new_figure(7.0, 5.0)
    ax = fig.add_subplot()
    for name in names:
        ax.plot(grid, value["scores"][name]["value"], marker=".", label=name, **style[name])
    dashes = [(5, 2), (2, 2), (6, 2, 1, 2), (1, 1)]
    drawn = [np.asarray(value["scores"][n]["value"], float) for n in names]
    for i, (name, curve) in enumerate(value.get("policies", {}).items()):
        ax.plot(grid, curve["value"], color="black", lw=1.4, dashes=dashes[i % len(dashes)],
                label=f"policy: {name}")  # fmt: skip
        drawn.append(np.asarray(curve["value"], float))
    ref = value.get("reference", {})
    if "accept_all" in ref:
        ax.plot(grid, ref["accept_all"], color="0.55", ls=":", label="accept all")
    if "oracle" in ref:
        ax.plot(grid, ref["oracle"], color="0.55", ls="-.", label="oracle")
        drawn.append(np.asarray(ref["oracle"], float))
    # Accept-all falls linearly with c_err; letting it set the axis would flatten the
    # differences between scores, so the axis follows the scores and the oracle.
    values = np.concatenate(drawn)
    values = values[np.isfinite(values)]
    if values.size:
        low, high = float(values.min()), float(values.max())
        pad = 0.05 * max(high - low, 1e-3)
        ax.set_ylim(low - pad, high + pad)
    ax.set(
        xlabel="cost of an accepted error c_err (r = 1)",
        ylabel="mean value per example (test)",
        title="Reject value, threshold chosen on held-out data",
    )
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save_figure(fig, directory, "value.png")


def histogram_figure(directory: str, data: PlotData) -> str:
    """``histograms.png``: TAC's confidence (the paper's, and ``tac_fused`` when it was
    evaluated) and MSP, in vs out."""
    shown = [n for n in ("tac", "tac_fused", "msp") if n in data.test_scores]
    if not shown:
        shown = list(data.test_scores)[:1]
    fig = new_figure(5.5 * len(shown), 4.2)
    for i, name in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1)
        s = np.asarray(data.test_scores[name], float)
        groups = [("test, correct", s[data.correct]), ("test, wrong", s[~data.correct])]
        for kind in KINDS:
            members = [k for k, v in data.kinds.items() if v == kind]
            if members:
                pooled = np.concatenate([data.ood_scores[m][name] for m in members])
                groups.append((f"OOD {kind}", np.asarray(pooled, float)))
        values = np.concatenate([g for _, g in groups if len(g)])
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        low, high = np.quantile(values, [0.001, 0.999])
        bins = np.linspace(low, high if high > low else low + 1.0, 50)
        for label, g in groups:
            g = g[np.isfinite(g)]
            if g.size:
                ax.hist(np.clip(g, bins[0], bins[-1]), bins=bins, density=True, histtype="step",
                        lw=1.4, label=f"{label} (n={g.size})")  # fmt: skip
        ax.set(xlabel=f"{name} (higher = more confident)", ylabel="density", title=name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, directory, "histograms.png")


def _samples(data: PlotData) -> list[tuple[str, np.ndarray, int, int | None]]:
    """(title, activation, predicted class, true class) of a correct, a wrong and an OOD input."""
    out = []
    pred, labels = data.prediction, data.labels
    for wanted, title in ((True, "test, correct"), (False, "test, wrong")):
        index = np.flatnonzero(data.correct == wanted)
        if index.size:
            i = int(index[0])
            out.append((title, data.activation[i], int(pred[i]), int(labels[i])))
    codes = np.asarray(data.codes, float)
    for kind in ("far", "synthetic", "near", "corruption"):
        names = [s for s, k in data.kinds.items() if k == kind and s in data.ood_activation]
        if names:
            a = np.asarray(data.ood_activation[names[0]][0], float)
            # The class the base head would pick is not kept for OOD rows; the closest
            # code (Hamming decoding) is what TAC reads.
            j = int(np.argmax(np.sign(a) @ codes.T))
            out.append((f"OOD {names[0]} (closest code)", a, j, None))
            break
    return out


def activation_figure(directory: str, data: PlotData) -> str | None:
    """``activation_profiles.png``, or None for a run without TAC."""
    if data.activation is None or data.codes is None:
        return None
    samples = _samples(data)
    if not samples:
        return None
    codes = np.asarray(data.codes, float)
    m = codes.shape[1]
    x = np.arange(m)
    fig = new_figure(max(7.0, 0.12 * m + 3), 2.4 * len(samples))
    for i, (title, a, j, y) in enumerate(samples):
        ax = fig.add_subplot(len(samples), 1, i + 1)
        ax.bar(x, a, color="#1f77b4", alpha=0.7, label="activation a")
        ax.step(x, codes[j], where="mid", color="#d62728", lw=1.5, label=f"code of class {j}")
        if y is not None and y != j:
            ax.step(x, codes[y], where="mid", color="#2ca02c", lw=1.0, ls="--",
                    label=f"code of true class {y}")  # fmt: skip
        if data.code_width:
            for edge in range(data.code_width, m, data.code_width):
                ax.axvline(edge - 0.5, color="0.6", lw=0.6)
        inner = float(a @ codes[j])
        ax.set_title(f"{title}: ⟨a, K_{j}⟩ = {inner:.1f}", fontsize=9)
        ax.set_ylabel("value")
        ax.legend(fontsize=7, loc="upper right", ncol=3)
    fig.axes[-1].set_xlabel("code position (grey lines separate tapped layers)")
    fig.tight_layout()
    return save_figure(fig, directory, "activation_profiles.png")


def layers_figure(directory: str, data: PlotData) -> str | None:
    """``layers.png``: per tapped layer, the histogram of its activation entries on the
    test split and on each OOD kind, against the code values ±1; None without TAC."""
    if not data.layers:
        return None
    names = [n for n in data.layers["layers"] if n != "all"]
    edges = np.asarray(data.layers["edges"], float)
    centres, step = (edges[1:] + edges[:-1]) / 2, edges[1] - edges[0]
    fig = new_figure(3.2 * len(names), 2.8)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        row = data.layers["rows"][name]
        for j, (kind, counts) in enumerate(row["histogram"].items()):
            counts = np.asarray(counts, float)
            if counts.sum():
                label = "test (in)" if kind == "in" else kind
                ax.step(centres, counts / counts.sum() / step, where="mid", lw=1.2,
                        color=PALETTE[j % len(PALETTE)], label=label)  # fmt: skip
        for v in (-1.0, 1.0):
            ax.axvline(v, color="0.3", lw=0.8, ls=":")
        mis = row["misclassification_auroc"]
        ax.set_title(f"{name}: acc {row['accuracy']:.2f}, mis. AUROC "
                     f"{mis if mis is None else round(mis, 2)}", fontsize=8)  # fmt: skip
        ax.set_xlabel("activation entry")
        if i == 0:
            ax.set_ylabel("density")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, directory, "layers.png")


def _reliability_panels(data: PlotData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{title: (confidence, hit)}``: the base head's softmax and, with TAC, ``tac_prob``.

    ``tac_prob`` is the probability TAC's distance softmax gives the base head's
    prediction ŷ, so it is read against whether ŷ is right.
    """
    panels = {}
    if data.logits is not None and data.labels is not None:
        probs = softmax(data.logits)
        hit = probs.argmax(axis=1) == np.asarray(data.labels)
        panels["base head's softmax"] = (probs.max(axis=1), hit)
    if "tac_prob" in data.test_scores:
        confidence = np.asarray(data.test_scores["tac_prob"], float)
        if np.all(np.isfinite(confidence)):
            # float32 rounding can leave a probability a hair outside [0, 1].
            panels["TAC's tac_prob"] = (np.clip(confidence, 0.0, 1.0), np.asarray(data.correct))
    return panels


def write_plots(directory: str | os.PathLike, data: PlotData) -> list[str]:
    """Writes every figure the data allows into ``directory``.

    Returns:
      The file names written, in report order.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    names = roc_figures(directory, data)
    names.append(risk_coverage_figure(directory, data))
    names.append(value_figure(directory, data))
    names.append(histogram_figure(directory, data))
    profile = activation_figure(directory, data)
    if profile is not None:
        names.append(profile)
    layers = layers_figure(directory, data)
    if layers is not None:
        names.append(layers)
    panels = _reliability_panels(data)
    if panels:
        names.append(reliability_figure(directory, panels))
    return names
