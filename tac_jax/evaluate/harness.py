"""`evaluate_run`: every confidence score of one trained run, on the same data and metrics.

A short pipeline of stages. The run's `tac_jax.evaluate.engine.detector.Detector`
(one forward pass per dataset feeds every score of the registry); the OOD suite
(`tac_jax.evaluate.ood.build`), built before anything is fitted so that a bad one fails
fast; the fitted statistics (on at most ``max_fit`` training examples, and the
validation split); then `_measure`: per score, misclassification detection and selective
classification on the test split, OOD detection of every set of the suite against the
test split, the reject value with thresholds chosen on validation data, accuracy, ECE and
detection per corruption and severity (`tac_jax.evaluate.reporting.shift`) and, in TAC
runs, the per-layer diagnostics; PGD and FGSM inputs against every score
(`tac_jax.evaluate.robustness`); and `_write`: ``WORKDIR/report/`` with
``metrics.json``, ``report.md``, ``summary.csv``, ``scores.npz`` and the figures.

Every argument is checked, and the user's OOD files read, before the run is loaded. The
report is written into a staging folder beside it (`tac_jax.evaluate.reporting.staging`)
that replaces ``WORKDIR/report/`` only once complete: an evaluation that fails or is
interrupted leaves the previous report whole (the fitted-statistics cache is kept across).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate import robustness
from tac_jax.evaluate.engine.collect import DEFAULT_BATCH
from tac_jax.evaluate.engine.detector import Detector
from tac_jax.evaluate.engine.fitted import MAX_FIT
from tac_jax.evaluate.engine.scoring import (
    REPORT_DIR,
    SCORES,
    check_request,
    run_capabilities,
)
from tac_jax.evaluate.ood.build import SUITES, build_suite
from tac_jax.evaluate.ood.suites import (
    KINDS,
    OODSet,
)
from tac_jax.evaluate.ood.user_sets import (
    OODFile,
    ReadOODFile,
    read_user_sets,
    resolve_user_sets,
)
from tac_jax.evaluate.reporting import data_files, measure, shift, tables
from tac_jax.evaluate.reporting import report as report_lib
from tac_jax.evaluate.reporting.adversarial import adversarial_figure
from tac_jax.evaluate.reporting.layers import layer_diagnostics
from tac_jax.evaluate.reporting.staging import staged_dir
from tac_jax.metrics import Costs
from tac_jax.run import FITTED_FILE

METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1
# Rows of each OOD set kept for the activation-profile figure.
_PROFILE_ROWS = 8
Log = Callable[[str], None]


def evaluate_run(
    workdir: str | os.PathLike,
    *,
    suite: str | Sequence[OODSet] = "fmnist",
    extra_ood: Sequence[OODSet | OODFile] = (),
    num_ood: int = 2000,
    costs: Costs = tables.DEFAULT_COSTS,
    c_err_grid: Sequence[float] = tables.C_ERR_GRID,
    bootstrap: int = 200,
    seed: int = 0,
    scores: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 3, 5),
    corruptions: Sequence[str] | None = None,
    deepest: int | None = None,
    fuse_weight: float | None = None,
    epsilons: Sequence[float] = robustness.EPSILONS,
    attacks: Sequence[str] = robustness.ATTACKS,
    attack_size: int = robustness.SIZE,
    max_fit: int = MAX_FIT,
    batch_size: int = DEFAULT_BATCH,
    plots: bool = True,
    step: int | None = None,
    command: str | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Evaluates every confidence score of a trained run and writes ``WORKDIR/report/``.

    Args:
      workdir: a run written by `tac_jax.train.loop.train_and_evaluate`.
      suite: ``"fmnist"`` (synthetic, inverted and corrupted copies of ``num_ood`` test
        images, plus held-out classes when the run kept a subset), ``"text"``
        (`tac_jax.evaluate.ood.text_suites.text_suite`; a text run given ``"fmnist"``, an
        image suite, gets it too), a key of `TFDS_SUITES` (``"cifar10"``, ``"mnist"``,
        ``"fashion_mnist"``: the public OOD sets of a run trained on that dataset, read
        through TFDS), ``"none"``, or a sequence of `tac_jax.evaluate.ood.suites.OODSet`.
      extra_ood: the user's own sets, added to the suite: `OODSet`s or array files
        (`tac_jax.evaluate.ood.user_sets.OODFile`, e.g. ``parse_ood_spec("a=x.npy")``),
        shaped like the run's inputs, at most ``num_ood`` images each; their names
        must be distinct and new to the suite. Checked before the run is loaded.
      num_ood: images per OOD set.
      costs: ``r``, ``c_rej`` and ``c_def`` of the reject value (``c_err`` is swept).
      c_err_grid: the error costs of the value curve.
      bootstrap: resamples of the AUROC intervals (0: no intervals).
      seed: fixes the suite, the bootstrap, the fitting subset and the test halves.
      scores: the scores to evaluate (default: every one the run supports; TAC's
        only in TAC runs).
      severities: corruption severities of the fmnist suite.
      corruptions: corruption names (default: the suite's).
      deepest: TAC's predictions and scores on the deepest this many tapped layers
        (0: all; ``tac_weighted`` and ``tac_mahalanobis`` always read every layer);
        default: the run's ``config.tac.score_deepest``.
      fuse_weight: ``tac_fused``'s λ (default: the run's ``config.tac.fuse_weight``).
      epsilons: the L∞ radii of the PGD attacks (images in [0, 1]); empty: no attack
        (text runs are never attacked: their inputs are integers).
      attacks: from ``("pgd", "fgsm")``, each run at every ε on the same inputs.
      attack_size: test examples attacked, at most.
      max_fit: training examples the feature-based scores are fitted on, at most.
      batch_size: examples per forward pass (at most the largest dataset's size).
      plots: write the figures.
      step: the checkpoint to evaluate (default: the newest).
      command: the command line to print in the report (default: the Python call).
      log: optional progress callback, e.g. ``print``.

    Returns:
      The contents of ``metrics.json`` (see `tac_jax.evaluate.reporting.report` for the schema).

    Raises:
      ValueError: on an unknown suite or score, a number out of range, a score the run
        cannot compute, a TFDS suite for a run on another dataset, or extra sets that
        are not readable array files, of the wrong shape or with names given twice.
      FileNotFoundError: if the workdir does not exist or holds no checkpoint, or data
        (the run's, an extra set's file, a TFDS suite's) is missing.
      OSError: if the report cannot be written (e.g. ``PermissionError``), before the
        run is loaded.

    >>> metrics = evaluate_run("runs/smoke_tac", num_ood=200)  # doctest: +SKIP
    >>> metrics["summary"]["tac"]["mean_ood_auroc"]  # doctest: +SKIP
    """
    say = log or (lambda _: None)
    start = time.perf_counter()
    workdir = os.fspath(workdir)
    _check_arguments(
        suite=suite, scores=scores, num_ood=num_ood, bootstrap=bootstrap, seed=seed,
        severities=severities, deepest=deepest, fuse_weight=fuse_weight, epsilons=epsilons,
        attacks=attacks, attack_size=attack_size, max_fit=max_fit, batch_size=batch_size,
    )  # fmt: skip
    extra_ood = read_user_sets(extra_ood)
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"expected a run directory at {workdir}, got no such folder")
    report_dir = os.path.join(workdir, REPORT_DIR)
    # Written beside the old report, swapped in once complete.
    with staged_dir(report_dir, carry=(FITTED_FILE,)) as out_dir:
        detector = Detector.from_run(
            workdir, step=step, scores=scores, deepest=deepest, fuse_weight=fuse_weight,
            batch_size=batch_size, fit=False, log=say,
        )  # fmt: skip
        # No batch larger than the largest dataset: a huge one would only be padding.
        detector.batch_size = min(
            batch_size, _largest(detector.splits, max_fit, num_ood, attack_size)
        )
        # The suite before any fitting or scoring, so that one that cannot be built fails fast.
        suite, sets = _suite(detector, suite, extra_ood, num_ood, seed, severities, corruptions)
        detector.fit_run(max_fit=max_fit, seed=seed, log=say)
        grid = [float(c) for c in c_err_grid]
        metrics, scored = _measure(detector, sets, costs, grid, bootstrap, seed, say)
        metrics["evaluation"] = {
            "command": command
            or report_lib.python_command(workdir, suite, num_ood, bootstrap, seed, scores),
            "suite": suite if isinstance(suite, str) else "custom",
            "num_ood": int(num_ood),
            "severities": list(severities),
            "bootstrap": int(bootstrap),
            "seed": int(seed),
            "scores": list(detector.names),
            "deepest": int(detector.options.get("deepest", 0)),
            "fuse_weight": detector.options.get("fuse_weight"),
            "fit_examples": detector.fitted.meta.get("fit_examples") if detector.fitted else None,
            "knn_k": detector.fitted.knn_k if detector.fitted else None,
            "max_fit": int(max_fit),
            **metrics.pop("split_info"),
            "test_size": int(len(scored.labels)),
            "costs": {"r": costs.r, "c_err": grid, "c_rej": costs.c_rej, "c_def": costs.c_def},
        }
        metrics["adversarial"] = {}
        if epsilons and "input" in run_capabilities(detector.setup, detector.state):
            metrics["adversarial"] = robustness.adversarial_sections(
                detector.setup, detector.state, scored.test_images, scored.labels, scored.scores,
                detector.names, scored.score, epsilons=epsilons, attacks=attacks, size=attack_size,
                seed=seed, bootstrap=bootstrap, batch_size=detector.batch_size, log=say,
            )  # fmt: skip
            metrics["evaluation"]["epsilons"] = [float(e) for e in epsilons]
            metrics["evaluation"]["attacks"] = list(attacks)
        metrics["summary"] = measure.summary_rows(metrics, detector.names)
        metrics = _write(out_dir, metrics, scored, detector, plots, start, say)
    say(f"wrote {os.path.join(report_dir, report_lib.REPORT_FILE)}")
    return metrics


