"""The training state: a pytree of arrays and nothing else.

No apply function and no optimizer object live in it, so the same state is saved,
restored, sharded and donated as one tree; the optimizer is passed to the step instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything an update changes.

    Attributes:
      step: the number of updates done (an int32 scalar); a checkpoint at step ``s``
        holds the state after ``s`` updates.
      params: the trainable (and, in add-on mode, frozen) parameters.
      opt_state: the optimizer's state.
      collections: the model's other variable collections (``batch_stats``); empty
        for models without any.

    >>> import optax
    >>> state = TrainState.create({"w": jnp.ones(2)}, optax.sgd(0.1))
    >>> int(state.step), sorted(state.variables)
    (0, ['params'])
    """

    step: jax.Array
    params: Any
    opt_state: Any
    collections: dict[str, Any]

    @classmethod
    def create(
        cls,
        params: Any,
        tx: optax.GradientTransformation,
        collections: Mapping[str, Any] | None = None,
    ) -> TrainState:
        """A fresh state at step 0.

        Args:
          params: the initial parameters.
          tx: the optimizer whose state to initialise.
          collections: the other variable collections (``"intermediates"`` is dropped:
            it is recomputed by every forward pass).
        """
        collections = {k: v for k, v in (collections or {}).items() if k != "intermediates"}
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            collections=collections,
        )

    @property
    def variables(self) -> dict[str, Any]:
        """``{"params": ..., **collections}``, the form ``module.apply`` takes."""
        return {"params": self.params, **self.collections}

    def apply_gradients(
        self,
        grads: Any,
        tx: optax.GradientTransformation,
        collections: Mapping[str, Any] | None = None,
    ) -> TrainState:
        """One optimizer update.

        Args:
          grads: gradients shaped like ``params``.
          tx: the optimizer the state was created with.
          collections: updated collections (e.g. new ``batch_stats``) replacing the
            current ones; the rest are kept.

        Returns:
          The state after the update, with ``step`` incremented.
        """
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        merged = {**self.collections, **dict(collections or {})}
        return self.replace(
            step=self.step + 1, params=params, opt_state=opt_state, collections=merged
        )
