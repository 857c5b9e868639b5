"""Tests for tac_jax.data.arrays, tac_jax.data.idx and tac_jax.data.fashion_mnist."""

import os

import numpy as np
import pytest

from tac_jax.data import arrays, fashion_mnist
from tac_jax.data.idx import read_idx, write_idx

FMNIST_DIR = fashion_mnist.fashion_mnist_dir()


@pytest.mark.parametrize("suffix", ["-ubyte", "-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    original = (rng.normal(size=(5, 3, 2)) * 50).astype(dtype)
    path = tmp_path / f"data{suffix}"
    write_idx(path, original)
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.shape == (5, 3, 2)
    np.testing.assert_array_equal(loaded, original)
    np.testing.assert_array_equal(arrays.load_array(path), original)


def test_idx_gz_is_compressed(tmp_path):
    zeros = np.zeros((100, 28, 28), np.uint8)
    write_idx(tmp_path / "z-ubyte.gz", zeros)
    assert os.path.getsize(tmp_path / "z-ubyte.gz") < zeros.nbytes // 10


def test_load_npy_and_npz(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    y = np.array([1, 0])
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "single.npz", anything=x)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    np.savez(tmp_path / "named.npz", images=x, labels=y)
    np.testing.assert_array_equal(arrays.load_array(tmp_path / "x.npy"), x)
    np.testing.assert_array_equal(arrays.load_array(tmp_path / "single.npz"), x)
    np.testing.assert_array_equal(arrays.load_array(tmp_path / "xy.npz"), x)
    np.testing.assert_array_equal(arrays.load_array(tmp_path / "xy.npz", key="y"), y)
    images, labels = arrays.load_labeled(tmp_path / "named.npz")
    np.testing.assert_array_equal(images, x)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [1, 0])


def test_load_array_key_errors(tmp_path):
    np.savez(tmp_path / "ab.npz", a=np.zeros(2), b=np.ones(2))
    with pytest.raises(ValueError, match="expected a single array or one of the keys"):
        arrays.load_array(tmp_path / "ab.npz")
    with pytest.raises(ValueError, match="expected key 'c'.*got keys \\['a', 'b'\\]"):
        arrays.load_array(tmp_path / "ab.npz", key="c")
    with pytest.raises(FileNotFoundError, match="expected an array file"):
        arrays.load_array(tmp_path / "missing.npy")


def test_load_labeled_from_idx(tmp_path):
    x = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    write_idx(tmp_path / "images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "labels-idx1-ubyte.gz", np.array([2, 0, 1], np.uint8))
    images, labels = arrays.load_labeled(
        tmp_path / "images-idx3-ubyte.gz", tmp_path / "labels-idx1-ubyte.gz"
    )
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, [2, 0, 1])
    assert labels.dtype == np.int32


def test_load_labeled_count_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 2), np.uint8))
    np.save(tmp_path / "y.npy", np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="expected as many labels as images, got 3 images and 2"):
        arrays.load_labeled(tmp_path / "x.npy", tmp_path / "y.npy")


def test_to_float_images_values_and_shapes():
    x = np.array([[[0, 51], [255, 102]]], np.uint8)
    out = arrays.to_float_images(x)
    assert out.dtype == np.float32
    assert out.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(out[0, :, :, 0], [[0.0, 0.2], [1.0, 0.4]], rtol=1e-6)
    rgb = np.full((2, 3, 3, 3), 0.5, np.float64)
    out = arrays.to_float_images(rgb)
    assert out.dtype == np.float32
    assert out.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(out, 0.5)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((4, 4), np.uint8), "expected images of rank 3 .* got shape \\(4, 4\\)"),
        (np.zeros((1, 4, 4), np.int64), "expected uint8 or floating images, got dtype int64"),
        (np.full((1, 4, 4), 1.5, np.float32), "expected float images in \\[0, 1\\]"),
        (np.full((1, 4, 4), -0.1, np.float32), "expected float images in \\[0, 1\\]"),
        (np.full((1, 4, 4), np.nan, np.float32), "expected images without NaNs, got 16 NaNs"),
    ],
)
def test_to_float_images_errors(images, message):
    with pytest.raises(ValueError, match=message):
        arrays.to_float_images(images)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros((2, 2), np.int32), "expected labels of rank 1"),
        (np.array([0.0, 1.0]), "expected integer labels, got dtype float64"),
        (np.array([0, -1]), "expected non-negative labels, got minimum -1"),
    ],
)
def test_check_labels_errors(labels, message):
    with pytest.raises(ValueError, match=message):
        arrays.check_labels(labels)
    with pytest.raises(ValueError, match="expected labels below num_classes=3, got maximum 3"):
        arrays.check_labels(np.array([0, 3]), num_classes=3)


