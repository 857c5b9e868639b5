"""``reliability.png``: reliability diagrams, accuracy per confidence bin.

A calibrated confidence of 0.8 is right 80% of the time: each panel bins the test
split's confidences in 15 equal-width bins (`tac_jax.metrics.reliability_bins`, the
binning of the report's ECE), draws each bin's accuracy as a bar against the diagonal
of perfect calibration, writes the bin's example count above it, and gives the ECE in
the title.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from tac_jax.evaluate.reporting.canvas import new_figure, save_figure
from tac_jax.metrics import reliability_bins

FIGURE_FILE = "reliability.png"
NUM_BINS = 15


def reliability_figure(
    directory: str | os.PathLike,
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    num_bins: int = NUM_BINS,
) -> str:
    """Writes ``reliability.png``, one panel per confidence.

    Args:
      directory: an existing folder.
      panels: ``{title: (confidence, hit)}``: ``(N,)`` confidences in [0, 1] and whether
        the prediction each one backs is right.
      num_bins: equal-width bins on [0, 1].

    Returns:
      The file name, relative to ``directory`` (as the other figures).
    """
    if not panels:
        raise ValueError("expected at least one (confidence, hit) panel, got none")
    fig = new_figure(5.0 * len(panels), 4.6)
    for i, (title, (confidence, hit)) in enumerate(panels.items()):
        bins = reliability_bins(confidence, hit, num_bins)
        ax = fig.add_subplot(1, len(panels), i + 1)
        left, width = bins.edges[:-1], 1.0 / num_bins
        full = bins.count > 0
        ax.bar(left[full], bins.accuracy[full], width=width, align="edge", color="#1f77b4",
               edgecolor="white", alpha=0.85, label="accuracy")  # fmt: skip
        ax.plot(bins.confidence[full], bins.accuracy[full], "x", color="#d62728", ms=4,
                label="(mean confidence, accuracy)")  # fmt: skip
        ax.plot([0, 1], [0, 1], color="0.4", lw=0.9, ls="--", label="calibrated")
        for x, acc, n in zip(left[full], bins.accuracy[full], bins.count[full], strict=True):
            ax.text(x + width / 2, min(acc, 1.0) + 0.01, str(int(n)), ha="center",
                    va="bottom", fontsize=6, rotation=90)  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1.12), xlabel="confidence", ylabel="accuracy")
        n = int(bins.count.sum())
        ax.set_title(f"{title}: ECE {bins.ece:.4f} ({num_bins} bins, n = {n})", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, os.fspath(directory), FIGURE_FILE)
