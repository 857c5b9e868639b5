import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.methods import sngp
from tac_jax.methods.sngp import (
    init_precision,
    init_spectral_state,
    mean_field_logits,
    posterior_covariance,
    precision_update,
    predictive_variance,
    random_feature_params,
    random_features,
    sngp_score,
    spectral_normalize,
)

RNG = np.random.default_rng(0)
KEY = jax.random.key(0)


def spectral_norm(w):
    return float(jnp.linalg.norm(w.reshape(-1, w.shape[-1]), ord=2))


def test_state_selects_kernels_and_honours_skip():
    params = {
        "conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)},
        "dense": {"kernel": jnp.ones((4, 5)), "scale": jnp.ones((2, 2))},
        "head": {"kernel": jnp.ones((5, 3))},
        "vec": {"kernel": jnp.ones(3)},
    }
    state = init_spectral_state(params, KEY, skip=lambda p: p.startswith("head/"))
    assert {p: u.shape for p, u in state.items()} == {"conv/kernel": (4,), "dense/kernel": (5,)}
    for u in state.values():
        np.testing.assert_allclose(jnp.linalg.norm(u), 1.0, rtol=1e-6)
    assert init_spectral_state({"bias": jnp.ones(2)}, KEY) == {}


def test_diagonal_kernel_is_rescaled_to_coeff():
    params = {"layer": {"kernel": jnp.diag(jnp.array([3.0, 1.0])), "bias": jnp.arange(2.0)}}
    state = init_spectral_state(params, KEY)
    sn, new_state = spectral_normalize(params, state, power_iterations=50)
    np.testing.assert_allclose(spectral_norm(sn["layer"]["kernel"]), 0.95, rtol=1e-5)
    np.testing.assert_allclose(sn["layer"]["kernel"], jnp.diag(jnp.array([0.95, 0.95 / 3])), 1e-5)
    np.testing.assert_array_equal(sn["layer"]["bias"], params["layer"]["bias"])
    np.testing.assert_allclose(jnp.abs(new_state["layer/kernel"]), [1.0, 0.0], atol=1e-5)


def test_small_kernel_is_left_unchanged():
    w = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
    w = 0.5 * w / spectral_norm(w)
    params = {"kernel": w}
    sn, _ = spectral_normalize(params, init_spectral_state(params, KEY), power_iterations=20)
    np.testing.assert_array_equal(sn["kernel"], w)


def test_conv_kernel_normalised_through_its_matrix_view():
    w = jnp.asarray(RNG.normal(size=(3, 3, 2, 4)), jnp.float32)
    params = {"conv": {"kernel": w}}
    sn, _ = spectral_normalize(
        params, init_spectral_state(params, KEY), coeff=1.0, power_iterations=100
    )
    assert sn["conv"]["kernel"].shape == w.shape
    np.testing.assert_allclose(spectral_norm(sn["conv"]["kernel"]), 1.0, rtol=1e-4)
    np.testing.assert_allclose(sn["conv"]["kernel"] * spectral_norm(w), w, rtol=1e-4, atol=1e-5)


def test_skipped_head_and_dtype_kept():
    big = jnp.diag(jnp.array([3.0, 1.0]))
    params = {"body": {"kernel": big.astype(jnp.bfloat16)}, "head": {"kernel": big}}
    state = init_spectral_state(params, KEY, skip=lambda p: p.startswith("head/"))
    sn, _ = spectral_normalize(params, state, power_iterations=30)
    assert sn["body"]["kernel"].dtype == jnp.bfloat16
    np.testing.assert_allclose(spectral_norm(sn["body"]["kernel"].astype(jnp.float32)), 0.95, 1e-2)
    np.testing.assert_array_equal(sn["head"]["kernel"], big)


def test_eval_mode_uses_stored_u_and_keeps_state():
    params = {"kernel": jnp.diag(jnp.array([3.0, 1.0]))}
    state = {"kernel": jnp.array([0.0, 1.0])}  # σ estimate ‖Wu‖ = 1: below coeff 2
    sn, new_state = spectral_normalize(params, state, coeff=2.0, update=False)
    np.testing.assert_array_equal(new_state["kernel"], state["kernel"])
    np.testing.assert_array_equal(sn["kernel"], params["kernel"])
    sn, _ = spectral_normalize(params, state, coeff=0.5, update=False)  # scaled by 0.5/1
    np.testing.assert_allclose(sn["kernel"], 0.5 * params["kernel"])


def test_zero_kernel_keeps_its_state():
    params = {"kernel": jnp.zeros((3, 2))}
    state = {"kernel": jnp.array([0.6, 0.8])}
    sn, new_state = spectral_normalize(params, state)
    np.testing.assert_array_equal(sn["kernel"], 0.0)
    np.testing.assert_array_equal(new_state["kernel"], state["kernel"])


def test_gradient_flows_through_sigma():
    w = jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32) * 3
    state = init_spectral_state({"kernel": w}, KEY)

    def loss(w):
        sn, _ = spectral_normalize({"kernel": w}, state, power_iterations=30)
        return jnp.sum(sn["kernel"])

    grad = jax.grad(loss)(w)
    assert bool(jnp.all(jnp.isfinite(grad)))
    plain = jnp.ones_like(w) / spectral_norm(w) * 0.95  # σ treated as a constant
    assert float(jnp.max(jnp.abs(grad - plain))) > 1e-3


