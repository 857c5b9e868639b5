import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.losses import (
    clamp_scale,
    code_distances,
    code_l1_loss,
    distance_cross_entropy,
    flip_code_noise,
    mixup,
    tac_loss,
)

CODES = jnp.array([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0]])


def test_l1_by_hand():
    a = jnp.array([[0.5, 1.0, -1.0, 0.0]])
    assert float(code_l1_loss(a, CODES[:1])) == pytest.approx((0.5 + 0 + 0 + 1) / 4)


def test_code_distances_by_hand():
    a = jnp.array([[1.0, 1.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(code_distances(a, CODES), [[0.0, 1.0], [1.0, 1.0]])


def test_distance_cross_entropy_by_hand():
    a = jnp.array([[1.0, 1.0, -1.0, -1.0]])
    targets = jnp.array([[1.0, 0.0]])
    # d = [0, 1]; logits -s·d = [0, -2]; CE = log(1 + e^-2).
    expected = np.log1p(np.exp(-2.0))
    assert float(distance_cross_entropy(a, CODES, targets, 2.0)) == pytest.approx(
        expected, rel=1e-6
    )


def test_scale_is_clamped():
    np.testing.assert_allclose(clamp_scale(jnp.array([0.0, 10.0, 99.0])), [1e-4, 10.0, 50.0])


def test_code_noise_flip_rate_and_zero():
    codes = jnp.ones((200, 10, 64))
    flipped = flip_code_noise(jax.random.key(0), codes, 0.15)
    rate = float(jnp.mean(flipped < 0))
    assert abs(rate - 0.15) < 0.01
    np.testing.assert_array_equal(flip_code_noise(jax.random.key(0), codes, 0.0), codes)
    with pytest.raises(ValueError, match=r"code-noise probability in \[0, 1\), got 1.5"):
        flip_code_noise(jax.random.key(0), codes, 1.5)


def test_mixup_interpolates_every_array_with_one_t():
    x = jnp.arange(8.0).reshape(4, 2)
    y = jax.nn.one_hot(jnp.array([0, 1, 0, 1]), 2)
    (mx, my), t, perm = mixup(jax.random.key(3), 0.2, x, y)
    expected_x = t[:, None] * x + (1 - t[:, None]) * x[perm]
    expected_y = t[:, None] * y + (1 - t[:, None]) * y[perm]
    np.testing.assert_allclose(mx, expected_x, rtol=1e-6)
    np.testing.assert_allclose(my, expected_y, rtol=1e-6)
    np.testing.assert_allclose(my.sum(-1), 1.0, rtol=1e-6)
    assert sorted(np.asarray(perm).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="one batch size"):
        mixup(jax.random.key(0), 0.2, x, y[:3])


def test_tac_loss_combines_terms_and_mixed_target_codes():
    a = jnp.array([[1.0, 1.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    targets = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    loss, aux = tac_loss(a, CODES, targets, scale=2.0)
    # Mixed target code of row 2 is [1, 0, 0, -1]; |a - c| mean = 0.5.
    assert float(aux["l1"]) == pytest.approx((0.0 + 0.5) / 2)
    ce_rows = [np.log1p(np.exp(-2.0)), np.log(2.0)]
    assert float(aux["ce"]) == pytest.approx(np.mean(ce_rows), rel=1e-6)
    assert float(loss) == pytest.approx(float(aux["ce"]) + 10 * float(aux["l1"]), rel=1e-6)


def test_tac_loss_with_code_noise_needs_key_and_is_jittable():
    a = jax.random.normal(jax.random.key(0), (8, 4))
    targets = jax.nn.one_hot(jnp.arange(8) % 2, 2)
    with pytest.raises(ValueError, match="PRNG key"):
        tac_loss(a, CODES, targets, scale=10.0, code_noise=0.1)
    f = lambda a, k: tac_loss(a, CODES, targets, scale=10.0, key=k, code_noise=0.1)[0]
    key = jax.random.key(7)
    np.testing.assert_allclose(jax.jit(f)(a, key), f(a, key), rtol=1e-6)


def test_shape_errors_name_expected_and_given():
    with pytest.raises(ValueError, match=r"same M, got activations \(1, 3\) and codes \(2, 4\)"):
        code_distances(jnp.ones((1, 3)), CODES)
    with pytest.raises(ValueError, match=r"expected targets of shape \(1, 2\), got \(2, 2\)"):
        tac_loss(jnp.ones((1, 4)), CODES, jnp.ones((2, 2)), scale=1.0)


def test_vmap_over_examples_equals_loop():
    a = jax.random.normal(jax.random.key(2), (5, 4))
    per_row = jax.vmap(lambda r: code_distances(r[None], CODES)[0])(a)
    np.testing.assert_allclose(per_row, code_distances(a, CODES), rtol=1e-6)
