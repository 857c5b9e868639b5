"""End to end: train the smoke config (base, then a TAC add-on), evaluate every score
with a small suite, and score array files with the trained run."""

import csv
import json
import os

import jax
import numpy as np
import pytest
from _train_helpers import SMOKE

from tac_jax.config_io import load_config
from tac_jax.data.fashion_mnist import load_fashion_mnist
from tac_jax.data.idx import write_idx
from tac_jax.evaluate import evaluate_run, score_file
from tac_jax.evaluate.engine.scoring import available_scores
from tac_jax.evaluate.ood.user_sets import parse_ood_spec
from tac_jax.train.loop import train_and_evaluate
from tac_jax.train.setup import load_run
from tac_jax.train.step import as_float_images

pytestmark = [pytest.mark.slow]
# What a TAC add-on on a base without dropout can compute: every score but those of
# the training-time methods and MC dropout.
TAC_RUN = {"tac", "fit", "features", "head", "input", "validation"}
SCORES = available_scores(TAC_RUN)


def smoke(**fields):
    config = load_config(SMOKE)
    config.progress = False
    for key, value in fields.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    base, addon = root / "base", root / "addon"
    # A validation split (1% of the training set) on the add-on run exercises the
    # threshold choice and TAC's layer weights on validation data; the base run halves
    # its test split instead.
    train_and_evaluate(smoke(mode="base"), base)
    addon_config = smoke(base_workdir=str(base))
    addon_config.data.validation_fraction = 0.01
    results = train_and_evaluate(addon_config, addon)
    messages = []
    metrics = evaluate_run(addon, num_ood=200, bootstrap=20, log=messages.append)
    return {"base": base, "addon": addon, "results": results, "metrics": metrics, "log": messages}


