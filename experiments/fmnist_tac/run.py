r"""Reproduces the paper's claims at Fashion-MNIST scale, over several seeds.

For each seed: train the base CNN, train the TAC add-on on it (frozen), evaluate TAC
and every baseline score on the test split and the Fashion-MNIST OOD suite. Then
aggregate over seeds (mean ± 95 % t-interval) into ``RESULTS.md`` and
``results.json`` beside this file.

    .venv/bin/python experiments/fmnist_tac/run.py --seeds 0 1 2 --root runs/fmnist_tac

``--base-steps``/``--tac-steps`` override the config's lengths (the ``demo`` config,
`tac_jax/configs/demo.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from tac_jax.demo import run_demo
from tac_jax.evaluate.reporting.aggregate import aggregate_summaries, summary_table

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = "demo"  # tac_jax/configs/demo.py


def run_seed(root: str, seed: int, base_steps: int | None, tac_steps: int | None, num_ood: int):
    """`tac_jax.demo.run_demo` for one seed into ``ROOT/seedN``; returns the base run's
    final metrics, the TAC run's and the evaluation's."""
    workdir = os.path.join(root, f"seed{seed}")
    metrics = run_demo(
        workdir, config=CONFIG, base_steps=base_steps, tac_steps=tac_steps,
        num_ood=num_ood, seed=seed, log=print,
    )  # fmt: skip
    finals = []
    for run in (os.path.join(workdir, "base"), workdir):
        with open(os.path.join(run, "final_metrics.json")) as f:
            finals.append(json.load(f))
    return finals[0], finals[1], metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default="runs/fmnist_tac")
    parser.add_argument("--base-steps", type=int)
    parser.add_argument("--tac-steps", type=int)
    parser.add_argument("--num-ood", type=int, default=2000)
    parser.add_argument("--out", default=HERE, help="where RESULTS.md and results.json go")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runs, accuracy = [], []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        base, tac, metrics = run_seed(
            args.root, seed, args.base_steps, args.tac_steps, args.num_ood
        )
        runs.append(metrics)
        accuracy.append(
            {
                "seed": seed,
                "base_test_accuracy": base["test_accuracy"],
                "addon_test_accuracy": tac["test_accuracy"],
                "tac_accuracy": tac.get("test_tac_accuracy"),
            }
        )
    aggregated = aggregate_summaries(runs)
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores"
    command = " ".join([".venv/bin/python", "experiments/fmnist_tac/run.py", *sys.argv[1:]])
    lines = [
        "# Fashion-MNIST: TAC add-on against every score",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}; {time.perf_counter() - start:.0f} s in all.",
        "",
        "| seed | base accuracy | accuracy with TAC added | TAC's own accuracy |",
        "|---|---|---|---|",
        *[
            f"| {a['seed']} | {a['base_test_accuracy']:.4f} | {a['addon_test_accuracy']:.4f} "
            f"| {a['tac_accuracy']:.4f} |"
            for a in accuracy
        ],
        "",
        f"Mean ± 95 % t-interval over {len(runs)} seeds; best mean per column in bold.",
        "",
        summary_table(aggregated),
        "",
    ]
    with open(os.path.join(args.out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"accuracy": accuracy, "aggregated": aggregated}, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
