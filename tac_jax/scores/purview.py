"""Purview (Lee et al., 2023): per-layer gradient norms towards a confounding label.

No ground-truth label is needed. With ``p = softmax(f(x))`` and a confounding target
``t`` (the all-ones vector by default; any multi-hot with ``n ≠ 1`` ones), the loss is
the binary cross-entropy summed over classes,

    J(x) = −Σ_c [t_c log p_c + (1 − t_c) log(1 − p_c)],

on the model's softmax outputs, as the paper uses them. (A framework BCE with mean
reduction divides by ``C``, which scales every feature by ``1/C²`` and changes no
ordering.) Each example's representation is ``‖∇_{θ_l} J(x)‖²`` for every parameter
set ``θ_l``: by default a *layer*, i.e. the leaves a flax module owns directly (a
Dense's kernel and bias; the grouping key is the leaf's path without its last name),
or every leaf alone with ``group="leaf"``.

With the all-ones target ``J = C·logsumexp(z) − Σ_c z_c``, so ``∂J/∂z = C·p − 1``:
zero for a uniform prediction and largest for a one-hot one. Confident inputs have the
larger gradients, so the in-distribution orientation of the untrained score (the sum
of the features) is ``+``. The paper's exact detector is not public: `purview_score`
is that untrained statistic (the default); `fit_purview_detector` is an option, a
diagonal Gaussian on the log-features of in-distribution data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.batching import batched_apply
from tac_jax.scores.entry import FitData, Score, Stats, as_stats

GROUPS = ("module", "leaf")
LossParamsFn = Callable[[Any, jax.Array], jax.Array]
_TINY = 1e-30  # Floor on 1 − p before its log: keeps J finite when p_c rounds to 1.


def confounding_target(num_classes: int, kind: str | Sequence[int] = "all_ones") -> jax.Array:
    """The confounding label: all ones, or multi-hot on the given class indices.

    Args:
      num_classes: ``C``.
      kind: ``"all_ones"``, or distinct class indices; any count but one (a one-hot
        target is a real label, not a confounding one).

    Returns:
      ``(C,)`` float32 target.

    >>> confounding_target(4, [0, 2]).tolist()
    [1.0, 0.0, 1.0, 0.0]
    """
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"expected an integer number of classes >= 2, got {num_classes!r}")
    if isinstance(kind, str):
        if kind != "all_ones":
            raise ValueError(f"expected kind 'all_ones' or class indices, got {kind!r}")
        return jnp.ones((num_classes,), jnp.float32)
    indices = [int(i) for i in np.ravel(np.asarray(kind))]
    if len(set(indices)) != len(indices) or any(not 0 <= i < num_classes for i in indices):
        raise ValueError(f"expected distinct class indices in [0, {num_classes}), got {indices}")
    if len(indices) == 1:
        raise ValueError(
            f"expected a multi-hot target with a number of ones other than 1, "
            f"got the one-hot target {indices}"
        )
    return jnp.zeros((num_classes,), jnp.float32).at[jnp.asarray(indices, jnp.int32)].set(1.0)


def purview_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
    """``J = −Σ_c [t_c log p_c + (1 − t_c) log(1 − p_c)]`` with ``p = softmax(logits)``.

    Args:
      logits: ``(C,)`` one example's logits.
      target: ``(C,)`` confounding target.

    Returns:
      The scalar loss.

    >>> round(float(purview_loss(jnp.zeros(2), jnp.ones(2))), 4)  # 2·log 2
    1.3863
    """
    if logits.shape != target.shape or logits.ndim != 1:
        raise ValueError(
            f"expected one example's (C,) logits matching the target's shape {target.shape}, "
            f"got {logits.shape}"
        )
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
    # 1 − p from log p without cancellation when p is close to 1.
    log_1mp = jnp.log(jnp.maximum(-jnp.expm1(log_p), _TINY))
    return -jnp.sum(target * log_p + (1.0 - target) * log_1mp)


def _example_loss(loss_params_fn: LossParamsFn, params: Any, x: jax.Array, target: Any):
    logits = loss_params_fn(params, x)
    if target is None:
        target = jnp.ones(logits.shape, jnp.float32)
    return purview_loss(logits, target)


def purview_grads(
    loss_params_fn: LossParamsFn, params: Any, x: jax.Array, target: jax.Array | None = None
) -> Any:
    """Per-example gradients ``∇_θ J(x_i)``: a pytree like ``params`` with a batch axis.

    Args:
      loss_params_fn: ``(params, x_single) → (C,)`` logits of one example.
      params: the parameters to differentiate, a pytree.
      x: ``(B, ...)`` inputs.
      target: ``(C,)`` confounding target; default all ones.
    """
    grad = jax.grad(_example_loss, argnums=1)
    return jax.vmap(grad, in_axes=(None, None, 0, None))(loss_params_fn, params, x, target)


def _group_keys(params: Any, group: str) -> list[str]:
    keys = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = [_key_name(k) for k in path]
        if group == "module":
            names = names[:-1]
        keys.append("/".join(names) or "params")
    return keys


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def purview_layer_names(params: Any, group: str = "module") -> list[str]:
    """The names of `purview_features`' columns, in order.

    >>> purview_layer_names({"Dense_0": {"kernel": 0, "bias": 0}, "Dense_1": {"kernel": 0}})
    ['Dense_0', 'Dense_1']
    """
    if group not in GROUPS:
        raise ValueError(f"expected a grouping in {GROUPS}, got {group!r}")
    return list(dict.fromkeys(_group_keys(params, group)))


def _features(loss_params_fn, params, x, target, group):
    grads = purview_grads(loss_params_fn, params, x, target)
    leaves = jax.tree_util.tree_leaves(grads)
    squared = [jnp.sum(g.reshape(g.shape[0], -1).astype(jnp.float32) ** 2, -1) for g in leaves]
    names = purview_layer_names(params, group)
    columns = {name: 0.0 for name in names}
    for key, sq in zip(_group_keys(params, group), squared, strict=True):
        columns[key] = columns[key] + sq
    return jnp.stack([columns[name] for name in names], axis=-1)


_features_jit = jax.jit(_features, static_argnums=(0, 4))


def purview_features(
    loss_params_fn: LossParamsFn,
    params: Any,
    x: jax.Array,
    *,
    target: jax.Array | None = None,
    group: str = "module",
    batch_size: int | None = None,
) -> jax.Array | np.ndarray:
    """Per-example squared gradient norms ``‖∇_{θ_l} J(x)‖²``, one column per layer.

    Args:
      loss_params_fn: ``(params, x_single) → (C,)`` logits of one example, e.g.
        ``lambda p, x: module.apply({"params": p}, x[None])[0]``. Reuse one function
        object across calls: it keys the compilation cache. For a `TACModel` in add-on
        mode, differentiate the base through ``model.base.apply``: its own ``apply``
        stops the base's gradients.
      params: the parameters to differentiate, a pytree (e.g. flax ``params``).
      x: ``(B, ...)`` inputs.
      target: ``(C,)`` confounding target (`confounding_target`); default all ones.
      group: ``"module"`` (leaves grouped by the module owning them) or ``"leaf"``.
      batch_size: if given, examples are processed in batches of this size (one
        compilation, padded last batch) so only ``batch_size`` per-example gradients
        live at once; the result is then a numpy array. Otherwise one jitted call.

    Returns:
      ``(B, L)`` features, columns named by `purview_layer_names`.

    >>> f = lambda p, x: x * p["Dense_0"]["kernel"]
    >>> purview_features(f, {"Dense_0": {"kernel": jnp.ones(2)}}, jnp.zeros((1, 2))).tolist()
    [[0.0]]
    """
    if group not in GROUPS:
        raise ValueError(f"expected a grouping in {GROUPS}, got {group!r}")
    if jnp.ndim(x) < 1:
        raise ValueError(f"expected a batch of inputs of rank >= 1, got shape {jnp.shape(x)}")
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("expected parameters with at least one array, got an empty pytree")
    if batch_size is None:
        return _features_jit(loss_params_fn, params, x, target, group)
    return batched_apply(
        lambda xb: _features_jit(loss_params_fn, params, xb, target, group), x, batch_size
    )


def purview_score(features: jax.Array, *, sign: float = 1.0) -> jax.Array:
    """The untrained Purview score: ``sign · Σ_l ‖∇_{θ_l} J‖²``.

    With softmax outputs and the all-ones target the gradient grows with confidence,
    so ``sign=+1`` (the default) makes higher = more in-distribution. Use ``-1`` for a
    setting where it shrinks with confidence.

    Args:
      features: ``(B, L)`` from `purview_features`.
      sign: ``+1`` or ``-1``.

    Returns:
      ``(B,)`` scores.

    >>> purview_score(jnp.array([[1.0, 2.0]])).tolist()
    [3.0]
    """
    if sign not in (1, -1):
        raise ValueError(f"expected a sign of +1 or -1, got {sign!r}")
    if jnp.ndim(features) != 2:
        raise ValueError(f"expected features of rank 2 (batch, layers), got {jnp.shape(features)}")
    return sign * jnp.sum(jnp.asarray(features, jnp.float32), axis=-1)


class PurviewDetector(NamedTuple):
    """A diagonal Gaussian on in-distribution log-features.

    Attributes:
      mean: ``(L,)`` mean of ``log(features + eps)``.
      std: ``(L,)`` its standard deviation (floored).
      eps: the offset inside the log.
    """

    mean: jax.Array
    std: jax.Array
    eps: float


def fit_purview_detector(
    id_features: jax.Array, *, eps: float = 1e-12, min_std: float = 1e-6
) -> PurviewDetector:
    """Fits the optional detector on in-distribution features (not the paper's, which
    is not public; `purview_score` is the default).

    Args:
      id_features: ``(N, L)`` features of in-distribution data.
      eps: offset inside the log (gradients can be exactly zero).
      min_std: floor on each dimension's standard deviation.

    Returns:
      A `PurviewDetector`.
    """
    if jnp.ndim(id_features) != 2 or jnp.shape(id_features)[0] < 2:
        raise ValueError(
            f"expected in-distribution features (N >= 2, layers), got {jnp.shape(id_features)}"
        )
    logf = jnp.log(jnp.asarray(id_features, jnp.float32) + eps)
    return PurviewDetector(logf.mean(0), jnp.maximum(logf.std(0), min_std), eps)


def purview_detector_score(detector: PurviewDetector, features: jax.Array) -> jax.Array:
    """``−‖(log(f + eps) − μ) / σ‖₂``: minus the diagonal Mahalanobis distance to the
    in-distribution log-features (higher = more in-distribution).

    >>> det = fit_purview_detector(jnp.array([[1.0], [jnp.e**2]]))  # log: 0, 2
    >>> print(purview_detector_score(det, jnp.array([[jnp.e**3]])).round(4))  # z = 2
    [-2.]
    """
    if jnp.ndim(features) != 2 or jnp.shape(features)[1] != detector.mean.shape[0]:
        raise ValueError(
            f"expected features (batch, {detector.mean.shape[0]}), got {jnp.shape(features)}"
        )
    z = (jnp.log(jnp.asarray(features, jnp.float32) + detector.eps) - detector.mean) / detector.std
    return -jnp.sqrt(jnp.sum(z * z, axis=-1))


def _fit_detector(data: FitData) -> Stats | None:
    if "purview" not in data.outputs:
        return None
    return as_stats(fit_purview_detector(np.asarray(data.outputs["purview"], np.float32)))


ENTRIES = (
    Score(
        "purview",
        "gradient",
        "Σ_l ‖∇_θl BCE(softmax(z), 1)‖²: per-layer squared gradient norms towards the "
        "all-ones confounding label, summed (Purview's untrained score; + because the "
        "gradient grows with confidence)",
        lambda v: purview_score(v.output("purview")),
        pass_name="purview",
    ),
    Score(
        "purview_detector",
        "gradient",
        "−‖(log g − μ)/σ‖₂ on Purview's per-layer norms g: a diagonal Gaussian fitted on "
        "training examples (an option; the paper's detector is not public)",
        lambda v: purview_detector_score(PurviewDetector(**v.stats("purview_detector")),
                                         v.output("purview")),
        needs=("fit",),
        pass_name="purview",
        fit=_fit_detector,
    ),
)  # fmt: skip