def _check_arguments(
    *,
    suite: str | Sequence[OODSet],
    scores: Sequence[str] | None,
    num_ood: int,
    bootstrap: int,
    seed: int,
    severities: Sequence[int],
    deepest: int | None,
    fuse_weight: float | None,
    epsilons: Sequence[float],
    attacks: Sequence[str],
    attack_size: int,
    max_fit: int,
    batch_size: int,
) -> None:
    """What `evaluate_run` can check before the run is loaded, one sentence per error."""
    if isinstance(suite, str) and suite not in SUITES:
        raise ValueError(f"expected a suite in {SUITES} or a list of OODSet, got {suite!r}")
    check_request(scores, batch_size=batch_size, max_fit=max_fit)
    for name, value in (("num_ood", num_ood), ("attack_size", attack_size)):
        if int(value) < 1:
            raise ValueError(f"expected {name} >= 1, got {value}")
    if bootstrap < 0:
        raise ValueError(f"expected bootstrap >= 0, got {bootstrap}")
    if seed < 0:
        raise ValueError(f"expected seed >= 0, got {seed}")
    if deepest is not None and deepest < 0:
        raise ValueError(f"expected deepest >= 0 (0: every layer), got {deepest}")
    if fuse_weight is not None and not (math.isfinite(fuse_weight) and fuse_weight >= 0):
        raise ValueError(f"expected a finite fuse_weight >= 0, got {fuse_weight}")
    if any(int(s) != s or not 1 <= s <= 5 for s in severities):
        raise ValueError(f"expected severities in 1..5, got {list(severities)}")
    if any(not (math.isfinite(e) and e >= 0) for e in epsilons):
        raise ValueError(f"expected finite epsilons >= 0, got {list(epsilons)}")
    if not attacks or any(a not in robustness.ATTACKS for a in attacks):
        raise ValueError(f"expected attacks from {robustness.ATTACKS}, got {list(attacks)}")


