"""`train_and_evaluate`: the whole run, from a config to final test metrics.

Data, model and optimizer come from the config; the state is created already sharded
(or restored from the workdir's newest checkpoint, which makes a restarted run resume
exactly); in add-on mode the frozen base comes from ``config.base_workdir``. Batches are
a pure function of ``(seed, step)`` and so is every random draw, so a resumed run
repeats the uninterrupted one bit for bit (on one backend).

One training at a time holds a run directory (`tac_jax.train.lock`), and only the run
it was started for (`tac_jax.train.identity`); ``fresh=True`` sets an old run aside.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from tac_jax.atomic_write import write_atomic
from tac_jax.data.pipeline import BatchIterator, eval_batches
from tac_jax.data.vocab import Vocab, save_vocab
from tac_jax.parallel import (
    DATA_AXIS,
    ProcessInfo,
    abstract_sharded,
    make_mesh,
    process_info,
    shard_batch,
)
from tac_jax.run import CONFIG_FILE, FINAL_METRICS, RunDir, UnfinishedRunError
from tac_jax.train.checkpoint import (
    Checkpointer,
    clear_preemption,
    install_sigterm_handler,
    preemption_requested,
)
from tac_jax.train.config import is_text_data, model_fields, validate_config
from tac_jax.train.dataset import VOCAB_FILE, load_splits, load_text_splits, run_vocab
from tac_jax.train.identity import claim_identity
from tac_jax.train.lock import workdir_lock
from tac_jax.train.setup import CKPT_DIR, TrainSetup, build_setup, load_run
from tac_jax.train.state import TrainState
from tac_jax.train.step import eval_step_fn, shard_eval_step, shard_train_step, train_step_fn
from tac_jax.train.writer import MetricsWriter

# hook(step, state, metrics) runs after every update, on every process. The state is
# donated to the next update: a hook copies what it keeps (e.g. with np.asarray).
Hook = Callable[[int, TrainState, Mapping[str, jax.Array]], None]

logger = logging.getLogger(__name__)


def to_host(tree: Any) -> Any:
    """Numpy copies of replicated arrays (readable on every process, unlike
    ``np.asarray`` on an array spanning several processes)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _check_divisible(config: ml_collections.ConfigDict, shards: int) -> None:
    for name in ("batch_size", "eval_batch_size"):
        if config[name] % shards:
            raise ValueError(
                f"expected config.{name} divisible by the {shards} data shards of the mesh, "
                f"got {config[name]}"
            )


def _load_base(setup: TrainSetup, mesh) -> dict[str, Any]:
    """The trained base variables of ``config.base_workdir``, checked to fit this run."""
    config = setup.config
    try:
        base_setup, _, base_state = load_run(config.base_workdir, mesh)
    except UnfinishedRunError:
        progress = RunDir(config.base_workdir).progress()
        raise UnfinishedRunError(
            f"expected config.base_workdir to hold a finished run, got {config.base_workdir} "
            f"{progress.describe()}: finish the base's training first (run its tac-jax train "
            "command again)"
        ) from None
    base_config = base_setup.config
    if base_config.mode != "base":
        raise ValueError(
            f"expected config.base_workdir to hold a run of mode 'base', got mode "
            f"{base_config.mode!r} in {config.base_workdir}"
        )
    ours = (config.model.name, model_fields(config), config.data.num_classes)
    theirs = (base_config.model.name, model_fields(base_config), base_config.data.num_classes)
    if ours != theirs or base_setup.input_shape != setup.input_shape:
        raise ValueError(
            f"expected the base run in {config.base_workdir} to have this run's model, classes "
            f"and input shape {ours + (setup.input_shape,)}, got {theirs + (base_setup.input_shape,)}"
        )
    return base_state.variables


