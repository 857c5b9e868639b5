"""Tests for tac_jax.evaluate.reporting.guarantee: the guaranteed-risk rows of a report
agree with the metrics they are made of, survive JSON, and render as markdown."""

import doctest
import json
import math

import numpy as np
import pytest

from tac_jax.evaluate.reporting import guarantee
from tac_jax.evaluate.reporting.guarantee import (
    guarantee_lines,
    guarantee_markdown,
    guarantee_section,
    guarantee_table,
)
from tac_jax.evaluate.reporting.measure import jsonable
from tac_jax.metrics.guarantee import ltt, repeated_splits, sgr


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)

    def split(n):
        s = rng.uniform(size=n)
        correct = rng.uniform(size=n) >= 0.4 * (1 - s)
        noise = s + rng.normal(scale=0.5, size=n)  # a worse score of the same examples
        return {"good": s, "noisy": noise}, correct

    (val, val_c), (test, test_c) = split(1500), split(2000)
    return val, val_c, test, test_c


def test_doctests():
    assert doctest.testmod(guarantee).failed == 0


def test_rows_are_the_metrics_they_report(data):
    val, val_c, test, test_c = data
    rows = guarantee_table(val, val_c, test, test_c, risks=(0.05, 0.1), splits=20, seed=3)
    assert len(rows) == 2 * 2 * 2
    assert [(r["score"], r["method"], r["risk"]) for r in rows[:4]] == [
        ("good", "sgr", 0.05), ("good", "sgr", 0.1), ("good", "ltt", 0.05), ("good", "ltt", 0.1),
    ]  # fmt: skip
    pooled = {n: np.r_[val[n], test[n]] for n in val}
    pooled_c = np.r_[val_c, test_c]
    for row in rows:
        fit = (sgr if row["method"] == "sgr" else ltt)(val[row["score"]], val_c, row["risk"], 0.1)
        assert row["threshold"] == fit.threshold and row["val_coverage"] == fit.coverage
        taken = test[row["score"]] >= fit.threshold
        assert row["test_coverage"] == pytest.approx(taken.mean())
        risk = (~test_c[taken]).mean() if taken.any() else 0.0
        assert row["test_risk"] == pytest.approx(risk)
        assert row["test_held"] == (risk <= row["risk"])
        rep = repeated_splits(pooled[row["score"]], pooled_c, row["risk"], 0.1, row["method"],
                              splits=20, seed=3)  # fmt: skip
        assert row["split_held_fraction"] == rep.held_fraction
        assert row["split_coverage_mean"] == rep.coverage_mean and row["splits"] == 20
    by = {(r["score"], r["method"], r["risk"]): r for r in rows}
    # The better ranking covers more at the same guaranteed risk.
    assert by["good", "sgr", 0.1]["test_coverage"] > by["noisy", "sgr", 0.1]["test_coverage"]


def test_non_finite_scores_rank_least_confident(data):
    val, val_c, test, test_c = data
    s = test["good"].copy()
    s[:50] = np.nan
    rows = guarantee_table({"good": val["good"]}, val_c, {"good": s}, test_c, risks=(0.1,),
                           methods=("sgr",), splits=5)  # fmt: skip
    clean = guarantee_table({"good": val["good"]}, val_c, {"good": test["good"]}, test_c,
                            risks=(0.1,), methods=("sgr",), splits=5)  # fmt: skip
    taken = test["good"][50:] >= rows[0]["threshold"]
    assert rows[0]["test_coverage"] == pytest.approx(taken.sum() / len(s))
    assert rows[0]["threshold"] == clean[0]["threshold"]


def test_section_survives_json_and_renders(data):
    val, val_c, test, test_c = data
    section = guarantee_section(val, val_c, test, test_c, risks=(1e-4, 0.1), splits=5)
    back = json.loads(json.dumps(jsonable(section), allow_nan=False))
    assert back["pool"] == "validation+test" and back["val_size"] == 1500
    assert back["risks"] == [1e-4, 0.1] and back["methods"] == ["sgr", "ltt"]
    impossible = [r for r in back["rows"] if r["risk"] == 1e-4]
    # Nothing can be certified at 1e-4 with 1,500 examples: reject all, null threshold.
    assert all(r["threshold"] is None and r["test_coverage"] == 0.0 for r in impossible)
    lines = guarantee_lines(back)
    text = "\n".join(lines)
    assert lines[0] == "## Selective classification with a guaranteed risk"
    assert "r* = 0.0001:" in text and "r* = 0.1:" in text and "reject all" in text
    assert "probability 0.9 (δ = 0.1)" in text
    table = guarantee_markdown(back["rows"], scores=["noisy"])
    assert "`good`" not in table and table.count("| `noisy` |") == 4
    # The best coverage per r* is in bold.
    best = max(r["test_coverage"] for r in back["rows"] if r["risk"] == 0.1)
    assert f"**{best:.3f}**" in guarantee_markdown(back["rows"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v, vc, t, tc: (v, vc, {"good": t["good"]}, tc), "expected the same scores"),
        (lambda v, vc, t, tc: (v, vc[:-1], t, tc), "expected val scores of shape (1499,)"),
        (lambda v, vc, t, tc: (v, vc, t, tc[:, None]), "expected test_correct as a 1-D"),
    ],
)
def test_bad_inputs_are_one_line_errors(data, change, message):
    args = change(*data)
    with pytest.raises(ValueError) as info:
        guarantee_table(*args, splits=2)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"expected methods from \('sgr', 'ltt'\), got \['crc'\]"):
        guarantee_table(*data, methods=("crc",))
    with pytest.raises(ValueError, match="expected risk in"):
        guarantee_table(*data, risks=(1.5,), splits=2)
    assert math.isfinite(guarantee_table(*data, risks=(0.1,), splits=2)[0]["threshold"])
