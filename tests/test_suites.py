"""Tests for tac_jax/evaluate/ood/suites.py."""

import sys

import jax
import numpy as np
import pytest

from tac_jax.evaluate.ood.corruptions import CORRUPTIONS
from tac_jax.evaluate.ood.far_sets import FAR_SET_NAMES
from tac_jax.evaluate.ood.suites import (
    FMNIST_CORRUPTIONS,
    KINDS,
    SYNTHETIC_NAMES,
    TFDS_SHAPES,
    TFDS_SUITES,
    OODSet,
    corruption_sets,
    fmnist_suite,
    inverted_set,
    load_tfds_images,
    match_images,
    split_held_out,
    synthetic_sets,
    tfds_suite,
)


def _images(n: int, size: int = 28, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, size, size, channels)).astype(np.float32)


def test_ood_set_validates_kind_and_labels():
    x = _images(3)
    assert len(OODSet("a", x, "far")) == 3
    with pytest.raises(ValueError, match="expected kind in"):
        OODSet("a", x, "weird")
    with pytest.raises(ValueError, match="expected as many labels as images"):
        OODSet("a", x, "corruption", labels=np.zeros(2, np.int32))


def test_split_held_out_remaps_kept_classes_consistently():
    labels = np.tile(np.arange(10), 5)
    # Each "image" records its original label, so the mapping can be checked.
    images = labels * 1000 + np.arange(50)
    kept_x, kept_y, ood = split_held_out(images, labels, held_out=[7, 2])
    kept = [0, 1, 3, 4, 5, 6, 8, 9]
    np.testing.assert_array_equal(np.array(kept)[kept_y], kept_x // 1000)
    assert kept_y.dtype == np.int32 and set(kept_y.tolist()) == set(range(8))
    assert not np.isin(kept_x // 1000, [2, 7]).any()
    assert ood.name == "held_out" and ood.kind == "near" and len(ood) == 10
    np.testing.assert_array_equal(ood.labels, ood.images // 1000)
    assert set(ood.labels.tolist()) == {2, 7}
    # A split that misses the top class maps the other classes the same way.
    part = labels != 9
    _, part_y, _ = split_held_out(images[part], labels[part], [2, 7], num_classes=10)
    np.testing.assert_array_equal(part_y, kept_y[kept_x // 1000 != 9])


@pytest.mark.parametrize("held_out", [[], [10], [-1], list(range(10))])
def test_split_held_out_rejects_bad_classes(held_out):
    labels = np.arange(10)
    with pytest.raises(ValueError, match="expected a non-empty proper subset"):
        split_held_out(labels, labels, held_out)


def test_corruption_sets_names_labels_and_independence():
    x, y = _images(5), np.arange(5)
    sets = corruption_sets(x, y, corruptions=["contrast", "rotation"], severities=(2, 4), seed=1)
    assert [s.name for s in sets] == ["contrast_s2", "contrast_s4", "rotation_s2", "rotation_s4"]
    assert all(s.kind == "corruption" and s.images.shape == x.shape for s in sets)
    assert all(np.array_equal(s.labels, y) for s in sets)
    # Each set draws from its own stream: building it alone gives the same images.
    alone = corruption_sets(x, y, corruptions=["rotation"], severities=(4,), seed=1)
    np.testing.assert_array_equal(alone[0].images, sets[3].images)
    assert len(corruption_sets(x)) == 5 * len(CORRUPTIONS)
    with pytest.raises(ValueError, match="expected corruptions from"):
        corruption_sets(x, corruptions=["snow"])
    with pytest.raises(ValueError, match="expected a severity in 1..5, got 7"):
        corruption_sets(x, corruptions=["contrast"], severities=(7,))


def test_synthetic_sets_have_the_documented_contents():
    x = np.clip(np.random.default_rng(0).normal(0.5, 0.1, (40, 28, 28, 1)), 0, 1).astype(np.float32)
    sets = {s.name: s for s in synthetic_sets(x, num=30, seed=0)}
    assert list(sets) == list(SYNTHETIC_NAMES)
    for s in sets.values():
        assert s.kind == "synthetic" and s.labels is None
        assert s.images.shape == (30, 28, 28, 1) and s.images.dtype == np.float32
        assert s.images.min() >= 0.0 and s.images.max() <= 1.0
    assert sets["noise_uniform"].images.mean() == pytest.approx(0.5, abs=0.01)
    gaussian = sets["noise_gaussian"].images
    assert gaussian.mean() == pytest.approx(x.mean(), abs=0.005)
    assert gaussian.std() == pytest.approx(x.std(), rel=0.03)
    constant = sets["constant"].images
    np.testing.assert_array_equal(constant, np.broadcast_to(constant[:, :1, :1], constant.shape))
    assert len(np.unique(constant[:, 0, 0, 0])) == 30
    assert set(np.unique(sets["blobs"].images).tolist()) == {0.0, 1.0}
    permuted = sets["permuted_pixels"].images
    np.testing.assert_array_equal(
        np.sort(permuted.reshape(30, -1), 1), np.sort(x[:30].reshape(30, -1), 1)
    )
    assert not np.array_equal(permuted, x[:30])


def test_synthetic_sets_keep_colour_and_cycle_images():
    x = _images(4, size=32, channels=3)
    sets = {s.name: s for s in synthetic_sets(x, num=6)}
    permuted = sets["permuted_pixels"].images
    assert permuted.shape == (6, 32, 32, 3)
    # One permutation per image, shared by its channels: the set of RGB triples is kept.
    triples = lambda a: np.sort(
        a.reshape(-1, 3).view([("r", "f4"), ("g", "f4"), ("b", "f4")]), axis=0
    )
    np.testing.assert_array_equal(triples(permuted[4]), triples(x[0]))


def test_inverted_set():
    x = _images(3)
    s = inverted_set(x)
    assert s.name == "inverted" and s.kind == "synthetic"
    np.testing.assert_allclose(s.images, 1.0 - x)


def test_fmnist_suite_returns_the_documented_sets():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), np.arange(300) % 10
    suite = fmnist_suite(x, y, num=50)
    expected = [
        *FAR_SET_NAMES,
        *SYNTHETIC_NAMES,
        "inverted",
        *[f"{c}_s{s}" for c in FMNIST_CORRUPTIONS for s in (1, 3, 5)],
    ]
    assert [s.name for s in suite] == expected and len(suite) == 31
    assert [s.kind for s in suite[:3]] == ["far"] * 3
    assert all(s.images.shape == (50, 28, 28, 1) and s.images.dtype == np.float32 for s in suite)
    # Every set but the far ones is built from the same subset of the test set.
    clean = 1.0 - suite[len(FAR_SET_NAMES) + len(SYNTHETIC_NAMES)].images
    picked = [np.flatnonzero((x == np.rint(c[..., 0] * 255)).all(axis=(1, 2)))[0] for c in clean]
    assert len(set(picked)) == 50
    for s in suite:
        if s.kind == "corruption":
            np.testing.assert_array_equal(s.labels, y[picked])
    small = fmnist_suite(x[:20], y[:20], num=50, severities=(2,), corruptions=["jpeg"], seed=3)
    assert [s.name for s in small][-1] == "jpeg_s2"
    assert all(len(s) == 20 for s in small if s.kind != "far")


def test_fmnist_suite_on_the_real_test_set():
    from tac_jax.data.fashion_mnist import load_fashion_mnist

    x, y = load_fashion_mnist("test")
    suite = fmnist_suite(x, y, num=100, corruptions=["contrast"])
    contrast = {s.name: s.images.std() for s in suite if s.kind == "corruption"}
    assert contrast["contrast_s1"] > contrast["contrast_s3"] > contrast["contrast_s5"]


def test_match_images_resizes_and_converts_channels_by_hand():
    ramp = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)[None, ..., None]
    up = match_images(ramp, 4, 4, 1)
    np.testing.assert_allclose(up[0, :, :, 0], np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-6)
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], np.uint8)[None]
    gray = match_images(rgb, 2, 2, 1)
    np.testing.assert_allclose(gray[0, ..., 0], [[0.299, 0.587], [0.114, 1.0]], atol=1e-6)
    colour = match_images(np.full((2, 5, 5), 51, np.uint8), 3, 3, 3)
    assert colour.shape == (2, 3, 3, 3)
    np.testing.assert_allclose(colour, 0.2, atol=1e-6)
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)
    np.testing.assert_allclose(match_images(rgba, 2, 2, 3), rgb / 255.0, atol=1e-6)
    assert match_images(np.full((3, 32, 32, 3), 0.4, np.float32), 28, 28, 3).shape == (3, 28, 28, 3)


