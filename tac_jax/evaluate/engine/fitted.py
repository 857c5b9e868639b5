"""The statistics the feature-based scores are fitted with, and their cache.

Mahalanobis (class means, shared precision), multi-layer Mahalanobis (the same per
pooled layer), KNN (the normalised feature bank), ReAct (the clipping threshold) and
ViM (origin, residual basis, scale) are all fitted on in-distribution *training*
features: a random subset of at most ``max_fit`` examples (default 20,000), chosen by
``seed``, so fitting stays cheap on large training sets. The statistics are saved to
``WORKDIR/report/fitted.npz`` with what they were fitted from (checkpoint step, subset
size, seed, layers); a later call with the same fingerprint reloads them instead of
running the model over the training set again.

Two method-specific statistics join them when the run has what they need: SNGP's
Laplace covariance (one pass over the fitting examples with the final weights; the paper
accumulates the same sum over the final training epoch) and the optional Purview
detector (a Gaussian on the training examples' log gradient norms).
"""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from tac_jax.methods.sngp import init_precision, posterior_covariance, precision_update
from tac_jax.scores.feature import (
    KNNStats,
    MahalanobisStats,
    ViMStats,
    fit_knn,
    fit_mahalanobis,
    fit_multilayer_mahalanobis,
    fit_vim,
    vim_default_dim,
)
from tac_jax.scores.logits import react_threshold
from tac_jax.scores.purview import PurviewDetector, fit_purview_detector
from tac_jax.scores.tac import block_agreements, fit_block_weights

FITTED_FILE = "fitted.npz"
MAX_FIT = 20_000
KNN_K = 50
REACT_PERCENTILE = 90.0
_FORMAT = 5


@dataclasses.dataclass
class Fitted:
    """Everything the feature-based scores need beyond one batch's outputs.

    Attributes:
      mahalanobis: on the penultimate features.
      mahalanobis_multi: ``{layer: stats}`` on each pooled layer.
      knn: the normalised training bank; ``knn_k`` the neighbour rank used.
      knn_features: the raw training features the bank was built from (what is cached).
      react_threshold: the ReAct ceiling (90th percentile of training activations).
      vim: ViM's statistics, or None when the features have fewer than 2 dimensions
        or the model has no ``head``.
      head: the base head's ``(kernel, bias)``, or None.
      meta: the fingerprint: ``step``, ``fit_examples``, ``max_fit``, ``seed``,
        ``layers``, ``purview``.
      gp_covariance: SNGP's ``(D, D)`` posterior covariance (SNGP runs), or None.
      purview: the Purview detector (when asked for), or None.
      tac_mahalanobis: class means and shared precision of TAC's activation vectors
        on the training examples (TAC runs), or None.
      tac_weights: the layer-weighted TAC confidence's ``(weights (L,), bias)``,
        fitted on the run's **validation** split (`tac_jax.scores.tac.fit_block_weights`),
        or None (not a TAC run, or no validation split).
      tac_fuse: ``[μ, σ]`` of ``tac_weighted`` then of ``tac_mahalanobis`` on the same
        validation split (``tac_fused``'s standardisation), or None.
    """

    mahalanobis: MahalanobisStats
    mahalanobis_multi: dict[str, MahalanobisStats]
    knn: KNNStats
    knn_k: int
    knn_features: np.ndarray
    react_threshold: float
    vim: ViMStats | None
    head: tuple[np.ndarray, np.ndarray] | None
    meta: dict[str, Any]
    gp_covariance: np.ndarray | None = None
    purview: PurviewDetector | None = None
    tac_weights: tuple[np.ndarray, float] | None = None
    tac_mahalanobis: MahalanobisStats | None = None
    tac_fuse: np.ndarray | None = None

    def tree(self) -> dict[str, Any]:
        """The device-side statistics as one pytree (what a jitted scorer takes)."""
        out: dict[str, Any] = {
            "mahalanobis": self.mahalanobis,
            "mahalanobis_multi": self.mahalanobis_multi,
            "knn": self.knn,
            "react_threshold": np.float32(self.react_threshold),
        }
        if self.vim is not None:
            out["vim"] = self.vim
        if self.head is not None:
            out["kernel"], out["bias"] = self.head
        if self.gp_covariance is not None:
            out["gp_covariance"] = self.gp_covariance
        if self.purview is not None:
            out["purview"] = self.purview
        if self.tac_weights is not None:
            out["tac_weights"] = np.asarray(self.tac_weights[0], np.float32)
        if self.tac_mahalanobis is not None:
            out["tac_mahalanobis"] = self.tac_mahalanobis
        if self.tac_fuse is not None:
            out["tac_fuse"] = np.asarray(self.tac_fuse, np.float32)
        return out


