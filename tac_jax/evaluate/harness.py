"""`evaluate_run`: every confidence score of one trained run, on the same data and metrics.

One forward pass per dataset (`tac_jax.evaluate.engine.collect`) feeds every score
(`tac_jax.evaluate.engine.scoring.SCORES`); the feature-based ones are fitted on the run's
training split (at most ``max_fit`` examples). Then, per score: misclassification
detection and selective classification on the test split, OOD detection of every set
of the suite against the test split, and the reject value with thresholds chosen on
validation data; then the hard cases: accuracy, ECE and detection per corruption and
severity (covariate shift, `tac_jax.evaluate.reporting.shift`) and PGD inputs against every score
(`tac_jax.evaluate.robustness`). The results go to ``WORKDIR/report/``:
``metrics.json``, ``report.md`` and the figures.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from tac_jax.evaluate import robustness
from tac_jax.evaluate.engine.collect import DEFAULT_BATCH
from tac_jax.evaluate.engine.detector import Detector
from tac_jax.evaluate.engine.fitted import MAX_FIT
from tac_jax.evaluate.engine.scoring import (
    REPORT_DIR,
    SCORES,
    run_capabilities,
)
from tac_jax.evaluate.ood.suites import (
    KINDS,
    TFDS_SUITES,
    Loader,
    OODSet,
    fmnist_suite,
    load_tfds_images,
    tfds_suite,
)
from tac_jax.evaluate.ood.text_suites import text_suite
from tac_jax.evaluate.ood.user_sets import (
    OODFile,
    add_user_sets,
    check_user_sets,
    resolve_user_sets,
)
from tac_jax.evaluate.reporting import data_files, shift, tables
from tac_jax.evaluate.reporting import report as report_lib
from tac_jax.evaluate.reporting.adversarial import adversarial_figure
from tac_jax.evaluate.reporting.layers import layer_diagnostics
from tac_jax.metrics import Costs
from tac_jax.metrics.calibration import ece

# The local suites, then the public benchmark pairs read through TFDS (`TFDS_SUITES`).
SUITES = ("fmnist", "text", "none", *TFDS_SUITES)
METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1
# Rows of each OOD set kept for the activation-profile figure.
_PROFILE_ROWS = 8
Log = Callable[[str], None]


def threshold_split(
    n: int, has_validation: bool, seed: int
) -> tuple[str, np.ndarray | None, np.ndarray]:
    """Where the value thresholds are chosen.

    With a validation split, thresholds come from it and the whole test split reports.
    Without one, the test split is halved by a fixed permutation of ``seed``: the first
    half chooses, the second reports.

    Returns:
      ``(name, val_index, test_index)``: ``val_index`` is None with a validation split.

    >>> name, val, test = threshold_split(4, False, 0)
    >>> name, len(val), len(test), sorted(np.r_[val, test].tolist())
    ('test_half', 2, 2, [0, 1, 2, 3])
    """
    if has_validation:
        return "validation", None, np.arange(n)
    if n < 2:
        raise ValueError(f"expected at least 2 test examples to halve, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return "test_half", np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def held_out_set(
    data: ml_collections.ConfigDict, num: int, seed: int, split: str = "test"
) -> OODSet | None:
    """Near-OOD: the images of ``split`` (``"test"``, or ``"train"`` for a validation
    set the test split never sees) of the classes a run was trained without
    (``config.data.classes``), at most ``num`` of them; None when it kept every class."""
    from tac_jax.train.dataset import load_splits

    if not tuple(data.classes):
        return None
    everything = ml_collections.ConfigDict(data.to_dict())
    everything.classes = ()
    everything.validation_fraction = 0.0
    # Any label is in range: the point is to see the classes the run never saw.
    everything.num_classes = np.iinfo(np.int32).max
    test = load_splits(everything, seed)[split]
    held = ~np.isin(test["label"], np.asarray(tuple(data.classes)))
    index = np.flatnonzero(held)
    if not index.size:
        return None
    if index.size > num:
        index = np.sort(np.random.default_rng(seed).choice(index, num, replace=False))
    images = test["image"][index]
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / np.float32(255.0)
    return OODSet("held_out", images, "near", labels=None)


def build_suite(
    suite: str | Sequence[OODSet],
    test: dict[str, np.ndarray],
    data: ml_collections.ConfigDict,
    *,
    num_ood: int,
    seed: int,
    severities: Sequence[int],
    corruptions: Sequence[str] | None,
    vocab: Any = None,
    extra: Sequence[OODSet] = (),
    load: Loader | None = None,
) -> list[OODSet]:
    """The OOD sets: ``"fmnist"`` (`fmnist_suite` on the run's test split), a key of
    `TFDS_SUITES` (`tfds_suite`, for a run trained on that dataset), ``"text"``
    (`text_suite`, for a text run: pass its ``vocab``), ``"none"``, or given `OODSet`s;
    the image suites get the held-out classes too when the run kept a subset. Then the
    user's ``extra`` sets, whose names must differ from the suite's (`add_user_sets`).

    ``load(tfds_name, split)`` reads the TFDS sets; default `load_tfds_images` from the
    run's ``data_dir`` (a TFDS run's) or TFDS's own.
    """
    if not isinstance(suite, str):
        sets = list(suite)
        if not all(isinstance(s, OODSet) for s in sets):
            raise ValueError("expected a suite name or a sequence of OODSet, got other objects")
        return add_user_sets(sets, extra)
    if suite not in SUITES:
        raise ValueError(f"expected a suite in {SUITES} or a list of OODSet, got {suite!r}")
    if suite == "none":
        return add_user_sets([], extra)
    if suite == "text":
        if vocab is None:
            raise ValueError("expected the vocabulary of a text run for suite 'text', got None")
        sets = text_suite(data, vocab, test["image"], test["label"], num=num_ood, seed=seed)
        return add_user_sets(sets, extra)
    if suite in TFDS_SUITES:
        # The suite's sets are OOD for its dataset only; a run on local arrays may be
        # anything, so it is refused too.
        is_tfds = data.source == "tfds"
        if (data.name if is_tfds else data.source) != suite:
            field = f"name={data.name!r}" if is_tfds else f"source={data.source!r}"
            raise ValueError(
                f"expected a run trained on {suite!r} for suite {suite!r}, got config.data.{field}"
            )
        if load is None:
            data_dir = (data.data_dir or None) if data.source == "tfds" else None
            load = functools.partial(load_tfds_images, data_dir=data_dir)
        sets = tfds_suite(suite, load=load, num=num_ood)
    else:
        sets = fmnist_suite(
            test["image"],
            test["label"],
            num=num_ood,
            severities=severities,
            corruptions=corruptions,
            seed=seed,
        )
    held = held_out_set(data, num_ood, seed)
    return add_user_sets(([held] if held is not None else []) + sets, extra)


def _jsonable(x: Any) -> Any:
    # JSON has no NaN or infinity: they become null (documented in the report).
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def _summary(metrics: dict[str, Any], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One row per score: the headline numbers of every section."""
    grid = metrics["value"]["c_err"]
    rows = {}
    for name in names:
        mis = metrics["misclassification"][name]
        row = {
            "family": SCORES[name].family,
            "misclassification_auroc": mis["auroc"],
            "aurc": mis["aurc"],
            "e_aurc": mis["e_aurc"],
            "acc_at_90": mis.get("acc_at_90"),
        }
        for key, value in metrics["ood"]["mean_auroc"].get(name, {}).items():
            row[f"mean_ood_auroc_{key}" if key != "all" else "mean_ood_auroc"] = value
        values = metrics["value"]["scores"][name]["value"]
        for c, v in zip(grid, values, strict=True):
            row[f"value_c_err_{c:g}"] = v
        for target, section in metrics.get("adversarial", {}).items():
            for key, entry in section["by_epsilon"].items():
                auroc = entry["detection"].get(name, {}).get("auroc")
                row[f"adversarial_auroc_{target}_eps{float(key):g}"] = auroc
        rows[name] = row
    return rows


