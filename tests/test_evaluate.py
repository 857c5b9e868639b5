"""Unit tests of the evaluation harness pieces on tiny synthetic inputs: the metric
tables against the metrics computed one by one (and scikit-learn), the scores against
the score functions, the collected outputs against a direct forward pass, the fitted
statistics cache, the report's tables and the figures."""

import doctest
import json
import math
import os

import jax
import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from tac_jax.evaluate import harness
from tac_jax.evaluate.engine import collect as collect_lib
from tac_jax.evaluate.engine import fitted as fitted_lib
from tac_jax.evaluate.engine import scoring
from tac_jax.evaluate.ood import build
from tac_jax.evaluate.reporting import measure, report, tables
from tac_jax.methods.sngp import predictive_variance, sngp_score
from tac_jax.metrics import (
    Costs,
    accuracy_at_coverage,
    augrc,
    aurc,
    auroc,
    bootstrap_ci,
    bootstrap_ci_two_sample,
    brier,
    disagreement_policy,
    e_aurc,
    ece,
    gated_policy,
    misclassification_auroc,
    nll,
    ood_metrics,
    value_curve,
)
from tac_jax.scores import (
    fit_knn,
    fit_mahalanobis,
    fit_multilayer_mahalanobis,
    fit_vim,
    gradnorm,
    knn_score,
    mahalanobis_score,
    msp,
    multilayer_mahalanobis_score,
    neg_entropy,
    odin,
    react_energy,
    react_threshold,
    tac_scores,
    vim_score,
)
from tac_jax.scores import tac as tac_lib
from tac_jax.scores.boundary import fdbd_score, fit_boundary, nci_score
from tac_jax.scores.entry import HeldData
from tac_jax.scores.feature import (
    fit_background,
    fit_mahalanobis_pp,
    mahalanobis_pp_score,
    rmds_score,
)
from tac_jax.scores.logits import doctor, doctor_beta, gen, maxlogit_pnorm
from tac_jax.scores.purview import fit_purview_detector, purview_detector_score
from tac_jax.scores.shaping import ash_s_energy, scale_energy
from tac_jax.train.config import default_config
from tac_jax.train.setup import build_setup
from tac_jax.train.step import as_float_images

RNG = np.random.default_rng(0)


def tied(n, levels=7):
    """Scores with many ties, which the fast bootstrap must handle as the slow one."""
    return RNG.integers(0, levels, n).astype(np.float64) + 0.1 * RNG.normal(size=n).round()


# -- tables ---------------------------------------------------------------------------------


def test_bootstrap_auroc_ci_matches_the_two_sample_bootstrap():
    s_in, s_out = tied(60), tied(45) - 1.0
    _, low, high = bootstrap_ci_two_sample(auroc, s_in, s_out, num_resamples=40, seed=3)
    np.testing.assert_allclose(
        tables.bootstrap_auroc_ci(s_in, s_out, 40, seed=3), (low, high), rtol=0, atol=1e-12
    )


def test_bootstrap_misclassification_ci_matches_bootstrap_ci():
    s = tied(50)
    correct = RNG.random(50) < 0.8
    _, low, high = bootstrap_ci(misclassification_auroc, s, correct, num_resamples=40, seed=1)
    np.testing.assert_allclose(
        tables.bootstrap_misclassification_ci(s, correct, 40, seed=1), (low, high), atol=1e-12
    )
    assert all(math.isnan(v) for v in tables.bootstrap_misclassification_ci(s, s > -99, 5))


def test_misclassification_table_matches_the_metrics():
    scores = {"a": tied(80), "b": RNG.normal(size=80)}
    correct = RNG.random(80) < 0.7
    table = tables.misclassification_table(scores, correct, bootstrap=10, seed=0)
    for name, s in scores.items():
        row = table[name]
        assert row["auroc"] == pytest.approx(roc_auc_score(correct, s), abs=1e-12)
        assert row["aurc"] == aurc(s, correct)
        assert row["e_aurc"] == e_aurc(s, correct)
        assert row["augrc"] == augrc(s, correct)
        assert list(row)[2:5] == ["aurc", "e_aurc", "augrc"]
        assert row["acc_at_90"] == accuracy_at_coverage(s, correct, 0.9)
        assert row["acc_at_80"] == accuracy_at_coverage(s, correct, 0.8)
        low, high = row["auroc_ci"]
        assert low <= high
    # Every prediction right: the AUROC is undefined, not an error.
    assert math.isnan(tables.misclassification_table(scores, np.ones(80, bool))["a"]["auroc"])


