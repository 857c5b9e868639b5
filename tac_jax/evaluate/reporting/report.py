"""The evaluation report: ``report.md`` from the numbers of ``metrics.json``.

``metrics.json`` (written by `tac_jax.evaluate.harness.evaluate_run`) holds every
number; NaN and infinities are ``null``. Its top-level keys:

- ``schema_version``: 1.
- ``run``: workdir, checkpoint step, mode, model, data sizes, TAC head and codes, and
  the full ``config``.
- ``evaluation``: command, suite, num_ood, severities, bootstrap, seed, scores,
  fit_examples, knn_k, max_fit, threshold_split (``"validation"`` or ``"test_half"``),
  val_size, test_size, value_test_size, costs, seconds.
- ``scores``: ``{score: {family, formula, [fitted]}}``; ``fitted`` says what a fit chose
  on this run (MaxLogit-pNorm's p).
- ``summary``: one row per score: family, misclassification_auroc, aurc, e_aurc,
  augrc, acc_at_90, sgr_coverage_r<r*> (the deployed SGR threshold's test coverage),
  mean_ood_auroc, mean_ood_auroc_<kind>, value_c_err_<c>.
- ``accuracy``: base (the base head), tac and agreement (TAC runs).
- ``calibration``: ece (15 bins), brier, nll of the base head's softmax.
- ``misclassification``: ``{score: {auroc, auroc_ci, aurc, e_aurc, augrc, acc_at_80,
  acc_at_90, acc_at_95}}`` on the test split, for the base head's predictions; augrc
  is the area under the generalized risk-coverage curve (Traub et al., 2024).
- ``ood``: ``sets``: ``{set: {kind, size, [accuracy, tac_accuracy], scores: {score:
  {auroc, auroc_ci, aupr_in, aupr_out, fpr_at_95_tpr}}}}``; ``mean_auroc``:
  ``{score: {all, near, far, corruption, synthetic}}`` (kinds present only).
- ``value``: ``c_err`` (the grid); ``scores``: ``{score: {value, threshold, coverage,
  accuracy_accepted}}`` lists along the grid; ``policies``: the same per combined
  policy; ``reference``: accept_all, reject_all, oracle.
- ``guarantee``: thresholds of guaranteed selective risk (SGR and Learn then Test) per
  score and target risk, calibrated where the value thresholds are, with their test
  coverage and risk and repeated random splits
  (`tac_jax.evaluate.reporting.guarantee.guarantee_section`).
- ``non_finite``: ``{score: count}`` of non-finite test scores (ranked lowest).
- ``figures``: the PNG file names.
- ``files``: the data files beside ``metrics.json``: ``summary.csv`` and ``scores.npz``
  (`tac_jax.evaluate.reporting.data_files`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from tac_jax.atomic_write import write_atomic
from tac_jax.evaluate.ood.suites import KINDS
from tac_jax.evaluate.reporting.adversarial import adversarial_lines
from tac_jax.evaluate.reporting.guarantee import guarantee_lines
from tac_jax.evaluate.reporting.markdown import Cell, markdown_table
from tac_jax.evaluate.reporting.shift import shift_lines
from tac_jax.evaluate.reporting.tables import POLICIES
from tac_jax.evaluate.robustness import SECTION_TARGETS

REPORT_FILE = "report.md"
# What each data file holds, for the report's list of files.
_FILES = {
    "summary.csv": "the summary table, one row per score (empty cell: undefined)",
    "scores.npz": "every score of every example: `test/<score>`, `test/label`, "
    "`test/prediction` (and `test/tac_prediction` with TAC) on the test split, "
    "`ood/<set>/<score>` on each OOD set",
}
# What a figure shows, when it needs more than its file name.
_FIGURE_NOTES = {
    "reliability.png": "accuracy per confidence bin (15 bins, count above each bar) of "
    "the base head's softmax and of `tac_prob` against the base prediction's "
    "correctness (TAC runs); the diagonal is perfect calibration",
}
_KIND_TITLES = {"near": "near", "far": "far", "corruption": "corruption", "synthetic": "synthetic"}


def python_command(
    workdir: str, suite: Any, num_ood: int, bootstrap: int, seed: int, scores: Any
) -> str:
    """The Python call that reproduces an evaluation, for the report header."""
    args = [repr(os.fspath(workdir))]
    if isinstance(suite, str):
        args.append(f"suite={suite!r}")
    else:
        args.append("suite=[...]")
    args += [f"num_ood={num_ood}", f"bootstrap={bootstrap}", f"seed={seed}"]
    if scores is not None:
        args.append(f"scores={list(scores)!r}")
    return f"tac_jax.evaluate.evaluate_run({', '.join(args)})"


def run_summary(
    workdir: str, setup: Any, step: int, splits: Mapping[str, Any], layers: Sequence[str]
) -> dict[str, Any]:
    """What a reader needs to know about the evaluated run."""
    config = setup.config
    out: dict[str, Any] = {
        "workdir": os.path.abspath(workdir),
        "step": int(step),
        "mode": config.mode,
        "model": config.model.to_dict(),
        "input_shape": list(setup.input_shape),
        "num_classes": int(config.data.num_classes),
        "data": {
            "source": config.data.source,
            "name": config.data.name,
            "classes": list(config.data.classes),
            **{f"{name}_size": int(len(split["label"])) for name, split in splits.items()},
        },
        "steps": int(config.steps),
        "batch_size": int(config.batch_size),
        "optimizer": config.optim.name,
        "learning_rate": float(config.optim.learning_rate),
        "feature_layers": list(layers),
        "config": config.to_dict(),
    }
    if setup.tac is not None:
        codes = setup.tac.codes
        out["tac"] = {
            "layers": list(setup.tac.layers),
            "code_kind": codes.kind,
            "code_width": int(codes.width),
            "code_length": int(codes.length),
            "min_hamming": int(codes.min_hamming),
            "projection": config.tac.projection,
            "reduction": config.tac.reduction,
        }
    return out


def _with_ci(value: float | None, ci: Sequence[float | None] | None) -> Cell:
    if not ci or ci[0] is None or ci[1] is None:
        return value
    return value, f" [{ci[0]:.3f}, {ci[1]:.3f}]"


# -- sections -----------------------------------------------------------------------------


def _header(m: Mapping[str, Any]) -> list[str]:
    run, ev = m["run"], m["evaluation"]
    seconds = ev.get("seconds")
    took = f", evaluated in {seconds:.0f} s" if seconds is not None else ""
    return [
        f"# Evaluation report: `{run['workdir']}`",
        "",
        "Produced by:",
        "",
        "```",
        ev["command"],
        "```",
        "",
        f"Checkpoint step {run['step']}{took}; seed {ev['seed']}; "
        f"suite `{ev['suite']}` ({ev['num_ood']} images per OOD set); "
        f"{ev['bootstrap']} bootstrap resamples for the 95% AUROC intervals. "
        "Every number is in `metrics.json` next to this file.",
        "",
        *_files_lines(m),
    ]


def _files_lines(m: Mapping[str, Any]) -> list[str]:
    files = [f for f in m.get("files", ()) if f in _FILES]
    if not files:
        return []
    return ["Also next to this file:", "", *[f"- `{f}`: {_FILES[f]}." for f in files], ""]


def _run_section(m: Mapping[str, Any]) -> list[str]:
    run = m["run"]
    data = run["data"]
    model = ", ".join(f"{k}={v}" for k, v in run["model"].items())
    sizes = ", ".join(
        f"{k.removesuffix('_size')} {v}" for k, v in data.items() if k.endswith("_size")
    )
    rows = [
        ["mode", run["mode"]],
        ["model", model],
        ["data", f"{data['source']} {data['name']}".strip()],
        [
            "classes",
            f"{run['num_classes']}" + (f" (kept {data['classes']})" if data["classes"] else ""),
        ],
        ["splits", sizes],
        ["input shape", str(tuple(run["input_shape"]))],
        [
            "training",
            f"{run['steps']} steps, batch {run['batch_size']}, {run['optimizer']} "
            f"lr {run['learning_rate']}",
        ],
        ["feature layers (multi-layer Mahalanobis)", ", ".join(run["feature_layers"])],
    ]
    if "tac" in run:
        t = run["tac"]
        rows += [
            ["TAC layers", ", ".join(t["layers"])],
            [
                "TAC codes",
                f"{t['code_kind']}, width {t['code_width']} per layer, length "
                f"{t['code_length']}, min. Hamming distance {t['min_hamming']}",
            ],
            ["TAC head", f"projection {t['projection']}, reduction {t['reduction']}"],
        ]
    return ["## Run", "", markdown_table(["field", "value"], rows, [None, None]), ""]


def _summary_section(m: Mapping[str, Any]) -> list[str]:
    kinds = [k for k in KINDS if any(f"mean_ood_auroc_{k}" in r for r in m["summary"].values())]
    grid = m["value"]["c_err"]
    shown = [c for c in (grid[0], 5.0, grid[-1]) if c in grid]
    shown = list(dict.fromkeys(shown))
    header = ["score", "misclass. AUROC ↑", "AURC ↓", "E-AURC ↓", "AUGRC ↓", "acc@90% ↑"]
    better: list[str | None] = [None, "high", "low", "low", "low", "high"]
    has_ood = bool(m["ood"]["sets"])
    if has_ood:
        header += ["mean OOD AUROC ↑"] + [f"{k} ↑" for k in kinds]
        better += ["high"] * (1 + len(kinds))
    header += [f"value c_err={c:g} ↑" for c in shown]
    better += ["high"] * len(shown)
    rows = []
    for name, r in m["summary"].items():
        row: list[Cell] = [
            f"`{name}`",
            r["misclassification_auroc"],
            r["aurc"],
            r["e_aurc"],
            r.get("augrc"),
            r["acc_at_90"],
        ]
        if has_ood:
            row += [r.get("mean_ood_auroc")] + [r.get(f"mean_ood_auroc_{k}") for k in kinds]
        row += [r.get(f"value_c_err_{c:g}") for c in shown]
        rows.append(row)
    return [
        "## Summary",
        "",
        "One row per score, best per column in bold (↑ higher is better, ↓ lower). "
        "Misclassification and selective metrics gate the base head's predictions on the "
        "test split; OOD AUROC is averaged over the suite's sets (and per kind).",
        "",
        markdown_table(header, rows, better),
        "",
    ]


def _accuracy_section(m: Mapping[str, Any]) -> list[str]:
    acc, cal = m["accuracy"], m["calibration"]
    header = ["base accuracy", "TAC accuracy", "TAC soft", "agreement", "ECE ↓", "Brier ↓", "NLL ↓"]
    row = [acc["base"], acc.get("tac"), acc.get("tac_soft"), acc.get("agreement")]
    row += [cal["ece"], cal["brier"], cal["nll"]]
    return [
        "## Accuracy and calibration",
        "",
        "Test split. Calibration is of the base head's softmax (ECE with 15 equal-width "
        "bins). TAC accuracy is Hamming decoding of its activation vector, TAC soft the "
        "closest code in L1 (argmin_j ‖a − K_j‖₁); agreement is how often the base and "
        "Hamming predictions coincide.",
        "",
        markdown_table(header, [row], [None] * 7),
        "",
    ]


def _layers_section(m: Mapping[str, Any]) -> list[str]:
    layers = m.get("layers")
    if not layers:
        return []
    kinds = list(layers["kinds"])
    weights = layers.get("weights")
    header = ["tapped layer", "TAC accuracy ↑", "misclass. AUROC ↑"]
    header += [f"OOD AUROC {k} ↑" for k in kinds] + ["entries near ±1"]
    better: list[str | None] = [None, "high", "high"] + ["high"] * len(kinds) + [None]
    if weights is not None:
        header.append("fitted weight")
        better.append(None)
    rows = []
    for i, name in enumerate(layers["layers"]):
        r = layers["rows"][name]
        row: list[Cell] = [f"`{name}`", r["accuracy"], r["misclassification_auroc"]]
        row += [r["ood_auroc"].get(k) for k in kinds] + [r["near_code"]]
        if weights is not None:
            row.append(weights[i] if i < len(weights) else None)
        rows.append(row)
    text = (
        "Each tapped layer alone, as if it were TAC's only one: Hamming decoding of its "
        "block, and its block's ⟨a_l, K_ŷ,l⟩ as a confidence (ŷ the base prediction) "
        "against errors and each OOD kind; `all` is every layer together (the paper's "
        'confidence). "entries near ±1" is the share of activation entries within 0.25 '
        "of a code value (`layers.png` draws their histograms)."
    )
    if weights is not None:
        text += (
            " The weights are `tac_weighted`'s, fitted on the validation split (a "
            "non-negative logistic regression of correctness on per-layer agreement)."
        )
    return ["## TAC per layer", "", text, "", markdown_table(header, rows, better), ""]


def _misclassification_section(m: Mapping[str, Any]) -> list[str]:
    header = [
        "score",
        "AUROC ↑ [95% CI]",
        "AURC ↓",
        "E-AURC ↓",
        "AUGRC ↓",
        "acc@80% ↑",
        "acc@90% ↑",
        "acc@95% ↑",
    ]
    rows = [
        [
            f"`{name}`",
            _with_ci(r["auroc"], r.get("auroc_ci")),
            r["aurc"],
            r["e_aurc"],
            r.get("augrc"),
            r.get("acc_at_80"),
            r.get("acc_at_90"),
            r.get("acc_at_95"),
        ]
        for name, r in m["misclassification"].items()
    ]
    return [
        "## Misclassification detection and selective classification",
        "",
        "Correct predictions of the base head are the positives. acc@X% is the accuracy "
        "on the X% most confident test examples. AUGRC integrates the generalized risk, "
        "the share of all test examples accepted and wrong, over coverage (Traub et al., "
        "2024): err²/2 for a perfect ranking, err/2 for a random one.",
        "",
        markdown_table(header, rows, [None, "high", "low", "low", "low", "high", "high", "high"]),
        "",
    ]


def _ood_section(m: Mapping[str, Any]) -> list[str]:
    sets = m["ood"]["sets"]
    if not sets:
        return ["## OOD detection", "", "No OOD suite was evaluated (`suite='none'`).", ""]
    lines = [
        "## OOD detection",
        "",
        "In-distribution (the test split) is the positive class. AUROC per set, best per "
        "column in bold; AUPR-In, AUPR-Out and FPR@95%TPR per set are in the appendix.",
        "",
    ]
    names = list(m["scores"])
    for kind in KINDS:
        members = [s for s, e in sets.items() if e["kind"] == kind]
        if not members:
            continue
        header = ["score", f"mean {kind} ↑", *members]
        rows = [
            [
                f"`{n}`",
                m["ood"]["mean_auroc"][n].get(kind),
                *[sets[s]["scores"][n]["auroc"] for s in members],
            ]
            for n in names
        ]
        lines += [
            f"### {_KIND_TITLES[kind]}",
            "",
            markdown_table(header, rows, [None] + ["high"] * (len(members) + 1), 3),
            "",
        ]
    acc_sets = [s for s, e in sets.items() if "accuracy" in e]
    if acc_sets:
        header = ["set", "base accuracy", "TAC accuracy"]
        rows = [[s, sets[s]["accuracy"], sets[s].get("tac_accuracy")] for s in acc_sets]
        lines += [
            "### Accuracy under corruption",
            "",
            markdown_table(header, rows, [None, None, None], 3),
            "",
        ]
    return lines


def _value_section(m: Mapping[str, Any]) -> list[str]:
    ev, value = m["evaluation"], m["value"]
    costs = ev["costs"]
    grid = value["c_err"]
    if ev["threshold_split"] == "validation":
        where = (
            f"Thresholds are chosen on the validation split ({ev['val_size']} examples) "
            f"and the value is reported on the test split ({ev['value_test_size']})."
        )
    else:
        where = (
            f"The run has no validation split, so the test split is halved by a fixed "
            f"permutation (seed {ev['seed']}): thresholds are chosen on one half "
            f"({ev['val_size']} examples) and the value is reported on the other "
            f"({ev['value_test_size']})."
        )
    header = ["score", *[f"c_err={c:g}" for c in grid]]
    rows = [[f"`{n}`", *r["value"]] for n, r in value["scores"].items()]
    ref = value["reference"]
    lines = [
        "## Reject value",
        "",
        "Per example: +r if the prediction is accepted and correct, −c_err if accepted "
        "and wrong, −c_rej if rejected. A score accepts the examples at or above a "
        "threshold; the threshold maximising the mean value on held-out data is used on "
        f"test. Costs: r = {costs['r']:g}, c_rej = {costs['c_rej']:g}, c_err swept over "
        f"{', '.join(f'{c:g}' for c in grid)}. No fallback model: a rejected example "
        "earns −c_rej. " + where,
        "",
        markdown_table(header, rows, [None] + ["high"] * len(grid), 3),
        "",
        "References on the same examples (not ranked): "
        + "; ".join(
            f"{label}: {', '.join(f'{v:.3f}' for v in ref[key])}"
            for key, label in (
                ("accept_all", "accept all"),
                ("oracle", "oracle rejecting exactly the errors"),
            )
        )
        + f"; reject all: {-costs['c_rej']:g}.",
        "",
    ]
    policies = value["policies"]
    if policies:
        rows = [[f"`{n}`", *r["value"]] for n, r in policies.items()]
        header = ["policy", *header[1:]]
        lines += [
            "### Combined policies",
            "",
            *[f"- `{n}`: {POLICIES[n]}." for n in policies],
            "",
            markdown_table(header, rows, [None] + ["high"] * len(grid), 3),
            "",
        ]
    return lines


def _fit_sentence(ev: Mapping[str, Any]) -> str:
    if not ev.get("fit_examples"):
        return "No score here needs fitted training statistics."
    text = (
        f"Feature-based scores are fitted on {ev['fit_examples']} examples of the run's "
        f"training split (all of it, or a random subset of {ev['max_fit']} fixed by the "
        "seed when it is larger)"
    )
    if ev.get("knn_k") is not None:
        text += f"; KNN uses k = {ev['knn_k']}"
    return text + "."


def _scores_section(m: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            f"`{n}`",
            s["family"],
            s["formula"] + (f"; this run: {s['fitted']}" if "fitted" in s else ""),
        ]
        for n, s in m["scores"].items()
    ]
    lines = [
        "## Scores",
        "",
        "Every score is oriented so that **higher means more in-distribution / more "
        "likely correct**; distances and energies are negated where needed. z: the base "
        "head's logits; f: its penultimate features; a: TAC's total activation vector; "
        "K_j: class j's code. " + _fit_sentence(m["evaluation"]),
        "",
        markdown_table(["score", "family", "definition"], rows, [None] * 3),
        "",
    ]
    if m.get("non_finite"):
        bad = ", ".join(f"`{k}`: {v}" for k, v in m["non_finite"].items())
        lines += [f"Non-finite test scores (ranked as least confident): {bad}.", ""]
    return lines


# The scores the covariate-shift tables show, in this order of preference.
_SHIFT_SCORES = (
    "tac", "tac_neg_l1", "msp", "energy", "knn", "mahalanobis", "confidence",
    "ensemble_mi", "ensemble_msp", "mc_dropout_mi", "mc_dropout_msp", "sngp", "purview",
)  # fmt: skip


def _shift_section(m: Mapping[str, Any]) -> list[str]:
    section = m.get("shift")
    if not section:
        return []
    names = [n for n in _SHIFT_SCORES if n in section["scores"]][:6]
    return shift_lines(section, scores=names or None) + [""]


def _adversarial_section(m: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for target, section in (m.get("adversarial") or {}).items():
        lines += adversarial_lines(section, target=SECTION_TARGETS.get(target, target)) + [""]
    return lines


def _figures_section(m: Mapping[str, Any]) -> list[str]:
    if not m.get("figures"):
        return []
    lines = [
        "## Figures",
        "",
        "Figures with one curve per score draw at most 8: the best by the figure's own "
        "metric (ROC: mean AUROC over the kind's sets; risk–coverage: AURC; value: mean "
        "value over c_err; adversarial: best detection AUROC over ε), plus `tac`, "
        "`tac_fused` and `msp` whenever evaluated; a score keeps its colour in every figure.",
        "",
    ]
    for name in m["figures"]:
        note = _FIGURE_NOTES.get(name)
        lines += [f"![{name}]({name})", "", *([f"{note}.", ""] if note else [])]
    return lines


def _appendix(m: Mapping[str, Any]) -> list[str]:
    sets = m["ood"]["sets"]
    if not sets:
        return []
    lines = ["## Appendix: OOD metrics per set", ""]
    header = ["score", "AUROC ↑ [95% CI]", "AUPR-In ↑", "AUPR-Out ↑", "FPR@95%TPR ↓"]
    for name, entry in sets.items():
        extra = f", base accuracy {entry['accuracy']:.3f}" if "accuracy" in entry else ""
        rows = [
            [
                f"`{n}`",
                _with_ci(r["auroc"], r.get("auroc_ci")),
                r["aupr_in"],
                r["aupr_out"],
                r["fpr_at_95_tpr"],
            ]
            for n, r in entry["scores"].items()
        ]
        lines += [
            f"### {name} ({entry['kind']}, {entry['size']} images{extra})",
            "",
            markdown_table(header, rows, [None, "high", "high", "high", "low"]),
            "",
        ]
    return lines


def _guarantee_section(m: Mapping[str, Any]) -> list[str]:
    if not m.get("guarantee"):
        return []
    return guarantee_lines(m["guarantee"], scores=list(m["summary"]))


def render_report(metrics: Mapping[str, Any]) -> str:
    """The markdown report of a ``metrics.json`` dict."""
    sections = [
        _header,
        _run_section,
        _summary_section,
        _accuracy_section,
        _layers_section,
        _misclassification_section,
        _ood_section,
        _value_section,
        _guarantee_section,
        _shift_section,
        _adversarial_section,
        _scores_section,
        _figures_section,
        _appendix,
    ]
    lines: list[str] = []
    for section in sections:
        lines += section(metrics)
    lines += [
        "`null` in `metrics.json` marks an undefined or infinite number (e.g. an "
        "accept-all threshold of −∞)."
    ]
    return "\n".join(lines) + "\n"


def write_report(directory: str | os.PathLike, metrics: Mapping[str, Any]) -> str:
    """Writes ``report.md`` into ``directory`` atomically; returns its path."""
    return write_atomic(os.path.join(os.fspath(directory), REPORT_FILE), render_report(metrics))