def _largest(splits: dict[str, Any], max_fit: int, num_ood: int, attack_size: int) -> int:
    """The most examples one forward pass of the evaluation reads: the training subset
    the statistics are fitted on, another split, an OOD set or the attacked inputs."""
    sizes = [min(len(v["label"]), max_fit) if k == "train" else len(v["label"])
             for k, v in splits.items()]  # fmt: skip
    return max([*sizes, num_ood, attack_size])


@dataclasses.dataclass
class _Scored:
    """What the stages after scoring read: the test split's scores and outputs, each OOD
    set's scores, and the scoring function itself (for validation and attacked inputs)."""

    score: Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]]
    test_images: np.ndarray
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    outputs: dict[str, Any]
    ood_scores: dict[str, dict[str, np.ndarray]]
    profiles: dict[str, tuple]


def _suite(
    detector: Detector,
    suite: str | Sequence[OODSet],
    extra_ood: Sequence[OODSet | OODFile | ReadOODFile],
    num_ood: int,
    seed: int,
    severities: Sequence[int],
    corruptions: Sequence[str] | None,
) -> tuple[str | Sequence[OODSet], list[OODSet]]:
    """The suite's name (a text run's image default becomes ``"text"``) and its sets."""
    from tac_jax.train.config import is_text_data

    config = detector.setup.config
    if is_text_data(config.data) and suite == "fmnist":
        suite = "text"
    extra = resolve_user_sets(extra_ood, detector.setup.input_shape, num=num_ood, seed=seed,
                              num_classes=config.data.num_classes)  # fmt: skip
    sets = build_suite(
        suite, detector.splits["test"], config.data, num_ood=num_ood, seed=seed,
        severities=severities, corruptions=corruptions, vocab=detector.vocab, extra=extra,
    )  # fmt: skip
    return suite, sets


