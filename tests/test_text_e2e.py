"""End to end on text: a tiny Transformer on Debian's manual pages (base, then a TAC
add-on), evaluated with the text OOD suite."""

import json

import numpy as np
import pytest

from tac_jax.data.vocab import load_vocab
from tac_jax.evaluate import evaluate_run
from tac_jax.evaluate.engine.collect import collect, make_forward
from tac_jax.evaluate.engine.scoring import TAC_NAMES
from tac_jax.train.config import default_config
from tac_jax.train.dataset import VOCAB_FILE, load_splits, run_vocab
from tac_jax.train.loop import train_and_evaluate
from tac_jax.train.setup import load_run

pytestmark = pytest.mark.slow

VOCAB, MAX_LEN = 2000, 64


def tiny(mode: str, base_workdir: str = ""):
    """The section task on English and German pages, 50 per section, 30 steps."""
    config = default_config()
    config.mode, config.base_workdir = mode, base_workdir
    config.data.source = "manpages"
    config.data.languages = ("en", "de")
    config.data.max_per_class = 50
    config.data.num_classes = 6
    config.data.validation_fraction = 0.1
    config.data.max_len, config.data.vocab_size = MAX_LEN, VOCAB
    config.model.name = "text"
    del config.model["features"]
    config.model.vocab_size, config.model.max_len = VOCAB, MAX_LEN
    config.model.hidden_size, config.model.depth = 16, 1
    config.model.num_heads, config.model.mlp_dim = 2, 32
    config.tac.layers = ("layer*",)
    config.optim.name, config.optim.learning_rate = "adamw", 3e-3
    config.steps, config.batch_size, config.eval_batch_size = 30, 16, 64
    config.log_every, config.ckpt_every = 10, 30
    config.progress = False
    return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    base, addon = root / "base", root / "addon"
    base_results = train_and_evaluate(tiny("base"), base)
    addon_results = train_and_evaluate(tiny("addon", str(base)), addon)
    metrics = evaluate_run(addon, suite="text", num_ood=100, bootstrap=0, plots=False)
    return {"base": base, "addon": addon, "metrics": metrics,
            "base_results": base_results, "addon_results": addon_results}  # fmt: skip


def test_runs_save_one_vocabulary(runs):
    vocab = load_vocab(runs["base"] / VOCAB_FILE)
    assert run_vocab(runs["addon"]) == vocab
    assert len(vocab) <= VOCAB and vocab.tokens[:3] == ("<pad>", "<unk>", "<cls>")
    setup, _, _ = load_run(runs["addon"])
    assert setup.input_shape == (MAX_LEN,) and setup.input_dtype == np.int32
    assert setup.tac.layers == ("layer1",)


def test_addon_leaves_the_base_predictions_unchanged(runs):
    test = load_splits(tiny("base").data, 0, vocab=run_vocab(runs["base"]))["test"]
    assert test["image"].dtype == np.int32 and test["image"].shape[1] == MAX_LEN
    logits = {}
    for name in ("base", "addon"):
        setup, _, state = load_run(runs[name])
        logits[name] = collect(make_forward(setup, state), test["image"])["logits"]
    np.testing.assert_allclose(logits["addon"], logits["base"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(logits["addon"].argmax(1), logits["base"].argmax(1))
    base, addon = runs["base_results"], runs["addon_results"]
    assert addon["test_accuracy"] == base["test_accuracy"]
    assert 0.0 <= addon["test_tac_accuracy"] <= 1.0


def test_evaluate_run_with_the_text_suite(runs):
    metrics = json.loads((runs["addon"] / "report" / "metrics.json").read_text())
    assert metrics["evaluation"]["suite"] == "text"
    assert set(TAC_NAMES) <= set(metrics["summary"])
    assert "odin" not in metrics["summary"]  # integer tokens have no input gradient
    sets = metrics["ood"]["sets"]
    assert {"held_out_sections", "shuffled_tokens", "random_tokens"} <= set(sets)
    assert {e["kind"] for e in sets.values()} >= {"near", "corruption", "synthetic"}
    assert "accuracy" in sets["shuffled_tokens"] and "accuracy" not in sets["random_tokens"]
    for name, row in metrics["summary"].items():
        assert 0.0 <= row["misclassification_auroc"] <= 1.0, name
        assert 0.0 <= row["mean_ood_auroc"] <= 1.0, name
    for entry in sets.values():
        assert 0 < entry["size"] <= 100
        for row in entry["scores"].values():
            assert 0.0 <= row["auroc"] <= 1.0
    assert metrics["accuracy"]["base"] == pytest.approx(runs["addon_results"]["test_accuracy"])
    assert metrics["accuracy"]["tac"] == pytest.approx(runs["addon_results"]["test_tac_accuracy"])
