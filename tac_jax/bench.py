"""Throughput of the training and scoring steps on synthetic inputs (``tac-jax bench``).

A case is one (model, what, dtype, batch). ``what`` is one of:

* ``"base"``: the base network's cross-entropy train step;
* ``"addon"``: TAC's add-on train step, the base frozen;
* ``"scratch"``: base and TAC trained jointly;
* ``"forward"``: the bare base forward pass (logits and the pooled tapped features);
* ``"score"``: TAC's scoring, i.e. forward, total activation vector and `tac_scores`.

The train steps are the ones training runs: `tac_jax.train.step.shard_train_step` over
what `tac_jax.train.setup.build_setup` builds from the case's config, the state donated
and threaded from one call to the next. Inputs are random uint8 images of the real shape
and random labels, placed on the devices before the clock starts; every timed call
blocks on its outputs. Mixup, code noise and dropout run (they are part of the step);
data augmentation does not, as in reference timings taken on synthetic tensors.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tac_jax.features import feature_dict, pooled_features
from tac_jax.models.patch_conv import resolved_conv_impl
from tac_jax.parallel import DATA_AXIS, create_sharded, data_sharding, make_mesh, shard_batch
from tac_jax.scores.tac import tac_scores
from tac_jax.train.config import COMPUTE_DTYPES, default_config
from tac_jax.train.setup import build_setup
from tac_jax.train.step import as_float_images, shard_train_step, train_step_fn

# Run order within a model and dtype: the forward precedes the score it is compared with.
WHATS = ("base", "addon", "scratch", "forward", "score")
TRAIN_WHATS = ("base", "addon", "scratch")

# Dense peak TFLOP/s per device: (device_kind substring, bfloat16, float32). Float32 uses
# the TF32 figure because JAX's default precision runs float32 convolutions and matmuls
# on TF32 tensor cores on Ampere and later. TPUs list bfloat16 only. First match wins.
PEAK_TFLOPS: tuple[tuple[str, float, float | None], ...] = (
    ("h100 pcie", 756.5, 378.0),
    ("h100", 989.4, 494.7),
    ("h200", 989.4, 494.7),
    ("a100", 312.0, 156.0),
    ("tpu v4", 275.0, None),
    ("tpu v5 lite", 197.0, None),
    ("tpu v5", 459.0, None),
    ("tpu v6 lite", 918.0, None),
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A benchmarked network and its TAC head, as in the config it stands for.

    Attributes:
      label: the name in results and in ``--models``.
      name: a `tac_jax.models.MODELS` key.
      fields: the model's fields, as ``(name, value)`` pairs.
      input_shape: one image's shape.
      num_classes: the class count.
      layers: the tapped layers (empty: the model's defaults).
      projection, code_noise, scale, mixup_alpha: TAC's head and loss settings.
    """

    label: str
    name: str
    fields: tuple[tuple[str, Any], ...]
    input_shape: tuple[int, ...]
    num_classes: int
    layers: tuple[str, ...] = ()
    projection: str = "small"
    code_noise: float = 0.15
    scale: float = 10.0
    mixup_alpha: float = 0.0