def _measure(
    detector: Detector,
    sets: Sequence[OODSet],
    costs: Costs,
    grid: list[float],
    bootstrap: int,
    seed: int,
    say: Log,
) -> tuple[dict[str, Any], _Scored]:
    """Scores the test split and every OOD set, and measures every section of the report
    but the adversarial one."""
    setup, names, splits = detector.setup, detector.names, detector.splits
    has_tac = setup.tac is not None

    def score(images: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        outputs = detector.outputs(images)
        return detector.score_outputs(outputs), outputs

    test = splits["test"]
    say(f"scoring the test split ({len(test['label'])} examples)")
    test_scores, test_out = score(test["image"])
    labels = np.asarray(test["label"])
    correct = test_scores["prediction"] == labels
    only = {n: test_scores[n] for n in names}
    ood, ood_scores, profiles = measure.score_suite(
        sets, score, only, has_tac, bootstrap, seed, say
    )
    say("value, calibration and misclassification tables")
    held = measure.thresholds(test_scores, labels, splits.get("validation"), score, seed)
    value = measure.value_metrics(held, names, grid, costs)
    accuracy = {"base": float(np.mean(correct))}
    if has_tac:
        accuracy["tac"] = float(np.mean(test_scores["tac_prediction"] == labels))
        accuracy["tac_soft"] = float(np.mean(test_scores["tac_soft_prediction"] == labels))
        accuracy["agreement"] = float(
            np.mean(test_scores["tac_prediction"] == test_scores["prediction"])
        )
    metrics: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": report_lib.run_summary(
            detector.run.path, setup, detector.step, splits, detector.forward.layers
        ),
        "split_info": held.info(),
        "scores": {n: _score_info(n, detector.fitted) for n in names},
        "accuracy": accuracy,
        "calibration": tables.calibration_metrics(test_out["logits"], labels),
        "misclassification": tables.misclassification_table(
            only, correct, bootstrap=bootstrap, seed=seed
        ),
        "ood": {"sets": ood, "mean_auroc": tables.mean_auroc(ood, names, KINDS)},
        "value": value,
        "non_finite": tables.non_finite_counts(only),
    }
    say("guaranteed-risk thresholds")
    metrics["guarantee"] = measure.guarantee_metrics(held, names, seed)
    if has_tac:
        say("per-layer diagnostics")
        codes = setup.tac.codes
        metrics["layers"] = layer_diagnostics(
            test_out["activation"], labels, test_scores["prediction"], codes.matrix,
            codes.width, list(setup.tac.layers), profiles,
        )  # fmt: skip
        fitted = detector.fitted
        weights = fitted.stats.get("tac_weighted") if fitted is not None else None
        if weights is not None:
            metrics["layers"]["weights"] = [float(w) for w in weights["weights"]]
    clean = {"accuracy": accuracy["base"], "ece": metrics["calibration"]["ece"]}
    if has_tac:
        clean["tac_accuracy"] = accuracy["tac"]
    metrics["shift"] = shift.shift_table(ood, clean)
    scored = _Scored(score, test["image"], labels, test_scores, test_out, ood_scores, profiles)
    return metrics, scored


