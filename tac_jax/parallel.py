"""Device meshes, shardings and multi-process start-up.

Training runs data-parallel over a 2-D mesh with axes ``("data", "model")``: the batch is
split over ``"data"`` and parameters are replicated unless a sharding rule places them on
``"model"``. The same code runs on one CPU, one accelerator, a multi-GPU host or a pod:
only the mesh changes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
MODEL_AXIS = "model"

# The variables JAX's own cluster detection reads (jax._src.clusters); mirrored here so a
# plain single machine never calls `jax.distributed.initialize`, which would fail there.
_SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)
_OMPI_URI = "OMPI_MCA_orte_hnp_uri"
_TPU_VARS = ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "MEGASCALE_COORDINATOR_ADDRESS")
_TPU_DEVICE_FILES = ("/dev/accel0", "/dev/vfio/0")

ShardingRule = Callable[[tuple[Any, ...], tuple[int, ...]], PartitionSpec]


def detected_cluster() -> str | None:
    """Names the multi-process environment this process was launched in, if any.

    Returns:
      ``"slurm"`` or ``"ompi"`` for a job with more than one task, ``"tpu"`` on a Cloud TPU
      VM, or ``None`` on a plain machine.
    """
    env = os.environ
    if all(v in env for v in _SLURM_VARS) and int(env["SLURM_NTASKS"]) > 1:
        return "slurm"
    if _OMPI_URI in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "ompi"
    if any(env.get(v) for v in _TPU_VARS):
        return "tpu"
    # GCE TPU VMs publish the pod layout through the metadata server rather than the
    # environment; libtpu plus a TPU device node is the cheap sign that JAX will find it.
    if importlib.util.find_spec("libtpu") is not None and any(
        os.path.exists(f) for f in _TPU_DEVICE_FILES
    ):
        return "tpu"
    return None


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> bool:
    """Starts `jax.distributed` when there is more than one process to connect.

    Must run before any other JAX call touches a device. With no arguments it starts only in
    an environment JAX can configure itself (SLURM, Open MPI, Cloud TPU); on a plain machine
    it does nothing. Calling it again is harmless.

    Args:
      coordinator_address: ``"host:port"`` of process 0.
      num_processes: Total number of processes.
      process_id: Index of this process in ``[0, num_processes)``.
      local_device_ids: Restricts this process to these local devices.

    Returns:
      Whether the distributed runtime is on.

    Example:
      >>> initialize_distributed()  # a plain machine: nothing to connect
      False
    """
    if jax.distributed.is_initialized():
        return True
    explicit = (coordinator_address, num_processes, process_id, local_device_ids)
    if all(a is None for a in explicit) and detected_cluster() is None:
        return False
    # Without a CPU collectives backend, cross-process computations on CPU fail at run time
    # rather than at start-up; keep a user's choice (e.g. "mpi") if one was made.
    if not jax.config.jax_cpu_collectives_implementation:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
    return True


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits among the processes and devices of a run."""

    process_index: int
    process_count: int
    local_device_count: int
    device_count: int

    @property
    def is_main(self) -> bool:
        """Whether this is process 0, the one that writes logs and reports."""
        return self.process_index == 0


def process_info() -> ProcessInfo:
    """Returns the process and device counts of the current run."""
    return ProcessInfo(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
        device_count=jax.device_count(),
    )


