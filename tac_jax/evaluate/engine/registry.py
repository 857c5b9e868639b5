"""The registry of confidence scores: every `tac_jax.scores.entry.Score`, in report order.

Each family module of `tac_jax.scores` ends with the ``ENTRIES`` of its scores (name,
formula, needs, extra pass, fit and score function, all in one place); `SCORES` gathers
them, TAC's first. All are oriented so that higher means "more in-distribution / more
likely correct" (METHODS §4–5). A score *needs* capabilities a run may lack
(`run_capabilities`): TAC's exist only for TAC runs (``tac_weighted`` also needs a
validation split), ReAct and ViM need the model's ``head`` Dense, the training-time
methods' scores need a run of that method (`tac_jax.methods`), MC dropout a base with
dropout.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from tac_jax.evaluate.engine.collect import head_params, supported_passes
from tac_jax.scores import boundary, feature, gradient, logits, methods, purview, shaping, tac
from tac_jax.scores.entry import Score

# What a report reads of an entry (its family and formula); the entry itself.
ScoreInfo = Score

SCORES: dict[str, Score] = {
    entry.name: entry
    for module in (tac, logits, feature, boundary, shaping, gradient, purview, methods)
    for entry in module.ENTRIES
}
TAC_NAMES = tuple(name for name, info in SCORES.items() if "tac" in info.needs)


def available_scores(capabilities: Collection[str]) -> tuple[str, ...]:
    """The scores whose needs ``capabilities`` cover, in `SCORES` order."""
    caps = set(capabilities)
    return tuple(name for name, info in SCORES.items() if set(info.needs) <= caps)


def run_capabilities(setup: Any, state: Any) -> frozenset[str]:
    """What a loaded run offers the scores (see `ScoreInfo.needs`)."""
    caps = {"fit"}
    dtype = np.dtype(setup.input_dtype)
    if dtype == np.uint8 or np.issubdtype(dtype, np.floating):
        caps.add("input")
    if setup.tac is not None:
        caps.add("tac")
    if float(setup.config.data.get("validation_fraction", 0.0)) > 0:
        caps.add("validation")
    if setup.method is not None:
        caps |= set(setup.method.capabilities())
    else:
        caps.add("features")
        if head_params(setup, state) is not None:
            caps.add("head")
    if "mc_dropout" in supported_passes(setup, state):
        caps.add("dropout")
    return frozenset(caps)


WHY = {
    "tac": "a run without a TAC head",
    "validation": "no validation split (config.data.validation_fraction 0)",
    "head": "no 'head' Dense the prediction comes from",
    "input": "integer inputs cannot be perturbed",
    "features": "no single network's features (an ensemble)",
    "dropout": "no dropout, or BatchNorm statistics",
    "confidence": "not a learned-confidence run",
    "ensemble": "not an ensemble run",
    "sngp": "not an SNGP run",
}


def resolve_scores(
    requested: Sequence[str] | None, capabilities: Collection[str]
) -> tuple[str, ...]:
    """``requested`` (default: every available score) checked and put in `SCORES` order.

    Raises:
      ValueError: on an unknown score or one this run cannot compute.
    """
    available = available_scores(capabilities)
    if requested is None:
        return available
    requested = [requested] if isinstance(requested, str) else list(requested)
    unknown = [name for name in requested if name not in SCORES]
    if unknown:
        raise ValueError(f"expected score names from {list(SCORES)}, got unknown {unknown}")
    missing = [name for name in requested if name not in available]
    if missing:
        lacking = {n for m in missing for n in SCORES[m].needs if n not in capabilities}
        reasons = sorted(WHY.get(n, n) for n in lacking)
        raise ValueError(
            f"expected scores this run can compute {list(available)}, got {missing} "
            f"({'; '.join(reasons)})"
        )
    if not requested:
        raise ValueError("expected at least one score name, got none")
    return tuple(name for name in SCORES if name in requested)


def score_passes(names: Sequence[str]) -> tuple[str, ...]:
    """The extra passes ``names`` read, in `tac_jax.evaluate.engine.collect.PASSES` order."""
    passes = (SCORES[n].pass_name for n in with_uses(names))
    return tuple(dict.fromkeys(name for name in passes if name))


def needs_fit(names: Sequence[str]) -> bool:
    """Whether any of ``names`` reads fitted statistics."""
    return any(SCORES[name].fitted for name in with_uses(names))


def with_uses(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` and every score they are built from (``Score.uses``), dependencies
    first, each once."""
    out: dict[str, None] = {}

    def visit(name: str) -> None:
        if name in out:
            return
        for used in SCORES[name].uses:
            visit(used)
        out[name] = None

    for name in names:
        visit(name)
    return tuple(out)
