"""Tests for tac_jax.methods: learned confidence, deep ensembles, MC dropout, SNGP."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_helpers import SMOKE

from tac_jax.config_io import load_config
from tac_jax.methods import ConfidenceModel, EnsembleModel, SNGPModel, create_method
from tac_jax.methods import confidence as conf_lib
from tac_jax.methods.ensemble import ensemble_scores, mean_log_probs
from tac_jax.methods.mc_dropout import check_mc_dropout, mc_dropout_logits, mc_dropout_scores
from tac_jax.methods.models import vmapped_optimizer
from tac_jax.methods.sngp import spectral_normalize
from tac_jax.models import MLP, ResNet
from tac_jax.parallel import create_sharded, make_mesh, shard_batch
from tac_jax.train.config import validate_config
from tac_jax.train.setup import build_setup
from tac_jax.train.step import shard_train_step, train_step_fn

X = jnp.asarray(np.random.default_rng(0).uniform(size=(8, 6, 6, 1)), jnp.float32)
Y = jnp.arange(8) % 3


def mlp(dropout=0.0):
    return MLP(num_classes=3, features=(16,), dropout_rate=dropout)


# -- learned confidence ------------------------------------------------------------------


def test_hints_fall_on_about_half_the_batch():
    n = 4000
    probs = jnp.full((n, 2), 0.5)
    onehot = jax.nn.one_hot(jnp.zeros(n, int), 2)
    # c = 0: a hinted example (b = 1) gets p' = onehot, an unhinted one (b = 0) keeps p.
    p, c = conf_lib.hinted_predictions(jax.random.key(0), probs, jnp.zeros(n), onehot)
    hinted = np.asarray(c) == 0.0
    assert 0.46 < hinted.mean() < 0.54
    np.testing.assert_allclose(np.asarray(p)[hinted], np.asarray(onehot)[hinted])
    np.testing.assert_allclose(np.asarray(p)[~hinted], 0.5)
    # c = 1: no hint changes anything.
    p, c = conf_lib.hinted_predictions(jax.random.key(1), probs, jnp.ones(n), onehot)
    np.testing.assert_allclose(p, probs)
    np.testing.assert_allclose(c, 1.0)
    with pytest.raises(ValueError, match="expected probs and onehot"):
        conf_lib.hinted_predictions(jax.random.key(0), probs, jnp.ones(3), onehot)


def test_confidence_loss_is_nll_plus_lambda_times_the_confidence_penalty():
    logits = jnp.array([[2.0, 0.0], [0.0, 1.0]])
    onehot = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    c_logit = jnp.array([0.3, -0.2])
    loss, parts = conf_lib.confidence_loss(jax.random.key(0), logits, c_logit, onehot, 0.5)
    np.testing.assert_allclose(loss, parts["nll"] + 0.5 * parts["confidence_loss"], rtol=1e-6)
    expected = -np.mean(np.log(1.0 / (1.0 + np.exp(-np.array([0.3, -0.2])))))
    np.testing.assert_allclose(parts["confidence_loss"], expected, rtol=1e-5)


def test_lambda_follows_the_budget():
    lam = jnp.float32(0.1)
    np.testing.assert_allclose(conf_lib.update_lambda(lam, jnp.float32(0.2), 0.3), 0.1 / 1.01)
    np.testing.assert_allclose(conf_lib.update_lambda(lam, jnp.float32(0.4), 0.3), 0.1 / 0.99)


def test_perturbation_raises_confidence_and_stays_in_range():
    w = jnp.linspace(-1.0, 1.0, 36).reshape(1, 6, 6, 1)

    def c_logit(x):
        return jnp.sum(x * w, axis=(1, 2, 3))

    x_tilde = conf_lib.perturb_towards_confidence(c_logit, X, 0.05)
    assert np.all(np.asarray(c_logit(x_tilde)) > np.asarray(c_logit(X)))
    assert float(x_tilde.min()) >= 0.0 and float(x_tilde.max()) <= 1.0
    assert float(jnp.max(jnp.abs(x_tilde - X))) <= 0.05 + 1e-6


def test_confidence_model_trains_its_branch_and_lambda():
    model = ConfidenceModel(mlp(), 3)
    variables = model.init(jax.random.key(0), X)
    assert variables["params"]["branch"]["kernel"].shape == (16, 1)
    np.testing.assert_allclose(variables["confidence"]["lmbda"], 0.1)
    out, _ = model.apply(variables, X)
    assert out.logits.shape == (8, 3) and out.extras["confidence"].shape == (8,)
    assert np.all((np.asarray(out.extras["confidence"]) > 0) & (out.extras["confidence"] < 1))
    params = variables.pop("params")
    (loss, (metrics, updates)), grads = jax.value_and_grad(model.objective, has_aux=True)(
        params, variables, {"image": X, "label": Y}, jax.random.key(1)
    )
    assert float(jnp.abs(grads["branch"]["kernel"]).sum()) > 0
    lam = float(updates["confidence"]["lmbda"])
    assert lam in (pytest.approx(0.1 / 1.01), pytest.approx(0.1 / 0.99))
    assert lam == pytest.approx(0.1 / (1.01 if metrics["confidence_loss"] < 0.3 else 0.99))


# -- ensembles and MC dropout --------------------------------------------------------------


def test_ensemble_scores_on_hand_checked_members():
    agree = jnp.log(jnp.array([[[0.8, 0.2]], [[0.8, 0.2]]]))
    s = ensemble_scores(agree)
    np.testing.assert_allclose(s["mean_msp"], [0.8], rtol=1e-6)
    np.testing.assert_allclose(s["neg_mutual_information"], [0.0], atol=1e-6)
    h = -(0.8 * np.log(0.8) + 0.2 * np.log(0.2))
    np.testing.assert_allclose(s["neg_predictive_entropy"], [-h], rtol=1e-5)
    disagree = jnp.log(jnp.array([[[0.9, 0.1]], [[0.1, 0.9]]]))
    s = ensemble_scores(disagree)
    member_h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(s["neg_mutual_information"], [-(np.log(2) - member_h)], rtol=1e-5)
    np.testing.assert_allclose(s["mean_msp"], [0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="expected \\(members, batch, classes\\)"):
        ensemble_scores(jnp.zeros((2, 3)))


def test_ensemble_members_are_independent_networks():
    model = EnsembleModel(mlp(), 3, members=3)
    variables = model.init(jax.random.key(0), X)
    kernels = variables["params"]["base"]["head"]["kernel"]
    assert kernels.shape[0] == 3 and not np.allclose(kernels[0], kernels[1])
    out, _ = model.apply(variables, X)
    members = [
        model.base.apply(
            {"params": jax.tree_util.tree_map(lambda p, i=i: p[i], variables["params"]["base"])}, X
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(out.logits, mean_log_probs(jnp.stack(members)), rtol=1e-5, atol=1e-6)
    # Each member's gradient is that of its own loss alone.
    params = variables["params"]
    grads = jax.grad(
        lambda p: model.objective(p, {}, {"image": X, "label": Y}, jax.random.key(0))[0]
    )(params)
    member0 = jax.tree_util.tree_map(lambda p: p[0], params["base"])

    def own_loss(p):
        logits = model.base.apply({"params": p}, X)
        return jnp.mean(optax.softmax_cross_entropy(logits, jax.nn.one_hot(Y, 3)))

    own = jax.grad(own_loss)(member0)
    chex.assert_trees_all_close(
        jax.tree_util.tree_map(lambda g: g[0], grads["base"]), own, rtol=1e-5, atol=1e-7
    )
    with pytest.raises(ValueError, match="at least 2 ensemble members"):
        EnsembleModel(mlp(), 3, members=1)


def test_vmapped_optimizer_clips_each_member_on_its_own():
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
    params = {"w": jnp.zeros((2, 3))}
    grads = {"w": jnp.array([[10.0, 0.0, 0.0], [0.1, 0.0, 0.0]])}
    vtx = vmapped_optimizer(tx)
    updates, _ = vtx.update(grads, vtx.init(params), params)
    # Member 0 is clipped to norm 1, member 1 (norm 0.1) is not.
    np.testing.assert_allclose(updates["w"][:, 0], [-1.0, -0.1], rtol=1e-6)


def test_ensemble_trains_every_member_in_one_jitted_step():
    config = load_config(SMOKE)
    config.mode = "base"
    config.method.name = "ensemble"
    config.method.members = 3
    setup = build_setup(config, (28, 28, 1), np.uint8)
    mesh = make_mesh()
    state, shardings = create_sharded(setup.init, mesh, jax.random.key(0))
    before = np.asarray(state.params["base"]["head"]["kernel"])
    fn = chex.assert_max_traces(train_step_fn(setup.objective, setup.tx, seed=0), n=1)
    step = shard_train_step(fn, mesh, shardings)
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = {
            "image": rng.integers(0, 256, (32, 28, 28, 1), dtype=np.uint8),
            "label": rng.integers(0, 10, 32).astype(np.int32),
        }
        state, metrics = step(state, shard_batch(batch, mesh))
    after = np.asarray(state.params["base"]["head"]["kernel"])
    assert after.shape[0] == 3
    assert all(not np.allclose(before[m], after[m]) for m in range(3))
    assert 0.0 <= float(metrics["member_accuracy"]) <= 1.0


def test_mc_dropout_samples_masks_and_refuses_models_it_would_misread():
    model = mlp(dropout=0.5)
    variables = model.init(jax.random.key(0), X)
    sampled = mc_dropout_logits(model, variables, X, jax.random.key(1), 4)
    assert sampled.shape == (4, 8, 3)
    assert not np.allclose(sampled[0], sampled[1])
    again = mc_dropout_logits(model, variables, X, jax.random.key(1), 4)
    np.testing.assert_array_equal(sampled, again)
    scores = mc_dropout_scores(sampled)
    assert set(scores) == {"mc_dropout_msp", "mc_dropout_entropy", "mc_dropout_mi"}
    assert np.all(np.asarray(scores["mc_dropout_mi"]) <= 1e-6)
    with pytest.raises(ValueError, match="dropout_rate > 0"):
        check_mc_dropout(mlp(), variables)
    resnet = ResNet(num_classes=3, stage_sizes=(1,), num_filters=4, dropout_rate=0.1)
    rv = resnet.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="without BatchNorm"):
        check_mc_dropout(resnet, rv)
    with pytest.raises(ValueError, match="at least 2 MC dropout samples"):
        mc_dropout_logits(model, variables, X, jax.random.key(1), 1)


# -- SNGP -----------------------------------------------------------------------------------


def test_sngp_normalises_the_body_and_keeps_its_state_in_eval():
    model = SNGPModel(mlp(), 3, coeff=0.5, num_features=64)
    variables = model.init(jax.random.key(0), X)
    assert "head" not in variables["spectral"]
    assert variables["rff"]["kernel"].shape == (16, 64)
    out, updates = model.apply(variables, X, train=False)
    assert out.logits.shape == (8, 3) and out.extras["rff"].shape == (8, 64)
    assert "spectral" not in updates
    _, updates = model.apply(variables, X, train=True)
    u0 = variables["spectral"]["Dense_0"]["kernel"]
    assert not np.allclose(updates["spectral"]["Dense_0"]["kernel"], u0)
    # After enough power iterations the normalised body kernels have norm <= coeff.
    state = {"Dense_0/kernel": u0}
    params = variables["params"]["base"]
    sn, _ = spectral_normalize(params, state, coeff=0.5, power_iterations=50)
    assert np.linalg.norm(np.asarray(sn["Dense_0"]["kernel"]), 2) <= 0.5 + 1e-4
    np.testing.assert_array_equal(sn["head"]["kernel"], params["head"]["kernel"])


# -- configuration ---------------------------------------------------------------------------


def test_create_method_and_config_checks():
    config = load_config(SMOKE)
    assert create_method(config.method, mlp(), 3) is None
    config.method.name = "sngp"
    with pytest.raises(ValueError, match="expected config.mode 'base' for config.method.name"):
        validate_config(config)
    config.mode = "base"
    validate_config(config)
    assert isinstance(create_method(config.method, mlp(), 3), SNGPModel)
    config.method.name = "bayes"
    with pytest.raises(ValueError, match="expected config.method.name in"):
        validate_config(config)


# -- adversarial training of TAC -------------------------------------------------------------


@pytest.mark.parametrize("target", ["base", "tac"])
def test_adversarial_training_attacks_the_first_half_of_each_batch(target):
    from tac_jax.model import TACModel
    from tac_jax.train.objectives import TACLossConfig, adversarial_half, tac_objective

    model = TACModel(mlp(), ("dense1",), 3, mode="addon")
    variables = model.init(jax.random.key(0), X)
    config = TACLossConfig(adversarial_epsilon=0.1, adversarial_steps=3, adversarial_target=target)
    x_adv = adversarial_half(model, variables, X, Y, jax.random.key(1), config)
    np.testing.assert_array_equal(x_adv[4:], X[4:])
    moved = np.abs(np.asarray(x_adv[:4] - X[:4]))
    assert moved.max() <= 0.1 + 1e-6 and moved.max() > 0.05
    params = variables.pop("params")
    loss_adv = tac_objective(model, params, variables, {"image": X, "label": Y},
                             jax.random.key(2), config)[0]  # fmt: skip
    loss = tac_objective(model, params, variables, {"image": X, "label": Y}, jax.random.key(2),
                         TACLossConfig())[0]  # fmt: skip
    assert float(loss_adv) != float(loss)
    with pytest.raises(ValueError, match="adversarial_target"):
        TACLossConfig(adversarial_target="head")


def test_unrolled_members_compute_what_vmapped_members_do():
    vmapped = EnsembleModel(mlp(dropout=0.3), 3, members=3)
    unrolled = EnsembleModel(mlp(dropout=0.3), 3, members=3, member_axis="unroll")
    variables = vmapped.init(jax.random.key(0), X)
    batch = {"image": X, "label": Y}

    def loss_and_grad(model):
        fn = lambda p: model.objective(p, {}, batch, jax.random.key(4))[0]
        return jax.value_and_grad(fn)(variables["params"])

    (loss_v, grad_v), (loss_u, grad_u) = loss_and_grad(vmapped), loss_and_grad(unrolled)
    np.testing.assert_allclose(loss_u, loss_v, rtol=1e-5)
    chex.assert_trees_all_close(grad_u, grad_v, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="member_axis"):
        EnsembleModel(mlp(), 3, members=2, member_axis="pmap")