def test_evaluate_run_writes_the_report_metrics_and_figures(runs):
    out = runs["addon"] / "report"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(runs["metrics"]))
    assert set(metrics["summary"]) == set(SCORES)
    assert {"purview", "purview_detector", "odin"} <= set(SCORES)
    for name, row in metrics["summary"].items():
        assert 0.0 <= row["misclassification_auroc"] <= 1.0, name
        assert 0.0 <= row["mean_ood_auroc"] <= 1.0, name
    sets = metrics["ood"]["sets"]
    assert len(sets) == 31 and {e["kind"] for e in sets.values()} == {
        "synthetic", "far", "corruption",
    }  # fmt: skip
    for entry in sets.values():
        for row in entry["scores"].values():
            assert 0.0 <= row["auroc"] <= 1.0
            low, high = row["auroc_ci"]
            assert low <= high
    # The harness's accuracies are the training loop's own.
    assert metrics["accuracy"]["base"] == pytest.approx(runs["results"]["test_accuracy"])
    assert metrics["accuracy"]["tac"] == pytest.approx(runs["results"]["test_tac_accuracy"])
    assert metrics["evaluation"]["threshold_split"] == "validation"
    # Soft decoding is a prediction of its own, as accurate as Hamming decoding or near.
    assert abs(metrics["accuracy"]["tac_soft"] - metrics["accuracy"]["tac"]) < 0.1
    # Per-layer diagnostics: every tapped layer, then all together; fitted weights ≥ 0.
    layers = metrics["layers"]
    assert layers["layers"] == ["dense1", "dense2", "all"]  # the smoke MLP's tapped layers
    assert set(layers["kinds"]) == {"far", "synthetic", "corruption"}
    assert len(layers["weights"]) == 2 and min(layers["weights"]) >= 0.0
    for row in layers["rows"].values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["misclassification_auroc"] <= 1.0
        assert all(0.0 <= v <= 1.0 for v in row["ood_auroc"].values())
    assert layers["rows"]["all"]["accuracy"] == pytest.approx(metrics["accuracy"]["tac"])
    assert len(metrics["value"]["scores"]["tac"]["value"]) == 10
    assert set(metrics["value"]["policies"]) == {
        "base_gated_by_msp", "base_gated_by_tac", "tac_where_disagree", "reject_where_disagree",
    }  # fmt: skip
    # Guaranteed risk: every score × method × r*, calibrated on the validation split; the
    # deployed coverage and risk are those of the threshold on the test split.
    guarantee = metrics["guarantee"]
    assert guarantee["calibration"] == "validation" and guarantee["pool"] == "validation+test"
    rows = guarantee["rows"]
    assert len(rows) == len(SCORES) * 2 * 3
    assert {(r["method"], r["risk"]) for r in rows} == {
        (m, r) for m in ("sgr", "ltt") for r in (0.02, 0.05, 0.1)
    }
    with np.load(out / "scores.npz") as stored:
        test_correct = stored["test/prediction"] == stored["test/label"]
        for r in rows[:12]:
            accepted = stored[f"test/{r['score']}"] >= (
                np.inf if r["threshold"] is None else r["threshold"]
            )
            assert r["test_coverage"] == pytest.approx(accepted.mean())
            if accepted.any():
                assert r["test_risk"] == pytest.approx(1 - test_correct[accepted].mean())
            assert 0.0 <= r["split_held_fraction"] <= 1.0
    assert metrics["summary"]["msp"]["sgr_coverage_r0.05"] == next(
        r["test_coverage"] for r in rows
        if r["score"] == "msp" and r["method"] == "sgr" and r["risk"] == 0.05
    )  # fmt: skip
    text = (out / "report.md").read_text()
    assert "## Summary" in text and "| `tac` |" in text and "| `tac_weighted` |" in text
    assert "## Selective classification with a guaranteed risk" in text and "AUGRC ↓" in text
    assert "## TAC per layer" in text and "| `dense2` |" in text
    for name in metrics["figures"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert {
        "roc_far.png",
        "value.png",
        "histograms.png",
        "activation_profiles.png",
        "layers.png",
        "reliability.png",
    } <= set(metrics["figures"])
    assert (out / "fitted.npz").exists()
    # What a fit chose is said in words: MaxLogit-pNorm's p (or the MSP it fell back to).
    from tac_jax.evaluate.engine.fitted import load_fitted
    from tac_jax.evaluate.engine.registry import SCORES as REGISTRY

    chosen = load_fitted(out / "fitted.npz").stats["maxlogit_pnorm"]
    said = metrics["scores"]["maxlogit_pnorm"]["fitted"]
    assert said == REGISTRY["maxlogit_pnorm"].fitted_note(chosen)
    assert said.startswith("the MSP") == bool(chosen["msp_fallback"])
    assert "fitted" not in metrics["scores"]["msp"]
    assert f"this run: {said}" in text
    # Every example's scores and the summary table, beside metrics.json; no temporaries.
    assert metrics["files"] == ["summary.csv", "scores.npz"]
    assert "`scores.npz`" in text and "`summary.csv`" in text
    assert not [f for f in os.listdir(out) if f.startswith(".")]
    n = metrics["evaluation"]["test_size"]
    with np.load(out / "scores.npz") as stored:
        fixed = {"test/label", "test/prediction", "test/tac_prediction"}
        assert {f"test/{s}" for s in SCORES} | fixed <= set(stored.files)
        for key in fixed | {f"test/{s}" for s in SCORES}:
            assert stored[key].shape == (n,), key
        for name, entry in sets.items():
            for score in SCORES:
                assert stored[f"ood/{name}/{score}"].shape == (entry["size"],), (name, score)
        assert np.mean(stored["test/prediction"] == stored["test/label"]) == pytest.approx(
            metrics["accuracy"]["base"]
        )
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["score"] for r in rows] == list(metrics["summary"])
    for row in rows:
        expected = metrics["summary"][row["score"]]["misclassification_auroc"]
        assert float(row["misclassification_auroc"]) == pytest.approx(expected)


