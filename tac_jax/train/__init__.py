"""Training: state, sharded update step, loop and checkpoints.

The package is also a function: ``tac_jax.train(config, workdir)`` is `train`.
"""

from __future__ import annotations

import os
from typing import Any

from tac_jax.callable_module import make_callable


def train(config: Any, workdir: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
    """Trains (or resumes) a run into ``workdir`` and evaluates it, as ``tac-jax train``.

    Args:
      config: a config's name (``"smoke"``, ``"demo:base"``), a config file
        (``"path/to/config.py[:ARG]"``) or an ``ml_collections.ConfigDict``.
      workdir: the run's directory (checkpoints, metrics).
      **kwargs: passed on to `tac_jax.train.loop.train_and_evaluate` (``hooks``, and
        ``fresh=True`` to set an earlier run of another config aside and start again).

    Returns:
      The run's final metrics (as in ``WORKDIR/final_metrics.json``); ``{"step",
      "steps", "preempted": True}`` when SIGTERM stopped it (call again to resume).

    Raises:
      TypeError: if ``config`` is none of those.

    >>> import tac_jax
    >>> config = tac_jax.load_config("smoke")
    >>> config.mode = "scratch"
    >>> metrics = tac_jax.train(config, "runs/smoke")  # doctest: +SKIP
    """
    # Imported here: ``import tac_jax`` stays free of the loop's dependencies (orbax).
    import ml_collections

    from tac_jax.config_io import load_config
    from tac_jax.train import loop

    if isinstance(config, str | os.PathLike):
        config = load_config(config)
    elif not isinstance(config, ml_collections.ConfigDict):
        raise TypeError(
            f"expected a config name, path or ConfigDict, got a {type(config).__name__}"
        )
    return loop.train_and_evaluate(config, workdir, **kwargs)


# `tac_jax.train` names this package; see `tac_jax.callable_module` for why it is callable.
make_callable(__name__, "train")