def _load_data(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[dict[str, Any], Vocab | None]:
    """The run's splits, and for text its vocabulary: the one this workdir (resuming) or
    the base run (add-on) saved, so every stage encodes text with the same ids."""
    if not is_text_data(config.data):
        return load_splits(config.data, config.seed), None
    vocab = run_vocab(workdir)
    if vocab is None and config.mode == "addon":
        vocab = run_vocab(config.base_workdir)
    return load_text_splits(config.data, config.seed, vocab)


def _with_base(setup: TrainSetup, state: TrainState, base_variables) -> TrainState:
    variables = setup.tac.with_base(state.variables, base_variables)
    params = variables.pop("params")
    return state.replace(params=params, collections=variables)


class _TrainLog:
    """Averages train metrics over each ``log_every`` steps and reports them (JSON lines,
    TensorBoard, progress bar). Sums stay on the device between reports: no sync."""

    def __init__(self, config, setup: TrainSetup, writer: MetricsWriter, start: int, show: bool):
        self.every, self.total, self.batch = config.log_every, int(config.steps), config.batch_size
        self.writer = writer
        # One compiled call, rather than one per jnp operation of the schedule.
        self.learning_rate = jax.jit(setup.schedule)
        self.bar = tqdm.tqdm(
            total=self.total,
            initial=start,
            desc="train",
            unit="step",
            disable=not (show and sys.stderr.isatty()),
        )
        # Without a terminal (logs, CI) the bar is off: print a plain line per report.
        self.plain = show and not sys.stderr.isatty()
        self.sums, self.last_step, self.last_time = None, start, time.perf_counter()

    def add(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
        if self.sums is None:
            self.sums = metrics
        else:
            self.sums = jax.tree.map(jnp.add, self.sums, metrics)
        if step % self.every == 0 or step == self.total:
            n, now = step - self.last_step, time.perf_counter()
            values = {k: float(v) / n for k, v in to_host(self.sums).items()}
            values["images_per_sec"] = n * self.batch / max(now - self.last_time, 1e-9)
            values["learning_rate"] = float(self.learning_rate(step - 1))
            self.writer.write(step, "train", values)
            self.bar.set_postfix(
                loss=f"{values['loss']:.4f}", img_s=f"{values['images_per_sec']:.0f}"
            )
            if self.plain:
                eta = (self.total - step) * (now - self.last_time) / max(n, 1)
                print(
                    f"train step {step}/{self.total} loss {values['loss']:.4f} "
                    f"{values['images_per_sec']:.0f} images/s ETA {eta:.0f} s",
                    flush=True,
                )
            self.sums, self.last_step, self.last_time = None, step, now
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def evaluate(
    setup: TrainSetup,
    state: TrainState,
    mesh,
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
) -> dict[str, float]:
    """Accuracy of the base head (and TAC's, in TAC modes) on a whole split.

    Args:
      setup: the run's pieces.
      state: the trained state.
      mesh: the mesh the state lives on.
      arrays: ``{"image", "label"}`` of the split (every process holds all of it).
      batch_size: the global evaluation batch.

    Returns:
      ``{"accuracy", ["tac_accuracy"], "count"}``.
    """
    info = process_info()
    shardings = jax.tree.map(lambda x: x.sharding, state)
    step = shard_eval_step(eval_step_fn(setup.model), mesh, shardings)
    totals: dict[str, int] = {}
    for batch, mask in eval_batches(arrays, batch_size, info.process_index, info.process_count):
        global_batch, global_mask = shard_batch((batch, mask), mesh)
        _, counts = step(state, global_batch, global_mask)
        for name, value in to_host(counts).items():
            totals[name] = totals.get(name, 0) + int(value)
    count = max(totals.pop("count"), 1)
    out = {"accuracy": totals["correct"] / count}
    if "tac_correct" in totals:
        out["tac_accuracy"] = totals["tac_correct"] / count
    out["count"] = count
    return out


@contextlib.contextmanager
def _claim(
    run: RunDir, config: ml_collections.ConfigDict, *, fresh: bool, info: ProcessInfo
) -> Iterator[None]:
    """Process 0 locks the run directory for the block and checks (or records) the run's
    identity, first setting the old run aside when ``fresh``; the other processes follow
    its verdict."""
    with contextlib.ExitStack() as stack:
        refusal = None
        if info.is_main:
            try:
                os.makedirs(run.path, exist_ok=True)
                stack.enter_context(workdir_lock(run.path))
                moved = run.set_aside() if fresh else None
                if moved:
                    logger.warning("The previous run in %s is set aside in %s.", run.path, moved)
                claim_identity(run, config)
            except Exception as e:  # noqa: BLE001 - re-raised below, once every process knows
                refusal = e
        if info.process_count > 1:
            from jax.experimental import multihost_utils

            refused = multihost_utils.broadcast_one_to_all(np.int32(refusal is not None))
            if int(refused) and refusal is None:
                refusal = ValueError(
                    f"expected process 0 to claim {run.path}, got a refusal (see its error)"
                )
        if refusal is not None:
            raise refusal
        yield


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    hooks: Iterable[Hook] = (),
    fresh: bool = False,
) -> dict[str, Any]:
    """Trains as ``config`` says, checkpointing into ``workdir``, and evaluates.

    Resumes from ``workdir``'s newest readable checkpoint when there is one (damaged ones
    are set aside as ``ckpt/<step>.damaged``; when none is readable, training starts
    from scratch). Holds ``train.lock`` while it runs, and records the run's identity
    (``run_identity.json``, see `tac_jax.train.identity`) at the first start. Writes
    ``config.json`` (and ``vocab.json`` for text data), ``metrics.jsonl`` (train
    metrics averaged over each ``log_every`` steps, then the final evaluation),
    TensorBoard events when a backend is installed, checkpoints every ``ckpt_every``
    steps, at the end and on SIGTERM, and, once training has ended,
    ``final_metrics.json`` (which marks the run finished, `tac_jax.run.RunDir.finished`).

    Args:
      config: see `tac_jax.train.config.default_config`.
      workdir: the run's directory.
      hooks: ``hook(step, state, metrics)`` called after every update.
      fresh: move whatever an earlier run left in ``workdir`` (checkpoints, metrics,
        config, identity, report) into ``workdir/previous-<UTC time>/`` and start again.

    Returns:
      The final metrics: ``step``, ``test_accuracy`` (and ``test_tac_accuracy`` in TAC
      modes, ``validation_*`` with a validation split). When SIGTERM stopped the run
      early: ``{"step": reached, "steps": configured, "preempted": True}``, with no
      evaluation and no ``final_metrics.json``; calling again resumes.

    Raises:
      ValueError: on an invalid config or data; `tac_jax.train.lock.WorkdirLockedError`
        when another training holds ``workdir``;
        `tac_jax.train.identity.IdentityChangedError` when ``workdir`` holds a run of
        another config (and not ``fresh``); `tac_jax.run.UnfinishedRunError` when an
        add-on's base run has not finished.
      FileNotFoundError: on missing data or a missing base checkpoint.
    """
    validate_config(config)
    workdir = os.path.abspath(os.fspath(workdir))
    info = process_info()
    with _claim(RunDir(workdir), config, fresh=fresh, info=info):
        return _train_and_evaluate(config, workdir, hooks, info)


def _train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, hooks: Iterable[Hook], info: ProcessInfo
) -> dict[str, Any]:
    mesh = make_mesh(config.mesh.data, config.mesh.model)
    _check_divisible(config, mesh.shape[DATA_AXIS])
    splits, vocab = _load_data(config, workdir)
    train = splits["train"]
    setup = build_setup(config, train["image"].shape[1:], train["image"].dtype)
    if info.is_main:
        write_atomic(os.path.join(workdir, CONFIG_FILE), config.to_json(indent=2) + "\n")
        if vocab is not None:
            save_vocab(vocab, os.path.join(workdir, VOCAB_FILE))
    key = jax.random.key(config.seed)
    abstract = abstract_sharded(setup.init, mesh, key)
    shardings = jax.tree.map(lambda a: a.sharding, abstract)
    total = int(config.steps)
    metadata = setup.metadata()
    writer = MetricsWriter(workdir, enabled=info.is_main)
    previous_handler = None
    ckpt = Checkpointer(
        os.path.join(workdir, CKPT_DIR), keep=config.keep, every_steps=config.ckpt_every
    )
    try:
        restored = ckpt.restore_latest(abstract)
        if restored is not None:
            start, state = restored
        else:
            start = 0
            # The base is read first so that a wrong base_workdir fails before compiling.
            base_variables = _load_base(setup, mesh) if config.mode == "addon" else None
            state = jax.jit(setup.init, out_shardings=shardings)(key)
            if base_variables is not None:
                state = _with_base(setup, state, base_variables)
        # Damaged steps newer than the start were set aside; one left over would make the
        # saves of its step a no-op, and final_metrics.json describe weights never saved.
        later = [s for s in ckpt.all_steps() if s > start]
        if later:
            raise RuntimeError(f"expected no checkpoint after step {start}, got steps {later}")
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.getsignal(signal.SIGTERM)
            # A flag left by a SIGTERM that stopped an earlier run in this process.
            clear_preemption()
            install_sigterm_handler()
        step_fn = train_step_fn(setup.objective, setup.tx, seed=config.seed, augment=setup.augment)
        train_step = shard_train_step(step_fn, mesh, shardings)
        batches = BatchIterator(
            train,
            config.batch_size,
            config.seed,
            start_step=start,
            process_index=info.process_index,
            process_count=info.process_count,
        )
        log = _TrainLog(config, setup, writer, start, info.is_main and config.progress)
        curve = int(config.get("eval_every", 0)) if "validation" in splits else 0
        with batches:
            for step in range(start + 1, total + 1):
                state, metrics = train_step(state, shard_batch(next(batches), mesh))
                for hook in hooks:
                    hook(step, state, metrics)
                log.add(step, metrics)
                if curve and step % curve == 0 and step != total:
                    values = evaluate(
                        setup, state, mesh, splits["validation"], config.eval_batch_size
                    )
                    writer.write(step, "validation", values)
                stop = preemption_requested(step)
                ckpt.save(step, state, metadata=metadata, force=stop or step == total)
                if stop:
                    ckpt.wait()
                    log.close()
                    return {"step": step, "steps": total, "preempted": True}
        log.close()
        ckpt.wait()
        results: dict[str, Any] = {"step": total}
        for name in ("validation", "test"):
            if name in splits:
                metrics = evaluate(setup, state, mesh, splits[name], config.eval_batch_size)
                writer.write(total, name, metrics)
                results.update({f"{name}_{k}": v for k, v in metrics.items()})
    finally:
        ckpt.close()
        writer.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if info.is_main:
        write_atomic(os.path.join(workdir, FINAL_METRICS), json.dumps(results, indent=2))
    return results
