"""Feature-space scores fitted on in-distribution training features.

Mahalanobis (one layer, and summed over several), KNN, ViM, RMDS (Mahalanobis relative
to one class-agnostic Gaussian) and Mahalanobis++ (on L2-normalised features); higher =
more in-distribution for every score. Fitting is a pure function from training features to
a pytree of statistics; it runs on device in fixed-size batches (the last one padded
and masked, so each jitted update compiles once) and keeps only ``O(D²)`` or ``O(ND)``
state, never an ``N × N`` matrix. Scoring functions are jittable.

Statistics and scores use ``Precision.HIGHEST`` matrix products: on GPUs the default
float32 product may run in TF32, and the Mahalanobis expansion and the residual
projections lose too much to it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.batching import padded_batches
from tac_jax.features import pool, resolve_layers
from tac_jax.model import PADDING_MASK
from tac_jax.scores.entry import FitData, Score, Stats, as_stats
from tac_jax.scores.logits import (
    check_features,
    check_head,
    check_logits,
    react_energy,
    react_threshold,
)

_HI = jax.lax.Precision.HIGHEST
# KNN's neighbour rank and ReAct's clipping percentile (their papers' defaults).
KNN_K = 50
REACT_PERCENTILE = 90.0
_DEFAULT_BATCH = 2048


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=_HI)


# -- streaming -------------------------------------------------------------------------


def _leading_size(tree: Any) -> int:
    return int(np.shape(jax.tree_util.tree_leaves(tree)[0])[0])


def _masked_batches(
    features: Any, labels: Any, batch_size: int | None
) -> Iterator[tuple[Any, Any, np.ndarray]]:
    """Yields ``(features, labels, mask)`` batches of one fixed size.

    ``features`` is a pytree of ``(N, ...)`` arrays with ``labels`` of shape ``(N,)``,
    or (with ``labels=None``) an iterable of ``(features, labels)`` batches. Padded rows
    have ``mask`` 0. Without a ``batch_size``, an iterable's first batch sets it.
    """
    if labels is not None:
        parts: Iterable[Any] = [(features, labels)]
        size = batch_size or min(_DEFAULT_BATCH, _leading_size(features))
    else:
        parts = iter(features)
        try:
            first = next(parts)
        except StopIteration:
            raise ValueError("expected at least one batch of features, got none") from None
        parts = _chain(first, parts)
        size = batch_size or _leading_size(first[0])
    for part in parts:
        for (f, y), valid in padded_batches(tuple(part), size):
            yield f, y, np.arange(size) < valid


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _check_labels(labels: np.ndarray, mask: np.ndarray, num_classes: int) -> None:
    real = np.asarray(labels)[mask]
    if real.ndim != 1:
        raise ValueError(f"expected labels of rank 1 (batch,), got shape {np.shape(labels)}")
    if real.size and (real.min() < 0 or real.max() >= num_classes):
        raise ValueError(
            f"expected labels in [0, {num_classes}), got values from {real.min()} to {real.max()}"
        )


def _check_pair(features: Any, labels: Any) -> None:
    if labels is None:
        return
    n = _leading_size(features)
    if np.ndim(labels) != 1 or np.shape(labels)[0] != n:
        raise ValueError(
            f"expected labels of shape ({n},), one per feature row, got {np.shape(labels)}"
        )


# -- Mahalanobis -----------------------------------------------------------------------


class MahalanobisStats(NamedTuple):
    """Class means and the shared (tied) precision of Lee et al. (2018).

    Attributes:
      means: ``(C, D)`` class means.
      precision: ``(D, D)`` pseudo-inverse of the class-centred covariance.
      counts: ``(C,)`` training examples per class; a class with none is never nearest.
    """

    means: jax.Array
    precision: jax.Array
    counts: jax.Array


class _Moments(NamedTuple):
    counts: jax.Array  # (C,)
    means: jax.Array  # (C, D)
    scatter: jax.Array  # (D, D): Σ (f − μ_y)(f − μ_y)ᵀ


def _init_moments(num_classes: int, dim: int) -> _Moments:
    return _Moments(
        jnp.zeros((num_classes,), jnp.float32),
        jnp.zeros((num_classes, dim), jnp.float32),
        jnp.zeros((dim, dim), jnp.float32),
    )


def _update_moments(state: _Moments, f: jax.Array, y: jax.Array, mask: jax.Array) -> _Moments:
    # Chan et al.'s pairwise merge of per-class means and within-class scatter: one pass,
    # and no Σffᵀ − Nμμᵀ cancellation when features sit far from the origin.
    f = f.astype(jnp.float32)
    w = jax.nn.one_hot(y, state.counts.shape[0]) * mask[:, None]
    n_b = jnp.sum(w, axis=0)
    mean_b = _dot(w.T, f) / jnp.maximum(n_b, 1.0)[:, None]
    centred = (f - _dot(w, mean_b)) * mask[:, None]
    n = state.counts + n_b
    delta = mean_b - state.means
    means = state.means + delta * (n_b / jnp.maximum(n, 1.0))[:, None]
    weight = state.counts * n_b / jnp.maximum(n, 1.0)
    scatter = state.scatter + _dot(centred.T, centred) + _dot((delta * weight[:, None]).T, delta)
    return _Moments(n, means, scatter)


@jax.jit
def _finish_moments(state: _Moments) -> MahalanobisStats:
    total = jnp.sum(state.counts)
    covariance = state.scatter / jnp.maximum(total, 1.0)
    precision = jnp.linalg.pinv(covariance, hermitian=True)
    return MahalanobisStats(state.means, precision, state.counts)


_update_moments_jit = jax.jit(_update_moments)


def fit_mahalanobis(
    features: jax.Array | Iterable[tuple[jax.Array, jax.Array]],
    labels: jax.Array | None,
    num_classes: int,
    *,
    batch_size: int | None = None,
) -> MahalanobisStats:
    """Class means and the shared class-centred covariance's inverse, fitted in batches.

    Args:
      features: ``(N, D)`` training features, or an iterable of ``(features, labels)``
        batches (then ``labels`` is ``None``).
      labels: ``(N,)`` integer labels in ``[0, num_classes)``.
      num_classes: ``C``.
      batch_size: rows per device update (default: 2048, or an iterable's first batch).

    Returns:
      `MahalanobisStats`; the covariance is the maximum-likelihood one (divided by
      ``N``) and its inverse a pseudo-inverse, as in the paper's code.

    >>> stats = fit_mahalanobis(jnp.array([[0.0], [2.0], [10.0], [12.0]]), jnp.array([0, 0, 1, 1]), 2)
    >>> stats.means.tolist(), stats.precision.tolist()
    ([[1.0], [11.0]], [[1.0]])
    """
    if num_classes < 1:
        raise ValueError(f"expected a positive number of classes, got {num_classes}")
    _check_pair(features, labels)
    state = None
    for f, y, mask in _masked_batches(features, labels, batch_size):
        if f.ndim != 2:
            raise ValueError(f"expected features of rank 2 (batch, dim), got shape {f.shape}")
        _check_labels(y, mask, num_classes)
        if state is None:
            state = _init_moments(num_classes, f.shape[1])
        elif f.shape[1] != state.means.shape[1]:
            raise ValueError(
                f"expected features of dimension {state.means.shape[1]} in every batch, "
                f"got {f.shape[1]}"
            )
        state = _update_moments_jit(state, f, y, mask)
    return _finish_moments(state)


@jax.jit
def mahalanobis_distances(stats: MahalanobisStats, features: jax.Array) -> jax.Array:
    """``(B, C)`` squared Mahalanobis distances to every class mean (``inf`` for empty
    classes).

    >>> stats = MahalanobisStats(jnp.array([[0.0], [4.0]]), jnp.array([[0.25]]), jnp.ones(2))
    >>> mahalanobis_distances(stats, jnp.array([[2.0]])).tolist()
    [[1.0, 1.0]]
    """
    f = check_features(features)
    if f.shape[1] != stats.means.shape[1]:
        raise ValueError(
            f"expected features of dimension {stats.means.shape[1]}, got shape {f.shape}"
        )
    # Expanding ‖f − μ‖²_P around the weighted centre of the means keeps the terms small.
    centre = _dot(stats.counts, stats.means) / jnp.maximum(jnp.sum(stats.counts), 1.0)
    q, m = f - centre, stats.means - centre
    qp, mp = _dot(q, stats.precision), _dot(m, stats.precision)
    d = jnp.sum(qp * q, -1, keepdims=True) - 2 * _dot(qp, m.T) + jnp.sum(mp * m, -1)
    return jnp.where(stats.counts > 0, jnp.maximum(d, 0.0), jnp.inf)


@jax.jit
def mahalanobis_score(stats: MahalanobisStats, features: jax.Array) -> jax.Array:
    """``−min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c)``: the closest class, negated.

    Args:
      stats: from `fit_mahalanobis`.
      features: ``(B, D)`` features of the fitted layer.

    Returns:
      ``(B,)`` scores, 0 at a class mean and decreasing away from every mean.

    >>> stats = MahalanobisStats(jnp.array([[0.0], [4.0]]), jnp.array([[0.25]]), jnp.ones(2))
    >>> mahalanobis_score(stats, jnp.array([[1.0], [6.0]])).tolist()
    [-0.25, -1.0]
    """
    return -jnp.min(mahalanobis_distances(stats, features), axis=-1)


# -- multi-layer Mahalanobis -------------------------------------------------------------


def _pooled(features: Mapping[str, jax.Array], layers: Sequence[str]) -> dict[str, jax.Array]:
    mask = features.get(PADDING_MASK)
    out = {}
    for name in layers:
        h = features[name]
        out[name] = pool(h, mask if (mask is not None and h.ndim == 3) else None)
    return out


@jax.jit
def _update_layers(
    states: dict[str, _Moments], features: dict[str, jax.Array], y: jax.Array, mask: jax.Array
) -> dict[str, _Moments]:
    pooled = _pooled(features, list(states))
    return {name: _update_moments(s, pooled[name], y, mask) for name, s in states.items()}


def fit_multilayer_mahalanobis(
    features: Mapping[str, jax.Array] | Iterable[tuple[Mapping[str, jax.Array], jax.Array]],
    labels: jax.Array | None,
    layers: Sequence[str],
    num_classes: int,
    *,
    batch_size: int | None = None,
) -> dict[str, MahalanobisStats]:
    """`fit_mahalanobis` per layer on spatially pooled features (`tac_jax.features.pool`).

    Args:
      features: ``{name: (N, ...)}`` recorded intermediates (a ``"padding_mask"`` entry,
        if present, masks pooling of ``(N, T, C)`` sequences), or an iterable of
        ``(features, labels)`` batches (then ``labels`` is ``None``).
      labels: ``(N,)`` integer labels.
      layers: layer names, globs or ``"re:"`` regexes (see `tac_jax.features.resolve_layers`).
      num_classes: ``C``.
      batch_size: rows per device update.

    Returns:
      ``{layer: MahalanobisStats}`` in resolved layer order.

    >>> feats = {"a": jnp.array([[0.0], [2.0]]), "b": jnp.ones((2, 2, 2, 1))}
    >>> sorted(fit_multilayer_mahalanobis(feats, jnp.array([0, 0]), ["a", "b"], 1))
    ['a', 'b']
    """
    if num_classes < 1:
        raise ValueError(f"expected a positive number of classes, got {num_classes}")
    names = states = None
    if labels is not None:
        _check_pair(features, labels)
        names = resolve_layers([n for n in features if n != PADDING_MASK], layers)
        # Only the chosen layers travel to the device.
        keep = names + ([PADDING_MASK] if PADDING_MASK in features else [])
        features = {name: features[name] for name in keep}
    for f, y, mask in _masked_batches(features, labels, batch_size):
        if names is None:
            names = resolve_layers([n for n in f if n != PADDING_MASK], layers)
        _check_labels(y, mask, num_classes)
        if states is None:
            for name in names:
                if f[name].ndim < 2:
                    raise ValueError(
                        f"expected layer {name!r} of rank >= 2 (batch, ..., channel), "
                        f"got shape {f[name].shape}"
                    )
            states = {name: _init_moments(num_classes, f[name].shape[-1]) for name in names}
        batch = {name: f[name] for name in names}
        if PADDING_MASK in f:
            batch[PADDING_MASK] = f[PADDING_MASK]
        states = _update_layers(states, batch, y, mask)
    # Pytrees hold dict keys sorted; restore the resolved layer order.
    return {name: _finish_moments(states[name]) for name in names}


@jax.jit
def multilayer_mahalanobis_score(
    stats: Mapping[str, MahalanobisStats], features: Mapping[str, jax.Array]
) -> jax.Array:
    """The sum over layers of each layer's `mahalanobis_score` on pooled features.

    Lee et al. weight the layers with a logistic regression fitted on held-out OOD
    data; a plain sum needs none, and (as a sum of Gaussian log-likelihoods up to
    constants) treats the layers as independent evidence. A mean would rank the same.

    Args:
      stats: from `fit_multilayer_mahalanobis`.
      features: the recorded intermediates, unpooled, with every fitted layer.

    Returns:
      ``(B,)`` scores.

    >>> one = MahalanobisStats(jnp.zeros((1, 1)), jnp.ones((1, 1)), jnp.ones(1))
    >>> multilayer_mahalanobis_score({"a": one, "b": one}, {"a": jnp.ones((1, 1)), "b": jnp.ones((1, 1))}).tolist()
    [-2.0]
    """
    missing = [name for name in stats if name not in features]
    if missing:
        raise ValueError(
            f"expected features for every fitted layer {list(stats)}, got none for {missing}"
        )
    pooled = _pooled(features, list(stats))
    scores = [mahalanobis_score(s, pooled[name]) for name, s in stats.items()]
    sizes = {s.shape[0] for s in scores}
    if len(sizes) != 1:
        raise ValueError(f"expected one batch size across layers, got sizes {sorted(sizes)}")
    return functools.reduce(jnp.add, scores)


# -- KNN -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KNNStats:
    """An L2-normalised feature bank, stored in zero-padded chunks.

    Attributes:
      bank: ``(chunks, chunk_size, D)`` normalised training features.
      valid: ``(chunks, chunk_size)`` whether a row is a real feature, not padding.
      size: how many real features (static).
    """

    bank: jax.Array
    valid: jax.Array
    size: int


jax.tree_util.register_dataclass(KNNStats, data_fields=["bank", "valid"], meta_fields=["size"])


def l2_normalise(features: jax.Array) -> jax.Array:
    """Rows divided by their L2 norm (zero rows stay zero).

    >>> print(l2_normalise(jnp.array([[3.0, 4.0]])))
    [[0.6 0.8]]
    """
    f = jnp.asarray(features, jnp.float32)
    return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-12)


def fit_knn(train_features: jax.Array, *, chunk_size: int = 4096) -> KNNStats:
    """The KNN bank (Sun et al., 2022): normalised training features on device.

    Args:
      train_features: ``(N, D)`` in-distribution penultimate features.
      chunk_size: bank rows compared with a query batch at once; bounds scoring memory.

    Returns:
      `KNNStats`.

    >>> fit_knn(jnp.ones((5, 3)), chunk_size=2).bank.shape
    (3, 2, 3)
    """
    f = np.asarray(train_features)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected training features of shape (N >= 1, dim), got shape {f.shape}")
    if chunk_size < 1:
        raise ValueError(f"expected a positive chunk size, got {chunk_size}")
    n, dim = f.shape
    chunk = min(chunk_size, n)
    chunks = -(-n // chunk)
    padded = np.zeros((chunks * chunk, dim), f.dtype)
    padded[:n] = f
    bank = jax.jit(l2_normalise)(padded.reshape(chunks, chunk, dim))
    valid = (np.arange(chunks * chunk) < n).reshape(chunks, chunk)
    return KNNStats(bank=bank, valid=jnp.asarray(valid), size=n)


def _nearest_in_bank(stats: KNNStats, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    # A running top-k of cosine similarity over bank chunks: memory is one
    # (queries, chunk_size) block, whatever the bank size.
    chunks, chunk, _ = stats.bank.shape
    init = (jnp.full((q.shape[0], k), -jnp.inf), jnp.full((q.shape[0], k), -1, jnp.int32))

    def step(carry, block):
        best_sim, best_idx = carry
        bank, valid, offset = block
        sim = jnp.where(valid[None], _dot(q, bank.T), -jnp.inf)
        idx = jnp.broadcast_to(offset + jnp.arange(chunk, dtype=jnp.int32), sim.shape)
        top_sim, pos = jax.lax.top_k(jnp.concatenate([best_sim, sim], axis=1), k)
        top_idx = jnp.take_along_axis(jnp.concatenate([best_idx, idx], axis=1), pos, axis=1)
        return (top_sim, top_idx), None

    offsets = jnp.arange(chunks, dtype=jnp.int32) * chunk
    (sim, idx), _ = jax.lax.scan(step, init, (stats.bank, stats.valid, offsets))
    return sim, idx


@functools.partial(jax.jit, static_argnames=("k", "query_batch_size"))
def knn_neighbours(
    stats: KNNStats, features: jax.Array, k: int = 50, *, query_batch_size: int = 1024
) -> tuple[jax.Array, jax.Array]:
    """The ``k`` nearest bank features of each normalised query, nearest first.

    Args:
      stats: from `fit_knn`.
      features: ``(B, D)`` penultimate features (normalised here).
      k: neighbours, ``1 <= k <= stats.size``.
      query_batch_size: queries compared with the bank at once.

    Returns:
      ``(distances, indices)``, both ``(B, k)``: Euclidean distances between unit
      vectors, ascending, and row indices into the training features.

    >>> d, i = knn_neighbours(fit_knn(jnp.array([[1.0, 0.0], [0.0, 1.0]])), jnp.array([[0.0, 2.0]]), 1)
    >>> d.tolist(), i.tolist()
    ([[0.0]], [[1]])
    """
    f = check_features(features)
    if f.shape[1] != stats.bank.shape[2]:
        raise ValueError(
            f"expected features of dimension {stats.bank.shape[2]}, got shape {f.shape}"
        )
    if not 1 <= k <= stats.size:
        raise ValueError(f"expected k between 1 and the bank size {stats.size}, got {k}")
    if query_batch_size < 1:
        raise ValueError(f"expected a positive query batch size, got {query_batch_size}")
    n = f.shape[0]
    qb = min(query_batch_size, n)
    batches = -(-n // qb)
    q = jnp.pad(l2_normalise(f), ((0, batches * qb - n), (0, 0))).reshape(batches, qb, -1)
    sim, idx = jax.lax.map(lambda qq: _nearest_in_bank(stats, qq, k), q)
    sim, idx = sim.reshape(-1, k)[:n], idx.reshape(-1, k)[:n]
    # ‖a − b‖² = 2 − 2⟨a, b⟩ for unit vectors.
    return jnp.sqrt(jnp.maximum(2.0 - 2.0 * sim, 0.0)), idx


@functools.partial(jax.jit, static_argnames=("k", "query_batch_size"))
def knn_score(
    stats: KNNStats, features: jax.Array, k: int = 50, *, query_batch_size: int = 1024
) -> jax.Array:
    """``−‖z − z_(k)‖``: minus the distance to the k-th nearest normalised training feature.

    Args:
      stats: from `fit_knn`.
      features: ``(B, D)`` penultimate features.
      k: which neighbour; the paper uses 50 on CIFAR-10 (1 is allowed).
      query_batch_size: queries compared with the bank at once.

    Returns:
      ``(B,)`` scores in ``[−2, 0]``.

    >>> stats = fit_knn(jnp.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> print(knn_score(stats, jnp.array([[5.0, 0.0]]), k=2).round(4))
    [-1.4142]
    """
    distances, _ = knn_neighbours(stats, features, k, query_batch_size=query_batch_size)
    return -distances[:, -1]


# -- ViM -------------------------------------------------------------------------------


class ViMStats(NamedTuple):
    """Virtual-logit matching (Wang et al., 2022).

    Attributes:
      origin: ``(D,)`` ``u = −pinv(W)ᵀ b``, where every logit is zero.
      residual_basis: ``(D, D − dim)`` orthonormal basis of the complement of the
        principal subspace of ``f − u``.
      alpha: scalar; mean max logit over mean residual norm on training data.
    """

    origin: jax.Array
    residual_basis: jax.Array
    alpha: jax.Array


def vim_default_dim(feature_dim: int) -> int:
    """The principal subspace size of the ViM paper's code: 1000 for features of 2048
    or more, 512 for 768 or more, else half the feature dimension.

    >>> vim_default_dim(2048), vim_default_dim(768), vim_default_dim(640)
    (1000, 512, 320)
    """
    if feature_dim >= 2048:
        return 1000
    if feature_dim >= 768:
        return 512
    return feature_dim // 2


@jax.jit
def _vim_origin(kernel: jax.Array, bias: jax.Array) -> jax.Array:
    return -_dot(jnp.linalg.pinv(kernel).T, bias)


@functools.partial(jax.jit, static_argnums=1)
def _vim_residual_basis(acc: tuple, residual_dim: int) -> jax.Array:
    count, moment = acc
    _, vectors = jnp.linalg.eigh(moment / count)
    # eigh sorts eigenvalues ascending: the first D − dim vectors span the residual.
    return vectors[:, :residual_dim]


@jax.jit
def _vim_second_moment(acc: tuple, f: jax.Array, origin: jax.Array, mask: jax.Array) -> tuple:
    count, moment = acc
    x = (f.astype(jnp.float32) - origin) * mask[:, None]
    return count + jnp.sum(mask), moment + _dot(x.T, x)


@jax.jit
def _vim_means(acc: tuple, f, origin, basis, kernel, bias, mask) -> tuple:
    residual_sum, logit_sum = acc
    f = f.astype(jnp.float32)
    residual = jnp.linalg.norm(_dot(f - origin, basis), axis=-1)
    max_logit = jnp.max(_dot(f, kernel) + bias, axis=-1)
    return residual_sum + jnp.sum(residual * mask), logit_sum + jnp.sum(max_logit * mask)


def fit_vim(
    train_features: jax.Array,
    head_kernel: jax.Array,
    head_bias: jax.Array,
    dim: int | None = None,
    *,
    batch_size: int = _DEFAULT_BATCH,
) -> ViMStats:
    """Fits ViM's origin, residual subspace and scale in two passes of batches.

    The principal subspace comes from the eigenvectors of ``E[(f − u)(f − u)ᵀ]`` (the
    second moment about ``u``, not about the mean, as in the paper's code).

    Args:
      train_features: ``(N, D)`` in-distribution penultimate features.
      head_kernel: ``(D, C)`` the head's kernel (flax ``Dense`` layout).
      head_bias: ``(C,)`` the head's bias.
      dim: principal subspace size, ``0 < dim < D`` (default `vim_default_dim`).
      batch_size: rows per device update.

    Returns:
      `ViMStats`.

    >>> rng = np.random.default_rng(0)
    >>> stats = fit_vim(rng.normal(size=(50, 4)), rng.normal(size=(4, 3)), np.zeros(3), 2)
    >>> stats.residual_basis.shape
    (4, 2)
    """
    f = np.asarray(train_features)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected training features of shape (N >= 1, dim), got shape {f.shape}")
    kernel, bias = check_head(head_kernel, head_bias, f.shape[1])
    dim = vim_default_dim(f.shape[1]) if dim is None else dim
    if not 0 < dim < f.shape[1]:
        raise ValueError(
            f"expected a principal dimension between 1 and {f.shape[1] - 1}, got {dim}"
        )
    origin = _vim_origin(kernel, bias)
    size = min(batch_size, f.shape[0])

    acc = (jnp.zeros(()), jnp.zeros((f.shape[1], f.shape[1])))
    for batch, valid in padded_batches(f, size):
        acc = _vim_second_moment(acc, batch, origin, np.arange(size) < valid)
    basis = _vim_residual_basis(acc, f.shape[1] - dim)

    means = (jnp.zeros(()), jnp.zeros(()))
    for batch, valid in padded_batches(f, size):
        means = _vim_means(means, batch, origin, basis, kernel, bias, np.arange(size) < valid)
    alpha = means[1] / jnp.maximum(means[0], 1e-12)
    return ViMStats(origin=origin, residual_basis=basis, alpha=alpha)


@jax.jit
def vim_score(stats: ViMStats, features: jax.Array, logits: jax.Array) -> jax.Array:
    """``logsumexp(z) − α‖(f − u) residual‖``: energy minus the scaled virtual logit.

    Args:
      stats: from `fit_vim`.
      features: ``(B, D)`` penultimate features.
      logits: ``(B, C)`` the head's logits for them.

    Returns:
      ``(B,)`` scores, higher = more in-distribution.

    >>> stats = ViMStats(jnp.zeros(2), jnp.array([[0.0], [1.0]]), jnp.array(2.0))
    >>> print(vim_score(stats, jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 0.0]])).round(4))
    [-5.3069]
    """
    f = check_features(features)
    z = check_logits(logits)
    if f.shape[1] != stats.origin.shape[0]:
        raise ValueError(
            f"expected features of dimension {stats.origin.shape[0]}, got shape {f.shape}"
        )
    if z.shape[0] != f.shape[0]:
        raise ValueError(
            f"expected {f.shape[0]} rows of logits, one per feature row, got {z.shape[0]}"
        )
    residual = jnp.linalg.norm(_dot(f - stats.origin, stats.residual_basis), axis=-1)
    return jax.nn.logsumexp(z, axis=-1) - stats.alpha * residual


# -- RMDS and Mahalanobis++ --------------------------------------------------------------


def fit_background(features: jax.Array, *, batch_size: int | None = None) -> MahalanobisStats:
    """RMDS's background Gaussian: one mean and covariance for every training feature,
    whatever its class (`fit_mahalanobis` with a single class).

    Args:
      features: ``(N, D)`` training features.
      batch_size: rows per device update.

    Returns:
      `MahalanobisStats` of one class.

    >>> fit_background(jnp.array([[0.0], [2.0], [10.0], [12.0]])).means.tolist()
    [[6.0]]
    """
    if np.ndim(features) != 2:
        raise ValueError(
            f"expected features of rank 2 (batch, dim), got shape {np.shape(features)}"
        )
    labels = np.zeros(np.shape(features)[0], np.int32)
    return fit_mahalanobis(features, labels, 1, batch_size=batch_size)


@jax.jit
def rmds_score(
    stats: MahalanobisStats, background: MahalanobisStats, features: jax.Array
) -> jax.Array:
    """Relative Mahalanobis distance (Ren et al., 2021): ``−min_k [MD_k(f) − MD_0(f)]``.

    ``MD_k`` is the squared Mahalanobis distance to class ``k`` (class means, shared
    covariance) and ``MD_0`` the one to the background Gaussian of all training
    features. ``MD_0`` does not depend on ``k``, so this is the Mahalanobis score plus
    ``MD_0``: far from the bulk of the training data is forgiven, far from every class
    relative to that bulk is not.

    Args:
      stats: the class Gaussians, from `fit_mahalanobis`.
      background: from `fit_background`.
      features: ``(B, D)`` features.

    Returns:
      ``(B,)`` scores.

    >>> classes = MahalanobisStats(jnp.array([[0.0], [4.0]]), jnp.array([[0.25]]), jnp.ones(2))
    >>> background = MahalanobisStats(jnp.array([[2.0]]), jnp.array([[0.125]]), jnp.ones(1))
    >>> rmds_score(classes, background, jnp.array([[1.0], [6.0]])).tolist()
    [-0.125, 1.0]
    """
    class_distances = mahalanobis_distances(stats, features)
    background_distance = mahalanobis_distances(background, features)[:, 0]
    return background_distance - jnp.min(class_distances, axis=-1)


def fit_mahalanobis_pp(
    features: jax.Array,
    labels: jax.Array,
    num_classes: int,
    *,
    batch_size: int | None = None,
) -> MahalanobisStats:
    """Mahalanobis++ (Mueller & Hein, 2025): `fit_mahalanobis` on L2-normalised features.

    Each device batch is normalised on its way in, so no normalised copy of the
    training features is made.

    Args:
      features: ``(N, D)`` training features.
      labels: ``(N,)`` integer labels in ``[0, num_classes)``.
      num_classes: ``C``.
      batch_size: rows per device update (default: 2048).

    Returns:
      `MahalanobisStats` of ``f / ‖f‖``.

    >>> stats = fit_mahalanobis_pp(jnp.array([[2.0, 0.0], [0.0, 5.0]]), jnp.array([0, 1]), 2)
    >>> stats.means.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"expected features of shape (N >= 1, dim), got shape {f.shape}")
    _check_pair(f, labels)
    y = np.asarray(labels)
    size = batch_size or min(_DEFAULT_BATCH, f.shape[0])
    if size < 1:
        raise ValueError(f"expected a positive batch size, got {size}")
    normalise = jax.jit(l2_normalise)
    parts = ((normalise(f[i : i + size]), y[i : i + size]) for i in range(0, f.shape[0], size))
    return fit_mahalanobis(parts, None, num_classes, batch_size=size)


