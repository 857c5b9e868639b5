"""Per-layer diagnostics of a TAC run: which tapped layers carry the signal.

For each tapped layer ``l`` (its block ``a_l`` of the activation vector and ``K_l`` of
the codes), `layer_diagnostics` measures, as if that layer were TAC's only one:

- ``accuracy``: Hamming decoding on the block, ``argmax_j ⟨sign(a_l), K_j,l⟩``;
- ``misclassification_auroc``: the block's confidence ``⟨a_l, K_ŷ,l⟩`` (ŷ the base
  prediction) telling the base head's right predictions from its wrong ones;
- ``ood_auroc``: the same confidence against each OOD kind (the mean over its sets);
- ``near_code``: the share of entries within 0.25 of ±1, and ``histogram``: the entries'
  counts on `HISTOGRAM_EDGES`, in and out of distribution (what ``layers.png`` draws).

A row ``"all"`` measures every layer together (the paper's confidence), for comparison.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.metrics.ood import auroc
from tac_jax.metrics.selective import misclassification_auroc
from tac_jax.scores.tac import blocks

HISTOGRAM_EDGES = np.linspace(-2.0, 2.0, 41)
_NEAR = 0.25


def _histogram(x: np.ndarray) -> list[int]:
    counts, _ = np.histogram(np.clip(x, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1]), HISTOGRAM_EDGES)
    return counts.tolist()


def _safe(fn, *args) -> float | None:
    try:
        return float(fn(*args))
    except ValueError:  # one class only: no AUROC
        return None


def layer_diagnostics(
    activation: np.ndarray,
    labels: np.ndarray,
    prediction: np.ndarray,
    codes: np.ndarray,
    width: int,
    layer_names: Sequence[str],
    ood: Mapping[str, tuple[np.ndarray, np.ndarray, str]] | None = None,
) -> dict[str, Any]:
    """The per-layer table of a TAC run (see the module docstring).

    Args:
      activation: ``(N, L·k)`` TAC activation vectors on the test split.
      labels: ``(N,)`` test labels.
      prediction: ``(N,)`` the base head's predictions.
      codes: ``(C, L·k)`` the class codes.
      width: ``k``, entries per layer.
      layer_names: the ``L`` tapped layers, shallowest first.
      ood: ``{set: (activation (n, L·k), base prediction (n,), kind)}`` of the OOD sets.

    Returns:
      ``{"layers": [name, ..., "all"], "kinds": [...], "rows": {name: {"accuracy",
      "misclassification_auroc", "ood_auroc": {kind: float}, "near_code",
      "histogram": {"in": [...], kind: [...]}}}, "edges": [...]}``.
    """
    a = np.asarray(activation, np.float32)
    codes = np.asarray(codes, np.float32)
    labels, prediction = np.asarray(labels), np.asarray(prediction)
    num = a.shape[1] // width if width >= 1 else 0
    if a.ndim != 2 or codes.shape[1] != a.shape[1] or len(layer_names) != num:
        raise ValueError(
            f"expected (N, {len(layer_names)}·{width}) activations matching codes "
            f"{codes.shape}, got {a.shape}"
        )
    correct = prediction == labels
    ood = dict(ood or {})
    kinds = list(dict.fromkeys(kind for _, _, kind in ood.values()))
    a_blocks, k_blocks = blocks(a, width), blocks(codes, width)
    ood_blocks = [
        (blocks(np.asarray(x, np.float32), width), np.asarray(p), kind)
        for x, p, kind in ood.values()
    ]

    def row(index: slice) -> dict[str, Any]:
        x, k = a_blocks[:, index].reshape(len(a), -1), k_blocks[:, index].reshape(len(codes), -1)
        score = np.sum(x * k[prediction], axis=-1)
        decoded = np.argmax(np.sign(x) @ k.T, axis=-1)
        per_kind: dict[str, list[float]] = {kind: [] for kind in kinds}
        hist: dict[str, list[int]] = {"in": _histogram(x)}
        for xo_blocks, pred_o, kind in ood_blocks:
            xo = xo_blocks[:, index].reshape(len(xo_blocks), -1)
            so = np.sum(xo * k[pred_o], axis=-1)
            value = _safe(auroc, score, so)
            if value is not None:
                per_kind[kind].append(value)
            hist[kind] = (np.asarray(hist.get(kind, 0)) + np.asarray(_histogram(xo))).tolist()
        return {
            "accuracy": float(np.mean(decoded == labels)),
            "misclassification_auroc": _safe(misclassification_auroc, score, correct),
            "ood_auroc": {kind: float(np.mean(v)) if v else None for kind, v in per_kind.items()},
            "near_code": float(np.mean(np.abs(np.abs(x) - 1.0) < _NEAR)),
            "histogram": hist,
        }

    rows = {name: row(slice(i, i + 1)) for i, name in enumerate(layer_names)}
    rows["all"] = row(slice(None))
    return {
        "layers": [*layer_names, "all"],
        "kinds": kinds,
        "rows": rows,
        "edges": HISTOGRAM_EDGES.tolist(),
    }
