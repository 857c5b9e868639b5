"""fDBD, NCI (`tac_jax.scores.boundary`), SCALE, ASH-S (`tac_jax.scores.shaping`), RMDS
and Mahalanobis++ (`tac_jax.scores.feature`): by hand, against plain numpy written from
the papers' definitions, oriented, registered, and through the scoring engine."""

import doctest
import math

import numpy as np
import pytest

from tac_jax.evaluate.engine import fitted as fitted_lib
from tac_jax.evaluate.engine import scoring
from tac_jax.scores import boundary, feature, shaping
from tac_jax.scores.boundary import fdbd_score, fit_boundary, nci_score
from tac_jax.scores.feature import (
    MahalanobisStats,
    fit_background,
    fit_mahalanobis,
    fit_mahalanobis_pp,
    mahalanobis_pp_score,
    rmds_score,
)
from tac_jax.scores.shaping import ash_s_energy, kept_count, scale_energy

NEWEST = ("rmds", "mahalanobis_pp", "fdbd", "nci", "scale", "ash_s")


def _network(n, seed, classes=3, units=4):
    """Post-ReLU features of a toy network: each class fires its own block of ``units``
    units near 3, the rest weakly; the head sums each class's block."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    f = np.abs(rng.normal(0.0, 0.3, (n, classes * units)))
    for k in range(classes):
        block = slice(k * units, (k + 1) * units)
        f[y == k, block] = np.maximum(rng.normal(3.0, 0.5, ((y == k).sum(), units)), 0.0)
    kernel = np.kron(np.eye(classes), np.ones((units, 1)))  # (classes·units, classes)
    bias = np.array([0.1, -0.2, 0.05])[:classes]
    return f.astype(np.float32), y, kernel.astype(np.float32), bias.astype(np.float32)


# One training set for every fit, so each jitted update compiles once.
TRAIN = _network(200, seed=5)


def _logsumexp(z):
    m = z.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis=-1, keepdims=True)))[:, 0]


# -- plain numpy references ----------------------------------------------------------------


def numpy_fdbd(f, w, b, mu):
    out = []
    for x in f.astype(np.float64):
        z = x @ w + b
        p = z.argmax()
        d = [abs(z[p] - z[j]) / np.linalg.norm(w[:, p] - w[:, j]) for j in range(len(z)) if j != p]
        out.append(np.mean(d) / np.linalg.norm(x - mu))
    return np.array(out)


def numpy_nci(f, w, b, mu, alpha):
    out = []
    for x in f.astype(np.float64):
        p = (x @ w + b).argmax()
        out.append(w[:, p] @ (x - mu) / np.linalg.norm(x - mu) + alpha * np.abs(x).sum())
    return np.array(out)


def numpy_shaped_energy(a, w, b, percentile, prune):
    # The papers' recipe: keep the k = n − round(n·p/100) largest, sharpen by exp(s1/s2).
    out = []
    for x in a.astype(np.float64):
        k = len(x) - int(np.round(len(x) * percentile / 100.0))
        top = np.argsort(-x)[:k]
        s1, s2 = x.sum(), x[top].sum()
        kept = np.zeros_like(x)
        kept[top] = x[top]
        shaped = (kept if prune else x) * np.exp(s1 / s2)
        out.append(_logsumexp((shaped @ w + b)[None])[0])
    return np.array(out)


def numpy_gaussians(f, y, classes):
    f = f.astype(np.float64)
    means = np.stack([f[y == k].mean(0) for k in range(classes)])
    within = np.linalg.inv((f - means[y]).T @ (f - means[y]) / len(f))
    centre = f.mean(0)
    overall = np.linalg.inv((f - centre).T @ (f - centre) / len(f))
    return means, within, centre, overall


def squared_mahalanobis(x, mean, precision):
    d = x - mean
    return np.einsum("...d,de,...e->...", d, precision, d)


# -- by hand ---------------------------------------------------------------------------


def test_fdbd_and_nci_by_hand():
    # w_0 = (1, 0), w_1 = (0, 1), w_2 = 0; f = (4, 1), μ = (1, 1): z = (4, 1, 0), ŷ = 0.
    kernel = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    stats = fit_boundary(np.array([[0.0, 0.0], [2.0, 2.0]]), kernel, np.zeros(3))
    np.testing.assert_allclose(stats.mean, [1.0, 1.0])
    f = np.array([[4.0, 1.0]])
    # Boundary 0/1 at 3/√2, boundary 0/2 at 4/1; ‖f − μ‖ = 3.
    expected = (3 / math.sqrt(2) + 4) / 2 / 3
    np.testing.assert_allclose(fdbd_score(stats, f), [expected], rtol=1e-6)
    # w_0ᵀ(f − μ) / ‖f − μ‖ = 3 / 3, plus α‖f‖₁ = α·5.
    np.testing.assert_allclose(nci_score(stats, f), [1.0 + 5e-4], rtol=1e-6)
    np.testing.assert_allclose(nci_score(stats, f, alpha=0.5), [3.5], rtol=1e-6)


def test_scale_and_ash_s_by_hand():
    a = np.array([[4.0, 0.0, 1.0, 3.0]])  # p = 50: k = 2 keeps 4 and 3; r = 8 / 7.
    w, b = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.zeros(2)
    r = math.exp(8 / 7)
    # SCALE: logits e^r·(4 + 3, 1); ASH-S prunes the 1: e^r·(7, 0).
    np.testing.assert_allclose(scale_energy(a, w, b, 50.0), [np.logaddexp(7 * r, r)], rtol=1e-5)
    np.testing.assert_allclose(ash_s_energy(a, w, b, 50.0), [np.logaddexp(7 * r, 0.0)], rtol=1e-5)
    assert kept_count(2048, 90.0) == 205 and kept_count(512, 85.0) == 77
    assert kept_count(10, 100.0) == 1 and kept_count(10, 0.0) == 10


def test_rmds_and_mahalanobis_pp_by_hand():
    classes = MahalanobisStats(np.array([[0.0], [4.0]]), np.array([[0.25]]), np.ones(2))
    background = MahalanobisStats(np.array([[2.0]]), np.array([[0.125]]), np.ones(1))
    # f = 1: MD_0 = 1/8, min_k MD_k = 1/4; f = 6: MD_0 = 2, min_k MD_k = 1.
    f = np.array([[1.0], [6.0]])
    np.testing.assert_allclose(rmds_score(classes, background, f), [-0.125, 1.0])
    stats = MahalanobisStats(np.zeros((1, 2)), np.diag([4.0, 1.0]), np.ones(1))
    # (5, 0) and (0, 2) normalise to the unit axes: −4 and −1 (not −100 and −4).
    f = np.array([[5.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(mahalanobis_pp_score(stats, f), [-4.0, -1.0])


# -- against numpy ---------------------------------------------------------------------------


def test_boundary_scores_match_numpy():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 6)).astype(np.float32) + 1.0
    w, b = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    queries = (rng.normal(size=(25, 6)) * 2).astype(np.float32)
    stats = fit_boundary(f, w, b)
    mu = f.astype(np.float64).mean(0)
    np.testing.assert_allclose(stats.mean, mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(fdbd_score(stats, queries), numpy_fdbd(queries, w, b, mu), rtol=1e-4)
    for alpha in (boundary.NCI_ALPHA, 0.3):
        np.testing.assert_allclose(
            nci_score(stats, queries, alpha=alpha),
            numpy_nci(queries, w, b, mu, alpha),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize("percentile", [shaping.SCALE_PERCENTILE, shaping.ASH_PERCENTILE, 65.0])
def test_shaping_matches_the_papers_recipe(percentile):
    rng = np.random.default_rng(1)
    a = np.maximum(rng.normal(size=(20, 40)), 0.0).astype(np.float32)  # post-ReLU
    w, b = (rng.normal(size=(40, 5)) * 0.1).astype(np.float32), rng.normal(size=5)
    b = b.astype(np.float32)
    for fn, prune in ((scale_energy, False), (ash_s_energy, True)):
        np.testing.assert_allclose(
            fn(a, w, b, percentile), numpy_shaped_energy(a, w, b, percentile, prune), rtol=1e-4
        )


def test_rmds_and_mahalanobis_pp_match_numpy():
    f, y, _, _ = TRAIN
    queries = _network(15, seed=4)[0] * np.linspace(0.5, 2.0, 15, dtype=np.float32)[:, None]
    means, within, centre, overall = numpy_gaussians(f, y, 3)
    q = queries.astype(np.float64)
    md = squared_mahalanobis(q[:, None], means, within)
    expected = squared_mahalanobis(q, centre, overall) - md.min(1)
    stats, background = fit_mahalanobis(f, y, 3), fit_background(f)
    np.testing.assert_allclose(background.means[0], centre, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rmds_score(stats, background, queries), expected, rtol=2e-3)

    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    means, within, _, _ = numpy_gaussians(unit, y, 3)
    q_unit = q / np.linalg.norm(q, axis=1, keepdims=True)
    expected = -squared_mahalanobis(q_unit[:, None], means, within).min(1)
    stats = fit_mahalanobis_pp(f, y, 3, batch_size=64)  # 200 = 3·64 + 8: the last padded.
    np.testing.assert_allclose(stats.means, means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mahalanobis_pp_score(stats, queries), expected, rtol=2e-3)
    # Only the direction counts.
    np.testing.assert_allclose(
        mahalanobis_pp_score(stats, queries * 7.0), mahalanobis_pp_score(stats, queries), rtol=1e-4
    )


# -- orientation and edge cases --------------------------------------------------------------


def _all_six(train, y, kernel, bias, queries):
    stats, pp = fit_mahalanobis(train, y, 3), fit_mahalanobis_pp(train, y, 3)
    geometry = fit_boundary(train, kernel, bias)
    return {
        "rmds": rmds_score(stats, fit_background(train), queries),
        "mahalanobis_pp": mahalanobis_pp_score(pp, queries),
        "fdbd": fdbd_score(geometry, queries),
        "nci": nci_score(geometry, queries),
        "scale": scale_energy(queries, kernel, bias),
        "ash_s": ash_s_energy(queries, kernel, bias),
    }


def test_in_distribution_scores_higher_than_far_points():
    train, y, kernel, bias = TRAIN
    inside = _network(20, seed=6)[0]
    # Far from every class pattern: one weak unit firing alone.
    rng = np.random.default_rng(7)
    outside = np.zeros_like(inside)
    outside[np.arange(20), rng.integers(0, 12, 20)] = rng.uniform(0.2, 1.0, 20)
    scores = _all_six(train, y, kernel, bias, np.concatenate([inside, outside]))
    assert set(scores) == set(NEWEST)
    for name, s in scores.items():
        s = np.asarray(s)
        assert s[:20].min() > s[20:].max(), name


def test_shaping_is_finite_on_negative_and_zero_rows():
    w, b = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]]), np.array([0.3, -0.1])
    rows = np.array([[0.0, 0.0, 0.0], [-1.0, -2.0, -0.5], [-3.0, 2.0, 1.0], [1e-30, 0.0, 0.0]])
    for fn in (scale_energy, ash_s_energy):
        out = np.asarray(fn(rows, w, b, 50.0))
        assert np.all(np.isfinite(out)), fn.__name__
        # A zero row, or one with no positive entry and r = 1, reads only the bias.
        np.testing.assert_allclose(out[0], np.logaddexp(0.3, -0.1), rtol=1e-6)
    # No positive entry: r = 1, so SCALE is the energy of e·a.
    np.testing.assert_allclose(
        scale_energy(rows[1:2], w, b, 50.0), _logsumexp(math.e * rows[1:2] @ w + b), rtol=1e-5
    )


def test_boundary_scores_are_finite_at_the_mean_and_check_their_inputs():
    kernel = np.array([[1.0, 1.0, -1.0], [0.0, 0.0, 1.0]])  # classes 0 and 1 share a weight
    stats = fit_boundary(np.array([[1.0, 0.0], [3.0, 2.0]]), kernel, np.array([0.5, 0.0, 0.0]))
    f = np.array([[2.0, 1.0], [5.0, 0.0]])  # the mean, and a point in class 0's region
    assert np.all(np.isfinite(fdbd_score(stats, f))) and np.all(np.isfinite(nci_score(stats, f)))
    np.testing.assert_allclose(nci_score(stats, f[:1], alpha=0.0), [0.0])
    with pytest.raises(ValueError, match="expected a head of at least 2 classes, got 1"):
        fit_boundary(np.ones((3, 2)), np.ones((2, 1)), np.zeros(1))
    with pytest.raises(ValueError, match=r"expected a head kernel of shape \(2, classes\)"):
        fit_boundary(np.ones((3, 2)), np.ones((3, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"expected features of dimension 2, got shape \(1, 3\)"):
        fdbd_score(stats, np.ones((1, 3)))
    with pytest.raises(ValueError, match="expected a non-negative alpha, got -1"):
        nci_score(stats, f, alpha=-1.0)
    with pytest.raises(ValueError, match=r"expected a percentile in \[0, 100\], got 101"):
        scale_energy(np.ones((1, 3)), np.ones((3, 2)), np.zeros(2), 101.0)
    with pytest.raises(ValueError, match=r"expected labels of shape \(3,\), one per feature row"):
        fit_mahalanobis_pp(np.ones((3, 2)), np.zeros(2, np.int32), 1)


# -- registry and engine ---------------------------------------------------------------------


def test_each_is_registered_with_its_needs():
    from tac_jax.evaluate.engine.registry import SCORES, available_scores

    expected = {
        "rmds": ("feature", ("fit", "features")),
        "mahalanobis_pp": ("feature", ("fit", "features")),
        "fdbd": ("boundary", ("fit", "features", "head")),
        "nci": ("boundary", ("fit", "features", "head")),
        "scale": ("shaping", ("fit", "features", "head")),
        "ash_s": ("shaping", ("fit", "features", "head")),
    }
    for name, (family, needs) in expected.items():
        entry = SCORES[name]
        assert (entry.family, entry.needs, entry.fitted) == (family, needs, True), name
        assert entry.pass_name is None and not entry.blockwise, name
    assert SCORES["rmds"].uses == ("mahalanobis",)
    # The defaults are in the formulas a report prints.
    assert "α = 0.0001" in SCORES["nci"].formula
    assert "p = 85" in SCORES["scale"].formula and "p = 90" in SCORES["ash_s"].formula
    # New families come after the feature scores, in module order.
    names = list(SCORES)
    assert names.index("vim") < names.index("rmds") < names.index("mahalanobis_pp")
    assert names.index("mahalanobis_pp") < names.index("fdbd") < names.index("nci")
    assert names.index("nci") < names.index("scale") < names.index("ash_s")
    # Part of the default set of a base run; without the head only RMDS and Mahalanobis++.
    assert set(NEWEST) <= set(available_scores({"fit", "features", "head"}))
    assert not {"fdbd", "nci", "scale", "ash_s"} & set(available_scores({"fit", "features"}))
    assert {"rmds", "mahalanobis_pp"} <= set(available_scores({"fit", "features"}))


def test_through_the_scoring_engine(tmp_path):
    train_f, y, kernel, bias = TRAIN
    test_f = _network(37, seed=9)[0]

    def outputs(f):
        return {"penultimate": f, "logits": f @ kernel + bias}

    fitted = fitted_lib.fit_statistics(outputs(train_f), y, 3, (kernel, bias), names=NEWEST)
    assert set(fitted.stats) == set(NEWEST) | {"mahalanobis"}  # RMDS uses its Gaussians
    out = scoring.compute_scores(outputs(test_f), NEWEST, fitted=fitted, batch_size=16)
    expected = _all_six(train_f, y, kernel, bias, test_f)
    for name in NEWEST:
        assert out[name].shape == (37,) and out[name].dtype == np.float32, name
        np.testing.assert_allclose(out[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
    # The fitted statistics survive the cache file.
    path = tmp_path / "fitted.npz"
    fitted_lib.save_fitted(path, fitted)
    again = scoring.compute_scores(
        outputs(test_f), NEWEST, fitted=fitted_lib.load_fitted(path), batch_size=16
    )
    for name in NEWEST:
        np.testing.assert_allclose(again[name], out[name], rtol=1e-6, err_msg=name)
    # Without a head, the head's scores have nothing to fit.
    headless = fitted_lib.fit_statistics(outputs(train_f), y, 3, None, names=NEWEST)
    assert set(headless.failed) == {"fdbd", "nci", "scale", "ash_s"}


def test_docstring_examples():
    assert doctest.testmod(boundary).failed == 0
    assert doctest.testmod(shaping).failed == 0
    for fn in (
        feature.fit_background,
        feature.rmds_score,
        feature.fit_mahalanobis_pp,
        feature.mahalanobis_pp_score,
    ):
        runner = doctest.DocTestRunner()
        for test in doctest.DocTestFinder().find(fn, globs=vars(feature)):
            runner.run(test)
        assert runner.failures == 0, fn.__name__