def test_ood_table_matches_ood_metrics_and_sklearn():
    s_in = {"a": RNG.normal(1.0, size=70), "b": tied(70)}
    s_out = {"a": RNG.normal(size=30), "b": tied(30) - 2}
    table = tables.ood_table(s_in, s_out, bootstrap=0)
    for name in s_in:
        expected = ood_metrics(s_in[name], s_out[name])
        assert {k: table[name][k] for k in expected} == expected
        labels = np.r_[np.ones(70), np.zeros(30)]
        sk = roc_auc_score(labels, np.r_[s_in[name], s_out[name]])
        assert table[name]["auroc"] == pytest.approx(sk, abs=1e-12)
        assert table[name]["auroc_ci"] is None


def test_non_finite_scores_rank_lowest_and_are_counted():
    s = np.array([np.nan, 0.5, np.inf, -np.inf])
    assert tables.finite(s).tolist() == [-1e300, 0.5, 1e300, -1e300]
    assert tables.non_finite_counts({"x": s, "y": np.zeros(3)}) == {"x": 3}
    table = tables.ood_table({"x": np.array([1.0, 2.0])}, {"x": np.array([np.nan, 0.0])})
    assert table["x"]["auroc"] == 1.0


def test_mean_auroc_over_sets_and_kinds():
    sets = {
        "s1": {"kind": "far", "scores": {"a": {"auroc": 0.9}}},
        "s2": {"kind": "far", "scores": {"a": {"auroc": 0.7}}},
        "s3": {"kind": "synthetic", "scores": {"a": {"auroc": 0.5}}},
    }
    out = tables.mean_auroc(sets, ["a"], ("near", "far", "synthetic"))
    assert out == {"a": {"all": pytest.approx(0.7), "far": pytest.approx(0.8), "synthetic": 0.5}}
    assert tables.mean_auroc({}, ["a"], ("far",)) == {}


def test_value_table_and_references_match_the_value_metrics():
    val_s, test_s = {"a": RNG.normal(size=40)}, {"a": RNG.normal(size=50)}
    val_c, test_c = RNG.random(40) < 0.6, RNG.random(50) < 0.6
    grid = [1.0, 3.0, 10.0]
    costs = Costs(r=1.0, c_rej=0.2)
    table = tables.value_table(val_s, val_c, test_s, test_c, c_err_grid=grid, costs=costs)
    direct = value_curve(val_s["a"], val_c, test_s["a"], test_c, grid, costs)
    assert table["a"]["value"] == direct["value"].tolist()
    assert table["a"]["coverage"] == direct["coverage"].tolist()
    ref = tables.reference_values(test_c, c_err_grid=grid, costs=costs)
    acc = test_c.mean()
    np.testing.assert_allclose(ref["accept_all"], [acc - c * (1 - acc) for c in grid])
    np.testing.assert_allclose(ref["oracle"], [acc - 0.2 * (1 - acc)] * 3)
    assert ref["reject_all"] == [-0.2] * 3
    # No threshold can beat the oracle (a validation threshold may lose to reject-all).
    assert all(v <= o + 1e-12 for v, o in zip(direct["value"], ref["oracle"], strict=True))


def split(n, tac=True):
    labels = RNG.integers(0, 3, n)
    base = np.where(RNG.random(n) < 0.7, labels, RNG.integers(0, 3, n))
    tac_pred = np.where(RNG.random(n) < 0.6, labels, RNG.integers(0, 3, n)) if tac else None
    scores = {"msp": RNG.random(n)}
    if tac:
        scores.update(tac=RNG.normal(size=n), tac_tac_pred=RNG.normal(size=n))
    return tables.Split(scores, base, tac_pred, labels)


def test_policy_table_matches_gated_and_disagreement_policies():
    val, test = split(60), split(70)
    grid = [1.0, 4.0]
    out = tables.policy_table(val, test, c_err_grid=grid)
    assert list(out) == list(tables.POLICIES)
    for i, c in enumerate(grid):
        costs = Costs(c_err=c)
        gated = gated_policy(
            val.scores["tac"], val.base_pred, val.labels,
            test.scores["tac"], test.base_pred, test.labels, costs,
        )  # fmt: skip
        assert out["base_gated_by_tac"]["value"][i] == gated["value"]
        tac_pred = disagreement_policy(
            val.scores["tac_tac_pred"], val.base_pred, val.tac_pred, val.labels,
            test.scores["tac_tac_pred"], test.base_pred, test.tac_pred, test.labels, costs,
            on_disagreement="tac",
        )  # fmt: skip
        assert out["tac_where_disagree"]["value"][i] == tac_pred["value"]
        reject = disagreement_policy(
            val.scores["tac"], val.base_pred, val.tac_pred, val.labels,
            test.scores["tac"], test.base_pred, test.tac_pred, test.labels, costs,
            on_disagreement="reject",
        )  # fmt: skip
        assert out["reject_where_disagree"]["coverage"][i] == reject["coverage"]
    # A base-only run has only the MSP-gated reference policy.
    assert list(tables.policy_table(split(30, False), split(30, False), c_err_grid=grid)) == [
        "base_gated_by_msp"
    ]


