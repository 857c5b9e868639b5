"""Creating and saving the report's figures.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never
through pyplot, so nothing global (the backend, open figures) is touched. A figure is
written to a temporary PNG and renamed over its file, so a reader of the report folder
never sees half an image.
"""

from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tac_jax.atomic_write import atomic_path

DPI = 110


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches on its own Agg canvas.

    >>> new_figure(4.0, 3.0).get_size_inches().tolist()
    [4.0, 3.0]
    """
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, directory: str | os.PathLike, name: str) -> str:
    """Writes ``fig`` as the PNG ``directory/name``, atomically.

    Args:
      fig: the figure.
      directory: an existing folder.
      name: the file name, ending in ``.png``.

    Returns:
      ``name``, as the report lists it.
    """
    if not name.endswith(".png"):
        raise ValueError(f"expected a file name ending in .png, got {name!r}")
    with atomic_path(os.path.join(os.fspath(directory), name)) as tmp:
        fig.savefig(tmp, format="png")
    return name
