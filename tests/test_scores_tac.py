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


# The scores that read the diagnostics: hand-worked values on CODES (C = 3, M = 4).
def test_new_tac_scores_by_hand():
    from tac_jax.scores.tac import (
        clipped_inner_product,
        distance_probability,
        predicted_l1,
        soft_predict,
    )

    a = jnp.array([[3.0, 0.5, -1.0, 0.0]])
    pred = jnp.array([0])
    # |a − K_0| = [2, 0.5, 0, 1] → 3.5.
    np.testing.assert_allclose(predicted_l1(a, CODES, pred), [-3.5])
    # clip(a) = [1, 0.5, -1, 0] · [1, 1, -1, -1] = 1 + 0.5 + 1 + 0.
    np.testing.assert_allclose(clipped_inner_product(a, CODES, pred), [2.5])
    # Mean L1 to each code: K_0 3.5/4, K_1 [2, 1.5, 2, 1] 6.5/4, K_2 [4, 0.5, 2, 1] 7.5/4.
    d = np.array([3.5, 6.5, 7.5]) / 4
    p = np.exp(-2.0 * d) / np.exp(-2.0 * d).sum()
    np.testing.assert_allclose(distance_probability(a, CODES, pred, 2.0), [p[0]], rtol=1e-6)
    np.testing.assert_allclose(
        distance_probability(a, CODES, jnp.array([2]), 2.0), [p[2]], rtol=1e-6
    )
    # Soft decoding reads magnitudes. sign(b) = [+, +, +, −] agrees with every code in 3
    # places: Hamming decoding ties and picks 0. L1: K_0 0.9+0.95+4+0 = 5.85,
    # K_1 0.9+1.05+2+0 = 3.95, K_2 1.1+0.95+2+0 = 4.05: soft decoding picks 1.
    b = jnp.array([[0.1, 0.05, 3.0, -1.0]])
    assert int(tac_predict(b, CODES)[0]) == 0 and int(soft_predict(b, CODES)[0]) == 1


def test_tac_scores_higher_is_closer_to_the_predicted_code():
    near = jnp.array([[0.9, 0.9, -0.9, -0.9]])
    far = jnp.array([[0.1, -0.1, 0.1, 0.1]])
    logits = jnp.array([[5.0, 0.0, 0.0]])
    s_near, s_far = tac_scores(near, logits, CODES), tac_scores(far, logits, CODES)
    for name in ("tac_pred_l1", "tac_clip", "tac_prob"):
        assert float(s_near[name][0]) > float(s_far[name][0]), name
    assert 0.0 < float(s_far["tac_prob"][0]) < float(s_near["tac_prob"][0]) < 1.0


def test_blocks_and_deepest_blocks():
    from tac_jax.scores.tac import blocks, deepest_blocks

    x = jnp.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(blocks(x, 2)[1, 2], [10.0, 11.0])
    np.testing.assert_array_equal(deepest_blocks(x, 2, 2), x[:, 2:])
    np.testing.assert_array_equal(deepest_blocks(x, 2, 0), x)
    np.testing.assert_array_equal(deepest_blocks(x, 2, 5), x)
    with pytest.raises(ValueError, match="divisible by the block width 4"):
        deepest_blocks(x, 4, 1)
    with pytest.raises(ValueError, match="non-negative block count"):
        deepest_blocks(x, 2, -1)


def test_block_agreements_and_weighted_agreement():
    from tac_jax.scores.tac import block_agreements, weighted_agreement

    a = jnp.array([[2.0, -0.5, 1.0, 1.0]])
    # K_1 = [1, -1, 1, -1]: clipped products [1, 0.5 | 1, -1] → means [0.75, 0].
    g = block_agreements(a, CODES, jnp.array([1]), 2)
    np.testing.assert_allclose(g, [[0.75, 0.0]])
    np.testing.assert_allclose(weighted_agreement(g, jnp.array([2.0, 5.0])), [1.5])


def test_fit_block_weights_finds_the_informative_layer():
    from tac_jax.scores.tac import fit_block_weights

    rng = np.random.default_rng(0)
    n = 4000
    correct = rng.random(n) < 0.8
    informative = np.where(correct, 0.6, -0.2) + 0.3 * rng.normal(size=n)
    noise = rng.uniform(-1, 1, n)
    misleading = np.where(correct, -0.3, 0.3) + 0.3 * rng.normal(size=n)
    w, b = fit_block_weights(np.stack([noise, informative, misleading], 1), correct)
    assert w.shape == (3,) and w.dtype == np.float32
    # The signal gets the weight; a layer that agrees *less* when right is dropped (≥ 0).
    assert w[1] > 1.0 and w[0] < 0.2 * w[1] and w[2] == 0.0
    # The fitted model is calibrated in the mean: it predicts the error rate.
    z = np.stack([noise, informative, misleading], 1) @ w + b
    assert abs(np.mean(1 / (1 + np.exp(-z))) - correct.mean()) < 0.01
    with pytest.raises(ValueError, match="both errors and correct"):
        fit_block_weights(np.ones((5, 2)), np.ones(5, bool))
    with pytest.raises(ValueError, match="expected \\(N, L\\) agreements"):
        fit_block_weights(np.ones(5), np.ones(5, bool))


def test_fused_confidence_adds_the_standardised_scores():
    from tac_jax.scores.tac import fused_confidence

    stats = jnp.array([1.0, 2.0, -6.0, 4.0])
    # z_w = (3 − 1)/2 = 1, z_m = (−10 + 6)/4 = −1: 1 + λ·(−1).
    out = fused_confidence(jnp.array([3.0, 1.0]), jnp.array([-10.0, -6.0]), stats, 0.25)
    np.testing.assert_allclose(out, [0.75, 0.0])
    # λ = 0 is the layer-weighted score alone, standardised.
    np.testing.assert_allclose(
        fused_confidence(jnp.array([5.0]), jnp.array([0.0]), stats, 0.0), [2.0]
    )