def test_split_validation_is_deterministic_and_disjoint():
    x = np.arange(100) * 10
    y = np.arange(100) % 7
    x_tr, y_tr, x_va, y_va = arrays.split_validation(x, y, 0.25, seed=3)
    assert (len(x_tr), len(x_va)) == (75, 25)
    np.testing.assert_array_equal(y_tr, (x_tr // 10) % 7)  # pairs stay aligned
    np.testing.assert_array_equal(np.sort(np.concatenate([x_tr, x_va])), x)
    again = arrays.split_validation(x, y, 0.25, seed=3)
    np.testing.assert_array_equal(again[2], x_va)
    other = arrays.split_validation(x, y, 0.25, seed=4)
    assert not np.array_equal(other[2], x_va)
    with pytest.raises(ValueError, match="expected fraction in \\(0, 1\\), got 1.0"):
        arrays.split_validation(x, y, 1.0, seed=0)


def test_keep_classes_remaps_labels():
    x = np.arange(8) * 2
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    x_sub, y_sub = arrays.keep_classes(x, y, [3, 1])
    np.testing.assert_array_equal(x_sub, [2, 6, 10, 14])
    np.testing.assert_array_equal(y_sub, [1, 0, 1, 0])
    assert y_sub.dtype == np.int32
    with pytest.raises(ValueError, match="expected a non-empty list of distinct classes"):
        arrays.keep_classes(x, y, [1, 1])


def test_fashion_mnist_dir_resolution(monkeypatch):
    monkeypatch.delenv(fashion_mnist.ENV_VAR, raising=False)
    assert fashion_mnist.fashion_mnist_dir() == fashion_mnist.DEFAULT_DIR
    monkeypatch.setenv(fashion_mnist.ENV_VAR, "/somewhere/else")
    assert fashion_mnist.fashion_mnist_dir() == "/somewhere/else"
    assert fashion_mnist.fashion_mnist_dir("/explicit") == "/explicit"


def test_fashion_mnist_missing_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist.load_fashion_mnist("train", data_dir=tmp_path)
    message = str(info.value)
    assert "apt-get update && apt-get install -y dataset-fashion-mnist" in message
    assert "TAC_JAX_FMNIST_DIR" in message
    with pytest.raises(ValueError, match="expected split in \\['test', 'train'\\], got 'val'"):
        fashion_mnist.load_fashion_mnist("val", data_dir=tmp_path)


def test_real_fashion_mnist_loads():
    images, labels = fashion_mnist.load_fashion_mnist("train", FMNIST_DIR)
    assert images.shape == (60000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int32
    # Fashion-MNIST is balanced: 6000 training images of each of the 10 classes.
    np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
    assert len(fashion_mnist.CLASS_NAMES) == 10
    test_images, test_labels = fashion_mnist.load_fashion_mnist("test", FMNIST_DIR)
    assert test_images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(test_labels), [1000] * 10)
    floats = arrays.to_float_images(test_images[:10])
    assert floats.shape == (10, 28, 28, 1)
    assert floats.min() >= 0.0 and floats.max() <= 1.0
