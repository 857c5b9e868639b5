"""The main job: train a CNN on Fashion-MNIST, add TAC to it, and measure TAC's
confidence against every other score. Writes ``WORKDIR/report/``.

    tac-jax demo --workdir runs/demo
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tac_jax.config_io import load_config

DEMO_CONFIG = "demo"  # tac_jax/configs/demo.py


def run_demo(
    workdir: str | os.PathLike = "runs/demo",
    *,
    config: str = DEMO_CONFIG,
    base_steps: int | None = None,
    tac_steps: int | None = None,
    num_ood: int = 2000,
    bootstrap: int = 200,
    seed: int = 0,
    log: Callable[[str], None] = print,
    command: str | None = None,
    evaluate: bool = True,
) -> dict[str, Any] | None:
    """Base training, TAC add-on training and the evaluation, each resumable.

    Args:
      workdir: the TAC run's directory; the base trains in ``workdir/base``.
      config: a config name (`tac_jax.config_io.config_names`) or file whose
        ``get_config`` takes the stage, ``"base"`` or ``"addon"``.
      base_steps, tac_steps: override the config's step counts.
      num_ood: images per OOD set.
      bootstrap: bootstrap resamples for the AUROC intervals.
      seed: the run's seed: data order, initialisation, class codes, OOD subsets.
      log: where progress lines go.
      command: the command line to print in the report.
      evaluate: run the evaluation (else only the two trainings).

    Returns:
      The evaluation's metrics (as in ``report/metrics.json``), or None without one
      (``evaluate=False``, or a training stopped by SIGTERM: nothing is evaluated, and
      calling again resumes; ``tac-jax demo`` then exits with 75).
    """
    from tac_jax.evaluate import evaluate_run
    from tac_jax.train.loop import train_and_evaluate

    workdir = os.fspath(workdir)
    base_dir = os.path.join(workdir, "base")
    base = load_config(f"{config}:base")
    base.seed = seed
    if base_steps is not None:
        base.steps = base_steps
    log(f"demo: training the base CNN into {base_dir}")
    base_results = train_and_evaluate(base, base_dir)
    log(f"demo: base {base_results}")
    if base_results.get("preempted"):
        log("demo: stopped during the base's training (SIGTERM); rerun to resume")
        return None

    tac = load_config(f"{config}:addon")
    tac.base_workdir = base_dir
    tac.seed = tac.tac.code_seed = seed
    if tac_steps is not None:
        tac.steps = tac_steps
    log(f"demo: training the TAC add-on into {workdir}")
    tac_results = train_and_evaluate(tac, workdir)
    log(f"demo: TAC {tac_results}")
    if tac_results.get("preempted"):
        log("demo: stopped during TAC's training (SIGTERM); rerun to resume")
        return None
    if not evaluate:
        return None

    log("demo: scoring the test set and the OOD suite with every score")
    metrics = evaluate_run(
        workdir,
        suite="fmnist",
        num_ood=num_ood,
        bootstrap=bootstrap,
        seed=seed,
        log=log,
        command=command,
    )
    log(f"demo: report in {os.path.join(workdir, 'report', 'report.md')}")
    return metrics
