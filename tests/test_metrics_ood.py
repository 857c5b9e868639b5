"""OOD metrics cross-checked against scikit-learn, ties included."""

import doctest

import numpy as np
import pytest
from sklearn import metrics as skm

from tac_jax.metrics import aupr_in, aupr_out, auroc, fpr_at_tpr, ood, ood_metrics, roc_curve

CASES = [(seed, decimals) for seed in range(4) for decimals in (None, 1, 0)]


def _scores(seed, decimals):
    """In/out scores of different sizes; rounding forces ties within and across sets."""
    rng = np.random.default_rng(seed)
    s_in = rng.normal(1.0, 1.0, size=200 + 17 * seed)
    s_out = rng.normal(0.0, 1.5, size=150 + 31 * seed)
    if decimals is not None:
        s_in, s_out = np.round(s_in, decimals), np.round(s_out, decimals)
    return s_in, s_out


def _sk_inputs(s_in, s_out):
    return np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out]


@pytest.mark.parametrize("seed,decimals", CASES)
def test_auroc_and_aupr_match_sklearn(seed, decimals):
    s_in, s_out = _scores(seed, decimals)
    y, s = _sk_inputs(s_in, s_out)
    np.testing.assert_allclose(auroc(s_in, s_out), skm.roc_auc_score(y, s), rtol=1e-12)
    np.testing.assert_allclose(aupr_in(s_in, s_out), skm.average_precision_score(y, s), rtol=1e-12)
    np.testing.assert_allclose(
        aupr_out(s_in, s_out), skm.average_precision_score(1 - y, -s), rtol=1e-12
    )


@pytest.mark.parametrize("seed,decimals", CASES)
def test_ood_metrics_agrees_with_single_metrics(seed, decimals):
    s_in, s_out = _scores(seed, decimals)
    assert ood_metrics(s_in, s_out) == {
        "auroc": pytest.approx(auroc(s_in, s_out), rel=1e-12),
        "aupr_in": pytest.approx(aupr_in(s_in, s_out), rel=1e-12),
        "aupr_out": pytest.approx(aupr_out(s_in, s_out), rel=1e-12),
        "fpr_at_95_tpr": fpr_at_tpr(s_in, s_out, 0.95),
    }


@pytest.mark.parametrize("seed,decimals", CASES)
@pytest.mark.parametrize("target", [0.8, 0.95, 1.0])
def test_fpr_at_tpr_matches_sklearn_recipe(seed, decimals, target):
    s_in, s_out = _scores(seed, decimals)
    fpr, tpr, _ = skm.roc_curve(*_sk_inputs(s_in, s_out), drop_intermediate=False)
    assert fpr_at_tpr(s_in, s_out, target) == fpr[np.searchsorted(tpr, target)]


def test_fpr_at_tpr_hits_the_rate_exactly():
    # 19 of 20 in-distribution scores clear 1.5: exactly 95 %, so t = 1.5 is kept.
    s_in = np.r_[np.arange(2.0, 21.0), 0.0]
    s_out = np.array([1.5, 1.0, 0.5, 25.0])
    assert fpr_at_tpr(s_in, s_out) == 0.25
    fpr, tpr, _ = skm.roc_curve(*_sk_inputs(s_in, s_out))
    assert fpr[np.searchsorted(tpr, 0.95)] == 0.25


@pytest.mark.parametrize("seed,decimals", CASES)
@pytest.mark.parametrize("drop", [True, False])
def test_roc_curve_matches_sklearn(seed, decimals, drop):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=300)
    if decimals is not None:
        s = np.round(s, decimals)
    y = rng.random(300) < 1 / (1 + np.exp(-s))
    ours = roc_curve(s, y, drop_intermediate=drop)
    theirs = skm.roc_curve(y, s, drop_intermediate=drop)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_fpr_at_tpr_ignores_pruning_of_collinear_points():
    # Each score is shared by one in and one OOD example: the ROC is the diagonal. The
    # first point at 95 % TPR is (0.95, 0.95); sklearn's default pruning keeps only the
    # ends of the diagonal, and its recipe then reads 1.0.
    s = np.arange(20.0)
    assert fpr_at_tpr(s, s) == 0.95
    fpr, tpr, _ = skm.roc_curve(*_sk_inputs(s, s))
    assert fpr[np.searchsorted(tpr, 0.95)] == 1.0


def test_docstring_examples():
    assert doctest.testmod(ood).failed == 0


def test_hand_case():
    s_in, s_out = [3.0, 2.0, 1.0], [1.0, 0.0]
    # Pairs won: 3>1, 3>0, 2>1, 2>0, and the tie 1=1 counts one half.
    assert auroc(s_in, s_out) == pytest.approx(5.5 / 6)
    out = ood_metrics(s_in, s_out)
    assert set(out) == {"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"}
    # 95 % of in-distribution needs all three, t = 1.0, which also accepts one of two OOD.
    assert out["fpr_at_95_tpr"] == 0.5
    assert auroc([1.0, 2.0], [5.0, 6.0]) == 0.0


@pytest.mark.parametrize(
    "s_in,s_out",
    [
        ([[1.0, 2.0]], [0.0]),
        ([1.0, np.nan], [0.0]),
        ([1.0, np.inf], [0.0]),
        ([], [0.0]),
        ([1.0], []),
        (["a"], [0.0]),
    ],
)
def test_bad_scores_raise(s_in, s_out):
    with pytest.raises(ValueError, match="expected"):
        auroc(s_in, s_out)


def test_bad_labels_and_rates_raise():
    with pytest.raises(ValueError, match="expected"):
        roc_curve([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="expected"):
        roc_curve([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="expected"):
        roc_curve([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="expected"):
        fpr_at_tpr([1.0], [0.0], tpr=0.0)
