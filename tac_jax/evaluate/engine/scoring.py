"""Every confidence score of a run, computed from one forward pass, and `score_file`.

The scores and what each needs are in `tac_jax.evaluate.engine.registry` (re-exported
here). `compute_scores` turns the outputs of `tac_jax.evaluate.engine.collect.collect`
into one ``(N,)`` array per score in one jitted function, applied in fixed-size batches
so it compiles once: each score's own ``compute`` reads the batch through a
`tac_jax.scores.entry.View`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.atomic_write import atomic_path
from tac_jax.batching import batched_apply
from tac_jax.data.arrays import load_array
from tac_jax.evaluate.engine.collect import (
    DEFAULT_BATCH,
    Forward,
    check_batchable,
    collect,
)
from tac_jax.evaluate.engine.fitted import (
    MAX_FIT,
    Fitted,
    fingerprint,
    fit_held_out,
    fit_or_load,
    fit_statistics,
    subset_indices,
    variables_hash,
)
from tac_jax.evaluate.engine.registry import (
    SCORES,
    TAC_NAMES,
    ScoreInfo,
    available_scores,
    resolve_scores,
    run_capabilities,
    score_passes,
    with_uses,
)
from tac_jax.metrics.guarantee import check_guarantee
from tac_jax.run import FITTED_FILE, REPORT_DIR
from tac_jax.scores.entry import HeldData, Options, View
from tac_jax.scores.tac import batch_outputs

# tac_fused's λ when a run does not say (the TAC study's choice on validation data).
FUSE_WEIGHT = 0.25
Log = Callable[[str], None]


@functools.partial(jax.jit, static_argnames=("names", "options"))
def _score_batch(stats, codes, batch, settings, names, options):
    view = View(SCORES, batch, stats, codes, settings, options)
    out = {"prediction": view.prediction}
    if codes is not None and "activation" in batch:
        tac = batch_outputs(view)  # shared with TAC's scores of this batch
        out["tac_prediction"] = tac["tac_prediction"]
        out["tac_soft_prediction"] = tac["tac_soft_prediction"]
    for name in names:
        out[name] = view.score(name)
    return out


def _split_static(stats: Mapping[str, Any]) -> tuple[dict[str, Any], tuple]:
    """The statistics' arrays, and their Python ints as ``((score, key, value), ...)``."""
    arrays: dict[str, Any] = {}
    static = []
    for name, tree in stats.items():
        arrays[name] = {}
        for key, value in tree.items():
            if isinstance(value, int) and not isinstance(value, bool):
                static.append((name, key, int(value)))
            else:
                arrays[name][key] = value
    return arrays, tuple(static)


def _check_fitted(names: Sequence[str], fitted: Fitted | None, code_width: int) -> None:
    """One line naming the statistics (or code width) a fitted score lacks."""
    for name in names:
        for used in with_uses([name]):
            entry = SCORES[used]
            if not entry.fitted and not entry.blockwise:
                continue
            if entry.fitted and fitted is None:
                raise ValueError(f"expected fitted statistics for {name!r}, got none")
            missing = entry.fitted and used not in fitted.stats
            if missing or (entry.blockwise and code_width < 1):
                raise ValueError(f"expected {entry.fitted_what} for {[name]}, got none")