def _score_suite(
    sets: Sequence[OODSet],
    score: Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]],
    test_scores: dict[str, np.ndarray],
    has_tac: bool,
    bootstrap: int,
    seed: int,
    say: Log,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]], dict[str, tuple]]:
    """Scores every OOD set and compares it with the test split.

    Returns:
      ``(entries, scores, tac_outputs)``: the ``ood.sets`` section of ``metrics.json``,
      each set's raw scores, and per set (TAC runs) ``(activation, base prediction,
      kind)``, what the per-layer diagnostics read.
    """
    entries: dict[str, Any] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    profiles: dict[str, tuple] = {}
    for i, oodset in enumerate(sets):
        say(f"OOD set {i + 1}/{len(sets)}: {oodset.name} ({len(oodset)} images)")
        s, out = score(oodset.images)
        raw[oodset.name] = {n: s[n] for n in test_scores}
        entry: dict[str, Any] = {"kind": oodset.kind, "size": len(oodset)}
        if oodset.labels is not None:
            # Corrupted sets keep their labels: accuracy under covariate shift.
            entry["accuracy"] = float(np.mean(s["prediction"] == oodset.labels))
            entry["ece"] = ece(tables.softmax(out["logits"]), oodset.labels, 15)
            if has_tac:
                entry["tac_accuracy"] = float(np.mean(s["tac_prediction"] == oodset.labels))
        entry["scores"] = tables.ood_table(
            test_scores, raw[oodset.name], bootstrap=bootstrap, seed=seed
        )
        entries[oodset.name] = entry
        if has_tac:
            profiles[oodset.name] = (out["activation"], s["prediction"], oodset.kind)
    return entries, raw, profiles


