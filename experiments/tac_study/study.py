r"""The TAC study: choose TAC's settings on validation data, report them on test.

Three steps, after `train.sh` has trained the networks into ROOT (default runs/study):

    python experiments/tac_study/study.py select   # the grid, on validation data only
    python experiments/tac_study/study.py test     # the choice, on test, over 3 seeds
    python experiments/tac_study/study.py report   # results/study.md from the two
    python experiments/tac_study/study.py curves   # the learning curves (curves.png)

``select`` scores every candidate (add-on recipe × checkpoint × deepest-k tapping × TAC
score) on validation data that no choice has seen: half B of each run's validation split
(in-distribution and errors), held-out-class images of the *training* file (near),
the validation parts of the far sets (digits, glyphs, photos) and corrupted validation
images (shift). ``tac_weighted``'s layer weights are fitted on half A, so it is not
chosen on the data it was fitted on. The choice maximises the smaller of TAC's two
margins the issue sets: misclassification AUROC over MSP's, and far-OOD AUROC over the
best feature score's (KNN, ViM, Mahalanobis), each against the same network's baselines.
``test`` then runs `tac_jax.evaluate.evaluate_run` with the chosen checkpoint, tapping and
score on every seed, and aggregates (mean and 95 % t-interval over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from tac_jax.atomic_write import atomic_path, write_atomic
from tac_jax.data.arrays import to_float_images
from tac_jax.evaluate import evaluate_run
from tac_jax.evaluate.engine.collect import collect, head_params, make_forward
from tac_jax.evaluate.engine.scoring import (
    compute_scores,
    fit_validation,
    fitted_for_run,
    tac_options,
)
from tac_jax.evaluate.ood.build import held_out_set
from tac_jax.evaluate.ood.suites import corruption_sets, far_ood_sets
from tac_jax.evaluate.reporting.aggregate import aggregate_summaries
from tac_jax.metrics import auroc, misclassification_auroc
from tac_jax.train.checkpoint import Checkpointer
from tac_jax.train.dataset import load_splits
from tac_jax.train.setup import CKPT_DIR, load_run

# The add-on recipes of the grid (train.sh), each "<recipe>_s<seed>".
RECIPES = (
    "small_l10",
    "large_l10",
    "small_l1",
    "shortbase_small_l10",
    "demo_recipe",
    "small_l10_noaug",
    "large_l10_noaug",
    "large_l10_long",
    "demo_recipe_deep2",
)
TAC_VARIANTS = (
    "tac",
    "tac_neg_l1",
    "tac_pred_l1",
    "tac_clip",
    "tac_prob",
    "tac_weighted",
    "tac_mahalanobis",
    "tac_fused",
)
# Scores that read every layer whatever the tapping: scored once, at deepest = 0.
ALL_LAYERS = ("tac_weighted", "tac_mahalanobis", "tac_fused")
FUSE_WEIGHTS = (0.25, 0.5, 1.0)
BASELINES = ("msp", "max_logit", "energy", "knn", "vim", "mahalanobis", "mahalanobis_multi")
FEATURE = ("knn", "vim", "mahalanobis", "mahalanobis_multi")
SHOWN = ("tac", "tac_neg_l1", "msp", "max_logit", "energy", "knn", "vim", "mahalanobis",
         "mahalanobis_multi")  # fmt: skip
NUM = 2000
NUM_SHIFT = 1000  # validation images per corruption and severity
SEVERITIES = (1, 3, 5)
SHIFT = ("gaussian_noise", "gaussian_blur", "contrast", "fog", "rotation")


def validation_sets(data: ml_collections.ConfigDict, val: Mapping[str, np.ndarray]):
    """``{kind: [images, ...]}``: near, far and shift sets built from validation data."""
    x = to_float_images(val["image"])
    pick = np.random.default_rng(1).choice(len(x), min(NUM_SHIFT, len(x)), replace=False)
    shifted = corruption_sets(x[np.sort(pick)], corruptions=SHIFT, severities=SEVERITIES, seed=1)
    return {
        "near": [held_out_set(data, NUM, 0, split="train").images],
        "far": [s.images for s in far_ood_sets(NUM, part="validation", like=x)],
        "shift": [s.images for s in shifted],
    }


def _halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def score_candidate(workdir: str, step: int, deepests: Sequence[int], log=print) -> list[dict]:
    """Every TAC variant (per deepest-k) and baseline of one checkpoint, on validation."""
    setup, step, state = load_run(workdir, step=step)
    base = os.path.basename(os.path.normpath(setup.config.base_workdir))
    splits = load_splits(setup.config.data, setup.config.seed)
    val = splits["validation"]
    forward = make_forward(setup, state)
    fitted = fitted_for_run(workdir, forward, step, splits["train"], head_params(setup, state),
                            names=TAC_VARIANTS + BASELINES, log=log)  # fmt: skip
    half_a, half_b = _halves(len(val["label"]))
    held = collect(forward, val["image"][half_a])
    fit_validation(fitted, ("tac_fused",), held, val["label"][half_a], setup.tac.codes)
    sets = validation_sets(setup.config.data, val)
    outputs = {"in": collect(forward, val["image"][half_b])}
    for kind, images in sets.items():
        outputs.update({f"{kind}{i}": collect(forward, x) for i, x in enumerate(images)})
    labels = val["label"][half_b]
    rows = []
    # Keeping as many layers as are tapped is "all" (0).
    deepests = [d for d in deepests if d < setup.tac.codes.num_layers]
    passes = [(d, None) for d in deepests] + [(0, w) for w in FUSE_WEIGHTS[1:]]
    for deepest, fuse in passes:
        options = tac_options(setup, state, deepest, fuse or FUSE_WEIGHTS[0])
        if fuse is not None:
            names = ("tac_fused",)
        elif deepest:
            names = tuple(n for n in TAC_VARIANTS if n not in ALL_LAYERS)
        else:
            names = TAC_VARIANTS + BASELINES
        scores = {k: compute_scores(o, names, fitted=fitted, **options) for k, o in outputs.items()}
        correct = scores["in"]["prediction"] == labels
        for name in names:
            row = {"run": os.path.basename(workdir), "base": base, "step": step,
                   "deepest": deepest, "score": name,
                   "misclassification_auroc": misclassification_auroc(scores["in"][name], correct)}  # fmt: skip
            if name == "tac_fused":
                row["fuse_weight"] = options["fuse_weight"]
            if name in BASELINES:
                row["deepest"] = None
            for kind, images in sets.items():
                row[kind] = float(np.mean([auroc(scores["in"][name], scores[f"{kind}{i}"][name])
                                           for i in range(len(images))]))  # fmt: skip
            if name == "tac":
                row["tac_accuracy"] = float(np.mean(scores["in"]["tac_prediction"] == labels))
                row["tac_soft_accuracy"] = float(
                    np.mean(scores["in"]["tac_soft_prediction"] == labels)
                )
            rows.append(row)
    return rows


def choose(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The TAC candidate with the largest worst margin over the two targets.

    The baselines are the base network's: MSP of the same checkpoint (the frozen head),
    and the best feature score on far-OOD over every add-on of the same base, since
    4-layer Mahalanobis reads the layers an add-on taps and would otherwise be weaker
    beside an add-on that taps fewer.
    """
    best = None
    for row in rows:
        if row["score"] not in TAC_VARIANTS:
            continue
        same = [r for r in rows if r["run"] == row["run"] and r["step"] == row["step"]]
        msp = next(r for r in same if r["score"] == "msp")
        feature = max(r["far"] for r in rows if r["base"] == row["base"] and r["score"] in FEATURE)
        margins = (
            row["misclassification_auroc"] - msp["misclassification_auroc"],
            row["far"] - feature,
        )
        candidate = {**row, "margin_misclassification": margins[0], "margin_far": margins[1],
                     "worst_margin": min(margins)}  # fmt: skip
        if best is None or candidate["worst_margin"] > best["worst_margin"]:
            best = candidate
    return best


