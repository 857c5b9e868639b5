"""Tests for tac_jax.parallel.

Meshes of several devices need XLA_FLAGS set before JAX starts, and this pytest process may
already have started JAX with one device, so those checks run in fresh interpreters and
report their numbers back as JSON.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from tac_jax import parallel

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = pathlib.Path(__file__).with_name("_distributed_worker.py")


def cpu_env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }


def run_on_cpu_devices(code: str, devices: int = 8) -> dict:
    """Runs ``code`` with ``devices`` CPU devices; returns the JSON of its last line."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=cpu_env(devices),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_make_mesh_shapes_on_eight_devices():
    out = run_on_cpu_devices(
        """
        import json, jax, numpy as np
        from tac_jax import parallel
        meshes = {
            "default": parallel.make_mesh(),
            "model2": parallel.make_mesh(model=2),
            "data2": parallel.make_mesh(data=2, model=-1),
            "explicit": parallel.make_mesh(data=4, model=2),
            "subset": parallel.make_mesh(devices=jax.devices()[:4]),
        }
        report = {k: {"shape": dict(m.shape), "names": list(m.axis_names),
                      "unique": len({d.id for d in m.devices.flat})} for k, m in meshes.items()}
        try:
            parallel.shard_batch({"x": np.zeros((6, 2))}, meshes["default"])
        except ValueError as e:
            report["uneven"] = str(e)
        print(json.dumps(report))
        """
    )
    assert out["default"] == {
        "shape": {"data": 8, "model": 1},
        "names": ["data", "model"],
        "unique": 8,
    }
    assert out["model2"]["shape"] == {"data": 4, "model": 2}
    assert out["data2"]["shape"] == {"data": 2, "model": 4}
    assert out["explicit"]["shape"] == {"data": 4, "model": 2}
    assert out["explicit"]["unique"] == 8
    assert out["subset"]["shape"] == {"data": 4, "model": 1}
    assert out["uneven"] == (
        "expected the local rows to split evenly over this process's 8 data shards, got 6 rows."
    )


def test_global_mean_of_a_batch_split_over_eight_devices():
    out = run_on_cpu_devices(
        """
        import json, jax, jax.numpy as jnp, numpy as np
        from tac_jax import parallel
        mesh = parallel.make_mesh()
        x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3) ** 1.5
        batch = parallel.shard_batch({"x": x, "y": x[:, 0].astype(np.int32)}, mesh)
        mean = jax.jit(lambda b: b["x"].mean(axis=0), out_shardings=parallel.replicated(mesh))
        print(json.dumps({
            "mean": np.asarray(mean(batch)).tolist(),
            "shape": list(batch["x"].shape),
            "shards": sorted({tuple(s.data.shape) for s in batch["x"].addressable_shards}),
            "n_shards": len(batch["x"].addressable_shards),
            "y_dtype": str(batch["y"].dtype),
            "spec": str(batch["x"].sharding.spec),
        }))
        """
    )
    x = np.arange(16 * 3, dtype=np.float32).reshape(16, 3) ** 1.5
    np.testing.assert_allclose(out["mean"], x.mean(axis=0, dtype=np.float64), rtol=1e-6)
    assert out["shape"] == [16, 3]
    assert out["shards"] == [[2, 3]]
    assert out["n_shards"] == 8
    assert out["y_dtype"] == "int32"
    assert out["spec"] == str(jax.sharding.PartitionSpec("data"))


def test_create_sharded_equals_unsharded_init():
    out = run_on_cpu_devices(
        """
        import json, jax, jax.numpy as jnp, numpy as np
        import flax.linen as nn
        from jax.sharding import PartitionSpec as P
        from tac_jax import parallel
        model = nn.Dense(4)
        init = lambda key: model.init(key, jnp.ones((1, 6)))
        key = jax.random.key(3)
        plain = init(key)
        params, shardings = parallel.create_sharded(init, parallel.make_mesh(), key)
        # A rule that puts the kernel's output columns on the model axis.
        mesh = parallel.make_mesh(data=4, model=2)
        rule = lambda path, shape: P(None, "model") if len(shape) == 2 else P()
        split, _ = parallel.create_sharded(init, mesh, key, param_sharding_rule=rule)
        abstract = parallel.abstract_sharded(init, mesh, key, param_sharding_rule=rule)
        leaves = jax.tree.leaves(params)
        print(json.dumps({
            "max_diff": max(float(jnp.abs(a - b).max()) for a, b in
                            zip(leaves, jax.tree.leaves(plain))),
            "split_diff": max(float(jnp.abs(a - b).max()) for a, b in
                              zip(jax.tree.leaves(split), jax.tree.leaves(plain))),
            "replicated": all(a.sharding.is_fully_replicated for a in leaves),
            "devices": sorted({len(a.sharding.device_set) for a in leaves}),
            "same_sharding": all(a.sharding == s for a, s in
                                 zip(leaves, jax.tree.leaves(shardings))),
            "kernel_shard": list(split["params"]["kernel"].addressable_shards[0].data.shape),
            "abstract_kernel": [list(abstract["params"]["kernel"].shape),
                                str(abstract["params"]["kernel"].sharding.spec)],
        }))
        """
    )
    assert out["max_diff"] == 0.0
    assert out["split_diff"] == 0.0
    assert out["replicated"] is True
    assert out["devices"] == [8]
    assert out["same_sharding"] is True
    assert out["kernel_shard"] == [6, 2]
    assert out["abstract_kernel"] == [[6, 4], str(jax.sharding.PartitionSpec(None, "model"))]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": 3}, "expected data \\* model to equal the 8 devices, got 3 \\* 1 = 3."),
        (
            {"data": 4, "model": 4},
            "expected data \\* model to equal the 8 devices, got 4 \\* 4 = 16.",
        ),
        ({"model": 3}, "expected model=3 to divide the 8 devices, got remainder 2."),
        ({"data": 3, "model": -1}, "expected data=3 to divide the 8 devices, got remainder 2."),
        ({"data": -1, "model": -1}, "expected at most one of data, model to be -1"),
        ({"data": 0}, "expected data to be a positive size or -1, got 0."),
    ],
)
def test_make_mesh_rejects_sizes_that_do_not_fit(kwargs, message):
    # The sizes are checked before any device is touched, so stand-ins suffice.
    with pytest.raises(ValueError, match=message):
        parallel.make_mesh(devices=[object()] * 8, **kwargs)