def make_mesh(data: int = -1, model: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """Builds a ``("data", "model")`` mesh over all devices of the run.

    Args:
      data: Size of the data-parallel axis; -1 takes every device the model axis leaves.
      model: Size of the model-parallel axis; -1 takes every device the data axis leaves.
      devices: Devices to arrange; defaults to ``jax.devices()`` (every process's devices).

    Returns:
      A mesh of shape ``(data, model)`` with ``Auto`` axes, so shardings propagate through
      `jax.jit` as with pjit.

    Raises:
      ValueError: If the sizes do not multiply to the number of devices.

    Example:
      >>> mesh = make_mesh()
      >>> mesh.axis_names
      ('data', 'model')
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if data == -1 and model == -1:
        raise ValueError(
            f"expected at most one of data, model to be -1, got data={data}, model={model}."
        )
    for name, size in ((DATA_AXIS, data), (MODEL_AXIS, model)):
        if size != -1 and size < 1:
            raise ValueError(f"expected {name} to be a positive size or -1, got {size}.")
    if data == -1:
        if n % model:
            raise ValueError(
                f"expected model={model} to divide the {n} devices, got remainder {n % model}."
            )
        data = n // model
    elif model == -1:
        if n % data:
            raise ValueError(
                f"expected data={data} to divide the {n} devices, got remainder {n % data}."
            )
        model = n // data
    if data * model != n:
        raise ValueError(
            f"expected data * model to equal the {n} devices, got {data} * {model} = {data * model}."
        )
    grid = mesh_utils.create_device_mesh((data, model), devices)
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Splits axis 0 (the batch) over ``"data"`` and replicates over ``"model"``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec())


def _local_data_shards(mesh: Mesh) -> int:
    """Counts the distinct batch slices this process's devices hold."""
    here = jax.process_index()
    rows = mesh.devices.reshape(mesh.shape[DATA_AXIS], -1)
    return sum(any(d.process_index == here for d in row) for row in rows)


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
    """Assembles each process's rows into global arrays split over ``"data"``.

    Every process calls this with only its own rows (its share of the global batch); the
    result is the global batch, with each device holding its slice.

    Args:
      local_batch: Pytree of numpy arrays with the same leading (row) dimension.
      mesh: The mesh from `make_mesh`.

    Returns:
      The same pytree of global `jax.Array`s with ``process_count`` times the rows.

    Raises:
      ValueError: If a leaf is a scalar or its rows do not split over the local devices.

    Example:
      >>> import numpy as np
      >>> batch = shard_batch({"x": np.zeros((8, 3), np.float32)}, make_mesh())
      >>> batch["x"].shape[1]
      3
    """
    sharding = data_sharding(mesh)
    shards = _local_data_shards(mesh)

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"expected batch leaves with a row axis, got a scalar {x!r}.")
        if x.shape[0] % shards:
            raise ValueError(
                f"expected the local rows to split evenly over this process's {shards} data "
                f"shards, got {x.shape[0]} rows."
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, local_batch)


def _shardings(abstract: Any, mesh: Mesh, rule: ShardingRule | None) -> Any:
    def leaf_sharding(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        spec = PartitionSpec() if rule is None else rule(path, tuple(leaf.shape))
        if not isinstance(spec, PartitionSpec):
            raise TypeError(
                f"expected param_sharding_rule to return a PartitionSpec, got {type(spec).__name__} "
                f"for {jax.tree_util.keystr(path)}."
            )
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(leaf_sharding, abstract)


def abstract_sharded(
    init_fn: Callable[..., Any],
    mesh: Mesh,
    *args: Any,
    param_sharding_rule: ShardingRule | None = None,
) -> Any:
    """Shapes, dtypes and shardings of ``init_fn(*args)`` without computing it.

    This is what a checkpoint restore needs to place each array straight onto its devices.

    Args:
      init_fn: Builds the state (e.g. a `TrainState`) from ``args``.
      mesh: The mesh from `make_mesh`.
      *args: Arguments of ``init_fn`` (e.g. a PRNG key).
      param_sharding_rule: ``rule(path, shape) -> PartitionSpec`` per leaf; replicated
        when ``None``.

    Returns:
      The state's pytree with `jax.ShapeDtypeStruct` leaves carrying their sharding.
    """
    abstract = jax.eval_shape(init_fn, *args)
    shardings = _shardings(abstract, mesh, param_sharding_rule)
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


def create_sharded(
    init_fn: Callable[..., Any],
    mesh: Mesh,
    *args: Any,
    param_sharding_rule: ShardingRule | None = None,
) -> tuple[Any, Any]:
    """Runs ``init_fn(*args)`` so that every array is born on its devices.

    The state is never materialised on one device first, which matters once it no longer
    fits there.

    Args:
      init_fn: Builds the state (e.g. a `TrainState`) from ``args``.
      mesh: The mesh from `make_mesh`.
      *args: Arguments of ``init_fn`` (e.g. a PRNG key).
      param_sharding_rule: ``rule(path, shape) -> PartitionSpec`` per leaf; replicated
        when ``None``.

    Returns:
      ``(state, shardings)``: the state and the matching pytree of `NamedSharding`s, ready
      for ``jax.jit(..., in_shardings=..., out_shardings=...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> state, shardings = create_sharded(lambda: {"w": jnp.ones(3)}, make_mesh())
      >>> state["w"].sharding.is_fully_replicated
      True
    """
    abstract = jax.eval_shape(init_fn, *args)
    shardings = _shardings(abstract, mesh, param_sharding_rule)
    state = jax.jit(init_fn, out_shardings=shardings)(*args)
    return state, shardings
