import doctest
import json
import os

import numpy as np
import pytest

from tac_jax.evaluate.ood import tfds_shift
from tac_jax.evaluate.ood.tfds_shift import tfds_corruption_sets
from tac_jax.evaluate.reporting import shift
from tac_jax.evaluate.reporting.shift import (
    shift_figure,
    shift_lines,
    shift_table,
)


def _entry(kind, accuracy, ece, tac_accuracy, tac_auroc, msp_auroc):
    return {
        "kind": kind,
        "size": 10,
        "accuracy": accuracy,
        "tac_accuracy": tac_accuracy,
        "ece": ece,
        "scores": {
            "tac": {"auroc": tac_auroc, "aupr_in": 0.5},
            "msp": {"auroc": msp_auroc, "aupr_in": 0.5},
        },
    }


SETS = {
    "noise_uniform": _entry("synthetic", 0.0, 0.9, 0.0, 0.99, 0.99),  # not a corruption
    "fog_s1": _entry("corruption", 0.80, 0.10, 0.70, 0.60, 0.55),
    "fog_s3": _entry("corruption", 0.50, 0.20, 0.40, 0.80, 0.70),
    "contrast_s1": _entry("corruption", 0.70, 0.06, 0.60, 0.70, 0.65),
    "contrast_s3": _entry("corruption", 0.30, 0.30, 0.20, 0.90, 0.75),
    "rotation_s9": _entry("corruption", 0.0, 1.0, 0.0, 0.0, 0.0),  # severity 9 does not parse
    "blur": _entry("corruption", 0.0, 1.0, 0.0, 0.0, 0.0),  # no severity
}
CLEAN = {"accuracy": 0.9, "ece": 0.03, "tac_accuracy": 0.85}


def test_doctests():
    assert doctest.testmod(shift).failed == 0
    assert doctest.testmod(tfds_shift).failed == 0


def test_shift_table_by_hand():
    t = shift_table(SETS, CLEAN)
    assert t["scores"] == ["tac", "msp"]
    assert list(t["corruptions"]) == ["fog", "contrast"]
    assert t["corruptions"]["fog"]["3"] == {
        "accuracy": 0.50,
        "tac_accuracy": 0.40,
        "ece": 0.20,
        "auroc": {"tac": 0.80, "msp": 0.70},
    }
    assert list(t["by_severity"]) == ["0", "1", "3"]
    assert t["by_severity"]["0"] == CLEAN
    one, three = t["by_severity"]["1"], t["by_severity"]["3"]
    assert one["count"] == three["count"] == 2
    assert one["accuracy"] == pytest.approx(0.75)
    assert one["tac_accuracy"] == pytest.approx(0.65)
    assert one["ece"] == pytest.approx(0.08)
    assert one["auroc"] == pytest.approx({"tac": 0.65, "msp": 0.60})
    assert three["accuracy"] == pytest.approx(0.40)
    assert three["ece"] == pytest.approx(0.25)
    assert three["auroc"] == pytest.approx({"tac": 0.85, "msp": 0.725})
    json.dumps(t)


def test_shift_table_missing_values_and_no_tac():
    sets = {k: dict(v) for k, v in SETS.items()}
    for entry in sets.values():
        del entry["tac_accuracy"]
    sets["fog_s1"]["ece"] = None  # null in metrics.json
    sets["contrast_s1"]["ece"] = float("nan")
    t = shift_table(sets, {"accuracy": 0.9, "ece": 0.03})
    assert "tac_accuracy" not in t["by_severity"]["1"]
    assert t["by_severity"]["1"]["ece"] is None
    assert t["corruptions"]["contrast"]["1"]["ece"] is None
    assert t["by_severity"]["3"]["ece"] == pytest.approx(0.25)


def test_shift_table_none_without_corruptions():
    assert shift_table({"noise_uniform": SETS["noise_uniform"]}, CLEAN) is None
    assert shift_table({"blur": SETS["blur"]}, CLEAN) is None
    assert shift_table({}, CLEAN) is None
    with pytest.raises(ValueError, match="accuracy"):
        shift_table(SETS, {"ece": 0.1})