def test_calibration_metrics_of_the_softmax():
    logits = RNG.normal(size=(64, 4)) * 3
    labels = RNG.integers(0, 4, 64)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    out = tables.calibration_metrics(logits, labels)
    assert out["ece"] == pytest.approx(ece(p, labels, 15))
    assert out["brier"] == pytest.approx(brier(p, labels))
    assert out["nll"] == pytest.approx(nll(p, labels))
    assert out["nll"] == pytest.approx(log_loss(labels, p, labels=range(4)))


def test_threshold_split_halves_the_test_set_deterministically():
    name, val, test = measure.threshold_split(11, False, 5)
    assert name == "test_half" and len(val) == 5 and len(test) == 6
    assert sorted(np.r_[val, test].tolist()) == list(range(11))
    again = measure.threshold_split(11, False, 5)
    assert (again[1] == val).all() and (again[2] == test).all()
    name, val, test = measure.threshold_split(11, True, 5)
    assert name == "validation" and val is None and test.tolist() == list(range(11))


def test_jsonable_turns_nan_and_infinity_into_null():
    out = measure.jsonable({"a": [np.float32(1.5), math.nan, -math.inf], "b": np.int64(2)})
    assert json.loads(json.dumps(out)) == {"a": [1.5, None, None], "b": 2}


# -- scores -------------------------------------------------------------------------------


def test_resolve_scores_per_kind_of_run():
    base = {"fit", "features", "head", "input"}
    tac_run = scoring.resolve_scores(None, base | {"tac", "validation"})
    assert set(scoring.TAC_NAMES) <= set(tac_run)
    # The layer-weighted score is fitted on validation data: no split, no score.
    no_val = scoring.resolve_scores(None, base | {"tac"})
    assert set(scoring.TAC_NAMES) - set(no_val) == {"tac_weighted", "tac_fused"}
    with pytest.raises(ValueError, match="no validation split"):
        scoring.resolve_scores(["tac_weighted"], base | {"tac"})
    base_only = scoring.resolve_scores(None, base)
    assert not set(base_only) & set(scoring.TAC_NAMES)
    assert "react" not in scoring.resolve_scores(None, base - {"head"})
    assert "odin" not in scoring.resolve_scores(None, base - {"input"})
    assert "mc_dropout_mi" in scoring.resolve_scores(None, base | {"dropout"})
    assert "mc_dropout_mi" not in base_only
    ensemble = scoring.resolve_scores(None, {"fit", "input", "ensemble"})
    assert {"ensemble_msp", "ensemble_mi", "purview", "msp"} <= set(ensemble)
    assert not {"knn", "mahalanobis", "gradnorm", "react"} & set(ensemble)
    assert scoring.resolve_scores(["knn", "msp"], base) == ("msp", "knn")
    with pytest.raises(ValueError, match="expected scores this run can compute.*without a TAC"):
        scoring.resolve_scores(["tac"], base)
    with pytest.raises(ValueError, match="not an SNGP run"):
        scoring.resolve_scores(["sngp"], base)
    with pytest.raises(ValueError, match="expected score names"):
        scoring.resolve_scores(["nope"], base)


def test_score_passes_name_the_extra_passes():
    assert scoring.score_passes(["msp", "odin", "purview_detector", "purview"]) == (
        "odin",
        "purview",
    )
    assert scoring.score_passes(["mc_dropout_msp", "mc_dropout_mi"]) == ("mc_dropout",)
    assert scoring.score_passes(["tac", "knn"]) == ()


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((2, 4, 4), np.nan, np.float32), "expected inputs without NaNs"),
        (np.full((2, 4, 4), 2.0, np.float32), r"expected floating-point inputs in \[0, 1\]"),
        (np.zeros((2, 4, 4), np.int64), "expected uint8 images or floating-point"),
        (np.zeros((0, 4, 4), np.uint8), "expected at least one input"),
    ],
)
def test_check_inputs_rejects_bad_arrays(images, message):
    with pytest.raises(ValueError, match=message):
        scoring.check_inputs(images)


def test_check_batchable_adds_the_channel_and_checks_the_shape():
    assert collect_lib.check_batchable(np.zeros((3, 4, 4), np.uint8), (4, 4, 1)).shape == (
        3, 4, 4, 1,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 4, 4, 1\)"):
        collect_lib.check_batchable(np.zeros((3, 5, 4), np.uint8), (4, 4, 1))


