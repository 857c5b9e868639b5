"""The detector API on a user's own model: linen with and without ``train``, BatchNorm,
an NNX model through the bridge, and a TAC add-on trained on the frozen model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.nnx import bridge

from tac_jax.evaluate.engine.detector import Detector
from tac_jax.scores.logits import msp
from tac_jax.tapped import tap

FEW = ("msp", "energy", "knn", "mahalanobis", "react", "vim", "mahalanobis_multi")


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x)).mean((1, 2))
        x = nn.relu(nn.Dense(16)(x))
        return nn.Dense(3)(x)


class BatchNormCNN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3))(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(x)).mean((1, 2))
        return nn.Dense(3)(x)


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.conv(x)).mean((1, 2)))


def stripes(n, seed=0):
    """Three classes: a bright band at rows 0–3, 4–7 or 8–11."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.random((n, 12, 12, 1)) * 0.6).astype(np.float32)
    for c in range(3):
        x[y == c, 4 * c : 4 * c + 4] += 0.12
    return x, y


def _head_reads_penultimate(det, x, logits):
    out = det.outputs(x)
    kernel, bias = det.head
    np.testing.assert_allclose(out["penultimate"] @ kernel + bias, logits, rtol=1e-4, atol=1e-4)
    # Tapped outputs are taken after the activation.
    assert all(np.all(v >= 0) for v in out["layers"].values())


def test_linen_model_without_train_argument():
    x, y = stripes(160)
    variables = CNN().init(jax.random.key(0), x[:1])
    det = Detector.from_module(CNN(), variables, x[:1], scores=FEW).fit(x[:120], y[:120])
    assert det.names == ("msp", "energy", "mahalanobis", "mahalanobis_multi", "knn", "react",
                         "vim")  # fmt: skip
    assert det.forward.layers == ("Conv_0", "Conv_1", "Dense_0")
    logits = np.asarray(CNN().apply(variables, x[120:]))
    scores = det.score(x[120:])
    np.testing.assert_allclose(scores["msp"], msp(logits), rtol=1e-5)
    np.testing.assert_array_equal(scores["prediction"], logits.argmax(1))
    assert all(scores[n].shape == (40,) and np.isfinite(scores[n]).all() for n in det.names)
    _head_reads_penultimate(det, x[120:], logits)
    # uint8 inputs go through the same preprocessing (divided by 255).
    as_uint8 = np.round(x[120:] * 255).astype(np.uint8)
    np.testing.assert_allclose(
        det.score(as_uint8)["msp"], det.score(as_uint8.astype(np.float32) / 255)["msp"], rtol=1e-5
    )


def test_train_argument_and_batchnorm_and_named_layers():
    x, y = stripes(100)
    variables = BatchNormCNN().init(jax.random.key(1), x[:1])
    det = Detector.from_module(BatchNormCNN(), variables, x[:1], layers=["Conv_0"],
                               scores=("msp", "mahalanobis_multi"))  # fmt: skip
    det.fit(x, y)
    logits = BatchNormCNN().apply(variables, x[:20], train=False)
    np.testing.assert_allclose(det.score(x[:20])["msp"], msp(logits), rtol=1e-5)
    assert det.forward.layers == ("Conv_0",)


def test_nnx_model_through_the_bridge():
    x, y = stripes(100)
    model = bridge.ToLinen(NNXNet)
    variables = model.init(jax.random.key(2), x[:1])
    det = Detector.from_module(model, variables, x[:1], scores=FEW).fit(x, y)
    assert det.forward.layers == ("Conv_0",)
    # The head is found by its shape: ReAct and ViM read it.
    assert {"react", "vim"} <= set(det.names)
    _head_reads_penultimate(det, x[:30], np.asarray(model.apply(variables, x[:30])))


def test_tac_addon_on_a_frozen_user_model():
    x, y = stripes(400)
    model, variables = CNN(), CNN().init(jax.random.key(3), x[:1])
    # Train the user's model a little, as a user would have.
    tx = optax.adam(1e-2)
    opt_state = tx.init(variables)

    @jax.jit
    def step(v, o, xb, yb):
        def loss(v):
            logp = jax.nn.log_softmax(model.apply(v, xb))
            return -jnp.mean(logp[jnp.arange(len(yb)), yb])

        updates, o = tx.update(jax.grad(loss)(v), o)
        return optax.apply_updates(v, updates), o

    for i in range(200):
        b = slice((i * 32) % 288, (i * 32) % 288 + 32)
        variables, opt_state = step(variables, opt_state, x[b], y[b])
    before = jax.tree_util.tree_map(np.array, variables)
    det = Detector.from_module(model, variables, x[:1], scores=("tac", "tac_fused", "msp"))
    det.fit(x[:320], y[:320], validation=(x[320:360], y[320:360]), tac_steps=300)
    assert det.names == ("tac", "tac_fused", "msp")
    scores = det.score(x[360:])
    logits = np.asarray(model.apply(variables, x[360:]))
    # The frozen model's own predictions stay exactly as they were.
    np.testing.assert_array_equal(scores["prediction"], logits.argmax(1))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, variables)
    assert np.mean(logits.argmax(1) == y[360:]) > 0.75
    # TAC decodes the classes (chance: 1/3) from the activations it was trained on.
    assert np.mean(scores["tac_prediction"] == y[360:]) > 0.7
    assert np.isfinite(scores["tac_fused"]).all()


def test_one_line_errors():
    x, y = stripes(20)

    class NoHead(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(3, (3, 3))(x).mean((1, 2))

    with pytest.raises(ValueError, match="expected the model to end in a flax Dense head"):
        Detector.from_module(NoHead(), NoHead().init(jax.random.key(0), x[:1]), x[:1])
    variables = CNN().init(jax.random.key(0), x[:1])
    with pytest.raises(ValueError, match=r"expected layers among the model's submodules"):
        tap(CNN(), variables, x[:1], layers=["conv9"])
    det = Detector.from_module(CNN(), variables, x[:1], scores=("knn",))
    with pytest.raises(ValueError, match=r"expected fit\(...\) before scoring \['knn'\]"):
        det.score(x)
    with pytest.raises(ValueError, match="expected floating-point inputs in"):
        det.fit(x * 3, y)
    with pytest.raises(ValueError, match=r"expected \(20,\) integer labels"):
        det.fit(x, y[:5])
    with pytest.raises(ValueError, match="expected scores this run can compute"):
        Detector.from_module(CNN(), variables, x[:1], scores=("tac",)).fit(x, y)


def test_docstring_examples():
    import doctest

    from tac_jax import run, tapped

    assert doctest.testmod(tapped).failed == 0
    assert doctest.testmod(run).failed == 0