def test_match_images_takes_images_of_different_sizes():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(40, 70, 3), (9, 12)]]
    out = match_images(images, 32, 32, 3)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.float32
    # The same as resizing each image on its own with jax.image.resize.
    for image, resized in zip(images, out, strict=True):
        pixels = np.atleast_3d(image).astype(np.float32) / 255
        expected = jax.image.resize(pixels, (32, 32, pixels.shape[-1]), method="linear")
        np.testing.assert_allclose(resized, np.broadcast_to(expected, (32, 32, 3)), atol=1e-5)
    flat = [np.full((40, 30, 3), 200, np.uint8), np.full((20, 70, 3), 100, np.uint8)]
    np.testing.assert_allclose(
        match_images(flat, 32, 32, 3)[:, 5, 7, 0], [200 / 255, 100 / 255], atol=1e-6
    )
    with pytest.raises(ValueError, match="expected channels in"):
        match_images(images, 32, 32, 2)
    with pytest.raises(ValueError, match="expected images with 1, 3 or 4 channels"):
        match_images(np.zeros((1, 4, 4, 2), np.float32), 4, 4, 1)


def test_tfds_suite_specs_are_consistent():
    assert set(TFDS_SUITES) == set(TFDS_SHAPES)
    for entries in TFDS_SUITES.values():
        assert len({e.name for e in entries}) == len(entries)
        assert all(e.kind in KINDS and e.note for e in entries)
    assert [e.tfds_name for e in TFDS_SUITES["cifar10"]] == [
        "svhn_cropped",
        "cifar100",
        "dtd",
        "places365_small",
    ]
    assert {e.tfds_name for e in TFDS_SUITES["mnist"]} == {"fashion_mnist", "kmnist"}


