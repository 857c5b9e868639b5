r"""Times one deep-ensemble train step, vmapped against unrolled members, against one base.

Prints one JSON line per case (``what``, ``seconds_per_step``, ``ratio_to_base``): the
ensemble of the ``fmnist_methods:ensemble`` config (5 of the demo's CNNs) at
batch 128, its members ``jax.vmap``-ed or written out one by one, and the demo's base.

    .venv/bin/python experiments/bench/ensemble_step.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from tac_jax.config_io import load_config
from tac_jax.train.setup import build_setup
from tac_jax.train.step import train_step_fn


def seconds_per_step(config, steps: int, batch: dict) -> float:
    setup = build_setup(config, (28, 28, 1), np.uint8)
    state = jax.jit(setup.init)(jax.random.key(0))
    step = jax.jit(train_step_fn(setup.objective, setup.tx))
    state, metrics = step(state, batch)  # compile
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (128, 28, 28, 1), dtype=np.uint8),
        "label": rng.integers(0, 10, 128).astype(np.int32),
    }
    base = seconds_per_step(load_config("demo:base"), args.steps, batch)
    cases = [("base", base)]
    for axis in ("vmap", "unroll"):
        config = load_config("fmnist_methods:ensemble")
        config.method.member_axis = axis
        cases.append((f"ensemble5_{axis}", seconds_per_step(config, args.steps, batch)))
    for what, seconds in cases:
        print(json.dumps({
            "what": what, "seconds_per_step": round(seconds, 4),
            "ratio_to_base": round(seconds / base, 2), "device": jax.devices()[0].device_kind,
        }))  # fmt: skip


if __name__ == "__main__":
    main()
