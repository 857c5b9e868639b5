import doctest
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import roc_auc_score

from tac_jax.scores import purview
from tac_jax.scores.purview import (
    confounding_target,
    fit_purview_detector,
    purview_detector_score,
    purview_features,
    purview_grads,
    purview_layer_names,
    purview_loss,
    purview_score,
)

RNG = np.random.default_rng(0)
D, C = 5, 4


class MLP(nn.Module):
    hidden: int = 8
    classes: int = C

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.classes)(nn.relu(nn.Dense(self.hidden)(x)))


def one_example(module):
    return lambda p, x: module.apply({"params": p}, x)


LINEAR, MLP_MODEL = nn.Dense(C), MLP()
LINEAR_FN, MLP_FN = one_example(LINEAR), one_example(MLP_MODEL)
X = RNG.normal(size=(6, D)).astype(np.float32)


def softmax(z):
    p = np.exp(z - z.max())
    return p / p.sum()


def logit_grad_by_hand(z, t):
    """∂J/∂z for J = −Σ_c [t_c log p_c + (1 − t_c) log(1 − p_c)], p = softmax(z).

    With ∂ log p_c/∂z_k = δ_ck − p_k and ∂ log(1 − p_c)/∂z_k = −p_c (δ_ck − p_k)/(1 − p_c):
    g_k = −t_k + p_k Σ_c t_c + (1 − t_k) p_k/(1 − p_k) − p_k Σ_c (1 − t_c) p_c/(1 − p_c).
    For t = 1 this is C·p_k − 1.
    """
    p = softmax(z)
    r = (1 - t) * p / (1 - p)
    return -t + p * t.sum() + r - p * r.sum()


def test_per_example_grads_match_a_loop_of_single_gradients():
    params = MLP_MODEL.init(jax.random.key(0), X[:1])["params"]
    target = confounding_target(C, [0, 2, 3])
    batched = jax.jit(purview_grads, static_argnums=0)(MLP_FN, params, X, target)
    single = jax.jit(jax.grad(lambda p, x: purview_loss(MLP_FN(p, x), target)))
    for i in range(len(X)):
        expected = single(params, X[i])
        got = jax.tree_util.tree_map(lambda g, i=i: g[i], batched)
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, expected
        )


@pytest.mark.parametrize("indices", ["all_ones", [1, 3]])
def test_linear_layer_features_in_closed_form(indices):
    # z = x W + b: ∇_W J = x ⊗ g and ∇_b J = g, so ‖∇_W J‖² = ‖x‖²‖g‖² and ‖∇_b J‖² = ‖g‖².
    params = LINEAR.init(jax.random.key(1), X[:1])["params"]
    target = confounding_target(C, indices)
    w, b = np.asarray(params["kernel"]), np.asarray(params["bias"])
    g = np.stack([logit_grad_by_hand(x @ w + b, np.asarray(target)) for x in X])
    if indices == "all_ones":
        np.testing.assert_allclose(g, C * np.stack([softmax(x @ w + b) for x in X]) - 1, atol=1e-6)
    gg, xx = (g**2).sum(-1), (X**2).sum(-1)
    leaf = purview_features(LINEAR_FN, params, X, target=target, group="leaf")
    np.testing.assert_allclose(leaf, np.stack([gg, xx * gg], -1), rtol=1e-4)  # bias, kernel
    layer = purview_features(LINEAR_FN, params, X, target=target)
    np.testing.assert_allclose(layer, (gg * (1 + xx))[:, None], rtol=1e-4)


def test_layer_grouping_names_and_batched_path():
    params = MLP_MODEL.init(jax.random.key(0), X[:1])["params"]
    assert purview_layer_names(params) == ["Dense_0", "Dense_1"]
    assert purview_layer_names(params, "leaf") == [
        "Dense_0/bias",
        "Dense_0/kernel",
        "Dense_1/bias",
        "Dense_1/kernel",
    ]
    leaf = purview_features(MLP_FN, params, X, group="leaf")
    layer = purview_features(MLP_FN, params, X)
    np.testing.assert_allclose(layer, leaf[:, [0, 2]] + leaf[:, [1, 3]], rtol=1e-6)
    batched = purview_features(MLP_FN, params, X, batch_size=4)  # 6 rows: one padded batch.
    assert isinstance(batched, np.ndarray) and batched.shape == (6, 2)
    np.testing.assert_allclose(batched, layer, rtol=1e-6)