def fake_outputs(n, d=6, classes=3, m=8, layer_dims=(5, 6)):
    out = {
        "logits": RNG.normal(size=(n, classes)).astype(np.float32) * 2,
        "penultimate": np.abs(RNG.normal(size=(n, d))).astype(np.float32),
        "layers": {
            f"l{i}": RNG.normal(size=(n, w)).astype(np.float32) for i, w in enumerate(layer_dims)
        },
        "activation": RNG.normal(size=(n, m)).astype(np.float32),
        "odin": RNG.random(n).astype(np.float32),
        "purview": RNG.random((n, 3)).astype(np.float32) + 0.1,
        "confidence_perturbed": RNG.random(n).astype(np.float32),
        "mc_dropout": {
            f"mc_dropout_{k}": RNG.random(n).astype(np.float32) for k in ("msp", "entropy", "mi")
        },
        "extras": {
            "confidence": RNG.random(n).astype(np.float32),
            "rff": RNG.normal(size=(n, 4)).astype(np.float32),
            **{f"ensemble_{k}": RNG.random(n).astype(np.float32) for k in ("msp", "entropy", "mi")},
        },
    }
    return out


def fitted_for(train, classes=3):
    labels = RNG.integers(0, classes, len(train["logits"]))
    head = (
        RNG.normal(size=(train["penultimate"].shape[1], classes)).astype(np.float32),
        RNG.normal(size=classes).astype(np.float32),
    )
    return fitted_lib.fit_statistics(train, labels, classes, head, knn_k=5), labels, head


def gp_covariance(train):
    rff = train["extras"]["rff"]
    p = softmax_np(train["logits"]).max(1)
    precision = np.eye(rff.shape[1]) + (rff * (p * (1 - p))[:, None]).T @ rff
    return np.linalg.inv(precision)


def softmax_np(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_compute_scores_matches_the_score_functions():
    train, test = fake_outputs(40), fake_outputs(37)
    fitted, labels, head = fitted_for(train)
    codes = np.sign(RNG.normal(size=(3, 8))).astype(np.float32)
    # Two tapped layers of 4 entries; weights as if fitted on validation data.
    fitted.stats["tac_weighted"] = {"weights": np.array([0.5, 2.0], np.float32), "bias": -1.0}
    fitted.stats["tac_fused"] = {"moments": np.array([0.1, 0.5, -20.0, 4.0], np.float32)}
    fitted.stats["maxlogit_pnorm"] = {"p": np.float32(3.0), "msp_fallback": 0}
    out = scoring.compute_scores(test, tuple(scoring.SCORES), fitted=fitted, codes=codes,
                                 code_width=4, scale=3.0, batch_size=16)  # fmt: skip
    f, z = test["penultimate"], test["logits"]
    expected = dict(tac_scores(test["activation"], z, codes, 3.0))
    agree = np.clip(test["activation"], -1, 1) * codes[z.argmax(1)]
    expected["tac_weighted"] = agree[:, :4].mean(1) * 0.5 + agree[:, 4:].mean(1) * 2.0
    expected["tac_mahalanobis"] = mahalanobis_score(
        fit_mahalanobis(train["activation"], labels, 3), test["activation"]
    )
    # Standardised on held-out statistics [μ_w, σ_w, μ_m, σ_m], λ = 0.25 by default.
    fuse = fitted.stats["tac_fused"]["moments"]
    expected["tac_fused"] = (expected["tac_weighted"] - fuse[0]) / fuse[1] + 0.25 * (
        np.asarray(expected["tac_mahalanobis"]) - fuse[2]
    ) / fuse[3]
    expected.update(
        msp=msp(z),
        gen=gen(z),
        entropy=neg_entropy(z),
        doctor=doctor(z),
        doctor_beta=doctor_beta(z),
        maxlogit_pnorm=maxlogit_pnorm(z, 3.0),
        odin=test["odin"],
        mahalanobis=mahalanobis_score(fit_mahalanobis(train["penultimate"], labels, 3), f),
        mahalanobis_multi=multilayer_mahalanobis_score(
            fit_multilayer_mahalanobis(train["layers"], labels, ["l0", "l1"], 3), test["layers"]
        ),
        knn=knn_score(fit_knn(train["penultimate"]), f, k=5),
        react=react_energy(f, *head, react_threshold(train["penultimate"], 90.0)),
        vim=vim_score(fit_vim(train["penultimate"], *head, 3), f, z),
        rmds=rmds_score(
            fit_mahalanobis(train["penultimate"], labels, 3),
            fit_background(train["penultimate"]),
            f,
        ),
        mahalanobis_pp=mahalanobis_pp_score(fit_mahalanobis_pp(train["penultimate"], labels, 3), f),
        fdbd=fdbd_score(fit_boundary(train["penultimate"], *head), f),
        nci=nci_score(fit_boundary(train["penultimate"], *head), f),
        scale=scale_energy(f, *head),
        ash_s=ash_s_energy(f, *head),
        gradnorm=gradnorm(f, z),
        purview=test["purview"].sum(1),
        purview_detector=purview_detector_score(
            fit_purview_detector(train["purview"]), test["purview"]
        ),
        confidence_perturbed=test["confidence_perturbed"],
        sngp=sngp_score(z, predictive_variance(test["extras"]["rff"], gp_covariance(train))),
        **test["mc_dropout"],
        **{k: v for k, v in test["extras"].items() if k != "rff"},
    )
    predictions = {"prediction", "tac_prediction", "tac_soft_prediction"}
    assert set(expected) | {"energy", "max_logit"} == set(scoring.SCORES) | predictions
    assert set(out) == set(scoring.SCORES) | predictions
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], np.asarray(value), rtol=1e-5, atol=1e-5, err_msg=name)
        assert out[name].shape == (37,)
    np.testing.assert_array_equal(out["prediction"], z.argmax(1))