@dataclasses.dataclass(frozen=True)
class BenchCase:
    """One timed program: a model, what runs, the compute dtype and the global batch."""

    spec: ModelSpec
    what: str
    dtype: str
    batch: int

    def __post_init__(self):
        if self.what not in WHATS:
            raise ValueError(f"expected what in {WHATS}, got {self.what!r}")
        if self.dtype not in COMPUTE_DTYPES:
            raise ValueError(f"expected a dtype in {tuple(COMPUTE_DTYPES)}, got {self.dtype!r}")
        if self.batch < 1:
            raise ValueError(f"expected a positive batch, got {self.batch}")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A set of models with the batches, dtypes and repeat counts they run at."""

    models: tuple[ModelSpec, ...]
    train_batch: int
    score_batch: int
    dtypes: tuple[str, ...]
    repeats: int
    warmup: int


_WRN_TAC = dict(
    layers=("group1", "group2", "group3"),
    projection="very_large",
    code_noise=0.1,
    scale=15.0,
    mixup_alpha=0.2,
)
_CNN_TAC = dict(layers=("conv1", "conv2", "conv3", "conv4"), projection="small")

PRESETS: dict[str, Preset] = {
    # The authors' CIFAR-10 and MNIST configs, plus two ImageNet-sized networks.
    "paper": Preset(
        models=(
            ModelSpec(
                "wrn28_10", "wrn", (("depth", 28), ("widen_factor", 10), ("dropout_rate", 0.3)),
                (32, 32, 3), 10, **_WRN_TAC,
            ),
            ModelSpec(
                "resnet50", "resnet50", (), (224, 224, 3), 1000,
                layers=("stage1", "stage2", "stage3", "stage4"),
            ),
            ModelSpec("vit_b16", "vit_b", (("patch_size", 16),), (224, 224, 3), 1000),
            ModelSpec(
                "mnist_cnn", "mnist_cnn", (("channels", (64, 128, 256, 512)),),
                (28, 28, 1), 10, **_CNN_TAC,
            ),
        ),
        train_batch=128, score_batch=1024, dtypes=("float32", "bfloat16"), repeats=20, warmup=5,
    ),
    # Tiny versions of the CIFAR and MNIST cases, for a CPU check of the whole path.
    "smoke": Preset(
        models=(
            ModelSpec(
                "wrn10_1", "wrn", (("depth", 10), ("widen_factor", 1)), (32, 32, 3), 10,
                **_WRN_TAC,
            ),
            ModelSpec(
                "mnist_cnn_tiny", "mnist_cnn", (("channels", (16, 16, 32, 32)),), (28, 28, 1),
                10, **_CNN_TAC,
            ),
        ),
        train_batch=16, score_batch=32, dtypes=("float32",), repeats=2, warmup=1,
    ),
}  # fmt: skip


def _pick(kind: str, requested: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    if requested is None:
        return list(available)
    unknown = [r for r in requested if r not in available]
    if unknown or not requested:
        raise ValueError(f"expected {kind} from {list(available)}, got {list(requested)}")
    return [a for a in available if a in requested]


def make_cases(
    preset: str = "paper",
    *,
    models: Sequence[str] | None = None,
    what: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    train_batch: int | None = None,
    score_batch: int | None = None,
) -> list[BenchCase]:
    """The cases of a preset, narrowed and resized as asked.

    Args:
      preset: a `PRESETS` key.
      models: model labels to keep (default: all of the preset's).
      what: which programs to time, from `WHATS` (default: all).
      dtypes: compute dtypes (default: the preset's).
      train_batch: the global batch of the train steps (default: the preset's).
      score_batch: the global batch of ``forward`` and ``score`` (default: the preset's).

    Returns:
      Cases ordered by model, dtype, then `WHATS` (a forward before its score).

    >>> [c.what for c in make_cases("smoke", models=["wrn10_1"], what=["score", "forward"])]
    ['forward', 'score']
    """
    if preset not in PRESETS:
        raise ValueError(f"expected a preset in {tuple(PRESETS)}, got {preset!r}")
    p = PRESETS[preset]
    specs = {s.label: s for s in p.models}
    labels = _pick("models", models, list(specs))
    whats = _pick("what", what, WHATS)
    dtypes = _pick("dtypes", dtypes, tuple(COMPUTE_DTYPES)) if dtypes else list(p.dtypes)
    train_batch = p.train_batch if train_batch is None else int(train_batch)
    score_batch = p.score_batch if score_batch is None else int(score_batch)
    return [
        BenchCase(specs[m], w, d, train_batch if w in TRAIN_WHATS else score_batch)
        for m in labels
        for d in dtypes
        for w in whats
    ]


def case_config(case: BenchCase) -> ml_collections.ConfigDict:
    """The training config a case stands for (default optimizer: SGD, momentum, clipping)."""
    spec = case.spec
    config = default_config()
    config.mode = case.what if case.what in TRAIN_WHATS else "addon"
    # Validation asks add-on runs for a base to restore; timing a random base is as good.
    config.base_workdir = "unused: the benchmark times a randomly initialised base"
    config.model = ml_collections.ConfigDict({"name": spec.name, **dict(spec.fields)})
    config.data.num_classes = spec.num_classes
    config.tac.layers = spec.layers
    config.tac.projection = spec.projection
    config.tac.code_noise = spec.code_noise
    config.tac.scale = spec.scale
    config.tac.mixup_alpha = spec.mixup_alpha
    config.batch_size = case.batch
    config.dtype = case.dtype
    return config


def peak_tflops(device_kind: str, dtype: str) -> float | None:
    """The dense peak TFLOP/s of one device from `PEAK_TFLOPS`, or None if not listed.

    >>> peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16")
    989.4
    >>> peak_tflops("cpu", "float32") is None
    True
    """
    kind = device_kind.lower()
    for key, bf16, f32 in PEAK_TFLOPS:
        if key in kind:
            return bf16 if dtype == "bfloat16" else f32
    return None


def _synthetic(case: BenchCase, mesh: jax.sharding.Mesh, with_labels: bool) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    shape = (case.batch, *case.spec.input_shape)
    batch = {"image": rng.integers(0, 256, shape, dtype=np.uint8)}
    if with_labels:
        batch["label"] = rng.integers(0, case.spec.num_classes, (case.batch,)).astype(np.int32)
    return shard_batch(batch, mesh)


def _program(case: BenchCase, mesh: jax.sharding.Mesh) -> tuple[Any, list[Any], bool]:
    """``(jitted function, arguments, whether the first output is the next state)``."""
    setup = build_setup(case_config(case), case.spec.input_shape, np.uint8)
    state, shardings = create_sharded(setup.init, mesh, jax.random.key(0))
    if case.what in TRAIN_WHATS:
        step = shard_train_step(train_step_fn(setup.objective, setup.tx), mesh, shardings)
        return step, [state, _synthetic(case, mesh, True)], True
    tac = setup.tac
    if case.what == "score":
        codes = jnp.asarray(tac.codes.matrix)
        variables = state.variables

        def run(variables, images):
            out, _ = tac.apply(variables, as_float_images(images))
            return tac_scores(out.activation, out.logits, codes)

    else:
        variables = tac.base_variables(state.variables)

        def run(variables, images):
            logits, st = tac.base.apply(
                variables, as_float_images(images), train=False, mutable=["intermediates"]
            )
            features = pooled_features(feature_dict(st["intermediates"]), tac.layers)
            return {"logits": logits.astype(jnp.float32), "features": features}

    rows = data_sharding(mesh)
    var_shardings = jax.tree.map(lambda x: x.sharding, variables)
    jitted = jax.jit(run, in_shardings=(var_shardings, rows), out_shardings=rows)
    return jitted, [variables, _synthetic(case, mesh, False)["image"]], False


def _flops(compiled: Any) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # Not every backend implements it.
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _peak_memory() -> int | None:
    stats = jax.local_devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def time_case(
    case: BenchCase,
    *,
    repeats: int = 20,
    warmup: int = 5,
    peak: float | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
    """Compiles and times one case; see `run_bench` for the fields of the result.

    Args:
      case: what to time.
      repeats: timed calls (the median and percentiles are over these).
      warmup: untimed calls first.
      peak: dense peak TFLOP/s per device (default: `peak_tflops` of the device).
      mesh: default: every local device on the ``"data"`` axis (the batch is this
        host's; each host of a multi-host job times its own devices).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"expected repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    mesh = make_mesh(devices=jax.local_devices()) if mesh is None else mesh
    shards = mesh.shape[DATA_AXIS]
    if case.batch % shards:
        raise ValueError(
            f"expected a batch divisible by the {shards} data shards, got {case.batch} "
            f"({case.spec.label} {case.what})"
        )
    jitted, args, threads_state = _program(case, mesh)
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start

    def call() -> None:
        out = compiled(*args)
        if threads_state:
            # The old state was donated: the next call must take the new one.
            args[0] = out[0]
        jax.block_until_ready(out)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    p10, median, p90 = (float(t) for t in np.percentile(np.asarray(times), [10, 50, 90]))
    devices = mesh.devices.size
    program_flops = _flops(compiled)
    # The compiled program is one device's share of the step.
    flops = program_flops * devices if program_flops is not None else None
    device = jax.local_devices()[0]
    peak = peak_tflops(device.device_kind, case.dtype) if peak is None else peak
    utilisation = flops / median / (peak * 1e12 * devices) if flops and peak else None
    return {
        "model": case.spec.label,
        "what": case.what,
        "dtype": case.dtype,
        "batch": case.batch,
        "images_per_s": round(case.batch / median, 1),
        "step_ms": round(median * 1e3, 4),
        "step_ms_p10": round(p10 * 1e3, 4),
        "step_ms_p90": round(p90 * 1e3, 4),
        "compile_s": round(compile_s, 2),
        "peak_memory_bytes": _peak_memory(),
        "flops_per_step": flops,
        "flop_utilisation": round(utilisation, 4) if utilisation is not None else None,
        "device": device.device_kind,
        "num_devices": devices,
        "backend": jax.default_backend(),
        "conv": resolved_conv_impl(),
        "jax_version": jax.__version__,
    }


def run_bench(
    cases: Sequence[BenchCase],
    *,
    repeats: int = 20,
    warmup: int = 5,
    log: Callable[[str], None] | None = None,
    peak: float | None = None,
) -> list[dict[str, Any]]:
    """Times every case, in order.

    Each result holds ``model``, ``what``, ``dtype``, ``batch``; ``images_per_s`` (batch
    over the median step time); ``step_ms`` (median), ``step_ms_p10``, ``step_ms_p90``;
    ``compile_s`` (lowering and compiling); ``peak_memory_bytes`` (the first local
    device's ``peak_bytes_in_use`` so far in this process, None where the backend keeps
    no count); ``flops_per_step`` (XLA's count for the compiled program, all devices;
    None where unavailable); ``flop_utilisation`` (achieved over peak FLOP/s, None
    without a peak); ``device``, ``num_devices``, ``backend``; ``conv`` (``"patches"``
    or ``"lax"``, see `tac_jax.models.patch_conv`); ``jax_version``. A score
    line also holds ``overhead_vs_forward``, its median step time over that of the
    forward case of the same model, dtype and batch when that ran before it.

    Args:
      cases: from `make_cases`.
      repeats: timed calls per case.
      warmup: untimed calls per case first.
      log: called with each result's JSON line as soon as it is measured.
      peak: dense peak TFLOP/s per device, overriding `PEAK_TFLOPS`.

    Returns:
      One dict per case.

    >>> cases = make_cases("smoke", models=["mnist_cnn_tiny"], what=["forward"])
    >>> run_bench(cases, repeats=1, warmup=0)[0]["images_per_s"] > 0  # doctest: +SKIP
    True
    """
    results, forward_ms = [], {}
    for case in cases:
        record = time_case(case, repeats=repeats, warmup=warmup, peak=peak)
        key = (case.spec.label, case.dtype, case.batch)
        if case.what == "forward":
            forward_ms[key] = record["step_ms"]
        elif case.what == "score" and key in forward_ms:
            record["overhead_vs_forward"] = round(record["step_ms"] / forward_ms[key], 4)
        results.append(record)
        if log is not None:
            log(json.dumps(record))
    return results