def test_the_hard_cases_are_in_the_report(runs):
    metrics = runs["metrics"]
    shift = metrics["shift"]
    assert list(shift["by_severity"]) == ["0", "1", "3", "5"]
    assert shift["by_severity"]["0"]["accuracy"] == pytest.approx(metrics["accuracy"]["base"])
    for name, entry in metrics["ood"]["sets"].items():
        if entry["kind"] == "corruption":
            assert 0.0 <= entry["ece"] <= 1.0, name
    adversarial = metrics["adversarial"]
    assert list(adversarial) == ["base", "tac", "base_fgsm", "tac_fgsm"]
    for key, section in adversarial.items():
        assert section["size"] == 512 and section["epsilons"] == [0.1, 0.3]
        strong = section["by_epsilon"]["0.3"]
        assert set(strong["detection"]) == set(SCORES)
        # PGD and FGSM at ε = 0.3 on 28×28 images in [0, 1] break the attacked head.
        target = key.removesuffix("_fgsm")
        attacked = "robust_accuracy" if target == "base" else "tac_robust_accuracy"
        clean = "clean_accuracy" if target == "base" else "clean_tac_accuracy"
        assert strong[attacked] < section[clean] - 0.1, key
    # The two attacks give different inputs: FGSM's is one deterministic step.
    fgsm, pgd = adversarial["base_fgsm"]["by_epsilon"], adversarial["base"]["by_epsilon"]
    assert fgsm["0.1"]["detection"]["msp"] != pgd["0.1"]["detection"]["msp"]
    assert adversarial["base_fgsm"]["attack"]["method"] == "fgsm"
    row = metrics["summary"]["tac"]
    assert 0.0 <= row["adversarial_auroc_tac_eps0.3"] <= 1.0
    text = (runs["addon"] / "report" / "report.md").read_text()
    assert "## Covariate shift" in text and "## Adversarial inputs: PGD on the TAC codes" in text
    assert "## Adversarial inputs: FGSM on the prediction head" in text
    assert {"shift.png", "adversarial.png"} <= set(metrics["figures"])


def test_a_base_only_run_has_no_tac_rows(runs, tmp_path):
    # The suite is only a set of the user's: inverted test images with their labels.
    images, labels = load_fashion_mnist("test")
    np.savez(tmp_path / "inv.npz", image=255 - images[:40], label=labels[:40])
    mine = parse_ood_spec(f"inv={tmp_path / 'inv.npz'}:corruption")
    metrics = evaluate_run(runs["base"], suite="none", extra_ood=[mine], bootstrap=0, plots=False)
    names = set(metrics["summary"])
    assert names and not names & {"tac", "tac_tac_pred", "tac_neg_l1", "tac_neg_l2"}
    assert "tac" not in metrics["accuracy"]
    assert list(metrics["value"]["policies"]) == ["base_gated_by_msp"]
    assert list(metrics["ood"]["sets"]) == ["inv"]
    entry = metrics["ood"]["sets"]["inv"]
    assert entry["kind"] == "corruption" and entry["size"] == 40
    assert 0.0 <= entry["accuracy"] <= 1.0
    assert 0.0 <= entry["scores"]["msp"]["auroc"] <= 1.0
    ev = metrics["evaluation"]
    assert ev["threshold_split"] == "test_half" and ev["test_size"] == 512
    # No validation split: the guaranteed-risk thresholds calibrate on half the test split.
    assert metrics["guarantee"]["calibration"] == "test_half"
    assert metrics["guarantee"]["val_size"] + metrics["guarantee"]["test_size"] == 512


def test_cli_evaluate_refuses_a_foreign_suite_or_set_before_scoring(runs, tmp_path, capsys):
    from tac_jax.cli import main

    np.save(tmp_path / "rgb.npy", np.zeros((3, 32, 32, 3), np.uint8))
    np.save(tmp_path / "gray.npy", np.zeros((3, 28, 28), np.uint8))
    cases = {
        ("--suite", "mnist"): "expected a run trained on 'mnist' for suite 'mnist'",
        ("--ood", f"rgb={tmp_path / 'rgb.npy'}"): "expected images of shape (N, 28, 28, 1)",
        ("--ood", f"digits={tmp_path / 'gray.npy'}"): "got 'digits' in both",  # a far set's name
    }
    for args, message in cases.items():
        assert main(["evaluate", "--workdir", str(runs["base"]), *args]) == 2
        out, err = capsys.readouterr()
        assert message in err and err.count("\n") == 1, err
        assert "scoring the test split" not in out


@pytest.fixture(scope="module")
def test_images():
    images, _ = load_fashion_mnist("test")
    return images[:50]