def test_compute_scores_needs_what_the_scores_read():
    outputs = fake_outputs(5)
    del outputs["odin"]
    with pytest.raises(ValueError, match="expected the 'odin' pass"):
        scoring.compute_scores(outputs, ["odin"])
    with pytest.raises(ValueError, match="expected fitted statistics"):
        scoring.compute_scores(outputs, ["knn"])
    with pytest.raises(ValueError, match="expected TAC activations and codes"):
        scoring.compute_scores(outputs, ["tac"])
    only = scoring.compute_scores(outputs, ["msp", "energy"])
    assert sorted(only) == ["energy", "msp", "prediction"]
    # TAC's fitted scores say what they lack: validation weights, the code width, a
    # sane tapping.
    fitted, _, _ = fitted_for(fake_outputs(30))
    codes = np.sign(RNG.normal(size=(3, 8))).astype(np.float32)
    tac = dict(fitted=fitted, codes=codes)
    with pytest.raises(ValueError, match="layer weights .* for \\['tac_weighted'\\]"):
        scoring.compute_scores(outputs, ["tac_weighted"], code_width=4, **tac)
    fitted.stats["tac_fused"] = {"moments": np.ones(4, np.float32)}
    with pytest.raises(ValueError, match="layer weights .* for \\['tac_fused'\\]"):
        scoring.compute_scores(outputs, ["tac_fused"], code_width=4, **tac)
    fitted.stats["tac_weighted"] = {"weights": np.ones(2, np.float32), "bias": 0.0}
    with pytest.raises(ValueError, match="layer weights"):
        scoring.compute_scores(outputs, ["tac_fused"], **tac)
    with pytest.raises(ValueError, match="expected deepest >= 0"):
        scoring.compute_scores(outputs, ["tac"], code_width=4, deepest=-1, **tac)
    with pytest.raises(ValueError, match="code width to keep the deepest"):
        scoring.compute_scores(outputs, ["tac"], deepest=1, **tac)
    del fitted.stats["tac_fused"]
    with pytest.raises(ValueError, match="tac_fused's validation statistics"):
        scoring.compute_scores(outputs, ["tac_fused"], code_width=4, **tac)


def test_fitted_statistics_round_trip_and_cache(tmp_path):
    train, test = fake_outputs(30), fake_outputs(9)
    fitted, _, _ = fitted_for(train)
    path = tmp_path / "report" / "fitted.npz"
    calls = []

    def fit():
        calls.append(1)
        return fitted

    fitted.stats["tac_weighted"] = {"weights": np.array([0.25, 1.5], np.float32), "bias": -0.5}
    fitted.stats["tac_fused"] = {"moments": np.array([0.1, 0.5, -20.0, 4.0], np.float32)}
    fitted.stats["maxlogit_pnorm"] = {"p": np.float32(2.0), "msp_fallback": 0}
    meta = fitted_lib.fingerprint(7, 30, 100, 0, ["l0", "l1"], validation_examples=12)
    first = fitted_lib.fit_or_load(path, meta, fit)
    again = fitted_lib.fit_or_load(path, dict(meta), fit)
    assert len(calls) == 1 and again.meta == first.meta
    np.testing.assert_array_equal(again.stats["tac_weighted"]["weights"], [0.25, 1.5])
    moments = again.stats["tac_fused"]["moments"]
    np.testing.assert_array_equal(moments, np.float32([0.1, 0.5, -20.0, 4.0]))
    assert again.stats["tac_weighted"]["bias"] == -0.5
    # MaxLogit-pNorm's fallback stays a Python int (a compile-time constant).
    assert again.stats["maxlogit_pnorm"] == {"p": 2.0, "msp_fallback": 0}
    assert type(again.stats["maxlogit_pnorm"]["msp_fallback"]) is int
    assert again.knn_k == fitted.knn_k == 5
    names = tuple(n for n in scoring.SCORES if n not in scoring.TAC_NAMES)
    a = scoring.compute_scores(test, names, fitted=fitted)
    b = scoring.compute_scores(test, names, fitted=again)
    for name in names:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)
    # Another checkpoint step, or another validation split, invalidates the cache.
    fitted_lib.fit_or_load(path, {**meta, "step": 8}, fit)
    assert len(calls) == 2
    fitted_lib.fit_or_load(path, {**meta, "step": 8, "validation_examples": 13}, fit)
    assert len(calls) == 3
    assert fitted_lib.subset_indices(10, 4, 0).tolist() == sorted(
        fitted_lib.subset_indices(10, 4, 0).tolist()
    )


