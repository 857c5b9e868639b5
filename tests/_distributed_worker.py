"""One process of the two-process data-parallel check in `test_parallel.py`.

Usage: python _distributed_worker.py PORT PROCESS_ID NUM_PROCESSES

Feeds this process's rows of a fixed global batch through `shard_batch`, computes a global
mean and the gradient of a linear model under `jax.jit`, and prints them as one JSON line.
"""

import json
import sys

from tac_jax import parallel


def global_batch():
    """The fixed batch every process and the reference agree on."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=(8,)).astype(np.float32)
    return x, y


def loss_fn(params, x, y):
    pred = x @ params["w"] + params["b"]
    return ((pred - y) ** 2).mean()


def main() -> None:
    port, process_id, num_processes = map(int, sys.argv[1:4])
    on = parallel.initialize_distributed(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
    )
    import jax
    import jax.numpy as jnp
    import numpy as np

    info = parallel.process_info()
    mesh = parallel.make_mesh()
    x, y = global_batch()
    rows = len(x) // info.process_count
    mine = slice(info.process_index * rows, (info.process_index + 1) * rows)
    batch = parallel.shard_batch({"x": x[mine], "y": y[mine]}, mesh)

    init = lambda: {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.25)}  # noqa: E731
    params, param_shardings = parallel.create_sharded(init, mesh)

    @jax.jit
    def stats(params, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch["x"], batch["y"])
        return {
            "mean_x": batch["x"].mean(),
            "sum_y": batch["y"].sum(),
            "loss": loss,
            "grads": grads,
        }

    out = stats(params, batch)
    local = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)).tolist(), out)
    report = {
        "distributed": on,
        "process_index": info.process_index,
        "process_count": info.process_count,
        "device_count": info.device_count,
        "local_device_count": info.local_device_count,
        "global_shape": list(batch["x"].shape),
        "replicated": bool(out["loss"].sharding.is_fully_replicated),
        **local,
    }
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
