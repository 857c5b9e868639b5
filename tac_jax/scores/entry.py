"""What a confidence score is to the scoring engine: one `Score` entry per score.

An entry holds everything about a score in one place: its name and family, the formula
a report prints, what a run must offer to compute it (``needs``), the extra pass over the
inputs it reads (``pass_name``), how its statistics are fitted on in-distribution
training outputs (``fit``) or on held-out validation outputs (``fit_held``), the other
scores it is built from (``uses``), and ``compute``, which reads one batch through a
`View`. Each family module of `tac_jax.scores` ends with its ``ENTRIES``;
`tac_jax.evaluate.engine.registry` gathers them, so adding a score to a family touches
that family's file only.

Fitted statistics are nested dicts of arrays (what ``report/fitted.npz`` stores); a
Python ``int`` among them is a compile-time constant (a neighbour rank, a bank size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Stats = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class FitData:
    """In-distribution training outputs, what ``Score.fit`` reads.

    Attributes:
      outputs: `tac_jax.evaluate.engine.collect.collect`'s outputs on training examples
        (with the extra passes of the scores being fitted).
      labels: ``(N,)`` their labels.
      num_classes: ``C``.
      head: the base head's ``(kernel (D, C), bias (C,))``, or None.
      knn_k: the neighbour rank KNN is asked for (capped at ``N``).
    """

    outputs: Mapping[str, Any]
    labels: np.ndarray
    num_classes: int
    head: tuple[np.ndarray, np.ndarray] | None = None
    knn_k: int = 50


@dataclasses.dataclass(frozen=True)
class HeldData:
    """Held-out (validation) outputs, what ``Score.fit_held`` reads.

    Attributes:
      outputs: `collect`'s outputs on the validation examples.
      labels: their labels.
      codes: ``(C, M)`` TAC's class codes, or None.
      width: entries per tapped layer.
      scores: ``names → {name: (N,) scores}`` on these outputs with the statistics fitted
        so far (a fitted score built on others reads them here).
    """

    outputs: Mapping[str, Any]
    labels: np.ndarray
    codes: np.ndarray | None
    width: int
    scores: Callable[[Sequence[str]], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Score:
    """One confidence score, oriented higher = more in-distribution / more likely correct.

    Attributes:
      name: the registry key.
      family: ``"tac"``, ``"logits"``, ``"feature"``, ``"gradient"``, or the
        training-time method it belongs to.
      formula: the definition, for readers of a report.
      compute: ``View → (B,)`` scores of one batch, traced inside the jitted scorer.
      needs: run capabilities it needs (see `tac_jax.evaluate.engine.registry.WHY`).
      pass_name: the extra pass over the inputs it reads (see
        `tac_jax.evaluate.engine.collect.PASSES`), or None.
      fit: ``FitData → stats`` on training outputs; None when it has none to fit, and
        it may return None when the outputs lack what it reads.
      fit_held: ``HeldData → stats`` on validation outputs (raises ValueError when the
        split cannot fit it, e.g. no errors).
      uses: other scores it is built from (fitted first, computed through the `View`).
      blockwise: it reads TAC's activation per tapped layer (needs the code width).
      fitted_what: how an error names its statistics when they are missing.
      fitted_note: ``stats → str``: what the fit chose, in words, for a report (e.g. the
        ``p`` of MaxLogit-pNorm); None when there is nothing to say.
    """

    name: str
    family: str
    formula: str
    compute: Callable[[View], jax.Array] = dataclasses.field(repr=False)
    needs: tuple[str, ...] = ()
    pass_name: str | None = None
    fit: Callable[[FitData], Stats | None] | None = dataclasses.field(default=None, repr=False)
    fit_held: Callable[[HeldData], Stats] | None = dataclasses.field(default=None, repr=False)
    uses: tuple[str, ...] = ()
    blockwise: bool = False
    fitted_what: str = "fitted statistics"
    fitted_note: Callable[[Stats], str] | None = dataclasses.field(default=None, repr=False)

    @property
    def fitted(self) -> bool:
        """Whether it reads statistics of its own."""
        return self.fit is not None or self.fit_held is not None


@dataclasses.dataclass(frozen=True)
class Options:
    """The compile-time settings of a scoring call.

    Attributes:
      width: entries per tapped layer (0: unknown).
      deepest: TAC's predictions and paper scores on the deepest this many layers (0: all).
      static: ``((score, key, value), ...)``: the integer statistics.
    """

    width: int = 0
    deepest: int = 0
    static: tuple[tuple[str, str, int], ...] = ()


class View:
    """One batch's outputs as the scores read them, inside the jitted scorer.

    Attributes:
      batch: the outputs of `collect` for this batch.
      codes: ``(C, M)`` TAC's codes, or None.
      settings: traced scalars: ``scale`` (TAC's distance-softmax scale) and ``fuse``
        (``tac_fused``'s λ).
      options: `Options`.
    """

    def __init__(
        self,
        catalog: Mapping[str, Score],
        batch: Mapping[str, Any],
        stats: Mapping[str, Stats],
        codes: jax.Array | None,
        settings: Mapping[str, jax.Array],
        options: Options,
    ):
        self.catalog = catalog
        self.batch = batch
        self._stats = stats
        self.codes = codes
        self.settings = settings
        self.options = options
        self._memo: dict[str, Any] = {}

    @property
    def logits(self) -> jax.Array:
        return self.batch["logits"]

    @property
    def features(self) -> jax.Array:
        """The penultimate features the head reads."""
        return self.batch["penultimate"]

    @property
    def activation(self) -> jax.Array:
        """TAC's total activation vector ``(B, M)``."""
        return self.batch["activation"].astype(jnp.float32)

    @property
    def prediction(self) -> jax.Array:
        """The base head's prediction."""
        return jnp.argmax(self.logits, axis=-1)

    def output(self, key: str) -> Any:
        """An output of `collect` by name (an extra pass's, ``"layers"``, ``"extras"``)."""
        return self.batch[key]

    def stats(self, name: str) -> Stats:
        """Score ``name``'s fitted statistics, integer constants included."""
        out = dict(self._stats[name])
        out.update({key: value for owner, key, value in self.options.static if owner == name})
        return out

    def score(self, name: str) -> jax.Array:
        """Another score of this batch (computed once per batch)."""
        key = f"score:{name}"
        if key not in self._memo:
            self._memo[key] = self.catalog[name].compute(self)
        return self._memo[key]

    def memo(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` computed once per batch under ``key`` (shared by several scores)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


def as_stats(tree: Any) -> Stats:
    """A NamedTuple or registered dataclass of statistics as a plain dict."""
    if hasattr(tree, "_asdict"):
        return dict(tree._asdict())
    return {f.name: getattr(tree, f.name) for f in dataclasses.fields(tree)}
