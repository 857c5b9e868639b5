"""One colour per score: distinct within a run, the same in every figure."""

import doctest
import itertools

import numpy as np
from matplotlib.colors import to_rgb

from tac_jax.evaluate.engine.scoring import available_scores
from tac_jax.evaluate.reporting import colours
from tac_jax.evaluate.reporting.colours import PALETTE, colour_map, score_styles

# The largest run: a TAC add-on with every capability but the training-time methods.
RUN = list(available_scores({"tac", "fit", "features", "head", "input", "validation"}))


def test_doctests():
    assert doctest.testmod(colours).failed == 0


def test_every_score_of_a_run_gets_its_own_colour():
    assert len(RUN) > 20
    mapping = colour_map(RUN)
    assert list(mapping) == RUN and len(set(mapping.values())) == len(RUN)
    # Distinct to the eye, not only as strings: no two palette colours nearly equal.
    rgb = np.array([to_rgb(c) for c in PALETTE])
    closest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2))
    assert closest > 0.12


def test_the_colour_follows_the_run_list_not_the_subset_drawn():
    assert colour_map(RUN)["knn"] == colour_map([*RUN, "extra"])["knn"]
    assert colour_map(["a", "b", "a"]) == {"a": PALETTE[0], "b": PALETTE[1]}
    many = colour_map([f"s{i}" for i in range(len(PALETTE) + 1)])
    assert many[f"s{len(PALETTE)}"] == PALETTE[0]  # past the palette, colours repeat
    style = score_styles(["tac_fused", "knn"])
    assert style["tac_fused"]["lw"] > style["knn"]["lw"]


def _colours(fig):
    """``{score: colour}`` of a figure's labelled lines (the label's first word)."""
    return {
        line.get_label().split(" ")[0].rstrip(","): line.get_color()
        for ax in fig.axes
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def test_a_score_has_the_same_colour_in_every_figure(tmp_path, monkeypatch):
    from tac_jax.evaluate.reporting import adversarial, canvas, plots

    figures = {}

    def keep(fig, directory, name):
        figures[name] = fig
        return name

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(canvas, "save_figure", keep)  # adversarial imports it when drawing
    rng = np.random.default_rng(0)
    n = 50
    test = {k: rng.normal(size=n) + i / len(RUN) for i, k in enumerate(RUN)}
    ood = {k: rng.normal(size=n) for k in RUN}
    data = plots.PlotData(test, rng.random(n) < 0.7, {"noise": ood}, {"noise": "far"}, value={})
    plots.roc_figures(str(tmp_path), data)
    labels = np.zeros(n, int)
    clean = {"prediction": labels, **test}
    attacked = {0.3: {"prediction": labels, **{k: v - 1.0 for k, v in ood.items()}}}
    section = adversarial.adversarial_table(clean, attacked, labels, RUN)
    adversarial.adversarial_figure(tmp_path, {"base": section})
    roc, adv = _colours(figures["roc_far.png"]), _colours(figures["adversarial.png"])
    shared = set(roc) & set(adv)
    assert len(shared) >= 4 and {"tac", "msp"} <= shared
    expected = colour_map(RUN)
    for name in shared:
        assert to_rgb(roc[name]) == to_rgb(adv[name]) == to_rgb(expected[name]), name
