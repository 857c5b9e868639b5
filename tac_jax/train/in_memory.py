"""Training a TAC add-on on arrays in memory, on a frozen base given as variables.

`tac_jax.train.loop.train_and_evaluate` trains from a config's dataset into a workdir,
with checkpoints; `train_addon` is the same update step (`tac_jax.train.step`) on
arrays a caller already holds, for `tac_jax.evaluate.engine.detector.Detector`: no files,
no checkpoints, one jitted step, batches drawn without replacement per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tac_jax.train.state import TrainState
from tac_jax.train.step import train_step_fn


def train_addon(
    setup: Any,
    base_variables: Mapping[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    log_every: int = 500,
) -> TrainState:
    """Trains ``setup``'s TAC head for ``setup.config.steps`` steps of
    ``setup.config.batch_size`` on ``(images, labels)``, the base frozen.

    Args:
      setup: a `tac_jax.train.setup.TrainSetup` in add-on mode.
      base_variables: the trained base's variables.
      images: ``(N, *input_shape)`` training inputs (uint8 or floats in [0, 1]).
      labels: ``(N,)`` integer labels in ``[0, C)``.
      seed: the initialisation, the batches and the step keys.
      log: optional progress callback.
      log_every: steps between two progress lines.

    Returns:
      The trained state (its variables hold the base unchanged).

    Raises:
      ValueError: if the setup is not an add-on, or the arrays do not match.
    """
    if setup.tac is None or setup.tac.mode != "addon":
        raise ValueError("expected a TAC add-on setup (mode 'addon'), got another mode")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images) or not len(labels):
        raise ValueError(
            f"expected one integer label per input, got {len(labels)} labels for "
            f"{len(images)} inputs"
        )
    num_classes = int(setup.config.data.num_classes)
    if (
        not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() >= num_classes
    ):
        raise ValueError(
            f"expected integer labels in [0, {num_classes}), got {labels.dtype} labels"
        )
    variables = dict(setup.init(jax.random.key(seed)).variables)
    # Copies: the step donates its state, and the caller keeps its base variables.
    base_variables = jax.tree_util.tree_map(jnp.array, dict(base_variables))
    variables = setup.tac.with_base(variables, base_variables)
    params = variables.pop("params")
    state = TrainState.create(params, setup.tx, variables)
    step = jax.jit(train_step_fn(setup.objective, setup.tx, seed=seed), donate_argnums=0)
    batch_size = min(int(setup.config.batch_size), len(labels))
    rng = np.random.default_rng(seed)
    order, at = rng.permutation(len(labels)), 0
    steps = int(setup.config.steps)
    for i in range(steps):
        if at + batch_size > len(order):
            order, at = rng.permutation(len(labels)), 0
        index = np.sort(order[at : at + batch_size])
        at += batch_size
        state, metrics = step(
            state, {"image": images[index], "label": labels[index].astype(np.int32)}
        )
        if log and ((i + 1) % log_every == 0 or i + 1 == steps):
            log(f"TAC step {i + 1}/{steps}: loss {float(metrics['loss']):.4f}")
    return state
