import doctest
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax import attacks
from tac_jax.attacks import (
    adversarial_half_batch,
    base_logits_fn,
    fgsm,
    pgd,
    tac_code_logits,
    tac_logits_fn,
)
from tac_jax.model import TACModel

RNG = np.random.default_rng(0)
D, C, B = 10, 4, 16
W = RNG.normal(size=(D, C)).astype(np.float32)
BIAS = RNG.normal(size=(C,)).astype(np.float32)
W1 = (RNG.normal(size=(D, 32)) * 3).astype(np.float32)
W2 = RNG.normal(size=(32, C)).astype(np.float32)
X = RNG.uniform(0.2, 0.8, size=(B, D)).astype(np.float32)
Y = RNG.integers(0, C, size=B)


def linear(x):
    return x @ W + BIAS


def mlp(x):
    # Saturating, so that several small steps can beat one large one.
    return jnp.tanh((x - 0.5) @ W1) @ W2


def ce(logits_fn, x, y):
    log_p = jax.nn.log_softmax(logits_fn(x))
    return -np.asarray(jnp.take_along_axis(log_p, jnp.asarray(y)[:, None], axis=-1))[:, 0]


def linear_input_grad(x, y):
    """∇_x CE(xW + b, y) = W (softmax − onehot(y)), by hand."""
    z = x @ W + BIAS
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p - np.eye(C)[y]) @ W.T


@functools.partial(jax.jit, static_argnames=("logits_fn", "norm", "steps", "random_start", "clip"))
def run_pgd(logits_fn, x, y, eps, key, norm="linf", steps=10, random_start=True, clip=(0.0, 1.0)):
    return pgd(
        logits_fn, x, y, eps, key=key, norm=norm, steps=steps, random_start=random_start, clip=clip
    )


run_fgsm = jax.jit(fgsm, static_argnums=0)


def test_fgsm_is_the_signed_gradient_by_hand_and_raises_the_loss():
    eps = 0.1  # x is in [0.2, 0.8], so nothing is clipped.
    x_adv = fgsm(linear, X, Y, eps)
    np.testing.assert_allclose(x_adv - X, eps * np.sign(linear_input_grad(X, Y)), atol=1e-6)
    assert np.all(ce(linear, x_adv, Y) > ce(linear, X, Y))  # CE is convex in x here.
    # A large step is clipped to the range and stays within ε.
    x_big = fgsm(linear, X, Y, 0.5)
    assert float(x_big.min()) >= 0.0 and float(x_big.max()) <= 1.0
    assert float(jnp.max(jnp.abs(x_big - X))) <= 0.5 + 1e-6
    np.testing.assert_allclose(x_big, np.clip(X + 0.5 * np.sign(linear_input_grad(X, Y)), 0, 1))


def test_pgd_one_step_defaults_by_hand():
    eps = 0.2
    # L∞: one step of the default size ε/10 from x is FGSM with ε/10.
    one = pgd(linear, X, Y, eps, steps=1, random_start=False)
    np.testing.assert_allclose(one, fgsm(linear, X, Y, eps / 10), atol=1e-6)
    # L2: one step of size 2.5·ε along g/‖g‖ is projected back onto the sphere of radius ε.
    g = linear_input_grad(X, Y)
    expected = X + eps * g / np.linalg.norm(g, axis=-1, keepdims=True)
    one = pgd(linear, X, Y, eps, norm="l2", steps=1, random_start=False)
    np.testing.assert_allclose(one, expected, atol=1e-5)


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_pgd_stays_in_the_ball_and_range_and_beats_one_step(norm, eps):
    x = RNG.uniform(0.0, 1.0, size=(64, D)).astype(np.float32)  # Edges get clipped.
    y = RNG.integers(0, C, size=64)
    key = jax.random.key(0)
    x_adv = run_pgd(mlp, x, y, eps, key, norm=norm, steps=20)
    delta = np.asarray(x_adv) - x
    if norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-6
        baseline = run_fgsm(mlp, x, y, eps)
        # The authors' setting (10 steps of ε/10) from x itself also beats FGSM.
        x_plain = run_pgd(mlp, x, y, eps, key, random_start=False)
        assert ce(mlp, x_plain, y).mean() > ce(mlp, baseline, y).mean()
    else:
        assert np.linalg.norm(delta, axis=-1).max() <= eps + 1e-5
        baseline = run_pgd(mlp, x, y, eps, key, norm=norm, steps=0)  # The random start.
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert ce(mlp, x_adv, y).mean() > ce(mlp, baseline, y).mean()
    assert ce(mlp, x_adv, y).mean() > ce(mlp, x, y).mean() + 1.0


def test_pgd_determinism_and_zero_steps():
    key = jax.random.key(3)
    a = run_pgd(mlp, X, Y, 0.1, key, steps=3)
    np.testing.assert_array_equal(a, run_pgd(mlp, X, Y, 0.1, key, steps=3))
    assert not np.array_equal(a, run_pgd(mlp, X, Y, 0.1, jax.random.key(4), steps=3))
    np.testing.assert_array_equal(pgd(mlp, X, Y, 0.1, steps=0, random_start=False), X)


