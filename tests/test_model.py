import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tac_jax.model import TACModel
from tac_jax.train.objectives import TACLossConfig, tac_objective


class TinyNet(nn.Module):
    """BatchNorm and dropout, so frozen inference mode is really exercised."""

    num_classes: int = 4
    detach_head: bool = False

    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.Conv(16, (3, 3), name="conv1")(x)
        h = nn.BatchNorm(use_running_average=not train, name="bn1")(h)
        h = nn.relu(h)
        self.sow("intermediates", "block1", h)
        h = nn.relu(nn.Conv(32, (3, 3), name="conv2")(h))
        h = nn.Dropout(0.5, deterministic=not train)(h)
        self.sow("intermediates", "block2", h)
        h = h.mean((1, 2))
        self.sow("intermediates", "pre_logits", h)
        if self.detach_head:
            h = jax.lax.stop_gradient(h)
        return nn.Dense(self.num_classes, name="head")(h)


X = jax.random.uniform(jax.random.key(0), (8, 10, 10, 1))
BATCH = {"image": X, "label": jnp.arange(8) % 4}


@functools.cache
def _trained_base():
    base = TinyNet()
    variables = base.init(jax.random.key(1), X)
    # One training-mode pass so the running statistics are not the trivial init.
    _, updates = base.apply(
        variables, X, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"]
    )
    return base, {**variables, **updates}


def _grads(model, variables, key=None):
    key = jax.random.key(5) if key is None else key
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    grad_fn = jax.jit(jax.grad(lambda p, k: tac_objective(model, p, rest, BATCH, k)[0]))
    return grad_fn(params, key)


def test_layers_resolved_codes_and_activation_shape():
    model = TACModel(TinyNet(), ["block*"], num_classes=4)
    variables = model.init(jax.random.key(0), X)
    assert model.layers == ("block1", "block2")
    assert model.codes.matrix.shape == (4, 16) and model.codes.width == 8
    out, _ = model.apply(variables, X)
    assert out.activation.shape == (8, 16) and out.logits.shape == (8, 4)
    assert set(out.features) == {"block1", "block2", "pre_logits"}


def test_addon_base_outputs_bit_identical_even_in_train_mode():
    base, base_vars = _trained_base()
    model = TACModel(base, ["block1", "block2"], num_classes=4, mode="addon")
    variables = model.with_base(model.init(jax.random.key(0), X), base_vars)
    expected = base.apply(base_vars, X, train=False)
    out, updates = model.apply(variables, X, train=True, rngs={"dropout": jax.random.key(9)})
    np.testing.assert_array_equal(out.logits, expected)
    assert updates == {}  # No batch statistics move in a frozen base.


def test_addon_base_gradients_exactly_zero_head_gradients_not():
    base, base_vars = _trained_base()
    model = TACModel(base, ["block1", "block2"], num_classes=4, mode="addon")
    variables = model.with_base(model.init(jax.random.key(0), X), base_vars)
    grads = _grads(model, variables)
    for leaf in jax.tree_util.tree_leaves(grads["base"]):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads["tac"]))


def test_addon_training_changes_only_tac_parameters():
    base, base_vars = _trained_base()
    model = TACModel(base, ["block1", "block2"], num_classes=4, mode="addon")
    variables = model.with_base(model.init(jax.random.key(0), X), base_vars)
    params = variables["params"]
    tx = model.optimizer(optax.adamw(1e-2, weight_decay=0.1), params)
    opt_state = tx.init(params)
    for step in range(3):
        grads = _grads(model, {**variables, "params": params}, jax.random.key(step))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    for before, after in zip(
        jax.tree_util.tree_leaves(base_vars["params"]),
        jax.tree_util.tree_leaves(params["base"]),
        strict=True,
    ):
        np.testing.assert_array_equal(before, after)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(variables["params"]["tac"]),
            jax.tree_util.tree_leaves(params["tac"]),
            strict=True,
        )
    ]
    assert all(moved)
    out, _ = model.apply({**variables, "params": params}, X)
    np.testing.assert_array_equal(out.logits, base.apply(base_vars, X))