def test_jit_matches_eager():
    params = {"a": {"kernel": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32) * 2}}
    state = init_spectral_state(params, KEY)
    fn = jax.jit(functools.partial(spectral_normalize, power_iterations=3))
    sn_jit, st_jit = fn(params, state)
    sn, st = spectral_normalize(params, state, power_iterations=3)
    np.testing.assert_allclose(sn_jit["a"]["kernel"], sn["a"]["kernel"], rtol=1e-5)
    np.testing.assert_allclose(st_jit["a/kernel"], st["a/kernel"], rtol=1e-5)


def test_spectral_errors():
    params = {"kernel": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match="expected spectral state only for paths"):
        spectral_normalize(params, {"other/kernel": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"expected a kernel of rank >= 2 whose last axis"):
        spectral_normalize(params, {"kernel": jnp.ones(3)})
    with pytest.raises(ValueError, match="expected a positive spectral-norm bound"):
        spectral_normalize(params, {}, coeff=0.0)
    with pytest.raises(ValueError, match="expected an integer number of iterations"):
        spectral_normalize(params, {}, power_iterations=0)


def test_random_features_approximate_rbf_kernel():
    x = jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32)
    w, b = random_feature_params(KEY, 3, num_features=20000, lengthscale=1.5)
    phi = random_features(x, w, b)
    assert phi.shape == (5, 20000)
    sq = np.sum((np.asarray(x)[:, None] - np.asarray(x)[None]) ** 2, -1)
    np.testing.assert_allclose(phi @ phi.T, np.exp(-sq / (2 * 1.5**2)), atol=0.05)
    with pytest.raises(ValueError, match=r"expected h \(..., in_dim\)"):
        random_features(jnp.ones((2, 4)), w, b)
    with pytest.raises(ValueError, match="expected a positive length-scale"):
        random_feature_params(KEY, 3, lengthscale=0.0)


def test_precision_update_matches_loop_and_mask():
    phi = RNG.normal(size=(4, 3)).astype(np.float32)
    logits = RNG.normal(size=(4, 5)).astype(np.float32)
    expected = 2.0 * np.eye(3)
    for f, z in zip(phi, logits, strict=True):
        p = np.max(np.exp(z) / np.exp(z).sum())
        expected += p * (1 - p) * np.outer(f, f)
    precision = precision_update(init_precision(3, ridge=2.0), phi, logits)
    np.testing.assert_allclose(precision, expected, rtol=1e-5)
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    masked = precision_update(init_precision(3, 2.0), phi, logits, mask=mask)
    np.testing.assert_allclose(
        masked, precision_update(init_precision(3, 2.0), phi[:2], logits[:2])
    )
    with pytest.raises(ValueError, match="expected a mask of shape"):
        precision_update(precision, phi, logits, mask=jnp.ones(3))
    with pytest.raises(ValueError, match=r"expected logits \(4, C\)"):
        precision_update(precision, phi, logits[:3])


def test_covariance_and_predictive_variance():
    phi = RNG.normal(size=(6, 4)).astype(np.float32)
    precision = precision_update(init_precision(4), phi, np.zeros((6, 3), np.float32))
    cov = posterior_covariance(precision)
    np.testing.assert_allclose(cov @ precision, np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(cov, cov.T)
    np.testing.assert_allclose(
        predictive_variance(phi, cov), np.diag(phi @ np.asarray(cov) @ phi.T), rtol=1e-5
    )
    with pytest.raises(ValueError, match=r"expected features \(batch, D\) and a square"):
        predictive_variance(phi[:, :3], cov)
    with pytest.raises(ValueError, match=r"expected features \(batch, D\) and a square"):
        precision_update(precision, phi[:, :3], np.zeros((6, 3)))
    with pytest.raises(ValueError, match="expected a square"):
        posterior_covariance(jnp.ones((2, 3)))


def test_mean_field_logits_and_score():
    logits = jnp.array([[3.0, 0.0], [3.0, 0.0]])
    mf = mean_field_logits(logits, jnp.array([0.0, 8.0 / jnp.pi]))  # 1 + π/8 · 8/π = 2
    np.testing.assert_allclose(mf, [[3.0, 0.0], [3.0 / np.sqrt(2), 0.0]], rtol=1e-6)
    score = sngp_score(logits, jnp.array([0.0, 8.0 / jnp.pi]))
    np.testing.assert_allclose(
        score, [1 / (1 + np.exp(-3)), 1 / (1 + np.exp(-3 / np.sqrt(2)))], 1e-6
    )
    with pytest.raises(ValueError, match=r"expected logits \(batch, C\) and variances"):
        mean_field_logits(logits, jnp.ones(3))
    with pytest.raises(ValueError, match="expected a non-negative mean-field factor"):
        mean_field_logits(logits, jnp.ones(2), factor=-1.0)


def test_far_input_is_more_uncertain():
    w, b = random_feature_params(KEY, 2, num_features=256, lengthscale=1.0)
    cluster = jnp.asarray(RNG.normal(scale=0.3, size=(200, 2)), jnp.float32)
    logits = jnp.tile(jnp.array([[2.0, 0.0, 0.0]]), (200, 1))
    precision = precision_update(init_precision(256), random_features(cluster, w, b), logits)
    cov = posterior_covariance(precision)
    queries = jnp.array([[0.1, -0.1], [6.0, 6.0]])
    variance = predictive_variance(random_features(queries, w, b), cov)
    assert float(variance[1]) > 5 * float(variance[0])
    score = sngp_score(jnp.array([[2.0, 0.0, 0.0]] * 2), variance)
    assert float(score[1]) < float(score[0])


def test_docstring_examples():
    assert doctest.testmod(sngp).failed == 0
