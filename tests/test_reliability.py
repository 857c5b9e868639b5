"""``reliability.png``: the bars are the calibration bins, the title the report's ECE."""

import numpy as np
import pytest

from tac_jax.evaluate.reporting import reliability
from tac_jax.evaluate.reporting.tables import calibration_metrics, softmax
from tac_jax.metrics import reliability_bins


def test_bars_are_the_accuracy_per_bin_and_the_title_the_ece(tmp_path, monkeypatch):
    from tac_jax.evaluate.reporting import plots

    rng = np.random.default_rng(0)
    n = 300
    logits, labels = rng.normal(scale=2.0, size=(n, 4)), rng.integers(0, 4, n)
    correct = logits.argmax(1) == labels
    tac_prob = rng.uniform(0.2, 1.0, n).astype(np.float32)
    figures = {}

    def keep(fig, directory, name):
        figures[name] = fig
        return name

    monkeypatch.setattr(reliability, "save_figure", keep)
    data = plots.PlotData(
        {"msp": softmax(logits).max(1), "tac_prob": tac_prob}, correct, {}, {}, value={},
        labels=labels, logits=logits,
    )  # fmt: skip
    panels = plots._reliability_panels(data)
    assert list(panels) == ["base head's softmax", "TAC's tac_prob"]
    assert reliability.reliability_figure(tmp_path, panels) == "reliability.png"
    base, tac = figures["reliability.png"].axes
    expected = reliability_bins(softmax(logits).max(1), correct, 15)
    heights = [bar.get_height() for bar in base.patches]
    np.testing.assert_allclose(heights, expected.accuracy[expected.count > 0])
    ece = calibration_metrics(logits, labels)["ece"]
    assert f"ECE {ece:.4f} (15 bins, n = {n})" in base.get_title()
    # tac_prob is the probability of the base head's prediction: read against its correctness.
    tac_bins = reliability_bins(tac_prob, correct, 15)
    assert f"ECE {tac_bins.ece:.4f}" in tac.get_title()
    counts = sorted(int(t.get_text()) for t in base.texts)
    assert counts == sorted(expected.count[expected.count > 0].tolist())


def test_no_panel_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="expected at least one"):
        reliability.reliability_figure(tmp_path, {})
