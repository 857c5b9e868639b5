"""Tests for tac_jax.data.augment."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax.data import augment

H = W = 12


def _image(channels=1, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(H, W, channels)), jnp.float32)


RANDOM_FNS = {
    "resized_crop": augment.random_resized_crop,
    "rotation": augment.random_rotation,
    "noise": functools.partial(augment.random_uniform_noise, prob=1.0),
    "flip": augment.random_horizontal_flip,
    "pad_crop": augment.pad_and_random_crop,
    "mnist": augment.mnist_augment,
    "cifar": augment.cifar_augment,
}


@pytest.mark.parametrize("name", sorted(RANDOM_FNS))
def test_random_augment_contract(name):
    fn = jax.jit(functools.partial(augment.augment_batch, fn=RANDOM_FNS[name]))
    channels = 3 if name in ("flip", "pad_crop", "cifar") else 1
    # Sixteen copies of one image: any difference between rows is the per-example key.
    images = jnp.broadcast_to(_image(channels), (16, H, W, channels))
    out = np.asarray(fn(jax.random.key(0), images))
    assert out.shape == images.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, np.asarray(fn(jax.random.key(0), images)))
    assert not np.array_equal(out, np.asarray(fn(jax.random.key(1), images)))
    distinct = {row.tobytes() for row in out}
    assert len(distinct) >= 2


def test_full_box_crop_is_identity():
    image = _image(3)
    np.testing.assert_allclose(augment.resized_crop(image, 0.0, 0.0, H, W), image, atol=1e-6)
    out = augment.random_resized_crop(jax.random.key(3), image, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_resized_crop_of_a_ramp_is_the_ramp_zoomed():
    # Bilinear interpolation reproduces a linear ramp exactly, so the crop's values
    # follow from the pixel-centre mapping: row r reads source row 1.75 + r / 2.
    ramp = jnp.broadcast_to((jnp.arange(8.0) / 7.0)[:, None, None], (8, 8, 1))
    out = augment.resized_crop(ramp, 2.0, 2.0, 4.0, 4.0)
    expected = (1.75 + 0.5 * np.arange(8)) / 7.0
    np.testing.assert_allclose(out[:, 3, 0], expected, atol=1e-6)


def test_rotation_by_zero_and_full_turn_is_identity():
    image = _image(2)
    np.testing.assert_allclose(augment.rotate(image, 0.0), image, atol=1e-6)
    np.testing.assert_allclose(augment.rotate(image, 360.0), image, atol=1e-4)
    out = augment.random_rotation(jax.random.key(0), image, max_degrees=0.0)
    np.testing.assert_allclose(out, image, atol=1e-6)


@pytest.mark.parametrize("size", [5, 6])
def test_rotation_by_90_matches_rot90(size):
    image = jnp.asarray(np.random.default_rng(1).uniform(size=(size, size, 1)), jnp.float32)
    np.testing.assert_allclose(augment.rotate(image, 90.0), np.rot90(image), atol=1e-5)
    np.testing.assert_allclose(augment.rotate(image, -90.0), np.rot90(image, k=-1), atol=1e-5)


def test_rotation_fills_corners():
    ones = jnp.ones((H, W, 1))
    out = np.asarray(augment.rotate(ones, 45.0))
    assert out[0, 0, 0] == 0.0  # the corner comes from outside the image
    assert out[H // 2, W // 2, 0] == pytest.approx(1.0)
    filled = np.asarray(augment.rotate(jnp.zeros((H, W, 1)), 45.0, fill=0.5))
    assert filled[0, 0, 0] == pytest.approx(0.5)
    assert filled[H // 2, W // 2, 0] == 0.0


def test_flip_twice_is_identity():
    image = _image(3)
    flipped = augment.horizontal_flip(image)
    np.testing.assert_array_equal(flipped, np.asarray(image)[:, ::-1, :])
    np.testing.assert_array_equal(augment.horizontal_flip(flipped), image)
    always = augment.random_horizontal_flip(jax.random.key(0), image, prob=1.0)
    np.testing.assert_array_equal(always, flipped)


def test_pad_and_crop_is_a_shift_with_zeros():
    image = _image(3) * 0.5 + 0.5  # strictly positive, so shifted-in zeros are visible
    padded = np.pad(np.asarray(image), ((4, 4), (4, 4), (0, 0)))
    for seed in range(5):
        out = np.asarray(augment.pad_and_random_crop(jax.random.key(seed), image, 4))
        matches = [
            (top, left)
            for top in range(9)
            for left in range(9)
            if np.array_equal(out, padded[top : top + H, left : left + W])
        ]
        assert len(matches) == 1


def test_uniform_noise_range_and_mean():
    zeros = jnp.zeros((64, 64, 1))
    noisy = np.asarray(augment.uniform_noise(jax.random.key(0), zeros, 0.3))
    assert noisy.min() >= 0.0 and noisy.max() <= 0.3
    assert noisy.mean() == pytest.approx(0.15, abs=0.01)
    ones = jnp.ones((8, 8, 1))
    np.testing.assert_array_equal(augment.uniform_noise(jax.random.key(0), ones, 0.3), ones)
    image = _image()
    np.testing.assert_array_equal(augment.uniform_noise(jax.random.key(0), image, 0.0), image)
    skipped = augment.random_uniform_noise(jax.random.key(0), image, prob=0.0)
    np.testing.assert_array_equal(skipped, image)


def test_rank_errors():
    with pytest.raises(ValueError, match="expected one image of rank 3 \\(H, W, C\\)"):
        augment.rotate(jnp.zeros((4, 4)), 10.0)
    with pytest.raises(ValueError, match="expected images of rank 4 \\(N, H, W, C\\)"):
        augment.augment_batch(jax.random.key(0), jnp.zeros((4, 4, 1)), augment.mnist_augment)