# -- collection on a tiny model ------------------------------------------------------------


def tiny_run(mode):
    config = default_config()
    config.mode = mode
    config.model.features = (8, 8)
    config.data.num_classes = 3
    setup = build_setup(config, (4, 4, 1), np.uint8)
    state = setup.init(jax.random.key(0))
    return setup, state


@pytest.mark.parametrize("mode", ["base", "scratch"])
def test_collect_matches_a_direct_forward_pass(mode):
    setup, state = tiny_run(mode)
    forward = collect_lib.make_forward(setup, state)
    images = RNG.integers(0, 256, (11, 4, 4), dtype=np.uint8)
    out = collect_lib.collect(forward, images, batch_size=4, odin=True)
    x = as_float_images(images[..., None])
    base = setup.tac.base if setup.tac else setup.base
    base_vars = collect_lib.base_variables(setup, state)
    logits = base.apply(base_vars, x, train=False)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-6)
    assert out["penultimate"].shape == (11, 8)
    assert list(out["layers"]) == ["dense1", "dense2"]
    np.testing.assert_allclose(out["layers"]["dense2"], out["penultimate"])
    expected_odin = odin(lambda v: base.apply(base_vars, v, train=False), x, 1000.0, 0.0014)
    np.testing.assert_allclose(out["odin"], expected_odin, rtol=1e-5)
    if mode == "base":
        assert "activation" not in out
    else:
        tac_out, _ = setup.tac.apply(state.variables, x)
        np.testing.assert_allclose(out["activation"], tac_out.activation, rtol=1e-5, atol=1e-6)
    # Float inputs in [0, 1] give the same outputs as their uint8 originals.
    again = collect_lib.collect(forward, np.asarray(x), batch_size=4)
    np.testing.assert_allclose(again["logits"], out["logits"], rtol=1e-5, atol=1e-6)
    kernel, bias = collect_lib.head_params(setup, state)
    assert kernel.shape == (8, 3) and bias.shape == (3,)


# -- report and figures ---------------------------------------------------------------------


def test_markdown_table_bolds_the_best_of_each_column_ties_included():
    text = report.markdown_table(
        ["s", "auroc", "fpr"],
        [["a", 0.9, 0.2], ["b", (0.9, " [0.8, 1.0]"), 0.1], ["c", None, "n/a"]],
        [None, "high", "low"],
        digits=2,
    )
    lines = text.splitlines()
    assert lines[2] == "| a | **0.90** | 0.20 |"
    assert lines[3] == "| b | **0.90** [0.8, 1.0] | **0.10** |"
    assert lines[4] == "| c | – | n/a |"


def synthetic_metrics(tmp_path, with_tac=True):
    """A metrics dict built from the table functions on random scores."""
    names = ["tac", "msp"] if with_tac else ["msp"]
    n = 60
    correct = RNG.random(n) < 0.7
    test = {k: RNG.normal(size=n) for k in names}
    ood_scores = {k: RNG.normal(-1, size=30) for k in names}
    ood = {"noise": {"kind": "synthetic", "size": 30, "scores": tables.ood_table(test, ood_scores)}}
    grid = [1.0, 2.0]
    value = {
        "c_err": grid,
        "scores": tables.value_table(test, correct, test, correct, c_err_grid=grid),
        "policies": {},
        "reference": tables.reference_values(correct, c_err_grid=grid),
    }
    metrics = {
        "run": {
            "workdir": str(tmp_path),
            "step": 3,
            "mode": "addon",
            "model": {"name": "mlp"},
            "input_shape": [4, 4, 1],
            "num_classes": 3,
            "steps": 3,
            "batch_size": 2,
            "optimizer": "sgd",
            "learning_rate": 0.1,
            "feature_layers": ["dense1"],
            "data": {"source": "arrays", "name": "", "classes": [], "train_size": 9},
        },
        "evaluation": {
            "command": "tac-jax evaluate --workdir X",
            "suite": "custom",
            "num_ood": 30,
            "bootstrap": 0,
            "seed": 0,
            "fit_examples": 9,
            "max_fit": 100,
            "threshold_split": "test_half",
            "val_size": 30,
            "value_test_size": 30,
            "costs": {"r": 1.0, "c_err": grid, "c_rej": 0.0, "c_def": 0.0},
        },
        "scores": {k: {"family": scoring.SCORES[k].family, "formula": "f"} for k in names},
        "accuracy": {"base": 0.7},
        "calibration": {"ece": 0.1, "brier": 0.2, "nll": 0.3},
        "misclassification": tables.misclassification_table(test, correct),
        "ood": {"sets": ood, "mean_auroc": tables.mean_auroc(ood, names, ("synthetic",))},
        "value": value,
        "non_finite": {},
        "figures": [],
    }
    metrics["summary"] = measure.summary_rows(metrics, names)
    return measure.jsonable(metrics), test, correct, ood_scores