@jax.jit
def mahalanobis_pp_score(stats: MahalanobisStats, features: jax.Array) -> jax.Array:
    """Mahalanobis++: `mahalanobis_score` of the L2-normalised features ``f / ‖f‖``.

    Normalising removes the feature norm, which varies strongly across inputs and
    breaks the shared-covariance Gaussian the Mahalanobis distance assumes.

    Args:
      stats: from `fit_mahalanobis_pp`.
      features: ``(B, D)`` features (normalised here).

    Returns:
      ``(B,)`` scores, 0 at a normalised class mean.

    >>> stats = MahalanobisStats(jnp.zeros((1, 2)), jnp.diag(jnp.array([4.0, 1.0])), jnp.ones(1))
    >>> mahalanobis_pp_score(stats, jnp.array([[5.0, 0.0], [0.0, 2.0]])).tolist()
    [-4.0, -1.0]
    """
    return mahalanobis_score(stats, l2_normalise(check_features(features)))


# -- The registry's entries (`tac_jax.scores.entry`) -----------------------------------


def fit_features(data: FitData) -> np.ndarray:
    """The ``(N, D)`` penultimate training features a fit reads, as float32, checked
    against the labels."""
    f = np.asarray(data.outputs["penultimate"], np.float32)
    if f.ndim != 2 or len(f) != len(data.labels) or len(f) == 0:
        raise ValueError(
            f"expected (N, D) training features with N = {len(data.labels)} labels, got "
            f"shape {f.shape}"
        )
    return f


