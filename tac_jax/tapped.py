"""Any flax classifier as a tac_jax base: `Tapped` records what TAC and the scores read.

tac_jax's own models ``sow`` their features; a user's module does not. `Tapped` wraps
one (``flax.linen``, or an NNX model through ``flax.nnx.bridge.to_linen``) and watches
its submodules' calls with ``nn.intercept_methods``: the output of each tapped
submodule, passed through ``activation`` (ReLU by default: a Conv or Dense returns its
pre-activation, and the features a network uses are after it), and the *input* of the
head (the last ``Dense`` called, or ``head``), which is exactly what the head reads
(``"pre_logits"``). The module's ``__call__`` may take a ``train`` argument or not.

Submodules are named by their path below the model ("Conv_0", "Block_1.Conv_0") in
``flax.linen``; inside an NNX model (whose layers ``nn.intercept_methods`` cannot see)
the NNX ``Linear``/``Conv`` calls are watched instead and named by type and call order
("Conv_0", "Linear_1"). The wrapped module's variables live under ``"net"``:
`wrap_variables` moves a user's variables there.

>>> import flax.linen as nn
>>> class CNN(nn.Module):
...     @nn.compact
...     def __call__(self, x):
...         x = nn.relu(nn.Conv(4, (3, 3))(x)).mean((1, 2))
...         return nn.Dense(3)(x)
>>> x = jnp.zeros((2, 8, 8, 1))
>>> variables = CNN().init(jax.random.key(0), x)
>>> tapped = Tapped(CNN())
>>> logits, state = tapped.apply(wrap_variables(variables), x, mutable=["intermediates"])
>>> sorted(feature_dict(state["intermediates"]))
['Conv_0', 'pre_logits']
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tac_jax.features import feature_dict  # noqa: F401  (used in the example)

NET = "net"
PENULTIMATE = "pre_logits"
# Submodule types whose outputs are tapped by default, and the heads' types.
DEFAULT_TYPES = (nn.Conv, nn.Dense, nn.ConvTranspose, nnx.Conv, nnx.Linear, nnx.ConvTranspose)
HEAD_TYPES = (nn.Dense, nnx.Linear)
_NNX_WATCHED = (nnx.Conv, nnx.Linear, nnx.ConvTranspose)

Call = tuple[str, type, Any, Any]


@contextlib.contextmanager
def _watching(calls: list[Call]) -> Iterator[None]:
    """Records ``(name, type, input, output)`` of every submodule call inside: linen
    submodules by path, NNX layers by type and call order."""
    counts: dict[str, int] = {}

    def linen(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and len(module.path) > 1:
            calls.append((".".join(module.path[1:]), type(module), args[0] if args else None, out))
        return out

    originals = {cls: cls.__call__ for cls in _NNX_WATCHED}

    def nnx_call(cls):
        original = originals[cls]

        def call(self, x, *args, **kwargs):
            out = original(self, x, *args, **kwargs)
            if type(self) in originals and originals[type(self)] is original:
                k = counts.get(cls.__name__, 0)
                counts[cls.__name__] = k + 1
                calls.append((f"{cls.__name__}_{k}", cls, x, out))
            return out

        return call

    try:
        for cls in _NNX_WATCHED:
            cls.__call__ = nnx_call(cls)
        with nn.intercept_methods(linen):
            yield
    finally:
        for cls, original in originals.items():
            cls.__call__ = original


def takes_train(module: nn.Module) -> bool:
    """Whether ``module.__call__`` has a ``train`` parameter."""
    try:
        return "train" in inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        return False


def wrap_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A module's variables as `Tapped`'s: every collection moved under ``"net"``."""
    return {collection: {NET: tree} for collection, tree in variables.items()}


