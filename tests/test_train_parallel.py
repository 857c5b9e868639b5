"""Data parallelism changes nothing but speed: the same global batch gives the same
training on 1 device, 8 devices, and 2 processes of 2 devices each.

Each configuration runs in fresh interpreters (XLA_FLAGS must be set before JAX starts).
"""

import json

import numpy as np
import pytest
from _train_helpers import (
    finish,
    free_port,
    load_state,
    params_of,
    run_worker,
    start_worker,
)

pytestmark = [pytest.mark.slow]

# A few steps in scratch mode (every parameter trains), with on-device augmentation so
# the per-example keys are checked to follow the example, not the device.
OVERRIDES = (
    "--config.mode=scratch",
    "--config.steps=4",
    "--config.batch_size=16",
    "--config.eval_batch_size=128",
    "--config.data.train_examples=64",
    "--config.data.test_examples=128",
    "--config.data.augment=flip",
    "--config.ckpt_every=100",
)


def assert_close(actual: dict, expected: dict, rtol=2e-5, atol=2e-6) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=rtol, atol=atol, err_msg=key)


def result_of(stdout: str) -> dict:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_eight_devices_match_one(tmp_path):
    runs = {}
    for devices in (1, 8):
        out = tmp_path / f"d{devices}"
        stdout = run_worker(tmp_path / f"w{devices}", out, *OVERRIDES, devices=devices)
        runs[devices] = (params_of(load_state(f"{out}.0.npz")), result_of(stdout))
    (one, one_result), (eight, eight_result) = runs[1], runs[8]
    assert len(one) > 0
    assert_close(eight, one)
    # The trained parameters moved, so agreeing is not trivial.
    assert any(np.abs(v).sum() > 0 for v in one.values())
    assert eight_result["test_count"] == one_result["test_count"] == 128
    assert eight_result["test_tac_accuracy"] == pytest.approx(one_result["test_tac_accuracy"])


def test_two_processes_match_each_other_and_one_process(tmp_path):
    port = free_port()
    procs = [
        start_worker(
            tmp_path / "multi",
            tmp_path / "multi",
            "--port",
            str(port),
            "--process-id",
            str(i),
            "--num-processes",
            "2",
            *OVERRIDES,
            devices=2,
        )
        for i in range(2)
    ]
    finish(procs)
    first = load_state(tmp_path / "multi.0.npz")
    second = load_state(tmp_path / "multi.1.npz")
    assert sorted(first) == sorted(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)

    run_worker(tmp_path / "single", tmp_path / "single", *OVERRIDES, devices=4)
    single = load_state(tmp_path / "single.0.npz")
    assert_close(params_of(first), params_of(single))
    assert int(first[".step"]) == int(single[".step"]) == 4
