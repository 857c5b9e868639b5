import jax
import numpy as np
import pytest

from tac_jax.batching import batched_apply
from tac_jax.scores.feature import (
    MahalanobisStats,
    fit_knn,
    fit_mahalanobis,
    fit_multilayer_mahalanobis,
    fit_vim,
    knn_neighbours,
    knn_score,
    mahalanobis_score,
    multilayer_mahalanobis_score,
    vim_default_dim,
    vim_score,
)


def _classes(n=240, d=6, c=3, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    centres = rng.normal(size=(c, d)) * 3.0 + offset
    mixing = rng.normal(size=(d, d)) * 0.2 + np.eye(d)
    f = centres[y] + rng.normal(size=(n, d)) @ mixing
    return f.astype(np.float32), y


def _numpy_mahalanobis(f, y, c, queries):
    f = f.astype(np.float64)
    means = np.stack([f[y == k].mean(0) for k in range(c)])
    cov = np.cov(f - means[y], rowvar=False, bias=True)
    precision = np.linalg.inv(cov)
    diff = queries[:, None, :] - means[None]
    d = np.einsum("bcd,de,bce->bc", diff, precision, diff)
    return means, precision, -d.min(-1)


@pytest.mark.parametrize("offset", [0.0, 100.0])
def test_mahalanobis_matches_numpy(offset):
    f, y = _classes(offset=offset)
    queries = _classes(n=20, offset=offset, seed=1)[0]
    means, precision, expected = _numpy_mahalanobis(f, y, 3, queries.astype(np.float64))
    stats = fit_mahalanobis(f, y, 3)
    np.testing.assert_allclose(stats.means, means, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(stats.precision, precision, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(stats.counts, np.bincount(y, minlength=3))
    np.testing.assert_allclose(mahalanobis_score(stats, queries), expected, rtol=2e-3, atol=1e-3)


def test_mahalanobis_batched_fit_equals_unbatched():
    f, y = _classes()
    whole = fit_mahalanobis(f, y, 3)
    padded = fit_mahalanobis(f, y, 3, batch_size=7)  # 240 = 34·7 + 2: the last is padded.
    uneven = iter([(f[:50], y[:50]), (f[50:51], y[50:51]), (f[51:], y[51:])])
    streamed = fit_mahalanobis(uneven, None, 3)
    for other in (padded, streamed):
        for a, b in zip(whole, other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mahalanobis_prefers_class_means_and_skips_empty_classes():
    f, y = _classes()
    stats = fit_mahalanobis(f, y, 4)  # Class 3 has no examples.
    assert stats.counts[3] == 0
    at_means = mahalanobis_score(stats, stats.means[:3])
    np.testing.assert_allclose(at_means, 0.0, atol=1e-3)
    far = mahalanobis_score(stats, stats.means[:3] + 20.0)
    assert np.all(np.asarray(far) < -1.0)
    # The empty class's zero mean is never "nearest", even to the origin.
    near_origin = mahalanobis_score(stats, np.zeros((1, 6), np.float32))
    assert near_origin[0] < -1e-3


def test_multilayer_is_the_sum_of_per_layer_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    conv = rng.normal(size=(120, 4, 4, 5)).astype(np.float32) + y[:, None, None, None]
    pre = _classes(n=120, d=4, seed=2)[0] + y[:, None]
    feats = {"conv1": conv, "pre_logits": pre, "other": np.zeros((120, 2), np.float32)}
    stats = fit_multilayer_mahalanobis(feats, y, ["pre_logits", "conv*"], 3, batch_size=32)
    assert list(stats) == ["pre_logits", "conv1"]
    conv_stats = fit_mahalanobis(conv.mean(axis=(1, 2)), y, 3)
    pre_stats = fit_mahalanobis(pre, y, 3)
    q = {"conv1": conv[:10] * 1.5, "pre_logits": pre[:10] - 1.0}
    expected = mahalanobis_score(conv_stats, q["conv1"].mean(axis=(1, 2))) + mahalanobis_score(
        pre_stats, q["pre_logits"]
    )
    np.testing.assert_allclose(multilayer_mahalanobis_score(stats, q), expected, rtol=1e-4)


def test_multilayer_pools_sequences_with_the_padding_mask():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    tokens = rng.normal(size=(60, 5, 3)).astype(np.float32) + y[:, None, None]
    mask = np.ones((60, 5), np.float32)
    mask[:, 3:] = 0
    tokens_junk = tokens.copy()
    tokens_junk[:, 3:] = 1e3  # Padding positions must not matter.
    stats = fit_multilayer_mahalanobis({"tok": tokens_junk, "padding_mask": mask}, y, ["tok"], 2)
    direct = fit_mahalanobis(tokens[:, :3].mean(1), y, 2)
    np.testing.assert_allclose(stats["tok"].means, direct.means, rtol=1e-4, atol=1e-5)


def _numpy_knn(bank, queries):
    bank = bank / np.linalg.norm(bank, axis=-1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=-1, keepdims=True)
    d = np.linalg.norm(queries[:, None, :] - bank[None], axis=-1)
    order = np.argsort(d, axis=-1, kind="stable")
    return np.take_along_axis(d, order, -1), order


def _bank_and_queries(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(37, 8)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_matches_brute_force(k):
    bank, queries = _bank_and_queries(k)
    stats = fit_knn(bank, chunk_size=64)  # 5 chunks, the last one padded.
    assert stats.bank.shape == (5, 64, 8) and stats.size == 300
    dist, idx = knn_neighbours(stats, queries, k, query_batch_size=16)  # 3 query batches.
    ref_dist, ref_idx = _numpy_knn(bank.astype(np.float64), queries.astype(np.float64))
    np.testing.assert_allclose(dist, ref_dist[:, :k], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(idx[:, -1], ref_idx[:, k - 1])
    np.testing.assert_allclose(knn_score(stats, queries, k), -ref_dist[:, k - 1], rtol=1e-4)


def test_knn_scores_bank_points_highest_and_batches_agree():
    bank, queries = _bank_and_queries(1)
    stats = fit_knn(bank, chunk_size=64)
    own = knn_score(stats, bank[:37] * 3.0, 1)  # Scaling does not move a unit vector.
    np.testing.assert_allclose(own, 0.0, atol=1e-3)
    one_shot = knn_score(stats, queries, 5)
    batched = batched_apply(jax.jit(lambda q: knn_score(stats, q, 5)), queries, batch_size=16)
    np.testing.assert_allclose(batched, one_shot, rtol=1e-5)
    # Op-by-op execution is slow: a 2-chunk bank is enough to cover the running top-k.
    small = fit_knn(bank[:6], chunk_size=3)
    with jax.disable_jit():
        eager = knn_score(small, queries[:2], 2)
    np.testing.assert_allclose(eager, knn_score(small, queries[:2], 2), rtol=1e-5)


def _numpy_vim(f, w, b, dim, queries, query_logits):
    u = -np.linalg.pinv(w.T) @ b  # The paper's (C, D) weight is the kernel transposed.
    x = f - u
    cov = x.T @ x / len(f)
    vals, vecs = np.linalg.eigh(cov)
    residual = vecs[:, np.argsort(-vals)[dim:]]
    alpha = (f @ w + b).max(-1).mean() / np.linalg.norm(x @ residual, axis=-1).mean()
    energy = np.log(np.exp(query_logits).sum(-1))
    return energy - alpha * np.linalg.norm((queries - u) @ residual, axis=-1)


def test_vim_matches_numpy():
    rng = np.random.default_rng(0)
    d, c = 8, 3
    scales = np.linspace(3.0, 0.3, d)  # Distinct eigenvalues: a well-defined subspace.
    f = (rng.normal(size=(500, d)) * scales + 1.0).astype(np.float32)
    w = rng.normal(size=(d, c)).astype(np.float32)
    b = rng.normal(size=(c,)).astype(np.float32)
    queries = (rng.normal(size=(30, d)) * 2.0).astype(np.float32)
    logits = queries @ w + b
    stats = fit_vim(f, w, b, batch_size=64)  # Default dim: 8 // 2 = 4; 500 = 7·64 + 52.
    assert stats.residual_basis.shape == (8, 4)
    expected = _numpy_vim(*(a.astype(np.float64) for a in (f, w, b)), 4, queries, logits)
    np.testing.assert_allclose(vim_score(stats, queries, logits), expected, rtol=1e-3, atol=1e-3)
    # Every logit vanishes at the origin u.
    np.testing.assert_allclose(stats.origin @ w + b, 0.0, atol=1e-4)
    with jax.disable_jit():
        eager = vim_score(stats, queries[:3], logits[:3])
    np.testing.assert_allclose(eager, expected[:3], rtol=1e-3, atol=1e-3)


def test_vim_default_dim():
    dims = [vim_default_dim(n) for n in (4096, 2048, 1024, 768, 640, 64)]
    assert dims == [1000, 1000, 512, 512, 320, 32]


def test_mahalanobis_jit_equals_eager():
    f, y = _classes()
    stats = fit_mahalanobis(f, y, 3)
    with jax.disable_jit():
        eager = mahalanobis_score(stats, f[:3])
    np.testing.assert_allclose(mahalanobis_score(stats, f[:3]), eager, rtol=1e-4, atol=1e-4)


def test_bad_inputs_say_what_was_expected():
    f = np.ones((10, 3), np.float32)
    y = np.zeros(10, np.int32)
    with pytest.raises(
        ValueError, match=r"expected labels of shape \(10,\), one per feature row, got \(9,\)"
    ):
        fit_mahalanobis(f, y[:9], 2)
    with pytest.raises(ValueError, match=r"expected labels in \[0, 2\), got values from 0 to 5"):
        fit_mahalanobis(f, np.arange(10) % 6, 2)
    with pytest.raises(
        ValueError, match=r"expected features of rank 2 \(batch, dim\), got shape \(10,\)"
    ):
        fit_mahalanobis(np.ones(10), y, 2)
    stats = MahalanobisStats(np.zeros((2, 3)), np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match=r"expected features of dimension 3, got shape \(4, 5\)"):
        mahalanobis_score(stats, np.ones((4, 5)))
    with pytest.raises(ValueError, match="expected k between 1 and the bank size 10, got 11"):
        knn_score(fit_knn(f), f, k=11)
    with pytest.raises(ValueError, match=r"expected layer 'conv\*' among"):
        fit_multilayer_mahalanobis({"a": f}, y, ["conv*"], 2)
    with pytest.raises(ValueError, match="expected a principal dimension between 1 and 2, got 3"):
        fit_vim(f, np.ones((3, 2)), np.ones(2), dim=3)
    vstats = fit_vim(np.random.default_rng(0).normal(size=(10, 3)), np.ones((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="expected 4 rows of logits, one per feature row, got 2"):
        vim_score(vstats, np.ones((4, 3)), np.ones((2, 2)))