def test_render_report_has_a_row_per_score_and_every_section(tmp_path):
    metrics, *_ = synthetic_metrics(tmp_path)
    text = report.render_report(metrics)
    for section in ("## Summary", "## Misclassification", "## OOD detection", "## Reject value",
                    "## Scores", "tac-jax evaluate --workdir X", "halved"):  # fmt: skip
        assert section in text
    summary = text.split("## Summary")[1].split("##")[0]
    assert summary.count("| `tac` |") == 1 and summary.count("| `msp` |") == 1
    assert "**" in summary
    best = max(metrics["summary"].values(), key=lambda r: r["misclassification_auroc"])
    assert f"**{best['misclassification_auroc']:.4f}**" in summary
    # AUGRC beside AURC and E-AURC, in the summary and the misclassification table, and
    # in every summary row (what summary.csv and the seeds' aggregate read).
    assert "| AURC ↓ | E-AURC ↓ | AUGRC ↓ |" in summary
    misclassification = text.split("## Misclassification")[1].split("##")[0]
    assert "| AURC ↓ | E-AURC ↓ | AUGRC ↓ |" in misclassification
    best = min(metrics["summary"].values(), key=lambda r: r["augrc"])
    assert f"**{best['augrc']:.4f}**" in summary
    for name, row in metrics["summary"].items():
        assert row["augrc"] == metrics["misclassification"][name]["augrc"]
        assert list(row)[2:5] == ["aurc", "e_aurc", "augrc"]
    # The data files and the reliability diagram are named when the run wrote them.
    assert "scores.npz" not in text
    metrics = {**metrics, "files": ["summary.csv", "scores.npz"], "figures": ["reliability.png"]}
    text = report.render_report(metrics)
    assert "- `summary.csv`: " in text and "- `scores.npz`: every score" in text
    assert "![reliability.png](reliability.png)" in text and "confidence bin" in text
    report.write_report(tmp_path, metrics)
    assert (tmp_path / "report.md").read_text() == text