def test_scratch_mode_trains_body_and_detaches_head():
    model = TACModel(TinyNet(), ["block1", "block2"], num_classes=4, mode="scratch")
    assert model.base.detach_head
    variables = model.init(jax.random.key(0), X)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    key = jax.random.key(3)
    loss_fn = lambda p: tac_objective(model, p, rest, BATCH, key)
    (_, (metrics, updates)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    assert float(jnp.abs(grads["base"]["conv1"]["kernel"]).max()) > 0
    assert float(jnp.abs(grads["base"]["head"]["kernel"]).max()) > 0
    assert "batch_stats" in updates and "head_ce" in metrics
    # The body's gradient comes from TAC alone: dropping the head's CE leaves it unchanged.
    no_head = TACLossConfig(head_weight=0.0)
    grads_no_head = jax.grad(lambda p: tac_objective(model, p, rest, BATCH, key, no_head)[0])(
        params
    )
    np.testing.assert_allclose(
        grads["base"]["conv1"]["kernel"],
        grads_no_head["base"]["conv1"]["kernel"],
        rtol=1e-5,
        atol=1e-7,
    )


def test_learnable_scale_gets_a_gradient_fixed_scale_is_no_parameter():
    fixed = TACModel(TinyNet(), ["block2"], num_classes=4)
    assert "scale" not in fixed.init(jax.random.key(0), X)["params"]
    learned = TACModel(TinyNet(), ["block2"], num_classes=4, learn_scale=True, scale=3.0)
    variables = learned.init(jax.random.key(0), X)
    assert float(variables["params"]["scale"]) == 3.0
    assert float(_grads(learned, variables)["scale"]) != 0.0


def test_capture_modules_we_do_not_own():
    class Plain(nn.Module):  # No sow: features come from capture_intermediates.
        @nn.compact
        def __call__(self, x, *, train=False):
            h = nn.relu(nn.Dense(16, name="hidden")(x))
            return nn.Dense(3, name="out")(h)

    x = jnp.ones((5, 7))
    model = TACModel(Plain(), ["hidden"], num_classes=3, capture="modules")
    variables = model.init(jax.random.key(0), x)
    out, _ = model.apply(variables, x)
    assert out.activation.shape == (5, model.codes.length)
    logits = Plain().apply({"params": variables["params"]["base"]}, x)
    np.testing.assert_array_equal(out.logits, logits)


def test_jit_equals_eager_and_vmap_over_seeds():
    model = TACModel(TinyNet(), ["block1", "block2"], num_classes=4)
    variables = model.init(jax.random.key(0), X)
    eager, _ = model.apply(variables, X)
    jitted, _ = jax.jit(lambda v, x: model.apply(v, x))(variables, X)
    np.testing.assert_allclose(jitted.activation, eager.activation, rtol=1e-5, atol=1e-6)
    inits = jax.vmap(lambda k: model.init(k, X)["params"]["tac"])(
        jax.random.split(jax.random.key(1), 2)
    )
    for i in range(2):
        one = model.init(jax.random.split(jax.random.key(1), 2)[i], X)["params"]["tac"]
        for a, b in zip(
            jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(inits), strict=True
        ):
            np.testing.assert_allclose(a, b[i], rtol=1e-6)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match=r"expected layer 'block9'.*got no match"):
        TACModel(TinyNet(), ["block9"], num_classes=4).init(jax.random.key(0), X)
    with pytest.raises(ValueError, match=r"expected at most 2\*\*16 = 65536 classes"):
        TACModel(TinyNet(), ["block1"], 100000, code_kind="random", code_width=16).init(
            jax.random.key(0), X
        )
    model = TACModel(TinyNet(), ["block1"], num_classes=4)
    variables = model.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match=r"expected inputs of rank 4.*got shape \(10, 10, 1\)"):
        model.apply(variables, X[0])
    rest = {k: v for k, v in variables.items() if k != "params"}
    bad = {"image": X, "label": jnp.zeros(5, jnp.int32)}
    with pytest.raises(ValueError, match="expected as many labels as inputs, got 5 labels for 8"):
        tac_objective(model, variables["params"], rest, bad, jax.random.key(0))
    with pytest.raises(ValueError, match="TAC mode"):
        TACModel(TinyNet(), ["block1"], 4, mode="frozen")