def test_sharding_rule_must_return_a_partition_spec():
    mesh = parallel.make_mesh()
    with pytest.raises(TypeError, match="expected param_sharding_rule to return a PartitionSpec"):
        parallel.abstract_sharded(
            lambda: {"w": np.zeros(2)}, mesh, param_sharding_rule=lambda p, s: "data"
        )


def test_process_info_single_process():
    info = parallel.process_info()
    assert info == parallel.ProcessInfo(0, 1, jax.local_device_count(), jax.device_count())
    assert info.is_main


CLUSTER_VARS = [
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "OMPI_MCA_orte_hnp_uri",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
    "TPU_PROCESS_ADDRESSES",
    "MEGASCALE_COORDINATOR_ADDRESS",
]


@pytest.fixture
def plain_machine(monkeypatch):
    for var in CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(parallel, "_TPU_DEVICE_FILES", ())
    return monkeypatch


def test_initialize_distributed_is_a_no_op_on_a_plain_machine(plain_machine):
    assert parallel.detected_cluster() is None
    assert parallel.initialize_distributed() is False
    assert parallel.initialize_distributed() is False
    assert not jax.distributed.is_initialized()


def test_detected_cluster_reads_the_launcher_environment(plain_machine):
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_PROCID": "0"}
    for var, value in {**slurm, "SLURM_LOCALID": "0", "SLURM_NTASKS": "1"}.items():
        plain_machine.setenv(var, value)
    assert parallel.detected_cluster() is None  # a one-task job needs no coordinator
    plain_machine.setenv("SLURM_NTASKS", "4")
    assert parallel.detected_cluster() == "slurm"
    plain_machine.delenv("SLURM_JOB_ID")
    plain_machine.setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://10.96.0.1:34911")
    plain_machine.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert parallel.detected_cluster() == "ompi"
    plain_machine.delenv("OMPI_MCA_orte_hnp_uri")
    plain_machine.setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
    assert parallel.detected_cluster() == "tpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_with_the_single_process_result():
    sys.path.insert(0, str(WORKER.parent))
    try:
        import _distributed_worker as worker
    finally:
        sys.path.pop(0)

    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(port), str(i), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cpu_env(2),
            cwd=ROOT,
        )
        for i in range(2)
    ]
    reports = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=120)
            assert p.returncode == 0, stderr[-3000:]
            line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
            reports.append(json.loads(line.removeprefix("RESULT ")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    assert [r["process_index"] for r in reports] == [0, 1]
    for r in reports:
        assert r["distributed"] is True
        assert (r["process_count"], r["device_count"], r["local_device_count"]) == (2, 4, 2)
        assert r["global_shape"] == [8, 3]
        assert r["replicated"] is True
    strip = lambda r: {k: r[k] for k in ("mean_x", "sum_y", "loss", "grads")}  # noqa: E731
    assert strip(reports[0]) == strip(reports[1])

    # The same computation on the whole batch in this single process.
    x, y = worker.global_batch()
    params = {"w": jax.numpy.array([0.5, -1.0, 2.0]), "b": jax.numpy.array(0.25)}
    loss, grads = jax.jit(jax.value_and_grad(worker.loss_fn))(params, x, y)
    got = reports[0]
    np.testing.assert_allclose(got["mean_x"], x.mean(), atol=1e-6)
    np.testing.assert_allclose(got["sum_y"], y.sum(), atol=1e-6)
    np.testing.assert_allclose(got["loss"], float(loss), atol=1e-6)
    np.testing.assert_allclose(got["grads"]["w"], np.asarray(grads["w"]), atol=1e-6)
    np.testing.assert_allclose(got["grads"]["b"], float(grads["b"]), atol=1e-6)
    # And against float64 by hand: d/dw mean((xw + b - y)^2) = 2/N x^T r.
    r = x.astype(np.float64) @ np.array([0.5, -1.0, 2.0]) + 0.25 - y
    np.testing.assert_allclose(got["grads"]["w"], 2 * x.T @ r / len(x), atol=1e-5)
    np.testing.assert_allclose(got["grads"]["b"], 2 * r.mean(), atol=1e-5)