def compute_scores(
    outputs: Mapping[str, Any],
    names: Sequence[str],
    *,
    fitted: Fitted | None = None,
    codes: np.ndarray | None = None,
    code_width: int = 0,
    scale: float = 10.0,
    deepest: int = 0,
    fuse_weight: float = FUSE_WEIGHT,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Every score in ``names`` from one dataset's collected outputs.

    Args:
      outputs: from `tac_jax.evaluate.engine.collect.collect` (with each extra pass the
        scores read, ``"activation"`` for TAC's scores).
      names: score names (see `SCORES`).
      fitted: the fitted statistics, needed by the fitted scores.
      codes: ``(C, M)`` TAC's class codes, for TAC's scores.
      code_width: the entries per tapped layer ``k`` (needed by ``tac_weighted`` and
        ``deepest``).
      scale: the distance-softmax scale TAC was trained with (``tac_prob``).
      deepest: compute TAC's predictions and paper scores on the deepest this many
        tapped layers only (0: all); ``tac_weighted`` and ``tac_mahalanobis`` read every
        layer.
      fuse_weight: ``tac_fused``'s λ.
      batch_size: rows per jitted call; every call (the last one padded) has this many,
        so the scores compile once for all datasets of a run.

    Returns:
      ``{"prediction"[, "tac_prediction", "tac_soft_prediction"], name: (N,) ...}``
      numpy arrays; predictions are int32, scores float32.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ValueError(f"expected score names from {list(SCORES)}, got unknown {unknown}")
    has_tac = "activation" in outputs
    if any(n in TAC_NAMES for n in names) and (not has_tac or codes is None):
        raise ValueError("expected TAC activations and codes for TAC's scores, got none")
    for needed in score_passes(names):
        if needed not in outputs:
            users = [n for n in names if SCORES[n].pass_name == needed]
            raise ValueError(
                f"expected the {needed!r} pass (collect(..., passes=[{needed!r}])) for "
                f"{users}, got outputs {sorted(outputs)}"
            )
    _check_fitted(names, fitted, code_width)
    if deepest < 0:
        raise ValueError(f"expected deepest >= 0 tapped layers, got {deepest}")
    if deepest and code_width < 1:
        raise ValueError("expected the code width to keep the deepest tapped layers, got none")
    if batch_size < 1:
        raise ValueError(f"expected a positive batch size, got {batch_size}")
    # Without codes the activation cannot be decoded: TAC's outputs are left out.
    batch = {k: v for k, v in outputs.items() if k != "activation" or codes is not None}
    used = set(with_uses(names))
    stats, static = _split_static(
        {n: s for n, s in (fitted.stats if fitted else {}).items() if n in used}
    )
    options = Options(width=int(code_width), deepest=int(deepest), static=static)
    settings = {
        "scale": jnp.asarray(scale, jnp.float32),
        "fuse": jnp.asarray(fuse_weight, jnp.float32),
    }
    codes_arr = None if codes is None else jnp.asarray(codes, jnp.float32)
    fn = lambda b: _score_batch(stats, codes_arr, b, settings, names=names, options=options)
    result = batched_apply(fn, batch, int(batch_size))
    for key in ("prediction", "tac_prediction", "tac_soft_prediction"):
        if key in result:
            result[key] = result[key].astype(np.int32)
    return {k: v.astype(np.float32) if k in SCORES else v for k, v in result.items()}


def drop_unfitted(
    names: Sequence[str], requested: Sequence[str] | None, fitted: Fitted | None
) -> tuple[str, ...]:
    """``names`` without the scores whose fit could not be made (e.g. ``tac_weighted``
    and ``tac_fused`` on a validation split without errors) when they came by default;
    an explicit request for one is an error naming why."""
    if fitted is None:
        return tuple(names)

    def lacking(name: str) -> list[str]:
        return [u for u in with_uses([name]) if SCORES[u].fitted and u not in fitted.stats]

    dropped = [n for n in names if lacking(n)]
    if dropped and requested is not None:
        reasons = sorted({fitted.failed.get(u, "not fitted") for n in dropped for u in lacking(n)})
        what = SCORES[lacking(dropped[0])[0]].fitted_what
        raise ValueError(f"expected {what} for {dropped}, got none: {'; '.join(reasons)}")
    return tuple(n for n in names if n not in dropped)


def tac_options(
    setup: Any, state: Any, deepest: int | None = None, fuse_weight: float | None = None
) -> dict[str, Any]:
    """`compute_scores`' TAC arguments for a loaded run: its ``codes``, ``code_width``,
    the trained distance-softmax ``scale``, ``deepest`` and ``fuse_weight`` (None: the
    run's ``config.tac.score_deepest`` and ``config.tac.fuse_weight``); empty for a run
    without TAC."""
    if fuse_weight is None:
        fuse_weight = (
            float(setup.config.tac.get("fuse_weight", FUSE_WEIGHT)) if setup.tac else FUSE_WEIGHT
        )
    if not np.isfinite(fuse_weight) or fuse_weight < 0:
        raise ValueError(f"expected a finite fuse_weight >= 0, got {fuse_weight}")
    if deepest is None:
        deepest = int(setup.config.tac.get("score_deepest", 0)) if setup.tac is not None else 0
    if setup.tac is None:
        if deepest:
            raise ValueError(f"expected a TAC run for deepest={deepest}, got a run without TAC")
        return {}
    if deepest < 0 or deepest > setup.tac.codes.num_layers:
        raise ValueError(
            f"expected deepest in 0..{setup.tac.codes.num_layers} (the tapped layers), got {deepest}"
        )
    return {
        "codes": setup.tac.codes.matrix,
        "code_width": int(setup.tac.codes.width),
        "scale": float(setup.tac.current_scale(state.params)),
        "deepest": int(deepest),
        "fuse_weight": float(fuse_weight),
    }


def fit_validation(
    fitted: Fitted,
    names: Sequence[str],
    held: Mapping[str, Any],
    labels: np.ndarray,
    codes: Any,
    batch_size: int = 1024,
    log: Log | None = None,
) -> Fitted:
    """Fits, in place, the scores of ``names`` fitted on held-out data (TAC's layer
    weights, then ``tac_fused``'s standardisation), in dependency order.

    Args:
      fitted: the training statistics (``tac_mahalanobis`` among them).
      names: the scores to fit.
      held: `collect`'s outputs on the held-out examples.
      labels: their labels.
      codes: the run's `tac_jax.codes.ClassCodes`, or None.
      batch_size: rows per scoring call.
      log: optional progress callback.
    """
    matrix = None if codes is None else codes.matrix
    width = 0 if codes is None else int(codes.width)

    def scores(wanted: Sequence[str]) -> dict[str, np.ndarray]:
        return compute_scores(held, wanted, fitted=fitted, codes=matrix, code_width=width,
                              batch_size=batch_size)  # fmt: skip

    data = HeldData(held, np.asarray(labels), matrix, width, scores)
    return fit_held_out(fitted, names, data, log=log)


def fitted_for_run(
    workdir: str | os.PathLike,
    forward: Forward,
    step: int,
    train: Mapping[str, np.ndarray],
    head: tuple[np.ndarray, np.ndarray] | None,
    *,
    names: Sequence[str],
    max_fit: int = MAX_FIT,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    validation: Mapping[str, np.ndarray] | None = None,
    log: Log | None = None,
) -> Fitted:
    """The statistics of the fitted scores among ``names``, from
    ``WORKDIR/report/fitted.npz`` when it matches (the same variables, by content, and
    checkpoint step, subset, layers and validation size, and it holds them all), else
    fitted on (a subset of) ``train``
    and, for the scores fitted on held-out data, on all of ``validation``.

    Args:
      workdir: the run's directory (the cache lives in its ``report/``).
      forward: the run's passes (`tac_jax.evaluate.engine.collect.make_forward`).
      step: the checkpoint step the run was loaded at.
      train: the training split, ``{"image", "label"}``.
      head: the base head's ``(kernel, bias)`` (`tac_jax.evaluate.engine.collect.head_params`).
      names: the scores that will be computed.
      max_fit: at most this many training examples are used.
      seed: picks them when the split is larger.
      batch_size: examples per forward pass.
      validation: the held-out split ``{"image", "label"}``, or None.
      log: optional progress callback.
    """
    n = len(train["label"])
    index = subset_indices(n, max_fit, seed)
    setup = forward.setup
    held_names = [u for u in with_uses(names) if SCORES[u].fit_held is not None]
    if not held_names:
        validation = None
    num_val = 0 if validation is None else len(validation["label"])
    meta = fingerprint(
        step, len(index), max_fit, seed if n > max_fit else 0, forward.layers, num_val,
        weights=variables_hash(forward.variables),
    )  # fmt: skip
    meta["train_examples"] = int(n)

    train_names = [u for u in with_uses(names) if SCORES[u].fit is not None]

    def fit() -> Fitted:
        if log:
            log(f"fitting feature statistics on {len(index)} of {n} training examples")
        outputs = collect(
            forward, train["image"][index], batch_size=batch_size, passes=score_passes(train_names)
        )
        fitted = fit_statistics(
            outputs,
            np.asarray(train["label"])[index],
            setup.config.data.num_classes,
            head,
            names=names,
        )
        if num_val:
            if log:
                log(f"fitting {held_names} on {num_val} validation examples")
            held = collect(forward, validation["image"], batch_size=batch_size)
            codes = setup.tac.codes if setup.tac is not None else None
            fit_validation(fitted, names, held, validation["label"], codes, batch_size, log)
        return fitted

    path = os.path.join(os.fspath(workdir), REPORT_DIR, FITTED_FILE)
    return fit_or_load(path, meta, fit, names=names if num_val else train_names, log=log)


def check_inputs(images: Any) -> np.ndarray:
    """Checks an array's dtype and values before it is scored.

    Raises:
      ValueError: one sentence naming what was expected and what was given.
    """
    images = np.asarray(images)
    if images.ndim == 0 or images.shape[0] == 0:
        raise ValueError(f"expected at least one input example, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"expected uint8 images or floating-point images in [0, 1], got dtype {images.dtype}"
        )
    nans = int(np.isnan(images).sum())
    if nans:
        raise ValueError(f"expected inputs without NaNs, got {nans} NaN value(s)")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"expected floating-point inputs in [0, 1] (uint8 for 0..255), got values in "
            f"[{low:g}, {high:g}]"
        )
    return images.astype(np.float32)


def check_request(scores: Sequence[str] | None, *, batch_size: int, max_fit: int = MAX_FIT) -> None:
    """Checks, before any work, the score names (known ones; whether a run can compute
    them is known once it is loaded) and the sizes.

    Raises:
      ValueError: on an unknown score name, an empty list, or a size below 1.

    >>> check_request(["msp"], batch_size=0)
    Traceback (most recent call last):
    ValueError: expected batch_size >= 1, got 0
    """
    if scores is not None:
        resolve_scores(scores, {need for entry in SCORES.values() for need in entry.needs})
    for name, value in (("batch_size", batch_size), ("max_fit", max_fit)):
        if int(value) < 1:
            raise ValueError(f"expected {name} >= 1, got {value}")


def read_inputs(path: str | os.PathLike) -> np.ndarray:
    """The inputs of an array file (`load_array`), checked by `check_inputs`; an error
    names the file.

    Raises:
      FileNotFoundError: if the file is missing.
      ValueError: if it is not a readable array file, or its values are not inputs.
    """
    return _named(path, lambda: check_inputs(load_array(path)))


def _named(path: str | os.PathLike, read: Callable[[], np.ndarray]) -> np.ndarray:
    """``read()``, its ``ValueError`` naming the input file."""
    try:
        return read()
    except ValueError as error:
        message = str(error)
        if os.fspath(path) in message:
            raise
        raise ValueError(f"{message} (in {os.fspath(path)})") from None


def check_output(output_path: str | os.PathLike, input_path: str | os.PathLike) -> None:
    """Checks, before any work, that ``output_path`` can be written and is not the input.

    Raises:
      FileNotFoundError: if its folder does not exist.
      ValueError: if it is a folder, or the input file itself.
    """
    output = os.path.abspath(os.fspath(output_path))
    if os.path.isdir(output):
        raise ValueError(f"expected an output file path, got the folder {output_path}")
    if not os.path.isdir(os.path.dirname(output)):
        raise FileNotFoundError(
            f"expected an existing folder for the output {output_path}, got no such folder"
        )
    if os.path.exists(output) and os.path.samefile(output, os.fspath(input_path)):
        raise ValueError(f"expected an output other than the input, got {output_path} for both")


def score_file(
    workdir: str | os.PathLike,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    batch_size: int = DEFAULT_BATCH,
    scores: Sequence[str] | None = None,
    max_fit: int = MAX_FIT,
    seed: int = 0,
    deepest: int | None = None,
    fuse_weight: float | None = None,
    risk: float | None = None,
    delta: float = 0.1,
    method: str = "sgr",
    accept_score: str | None = None,
    log: Log | None = None,
) -> dict[str, np.ndarray]:
    """Scores every input of an array file with a trained run and writes an ``.npz``;
    with ``risk``, also which inputs to accept at that guaranteed selective risk.

    The inputs are in the dataset's raw format: uint8 ``(N, H, W[, C])`` or floats in
    [0, 1], in a ``.npy``, ``.npz`` or IDX file; the run's own preprocessing is applied.
    Feature-based scores use the statistics cached in ``WORKDIR/report/fitted.npz``
    (fitted on the run's training split the first time), so repeated scoring is fast.

    Args:
      workdir: a trained run's directory.
      input_path: the array file.
      output_path: the ``.npz`` to write (written at exactly this path).
      batch_size: examples per forward pass.
      scores: the scores to compute (default: every one this run supports).
      max_fit: training examples the feature statistics are fitted on, at most.
      seed: picks that subset when the training split is larger.
      deepest: TAC's scores on the deepest this many tapped layers (0: all); default:
        the run's ``config.tac.score_deepest``.
      fuse_weight: ``tac_fused``'s λ (default: the run's ``config.tac.fuse_weight``).
      risk: a target selective risk ``r*`` in (0, 1): a threshold on ``accept_score`` is
        calibrated on the run's validation split (`Detector.calibrate`) such that the
        base head's error rate among the accepted is at most ``r*`` with probability
        ``1 - delta``, and applied to the inputs (`Detector.acceptance`).
      delta: ``δ`` in (0, 1).
      method: ``"sgr"`` (default) or ``"ltt"`` (`tac_jax.metrics.guarantee`).
      accept_score: the score thresholded (default: the first of ``scores``, else
        ``msp``); computed even if ``scores`` leaves it out.
      log: optional progress callback.

    Returns:
      What was written: ``prediction`` (the base head's argmax), ``tac_prediction`` and
      ``tac_soft_prediction`` (TAC runs) and one ``(N,)`` float32 array per score, under its name;
      with ``risk``, the ``accept*`` arrays of `Detector.acceptance`.

    Raises:
      ValueError: if the inputs have the wrong shape, dtype or values (NaNs, floats
        outside [0, 1]), on a bad target, or with ``risk`` on a run without a validation
        split; every argument and the inputs are checked before any fitting or scoring.
      FileNotFoundError: if the file or the run's checkpoint is missing.

    >>> score_file("runs/smoke_tac", "x.npy", "scores.npz")["tac"].shape  # doctest: +SKIP
    (50,)
    """
    from tac_jax.evaluate.engine.detector import Detector

    check_output(output_path, input_path)
    check_request(scores, batch_size=batch_size, max_fit=max_fit)
    if risk is not None:
        check_guarantee(risk, delta, method)
        accept_score = accept_score or (scores[0] if scores else "msp")
        if accept_score not in SCORES:
            raise ValueError(
                f"expected a score name from {list(SCORES)} to accept by, got {accept_score!r}"
            )
        if scores is not None and accept_score not in scores:
            scores = [*scores, accept_score]
    elif accept_score is not None:
        raise ValueError(f"expected a risk to accept by {accept_score!r}, got none")
    images = read_inputs(input_path)
    detector = Detector.from_run(
        workdir,
        scores=scores,
        deepest=deepest,
        fuse_weight=fuse_weight,
        # No batch larger than the inputs or the fitting subset: the rest is padding.
        batch_size=min(batch_size, max(len(images), max_fit)),
        max_fit=max_fit,
        seed=seed,
        fit=False,
        log=log,
    )
    if risk is not None and detector.splits.get("validation") is None:
        raise ValueError(
            f"expected a run with a validation split to calibrate the threshold on "
            f"(config.data.validation_fraction > 0), got none in {workdir}"
        )
    images = _named(input_path, lambda: check_batchable(images, detector.setup.input_shape))
    detector.fit_run(max_fit=max_fit, seed=seed, log=log)
    if log:
        log(f"scoring {len(images)} inputs from {input_path}")
    result = detector.score(images)
    if risk is not None:
        result |= detector.acceptance(accept_score, result, risk, delta, method, log=log)
    # At exactly this path (a file object: np.savez adds no ".npz"), atomically: the
    # previous file survives a failed write.
    with atomic_path(output_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **result)
    return result


__all__ = [
    "SCORES",
    "TAC_NAMES",
    "ScoreInfo",
    "available_scores",
    "check_inputs",
    "check_request",
    "compute_scores",
    "fit_validation",
    "fitted_for_run",
    "read_inputs",
    "resolve_scores",
    "run_capabilities",
    "score_file",
    "score_passes",
]