def _score_info(name: str, fitted: Any) -> dict[str, str]:
    """``metrics.json``'s entry of a score: family, formula and, where its fit chose
    something (`tac_jax.scores.entry.Score.fitted_note`), what it chose on this run."""
    entry = SCORES[name]
    info = {"family": entry.family, "formula": entry.formula}
    stats = fitted.stats.get(name) if fitted is not None else None
    if entry.fitted_note is not None and stats is not None:
        info["fitted"] = entry.fitted_note(stats)
    return info


def _write(
    out_dir: str,
    metrics: dict[str, Any],
    scored: _Scored,
    detector: Detector,
    plots: bool,
    start: float,
    say: Log,
) -> dict[str, Any]:
    """Writes the figures, the data files, ``metrics.json`` and ``report.md`` into
    ``out_dir`` (the staging folder `evaluate_run` swaps in); returns the metrics as
    written."""
    os.makedirs(out_dir, exist_ok=True)
    names, tac = detector.names, detector.setup.tac
    labels, test_scores = scored.labels, scored.scores
    figures: list[str] = []
    if plots:
        # matplotlib loads only when figures are drawn.
        from tac_jax.evaluate.reporting import plots as plots_lib

        say("figures")
        ood = metrics["ood"]["sets"]
        figures = plots_lib.write_plots(
            out_dir,
            plots_lib.PlotData(
                test_scores={n: test_scores[n] for n in names},
                correct=test_scores["prediction"] == labels,
                ood_scores=scored.ood_scores,
                kinds={name: entry["kind"] for name, entry in ood.items()},
                value=metrics["value"],
                activation=scored.outputs.get("activation"),
                prediction=test_scores["prediction"],
                labels=labels,
                codes=tac.codes.matrix if tac is not None else None,
                ood_activation={k: v[0][:_PROFILE_ROWS] for k, v in scored.profiles.items()},
                layers=metrics.get("layers"),
                code_width=tac.codes.width if tac is not None else None,
                logits=scored.outputs["logits"],
            ),
        )
        if metrics["shift"]:
            figures.append(shift.shift_figure(out_dir, metrics["shift"]))
        if metrics["adversarial"]:
            figures.append(adversarial_figure(out_dir, metrics["adversarial"]))
    metrics["figures"] = figures
    metrics["evaluation"]["seconds"] = time.perf_counter() - start
    metrics = measure.jsonable(metrics)
    metrics["files"] = data_files.write_data_files(
        out_dir, metrics["summary"], test_scores, labels, scored.ood_scores
    )
    data_files.write_json(os.path.join(out_dir, METRICS_FILE), metrics)
    report_lib.write_report(out_dir, metrics)
    return metrics
