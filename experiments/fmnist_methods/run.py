r"""TAC beside every training-time method on Fashion-MNIST, in one comparison table.

Trains (or resumes) the main job's TAC run and one run per method of the
``fmnist_methods`` config (learned confidence, a 5-member deep ensemble, SNGP, and a
dropout base for MC dropout), evaluates each with the same suite, seed and attacks, and
writes ``ROOT/compare/compare.md``:

    .venv/bin/python experiments/fmnist_methods/run.py --root runs/methods

``--tac-workdir runs/demo`` reuses the main job's run (`tac-jax demo`).
"""

from __future__ import annotations

import argparse
import os
import time

from tac_jax.config_io import load_config
from tac_jax.demo import run_demo
from tac_jax.evaluate import evaluate_run
from tac_jax.evaluate.reporting.compare import METRICS, compare_runs
from tac_jax.run import RunDir
from tac_jax.train.loop import train_and_evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = "fmnist_methods"  # tac_jax/configs/fmnist_methods.py
METHODS = ("confidence", "ensemble", "sngp", "dropout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs/methods", help="where the runs go")
    parser.add_argument("--tac-workdir", help="the TAC run (default ROOT/tac, trained here)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="override every run's training steps")
    parser.add_argument("--num-ood", type=int, default=2000)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--attack-size", type=int, default=1000)
    parser.add_argument(
        "--adversarial-tac", action="store_true",
        help="also train TAC adversarially on the same base (ROOT/tac_adversarial)",
    )  # fmt: skip
    parser.add_argument(
        "--reevaluate", action="store_true", help="evaluate runs that already have a report"
    )
    args = parser.parse_args()

    settings = dict(
        suite="fmnist", num_ood=args.num_ood, bootstrap=args.bootstrap, seed=args.seed,
        attack_size=args.attack_size, log=print,
    )  # fmt: skip

    def evaluate(workdir: str) -> None:
        if args.reevaluate or not os.path.exists(os.path.join(workdir, METRICS)):
            evaluate_run(workdir, **settings)

    start = time.perf_counter()
    tac_dir = args.tac_workdir or os.path.join(args.root, "tac")
    run_demo(tac_dir, config=CONFIG, base_steps=args.steps, tac_steps=args.steps,
             num_ood=args.num_ood, bootstrap=args.bootstrap, seed=args.seed,
             evaluate=False)  # fmt: skip
    if not RunDir(tac_dir).finished():
        # SIGTERM stopped a training (run_demo returns None either way): rerun to resume.
        raise SystemExit(f"tac: {RunDir(tac_dir).progress().describe()}; rerun to resume")
    evaluate(tac_dir)
    workdirs, labels = [tac_dir], ["tac"]
    methods = [m for m in args.methods.split(",") if m]
    methods += ["tac_adversarial"] if args.adversarial_tac else []
    for method in methods:
        config = load_config(f"{CONFIG}:{method}")
        config.seed = args.seed
        if method == "tac_adversarial":
            config.base_workdir = os.path.join(tac_dir, "base")
            config.tac.code_seed = args.seed
        if args.steps:
            config.steps = args.steps
        workdir = os.path.join(args.root, method)
        print(f"{method}: training into {workdir}")
        results = train_and_evaluate(config, workdir)
        print(f"{method}: {results}")
        if results.get("preempted"):
            # SIGTERM: the run is saved mid-training; evaluating it would report a
            # half-trained network. Rerun the command to resume.
            raise SystemExit(f"{method}: stopped at step {results['step']}; rerun to resume")
        evaluate(workdir)
        workdirs.append(workdir)
        labels.append(method)
    compare_runs(workdirs, os.path.join(args.root, "compare"), labels=labels)
    print(f"wrote {os.path.join(args.root, 'compare', 'compare.md')} "
          f"in {time.perf_counter() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
