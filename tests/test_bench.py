"""Tests for tac_jax.bench and ``tac-jax bench``: the cases, the JSON lines, the ratios."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tac_jax import bench, cli
from tac_jax.models.patch_conv import conv_impl
from tac_jax.train.setup import build_setup

FIELDS = {
    "model", "what", "dtype", "batch", "images_per_s", "step_ms", "step_ms_p10",
    "step_ms_p90", "compile_s", "peak_memory_bytes", "flops_per_step", "flop_utilisation",
    "device", "num_devices", "backend", "conv", "jax_version",
}  # fmt: skip
# No mixup: its Beta draw alone takes seconds to compile on CPU.
TINY = bench.ModelSpec("mlp_tiny", "mlp", (("features", (16, 16)),), (4, 4, 1), 10)
TINY_PRESET = bench.Preset(
    models=(TINY,), train_batch=8, score_batch=16, dtypes=("float32",), repeats=3, warmup=1
)


def test_cases_follow_the_preset_and_the_filters():
    cases = bench.make_cases("paper", models=["mnist_cnn", "wrn28_10"], what=["score", "forward"])
    # Preset order for models, WHATS order within: the forward precedes its score.
    assert [(c.spec.label, c.dtype, c.what) for c in cases] == [
        ("wrn28_10", "float32", "forward"),
        ("wrn28_10", "float32", "score"),
        ("wrn28_10", "bfloat16", "forward"),
        ("wrn28_10", "bfloat16", "score"),
        ("mnist_cnn", "float32", "forward"),
        ("mnist_cnn", "float32", "score"),
        ("mnist_cnn", "bfloat16", "forward"),
        ("mnist_cnn", "bfloat16", "score"),
    ]
    assert {c.batch for c in cases} == {1024}
    train = bench.make_cases("paper", what=["addon"], dtypes=["bfloat16"], train_batch=64)
    assert [(c.spec.label, c.batch, c.dtype) for c in train] == [
        ("wrn28_10", 64, "bfloat16"),
        ("resnet50", 64, "bfloat16"),
        ("vit_b16", 64, "bfloat16"),
        ("mnist_cnn", 64, "bfloat16"),
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"preset": "huge"},
        {"models": ["wrn28_10", "alexnet"]},
        {"what": ["train"]},
        {"dtypes": ["float16"]},
        {"train_batch": 0},
    ],
)
def test_unknown_choices_are_refused(kwargs):
    with pytest.raises(ValueError, match="expected"):
        bench.make_cases(**kwargs)


def test_wrn_case_is_the_authors_cifar_config():
    (case,) = bench.make_cases("paper", models=["wrn28_10"], what=["scratch"], dtypes=["bfloat16"])
    config = bench.case_config(case)
    assert config.mode == "scratch" and config.dtype == "bfloat16"
    assert (config.model.depth, config.model.widen_factor) == (28, 10)
    assert config.tac.layers == ("group1", "group2", "group3")
    assert config.tac.projection == "very_large" and config.tac.mixup_alpha == 0.2
    assert config.batch_size == 128


@pytest.mark.parametrize("preset", ["smoke", "paper"])
def test_every_preset_model_builds(preset):
    for case in bench.make_cases(preset, what=["scratch"], dtypes=["float32"]):
        setup = build_setup(bench.case_config(case), case.spec.input_shape, np.uint8)
        state = jax.eval_shape(setup.init, jax.random.key(0))
        assert set(state.params) == {"base", "tac"}


def test_peak_table():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", "float32") == 494.7
    assert bench.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.5
    assert bench.peak_tflops("TPU v5 lite", "bfloat16") == 197.0
    assert bench.peak_tflops("cpu", "bfloat16") is None


def test_cli_prints_one_json_line_per_case(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(bench.PRESETS, "tiny", TINY_PRESET)
    output = tmp_path / "bench.jsonl"
    args = ["bench", "--preset", "tiny", "--what", "scratch,addon,score,forward"]
    args += ["--peak-tflops", "2.0", "--output", str(output), "--conv", "lax"]
    assert cli.main(args) == 0
    assert conv_impl() == "auto"  # the choice lasted for the command only
    lines = capsys.readouterr().out.splitlines()
    assert output.read_text().splitlines() == lines
    records = {r["what"]: r for r in map(json.loads, lines)}
    assert list(records) == ["addon", "scratch", "forward", "score"]
    for what, r in records.items():
        extra = {"overhead_vs_forward"} if what == "score" else set()
        assert set(r) == FIELDS | extra
        assert (r["model"], r["dtype"], r["backend"]) == ("mlp_tiny", "float32", "cpu")
        assert r["conv"] == "lax"
        assert r["batch"] == (16 if what in ("forward", "score") else 8)
        assert r["step_ms_p10"] <= r["step_ms"] <= r["step_ms_p90"]
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["step_ms"] * 1e3, rel=5e-3)
        assert r["compile_s"] > 0 and r["flops_per_step"] > 0
        achieved = r["flops_per_step"] / (r["step_ms"] * 1e-3)
        assert r["flop_utilisation"] == pytest.approx(achieved / 2e12, rel=1e-2, abs=1e-4)
    # The ratio comes from the two lines of this run.
    ratio = records["score"]["step_ms"] / records["forward"]["step_ms"]
    assert records["score"]["overhead_vs_forward"] == pytest.approx(ratio, abs=1e-4)
    # A train step does more work than the forward pass inside it.
    assert records["scratch"]["flops_per_step"] > records["addon"]["flops_per_step"]


def test_cli_reports_bad_choices_in_one_line(capsys):
    assert cli.main(["bench", "--preset", "smoke", "--what", "train"]) == cli.EXIT_USAGE
    assert "expected what from" in capsys.readouterr().err


_SHARDED = """
import json
from tac_jax import bench
from test_bench import TINY
(record,) = bench.run_bench([bench.BenchCase(TINY, "addon", "float32", 4)], repeats=1)
print(json.dumps([record["num_devices"], record["batch"]]))
try:
    bench.time_case(bench.BenchCase(TINY, "forward", "float32", 3), repeats=1)
except ValueError as error:
    print(error)
"""


def test_batch_splits_over_every_local_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    counts, message = done.stdout.strip().splitlines()[-2:]
    assert json.loads(counts) == [2, 4]
    assert "divisible by the 2 data shards, got 3" in message
