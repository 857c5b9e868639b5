"""Tests for tac_jax.data.tfds, offline through `tfds.testing.mock_data`."""

import sys

import numpy as np
import pytest

from tac_jax.data import tfds as tfds_data

tfds = tfds_data.import_tfds()


@pytest.mark.parametrize(
    "name, shape, num_classes",
    [("mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10), ("fashion_mnist", (28, 28, 1), 10)],
)
def test_load_tfds_from_mocked_data_source(name, shape, num_classes):
    with tfds.testing.mock_data(num_examples=6):
        images, labels = tfds_data.load_tfds(name, "train")
        again, _ = tfds_data.load_tfds(name, "train")
    assert images.shape == (6, *shape)
    assert images.dtype == np.uint8
    assert labels.shape == (6,)
    assert labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < num_classes
    np.testing.assert_array_equal(images, again)  # mocked data is deterministic


def test_load_tfds_other_keys_and_errors():
    with tfds.testing.mock_data(num_examples=3):
        ids, labels = tfds_data.load_tfds("cifar10", "test", image_key="id")
        assert ids.shape == (3,) and labels.shape == (3,)
        with pytest.raises(KeyError, match="pixels"):
            tfds_data.load_tfds("cifar10", "test", image_key="pixels")
    with pytest.raises(ValueError, match="expected method in \\('data_source', 'load'\\)"):
        tfds_data.load_tfds("mnist", "train", method="stream")


def test_load_tfds_through_tf_data():
    # method="load" reads through tf.data: the [tfds] extra (installed for tests) has TF.
    with tfds.testing.mock_data(num_examples=5):
        images, labels = tfds_data.load_tfds("mnist", "train", method="load")
    assert images.shape == (5, 28, 28, 1)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int32


def test_missing_tfds_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install 'tac_jax\\[tfds\\]'"):
        tfds_data.load_tfds("mnist", "train")
