import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.batching import batched_apply
from tac_jax.scores.tac import closest_code_distance, code_inner_product, tac_predict, tac_scores

CODES = jnp.array([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, 1.0, -1.0]])


def test_hamming_decoding_by_hand():
    a = jnp.array([[0.2, -3.0, 0.1, -0.5], [-0.1, 0.4, 2.0, -9.0]])
    # sign(a)=[+,-,+,-] matches code 1 exactly; row 2 sign [-,+,+,-] is code 2.
    np.testing.assert_array_equal(tac_predict(a, CODES), [1, 2])


def test_inner_product_and_distances_by_hand():
    a = jnp.array([[0.5, 1.0, -1.0, 0.0]])
    np.testing.assert_allclose(code_inner_product(a, CODES, jnp.array([0])), [2.5])
    np.testing.assert_allclose(code_inner_product(a, CODES, jnp.array([2])), [-0.5])
    # L1 to codes: [1.5, 4.5, 3.5] → 1.5.  L2²: [0.25+0+0+1, 0.25+4+4+1, 2.25+0+4+1] → √1.25.
    np.testing.assert_allclose(closest_code_distance(a, CODES, 1), [1.5])
    np.testing.assert_allclose(closest_code_distance(a, CODES, 2), [np.sqrt(1.25)], rtol=1e-6)


def test_tac_scores_one_call_signs():
    a = jnp.array([[1.0, 1.0, -1.0, -1.0], [0.1, 0.1, -0.1, -0.1]])
    logits = jnp.array([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    s = tac_scores(a, logits, CODES)
    np.testing.assert_array_equal(s["prediction"], [0, 0])
    np.testing.assert_array_equal(s["tac_prediction"], [0, 0])
    # The profile on its code is more confident than the faint one, under every score.
    for name in ("tac", "tac_tac_pred", "tac_neg_l1", "tac_neg_l2"):
        assert s[name][0] > s[name][1], name
    np.testing.assert_allclose(s["tac"], [4.0, 0.4], rtol=1e-6)
    np.testing.assert_allclose(s["tac_neg_l1"], [0.0, -3.6], rtol=1e-6)


def test_tac_scores_jit_equals_eager():
    a = jax.random.normal(jax.random.key(0), (6, 4))
    logits = jax.random.normal(jax.random.key(1), (6, 3))
    jitted = tac_scores(a, logits, CODES)
    with jax.disable_jit():
        eager = tac_scores(a, logits, CODES)
    for name in jitted:
        np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-5, atol=1e-6)


def test_batched_scoring_pads_and_compiles_once():
    a = np.asarray(jax.random.normal(jax.random.key(0), (23, 4)))
    logits = np.asarray(jax.random.normal(jax.random.key(1), (23, 3)))
    traces = []

    @jax.jit
    def score(batch):
        traces.append(batch["a"].shape)
        return tac_scores(batch["a"], batch["logits"], CODES)

    out = batched_apply(score, {"a": a, "logits": logits}, batch_size=8)
    full = tac_scores(jnp.asarray(a), jnp.asarray(logits), CODES)
    assert traces == [(8, 4)]  # 3 batches, the last padded: one trace.
    for name in full:
        assert out[name].shape == (23,)
        np.testing.assert_allclose(out[name], full[name], rtol=1e-5, atol=1e-6)


def test_batched_apply_rejects_mismatched_and_empty():
    with pytest.raises(ValueError, match=r"one leading size, got sizes \[3, 4\]"):
        batched_apply(lambda b: b, {"a": np.ones(3), "b": np.ones(4)}, 2)
    with pytest.raises(ValueError, match="at least one example"):
        batched_apply(lambda b: b, np.ones((0, 2)), 2)


def test_logits_shape_checked():
    with pytest.raises(ValueError, match=r"expected logits of shape \(2, 3\), got \(2, 5\)"):
        tac_scores(jnp.ones((2, 4)), jnp.ones((2, 5)), CODES)