def test_score_file_scores_every_input_with_every_score(runs, test_images, tmp_path):
    path, out = tmp_path / "x.npy", tmp_path / "scores.npz"
    np.save(path, test_images)
    messages = []
    written = score_file(runs["addon"], path, out, log=messages.append)
    # The statistics fitted by evaluate_run are reused, not refitted.
    assert any("reusing fitted statistics" in m for m in messages)
    with np.load(out) as data:
        stored = {k: data[k] for k in data.files}
    assert set(stored) == set(SCORES) | {"prediction", "tac_prediction", "tac_soft_prediction"}
    for name in SCORES:
        assert stored[name].shape == (50,) and np.isfinite(stored[name]).all(), name
        np.testing.assert_array_equal(stored[name], written[name])
    setup, _, state = load_run(runs["base"])
    logits = setup.base.apply(
        state.variables, as_float_images(jax.numpy.asarray(test_images)[..., None])
    )
    np.testing.assert_array_equal(stored["prediction"], np.argmax(np.asarray(logits), axis=1))

    # The same images as floats in an .npz, and as an IDX file, score the same.
    npz, idx = tmp_path / "x.npz", tmp_path / "x-idx3-ubyte"
    np.savez(npz, x=test_images.astype(np.float32) / 255.0)
    write_idx(idx, test_images)
    from_idx = score_file(runs["addon"], idx, tmp_path / "idx.npz", scores=["tac", "msp"])
    np.testing.assert_array_equal(from_idx["tac"], stored["tac"])
    from_npz = score_file(runs["addon"], npz, tmp_path / "npz.npz", scores=["msp", "knn"])
    np.testing.assert_allclose(from_npz["msp"], stored["msp"], atol=1e-5)
    np.testing.assert_allclose(from_npz["knn"], stored["knn"], atol=1e-5)
    # TAC on the deepest layer only: its predictions and scores change, the weighted
    # score (every layer, fitted weights) does not.
    deep = score_file(runs["addon"], path, tmp_path / "deep.npz", scores=["tac", "tac_weighted"],
                      deepest=1)  # fmt: skip
    assert not np.array_equal(deep["tac"], stored["tac"])
    np.testing.assert_allclose(deep["tac_weighted"], stored["tac_weighted"], rtol=1e-6)
    with pytest.raises(ValueError, match="expected deepest in 0..2"):
        score_file(runs["addon"], path, tmp_path / "deep.npz", scores=["tac"], deepest=3)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x[:, :20, :20],  # wrong shape
        lambda x: np.where(x > 100, np.nan, x / 255.0).astype(np.float32),  # NaNs
        lambda x: x.astype(np.float32),  # floats above 1 (0..255 as floats)
    ],
    ids=["shape", "nan", "range"],
)
def test_score_file_rejects_bad_inputs(runs, test_images, tmp_path, make):
    path = tmp_path / "bad.npy"
    np.save(path, make(test_images))
    with pytest.raises(ValueError, match="expected"):
        score_file(runs["addon"], path, tmp_path / "out.npz", scores=["msp"])
    assert not (tmp_path / "out.npz").exists()


def test_cli_score_reads_tac_on_the_deepest_layers(runs, test_images, tmp_path, capsys):
    from tac_jax.cli import main

    path = tmp_path / "x.npy"
    np.save(path, test_images)
    args = ["score", "--workdir", str(runs["addon"]), "--input", str(path)]
    assert main([*args, "--output", str(tmp_path / "all.npz"), "--scores", "tac"]) == 0
    assert main([*args, "--output", str(tmp_path / "one.npz"), "--scores", "tac",
                 "--deepest", "1"]) == 0  # fmt: skip
    with np.load(tmp_path / "all.npz") as every, np.load(tmp_path / "one.npz") as deepest:
        # The smoke MLP taps two layers: its deepest alone predicts and scores otherwise.
        assert not np.array_equal(every["tac"], deepest["tac"])
        assert deepest["tac_soft_prediction"].shape == (50,)
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "bad.npz"), "--deepest", "3"]) != 0
    assert "expected deepest in 0..2" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()


