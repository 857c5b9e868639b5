"""Figures: created off pyplot, saved atomically as PNG."""

import doctest
import os

import pytest

from tac_jax.evaluate.reporting import canvas
from tac_jax.evaluate.reporting.canvas import new_figure, save_figure


def test_doctests():
    assert doctest.testmod(canvas).failed == 0


def test_save_figure_writes_a_png_and_nothing_else(tmp_path):
    fig = new_figure(2.0, 2.0)
    fig.add_subplot().plot([0, 1], [1, 0])
    assert save_figure(fig, tmp_path, "a.png") == "a.png"
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["a.png"]
    with pytest.raises(ValueError, match="expected a file name ending in .png, got 'a.svg'"):
        save_figure(fig, tmp_path, "a.svg")