def _fit_mahalanobis(data: FitData) -> Stats:
    return as_stats(fit_mahalanobis(fit_features(data), data.labels, data.num_classes))


def _fit_multilayer(data: FitData) -> Stats:
    layers = dict(data.outputs["layers"])
    fitted = fit_multilayer_mahalanobis(layers, data.labels, list(layers), data.num_classes)
    return {name: as_stats(stats) for name, stats in fitted.items()}


def _multilayer(v) -> jax.Array:
    stats = {name: MahalanobisStats(**s) for name, s in v.stats("mahalanobis_multi").items()}
    return multilayer_mahalanobis_score(stats, v.output("layers"))


def _fit_knn(data: FitData) -> Stats:
    f = fit_features(data)
    stats = as_stats(fit_knn(f))
    stats["k"] = int(min(data.knn_k, len(f)))
    return stats


def _knn(v) -> jax.Array:
    s = v.stats("knn")
    return knn_score(KNNStats(s["bank"], s["valid"], s["size"]), v.features, k=s["k"])


def _fit_react(data: FitData) -> Stats | None:
    if data.head is None:
        return None
    kernel, bias = data.head
    threshold = react_threshold(fit_features(data), REACT_PERCENTILE)
    return {"threshold": np.float32(threshold), "kernel": kernel, "bias": bias}


