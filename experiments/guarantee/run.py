"""Does the guaranteed-risk threshold hold its guarantee? Many random splits of one run.

Reads an evaluated run (``WORKDIR/report/scores.npz``, the test split's scores), scores
its validation split with the same detector (`tac_jax.Detector.from_run`), pools the
two, and for each score, method (SGR, Learn then Test) and target risk r* calibrates on
a random half and measures coverage and selective risk on the other, ``--splits`` times
(`tac_jax.metrics.guarantee.repeated_splits`). A method keeps its promise when the
fraction of splits whose risk stayed at most r* is at least 1 − δ; the Clopper–Pearson
interval of that fraction says how sure the count is. Writes ``OUT/guarantee.json`` and
``OUT/guarantee.md`` (atomically).

    .venv/bin/python experiments/guarantee/run.py --workdir runs/demo \\
        --out experiments/guarantee/results --splits 1000
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy import stats

from tac_jax import Detector
from tac_jax.atomic_write import write_atomic
from tac_jax.evaluate.reporting.markdown import markdown_table
from tac_jax.evaluate.reporting.tables import finite
from tac_jax.metrics.guarantee import METHODS, repeated_splits


def held_interval(held: float, splits: int, level: float = 0.95) -> tuple[float, float]:
    """The Clopper–Pearson interval of a fraction ``held`` of ``splits``."""
    k = round(held * splits)
    low = stats.beta.ppf((1 - level) / 2, k, splits - k + 1) if k > 0 else 0.0
    high = stats.beta.ppf(1 - (1 - level) / 2, k + 1, splits - k) if k < splits else 1.0
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="an evaluated run with a validation split")
    parser.add_argument("--out", required=True, help="folder for guarantee.json and .md")
    parser.add_argument("--scores", default="tac,tac_fused,msp", help="comma-separated")
    parser.add_argument("--risks", default="0.02,0.05,0.1", help="target risks r*")
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--splits", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [n for n in args.scores.split(",") if n]
    risks = [float(r) for r in args.risks.split(",") if r]
    os.makedirs(args.out, exist_ok=True)

    start = time.perf_counter()
    with np.load(os.path.join(args.workdir, "report", "scores.npz")) as stored:
        test = {n: stored[f"test/{n}"] for n in names}
        test_correct = stored["test/prediction"] == stored["test/label"]
    detector = Detector.from_run(args.workdir, scores=names)
    validation = detector.splits.get("validation")
    if validation is None:
        raise SystemExit(f"expected a run with a validation split, got none in {args.workdir}")
    val = detector.score(validation["image"])
    val_correct = val["prediction"] == np.asarray(validation["label"])
    correct = np.r_[val_correct, test_correct]
    rows = []
    for name in names:
        pooled = finite(np.r_[val[name], test[name]])
        for method in METHODS:
            for risk in risks:
                out = repeated_splits(
                    pooled, correct, risk, args.delta, method, splits=args.splits,
                    seed=args.seed,
                )  # fmt: skip
                low, high = held_interval(out.held_fraction, out.splits)
                rows.append({"score": name, "method": method, "risk": risk, **out._asdict(),
                             "held_low": low, "held_high": high,
                             "kept": out.held_fraction >= 1 - args.delta})  # fmt: skip
    seconds = time.perf_counter() - start
    result = {
        "workdir": os.path.abspath(args.workdir), "delta": args.delta, "splits": args.splits,
        "seed": args.seed, "pool": int(correct.size), "pool_error": float(1 - correct.mean()),
        "seconds": seconds, "rows": rows,
    }  # fmt: skip
    write_atomic(os.path.join(args.out, "guarantee.json"), json.dumps(result, indent=2) + "\n")
    header = ["score", "method", "r*", "coverage ↑", "risk", "held (≥ 1 − δ?)", "95% interval",
              "rejected all"]  # fmt: skip
    table = [
        [f"`{r['score']}`", r["method"], f"{r['risk']:g}", r["coverage_mean"], r["risk_mean"],
         f"{r['held_fraction']:.3f} ({'yes' if r['kept'] else 'no'})",
         f"[{r['held_low']:.3f}, {r['held_high']:.3f}]", r["rejected_fraction"]]
        for r in rows
    ]  # fmt: skip
    text = (
        f"# Guaranteed risk over {args.splits} random splits\n\n"
        f"Run `{args.workdir}`: validation and test pooled ({correct.size} examples, base "
        f"error {1 - correct.mean():.4f}), calibrated on a random half and measured on the "
        f"other, δ = {args.delta:g}, seed {args.seed}; {seconds:.0f} s.\n\n"
        + markdown_table(header, table, [None] * len(header), 4)
        + "\n"
    )
    write_atomic(os.path.join(args.out, "guarantee.md"), text)
    print(text)


if __name__ == "__main__":
    main()
