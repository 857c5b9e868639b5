"""Every confidence score of a run, computed from one forward pass, and `score_file`.

The scores and what each needs are in `tac_jax.evaluate.engine.registry` (re-exported here).
`compute_scores` turns the outputs of `tac_jax.evaluate.engine.collect.collect` into one
``(N,)`` array per score in one jitted function, applied in fixed-size batches so it
compiles once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.batching import batched_apply
from tac_jax.data.arrays import load_array
from tac_jax.evaluate.engine.collect import (
    DEFAULT_BATCH,
    Forward,
    check_batchable,
    collect,
    head_params,
    make_forward,
)
from tac_jax.evaluate.engine.fitted import (
    FITTED_FILE,
    KNN_K,
    MAX_FIT,
    Fitted,
    fingerprint,
    fit_or_load,
    fit_statistics,
    fit_tac_weights,
    fuse_statistics,
    subset_indices,
)
from tac_jax.evaluate.engine.registry import (
    SCORES,
    TAC_NAMES,
    ScoreInfo,
    available_scores,
    needs_fit,
    resolve_scores,
    run_capabilities,
    score_passes,
)
from tac_jax.methods.sngp import predictive_variance, sngp_score
from tac_jax.scores.feature import knn_score, mahalanobis_score, multilayer_mahalanobis_score
from tac_jax.scores.feature import vim_score as _vim_score
from tac_jax.scores.gradient import gradnorm
from tac_jax.scores.logits import energy, max_logit, msp, neg_entropy, react_energy
from tac_jax.scores.purview import purview_detector_score, purview_score
from tac_jax.scores.tac import (
    block_agreements,
    deepest_blocks,
    fused_confidence,
    tac_scores,
    weighted_agreement,
)

REPORT_DIR = "report"
# tac_fused's λ when a run does not say (the TAC study's choice on validation data).
FUSE_WEIGHT = 0.25
Log = Callable[[str], None]


@functools.partial(jax.jit, static_argnames=("names", "knn_k", "width", "deepest"))
def _score_batch(stats, codes, batch, names, knn_k, width=0, deepest=0, scale=10.0, fuse=0.25):
    logits = batch["logits"]
    f = batch.get("penultimate")
    out = {"prediction": jnp.argmax(logits, axis=-1)}
    if "activation" in batch:
        a = batch["activation"].astype(jnp.float32)
        if deepest:
            # TAC's predictions and scores on the deepest blocks only.
            tac = tac_scores(
                deepest_blocks(a, width, deepest),
                logits,
                deepest_blocks(codes, width, deepest),
                scale,
            )
        else:
            tac = tac_scores(a, logits, codes, scale)
        out["tac_prediction"] = tac["tac_prediction"]
        out["tac_soft_prediction"] = tac["tac_soft_prediction"]
        out.update({name: tac[name] for name in names if name in tac})
        fused = "tac_fused" in names
        if "tac_mahalanobis" in names or fused:
            out["tac_mahalanobis"] = mahalanobis_score(stats["tac_mahalanobis"], a)
        if "tac_weighted" in names or fused:
            g = block_agreements(a, codes, out["prediction"], width)
            out["tac_weighted"] = weighted_agreement(g, stats["tac_weights"])
        if fused:
            out["tac_fused"] = fused_confidence(
                out["tac_weighted"], out["tac_mahalanobis"], stats["tac_fuse"], fuse
            )
        for name in ("tac_mahalanobis", "tac_weighted"):
            if name not in names:
                out.pop(name, None)
    simple = {
        "msp": msp,
        "max_logit": max_logit,
        "energy": energy,
        "entropy": neg_entropy,
    }
    for name in names:
        if name in simple:
            out[name] = simple[name](logits)
        elif name == "odin":
            out[name] = batch["odin"]
        elif name == "mahalanobis":
            out[name] = mahalanobis_score(stats["mahalanobis"], f)
        elif name == "mahalanobis_multi":
            out[name] = multilayer_mahalanobis_score(stats["mahalanobis_multi"], batch["layers"])
        elif name == "knn":
            out[name] = knn_score(stats["knn"], f, k=knn_k)
        elif name == "react":
            out[name] = react_energy(f, stats["kernel"], stats["bias"], stats["react_threshold"])
        elif name == "vim":
            out[name] = _vim_score(stats["vim"], f, logits)
        elif name == "gradnorm":
            out[name] = gradnorm(f, logits)
        elif name == "purview":
            out[name] = purview_score(batch["purview"])
        elif name == "purview_detector":
            out[name] = purview_detector_score(stats["purview"], batch["purview"])
        elif name == "confidence_perturbed":
            out[name] = batch["confidence_perturbed"]
        elif name.startswith("mc_dropout_"):
            out[name] = batch["mc_dropout"][name]
        elif name == "sngp":
            variance = predictive_variance(batch["extras"]["rff"], stats["gp_covariance"])
            out[name] = sngp_score(logits, variance)
        elif name in batch.get("extras", {}):
            out[name] = batch["extras"][name]
    return out


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
      outputs: from `tac_jax.evaluate.engine.collect.collect` (with ``"odin"`` if it is named,
        ``"activation"`` for TAC's scores).
      names: score names (see `SCORES`).
      fitted: the training statistics, needed by the feature-based scores.
      codes: ``(C, M)`` TAC's class codes, for TAC's scores.
      code_width: the entries per tapped layer ``k`` (needed by ``tac_weighted`` and
        ``deepest``).
      scale: the distance-softmax scale TAC was trained with (``tac_prob``).
      deepest: compute TAC's predictions and scores (but ``tac_weighted`` and
        ``tac_mahalanobis``, which read every layer) on the deepest this many tapped
        layers only (0: all).
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
    for name in names:
        needed = SCORES[name].pass_name
        if needed and needed not in outputs:
            raise ValueError(
                f"expected the {needed!r} pass (collect(..., passes=[{needed!r}])) for "
                f"{name!r}, got outputs {sorted(outputs)}"
            )
    if needs_fit(names) and fitted is None:
        raise ValueError("expected fitted statistics for the feature-based scores, got none")
    if "tac_mahalanobis" in names and fitted.tac_mahalanobis is None:
        raise ValueError("expected TAC activation statistics for 'tac_mahalanobis', got none")
    if "tac_fused" in names and fitted.tac_fuse is None:
        raise ValueError("expected tac_fused's validation statistics, got none")
    weighted = [n for n in ("tac_weighted", "tac_fused") if n in names]
    if weighted and (fitted.tac_weights is None or code_width < 1):
        raise ValueError(
            "expected TAC's layer weights (fitted on a validation split) and the code width "
            f"for {weighted}, got none"
        )
    if deepest < 0:
        raise ValueError(f"expected deepest >= 0 tapped layers, got {deepest}")
    if deepest and code_width < 1:
        raise ValueError("expected the code width to keep the deepest tapped layers, got none")
    # Without codes the activation cannot be decoded: TAC's outputs are left out.
    keep = ["logits", "penultimate", "extras", *score_passes(names)]
    keep += ["activation"] if codes is not None else []
    if "mahalanobis_multi" in names:
        keep.append("layers")
    batch = {k: outputs[k] for k in keep if k in outputs}
    stats = fitted.tree() if fitted is not None else {}
    knn_k = fitted.knn_k if fitted is not None else KNN_K
    if batch_size < 1:
        raise ValueError(f"expected a positive batch size, got {batch_size}")
    codes_arr = None if codes is None else jnp.asarray(codes, jnp.float32)
    scale_arr = jnp.asarray(scale, jnp.float32)
    fn = lambda b: _score_batch(
        stats,
        codes_arr,
        b,
        names=names,
        knn_k=knn_k,
        width=int(code_width),
        deepest=int(deepest),
        scale=scale_arr,
        fuse=jnp.asarray(fuse_weight, jnp.float32),
    )
    result = batched_apply(fn, batch, int(batch_size))
    for key in ("prediction", "tac_prediction", "tac_soft_prediction"):
        if key in result:
            result[key] = result[key].astype(np.int32)
    return {k: v.astype(np.float32) if k in SCORES else v for k, v in result.items()}


def drop_unfitted(
    names: Sequence[str], requested: Sequence[str] | None, fitted: Fitted | None
) -> tuple[str, ...]:
    """``names`` without the scores whose validation fit failed (``tac_weighted``,
    ``tac_fused``) when they came by default; an explicit request for one is an error."""
    if fitted is None or fitted.tac_weights is not None:
        return tuple(names)
    lacking = [n for n in ("tac_weighted", "tac_fused") if n in names]
    if lacking and requested is not None:
        raise ValueError(
            f"expected TAC's layer weights for {lacking}, got none: the validation split "
            "has no errors (or no correct prediction) to fit them on"
        )
    return tuple(n for n in names if n not in lacking)


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


def fit_tac_validation(
    fitted: Fitted,
    held: Mapping[str, Any],
    labels: np.ndarray,
    codes: Any,
    batch_size: int = 1024,
) -> Fitted:
    """Fits, in place, what TAC's fitted scores read from held-out data: ``tac_weighted``'s
    layer weights, then ``tac_fused``'s standardisation of it and of ``tac_mahalanobis``.

    Args:
      fitted: training statistics (``tac_mahalanobis`` among them).
      held: `collect`'s outputs on the held-out examples.
      labels: their labels.
      codes: the run's `tac_jax.codes.ClassCodes`.
      batch_size: rows per scoring call.

    Raises:
      ValueError: if the held-out predictions are all right or all wrong.
    """
    fitted.tac_weights = fit_tac_weights(held, labels, codes.matrix, codes.width)
    both = ("tac_weighted", "tac_mahalanobis")
    fitted.tac_fuse = fuse_statistics(
        compute_scores(
            held,
            both,
            fitted=fitted,
            codes=codes.matrix,
            code_width=codes.width,
            batch_size=batch_size,
        )  # fmt: skip
    )
    return fitted


def fitted_for_run(
    workdir: str | os.PathLike,
    forward: Forward,
    step: int,
    train: Mapping[str, np.ndarray],
    head: tuple[np.ndarray, np.ndarray] | None,
    *,
    max_fit: int = MAX_FIT,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    purview: bool = False,
    validation: Mapping[str, np.ndarray] | None = None,
    log: Log | None = None,
) -> Fitted:
    """The run's fitted statistics, from ``WORKDIR/report/fitted.npz`` when it matches
    (same checkpoint step, subset and layers), else fitted on (a subset of) ``train``;
    in a TAC run with a ``validation`` split, TAC's layer weights are fitted on all of it.

    Args:
      workdir: the run's directory (the cache lives in its ``report/``).
      forward: the run's passes (`tac_jax.evaluate.engine.collect.make_forward`).
      step: the checkpoint step the run was loaded at.
      train: the training split, ``{"image", "label"}``.
      head: the base head's ``(kernel, bias)`` (`tac_jax.evaluate.engine.collect.head_params`).
      max_fit: at most this many training examples are used.
      seed: picks them when the split is larger.
      batch_size: examples per forward pass.
      purview: also fit the Purview detector (its gradient pass over the examples).
      validation: the held-out split ``{"image", "label"}``, or None.
      log: optional progress callback.
    """
    n = len(train["label"])
    index = subset_indices(n, max_fit, seed)
    setup = forward.setup
    if setup.tac is None:
        validation = None
    num_val = 0 if validation is None else len(validation["label"])
    meta = fingerprint(
        step, len(index), max_fit, seed if n > max_fit else 0, forward.layers, purview, num_val
    )
    meta["train_examples"] = int(n)

    def fit() -> Fitted:
        if log:
            log(f"fitting feature statistics on {len(index)} of {n} training examples")
        passes = ("purview",) if purview else ()
        outputs = collect(forward, train["image"][index], batch_size=batch_size, passes=passes)
        fitted = fit_statistics(
            outputs, np.asarray(train["label"])[index], setup.config.data.num_classes, head
        )
        if validation is not None and num_val:
            if log:
                log(f"fitting TAC's layer weights on {num_val} validation examples")
            held = collect(forward, validation["image"], batch_size=batch_size)
            try:
                fit_tac_validation(fitted, held, validation["label"], setup.tac.codes, batch_size)
            except ValueError as err:  # e.g. no error at all on the validation split
                if log:
                    log(f"no TAC layer weights ({err}): tac_weighted and tac_fused are left out")
        return fitted

    path = os.path.join(os.fspath(workdir), REPORT_DIR, FITTED_FILE)
    return fit_or_load(path, meta, fit, log=log)


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
    log: Log | None = None,
) -> dict[str, np.ndarray]:
    """Scores every input of an array file with a trained run and writes an ``.npz``.

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
      log: optional progress callback.

    Returns:
      What was written: ``prediction`` (the base head's argmax), ``tac_prediction`` and
      ``tac_soft_prediction`` (TAC runs) and one ``(N,)`` float32 array per score, under its name.

    Raises:
      ValueError: if the inputs have the wrong shape, dtype or values (NaNs, floats
        outside [0, 1]).
      FileNotFoundError: if the file or the run's checkpoint is missing.

    >>> score_file("runs/smoke_tac", "x.npy", "scores.npz")["tac"].shape  # doctest: +SKIP
    (50,)
    """
    from tac_jax.train.dataset import load_splits, run_vocab
    from tac_jax.train.setup import load_run

    images = check_inputs(load_array(input_path))
    if log:
        log(f"loading the run in {workdir}")
    setup, step, state = load_run(workdir)
    images = check_batchable(images, setup.input_shape)
    forward = make_forward(setup, state)
    head = head_params(setup, state)
    names = resolve_scores(scores, run_capabilities(setup, state))
    options = tac_options(setup, state, deepest, fuse_weight)
    fitted = None
    if needs_fit(names):
        data = setup.config.data
        splits = load_splits(data, setup.config.seed, vocab=run_vocab(workdir))
        train = splits["train"]
        fitted = fitted_for_run(
            workdir,
            forward,
            step,
            train,
            head,
            max_fit=max_fit,
            seed=seed,
            batch_size=batch_size,
            purview="purview_detector" in names,
            validation=splits.get("validation"),
            log=log,
        )
        names = drop_unfitted(names, scores, fitted)
    if log:
        log(f"scoring {len(images)} inputs from {input_path}")
    outputs = collect(forward, images, batch_size=batch_size, passes=score_passes(names))
    result = compute_scores(outputs, names, fitted=fitted, **options)
    with open(output_path, "wb") as f:
        np.savez(f, **result)
    return result


__all__ = [
    "SCORES",
    "TAC_NAMES",
    "ScoreInfo",
    "available_scores",
    "check_inputs",
    "compute_scores",
    "fitted_for_run",
    "resolve_scores",
    "run_capabilities",
    "score_file",
    "score_passes",
]