def _value_metrics(
    test_scores: dict[str, np.ndarray],
    labels: np.ndarray,
    validation: dict[str, np.ndarray] | None,
    score: Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]],
    names: Sequence[str],
    grid: list[float],
    costs: Costs,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``value`` section (per score, combined policies, references) and where its
    thresholds came from (``threshold_split``, ``val_size``, ``value_test_size``)."""
    split_name, val_index, test_index = threshold_split(len(labels), validation is not None, seed)
    if val_index is None:
        val_scores, _ = score(validation["image"])
        val_labels = np.asarray(validation["label"])
    else:
        val_scores = {k: v[val_index] for k, v in test_scores.items()}
        val_labels = labels[val_index]
    held = {k: v[test_index] for k, v in test_scores.items()}
    held_labels = labels[test_index]
    val_correct = val_scores["prediction"] == val_labels
    held_correct = held["prediction"] == held_labels
    value = {
        "c_err": grid,
        "scores": tables.value_table(
            {n: val_scores[n] for n in names},
            val_correct,
            {n: held[n] for n in names},
            held_correct,
            c_err_grid=grid,
            costs=costs,
        ),
        "policies": tables.policy_table(
            tables.Split(
                val_scores, val_scores["prediction"], val_scores.get("tac_prediction"), val_labels
            ),
            tables.Split(held, held["prediction"], held.get("tac_prediction"), held_labels),
            c_err_grid=grid,
            costs=costs,
        ),
        "reference": tables.reference_values(held_correct, c_err_grid=grid, costs=costs),
    }
    info = {
        "threshold_split": split_name,
        "val_size": int(len(val_labels)),
        "value_test_size": int(len(held_labels)),
    }
    return value, info


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
      batch_size: examples per forward pass.
      plots: write the figures.
      step: the checkpoint to evaluate (default: the newest).
      command: the command line to print in the report (default: the Python call).
      log: optional progress callback, e.g. ``print``.

    Returns:
      The contents of ``metrics.json`` (see `tac_jax.evaluate.reporting.report` for the schema).

    Raises:
      ValueError: on an unknown suite or score, a score the run cannot compute, a TFDS
        suite for a run on another dataset, or extra sets of the wrong shape or with
        names given twice.
      FileNotFoundError: if the workdir holds no checkpoint, or data (the run's, an
        extra set's file, a TFDS suite's) is missing.

    >>> metrics = evaluate_run("runs/smoke_tac", num_ood=200)  # doctest: +SKIP
    >>> metrics["summary"]["tac"]["mean_ood_auroc"]  # doctest: +SKIP
    """
    from tac_jax.train.config import is_text_data

    say = log or (lambda _: None)
    start = time.perf_counter()
    workdir = os.fspath(workdir)
    if bootstrap < 0:
        raise ValueError(f"expected bootstrap >= 0, got {bootstrap}")
    if not attacks or any(a not in robustness.ATTACKS for a in attacks):
        raise ValueError(f"expected attacks from {robustness.ATTACKS}, got {list(attacks)}")
    check_user_sets(extra_ood)
    detector = Detector.from_run(
        workdir,
        step=step,
        scores=scores,
        deepest=deepest,
        fuse_weight=fuse_weight,
        batch_size=batch_size,
        fit=False,
        log=say,
    )
    setup, step, state, vocab = detector.setup, detector.step, detector.state, detector.vocab
    config = setup.config
    has_tac = setup.tac is not None
    if is_text_data(config.data) and suite == "fmnist":
        suite = "text"
    extra = resolve_user_sets(
        extra_ood, setup.input_shape, num=num_ood, seed=seed, num_classes=config.data.num_classes
    )
    splits = detector.splits
    # Before any fitting or scoring, so that a suite that cannot be built fails fast.
    sets = build_suite(
        suite,
        splits["test"],
        config.data,
        num_ood=num_ood,
        seed=seed,
        severities=severities,
        corruptions=corruptions,
        vocab=vocab,
        extra=extra,
    )
    detector.fit_run(max_fit=max_fit, seed=seed, log=say)
    names, fitted, options = detector.names, detector.fitted, detector.options
    forward = detector.forward
    codes = setup.tac.codes.matrix if has_tac else None

    def score(images: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        outputs = detector.outputs(images)
        return detector.score_outputs(outputs), outputs

    test = splits["test"]
    say(f"scoring the test split ({len(test['label'])} examples)")
    test_scores, test_out = score(test["image"])
    labels = np.asarray(test["label"])
    correct = test_scores["prediction"] == labels

    ood, ood_scores, profiles = _score_suite(
        sets, score, {n: test_scores[n] for n in names}, has_tac, bootstrap, seed, say
    )
    say("value, calibration and misclassification tables")
    grid = [float(c) for c in c_err_grid]
    value, split_info = _value_metrics(
        test_scores, labels, splits.get("validation"), score, names, grid, costs, seed
    )

    accuracy = {"base": float(np.mean(correct))}
    if has_tac:
        accuracy["tac"] = float(np.mean(test_scores["tac_prediction"] == labels))
        accuracy["tac_soft"] = float(np.mean(test_scores["tac_soft_prediction"] == labels))
        accuracy["agreement"] = float(
            np.mean(test_scores["tac_prediction"] == test_scores["prediction"])
        )
    metrics: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": report_lib.run_summary(workdir, setup, step, splits, forward.layers),
        "evaluation": {
            "command": command
            or report_lib.python_command(workdir, suite, num_ood, bootstrap, seed, scores),
            "suite": suite if isinstance(suite, str) else "custom",
            "num_ood": int(num_ood),
            "severities": list(severities),
            "bootstrap": int(bootstrap),
            "seed": int(seed),
            "scores": list(names),
            "deepest": int(options.get("deepest", 0)),
            "fuse_weight": options.get("fuse_weight"),
            "fit_examples": fitted.meta.get("fit_examples") if fitted else None,
            "knn_k": fitted.knn_k if fitted else None,
            "max_fit": int(max_fit),
            **split_info,
            "test_size": int(len(labels)),
            "costs": {"r": costs.r, "c_err": grid, "c_rej": costs.c_rej, "c_def": costs.c_def},
        },
        "scores": {n: {"family": SCORES[n].family, "formula": SCORES[n].formula} for n in names},
        "accuracy": accuracy,
        "calibration": tables.calibration_metrics(test_out["logits"], labels),
        "misclassification": tables.misclassification_table(
            {n: test_scores[n] for n in names}, correct, bootstrap=bootstrap, seed=seed
        ),
        "ood": {
            "sets": ood,
            "mean_auroc": tables.mean_auroc(ood, names, KINDS),
        },
        "value": value,
        "non_finite": tables.non_finite_counts({n: test_scores[n] for n in names}),
    }
    if has_tac:
        say("per-layer diagnostics")
        metrics["layers"] = layer_diagnostics(
            test_out["activation"],
            labels,
            test_scores["prediction"],
            codes,
            setup.tac.codes.width,
            list(setup.tac.layers),
            profiles,
        )
        weights = fitted.stats.get("tac_weighted") if fitted is not None else None
        if weights is not None:
            metrics["layers"]["weights"] = [float(w) for w in weights["weights"]]
    clean = {"accuracy": accuracy["base"], "ece": metrics["calibration"]["ece"]}
    if has_tac:
        clean["tac_accuracy"] = accuracy["tac"]
    metrics["shift"] = shift.shift_table(ood, clean)
    metrics["adversarial"] = {}
    if epsilons and "input" in run_capabilities(setup, state):
        metrics["adversarial"] = robustness.adversarial_sections(
            setup,
            state,
            test["image"],
            labels,
            test_scores,
            names,
            score,
            epsilons=epsilons,
            attacks=attacks,
            size=attack_size,
            seed=seed,
            bootstrap=bootstrap,
            batch_size=batch_size,
            log=say,
        )
        metrics["evaluation"]["epsilons"] = [float(e) for e in epsilons]
        metrics["evaluation"]["attacks"] = list(attacks)
    metrics["summary"] = _summary(metrics, names)

    out_dir = os.path.join(workdir, REPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    figures: list[str] = []
    if plots:
        # matplotlib loads only when figures are drawn.
        from tac_jax.evaluate.reporting import plots as plots_lib

        say("figures")
        figures = plots_lib.write_plots(
            out_dir,
            plots_lib.PlotData(
                test_scores={n: test_scores[n] for n in names},
                correct=correct,
                ood_scores=ood_scores,
                kinds={name: entry["kind"] for name, entry in ood.items()},
                value=metrics["value"],
                activation=test_out.get("activation"),
                prediction=test_scores["prediction"],
                labels=labels,
                codes=codes,
                ood_activation={k: v[0][:_PROFILE_ROWS] for k, v in profiles.items()},
                layers=metrics.get("layers"),
                code_width=setup.tac.codes.width if has_tac else None,
                logits=test_out["logits"],
            ),
        )
        if metrics["shift"]:
            figures.append(shift.shift_figure(out_dir, metrics["shift"]))
        if metrics["adversarial"]:
            figures.append(adversarial_figure(out_dir, metrics["adversarial"]))
    metrics["figures"] = figures
    metrics["evaluation"]["seconds"] = time.perf_counter() - start
    metrics = _jsonable(metrics)
    metrics["files"] = data_files.write_data_files(
        out_dir, metrics["summary"], test_scores, labels, ood_scores
    )
    data_files.write_json(os.path.join(out_dir, METRICS_FILE), metrics)
    report_lib.write_report(out_dir, metrics)
    say(f"wrote {os.path.join(out_dir, 'report.md')}")
    return metrics
