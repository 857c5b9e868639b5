"""Tests for tac_jax/evaluate/ood/far_sets.py and `suites.far_ood_sets`."""

import numpy as np
import pytest

from tac_jax.evaluate.ood.far_sets import (
    FAR_SET_NAMES,
    FAR_SETS,
    digits_images,
    glyphs_images,
    photos_images,
)
from tac_jax.evaluate.ood.suites import far_ood_sets


@pytest.mark.parametrize("name", FAR_SET_NAMES)
def test_far_sets_are_images_in_range_and_reproducible(name):
    build = FAR_SETS[name]
    x = build(40, seed=3, part="test")
    assert x.shape == (40, 28, 28, 1) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Not blank, and not 40 copies of one image.
    assert x.std() > 0.1 and len({im.tobytes() for im in x}) == 40
    np.testing.assert_array_equal(x, build(40, seed=3, part="test"))
    assert not np.array_equal(x, build(40, seed=4, part="test"))


@pytest.mark.parametrize("name", FAR_SET_NAMES)
def test_far_set_parts_are_disjoint(name):
    test = FAR_SETS[name](300, seed=0, part="test")
    val = FAR_SETS[name](300, seed=0, part="validation")
    shared = {im.tobytes() for im in test} & {im.tobytes() for im in val}
    assert not shared


def test_digits_split_the_bundled_set_by_index_parity():
    from sklearn.datasets import load_digits

    everything = load_digits().images
    test, val = digits_images(10_000, part="test"), digits_images(10_000, part="validation")
    assert len(test) + len(val) == len(everything) and len(test) == (len(everything) + 1) // 2
    # The 20×20 upscale sits centred on a black 28×28 canvas, as MNIST's digits do.
    assert test[:, :4].max() == 0.0 and test[:, -4:].max() == 0.0
    assert test[:, 4:24, 4:24].max() == 1.0
    # The first test digit is the first image of the set, upscaled: its mean ink agrees.
    np.testing.assert_allclose(test[0].mean() * 28 * 28 / 400, everything[0].mean() / 16, atol=0.03)


def test_glyphs_are_white_letters_on_black():
    x = glyphs_images(50, seed=0)
    ink = (x > 0.5).mean(axis=(1, 2, 3))
    # A letter covers a few percent to a third of the canvas; the corners stay black.
    assert ink.min() > 0.01 and ink.max() < 0.35
    assert x[:, :2, :2].max() < 0.5


def test_photos_come_from_the_two_halves():
    test, val = photos_images(20, part="test"), photos_images(20, part="validation")
    # Natural images: mid-grey on average, neighbouring pixels strongly correlated.
    for x in (test, val):
        assert 0.15 < x.mean() < 0.8
        a, b = x[:, :, :-1].ravel(), x[:, :, 1:].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.7


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="expected num >= 1"):
        digits_images(0)
    with pytest.raises(ValueError, match="expected part in"):
        photos_images(3, part="train")


def test_far_ood_sets_match_the_in_distribution_shape():
    like = np.zeros((2, 32, 32, 3), np.float32)
    sets = far_ood_sets(5, like=like)
    assert [s.name for s in sets] == list(FAR_SET_NAMES)
    assert all(s.kind == "far" and s.images.shape == (5, 32, 32, 3) for s in sets)
