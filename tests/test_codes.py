import numpy as np
import pytest

from tac_jax.codes import (
    hadamard_width,
    make_codes,
    min_hamming_distance,
    sylvester_hadamard,
)


def test_sylvester_hadamard_order_4():
    np.testing.assert_array_equal(
        sylvester_hadamard(4),
        [[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]],
    )


@pytest.mark.parametrize("order", [2, 8, 32])
def test_hadamard_rows_orthogonal(order):
    h = sylvester_hadamard(order).astype(int)
    np.testing.assert_array_equal(h @ h.T, order * np.eye(order))


def test_hadamard_width_strictly_greater_power_of_two():
    assert [hadamard_width(c) for c in (2, 3, 7, 8, 10, 15, 16)] == [4, 4, 8, 16, 16, 16, 32]


def test_min_hamming_by_hand():
    m = np.array([[1, 1, 1, 1], [1, 1, -1, -1], [-1, -1, -1, -1]])
    # Pairs: rows 0-1 differ in 2, 0-2 in 4, 1-2 in 2.
    assert min_hamming_distance(m) == 2


def test_hadamard_codes_ten_classes_four_layers():
    codes = make_codes(10, 4, seed=3)
    assert codes.kind == "hadamard" and codes.width == 16
    assert codes.matrix.shape == (10, 64) and codes.matrix.dtype == np.float32
    assert set(np.unique(codes.matrix)) == {-1.0, 1.0}
    # Hadamard rows differ in exactly k/2 places per block, so 4 blocks give 4 * 8.
    assert codes.min_hamming == 32
    for layer in range(4):
        block = codes.matrix[:, layer * 16 : (layer + 1) * 16]
        np.testing.assert_array_equal(block @ block.T, 16 * np.eye(10))
        # The all-ones row of the Hadamard matrix is skipped: no block row is constant.
        assert not np.any(np.all(block == block[:, :1], axis=1))


def test_blocks_shuffled_independently_per_layer():
    codes = make_codes(10, 2, seed=0)
    first, second = codes.matrix[:, :16], codes.matrix[:, 16:]
    assert not np.array_equal(first, second)


def test_same_seed_same_codes_other_seed_other_codes():
    a, b, c = make_codes(10, 3, seed=1), make_codes(10, 3, seed=1), make_codes(10, 3, seed=2)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert not np.array_equal(a.matrix, c.matrix)


@pytest.mark.parametrize("num_classes", [10, 100, 1000])
def test_codes_unique(num_classes):
    codes = make_codes(num_classes, 3, seed=0)
    assert len({row.tobytes() for row in codes.matrix}) == num_classes
    assert codes.min_hamming == min_hamming_distance(codes.matrix) >= 1


def test_auto_switches_to_random_above_cap():
    codes = make_codes(100, 2, seed=0)
    assert codes.kind == "random" and codes.width == 16 and codes.matrix.shape == (100, 32)
    # Density 0.5: the fraction of +1 entries is close to a half.
    assert abs(np.mean(codes.matrix > 0) - 0.5) < 0.05


def test_explicit_hadamard_for_many_classes():
    codes = make_codes(1000, 1, kind="hadamard")
    assert codes.width == 1024 and codes.min_hamming == 512


def test_random_codes_fill_a_small_space_exactly():
    codes = make_codes(16, 1, kind="random", width=4, seed=0)
    assert len({row.tobytes() for row in codes.matrix}) == 16


def test_too_many_classes_for_random_width():
    with pytest.raises(ValueError, match=r"expected at most 2\*\*4 = 16 classes.*got 17"):
        make_codes(17, 1, kind="random", width=4)


def test_hadamard_width_too_small():
    with pytest.raises(ValueError, match=r"power of two greater than 10 classes.*got 8"):
        make_codes(10, 1, kind="hadamard", width=8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_classes=1, num_layers=1), "at least 2 classes, got 1"),
        (dict(num_classes=10, num_layers=0), "at least 1 tapped layer, got 0"),
        (dict(num_classes=10, num_layers=1, kind="gray"), "code kind"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_codes(**kwargs)