def cmd_select(root: str, out: str) -> None:
    rows: list[dict] = []
    for recipe in RECIPES:
        workdir = os.path.join(root, f"{recipe}_s0")
        if not os.path.exists(os.path.join(workdir, "final_metrics.json")):
            print(f"skipping {workdir}: not trained", file=sys.stderr)
            continue
        with Checkpointer(os.path.join(workdir, CKPT_DIR)) as ckpt:
            steps = ckpt.all_steps()
        for step in steps:
            print(f"scoring {workdir} at step {step}", flush=True)
            rows += score_candidate(workdir, step, (0, 1, 2, 3), log=lambda _: None)
    choice = choose(rows)
    _write_json(os.path.join(out, "select.json"), {"rows": rows, "choice": choice})
    print(json.dumps(choice, indent=1))


def cmd_test(root: str, out: str, seeds: Sequence[int]) -> None:
    with open(os.path.join(out, "select.json")) as f:
        choice = json.load(f)["choice"]
    recipe = choice["run"].rsplit("_s", 1)[0]
    runs = []
    for seed in seeds:
        workdir = os.path.join(root, f"{recipe}_s{seed}")
        print(f"evaluating {workdir} at step {choice['step']}", flush=True)
        metrics = evaluate_run(workdir, step=choice["step"], deepest=choice["deepest"] or 0,
                               fuse_weight=choice.get("fuse_weight"), epsilons=(),
                               bootstrap=200, num_ood=NUM, log=print)  # fmt: skip
        runs.append(metrics)
        _write_json(os.path.join(out, f"metrics_seed{seed}.json"),
                    {k: metrics[k] for k in ("run", "evaluation", "accuracy", "summary", "layers")})  # fmt: skip
    aggregated = aggregate_summaries(runs)
    _write_json(os.path.join(out, "test.json"), {"choice": choice, "aggregated": aggregated})


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _setting(row: Mapping[str, Any]) -> str:
    if row.get("fuse_weight") is not None:
        return f"λ = {row['fuse_weight']:g}"
    if row["deepest"] is None or row["score"] in ALL_LAYERS:
        return "all layers" if row["score"] in TAC_VARIANTS else "–"
    return "all layers" if row["deepest"] == 0 else f"deepest {row['deepest']}"