def test_lines_contain_numbers():
    section = json.loads(json.dumps(shift_table(SETS, CLEAN)))
    text = "\n".join(shift_lines(section))
    assert "Ovadia" in text
    assert (
        "| severity | corruptions | accuracy ↑ | TAC accuracy ↑ | ECE ↓ | AUROC `tac` ↑ "
        "| AUROC `msp` ↑ |" in text
    )
    assert "| 0 (clean) | – | 0.900 | 0.850 | 0.030 | – | – |" in text
    assert "| 1 | 2 | 0.750 | 0.650 | 0.080 | 0.650 | 0.600 |" in text
    assert "| 3 | 2 | 0.400 | 0.300 | 0.250 | 0.850 | 0.725 |" in text
    assert "| fog_s3 | 0.500 | 0.400 | 0.200 | 0.800 | 0.700 |" in text
    assert "| contrast_s1 | 0.700 | 0.600 | 0.060 | 0.700 | 0.650 |" in text
    assert "rotation" not in text and "blur" not in text
    picked = "\n".join(shift_lines(section, scores=["msp"]))
    assert "`tac`" not in picked and "| 1 | 2 | 0.750 | 0.650 | 0.080 | 0.600 |" in picked
    with pytest.raises(ValueError, match="energy"):
        shift_lines(section, scores=["energy"])


def test_figure_written(tmp_path):
    name = shift_figure(tmp_path / "figs", shift_table(SETS, CLEAN))
    assert name == "shift.png"
    path = tmp_path / "figs" / name
    assert path.exists() and os.path.getsize(path) > 1000


class FakeLoad:
    """Stands in for TFDS: a distinct constant image per config, labels 0..n−1."""

    def __init__(self, n=50, dtype=np.uint8):
        self.n, self.dtype, self.calls = n, dtype, []

    def __call__(self, full_name, split):
        self.calls.append((full_name, split))
        value = 10 * len(self.calls)
        images = np.full((self.n, 4, 4, 3), value, self.dtype)
        images[:, 0, 0, 0] = np.arange(self.n)  # which example each image is
        if self.dtype != np.uint8:
            images = images / 255.0
        return list(images) if self.n % 2 else images, np.arange(self.n) % 10


def test_tfds_corruption_sets_with_fake_loader():
    load = FakeLoad()
    sets = tfds_corruption_sets(
        corruptions=["fog", "gaussian_noise"], severities=[1, 5], num=20, load=load, seed=3
    )
    assert [s.name for s in sets] == ["fog_s1", "fog_s5", "gaussian_noise_s1", "gaussian_noise_s5"]
    assert load.calls == [
        ("cifar10_corrupted/fog_1", "test"),
        ("cifar10_corrupted/fog_5", "test"),
        ("cifar10_corrupted/gaussian_noise_1", "test"),
        ("cifar10_corrupted/gaussian_noise_5", "test"),
    ]
    picks = [np.rint(s.images[:, 0, 0, 0] * 255).astype(int) for s in sets]
    for s, pick in zip(sets, picks, strict=True):
        assert s.kind == "corruption" and len(s) == 20
        assert s.images.dtype == np.float32 and s.images.shape == (20, 4, 4, 3)
        assert s.images.min() >= 0.0 and s.images.max() <= 1.0
        assert s.labels.dtype == np.int32
        np.testing.assert_array_equal(s.labels, pick % 10)  # labels follow their images
        np.testing.assert_array_equal(pick, picks[0])  # the same indices for every set
    assert len(set(picks[0])) == 20 and np.all(np.diff(picks[0]) > 0)
    assert not np.array_equal(picks[0], np.arange(20))
    np.testing.assert_allclose(sets[1].images[0, 1, 1], 20 / 255, rtol=1e-6)


def test_tfds_corruption_sets_list_float_and_all():
    load = FakeLoad(n=7, dtype=np.float64)  # odd n: a list of images
    sets = tfds_corruption_sets(
        "other_corrupted", corruptions=["any"], severities=[2], num=None, split="val", load=load
    )
    assert load.calls == [("other_corrupted/any_2", "val")]
    assert sets[0].name == "any_s2" and sets[0].images.shape == (7, 4, 4, 3)
    assert sets[0].images.dtype == np.float32


def test_tfds_corruption_sets_errors():
    load = FakeLoad()
    for bad in ([0], [6], [2.5], [1, 7]):
        with pytest.raises(ValueError, match="expected severities in"):
            tfds_corruption_sets(corruptions=["fog"], severities=bad, load=load)
    with pytest.raises(ValueError, match="expected corruptions from"):
        tfds_corruption_sets(corruptions=["fogg"], load=load)
    with pytest.raises(ValueError, match="at least one corruption"):
        tfds_corruption_sets(corruptions=[], load=load)
    with pytest.raises(ValueError, match="num"):
        tfds_corruption_sets(corruptions=["fog"], num=0, load=load)
    assert not load.calls