def subset_indices(n: int, max_fit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_fit`` of ``n`` examples, fixed by ``seed``.

    >>> subset_indices(5, 10, 0).tolist()
    [0, 1, 2, 3, 4]
    >>> len(subset_indices(100, 10, 0))
    10
    """
    if max_fit < 1:
        raise ValueError(f"expected max_fit >= 1, got {max_fit}")
    if n <= max_fit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_fit, replace=False))


def fit_statistics(
    outputs: Mapping[str, Any],
    labels: np.ndarray,
    num_classes: int,
    head: tuple[np.ndarray, np.ndarray] | None,
    *,
    meta: Mapping[str, Any] | None = None,
    knn_k: int = KNN_K,
) -> Fitted:
    """Fits every feature-based score on training outputs of `tac_jax.evaluate.engine.collect`.

    Args:
      outputs: ``{"penultimate" (N, D), "layers": {name: (N, C_l)}, ...}``; with
        ``"extras": {"rff": (N, D)}`` (SNGP) the GP covariance is fitted too, with
        ``"purview": (N, L)`` the Purview detector, with ``"activation": (N, M)`` (TAC)
        the class-conditional Gaussian of TAC's activation vectors.
      labels: ``(N,)`` training labels.
      num_classes: ``C``.
      head: the base head's ``(kernel, bias)``, or None (no ReAct/ViM head terms).
      meta: the fingerprint to store.
      knn_k: the KNN neighbour rank, capped at ``N``.

    Returns:
      `Fitted`.
    """
    f = np.asarray(outputs["penultimate"], np.float32)
    labels = np.asarray(labels)
    if f.ndim != 2 or len(f) != len(labels) or len(f) == 0:
        raise ValueError(
            f"expected (N, D) training features with N = {len(labels)} labels, got shape {f.shape}"
        )
    layers = dict(outputs["layers"])
    vim = None
    if head is not None and f.shape[1] >= 2:
        vim = fit_vim(f, *head, vim_default_dim(f.shape[1]) or 1)
    gp_covariance = None
    rff = outputs.get("extras", {}).get("rff")
    if rff is not None:
        rff = np.asarray(rff, np.float32)
        precision = precision_update(init_precision(rff.shape[1]), rff, outputs["logits"])
        gp_covariance = np.asarray(posterior_covariance(precision), np.float32)
    purview = None
    if "purview" in outputs:
        purview = fit_purview_detector(np.asarray(outputs["purview"], np.float32))
    tac_maha = None
    if "activation" in outputs:
        tac_maha = fit_mahalanobis(
            np.asarray(outputs["activation"], np.float32), labels, num_classes
        )
    return Fitted(
        mahalanobis=fit_mahalanobis(f, labels, num_classes),
        mahalanobis_multi=fit_multilayer_mahalanobis(layers, labels, list(layers), num_classes),
        knn=fit_knn(f),
        knn_k=int(min(knn_k, len(f))),
        knn_features=f,
        react_threshold=float(react_threshold(f, REACT_PERCENTILE)),
        vim=vim,
        head=head,
        meta=dict(meta or {}),
        gp_covariance=gp_covariance,
        purview=purview,
        tac_mahalanobis=tac_maha,
    )


def fit_tac_weights(
    outputs: Mapping[str, Any], labels: np.ndarray, codes: np.ndarray, width: int
) -> tuple[np.ndarray, float]:
    """TAC's per-layer weights (`tac_jax.scores.tac.fit_block_weights`) on held-out
    outputs of `tac_jax.evaluate.engine.collect` (``"activation"``, ``"logits"``): which layers'
    agreement with the base prediction's code tells a right prediction from a wrong one."""
    logits = np.asarray(outputs["logits"])
    prediction = np.argmax(logits, axis=-1)
    agreements = block_agreements(
        jnp.asarray(outputs["activation"], jnp.float32),
        jnp.asarray(codes, jnp.float32),
        jnp.asarray(prediction),
        int(width),
    )
    return fit_block_weights(np.asarray(agreements), prediction == np.asarray(labels))


def fuse_statistics(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[μ, σ]`` of ``tac_weighted`` then ``tac_mahalanobis`` on held-out scores
    (σ floored at 1e-6), what ``tac_fused`` standardises with."""
    out = []
    for name in ("tac_weighted", "tac_mahalanobis"):
        s = np.asarray(scores[name], np.float64)
        s = s[np.isfinite(s)]
        if s.size < 2:
            raise ValueError(f"expected at least 2 finite held-out {name} scores, got {s.size}")
        out += [s.mean(), max(s.std(), 1e-6)]
    return np.asarray(out, np.float32)


def save_fitted(path: str | os.PathLike, fitted: Fitted) -> None:
    """Writes `Fitted` to an ``.npz`` (no pickles: layer names are stored as strings)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.int64(_FORMAT),
        "maha_means": np.asarray(fitted.mahalanobis.means),
        "maha_precision": np.asarray(fitted.mahalanobis.precision),
        "maha_counts": np.asarray(fitted.mahalanobis.counts),
        "multi_layers": np.asarray(list(fitted.mahalanobis_multi), dtype=str),
        "knn_features": np.asarray(fitted.knn_features, np.float32),
        "knn_k": np.int64(fitted.knn_k),
        "react_threshold": np.float64(fitted.react_threshold),
        "meta_keys": np.asarray(list(fitted.meta), dtype=str),
        "meta_values": np.asarray([repr(v) for v in fitted.meta.values()], dtype=str),
    }
    for i, stats in enumerate(fitted.mahalanobis_multi.values()):
        arrays[f"multi{i}_means"] = np.asarray(stats.means)
        arrays[f"multi{i}_precision"] = np.asarray(stats.precision)
        arrays[f"multi{i}_counts"] = np.asarray(stats.counts)
    if fitted.vim is not None:
        arrays["vim_origin"] = np.asarray(fitted.vim.origin)
        arrays["vim_basis"] = np.asarray(fitted.vim.residual_basis)
        arrays["vim_alpha"] = np.asarray(fitted.vim.alpha)
    if fitted.head is not None:
        arrays["head_kernel"], arrays["head_bias"] = fitted.head
    if fitted.gp_covariance is not None:
        arrays["gp_covariance"] = np.asarray(fitted.gp_covariance, np.float32)
    if fitted.purview is not None:
        arrays["purview_mean"] = np.asarray(fitted.purview.mean)
        arrays["purview_std"] = np.asarray(fitted.purview.std)
        arrays["purview_eps"] = np.float64(fitted.purview.eps)
    if fitted.tac_mahalanobis is not None:
        arrays["tacm_means"] = np.asarray(fitted.tac_mahalanobis.means)
        arrays["tacm_precision"] = np.asarray(fitted.tac_mahalanobis.precision)
        arrays["tacm_counts"] = np.asarray(fitted.tac_mahalanobis.counts)
    if fitted.tac_weights is not None:
        arrays["tac_weights"] = np.asarray(fitted.tac_weights[0], np.float32)
        arrays["tac_bias"] = np.float64(fitted.tac_weights[1])
    if fitted.tac_fuse is not None:
        arrays["tac_fuse"] = np.asarray(fitted.tac_fuse, np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Write then rename: a reader never sees half a cache.
    tmp = f"{os.fspath(path)}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_fitted(path: str | os.PathLike) -> Fitted:
    """Reads what `save_fitted` wrote.

    Raises:
      ValueError: if the file is not a fitted-statistics cache of this format.
    """
    with np.load(path, allow_pickle=False) as data:
        a = {k: data[k] for k in data.files}
    if int(a.get("format", -1)) != _FORMAT:
        raise ValueError(f"expected a fitted-statistics file of format {_FORMAT}, got {path}")
    multi = {
        str(name): MahalanobisStats(
            a[f"multi{i}_means"], a[f"multi{i}_precision"], a[f"multi{i}_counts"]
        )
        for i, name in enumerate(a["multi_layers"])
    }
    vim = None
    if "vim_origin" in a:
        vim = ViMStats(a["vim_origin"], a["vim_basis"], a["vim_alpha"])
    head = (a["head_kernel"], a["head_bias"]) if "head_kernel" in a else None
    purview = None
    if "purview_mean" in a:
        purview = PurviewDetector(a["purview_mean"], a["purview_std"], float(a["purview_eps"]))
    tac_maha = None
    if "tacm_means" in a:
        tac_maha = MahalanobisStats(a["tacm_means"], a["tacm_precision"], a["tacm_counts"])
    tac_weights = None
    if "tac_weights" in a:
        tac_weights = (a["tac_weights"], float(a["tac_bias"]))
    meta = {
        str(k): ast.literal_eval(str(v))
        for k, v in zip(a["meta_keys"], a["meta_values"], strict=True)
    }
    return Fitted(
        mahalanobis=MahalanobisStats(a["maha_means"], a["maha_precision"], a["maha_counts"]),
        mahalanobis_multi=multi,
        knn=fit_knn(a["knn_features"]),
        knn_k=int(a["knn_k"]),
        knn_features=a["knn_features"],
        react_threshold=float(a["react_threshold"]),
        vim=vim,
        head=head,
        meta=meta,
        gp_covariance=a.get("gp_covariance"),
        purview=purview,
        tac_weights=tac_weights,
        tac_mahalanobis=tac_maha,
        tac_fuse=a.get("tac_fuse"),
    )


def fit_or_load(
    path: str | os.PathLike,
    meta: Mapping[str, Any],
    fit: Callable[[], Fitted],
    *,
    log: Callable[[str], None] | None = None,
) -> Fitted:
    """The cached statistics at ``path`` if their fingerprint equals ``meta``, else
    ``fit()`` (saved to ``path``).

    Args:
      path: the cache file.
      meta: the fingerprint the statistics must have been fitted with.
      fit: fits the statistics (running the model over training data).
      log: optional progress callback.
    """
    meta = _normalise(meta)
    if os.path.exists(path):
        try:
            cached = load_fitted(path)
        except (ValueError, KeyError, OSError):
            cached = None
        if cached is not None and _normalise(cached.meta) == meta:
            if log:
                log(f"reusing fitted statistics from {path}")
            return cached
    fitted = fit()
    fitted.meta = dict(meta)
    save_fitted(path, fitted)
    if log:
        log(f"saved fitted statistics to {path}")
    return fitted


def _normalise(meta: Mapping[str, Any]) -> dict[str, Any]:
    # Tuples and lists compare equal once written and read back.
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in meta.items()}


def fingerprint(
    step: int,
    fit_examples: int,
    max_fit: int,
    seed: int,
    layers: Sequence[str],
    purview: bool = False,
    validation_examples: int = 0,
) -> dict[str, Any]:
    """What fitted statistics depend on: a cache is reused only if all of it matches
    (``validation_examples``: the held-out examples TAC's layer weights are fitted on)."""
    return {
        "validation_examples": int(validation_examples),
        "format": _FORMAT,
        "step": int(step),
        "fit_examples": int(fit_examples),
        "max_fit": int(max_fit),
        "seed": int(seed),
        "layers": [str(name) for name in layers],
        "purview": bool(purview),
    }