def selection_tables(select: Mapping[str, Any]) -> list[str]:
    """Validation: per recipe and checkpoint, its best TAC candidate beside MSP and the
    best feature score; then every TAC variant × tapping at the chosen checkpoint."""
    rows, choice = select["rows"], select["choice"]
    lines = [
        "| add-on (seed 0) | step | best TAC score (setting) | misclass. | near | far | shift "
        "| MSP misclass. | best feature far | worst margin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run, step in dict.fromkeys((r["run"], r["step"]) for r in rows):
        best = choose([r for r in rows if r["run"] == run and r["step"] == step])
        same = [r for r in rows if r["run"] == run and r["step"] == step]
        msp = next(r for r in same if r["score"] == "msp")
        base = same[0]["base"]
        feat = max((r for r in rows if r["base"] == base and r["score"] in FEATURE),
                   key=lambda r: r["far"])  # fmt: skip
        lines.append(
            f"| {run} | {step} | `{best['score']}` ({_setting(best)}) | "
            f"{_fmt(best['misclassification_auroc'])} | {_fmt(best['near'])} | "
            f"{_fmt(best['far'])} | {_fmt(best['shift'])} | "
            f"{_fmt(msp['misclassification_auroc'])} | {_fmt(feat['far'])} (`{feat['score']}`) | "
            f"{best['worst_margin']:+.3f} |"
        )
    lines += [
        "",
        f"At the chosen checkpoint ({choice['run']}, step {choice['step']}), every candidate:",
        "",
        "| score | setting | misclass. | near | far | shift | TAC acc. (Hamming / soft) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["run"] != choice["run"] or r["step"] != choice["step"]:
            continue
        acc = ""
        if "tac_accuracy" in r:
            acc = f"{r['tac_accuracy']:.3f} / {r['tac_soft_accuracy']:.3f}"
        lines.append(
            f"| `{r['score']}` | {_setting(r)} | {_fmt(r['misclassification_auroc'])} | "
            f"{_fmt(r['near'])} | {_fmt(r['far'])} | {_fmt(r['shift'])} | {acc} |"
        )
    return lines


def value_table(aggregated: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    grid = [c for c in range(1, 11)]
    lines = ["| score | " + " | ".join(f"c_err={c}" for c in grid) + " |"]
    lines.append("|---" * (len(grid) + 1) + "|")
    for name in names:
        row = aggregated.get(name, {})
        cells = [_fmt(row.get(f"value_c_err_{c}", {}).get("mean")) for c in grid]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def layers_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    layers = runs[0]["layers"]
    kinds = layers["kinds"]
    lines = ["| layer | TAC acc. | misclass. | " + " | ".join(kinds) + " | near ±1 | weight |"]
    lines.append("|---" * (5 + len(kinds)) + "|")
    for i, name in enumerate(layers["layers"]):
        rows = [r["layers"]["rows"][name] for r in runs]
        mean = lambda xs: float(np.mean([x for x in xs if x is not None]))  # noqa: E731
        weights = [r["layers"].get("weights") for r in runs]
        w = "–" if name == "all" or not all(weights) else _fmt(mean([x[i] for x in weights]))
        cells = [
            mean([r["accuracy"] for r in rows]),
            mean([r["misclassification_auroc"] for r in rows]),
        ]
        cells += [mean([r["ood_auroc"][k] for r in rows]) for k in kinds]
        cells += [mean([r["near_code"] for r in rows])]
        lines.append(f"| `{name}` | " + " | ".join(_fmt(c) for c in cells) + f" | {w} |")
    return lines


def cmd_report(out: str) -> None:
    """``study.md``: the selection on validation and the test table over seeds."""
    from tac_jax.evaluate.reporting.aggregate import HEADLINE, summary_table

    with open(os.path.join(out, "select.json")) as f:
        select = json.load(f)
    with open(os.path.join(out, "test.json")) as f:
        test = json.load(f)
    choice, aggregated = test["choice"], test["aggregated"]
    runs = []
    for name in sorted(os.listdir(out)):
        if name.startswith("metrics_seed"):
            with open(os.path.join(out, name)) as f:
                runs.append(json.load(f))
    chosen = choice["score"]
    names = list(dict.fromkeys([chosen, *SHOWN, *(n for n in TAC_VARIANTS if n in aggregated)]))
    shown = {n: aggregated[n] for n in names if n in aggregated}
    fields = [f for f in HEADLINE if f[0] != "mean_ood_auroc_synthetic"]
    keys = {"base": "base", "tac": "TAC Hamming", "tac_soft": "TAC soft"}
    accuracy = {label: [r["accuracy"][k] for r in runs] for k, label in keys.items()}
    lines = [
        "# TAC study: results",
        "",
        f"Chosen on validation: `{chosen}` ({_setting(choice)}) on "
        f"{choice['run'].rsplit('_s', 1)[0]} at step {choice['step']}.",
        "",
        "## Test, over seeds (mean ± 95 % t-interval half-width)",
        "",
        summary_table(shown, fields),
        "",
        "Test accuracy (mean over seeds): "
        + ", ".join(f"{k} {np.mean(v):.4f}" for k, v in accuracy.items()),
        "",
        "## Value of the reject option at every c_err (test, mean over seeds)",
        "",
        *value_table(aggregated, names),
        "",
        "## Per layer (test, mean over seeds)",
        "",
        *layers_table(runs),
        "",
        "## Selection (validation only)",
        "",
        *selection_tables(select),
        "",
    ]
    write_atomic(os.path.join(out, "study.md"), "\n".join(lines))


def cmd_curves(root: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, name in enumerate(sorted(os.listdir(root))):
        path = os.path.join(root, name, "metrics.jsonl")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            val = [json.loads(line) for line in f if '"validation"' in line]
        if not val:
            continue
        base = name.startswith(("base", "short_base"))
        key = "accuracy" if base else "tac_accuracy"
        steps = [r["step"] for r in val if key in r]
        ax = axes[0 if base else 1]
        style = {"color": plt.cm.tab20(i % 20), "ls": ("-", "--", ":")[i % 3]}
        ax.plot(steps, [r[key] for r in val if key in r], marker=".", label=name, **style)
    axes[0].set(title="bases: validation accuracy", xlabel="step (batch 128)", ylabel="accuracy")
    axes[1].set(title="TAC add-ons: validation TAC accuracy", xlabel="step", ylabel="accuracy",
                xscale="log")  # fmt: skip
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(os.path.join(out, "curves.png")) as tmp:
        fig.savefig(tmp, dpi=110)


def _write_json(path: str, value: Any) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, json.dumps(value, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("select", "test", "report", "curves"))
    parser.add_argument("--root", default="runs/study")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    if args.step == "select":
        cmd_select(args.root, args.out)
    elif args.step == "test":
        cmd_test(args.root, args.out, [int(s) for s in args.seeds.split(",")])
    elif args.step == "report":
        cmd_report(args.out)
    else:
        os.makedirs(args.out, exist_ok=True)
        cmd_curves(args.root, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
