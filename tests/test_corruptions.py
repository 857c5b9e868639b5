"""Tests for tac_jax/evaluate/ood/corruptions.py."""

import numpy as np
import pytest

from tac_jax.evaluate.ood.corruptions import (
    CORRUPTIONS,
    SEVERITY_PARAMS,
    corrupt,
    low_frequency_noise,
)

RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "motion_blur",
    "rotation",
    "shift",
    "elastic",
    "fog",
}


def _garments(n: int, size: int, channels: int, seed: int = 0) -> np.ndarray:
    """MNIST-like test images: a textured bright ellipse on a black background."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size] - (size - 1) / 2
    images = np.zeros((n, size, size, channels), np.float32)
    for i in range(n):
        a, b = rng.uniform(0.25, 0.4, 2) * size
        inside = (rows / a) ** 2 + (cols / b) ** 2 <= 1.0
        texture = (
            rng.uniform(0.5, 0.9, channels) + 0.1 * np.sin(rows / rng.uniform(1, 3))[..., None]
        )
        images[i] = np.where(inside[..., None], texture, 0.0)
    return np.clip(images, 0.0, 1.0)


def _blob(size: int, row: float, col: float, sigma: float = 1.5) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    blob = np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma**2))
    return blob[None, ..., None].astype(np.float32)


def _centroid(image: np.ndarray) -> tuple[float, float]:
    plane = image[..., 0]
    rows, cols = np.mgrid[: plane.shape[0], : plane.shape[1]]
    return float((rows * plane).sum() / plane.sum()), float((cols * plane).sum() / plane.sum())


GRAY = _garments(6, 28, 1)
RGB = _garments(3, 32, 3, seed=1)


def test_registry_matches_the_parameter_table():
    assert set(CORRUPTIONS) == set(SEVERITY_PARAMS)
    assert all(len(values) == 5 for values in SEVERITY_PARAMS.values())
    assert RANDOM.issubset(CORRUPTIONS)


@pytest.mark.parametrize("images", [GRAY, RGB, GRAY.astype(np.float64)], ids=["gray", "rgb", "f64"])
@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_shape_dtype_range_and_determinism(name, images):
    before = images.copy()
    for severity in (1, 5):
        out = corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape
        assert out.dtype == images.dtype
        assert out.min() >= 0.0 and out.max() <= 1.0
        np.testing.assert_array_equal(out, corrupt(images, name, severity, seed=3))
        other_seed = corrupt(images, name, severity, seed=4)
        assert (not np.array_equal(out, other_seed)) == (name in RANDOM)
    np.testing.assert_array_equal(images, before)  # the input is not modified in place


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_distance_from_clean_grows_with_severity(name):
    distances = [np.abs(corrupt(GRAY, name, s, seed=0) - GRAY).mean() for s in range(1, 6)]
    assert distances[0] > 0.0
    assert distances[4] > distances[0]
    # Weakly monotone: no severity is clearly milder than the one before it.
    assert all(b >= 0.95 * a for a, b in zip(distances, distances[1:], strict=False))


def test_gaussian_noise_has_the_documented_std():
    gray = np.full((8, 32, 32, 1), 0.5, np.float32)
    diff = corrupt(gray, "gaussian_noise", 1) - gray
    assert abs(diff.mean()) < 0.003
    assert diff.std() == pytest.approx(SEVERITY_PARAMS["gaussian_noise"][0], rel=0.03)


def test_shot_noise_keeps_the_mean_with_poisson_variance():
    gray = np.full((8, 32, 32, 1), 0.3, np.float32)
    lam = SEVERITY_PARAMS["shot_noise"][0]
    out = corrupt(gray, "shot_noise", 1)
    assert out.mean() == pytest.approx(0.3, abs=0.005)
    assert out.var() == pytest.approx(0.3 / lam, rel=0.1)
    np.testing.assert_allclose(out * lam, np.rint(out * lam), atol=1e-4)  # photon counts


def test_impulse_noise_sets_the_documented_share_to_0_or_1():
    gray = np.full((8, 32, 32, 1), 0.5, np.float32)
    out = corrupt(gray, "impulse_noise", 5)
    amount = SEVERITY_PARAMS["impulse_noise"][4]
    assert np.mean(out == 0.0) == pytest.approx(amount / 2, abs=0.01)
    assert np.mean(out == 1.0) == pytest.approx(amount / 2, abs=0.01)
    assert np.all((out == 0.0) | (out == 1.0) | (out == 0.5))


def test_brightness_adds_to_the_value_and_raises_the_mean():
    for severity in range(1, 6):
        delta = SEVERITY_PARAMS["brightness"][severity - 1]
        out = corrupt(GRAY, "brightness", severity)
        np.testing.assert_allclose(out, np.clip(GRAY + delta, 0, 1), atol=1e-6)
        assert out.mean() > GRAY.mean()
    # Colour: hue and saturation kept, value raised by delta; black turns grey.
    pixels = np.array([[[[0.2, 0.4, 0.1], [0.0, 0.0, 0.0]]]], np.float32)
    out = corrupt(pixels, "brightness", 2)
    np.testing.assert_allclose(out[0, 0], [[0.3, 0.6, 0.15], [0.2, 0.2, 0.2]], atol=1e-6)


def test_contrast_scales_the_std_by_the_factor():
    for severity in range(1, 6):
        factor = SEVERITY_PARAMS["contrast"][severity - 1]
        out = corrupt(GRAY, "contrast", severity)
        np.testing.assert_allclose(
            out.std(axis=(1, 2, 3)), factor * GRAY.std(axis=(1, 2, 3)), rtol=1e-4
        )
        np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), GRAY.mean(axis=(1, 2, 3)), rtol=1e-5)


def test_pixelate_at_severity_5_averages_4x4_blocks():
    out = corrupt(GRAY, "pixelate", 5)
    blocks = out.reshape(6, 7, 4, 7, 4, 1)
    np.testing.assert_allclose(
        blocks, np.broadcast_to(blocks[:, :, :1, :, :1], blocks.shape), atol=1e-6
    )
    expected = GRAY.reshape(6, 7, 4, 7, 4, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(blocks[:, :, 0, :, 0], expected, atol=1e-6)


def test_rotation_turns_a_blob_by_the_documented_angle():
    size, radius = 33, 9.0
    image = np.repeat(_blob(size, 16.0, 16.0 + radius), 10, axis=0)
    for severity in range(1, 6):
        out = corrupt(image, "rotation", severity, seed=severity)
        angles = []
        for rotated in out:
            row, col = _centroid(rotated)
            # Counter-clockwise as displayed is positive; rows grow downwards.
            angles.append(np.degrees(np.arctan2(-(row - 16.0), col - 16.0)))
            assert np.hypot(row - 16.0, col - 16.0) == pytest.approx(radius, abs=0.2)
        np.testing.assert_allclose(
            np.abs(angles), SEVERITY_PARAMS["rotation"][severity - 1], atol=0.5
        )
        assert min(angles) < 0 < max(angles)  # both directions occur


def test_shift_moves_a_blob_by_the_documented_distance():
    image = np.repeat(_blob(40, 20.0, 20.0), 4, axis=0)
    out = corrupt(image, "shift", 2, seed=0)
    share = SEVERITY_PARAMS["shift"][1]
    for moved in out:
        row, col = _centroid(moved)
        assert np.hypot(row - 20.0, col - 20.0) == pytest.approx(share * 40, abs=0.2)


def test_zoom_enlarges_a_centred_blob_by_the_factor():
    image = _blob(41, 20.0, 20.0, sigma=3.0)
    out = corrupt(image, "zoom", 4)
    rows = np.arange(41)
    profile_in, profile_out = image[0, :, 20, 0], out[0, :, 20, 0]
    width_in = np.sqrt(((rows - 20) ** 2 * profile_in).sum() / profile_in.sum())
    width_out = np.sqrt(((rows - 20) ** 2 * profile_out).sum() / profile_out.sum())
    assert width_out / width_in == pytest.approx(SEVERITY_PARAMS["zoom"][3], rel=0.03)


def test_jpeg_changes_the_image_but_keeps_it_close():
    for images in (GRAY, RGB):
        out = corrupt(images, "jpeg", 1)
        diff = np.abs(out - images).mean()
        assert 0.001 < diff < 0.03
        np.testing.assert_allclose(out * 255, np.rint(out * 255), atol=1e-3)  # 8-bit decode
    assert np.abs(corrupt(GRAY, "jpeg", 5) - GRAY).mean() > diff


@pytest.mark.parametrize(
    "name", ["gaussian_blur", "motion_blur", "pixelate", "elastic", "contrast"]
)
def test_constant_images_are_fixed_points(name):
    flat = np.full((2, 28, 28, 1), 0.37, np.float32)
    np.testing.assert_allclose(corrupt(flat, name, 5), flat, atol=1e-5)


def test_motion_blur_spreads_a_point_along_a_line():
    point = np.zeros((5, 31, 31, 1), np.float32)
    point[:, 15, 15] = 1.0
    length = SEVERITY_PARAMS["motion_blur"][2]
    out = corrupt(point, "motion_blur", 3, seed=2)
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 1.0, atol=1e-5)
    for image in out:
        rows, cols = np.nonzero(image[..., 0])
        reach = np.hypot(rows - 15, cols - 15).max()
        assert (length - 1) / 2 - 0.5 <= reach <= (length - 1) / 2 + 0.75
        assert len(rows) <= 2 * length


def test_fog_keeps_the_image_maximum_and_lowers_contrast():
    out = corrupt(GRAY, "fog", 5)
    assert np.all(out.max(axis=(1, 2, 3)) <= GRAY.max(axis=(1, 2, 3)) + 1e-6)
    assert out.std() < GRAY.std()


def test_low_frequency_noise_spans_0_to_1_and_is_smooth():
    field = low_frequency_noise(np.random.default_rng(0), (4, 28, 28, 2))
    np.testing.assert_allclose(field.min(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(field.max(axis=(1, 2)), 1.0, atol=1e-12)
    step = np.abs(np.diff(field, axis=1)).mean()
    assert step < 0.1  # neighbouring uniform noise differs by 1/3 on average


@pytest.mark.parametrize("severity", [0, 6, 7, 2.5, True, "3"])
def test_bad_severity_raises(severity):
    with pytest.raises(ValueError, match=f"expected a severity in 1..5, got {severity}"):
        corrupt(GRAY, "contrast", severity)
    with pytest.raises(ValueError, match="expected a severity"):
        CORRUPTIONS["gaussian_noise"](GRAY, severity, np.random.default_rng(0))


def test_bad_name_and_images_raise():
    with pytest.raises(ValueError, match="expected a corruption in .*, got 'snow'"):
        corrupt(GRAY, "snow", 1)
    with pytest.raises(ValueError, match="expected images of rank 4"):
        corrupt(GRAY[..., 0], "contrast", 1)
    with pytest.raises(ValueError, match="expected floating-point images"):
        corrupt((GRAY * 255).astype(np.uint8), "contrast", 1)
    with pytest.raises(ValueError, match=r"expected images in \[0, 1\]"):
        corrupt(GRAY * 2, "contrast", 1)