def test_random_starts_are_uniform_in_the_ball():
    eps, n, d = 0.5, 512, 10
    x = np.zeros((n, d), np.float32)
    y = np.zeros(n, np.int32)
    start = functools.partial(run_pgd, mlp, steps=0, clip=None)
    linf = np.asarray(start(x, y, eps, jax.random.key(0)))
    assert np.abs(linf).max() <= eps and abs(np.abs(linf).mean() - eps / 2) < 0.01
    l2 = np.asarray(start(x, y, eps, jax.random.key(1), norm="l2"))
    radius = np.linalg.norm(l2, axis=-1) / eps
    # Uniform in volume: r/ε ~ U^(1/d), whose mean is d/(d+1) (sd of the mean ≈ 0.004).
    assert radius.max() <= 1 + 1e-6 and abs(radius.mean() - d / (d + 1)) < 0.02
    directions = l2 / np.linalg.norm(l2, axis=-1, keepdims=True)
    assert np.abs(directions.mean(0)).max() < 0.1  # Isotropic: no preferred direction.


class TinyBase(nn.Module):
    num_classes: int = 3

    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.relu(nn.Dense(16, name="dense")(x))
        self.sow("intermediates", "hidden", h)
        return nn.Dense(self.num_classes, name="head")(h)


def test_attacking_tac_codes_moves_the_activation_off_the_true_code():
    model = TACModel(TinyBase(), ["hidden"], num_classes=3, mode="addon")
    x = jnp.asarray(RNG.uniform(0.2, 0.8, size=(24, 6)), jnp.float32)
    variables = model.init(jax.random.key(0), x)
    codes = jnp.asarray(model.codes.matrix)
    out, _ = model.apply(variables, x)
    y = jnp.argmin(-tac_code_logits(out.activation, codes), axis=-1)  # The closest code.
    tac_fn, base_fn = tac_logits_fn(model, variables), base_logits_fn(model, variables)
    # Same values as model.apply, and input gradients flow in add-on mode.
    np.testing.assert_array_equal(tac_fn(x), tac_code_logits(out.activation, codes))
    np.testing.assert_array_equal(base_fn(x), out.logits)
    x_adv = run_pgd(tac_fn, x, y, 0.2, None, steps=5, random_start=False)
    assert float(jnp.abs(x_adv - x).max()) > 0.1

    def distance_to_true(inputs):
        a = model.apply(variables, inputs)[0].activation
        return np.asarray(jnp.sum(jnp.abs(a - codes[y]), axis=-1))

    before, after = distance_to_true(x), distance_to_true(x_adv)
    assert after.mean() > before.mean() and np.mean(after > before) >= 0.9


def test_adversarial_half_batch_keeps_the_second_half_and_stops_gradients():
    attack = jax.jit(lambda x, y, k: pgd(mlp, x, y, 0.1, key=k, steps=2))
    x = jnp.asarray(X[:7])
    mixed = adversarial_half_batch(attack, x, Y[:7], jax.random.key(0))
    np.testing.assert_array_equal(mixed[3:], x[3:])  # B // 2 = 3 rows perturbed.
    np.testing.assert_array_equal(mixed[:3], attack(x[:3], Y[:3], jax.random.key(0)))
    assert not np.array_equal(mixed[:3], x[:3])
    double = lambda x, y, k: 2.0 * x
    grad = jax.grad(lambda x: adversarial_half_batch(double, x, Y[:7], None).sum())(x)
    np.testing.assert_array_equal(grad, np.r_[np.zeros((3, D)), np.ones((4, D))])


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="expected a non-negative epsilon, got -0.1"):
        fgsm(linear, X, Y, -0.1)
    with pytest.raises(ValueError, match="expected a non-negative epsilon"):
        pgd(linear, X, Y, -1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected a norm in \('linf', 'l2'\), got 'l1'"):
        pgd(linear, X, Y, 0.1, key=jax.random.key(0), norm="l1")
    with pytest.raises(ValueError, match=r"expected one integer label per input, shape \(16,\)"):
        pgd(linear, X, Y[:3], 0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="expected one integer label per input"):
        adversarial_half_batch(lambda x, y, k: x, X, Y[:3], None)
    with pytest.raises(ValueError, match="expected a PRNG key for random_start=True, got None"):
        pgd(linear, X, Y, 0.1)
    with pytest.raises(ValueError, match="expected a non-negative integer number of steps"):
        pgd(linear, X, Y, 0.1, steps=-1, random_start=False)
    with pytest.raises(ValueError, match=r"expected clip=\(low, high\) with low < high"):
        fgsm(linear, X, Y, 0.1, clip=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"expected logits_fn to return \(batch, classes\)"):
        fgsm(lambda x: x.sum(-1), X, Y, 0.1)
    with pytest.raises(ValueError, match="expected activations"):
        tac_code_logits(jnp.ones((2, 3)), jnp.ones((4, 5)))


def test_docstring_examples():
    assert doctest.testmod(attacks).failed == 0
