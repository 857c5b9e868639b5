"""Tests for tac_jax.evaluate.reporting.compare: evaluated runs side by side."""

import json

import pytest

from tac_jax.evaluate.reporting import compare


def metrics(method="none", scores=("tac", "msp", "knn"), seed=0, accuracy=0.9):
    families = {"tac": "tac", "msp": "logits", "knn": "feature", "ensemble_mi": "ensemble"}
    summary = {
        name: {
            "family": families[name],
            "misclassification_auroc": 0.5 + 0.1 * i,
            "augrc": 0.02 - 0.001 * i,
            "sgr_coverage_r0.05": 0.4 + 0.1 * i,
            "mean_ood_auroc": 0.6 + 0.1 * i,
            "mean_ood_auroc_far": 0.7,
            "value_c_err_1": 0.3,
            "value_c_err_5": -0.1,
            "value_c_err_10": -0.5,
            "adversarial_auroc_base_eps0.1": 0.55,
        }
        for i, name in enumerate(scores)
    }
    return {
        "run": {"model": "mlp", "config": {"method": {"name": method}}},
        "evaluation": {
            "suite": "fmnist",
            "num_ood": 10,
            "severities": [1, 5],
            "seed": seed,
            "test_size": 100,
            "epsilons": [0.1],
        },  # fmt: skip
        "accuracy": {"base": accuracy},
        "calibration": {"ece": 0.05, "nll": 0.3},
        "shift": {
            "by_severity": {
                "0": {"accuracy": accuracy, "ece": 0.05},
                "5": {"accuracy": 0.4, "ece": 0.3},
            }
        },  # fmt: skip
        "adversarial": {
            "base": {"clean_accuracy": accuracy, "by_epsilon": {"0.1": {"robust_accuracy": 0.2}}},
            "tac": {
                "clean_tac_accuracy": 0.7,
                "by_epsilon": {"0.1": {"robust_accuracy": 0.5, "tac_robust_accuracy": 0.3}},
            },
        },
        "summary": summary,
    }


def test_a_method_run_brings_its_own_family_and_its_msp():
    assert compare.contributed_scores(metrics()) == ["tac", "msp", "knn"]
    run = metrics("ensemble", ("msp", "ensemble_mi", "knn"))
    assert compare.contributed_scores(run) == ["msp", "ensemble_mi"]


def test_a_second_tac_on_the_same_base_brings_only_tac_scores():
    first, second = metrics(), metrics()
    for m, eps in ((first, 0.0), (second, 0.1)):
        m["run"]["config"].update(mode="addon", tac={"adversarial_epsilon": eps})
    table = compare.compare_rows({"tac": first, "adv": second})
    assert [r["score"] for r in table["scores"] if r["run"] == "adv"] == ["tac"]
    assert table["runs"]["adv"]["method"] == "TAC addon, adversarial ε=0.1"
    assert table["runs"]["tac"]["method"] == "TAC addon"
    second["summary"]["msp"]["misclassification_auroc"] = 0.123  # another base
    table = compare.compare_rows({"tac": first, "other": second})
    assert len([r for r in table["scores"] if r["run"] == "other"]) == 3


def test_rows_carry_each_run_and_score():
    table = compare.compare_rows(
        {"tac": metrics(), "ens": metrics("ensemble", ("msp", "ensemble_mi"), accuracy=0.92)}
    )
    assert table["runs"]["ens"]["accuracy"] == 0.92
    assert table["runs"]["tac"]["shift_accuracy"] == 0.4
    assert table["runs"]["tac"]["shift_severity"] == "5"
    assert table["runs"]["tac"]["robust_accuracy_eps0.1"] == 0.2
    assert table["runs"]["tac"]["tac_robust_accuracy_eps0.1"] == 0.3
    assert [(r["run"], r["score"]) for r in table["scores"]] == [
        ("tac", "tac"), ("tac", "msp"), ("tac", "knn"), ("ens", "msp"), ("ens", "ensemble_mi"),
    ]  # fmt: skip
    ens_mi = table["scores"][-1]
    assert ens_mi["misclassification_auroc"] == pytest.approx(0.6)
    assert ens_mi["adversarial_auroc_base_eps0.1"] == 0.55
    assert ens_mi["augrc"] == pytest.approx(0.019)
    assert ens_mi["sgr_coverage_r0.05"] == pytest.approx(0.5)
    text = compare.render_compare(table)
    # AUGRC: lower is better (bold at the lowest); guaranteed coverage: higher is better.
    assert "| ens | `ensemble_mi` | 0.600 | 0.019 | 0.500 | 0.700 |" in text
    assert "| tac | `knn` | **0.700** | **0.018** | **0.600** |" in text
    assert "coverage at risk ≤ 0.05 (SGR) ↑" in text
    assert "| ens | ensemble | **0.920** |" in text
    assert "| **0.400** | **0.300** | **0.200** | **0.300** |" in text  # ties: all bold
    assert "base ε=0.1" in text


def test_runs_evaluated_differently_are_refused():
    with pytest.raises(ValueError, match="expected runs evaluated alike, got seed = 1"):
        compare.compare_rows({"a": metrics(), "b": metrics(seed=1)})
    with pytest.raises(ValueError, match="at least one evaluated run"):
        compare.compare_rows({})


def test_compare_runs_reads_and_writes(tmp_path):
    for name, m in {"a": metrics(), "b": metrics("sngp", ("msp",))}.items():
        (tmp_path / name / "report").mkdir(parents=True)
        (tmp_path / name / "report" / "metrics.json").write_text(json.dumps(m))
    table = compare.compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert list(table["runs"]) == ["a", "b"]
    assert json.loads((tmp_path / "out" / "compare.json").read_text()) == table
    assert (tmp_path / "out" / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "compare.md").read_text().startswith("# Every method")
    with pytest.raises(ValueError, match="one distinct label per run"):
        compare.compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "o", labels=["x", "x"])
    with pytest.raises(FileNotFoundError, match="expected an evaluated run"):
        compare.compare_runs([tmp_path / "nothing"], tmp_path / "o")


def test_fgsm_robust_accuracy_gets_its_columns_when_a_run_has_it():
    with_fgsm, without = metrics(), metrics(accuracy=0.8)
    with_fgsm["adversarial"]["base_fgsm"] = {
        "clean_accuracy": 0.9, "by_epsilon": {"0.1": {"robust_accuracy": 0.35}},
    }  # fmt: skip
    table = compare.compare_rows({"a": with_fgsm, "b": without})
    assert table["runs"]["a"]["fgsm_robust_accuracy_eps0.1"] == 0.35
    assert "fgsm_robust_accuracy_eps0.1" not in table["runs"]["b"]
    text = compare.render_compare(table)
    assert "FGSM robust accuracy ε=0.1 ↑" in text
    assert "| **0.200** | **0.300** | **0.350** |" in text
    assert "| **0.200** | **0.300** | – |" in text
    assert "FGSM robust" not in compare.render_compare(compare.compare_rows({"b": without}))
