"""Deterministic, resumable, per-process batching of in-memory arrays.

The example order of epoch `e` is a pure function of `(seed, e)`, so the batch at
any step can be recomputed from the step alone: resuming from a checkpoint needs
nothing but the step, and every process derives the same global batch and takes
its own contiguous slice of it. Each epoch drops its last incomplete batch.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping

import numpy as np

Batch = dict[str, np.ndarray]


@functools.lru_cache(maxsize=4)
def _permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    order.flags.writeable = False  # shared by the cache, so nobody may shuffle it in place
    return order


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the examples in one epoch.

    Args:
      num_examples: the dataset size.
      seed: a non-negative integer.
      epoch: a non-negative integer.

    Returns:
      A read-only permutation of `range(num_examples)`, the same for the same
      arguments on every machine.

    >>> epoch_permutation(5, seed=0, epoch=0).tolist() == epoch_permutation(5, 0, 0).tolist()
    True
    """
    if num_examples < 1:
        raise ValueError(f"expected num_examples >= 1, got {num_examples}")
    if seed < 0 or epoch < 0:
        raise ValueError(f"expected non-negative seed and epoch, got seed={seed}, epoch={epoch}")
    return _permutation(int(num_examples), int(seed), int(epoch))


def steps_per_epoch(num_examples: int, global_batch: int) -> int:
    """The number of full global batches in one epoch (the remainder is dropped).

    Args:
      num_examples: the dataset size.
      global_batch: the batch size summed over all processes.

    Returns:
      `num_examples // global_batch`, at least 1.

    >>> steps_per_epoch(10, 3)
    3
    """
    if global_batch < 1:
        raise ValueError(f"expected global_batch >= 1, got {global_batch}")
    if num_examples < global_batch:
        raise ValueError(
            f"expected at least global_batch={global_batch} examples, got {num_examples}"
        )
    return num_examples // global_batch


def global_batch_indices(num_examples: int, global_batch: int, seed: int, step: int) -> np.ndarray:
    """The example indices of global batch `step`.

    Step `s` falls in epoch `s // steps_per_epoch` and takes the next
    `global_batch` entries of that epoch's permutation.

    Args:
      num_examples: the dataset size.
      global_batch: the batch size summed over all processes.
      seed: a non-negative integer.
      step: a non-negative step counter that runs on across epochs.

    Returns:
      An int array of shape `(global_batch,)`.

    >>> sorted(np.concatenate([global_batch_indices(6, 3, 0, s) for s in (0, 1)]).tolist())
    [0, 1, 2, 3, 4, 5]
    """
    if step < 0:
        raise ValueError(f"expected a non-negative step, got {step}")
    per_epoch = steps_per_epoch(num_examples, global_batch)
    epoch, within = divmod(int(step), per_epoch)
    order = epoch_permutation(num_examples, seed, epoch)
    return order[within * global_batch : (within + 1) * global_batch]


def _local_slice(global_batch: int, process_index: int, process_count: int) -> slice:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"expected 0 <= process_index < process_count, got process_index={process_index}, "
            f"process_count={process_count}"
        )
    if global_batch % process_count:
        raise ValueError(
            f"expected a global batch divisible by process_count={process_count}, "
            f"got {global_batch}"
        )
    local = global_batch // process_count
    return slice(process_index * local, (process_index + 1) * local)


