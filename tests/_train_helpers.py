"""Shared pieces of the `tac_jax.train` tests: the smoke config and subprocess runs."""

import atexit
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = "smoke"  # tac_jax/configs/smoke.py
WORKER = pathlib.Path(__file__).with_name("_train_worker.py")


# Shared by every worker of this test session, so identical programs compile once.
_CACHE_DIR = tempfile.mkdtemp(prefix="tac_jax_test_xla_cache_")
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)


def cpu_env(devices: int) -> dict[str, str]:
    """A CPU-only environment with ``devices`` fake devices.

    LLVM optimisation is turned off: compiling dominates these tiny runs, and every run
    compared in a test is compiled the same way.
    """
    return {
        **os.environ,
        "XLA_FLAGS": (
            f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
        ),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": _CACHE_DIR,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(workdir, out, *args: str, devices: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(workdir), str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cpu_env(devices),
        cwd=ROOT,
    )


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    """Waits for every process; returns their stdouts, failing on a non-zero exit."""
    outputs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            assert p.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return outputs


def run_worker(workdir, out, *args: str, devices: int = 1) -> str:
    return finish([start_worker(workdir, out, *args, devices=devices)])[0]


def load_state(path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def params_of(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in state.items() if k.startswith(".params")}