def test_loss_values_and_saturation():
    # p = ½ each: J = −2 log ½; with target [1, 0]: −log ½ − log(1 − ½).
    np.testing.assert_allclose(purview_loss(jnp.zeros(2), jnp.ones(2)), 2 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(
        purview_loss(jnp.zeros(3), jnp.array([1.0, 1.0, 0.0])),
        -2 * np.log(1 / 3) - np.log(2 / 3),
        rtol=1e-6,
    )
    # A saturated softmax (p rounds to 1) keeps the loss and its gradient finite.
    z = jnp.array([200.0, 0.0, 0.0])
    for t in (jnp.ones(3), jnp.array([0.0, 1.0, 1.0])):
        assert np.isfinite(purview_loss(z, t))
        assert np.all(np.isfinite(jax.grad(purview_loss)(z, t)))


def test_confounding_targets():
    np.testing.assert_array_equal(confounding_target(3), [1, 1, 1])
    np.testing.assert_array_equal(confounding_target(5, [4, 0]), [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(confounding_target(3, []), [0, 0, 0])  # n = 0 ≠ 1.
    with pytest.raises(ValueError, match=r"expected a multi-hot target .* got the one-hot"):
        confounding_target(4, [2])
    with pytest.raises(ValueError, match=r"expected distinct class indices in \[0, 4\)"):
        confounding_target(4, [1, 1])
    with pytest.raises(ValueError, match=r"expected distinct class indices in \[0, 4\)"):
        confounding_target(4, [0, 4])
    with pytest.raises(ValueError, match="expected kind 'all_ones' or class indices"):
        confounding_target(4, "ones")
    with pytest.raises(ValueError, match="expected an integer number of classes >= 2"):
        confounding_target(1)


@functools.cache
def _trained_blobs():
    """An MLP fit to three separable blobs in [0, 1]^8, and uniform noise in the same box."""
    rng = np.random.default_rng(1)
    protos = rng.uniform(0, 1, (3, 8))

    def sample(n):
        y = rng.integers(0, 3, n)
        return np.clip(protos[y] + 0.1 * rng.normal(size=(n, 8)), 0, 1).astype(np.float32), y

    (x_train, y_train), (x_test, _) = sample(300), sample(100)
    noise = rng.uniform(0, 1, (100, 8)).astype(np.float32)
    model = MLP(hidden=16, classes=3)
    params = model.init(jax.random.key(0), x_train[:1])["params"]
    tx = optax.adam(1e-2)

    @jax.jit
    def train(params):
        def step(carry, _):
            p, o = carry
            loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
                model.apply({"params": p}, x_train), y_train
            ).mean()
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss

        return jax.lax.scan(step, (params, tx.init(params)), None, length=150)

    (params, _), losses = train(params)
    assert losses[-1] < 0.05
    return one_example(model), params, x_train, x_test, noise


def test_confident_in_distribution_inputs_have_larger_gradients():
    fn, params, x_train, x_test, noise = _trained_blobs()
    f_id, f_noise = purview_features(fn, params, x_test), purview_features(fn, params, noise)
    s_id, s_noise = purview_score(f_id), purview_score(f_noise)
    # The sum also grows with the activations' size, which noise shares, so the
    # separation is clear but weaker than the confidence gap alone (AUROC ≈ 0.79 here).
    assert float(s_id.mean()) > 1.3 * float(s_noise.mean())
    labels = np.r_[np.ones(len(s_id)), np.zeros(len(s_noise))]
    assert roc_auc_score(labels, np.r_[s_id, s_noise]) > 0.7
    np.testing.assert_allclose(purview_score(f_id, sign=-1), -s_id)
    # The optional fitted detector also ranks in-distribution inputs higher.
    det = fit_purview_detector(purview_features(fn, params, x_train))
    fitted = np.r_[purview_detector_score(det, f_id), purview_detector_score(det, f_noise)]
    assert roc_auc_score(labels, fitted) > 0.7


def test_detector_by_hand():
    det = fit_purview_detector(jnp.exp(jnp.array([[0.0, 1.0], [2.0, 1.0]])), eps=0.0)
    np.testing.assert_allclose(det.mean, [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(det.std, [1.0, 1e-6], atol=1e-7)  # The floor on a constant.
    score = purview_detector_score(det, jnp.exp(jnp.array([[4.0, 1.0]])))
    np.testing.assert_allclose(score, [-3.0], rtol=1e-5)


def test_bad_inputs_say_what_was_expected():
    params = LINEAR.init(jax.random.key(1), X[:1])["params"]
    with pytest.raises(ValueError, match=r"expected one example's \(C,\) logits matching"):
        purview_features(LINEAR_FN, params, X, target=jnp.ones(3))
    with pytest.raises(ValueError, match=r"expected a grouping in \('module', 'leaf'\)"):
        purview_features(LINEAR_FN, params, X, group="layer")
    with pytest.raises(ValueError, match="expected parameters with at least one array"):
        purview_features(LINEAR_FN, {}, X)
    with pytest.raises(ValueError, match="expected a sign of \\+1 or -1, got 2"):
        purview_score(jnp.ones((2, 2)), sign=2)
    with pytest.raises(ValueError, match=r"expected features of rank 2 \(batch, layers\)"):
        purview_score(jnp.ones(3))
    with pytest.raises(ValueError, match=r"expected in-distribution features \(N >= 2, layers\)"):
        fit_purview_detector(jnp.ones((1, 2)))
    det = fit_purview_detector(jnp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"expected features \(batch, 2\)"):
        purview_detector_score(det, jnp.ones((3, 3)))


def test_docstring_examples():
    assert doctest.testmod(purview).failed == 0
