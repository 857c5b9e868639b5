import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.batching import batched_apply
from tac_jax.scores.logits import (
    energy,
    gen,
    max_logit,
    msp,
    neg_entropy,
    odin,
    react_energy,
    react_threshold,
)

LOG2 = float(np.log(2.0))


def _normal(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _logits(n=9, c=4, seed=0):
    return _normal(n, c, seed=seed, scale=3.0)


def test_logit_scores_by_hand():
    # softmax([log 2, 0, 0]) = [1/2, 1/4, 1/4].
    z = jnp.array([[LOG2, 0.0, 0.0]])
    np.testing.assert_allclose(msp(z), [0.5], rtol=1e-6)
    np.testing.assert_allclose(max_logit(z), [LOG2], rtol=1e-6)
    np.testing.assert_allclose(energy(z), [np.log(4.0)], rtol=1e-6)
    # T = 2: 2·log(e^{log2/2} + 2) = 2·log(√2 + 2).
    np.testing.assert_allclose(energy(z, temperature=2.0), [2 * np.log(np.sqrt(2) + 2)], rtol=1e-6)
    # ½ log ½ + 2·¼ log ¼ = −1.5 log 2.
    np.testing.assert_allclose(neg_entropy(z), [-1.5 * LOG2], rtol=1e-6)


def test_energy_at_unit_temperature_is_logsumexp():
    z = _logits()
    expected = np.log(np.sum(np.exp(z.astype(np.float64)), axis=-1))
    np.testing.assert_allclose(energy(z), expected, rtol=1e-5)


def test_entropy_is_negated():
    z = _logits()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    entropy = -np.sum(p * np.log(p), axis=-1)
    np.testing.assert_allclose(neg_entropy(z), -entropy, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(neg_entropy(z)) <= 0)
    np.testing.assert_allclose(neg_entropy(jnp.zeros((1, 5))), [-np.log(5)], rtol=1e-6)
    # A saturated softmax has entropy 0, not nan.
    np.testing.assert_allclose(neg_entropy(jnp.array([[1e4, 0.0]])), [0.0], atol=1e-6)


def test_confident_scores_above_uniform():
    z = jnp.array([[8.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    for score in (msp, max_logit, energy, neg_entropy):
        s = np.asarray(score(z))
        assert s[0] > s[1], score.__name__
    s = odin(lambda x: x, z, temperature=10.0)
    assert s[0] > s[1]
    s = react_energy(z, jnp.eye(3), jnp.zeros(3), 100.0)
    assert s[0] > s[1]


def test_odin_without_perturbation_is_scaled_msp():
    w1, w2 = _normal(6, 8, seed=0), _normal(8, 3, seed=1)
    model = lambda x: jnp.tanh(x @ w1) @ w2 * 20.0
    x = _normal(5, 6, seed=2)
    for t in (1.0, 1000.0):
        np.testing.assert_allclose(
            odin(model, x, temperature=t, epsilon=0.0), msp(model(x) / t), rtol=1e-6
        )


def test_odin_perturbation_on_a_linear_model():
    a = np.array([[2.0, -1.0, 0.0], [0.5, 1.0, -1.0]])  # (2 inputs, 3 classes)
    model = lambda x: x @ jnp.asarray(a)
    x = np.array([[1.0, 0.2]])
    t, eps = 2.0, 0.1
    # ∇_x log S_ŷ(x; T) = A (e_ŷ − p) / T: the step goes along its sign.
    z = x @ a
    p = np.exp(z / t) / np.exp(z / t).sum()
    grad = a @ (np.eye(3)[z.argmax()] - p[0]) / t
    x_tilde = x + eps * np.sign(grad)
    z_tilde = x_tilde @ a / t
    expected = np.exp(z_tilde).max() / np.exp(z_tilde).sum()
    score = odin(model, jnp.asarray(x), temperature=t, epsilon=eps)
    np.testing.assert_allclose(score, [expected], rtol=1e-5)
    assert score[0] > msp(jnp.asarray(z) / t)[0]


def test_react_with_huge_clip_is_energy():
    f = np.maximum(_normal(7, 5, seed=0), 0.0)
    w, b = _normal(5, 3, seed=1), _normal(3, seed=2)
    np.testing.assert_allclose(react_energy(f, w, b, 1e9), energy(f @ w + b), rtol=1e-6)


def test_react_clips_and_threshold_is_a_percentile():
    # f = [3, 0.5] clipped at 1 → logits [1, 0.5]; energy log(e + e^½).
    s = react_energy(jnp.array([[3.0, 0.5]]), jnp.eye(2), jnp.zeros(2), 1.0)
    np.testing.assert_allclose(s, [np.log(np.e + np.exp(0.5))], rtol=1e-6)
    f = np.random.default_rng(0).uniform(size=(40, 6)).astype(np.float32)
    for q in (50.0, 90.0):
        np.testing.assert_allclose(react_threshold(f, q), np.percentile(f, q), rtol=1e-5)


def test_jit_equals_eager_and_batched_equals_one_shot():
    z = _logits(n=11)
    f = np.abs(_logits(n=11, c=5, seed=1))
    w = _normal(5, 4, seed=3)
    b = np.zeros(4, np.float32)

    def all_scores(batch):
        z, f = batch
        return {
            "msp": msp(z),
            "max_logit": max_logit(z),
            "energy": energy(z, 2.0),
            "entropy": neg_entropy(z),
            "odin": odin(lambda x: x @ w, f, temperature=100.0),
            "react": react_energy(f, w, b, 1.0),
        }

    with jax.disable_jit():
        eager = all_scores((z, f))
    jitted = jax.jit(all_scores)((z, f))
    batched = batched_apply(jax.jit(all_scores), (z, f), batch_size=4)
    for name in eager:
        assert batched[name].shape == (11,)
        np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched[name], eager[name], rtol=1e-5, atol=1e-6)


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(
        ValueError, match=r"expected logits of rank 2 \(batch, classes\), got shape \(3,\)"
    ):
        msp(jnp.ones(3))
    with pytest.raises(ValueError, match="expected a positive temperature, got 0"):
        energy(jnp.ones((2, 3)), temperature=0.0)
    with pytest.raises(
        ValueError, match=r"expected a head kernel of shape \(4, classes\), got \(5, 3\)"
    ):
        react_energy(jnp.ones((2, 4)), jnp.ones((5, 3)), jnp.ones(3), 1.0)
    with pytest.raises(ValueError, match=r"expected a head bias of shape \(3,\), got \(2,\)"):
        react_energy(jnp.ones((2, 4)), jnp.ones((4, 3)), jnp.ones(2), 1.0)
    with pytest.raises(ValueError, match="expected a percentile in"):
        react_threshold(jnp.ones((2, 4)), 120)
    with pytest.raises(ValueError, match="expected one row of logits per input, 3, got 1"):
        odin(lambda x: jnp.ones((1, 2)), jnp.ones((3, 2)))


def test_registry_entries_each_hold_their_score():
    """One entry per score, from its family's module, in report order."""
    from tac_jax.evaluate.engine.registry import SCORES, WHY
    from tac_jax.scores import logits as logits_lib

    posthoc = [n for n, e in SCORES.items() if e.family in ("logits", "feature", "gradient")]
    assert posthoc[:11] == [
        "msp",
        "max_logit",
        "energy",
        "entropy",
        "gen",
        "odin",
        "mahalanobis",
        "mahalanobis_multi",
        "knn",
        "react",
        "vim",
    ]
    for name, entry in SCORES.items():
        assert entry.name == name and entry.formula and callable(entry.compute)
        assert set(entry.needs) <= set(WHY) | {"fit"}, name
        # What reads fitted statistics says so to the capability check.
        assert entry.fitted == ("fit" in entry.needs), name
        assert set(entry.uses) <= set(SCORES), name
    assert [e.name for e in logits_lib.ENTRIES] == ["msp", "max_logit", "energy", "entropy",
                                                    "gen", "odin"]  # fmt: skip
    assert SCORES["odin"].pass_name == "odin" and SCORES["odin"].needs == ("input",)


def test_gen_by_hand():
    p = np.array([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    z = jnp.asarray(np.log(p), jnp.float32)

    def by_hand(q, gamma):
        return -np.sum(q**gamma * (1 - q) ** gamma, axis=-1)

    np.testing.assert_allclose(gen(z), by_hand(p, 0.1), rtol=1e-5)
    np.testing.assert_allclose(gen(z, gamma=0.5), by_hand(p, 0.5), rtol=1e-5)
    # Only the M largest probabilities count: 0.5 and 0.3 for the first row.
    np.testing.assert_allclose(gen(z, top=2)[0], by_hand(p[:1, :2], 0.1)[0], rtol=1e-5)
    with pytest.raises(ValueError, match="expected a positive gamma"):
        gen(z, gamma=0.0)