def test_a_fake_loader_drives_tfds_suite():
    calls = []

    def fake_load(name, split):
        calls.append((name, split))
        if name == "dtd":  # textures come in varying sizes
            return [np.full((40 + i, 70, 3), 128, np.uint8) for i in range(3)], np.zeros(3, int)
        return np.full((4, 64, 64, 3), 255, np.uint8), np.zeros(4, int)

    sets = tfds_suite("cifar10", load=fake_load, num=5)
    assert calls == [
        ("svhn_cropped", "test[:5]"),
        ("cifar100", "test[:5]"),
        ("dtd", "test[:5]"),
        ("places365_small", "validation[:5]"),
    ]
    assert [(s.name, s.kind, s.images.shape) for s in sets] == [
        ("svhn", "far", (4, 32, 32, 3)),
        ("cifar100", "near", (4, 32, 32, 3)),
        ("textures", "far", (3, 32, 32, 3)),
        ("places365", "far", (4, 32, 32, 3)),
    ]
    np.testing.assert_allclose(sets[2].images, 128 / 255, atol=1e-6)
    calls.clear()
    gray = tfds_suite("fashion_mnist", load=fake_load, num=None)
    assert calls == [("mnist", "test"), ("kmnist", "test")]
    assert all(s.images.shape == (4, 28, 28, 1) for s in gray)
    np.testing.assert_allclose(gray[0].images, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="expected an in-distribution dataset in"):
        tfds_suite("imagenet", load=fake_load)


def test_default_loader_asks_for_tfds_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="expected the optional dependency tensorflow-datasets"):
        tfds_suite("mnist")


def test_default_loader_reads_mocked_tfds():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        images, labels = load_tfds_images("dtd", "test")  # mocked textures vary in size
        sets = tfds_suite("cifar10")
    assert len(images) == 4 and labels.shape == (4,)
    assert all(image.ndim == 3 and image.shape[-1] == 3 for image in images)
    assert [(s.name, s.images.shape) for s in sets] == [
        (name, (4, 32, 32, 3)) for name in ("svhn", "cifar100", "textures", "places365")
    ]


def test_a_missing_tfds_dataset_is_one_file_not_found_error(monkeypatch):
    from tac_jax.data import tfds as tfds_lib

    calls = []

    def data_source(name, split, **kwargs):
        calls.append(kwargs)
        raise KeyError("Trying to access `splits['test[:5]']` but `splits` is empty.\nmore")

    fake = type("FakeTfds", (), {"data_source": staticmethod(data_source)})
    monkeypatch.setattr(tfds_lib, "import_tfds", lambda: fake)
    monkeypatch.setenv("TFDS_DATA_DIR", "/env/tfds")
    with pytest.raises(FileNotFoundError) as error:
        load_tfds_images("kmnist", "test[:5]")
    message = str(error.value)
    assert message.startswith("expected the TFDS dataset 'kmnist' (test[:5]) in /env/tfds ")
    assert "got KeyError: " in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match=r"'mnist' \(test\) in /data/tfds or a network"):
        load_tfds_images("mnist", "test", data_dir="/data/tfds")
    assert calls == [{}, {"data_dir": "/data/tfds"}]