def unwrap_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `wrap_variables`."""
    return {c: tree[NET] for c, tree in variables.items() if NET in tree}


class Tapped(nn.Module):
    """A classifier whose features are recorded as ``intermediates``.

    Attributes:
      net: the classifier, ``x → (B, C)`` logits.
      layers: the submodules to tap, by path below ``net`` ("Conv_0", "Block_1.Conv_0");
        default: every ``Conv``/``Dense`` called, but the head.
      head: the path of the head ``Dense`` whose input is ``"pre_logits"``; default:
        the last ``Dense`` called.
      activation: applied to each tapped output (None: none).
    """

    net: nn.Module
    layers: tuple[str, ...] | None = None
    head: str | None = None
    activation: Callable[[jax.Array], jax.Array] | None = jax.nn.relu

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        calls: list[Call] = []
        with _watching(calls):
            logits = self.net(x, train=train) if takes_train(self.net) else self.net(x)
        denses = [c for c in calls if issubclass(c[1], HEAD_TYPES)]
        head = self.head if self.head is not None else (denses[-1][0] if denses else None)
        by_name = {name: (kind, inp, out) for name, kind, inp, out in calls}
        if head not in by_name:
            raise ValueError(
                f"expected a head Dense among the submodules called {sorted(by_name)}, got {head!r}"
            )
        self.sow("intermediates", PENULTIMATE, by_name[head][1])
        if self.layers is None:
            names = [n for n, kind, _, _ in calls if issubclass(kind, DEFAULT_TYPES) and n != head]
        else:
            names = list(self.layers)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(
                f"expected layers among the submodules called {sorted(by_name)}, got {missing}"
            )
        for name in names:
            out = by_name[name][2]
            if self.activation is not None:
                out = self.activation(out)
            self.sow("intermediates", name, out)
        return jnp.asarray(logits)

    def head_params(self, params: Mapping[str, Any], num_classes: int) -> Any:
        """The head's parameters in `Tapped`'s ``params``: at the ``head`` path
        ("Block_0.Dense_1"), else (an NNX model, whose layers are named by call order) the
        only ``{"kernel" (D, C), "bias" (C,)}``; None if there is not one."""
        params = params[NET]
        node: Any = params
        for key in (self.head or "").split("."):
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and "kernel" in node:
            return node
        found = []

        def visit(tree: Any) -> None:
            if not isinstance(tree, Mapping):
                return
            kernel, bias = tree.get("kernel"), tree.get("bias")
            shapes = (np.shape(kernel)[1:], np.shape(bias)) if kernel is not None else None
            if np.ndim(kernel) == 2 and shapes == ((num_classes,), (num_classes,)):
                found.append(tree)
            for value in tree.values():
                visit(value)

        visit(params)
        return found[0] if len(found) == 1 else None


class _Bare(nn.Module):
    """The module under ``"net"``, called as `Tapped` calls it."""

    net: nn.Module

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x, train=False) if takes_train(self.net) else self.net(x)


def called_modules(
    module: nn.Module, variables: Mapping[str, Any], x: jax.Array
) -> list[tuple[str, type]]:
    """``(path below the module, type)`` of every submodule ``module`` calls on ``x``,
    in call order (traced only: nothing is computed)."""
    calls: list[Call] = []

    def run(variables, x):
        with _watching(calls):
            return _Bare(module).apply(wrap_variables(variables), x, mutable=["intermediates"])

    jax.eval_shape(run, variables, x)
    return list(dict.fromkeys((name, kind) for name, kind, _, _ in calls))


def tap(
    module: nn.Module,
    variables: Mapping[str, Any],
    x: jax.Array,
    *,
    layers: Sequence[str] | None = None,
    head: str | None = None,
    activation: Callable[[jax.Array], jax.Array] | None = jax.nn.relu,
) -> Tapped:
    """`Tapped` with its head and layers resolved on an example batch ``x``: the head is
    the last ``Dense`` called unless named, the layers every ``Conv``/``Dense`` but the
    head unless named.

    Raises:
      ValueError: if the module calls no Dense (no head), or a named layer or head is
        not among its submodules.
    """
    calls = called_modules(module, variables, x)
    names = [name for name, _ in calls]
    if head is None:
        denses = [name for name, kind in calls if issubclass(kind, HEAD_TYPES)]
        if not denses:
            raise ValueError(
                f"expected the model to end in a flax Dense head, got submodules {names}"
            )
        head = denses[-1]
    if layers is None:
        layers = [n for n, kind in calls if issubclass(kind, DEFAULT_TYPES) and n != head]
    missing = [n for n in [head, *layers] if n not in names]
    if missing:
        raise ValueError(f"expected layers among the model's submodules {names}, got {missing}")
    if not layers:
        raise ValueError(f"expected at least one layer to tap besides the head {head!r}, got none")
    return Tapped(module, tuple(layers), head, activation)
