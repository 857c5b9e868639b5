import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.batching import batched_apply
from tac_jax.scores.gradient import gradnorm


def _kl_uniform(kernel, bias, f):
    """KL(u ‖ softmax(f W + b)) for one example."""
    log_p = jax.nn.log_softmax(f @ kernel + bias)
    c = log_p.shape[-1]
    return jnp.sum((1.0 / c) * (jnp.log(1.0 / c) - log_p))


def _head(d=6, c=4):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(d, c)).astype(np.float32)
    bias = rng.normal(size=(c,)).astype(np.float32)
    f = (rng.normal(size=(9, d)) * 2.0).astype(np.float32)
    return kernel, bias, f


def test_closed_form_matches_autodiff_per_example():
    kernel, bias, f = _head()
    per_example = jax.jit(jax.vmap(jax.grad(_kl_uniform), in_axes=(None, None, 0)))
    grads = np.asarray(per_example(kernel, bias, f))
    assert grads.shape == (9, 6, 4)
    expected = np.abs(grads).sum(axis=(1, 2))
    np.testing.assert_allclose(gradnorm(f, f @ kernel + bias), expected, rtol=1e-5)


def test_by_hand_and_in_distribution_scores_higher():
    # f = [1, −2], softmax = [¾, ¼]: ‖f‖₁ = 3, ‖p − ½‖₁ = ½ → 1.5.
    z = jnp.array([[jnp.log(3.0), 0.0]])
    np.testing.assert_allclose(gradnorm(jnp.array([[1.0, -2.0]]), z), [1.5], rtol=1e-6)
    # A uniform prediction has no gradient towards uniform: the least in-distribution.
    f = jnp.ones((2, 3))
    s = gradnorm(f, jnp.array([[6.0, 0.0], [0.0, 0.0]]))
    assert s[1] == 0.0 and s[0] > s[1]


def test_jit_eager_and_batched_agree():
    kernel, bias, f = _head()
    z = f @ kernel + bias
    with jax.disable_jit():
        eager = gradnorm(f, z)
    np.testing.assert_allclose(gradnorm(f, z), eager, rtol=1e-6)
    batched = batched_apply(jax.jit(lambda b: gradnorm(*b)), (f, z), 4)
    np.testing.assert_allclose(batched, eager, rtol=1e-6)


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="expected as many logit rows as feature rows, 3, got 2"):
        gradnorm(jnp.ones((3, 4)), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"expected penultimate features of rank 2 \(batch, dim\)"):
        gradnorm(jnp.ones((3, 4, 1)), jnp.ones((3, 5)))
    with pytest.raises(
        ValueError, match=r"expected logits of rank 2 \(batch, classes\), got shape \(3,\)"
    ):
        gradnorm(jnp.ones((3, 4)), jnp.ones(3))