def test_score_file_checks_its_output_before_any_work(test_images, tmp_path, capsys):
    from tac_jax.cli import main

    path = tmp_path / "x.npy"
    np.save(path, test_images)
    # The workdir is never read: each refusal comes first, in one line.
    args = ["score", "--workdir", str(tmp_path / "no_run"), "--input", str(path), "--output"]
    for output, expected in [
        (tmp_path, "expected an output file path, got the folder"),
        (tmp_path / "none" / "s.npz", "expected an existing folder for the output"),
        (path, "expected an output other than the input"),
    ]:
        assert main([*args, str(output)]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err
    np.testing.assert_array_equal(np.load(path), test_images)


@pytest.mark.parametrize(
    "extra, name, method, risk, delta",
    [
        (["--scores", "msp,tac", "--risk", "0.3"], "msp", "sgr", 0.3, 0.1),
        (["--scores", "tac", "--risk", "0.4", "--delta", "0.2", "--guarantee", "ltt",
          "--accept-score", "msp"], "msp", "ltt", 0.4, 0.2),
    ],
    ids=["sgr", "ltt"],
)  # fmt: skip
def test_cli_score_accepts_at_a_threshold_calibrated_on_validation(
    runs, test_images, tmp_path, capsys, extra, name, method, risk, delta
):
    from tac_jax.cli import main
    from tac_jax.evaluate.engine.detector import Detector
    from tac_jax.evaluate.reporting.tables import finite
    from tac_jax.metrics.guarantee import calibrate

    path, out = tmp_path / "x.npy", tmp_path / "s.npz"
    np.save(path, test_images)
    args = ["score", "--workdir", str(runs["addon"]), "--input", str(path), "--output", str(out)]
    assert main([*args, *extra]) == 0
    assert f"by {name} >= " in capsys.readouterr().out
    with np.load(out) as data:
        stored = {k: data[k] for k in data.files}
    assert {"msp", "tac", "prediction", "accept"} <= set(stored)
    assert str(stored["accept_score"]) == name and str(stored["accept_method"]) == method
    assert (float(stored["accept_risk"]), float(stored["accept_delta"])) == (risk, delta)
    threshold = float(stored["accept_threshold"])
    np.testing.assert_array_equal(stored["accept"], finite(stored[name]) >= threshold)
    # The threshold is the method's on the run's validation split, recomputed.
    det = Detector.from_run(runs["addon"], scores=["msp", "tac"])
    val = det.splits["validation"]
    scores = det.score(val["image"])
    expected = calibrate(finite(scores[name]), scores["prediction"] == val["label"], risk,
                         delta, method)  # fmt: skip
    assert threshold == expected.threshold and np.isfinite(threshold), (threshold, expected)
    assert float(stored["accept_coverage"]) == expected.coverage
    assert int(stored["accept_calibration_size"]) == len(val["label"])


def test_cli_score_refuses_to_accept_without_a_validation_split(
    runs, test_images, tmp_path, capsys
):
    from tac_jax.cli import main

    path, out = tmp_path / "x.npy", tmp_path / "s.npz"
    np.save(path, test_images)
    args = ["score", "--workdir", str(runs["base"]), "--input", str(path), "--output", str(out)]
    assert main([*args, "--risk", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "expected a run with a validation split to calibrate the threshold on" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_an_interrupted_evaluate_leaves_the_previous_report_whole(runs, tmp_path, monkeypatch):
    from tac_jax.evaluate.reporting import plots

    images, _ = load_fashion_mnist("test")
    np.save(tmp_path / "inv.npy", 255 - images[:40])
    small = dict(suite="none", extra_ood=[parse_ood_spec(f"inv={tmp_path / 'inv.npy'}")],
                 num_ood=40, bootstrap=0, epsilons=(), plots=False,
                 scores=["msp", "mahalanobis"])  # fmt: skip
    workdir, report = runs["base"], runs["base"] / "report"
    evaluate_run(workdir, **small)
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    assert {"metrics.json", "report.md", "fitted.npz"} <= set(before)

    def interrupted(directory, data):
        with open(os.path.join(directory, "roc_far.png"), "wb") as f:
            f.write(b"half")  # one figure written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(plots, "write_plots", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_run(workdir, **{**small, "plots": True, "seed": 1})
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before
    assert not [f for f in os.listdir(workdir) if f.startswith("report.")]  # no staging left
    # The next run replaces it whole, keeping the fitted statistics.
    monkeypatch.undo()
    metrics = evaluate_run(workdir, **{**small, "seed": 1})
    stored = json.loads((report / "metrics.json").read_text())
    assert stored["evaluation"]["seed"] == metrics["evaluation"]["seed"] == 1
    assert (report / "fitted.npz").read_bytes() == before["fitted.npz"]
