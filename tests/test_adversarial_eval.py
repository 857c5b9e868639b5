import doctest
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.attacks import fgsm
from tac_jax.evaluate.ood import attacks
from tac_jax.evaluate.ood.attacks import attack_dataset, make_attack
from tac_jax.evaluate.reporting import adversarial
from tac_jax.evaluate.reporting.adversarial import (
    adversarial_figure,
    adversarial_lines,
    adversarial_table,
    epsilon_text,
)

RNG = np.random.default_rng(0)
D, C, N = 6, 3, 40
W = RNG.normal(size=(D, C)).astype(np.float32) * 4
X = RNG.uniform(0.0, 1.0, size=(N, D)).astype(np.float32)
Y = np.asarray(np.argmax(X @ W, axis=1), np.int32)  # the linear model is right on every input


def linear(x):
    return x @ W


def test_doctests():
    assert doctest.testmod(adversarial).failed == 0
    assert doctest.testmod(attacks).failed == 0


def test_attack_lowers_accuracy_inside_ball_and_range():
    attack = make_attack(linear)
    eps = 0.3
    x_adv = np.asarray(attack(X, Y, eps, jax.random.key(1)))
    assert x_adv.shape == X.shape and x_adv.dtype == np.float32
    assert np.max(np.abs(x_adv - X)) <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.mean(np.argmax(linear(X), 1) == Y) == 1.0
    assert np.mean(np.argmax(linear(x_adv), 1) == Y) < 0.5


def test_l2_attack_stays_in_ball():
    attack = make_attack(linear, norm="l2", steps=5)
    x_adv = np.asarray(attack(X, Y, 0.5, jax.random.key(2)))
    assert np.max(np.linalg.norm(x_adv - X, axis=1)) <= 0.5 + 1e-5


def test_epsilon_zero_returns_input():
    # The random start U(−ε, ε) and every step ε/10 are exactly zero.
    attack = make_attack(linear)
    np.testing.assert_array_equal(np.asarray(attack(X, Y, 0.0, jax.random.key(3))), X)
    # Outside the valid range, only clipping moves the input.
    x = X.copy()
    x[0, 0] = 1.5
    out = np.asarray(attack(x, Y, 0.0, jax.random.key(3)))
    assert out[0, 0] == 1.0
    np.testing.assert_array_equal(out[1:], X[1:])


def test_one_compile_for_every_epsilon():
    traces = []

    def counted(x):
        traces.append(1)
        return linear(x)

    attack = make_attack(counted, steps=3)
    attack(X, Y, 0.1, jax.random.key(0))
    first = len(traces)
    assert first >= 1
    attack(X, Y, 0.2, jax.random.key(1))
    attack(X, Y, np.float64(0.05), jax.random.key(2))
    assert len(traces) == first


def test_fgsm_attack_is_one_signed_step_of_epsilon():
    attack = make_attack(linear, method="fgsm")
    assert attack.settings == {"method": "fgsm", "norm": "linf", "steps": 1, "random_start": False}
    x_adv = np.asarray(attack(X, Y, 0.05, jax.random.key(0)))
    np.testing.assert_array_equal(x_adv, np.asarray(fgsm(linear, X, Y, 0.05)))
    # Every coordinate moved by exactly ε unless clipping stopped it; no randomness.
    moved = np.abs(x_adv - X)
    inside = (x_adv > 0.0) & (x_adv < 1.0)
    np.testing.assert_allclose(moved[inside], 0.05, atol=1e-6)
    np.testing.assert_array_equal(x_adv, np.asarray(attack(X, Y, 0.05, jax.random.key(9))))
    with pytest.raises(ValueError, match="FGSM is one L∞ step"):
        make_attack(linear, method="fgsm", norm="l2")
    with pytest.raises(ValueError, match="attack method"):
        make_attack(linear, method="cw")


def test_fgsm_lines_name_the_attack():
    section = json.loads(json.dumps(_section()))
    section["attack"] = {"method": "fgsm", "norm": "linf", "steps": 1, "random_start": False}
    text = "\n".join(adversarial_lines(section, target="prediction head"))
    assert "## Adversarial inputs: FGSM on the prediction head" in text
    assert "FGSM (one L∞ step of ε from the input) ascending the cross-entropy" in text
    assert "PGD" not in text


def test_make_attack_rejects_bad_settings():
    with pytest.raises(ValueError, match="expected a norm"):
        make_attack(linear, norm="l1")
    with pytest.raises(ValueError, match="steps"):
        make_attack(linear, steps=-1)
    with pytest.raises(ValueError, match="non-negative epsilon"):
        make_attack(linear)(X, Y, -0.1, jax.random.key(0))
    assert make_attack(linear, steps=7).settings == {
        "norm": "linf",
        "steps": 7,
        "random_start": True,
    }