def process_batch_indices(
    num_examples: int,
    global_batch: int,
    seed: int,
    step: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """This process's contiguous share of global batch `step`.

    Process `p` of `P` gets entries `[p * B/P, (p + 1) * B/P)` of the global batch,
    so the processes' slices, concatenated in process order, are the global batch.

    Args:
      num_examples: the dataset size.
      global_batch: the batch size summed over all processes; divisible by
        `process_count`.
      seed: a non-negative integer.
      step: a non-negative step counter.
      process_index: this process, e.g. `jax.process_index()`.
      process_count: all processes, e.g. `jax.process_count()`.

    Returns:
      An int array of shape `(global_batch // process_count,)`.

    >>> process_batch_indices(8, 4, 0, 0, 1, 2).shape
    (2,)
    """
    where = _local_slice(global_batch, process_index, process_count)
    return global_batch_indices(num_examples, global_batch, seed, step)[where]


def _num_examples(arrays: Mapping[str, np.ndarray]) -> int:
    if not arrays:
        raise ValueError("expected at least one array, got an empty mapping")
    sizes = {key: len(value) for key, value in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"expected arrays with the same leading dimension, got sizes {sizes}")
    return next(iter(sizes.values()))


def _produce(
    make: Callable[[int], Batch], step: int, out: queue.Queue, stop: threading.Event
) -> None:
    """Fills `out` with `(step, batch)` pairs, in order, until `stop` is set."""
    while not stop.is_set():
        try:
            item = (step, make(step))
        except Exception as error:  # handed to the consumer, which re-raises it
            item = (step, error)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                break
            except queue.Full:
                continue
        if isinstance(item[1], Exception):
            return
        step += 1


class BatchIterator(Iterator[Batch]):
    """Endless iterator over this process's share of each global batch.

    The batch at step `s` depends only on `(arrays, global_batch, seed, s)` and the
    process's index, so an iterator started at `start_step=s` yields exactly what
    one started at 0 yields at its `s`-th call. A daemon thread prepares up to
    `prefetch` batches ahead; order is preserved.

    >>> data = {"x": np.arange(10), "y": np.arange(10) % 2}
    >>> it = BatchIterator(data, global_batch=4, seed=0)
    >>> batch = next(it)
    >>> batch["x"].shape, it.step
    ((4,), 1)
    >>> it.close()
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        global_batch: int,
        seed: int,
        start_step: int = 0,
        process_index: int = 0,
        process_count: int = 1,
        prefetch: int = 2,
    ):
        """Creates the iterator.

        Args:
          arrays: named arrays with the same leading dimension (e.g. "image",
            "label"); batches are gathered from them.
          global_batch: the batch size summed over all processes.
          seed: a non-negative integer fixing the order of every epoch.
          start_step: the step of the first batch; a resumed run passes the step
            saved with its checkpoint.
          process_index: this process, e.g. `jax.process_index()`.
          process_count: all processes, e.g. `jax.process_count()`.
          prefetch: how many batches the background thread prepares ahead; 0
            gathers each batch in `__next__` without a thread.
        """
        num_examples = _num_examples(arrays)
        steps_per_epoch(num_examples, global_batch)
        _local_slice(global_batch, process_index, process_count)
        if seed < 0 or start_step < 0 or prefetch < 0:
            raise ValueError(
                f"expected non-negative seed, start_step and prefetch, got seed={seed}, "
                f"start_step={start_step}, prefetch={prefetch}"
            )
        arrays = dict(arrays)

        def make(step: int) -> Batch:
            idx = process_batch_indices(
                num_examples, global_batch, seed, step, process_index, process_count
            )
            return {key: value[idx] for key, value in arrays.items()}

        self._make = make
        self._step = int(start_step)
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.num_examples = num_examples
        self.local_batch = global_batch // process_count
        if prefetch:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(
                target=_produce,
                args=(make, self._step, self._queue, self._stop),
                name="BatchIterator",
                daemon=True,
            )
            self._thread.start()
            # The thread holds no reference to self, so a dropped iterator is
            # collected and its thread told to stop.
            weakref.finalize(self, self._stop.set)

    @property
    def step(self) -> int:
        """The step of the batch the next `next()` returns (save it to resume)."""
        return self._step

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        if self._stop.is_set():
            raise StopIteration
        if self._queue is None:
            batch = self._make(self._step)
        else:
            step, batch = self._queue.get()
            if isinstance(batch, Exception):
                self.close()
                raise batch
            assert step == self._step, (step, self._step)
        self._step += 1
        return batch

    def close(self) -> None:
        """Stops the background thread; the iterator yields nothing afterwards."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def capped_eval_batch(
    batch_size: int, num_examples: int, devices: int | None = None, processes: int = 1
) -> int:
    """``batch_size`` cut to ``num_examples`` (rounded up so that it still splits over
    the devices and processes), when it is larger.

    The batch is split over a mesh's data axis (and the processes), whose size divides
    ``batch_size`` and is at most ``D``, the device count; so it divides
    ``gcd(batch_size, lcm(1..D))``, and so does the cut batch, a multiple of that.

    Args:
      batch_size: the global batch asked for.
      num_examples: the examples to evaluate.
      devices: the device count (default: ``jax.device_count()``, looked up only to cut).
      processes: the process count, which divides ``batch_size`` too.

    >>> capped_eval_batch(10**9, 5, devices=8), capped_eval_batch(64, 5, devices=8)
    (40, 8)
    >>> capped_eval_batch(256, 1000)
    256
    """
    if batch_size <= num_examples:
        return batch_size
    if devices is None:
        import jax

        devices = jax.device_count()
    bound = max(int(devices), int(processes), 1)
    multiple = math.gcd(batch_size, math.lcm(*range(1, bound + 1)))
    return min(batch_size, -(-max(num_examples, 1) // multiple) * multiple)


def eval_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[tuple[Batch, np.ndarray]]:
    """Every example once, in order, in fixed-size batches padded with zeros.

    All batches have the same shape, so a jitted evaluation compiles once; `mask`
    marks the real rows. With several processes, each global batch of `batch_size`
    rows is split into contiguous per-process slices, and every process yields the
    same number of batches (collectives stay in step). A `batch_size` larger than the
    split is cut to the split (`capped_eval_batch`): a huge one would only be padding.

    Args:
      arrays: named arrays with the same leading dimension.
      batch_size: the global batch size; divisible by `process_count`.
      process_index: this process, e.g. `jax.process_index()`.
      process_count: all processes, e.g. `jax.process_count()`.

    Yields:
      `(batch, mask)`: `batch[key]` of shape `(batch_size // process_count, ...)`
      and a bool `mask` of shape `(batch_size // process_count,)`.

    >>> batches = list(eval_batches({"x": np.arange(5)}, batch_size=4))
    >>> [int(mask.sum()) for _, mask in batches]
    [4, 1]
    """
    num_examples = _num_examples(arrays)
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    _local_slice(batch_size, process_index, process_count)  # checks the given batch
    batch_size = capped_eval_batch(batch_size, num_examples, processes=process_count)
    where = _local_slice(batch_size, process_index, process_count)
    for start in range(0, num_examples, batch_size):
        idx = np.arange(start, start + batch_size)[where]
        mask = idx < num_examples
        idx = np.where(mask, idx, 0)
        batch = {}
        for key, value in arrays.items():
            rows = np.asarray(value)[idx]
            rows[~mask] = 0
            batch[key] = rows
        yield batch, mask
