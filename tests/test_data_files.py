"""The report's data files: summary.csv and scores.npz."""

import csv
import doctest
import io
import math
import os

import numpy as np
import pytest

from tac_jax.evaluate.reporting import data_files
from tac_jax.evaluate.reporting.data_files import (
    score_arrays,
    summary_csv,
    write_data_files,
)


def test_doctests():
    assert doctest.testmod(data_files).failed == 0


def test_summary_csv_has_one_row_per_score_and_every_column():
    summary = {
        "tac": {"family": "tac", "auroc": 0.1 + 0.2, "n": np.int64(3)},
        "msp": {"family": "logits", "auroc": math.nan, "extra": np.float32(0.5)},
        "knn": {"auroc": None},
    }
    rows = list(csv.reader(io.StringIO(summary_csv(summary))))
    assert rows == [
        ["score", "family", "auroc", "n", "extra"],
        ["tac", "tac", "0.30000000000000004", "3", ""],
        ["msp", "logits", "", "", "0.5"],
        ["knn", "", "", "", ""],
    ]
    with pytest.raises(ValueError, match="expected no column named 'score'"):
        summary_csv({"tac": {"score": 1.0}})


def test_score_arrays_keys_and_checks():
    labels = np.array([0, 1, 2])
    test = {"msp": np.ones(3), "prediction": np.array([0, 1, 1])}
    arrays = score_arrays(test, labels, {"fog_s1": {"msp": np.zeros(4)}})
    assert sorted(arrays) == ["ood/fog_s1/msp", "test/label", "test/msp", "test/prediction"]
    np.testing.assert_array_equal(arrays["test/label"], labels)
    with pytest.raises(ValueError, match=r"expected test score 'msp' of shape \(3,\)"):
        score_arrays({"msp": np.ones(2)}, labels, {})
    with pytest.raises(ValueError, match="expected an OOD set name without '/'"):
        score_arrays(test, labels, {"a/b": {"msp": np.zeros(4)}})
    with pytest.raises(ValueError, match="other than 'label'"):
        score_arrays({"label": np.ones(3)}, labels, {})


def test_write_data_files_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    test = {"tac": rng.normal(size=5).astype(np.float32), "prediction": np.arange(5)}
    ood = {"noise": {"tac": rng.normal(size=7)}}
    names = write_data_files(tmp_path, {"tac": {"auroc": 0.5}}, test, np.arange(5), ood)
    assert names == ["summary.csv", "scores.npz"]
    assert sorted(os.listdir(tmp_path)) == ["scores.npz", "summary.csv"]  # no temporaries
    with np.load(tmp_path / "scores.npz") as stored:
        assert stored["test/tac"].dtype == np.float32
        np.testing.assert_array_equal(stored["test/tac"], test["tac"])
        np.testing.assert_array_equal(stored["ood/noise/tac"], ood["noise"]["tac"])
    assert (tmp_path / "summary.csv").read_text() == "score,auroc\ntac,0.5\n"
