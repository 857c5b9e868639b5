"""End to end: train the smoke config with every training-time method, evaluate each
with a small suite and attacks, compare them, and score files under the methods' names."""

import json

import numpy as np
import pytest
from _train_helpers import SMOKE

from tac_jax.cli import main
from tac_jax.config_io import load_config
from tac_jax.data.fashion_mnist import load_fashion_mnist
from tac_jax.evaluate import evaluate_run, score_file
from tac_jax.train.loop import train_and_evaluate

pytestmark = [pytest.mark.slow]
SMALL = dict(
    num_ood=50, bootstrap=0, severities=(1,), corruptions=["contrast"], attack_size=64,
    epsilons=(0.1,), attacks=("pgd",), plots=False,
)  # fmt: skip


def smoke(method: str):
    config = load_config(SMOKE)
    config.progress = False
    config.mode = "base"
    if method == "dropout":
        config.model.dropout_rate = 0.2
    else:
        config.method.name = method
    config.method.members = 3
    config.method.rff_features = 64
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    out = {}
    for method in ("ensemble", "sngp", "confidence", "dropout"):
        workdir = root / method
        results = train_and_evaluate(smoke(method), workdir)
        metrics = evaluate_run(workdir, **SMALL)
        out[method] = {"workdir": workdir, "results": results, "metrics": metrics}
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "x.npy"
    np.save(path, load_fashion_mnist("test")[0][:40])
    return path


def test_each_method_has_its_rows_and_the_run_its_accuracy(runs):
    own = {
        "ensemble": {"ensemble_msp", "ensemble_entropy", "ensemble_mi"},
        "sngp": {"sngp"},
        "confidence": {"confidence", "confidence_perturbed"},
        "dropout": {"mc_dropout_msp", "mc_dropout_entropy", "mc_dropout_mi"},
    }
    for method, run in runs.items():
        metrics = run["metrics"]
        names = set(metrics["summary"])
        assert own[method] <= names, method
        for other, scores in own.items():
            if other != method:
                assert not scores & names, (method, other)
        assert metrics["accuracy"]["base"] == pytest.approx(run["results"]["test_accuracy"])
        assert {"purview", "msp"} <= names
        assert metrics["adversarial"]["base"]["epsilons"] == [0.1]
        assert metrics["shift"]["by_severity"]["1"]["count"] == 1
    # One network's features: none for an ensemble.
    assert "knn" not in runs["ensemble"]["metrics"]["summary"]
    assert "knn" in runs["sngp"]["metrics"]["summary"]
    # The ensemble's logits are its mean log-probabilities: MSP is the mean-MSP.
    summary = runs["ensemble"]["metrics"]["summary"]
    assert summary["msp"]["mean_ood_auroc"] == pytest.approx(
        summary["ensemble_msp"]["mean_ood_auroc"]
    )


def test_method_scores_behave_as_defined(runs, images, tmp_path):
    sngp = score_file(runs["sngp"]["workdir"], images, tmp_path / "s.npz", scores=["msp", "sngp"])
    # The mean-field correction shrinks the logits: never more confident than MSP.
    assert np.all(sngp["sngp"] <= sngp["msp"] + 1e-6)
    assert np.any(sngp["sngp"] < sngp["msp"] - 1e-6)
    conf = score_file(
        runs["confidence"]["workdir"], images, tmp_path / "c.npz",
        scores=["confidence", "confidence_perturbed"],
    )  # fmt: skip
    # The test-time step moves every input towards a higher confidence.
    assert np.mean(conf["confidence_perturbed"] >= conf["confidence"]) > 0.9
    mc = score_file(
        runs["dropout"]["workdir"], images, tmp_path / "m.npz", scores=["mc_dropout_mi"]
    )
    assert np.all(mc["mc_dropout_mi"] <= 1e-6) and np.any(mc["mc_dropout_mi"] < -1e-6)
    with pytest.raises(ValueError, match="not an ensemble run"):
        score_file(runs["sngp"]["workdir"], images, tmp_path / "x.npz", scores=["ensemble_mi"])


def test_cli_compares_the_runs_and_scores_by_name(runs, images, tmp_path, capsys):
    workdirs = [str(runs[m]["workdir"]) for m in ("ensemble", "sngp", "confidence", "dropout")]
    assert main(["compare", *workdirs, "--out", str(tmp_path / "cmp")]) == 0
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {(r["run"], r["score"]) for r in table["scores"]}
    assert {("ensemble", "ensemble_mi"), ("sngp", "sngp"), ("confidence", "confidence")} <= rows
    assert ("dropout", "mc_dropout_mi") in rows and ("dropout", "knn") in rows
    assert ("ensemble", "knn") not in rows and ("sngp", "knn") not in rows
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| ensemble | `ensemble_mi` |" in text and "## Adversarial detection" in text
    out = tmp_path / "e.npz"
    assert main(["score", "--workdir", workdirs[0], "--input", str(images),
                 "--output", str(out), "--scores", "ensemble_mi,msp"]) == 0  # fmt: skip
    with np.load(out) as data:
        assert set(data.files) == {"prediction", "ensemble_mi", "msp"}
    capsys.readouterr()
    assert main(["compare", workdirs[0], str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "expected an evaluated run" in capsys.readouterr().err