def _react(v) -> jax.Array:
    s = v.stats("react")
    return react_energy(v.features, s["kernel"], s["bias"], s["threshold"])


def _fit_vim(data: FitData) -> Stats | None:
    f = fit_features(data)
    if data.head is None or f.shape[1] < 2:
        return None
    return as_stats(fit_vim(f, *data.head, vim_default_dim(f.shape[1]) or 1))


def _fit_rmds(data: FitData) -> Stats:
    # The class Gaussians are mahalanobis's (``uses``); only the background is new.
    return as_stats(fit_background(fit_features(data)))


def _rmds(v) -> jax.Array:
    stats = MahalanobisStats(**v.stats("mahalanobis"))
    return rmds_score(stats, MahalanobisStats(**v.stats("rmds")), v.features)


def _fit_mahalanobis_pp(data: FitData) -> Stats:
    return as_stats(fit_mahalanobis_pp(fit_features(data), data.labels, data.num_classes))


ENTRIES = (
    Score(
        "mahalanobis",
        "feature",
        "−min_c (f − μ_c)ᵀ Σ⁻¹ (f − μ_c) on the penultimate features f; class means, "
        "shared covariance",
        lambda v: mahalanobis_score(MahalanobisStats(**v.stats("mahalanobis")), v.features),
        needs=("fit", "features"),
        fit=_fit_mahalanobis,
    ),
    Score(
        "mahalanobis_multi",
        "feature",
        "Σ over the pooled tapped layers of each layer's Mahalanobis score (unweighted sum)",
        _multilayer,
        needs=("fit", "features"),
        fit=_fit_multilayer,
    ),
    Score(
        "knn",
        "feature",
        f"−‖f̂ − f̂_(k)‖: distance of the L2-normalised f̂ = f/‖f‖ to its k-th (k = {KNN_K}, "
        "at most the fitted examples) nearest normalised training feature",
        _knn,
        needs=("fit", "features"),
        fit=_fit_knn,
    ),
    Score(
        "react",
        "feature",
        "logsumexp(min(f, c) W + b), c the 90th percentile of training activations",
        _react,
        needs=("fit", "features", "head"),
        fit=_fit_react,
    ),
    Score(
        "vim",
        "feature",
        "logsumexp(z) − α‖(f − u) projected off the principal subspace‖ (virtual logit)",
        lambda v: vim_score(ViMStats(**v.stats("vim")), v.features, v.logits),
        needs=("fit", "features", "head"),
        fit=_fit_vim,
    ),
    Score(
        "rmds",
        "feature",
        "−min_k [MD_k(f) − MD_0(f)]: the squared Mahalanobis distance to the closest "
        "class (mahalanobis's Gaussians) relative to MD_0, the one to a single Gaussian "
        "fitted to all training features regardless of class (RMDS)",
        _rmds,
        needs=("fit", "features"),
        fit=_fit_rmds,
        uses=("mahalanobis",),
    ),
    Score(
        "mahalanobis_pp",
        "feature",
        "−min_c (f̂ − μ_c)ᵀ Σ⁻¹ (f̂ − μ_c) on the L2-normalised f̂ = f/‖f‖; class means "
        "and shared covariance fitted on normalised training features (Mahalanobis++)",
        lambda v: mahalanobis_pp_score(MahalanobisStats(**v.stats("mahalanobis_pp")), v.features),
        needs=("fit", "features"),
        fit=_fit_mahalanobis_pp,
    ),
)