def test_attack_dataset_pads_last_batch_and_matches_direct_calls():
    attack = make_attack(linear, steps=4)
    out = attack_dataset(attack, X, Y, 0.2, batch_size=16, seed=5)
    assert out.shape == X.shape and out.dtype == np.float32
    base = jax.random.key(5)
    for i, start in enumerate(range(0, N, 16)):
        stop = min(start + 16, N)
        xb, yb = X[start:stop], Y[start:stop]
        pad = 16 - len(xb)
        xb = np.concatenate([xb, np.repeat(xb[-1:], pad, 0)])
        yb = np.concatenate([yb, np.repeat(yb[-1:], pad, 0)])
        direct = np.asarray(attack(xb, yb, 0.2, jax.random.fold_in(base, i)))[: stop - start]
        np.testing.assert_array_equal(out[start:stop], direct)


def test_attack_dataset_keys_differ_per_batch():
    seen = []

    def record(x, y, eps, key):
        seen.append(np.asarray(jax.random.key_data(key)))
        return jnp.asarray(x)

    attack_dataset(record, X, Y, 0.1, batch_size=16, seed=3)
    assert len(seen) == 3
    assert len({k.tobytes() for k in seen}) == 3
    expected = jax.random.key_data(jax.random.fold_in(jax.random.key(3), 2))
    np.testing.assert_array_equal(seen[2], np.asarray(expected))
    # With a random start only, identical batches get different noise.
    same = np.tile(X[:8], (2, 1))
    noisy = attack_dataset(make_attack(linear, steps=0), same, Y[:16], 0.1, batch_size=8)
    assert not np.allclose(noisy[:8], noisy[8:])


def test_attack_dataset_converts_uint8():
    images = np.array([[0, 255], [51, 102], [255, 0]], np.uint8)
    identity = lambda x, y, eps, key: x
    out = attack_dataset(identity, images, np.zeros(3, int), 0.0, batch_size=2)
    np.testing.assert_allclose(out, images / 255.0, rtol=1e-6)
    assert out.dtype == np.float32


def test_attack_dataset_rejects_bad_inputs():
    identity = lambda x, y, eps, key: x
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        attack_dataset(identity, X * 2, Y, 0.1)
    with pytest.raises(ValueError, match="labels"):
        attack_dataset(identity, X, Y[:-1], 0.1)
    with pytest.raises(ValueError, match="epsilon"):
        attack_dataset(identity, X, Y, -1.0)


LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1])
CLEAN = {
    "prediction": np.array([0, 1, 2, 0, 1, 2, 1, 0]),  # 6 of 8 right
    "tac_prediction": np.array([0, 1, 2, 0, 1, 2, 0, 1]),  # all right
    "tac": np.linspace(1.0, 2.0, 8),
    "msp": np.linspace(0.5, 0.9, 8),
}
ADV = {
    0.3: {
        # Of the 6 clean-correct, examples 0, 1 and 2 turn wrong; example 6 turns right.
        "prediction": np.array([1, 2, 0, 0, 1, 2, 0, 0]),
        "tac_prediction": np.array([0, 0, 2, 0, 1, 2, 0, 1]),
        "tac": np.linspace(-1.0, 0.0, 8),  # every attacked score below every clean one
        "msp": CLEAN["msp"].copy(),  # identical: AUROC 0.5
    },
    0.0: {k: v.copy() for k, v in CLEAN.items()},
}


def test_adversarial_table_exact_values():
    t = adversarial_table(CLEAN, ADV, LABELS, ["tac", "msp"], attack={"norm": "linf", "steps": 10})
    assert t["size"] == 8 and t["scores"] == ["tac", "msp"]
    assert t["attack"] == {"norm": "linf", "steps": 10}
    assert t["clean_accuracy"] == 6 / 8 and t["clean_tac_accuracy"] == 1.0
    assert t["epsilons"] == [0.0, 0.3]
    assert list(t["by_epsilon"]) == ["0.0", "0.3"]
    row = t["by_epsilon"]["0.3"]
    assert row["epsilon"] == 0.3
    assert row["robust_accuracy"] == 4 / 8
    assert row["tac_robust_accuracy"] == 7 / 8
    assert row["attack_success"] == 3 / 6
    assert row["tac_attack_success"] == 1 / 8
    assert row["detection"]["tac"]["auroc"] == 1.0
    assert row["detection"]["msp"]["auroc"] == 0.5
    assert set(row["detection"]["tac"]) == {
        "auroc",
        "auroc_ci",
        "aupr_in",
        "aupr_out",
        "fpr_at_95_tpr",
    }
    zero = t["by_epsilon"]["0.0"]
    assert zero["robust_accuracy"] == 6 / 8 and zero["attack_success"] == 0.0
    assert zero["detection"]["tac"]["auroc"] == 0.5
    json.dumps(t)