def test_write_plots_writes_every_figure(tmp_path):
    metrics, test, correct, ood_scores = synthetic_metrics(tmp_path)
    from tac_jax.evaluate.reporting import plots

    codes = np.sign(RNG.normal(size=(3, 8)))
    data = plots.PlotData(
        test_scores=test,
        correct=correct,
        ood_scores={"noise": ood_scores},
        kinds={"noise": "synthetic"},
        value=metrics["value"],
        activation=RNG.normal(size=(60, 8)),
        prediction=RNG.integers(0, 3, 60),
        labels=RNG.integers(0, 3, 60),
        codes=codes,
        ood_activation={"noise": RNG.normal(size=(2, 8))},
        code_width=4,
        logits=RNG.normal(size=(60, 3)),
    )
    names = plots.write_plots(tmp_path, data)
    assert names == [
        "roc_synthetic.png", "risk_coverage.png", "value.png", "histograms.png",
        "activation_profiles.png", "reliability.png",
    ]  # fmt: skip
    assert sorted(os.listdir(tmp_path)) == sorted(names)  # no temporary files left
    for name in names:
        with open(os.path.join(tmp_path, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_held_out_classes_become_a_near_ood_set(tmp_path):
    labels = np.arange(40) % 4
    # Every pixel of an image holds 10 × its class, so the class can be read back.
    images = np.broadcast_to((labels * 10).astype(np.uint8)[:, None, None], (40, 4, 4))
    for split in ("train", "test"):
        np.savez(tmp_path / f"{split}.npz", x=images, y=labels)
    data = default_config().data
    data.source = "arrays"
    data.train_images = str(tmp_path / "train.npz")
    data.test_images = str(tmp_path / "test.npz")
    data.classes = (0, 2)
    data.num_classes = 2
    held = build.held_out_set(data, 15, 0)
    assert held.name == "held_out" and held.kind == "near" and len(held) == 15
    assert held.images.dtype == np.float32 and held.images.shape[1:] == (4, 4, 1)
    classes = np.round(held.images[:, 0, 0, 0] * 255 / 10).astype(int)
    assert set(classes.tolist()) == {1, 3}
    data.classes = ()
    assert build.held_out_set(data, 15, 0) is None


def test_build_suite_by_name_or_sets():
    test = {"image": RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8), "label": np.arange(30) % 3}
    data = default_config().data
    kwargs = dict(num_ood=10, seed=0, severities=(1,), corruptions=["contrast"])
    assert build.build_suite("none", test, data, **kwargs) == []
    sets = build.build_suite("fmnist", test, data, **kwargs)
    assert [s.name for s in sets][-2:] == ["inverted", "contrast_s1"]
    assert all(len(s) == 10 for s in sets)
    assert [s.kind for s in sets[:3]] == ["far"] * 3
    assert build.build_suite(sets[:2], test, data, **kwargs) == sets[:2]
    with pytest.raises(ValueError, match="expected a suite in"):
        build.build_suite("cifar", test, data, **kwargs)


def test_build_suite_reads_a_tfds_suite_for_its_own_dataset_only(monkeypatch):
    from tac_jax.evaluate.ood.suites import OODSet

    test = {"image": RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8), "label": np.arange(30) % 3}
    calls = []

    def fake_load(name, split, data_dir=None):
        calls.append((name, split, data_dir))
        return np.full((4, 32, 32, 3), 255, np.uint8), np.zeros(4, int)

    data = default_config().data
    data.source, data.name, data.data_dir = "tfds", "mnist", "/data/tfds"
    kwargs = dict(num_ood=5, seed=0, severities=(1,), corruptions=None)
    mine = OODSet("mine", np.zeros((2, 28, 28, 1), np.float32), "far")
    sets = build.build_suite("mnist", test, data, load=fake_load, extra=[mine], **kwargs)
    assert [(s.name, s.kind, s.images.shape) for s in sets] == [
        ("fashion_mnist", "far", (4, 28, 28, 1)),
        ("kmnist", "far", (4, 28, 28, 1)),
        ("mine", "far", (2, 28, 28, 1)),
    ]
    assert calls == [("fashion_mnist", "test[:5]", None), ("kmnist", "test[:5]", None)]
    # The default loader reads a TFDS run's data_dir.
    monkeypatch.setattr(build, "load_tfds_images", fake_load)
    calls.clear()
    build.build_suite("mnist", test, data, **kwargs)
    assert {c[2] for c in calls} == {"/data/tfds"}
    with pytest.raises(ValueError, match="distinct from the suite's, got 'kmnist' in both"):
        build.build_suite("mnist", test, data, load=fake_load, extra=[
            OODSet("kmnist", mine.images, "far")], **kwargs)  # fmt: skip
    assert build.build_suite("none", test, data, extra=[mine], **kwargs) == [mine]
    # A Fashion-MNIST run from local files may take the fashion_mnist suite, no other.
    data = default_config().data
    assert len(build.build_suite("fashion_mnist", test, data, load=fake_load, **kwargs)) == 2
    for suite in ("mnist", "cifar10"):
        message = f"expected a run trained on '{suite}' for suite '{suite}', got config.data.source"
        with pytest.raises(ValueError, match=message):
            build.build_suite(suite, test, data, load=fake_load, **kwargs)
    data.source, data.name = "tfds", "cifar100"
    with pytest.raises(ValueError, match="got config.data.name='cifar100'"):
        build.build_suite("cifar10", test, data, load=fake_load, **kwargs)


@pytest.mark.parametrize("module", [tables, report, fitted_lib, harness, scoring, measure, build])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0


def test_fuse_statistics_standardise_held_out_scores():
    held = {"tac_weighted": np.array([1.0, 3.0, np.inf]), "tac_mahalanobis": np.full(3, -5.0)}
    np.testing.assert_allclose(tac_lib.fuse_statistics(held), [2.0, 1.0, -5.0, 1e-6])
    with pytest.raises(ValueError, match="at least 2 finite held-out tac_weighted"):
        tac_lib.fuse_statistics(
            {"tac_weighted": np.array([1.0]), "tac_mahalanobis": held["tac_mahalanobis"]}
        )


def test_scores_whose_validation_fit_failed_are_left_out_or_refused():
    fitted, _, _ = fitted_for(fake_outputs(30))
    names = ("tac", "tac_weighted", "tac_fused", "msp")
    # A validation split without errors: no layer weights can be fitted...
    held = fake_outputs(12)
    codes = np.sign(RNG.normal(size=(3, 8))).astype(np.float32)
    labels = held["logits"].argmax(1)
    data = HeldData(held, labels, codes, 4, lambda wanted: {})
    fitted_lib.fit_held_out(fitted, names, data)
    assert "tac_weighted" in fitted.failed and "tac_weighted" not in fitted.stats
    # ...so they are dropped from the default set...
    assert scoring.drop_unfitted(names, None, fitted) == ("tac", "msp")
    # ...and refused, in one line, when asked for by name.
    with pytest.raises(ValueError, match=r"layer weights .*for \['tac_fused'\].*both errors"):
        scoring.drop_unfitted(("tac_fused",), ["tac_fused"], fitted)
    fitted.stats["tac_weighted"] = {"weights": np.ones(2, np.float32), "bias": 0.0}
    fitted.stats["tac_fused"] = {"moments": np.ones(4, np.float32)}
    assert scoring.drop_unfitted(names, None, fitted) == names
    assert scoring.drop_unfitted(names, None, None) == names
