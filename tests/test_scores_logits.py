import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.batching import batched_apply
from tac_jax.scores.logits import (
    PNORM_GRID,
    doctor,
    doctor_beta,
    energy,
    gen,
    max_logit,
    maxlogit_pnorm,
    msp,
    neg_entropy,
    odin,
    react_energy,
    react_threshold,
    select_pnorm,
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
    for score in (msp, max_logit, energy, neg_entropy, doctor, doctor_beta):
        s = np.asarray(score(z))
        assert s[0] > s[1], score.__name__
    for p in (*PNORM_GRID, np.inf):
        s = np.asarray(maxlogit_pnorm(z, p))
        assert s[0] > s[1], p
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
            "doctor": doctor(z),
            "doctor_beta": doctor_beta(z),
            "maxlogit_pnorm": maxlogit_pnorm(z, 3.0),
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
    assert posthoc[:14] == [
        "msp",
        "max_logit",
        "energy",
        "entropy",
        "gen",
        "odin",
        "doctor",
        "doctor_beta",
        "maxlogit_pnorm",
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
                                                    "gen", "odin", "doctor", "doctor_beta",
                                                    "maxlogit_pnorm"]  # fmt: skip
    assert SCORES["odin"].pass_name == "odin" and SCORES["odin"].needs == ("input",)
    pnorm = SCORES["maxlogit_pnorm"]
    assert pnorm.needs == ("fit", "validation") and pnorm.fit_held is not None
    assert pnorm.fit is None and SCORES["doctor"].needs == ()


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


def _softmax64(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_doctor_by_hand():
    # softmax([log 2, 0, 0]) = [1/2, 1/4, 1/4]: Σ p² = 3/8, D_α = (5/8)/(3/8), D_β = 1.
    z = jnp.array([[LOG2, 0.0, 0.0]])
    np.testing.assert_allclose(doctor(z), [-5 / 3], rtol=1e-6)
    np.testing.assert_allclose(doctor_beta(z), [-1.0], rtol=1e-6)
    # Uniform: D_α = D_β = C − 1; one-hot: 0.
    np.testing.assert_allclose(doctor(jnp.zeros((1, 5))), [-4.0], rtol=1e-6)
    np.testing.assert_allclose(doctor_beta(jnp.zeros((1, 5))), [-4.0], rtol=1e-6)
    np.testing.assert_allclose(doctor(jnp.array([[1e4, 0.0]])), [0.0], atol=1e-12)
    z = _logits(n=20, c=6)
    p = _softmax64(z)
    gini = np.sum(p**2, axis=-1)
    np.testing.assert_allclose(doctor(z), -(1 - gini) / gini, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(doctor_beta(z), -(1 - p.max(-1)) / p.max(-1), rtol=1e-4, atol=1e-6)
    # Ranks as Σ p² (D_α) and as the MSP (D_β) do.
    assert (np.argsort(np.asarray(doctor(z))) == np.argsort(gini)).all()
    assert (np.argsort(np.asarray(doctor_beta(z))) == np.argsort(p.max(-1))).all()


def test_doctor_keeps_saturated_predictions_apart():
    # Both MSPs round to 1 in float32; 1 − p_ŷ is summed from the other classes instead.
    z = jnp.array([[30.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    assert msp(z)[0] == msp(z)[1] == 1.0
    for score in (doctor, doctor_beta):
        s = np.asarray(score(z), np.float64)
        assert s[0] < s[1] < 0, score.__name__
    np.testing.assert_allclose(doctor_beta(z), -2 * np.exp([-30.0, -40.0]), rtol=1e-5)


def _pnorm64(z, p):
    c = np.asarray(z, np.float64)
    c = c - c.mean(-1, keepdims=True)
    norm = 1.0 if p == 0 else np.linalg.norm(c, ord=p, axis=-1)
    return c.max(-1) / norm


def test_maxlogit_pnorm_by_hand():
    # Centred [3, 0, 0] is (2, −1, −1): ‖·‖₁ = 4, ‖·‖₂ = √6, ‖·‖₃ = 10^⅓, ‖·‖∞ = 2.
    z = jnp.array([[3.0, 0.0, 0.0]])
    expected = {0.0: 2.0, 1.0: 0.5, 2.0: 2 / np.sqrt(6), 3.0: 2 / 10 ** (1 / 3), np.inf: 1.0}
    for p, value in expected.items():
        np.testing.assert_allclose(maxlogit_pnorm(z, p), [value], rtol=1e-6, err_msg=str(p))
    # Equal logits: 0, not nan.
    np.testing.assert_allclose(maxlogit_pnorm(jnp.ones((2, 4)), 2.0), [0.0, 0.0])
    np.testing.assert_allclose(maxlogit_pnorm(jnp.ones((1, 4)), 0.0), [0.0])
    z = _logits(n=15, c=7)
    for p in (*PNORM_GRID, np.inf):
        np.testing.assert_allclose(maxlogit_pnorm(z, p), _pnorm64(z, p), rtol=1e-5, err_msg=str(p))
        if p:  # scale-free, and no overflow of |z|^9 at logits of 10⁴
            np.testing.assert_allclose(
                maxlogit_pnorm(z * 1e4, p), _pnorm64(z, p), rtol=1e-5, err_msg=str(p)
            )
    # p traced: one compilation serves every order.
    traced = jax.jit(lambda z, p: maxlogit_pnorm(z, p))
    for p in (0.0, 2.0, np.inf):
        np.testing.assert_allclose(traced(z, jnp.float32(p)), _pnorm64(z, p), rtol=1e-5)


# Four held-out predictions (two right, two wrong) that only p = 2 separates: the
# right ones above both wrong ones, at a margin of 0.008 (p = 1 puts the last wrong one,
# p ≥ 3 the first wrong one above the first right one; MSP and p = 0 also fail).
_ONLY_P2 = np.array(
    [
        [-3.0, -1.0, 1.0, -5.0],
        [2.0, -5.0, -3.0, -4.0],
        [-1.0, 1.0, -6.0, 5.0],
        [-3.0, 6.0, -5.0, 3.0],
    ],
    np.float32,
)
_ONLY_P2_CORRECT = np.array([True, True, False, False])


def test_select_pnorm_picks_the_order_that_separates():
    from tac_jax.metrics import aurc, e_aurc

    z, correct = _ONLY_P2, _ONLY_P2_CORRECT
    for p in (*PNORM_GRID, "msp"):
        s = np.asarray(msp(z) if p == "msp" else maxlogit_pnorm(z, p))
        assert (s[correct].min() > s[~correct].max()) == (p == 2.0), p
    assert select_pnorm(z, correct) == (2.0, False)
    assert e_aurc(np.asarray(maxlogit_pnorm(z, 2.0)), correct) == pytest.approx(0.0, abs=1e-12)
    # On random data: the order of least AURC, the first one on a tie.
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(300, 5)) * rng.gamma(2.0, 2.0, size=(300, 1))).astype(np.float32)
    correct = rng.random(300) < 0.7
    areas = [aurc(_pnorm64(z, p), correct) for p in PNORM_GRID]
    chosen, use_msp = select_pnorm(z, correct, msp_fallback=False)
    assert not use_msp and chosen == PNORM_GRID[int(np.argmin(areas))]


def test_select_pnorm_falls_back_to_msp():
    # The right prediction has the larger logits, the wrong one the larger normalised
    # margin: MSP and p = 0 rank them right, every p ≥ 1 wrong; the tie goes to MSP.
    z = np.array([[30.0, 27.0, 0.0], [2.0, 0.0, 0.0]], np.float32)
    correct = np.array([True, False])
    assert select_pnorm(z, correct) == (0.0, True)
    assert select_pnorm(z, correct, msp_fallback=False) == (0.0, False)
    assert select_pnorm(z, correct, grid=(2.0, 1.0), msp_fallback=False) == (2.0, False)


def test_select_pnorm_needs_errors_and_the_engine_leaves_the_score_out():
    from tac_jax.evaluate.engine import fitted as fitted_lib
    from tac_jax.evaluate.engine.registry import SCORES
    from tac_jax.evaluate.engine.scoring import compute_scores, drop_unfitted
    from tac_jax.scores.entry import HeldData

    z = _logits(n=12, c=3)
    labels = z.argmax(1)
    with pytest.raises(ValueError, match="both errors and correct predictions.*every one correct"):
        select_pnorm(z, labels == labels)
    with pytest.raises(ValueError, match="every one wrong"):
        select_pnorm(z, labels != labels)
    with pytest.raises(ValueError, match=r"expected \(N, C\) held-out logits"):
        select_pnorm(z[0], labels)
    with pytest.raises(ValueError, match="at least one order"):
        select_pnorm(z, labels == 0, grid=())
    # A validation split without errors: the fit is recorded as failed, the score left
    # out of the default set and refused by name.
    fitted = fitted_lib.Fitted()
    fitted_lib.fit_held_out(fitted, ["maxlogit_pnorm", "msp"], HeldData({"logits": z}, labels,
                            None, 0, lambda wanted: {}))  # fmt: skip
    assert "maxlogit_pnorm" in fitted.failed and "maxlogit_pnorm" not in fitted.stats
    assert drop_unfitted(("msp", "maxlogit_pnorm"), None, fitted) == ("msp",)
    with pytest.raises(ValueError, match="MaxLogit-pNorm's order p .*every one correct"):
        drop_unfitted(("maxlogit_pnorm",), ["maxlogit_pnorm"], fitted)
    # With errors: the fitted p, then the score through the engine.
    held = HeldData({"logits": _ONLY_P2}, np.where(_ONLY_P2_CORRECT, _ONLY_P2.argmax(1), -1),
                    None, 0, lambda wanted: {})  # fmt: skip
    stats = SCORES["maxlogit_pnorm"].fit_held(held)
    assert stats == {"p": 2.0, "msp_fallback": 0} and stats["p"].dtype == np.float32
    fitted.stats["maxlogit_pnorm"] = stats
    test = {"logits": _logits(n=9, c=4)}
    out = compute_scores(test, ["maxlogit_pnorm", "doctor"], fitted=fitted, batch_size=4)
    np.testing.assert_allclose(out["maxlogit_pnorm"], _pnorm64(test["logits"], 2), rtol=1e-5)
    np.testing.assert_allclose(out["doctor"], doctor(test["logits"]), rtol=1e-6)
    fitted.stats["maxlogit_pnorm"] = {"p": np.float32(2.0), "msp_fallback": 1}
    out = compute_scores(test, ["maxlogit_pnorm"], fitted=fitted, batch_size=4)
    np.testing.assert_allclose(out["maxlogit_pnorm"], msp(test["logits"]), rtol=1e-6)
