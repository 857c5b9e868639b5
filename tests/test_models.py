"""Tests for tac_jax.models: shapes, names, dtypes, BatchNorm, dropout, detached head, padding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.features import feature_dict
from tac_jax.models import MODELS, BottleneckBlock, create_model, default_layers

NUM_CLASSES = 5

# name -> (registry name, tiny fields, input shape, expected intermediate shapes).
SPECS = {
    "mlp": (
        "mlp",
        dict(features=(16, 8), dropout_rate=0.5),
        (2, 6, 6, 1),
        {"dense1": (2, 16), "dense2": (2, 8), "pre_logits": (2, 8)},
    ),
    "mnist_cnn": (
        "mnist_cnn",
        dict(channels=(4, 8, 8, 16)),
        (2, 12, 12, 1),
        {
            "conv1": (2, 10, 10, 4),
            "conv2": (2, 8, 8, 8),
            "conv3": (2, 6, 6, 8),
            "conv4": (2, 4, 4, 16),
            "pre_logits": (2, 16),
        },
    ),
    "wrn": (
        "wrn",
        dict(depth=10, widen_factor=1, dropout_rate=0.3),
        (2, 8, 8, 3),
        {
            "group1": (2, 8, 8, 16),
            "group2": (2, 4, 4, 32),
            "group3": (2, 2, 2, 64),
            "pre_logits": (2, 64),
        },
    ),
    "resnet18": (
        "resnet18",
        dict(num_filters=4, small_inputs=True),
        (2, 8, 8, 3),
        {
            "stage1": (2, 8, 8, 4),
            "stage2": (2, 4, 4, 8),
            "stage3": (2, 2, 2, 16),
            "stage4": (2, 1, 1, 32),
            "pre_logits": (2, 32),
        },
    ),
    "resnet50": (
        "resnet50",
        dict(num_filters=2, stage_sizes=(1, 1, 1, 1)),
        (2, 32, 32, 3),
        {
            "stage1": (2, 8, 8, 8),
            "stage2": (2, 4, 4, 16),
            "stage3": (2, 2, 2, 32),
            "stage4": (2, 1, 1, 64),
            "pre_logits": (2, 64),
        },
    ),
    "vit": (
        "vit_ti",
        dict(hidden_size=16, depth=2, num_heads=2, mlp_dim=32, patch_size=4, dropout_rate=0.1),
        (2, 8, 8, 3),
        {"block1": (2, 5, 16), "block2": (2, 5, 16), "pre_logits": (2, 16)},
    ),
    "vit_gap": (
        "vit",
        dict(hidden_size=16, depth=3, num_heads=2, mlp_dim=32, patch_size=4, pool="gap"),
        (2, 8, 8, 3),
        {"block1": (2, 4, 16), "block2": (2, 4, 16), "block3": (2, 4, 16), "pre_logits": (2, 16)},
    ),
    "text": (
        "text",
        dict(vocab_size=20, max_len=12, hidden_size=16, depth=2, num_heads=2, mlp_dim=32),
        (2, 6),
        {
            "layer1": (2, 6, 16),
            "layer2": (2, 6, 16),
            "padding_mask": (2, 6),
            "pre_logits": (2, 16),
        },
    ),
}


def _inputs(shape: tuple[int, ...]) -> jax.Array:
    rng = np.random.default_rng(1)
    if len(shape) == 2:  # token ids, the last two of the second row padding
        tokens = rng.integers(1, 20, size=shape)
        tokens[1, -2:] = 0
        return jnp.asarray(tokens, jnp.int32)
    return jnp.asarray(rng.uniform(size=shape), jnp.float32)


def _fill(path: tuple, leaf: jax.ShapeDtypeStruct, rng: np.random.Generator) -> jax.Array:
    """Random values for one variable, scaled so activations stay of order one."""
    name = path[-1].key
    if name == "var":
        return jnp.asarray(1.0 + 0.1 * rng.uniform(size=leaf.shape), leaf.dtype)
    if name in ("scale", "mean", "bias"):
        base = 1.0 if name == "scale" else 0.0
        return jnp.asarray(base + 0.1 * rng.normal(size=leaf.shape), leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 1
    return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)


def _variables(model, x):
    # Shapes come from tracing `init`; values from numpy. Compiling the random
    # initialisers of every tiny model would cost most of this file's run time.
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map_with_path(lambda p, s: _fill(p, s, rng), shapes)


@functools.cache
def _setup(key: str, **overrides):
    name, fields, shape, _ = SPECS[key]
    model = create_model(name, NUM_CLASSES, **{**fields, **overrides})
    x = _inputs(shape)
    return model, _variables(model, x), x


@functools.partial(jax.jit, static_argnames=("model", "train", "mutable"))
def _forward(model, variables, x, *, train=False, rng=None, mask=None, mutable=("intermediates",)):
    kwargs = {"mask": mask} if mask is not None else {}
    rngs = {"dropout": rng} if rng is not None else None
    return model.apply(variables, x, train=train, rngs=rngs, mutable=list(mutable), **kwargs)


def _train(model, variables, x, seed):
    """One training-mode pass; batch_stats is mutable even for models without BatchNorm.

    Dropout keys are "rbg" keys: threefry's bit generator takes seconds to compile here.
    """
    return _forward(
        model, variables, x, train=True, rng=jax.random.key(seed, impl="rbg"),
        mutable=("batch_stats", "intermediates"),
    )  # fmt: skip


@pytest.mark.parametrize("key", sorted(SPECS))
def test_logits_and_intermediates(key):
    model, variables, x = _setup(key)
    logits, state = _forward(model, variables, x)
    features = feature_dict(state["intermediates"])
    assert logits.shape == (2, NUM_CLASSES)
    assert logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    expected = SPECS[key][3]
    assert {n: f.shape for n, f in features.items()} == expected
    assert set(model.default_layers()) <= set(features)
    # The head is Dense on pre_logits, nothing else.
    head = variables["params"]["head"]
    np.testing.assert_allclose(
        logits, features["pre_logits"] @ head["kernel"] + head["bias"], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "name, num_classes, shape, num_params",
    [
        # Reference counts of the standard networks (WRN-28-10 on CIFAR, torchvision's
        # ResNets, ViT-B/16 at 224); the MNIST CNN's is worked out by hand.
        ("wrn", 10, (1, 32, 32, 3), 36_479_194),
        ("resnet18", 1000, (1, 224, 224, 3), 11_689_512),
        ("resnet50", 1000, (1, 224, 224, 3), 25_557_032),
        ("vit_b", 1000, (1, 224, 224, 3), 86_567_656),
        ("mnist_cnn", 10, (1, 28, 28, 1), 640 + 73_856 + 295_168 + 1_180_160 + 5_130),
    ],
)
def test_full_size_parameter_counts(name, num_classes, shape, num_params):
    model = create_model(name, num_classes)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape))
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == num_params
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes["params"]))


def test_full_size_intermediate_shapes():
    def shapes(model, shape):
        x = jnp.zeros(shape)
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        _, state = jax.eval_shape(
            functools.partial(model.apply, mutable=["intermediates"]), variables, x
        )
        return {n: f.shape for n, f in feature_dict(state["intermediates"]).items()}

    wrn = shapes(create_model("wrn", 10), (1, 32, 32, 3))
    assert [wrn[f"group{g}"][-1] for g in (1, 2, 3)] == [160, 320, 640]
    assert wrn["group3"] == (1, 8, 8, 640)
    cnn = shapes(create_model("mnist_cnn", 10), (1, 28, 28, 1))
    assert cnn["conv4"] == (1, 20, 20, 512) and cnn["pre_logits"] == (1, 512)
    vit = shapes(create_model("vit_s", 10), (1, 224, 224, 3))
    assert vit["block12"] == (1, 197, 384)


def test_default_layers():
    assert default_layers("mnist_cnn") == ("conv1", "conv2", "conv3", "conv4")
    assert default_layers("wrn") == ("group1", "group2", "group3")
    assert default_layers("resnet50") == ("stage1", "stage2", "stage3", "stage4")
    assert default_layers("vit_b") == ("block3", "block6", "block9", "block12")
    assert default_layers("vit", depth=6) == ("block2", "block3", "block5", "block6")
    assert default_layers("vit", depth=5) == ("block2", "block3", "block4", "block5")
    assert default_layers("vit", depth=2) == ("block1", "block2")
    assert default_layers("mlp", features=(4, 4, 4)) == ("dense1", "dense2", "dense3")
    assert default_layers("text", depth=3, num_classes=2) == ("layer1", "layer2", "layer3")


def test_registry():
    assert {"mlp", "mnist_cnn", "wrn", "resnet18", "resnet50", "vit_ti", "vit_s", "vit_b"} <= set(
        MODELS
    )
    vit = create_model("vit_s", 7, patch_size=8)
    assert (vit.hidden_size, vit.depth, vit.num_heads, vit.mlp_dim) == (384, 12, 6, 1536)
    assert (vit.patch_size, vit.num_classes) == (8, 7)
    assert create_model("vit_ti", 3, depth=2).depth == 2
    assert create_model("resnet50", 3).block_cls is BottleneckBlock
    with pytest.raises(ValueError, match=r"expected a model name among .*'wrn'.*, got 'vgg'"):
        create_model("vgg", 10)


def test_wrn_depth_is_validated():
    model = create_model("wrn", 10, depth=27, widen_factor=1)
    with pytest.raises(ValueError, match=r"expected depth of the form 6n\+4, got 27"):
        model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize("key", ["mnist_cnn", "text"])
def test_bfloat16_compute_keeps_float32_logits_and_params(key):
    model, variables, x = _setup(key, dtype=jnp.bfloat16)
    logits, state = _forward(model, variables, x)
    assert logits.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    features = feature_dict(state["intermediates"])
    assert all(features[n].dtype == jnp.bfloat16 for n in model.default_layers())
    reference, _ = _forward(*_setup(key))
    np.testing.assert_allclose(logits, reference, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("key", ["wrn", "resnet18"])
def test_batchnorm_updates_stats_in_training_only(key):
    model, variables, x = _setup(key)
    train_logits, state = _train(model, variables, x, seed=0)
    old, new = variables["batch_stats"], state["batch_stats"]
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), old, new)
    assert all(jax.tree.leaves(changed))
    if key == "resnet18":
        # Momentum 0.9: the running mean moves a tenth of the way to the batch mean.
        stem = jax.lax.conv_general_dilated(
            x, variables["params"]["stem_conv"]["kernel"], (1, 1), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )  # fmt: skip
        expected = 0.9 * old["stem_norm"]["mean"] + 0.1 * jnp.mean(stem, axis=(0, 1, 2))
        np.testing.assert_allclose(new["stem_norm"]["mean"], expected, rtol=1e-4, atol=1e-5)
    # Evaluation reads the running averages (batch_stats is not even mutable here), so
    # an example's logits do not depend on the rest of the batch, unlike in training.
    other = x.at[1].multiply(0.5)
    first, _ = _forward(model, variables, x)
    np.testing.assert_array_equal(first, _forward(model, variables, x)[0])
    np.testing.assert_allclose(_forward(model, variables, other)[0][0], first[0], rtol=1e-5)
    assert not np.allclose(_train(model, variables, other, 0)[0][0], train_logits[0], rtol=1e-3)


@pytest.mark.parametrize("key", ["mlp", "wrn", "vit", "text"])
def test_dropout_follows_the_rng_in_training_only(key):
    model, variables, x = _setup(key)
    (a, _), (b, _), (c, _) = (_train(model, variables, x, seed) for seed in (0, 1, 0))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    first, _ = _forward(model, variables, x)
    second, _ = _forward(model, variables, x)
    np.testing.assert_array_equal(first, second)


def _cross_entropy_grads(model, variables, x):
    def loss(params):
        logits = model.apply({**variables, "params": params}, x)
        labels = jnp.arange(x.shape[0]) % NUM_CLASSES
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    return jax.jit(jax.grad(loss))(variables["params"])


@pytest.mark.parametrize("key, detach", [("mnist_cnn", True), ("mnist_cnn", False), ("text", True)])
def test_detached_head_passes_no_gradient_to_the_body(key, detach):
    model, variables, x = _setup(key, detach_head=detach)
    grads = _cross_entropy_grads(model, variables, x)
    head = grads.pop("head")
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(head))
    body = sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(grads))
    assert body == 0.0 if detach else body > 0.0


def test_text_padding_does_not_change_logits():
    model, variables, tokens = _setup("text")
    logits, state = _forward(model, variables, tokens)
    np.testing.assert_array_equal(
        feature_dict(state["intermediates"])["padding_mask"], np.asarray(tokens) != 0
    )
    padded = jnp.pad(tokens, ((0, 0), (0, 4)))
    logits_padded, _ = _forward(model, variables, padded)
    np.testing.assert_allclose(logits_padded, logits, rtol=1e-5, atol=1e-5)
    # With an explicit mask, whatever sits under the padding is ignored.
    mask = tokens != 0
    noise = jnp.where(mask, tokens, 7)
    logits_masked, _ = _forward(model, variables, noise, mask=mask)
    np.testing.assert_allclose(logits_masked, logits, rtol=1e-5, atol=1e-5)
    # The second example is shorter: its padding really changes what it reads.
    unmasked, _ = _forward(model, variables, noise)
    assert not np.allclose(unmasked[1], logits[1], atol=1e-3)
    np.testing.assert_allclose(unmasked[0], logits[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "tokens, kwargs",
    [
        (jnp.ones((2, 4), jnp.float32), {}),
        (jnp.ones((2, 4, 1), jnp.int32), {}),
        (jnp.ones((2, 13), jnp.int32), {}),
        (jnp.ones((2, 4), jnp.int32), {"mask": jnp.ones((2, 5), bool)}),
    ],
)
def test_text_rejects_bad_inputs(tokens, kwargs):
    model, variables, _ = _setup("text")
    with pytest.raises(ValueError, match=r"expected .*, got "):
        model.apply(variables, tokens, **kwargs)


def test_images_are_validated():
    model, variables, x = _setup("mnist_cnn")
    with pytest.raises(ValueError, match=r"expected images of shape .*, got shape \(12, 12, 1\)"):
        model.apply(variables, x[0])
    with pytest.raises(ValueError, match=r"expected floating-point inputs .*, got dtype uint8"):
        model.apply(variables, x.astype(jnp.uint8))


def test_real_initialisation_matches_traced_shapes():
    model, variables, x = _setup("mlp")
    real = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
    assert jax.tree.map(jnp.shape, real) == jax.tree.map(jnp.shape, variables)
    logits, _ = _forward(model, real, x)
    assert bool(jnp.all(jnp.isfinite(logits)))