def test_adversarial_table_without_tac_and_bootstrap():
    clean = {k: v for k, v in CLEAN.items() if k != "tac_prediction"}
    adv = {0.3: {k: v for k, v in ADV[0.3].items() if k != "tac_prediction"}}
    t = adversarial_table(clean, adv, LABELS, ["tac"], bootstrap=20)
    assert "clean_tac_accuracy" not in t and "attack" not in t
    row = t["by_epsilon"]["0.3"]
    assert "tac_robust_accuracy" not in row and "tac_attack_success" not in row
    low, high = row["detection"]["tac"]["auroc_ci"]
    assert low == high == 1.0


def test_adversarial_table_rejects_mismatches():
    partial = {k: v for k, v in CLEAN.items() if k != "msp"}
    with pytest.raises(ValueError, match="to hold 'msp'"):
        adversarial_table(CLEAN, {0.1: partial}, LABELS, ["msp"])
    with pytest.raises(ValueError, match="shape"):
        adversarial_table(CLEAN, ADV, LABELS[:-1], ["msp"])
    with pytest.raises(ValueError, match="at least one epsilon"):
        adversarial_table(CLEAN, {}, LABELS, ["msp"])


def _section():
    return adversarial_table(
        CLEAN,
        {20 / 255: ADV[0.3], 0.0: ADV[0.0]},
        LABELS,
        ["tac", "msp"],
        attack={"norm": "linf", "steps": 10, "random_start": True},
    )


def test_lines_render_numbers():
    # Read back through JSON, as the report does.
    section = json.loads(json.dumps(_section()))
    text = "\n".join(adversarial_lines(section, target="base head"))
    assert "PGD on the base head" in text
    assert "L∞ PGD (10 steps of ε/10, random start)" in text
    assert "8 test inputs" in text and "ε ∈ {0, 20/255}" in text
    assert "| clean | 0.750 | – | 1.000 | – |" in text
    assert "| 20/255 | 0.500 | 0.500 | 0.875 | 0.125 |" in text
    # Ties at the shown precision are all bold.
    assert "| `tac` | **0.500** | **1.000** |" in text
    assert "| `msp` | **0.500** | 0.500 |" in text


def test_lines_l2_and_missing_values():
    section = json.loads(json.dumps(_section()))
    section["attack"] = {"norm": "l2", "steps": 5, "random_start": False}
    section["by_epsilon"]["0.0"]["attack_success"] = None  # NaN in metrics.json
    text = "\n".join(adversarial_lines(section, target="TAC codes"))
    assert "L2 PGD (5 steps of 2.5·ε/steps) ascending the cross-entropy of the TAC codes" in text
    assert "| 0 | 0.750 | – | 1.000 | 0.000 |" in text


def test_epsilon_text():
    assert epsilon_text(0.3) == "0.3"
    assert epsilon_text(8 / 255) == "8/255"
    assert epsilon_text(0.2) == "0.2"


def test_figure_written(tmp_path):
    section = _section()
    no_tac = json.loads(json.dumps(section))
    del no_tac["clean_tac_accuracy"]
    name = adversarial_figure(tmp_path / "figs", {"base head": section, "TAC codes": no_tac})
    assert name == "adversarial.png"
    path = tmp_path / "figs" / name
    assert path.exists() and os.path.getsize(path) > 1000


def _detection(aurocs):
    return {"detection": {n: {"auroc": a} for n, a in aurocs.items()}}


def test_figure_draws_the_best_detectors_over_every_epsilon():
    # Ten TAC-family scores would have filled the figure; KNN detects the ε = 0.3 inputs
    # best and multi-layer Mahalanobis the ε = 0.1 ones (undefined at 0.3): both drawn.
    tac = {f"tac_{i}": 0.6 + i / 100 for i in range(10)}
    weak = {**tac, "tac": 0.55, "msp": 0.5, "knn": 0.55, "mahalanobis_multi": 0.9}
    strong = {**tac, "tac": 0.6, "msp": 0.5, "knn": 0.95, "mahalanobis_multi": None}
    names = list(weak)
    pgd = {"scores": names, "by_epsilon": {"0.1": _detection(weak), "0.3": _detection(strong)}}
    chosen = adversarial.figure_scores({"base": pgd})
    assert chosen == ["knn", "mahalanobis_multi", "tac_9", "tac_8", "tac_7", "tac_6", "tac", "msp"]
    # FGSM sections are not drawn, so they do not choose either.
    fgsm = {**pgd, "attack": {"method": "fgsm"},
            "by_epsilon": {"0.3": _detection({n: 1.0 if n == "vim" else 0.0 for n in names})}}  # fmt: skip
    assert adversarial.figure_scores({"base": pgd, "base_fgsm": fgsm}) == chosen
