"""Tests for tac_jax.data.pipeline."""

import itertools

import numpy as np
import pytest

from tac_jax.data import pipeline

N, BATCH, SEED = 103, 8, 7


def _arrays(n=N):
    return {"x": np.arange(n) * 10, "y": (np.arange(n) % 5).astype(np.int32)}


def test_permutation_is_a_function_of_seed_and_epoch():
    a = pipeline.epoch_permutation(N, SEED, 0)
    np.testing.assert_array_equal(a, np.random.default_rng([SEED, 0]).permutation(N))
    np.testing.assert_array_equal(np.sort(a), np.arange(N))
    assert not np.array_equal(a, pipeline.epoch_permutation(N, SEED, 1))
    assert not np.array_equal(a, pipeline.epoch_permutation(N, SEED + 1, 0))
    assert not a.flags.writeable


def test_every_example_once_per_epoch_and_remainder_dropped():
    per_epoch = pipeline.steps_per_epoch(N, BATCH)
    assert per_epoch == 12  # 103 // 8; the last 7 of each epoch's order are dropped
    for epoch in range(2):
        steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        seen = np.concatenate([pipeline.global_batch_indices(N, BATCH, SEED, s) for s in steps])
        assert len(seen) == len(set(seen.tolist())) == per_epoch * BATCH
        order = pipeline.epoch_permutation(N, SEED, epoch)
        np.testing.assert_array_equal(seen, order[: per_epoch * BATCH])


@pytest.mark.parametrize("process_count", [1, 2, 4, 8])
def test_process_slices_make_up_the_global_batch(process_count):
    for step in (0, 5, 13):
        whole = pipeline.global_batch_indices(N, BATCH, SEED, step)
        parts = [
            pipeline.process_batch_indices(N, BATCH, SEED, step, p, process_count)
            for p in range(process_count)
        ]
        assert all(len(part) == BATCH // process_count for part in parts)
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_process_argument_errors():
    with pytest.raises(ValueError, match="expected a global batch divisible by process_count=3"):
        pipeline.process_batch_indices(N, BATCH, SEED, 0, 0, 3)
    with pytest.raises(ValueError, match="expected 0 <= process_index < process_count"):
        pipeline.process_batch_indices(N, BATCH, SEED, 0, 2, 2)
    with pytest.raises(ValueError, match="expected at least global_batch=8 examples, got 5"):
        pipeline.global_batch_indices(5, BATCH, SEED, 0)
    with pytest.raises(ValueError, match="expected arrays with the same leading dimension"):
        pipeline.BatchIterator({"x": np.zeros(10), "y": np.zeros(9)}, 2, 0)


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_iterator_matches_indices_and_resumes(prefetch):
    arrays = _arrays()
    with pipeline.BatchIterator(arrays, BATCH, SEED, prefetch=prefetch) as it:
        from_zero = list(itertools.islice(it, 30))  # crosses two epoch boundaries
        assert it.step == 30
    for step, batch in enumerate(from_zero):
        idx = pipeline.global_batch_indices(N, BATCH, SEED, step)
        np.testing.assert_array_equal(batch["x"], arrays["x"][idx])
        np.testing.assert_array_equal(batch["y"], arrays["y"][idx])
    with pipeline.BatchIterator(arrays, BATCH, SEED, start_step=17, prefetch=prefetch) as it:
        assert it.step == 17
        resumed = list(itertools.islice(it, 13))
        assert it.step == 30
    for a, b in zip(from_zero[17:], resumed, strict=True):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["y"], b["y"])


def test_iterator_process_shards_cover_the_global_batch():
    arrays = _arrays()
    iterators = [
        pipeline.BatchIterator(arrays, BATCH, SEED, start_step=3, process_index=p, process_count=4)
        for p in range(4)
    ]
    for step in range(3, 8):
        local = [next(it) for it in iterators]
        assert all(b["x"].shape == (2,) for b in local)
        idx = pipeline.global_batch_indices(N, BATCH, SEED, step)
        np.testing.assert_array_equal(np.concatenate([b["x"] for b in local]), arrays["x"][idx])
    for it in iterators:
        it.close()


def test_prefetch_thread_stops_on_close():
    it = pipeline.BatchIterator(_arrays(), BATCH, SEED, prefetch=2)
    next(it)
    thread = it._thread
    assert thread is not None and thread.is_alive()
    it.close()
    assert not thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)


def test_producer_errors_reach_the_consumer():
    class Exploding(np.ndarray):
        def __getitem__(self, index):
            raise RuntimeError("disk on fire")

    arrays = {"x": np.zeros(16).view(Exploding)}
    it = pipeline.BatchIterator(arrays, 4, 0, prefetch=2)
    with pytest.raises(RuntimeError, match="disk on fire"):
        next(it)


def test_eval_batches_pad_and_mask():
    arrays = _arrays(23)
    batches = list(pipeline.eval_batches(arrays, batch_size=8))
    assert len(batches) == 3
    assert [int(mask.sum()) for _, mask in batches] == [8, 8, 7]
    for batch, mask in batches:
        assert batch["x"].shape == (8,) and mask.shape == (8,) and mask.dtype == bool
    last, mask = batches[-1]
    np.testing.assert_array_equal(last["x"][mask], arrays["x"][16:])
    np.testing.assert_array_equal(last["x"][~mask], 0)
    rows = np.concatenate([b["x"][m] for b, m in batches])
    np.testing.assert_array_equal(rows, arrays["x"])  # in order, each example once


def test_eval_batches_across_processes():
    arrays = _arrays(21)
    per_process = [list(pipeline.eval_batches(arrays, 8, p, 2)) for p in range(2)]
    assert [len(b) for b in per_process] == [3, 3]  # same count: collectives stay in step
    valid = [int(m.sum()) for p in range(2) for _, m in per_process[p]]
    assert sum(valid) == 21
    rows = np.concatenate(
        [per_process[p][i][0]["x"][per_process[p][i][1]] for i in range(3) for p in range(2)]
    )
    np.testing.assert_array_equal(rows, arrays["x"])
    assert per_process[1][2][1].sum() == 1  # 21 = 2*8 + 4 (process 0) + 1 (process 1)
