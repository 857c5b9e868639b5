"""Tests for tac_jax/evaluate/ood/user_sets.py."""

import doctest

import numpy as np
import pytest

from tac_jax.data.idx import write_idx
from tac_jax.evaluate.ood import user_sets
from tac_jax.evaluate.ood.suites import OODSet
from tac_jax.evaluate.ood.user_sets import (
    OODFile,
    add_user_sets,
    check_user_sets,
    load_ood_file,
    parse_ood_spec,
    resolve_user_sets,
    user_set,
)

SHAPE = (6, 5, 1)


def _uint8(n: int = 10, shape=SHAPE[:2]) -> np.ndarray:
    # Image i is filled with 10·i, so a kept image can be traced back to its index.
    return np.broadcast_to((10 * np.arange(n, dtype=np.uint8))[:, None, None], (n, *shape)).copy()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("svhn=data/svhn.npy", ("svhn", "data/svhn.npy", "far")),
        ("a.b-c_1=x.npz:near", ("a.b-c_1", "x.npz", "near")),
        ("blur=x.npz:corruption", ("blur", "x.npz", "corruption")),
        ("n=noise.npy:synthetic", ("n", "noise.npy", "synthetic")),
        ("w=C:/data/x.npy", ("w", "C:/data/x.npy", "far")),  # a ':' inside the path
        ("w=C:/data/x.npy:far", ("w", "C:/data/x.npy", "far")),
        ("e=a=b.npy", ("e", "a=b.npy", "far")),  # only the first '=' splits
    ],
)
def test_parse_ood_spec(text, expected):
    assert parse_ood_spec(text) == OODFile(*expected)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x.npy", r"expected an OOD set as NAME=PATH\[:KIND\], got 'x.npy'"),
        ("=x.npy", "expected an OOD set as"),
        ("a=", "expected an OOD set as"),
        ("a=:far", "expected an OOD set as"),
        ("a=x.npy:weird", r"expected KIND in \('near', 'far', 'corruption', 'synthetic'\)"),
        ("a=x.npy:", "expected KIND in .* got ''"),
        ("a b=x.npy", "expected an OOD set name of letters"),
        ("../a=x.npy", "expected an OOD set name of letters"),
    ],
)
def test_parse_ood_spec_rejects_bad_specs(text, message):
    with pytest.raises(ValueError, match=message):
        parse_ood_spec(text)


def test_ood_file_checks_its_kind():
    with pytest.raises(ValueError, match="expected kind in .* for 'a', got 'odd'"):
        OODFile("a", "x.npy", "odd")


def test_uint8_float_and_idx_files_read_alike(tmp_path):
    images = _uint8()
    np.save(tmp_path / "u8.npy", images)
    np.save(tmp_path / "f.npy", images.astype(np.float32) / 255.0)
    write_idx(tmp_path / "x-idx3-ubyte", images)
    expected = (images.astype(np.float32) / 255.0)[..., None]
    for name in ("u8.npy", "f.npy", "x-idx3-ubyte"):
        s = load_ood_file(OODFile("mine", str(tmp_path / name)), SHAPE)
        assert (s.name, s.kind, s.labels, s.images.dtype) == ("mine", "far", None, np.float32)
        np.testing.assert_allclose(s.images, expected, atol=1e-7)


def test_a_corruption_npz_keeps_its_labels_other_kinds_drop_them(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, image=_uint8(4), label=np.array([3, 1, 0, 2], np.uint8))
    s = load_ood_file(OODFile("c", str(path), "corruption"), SHAPE, num_classes=4)
    assert s.labels.tolist() == [3, 1, 0, 2] and s.labels.dtype == np.int32
    assert load_ood_file(OODFile("c", str(path), "far"), SHAPE).labels is None
    np.savez(tmp_path / "only.npz", x=_uint8(4))  # a corruption set without labels
    assert (
        load_ood_file(OODFile("o", str(tmp_path / "only.npz"), "corruption"), SHAPE).labels is None
    )
    with pytest.raises(ValueError, match=r"expected labels below num_classes=3.*\(in .*c\.npz\)"):
        load_ood_file(OODFile("c", str(path), "corruption"), SHAPE, num_classes=3)


def test_a_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "rgb.npy"
    np.save(path, np.zeros((3, 6, 5, 3), np.uint8))
    message = r"expected images of shape \(N, 6, 5, 1\) .* in .*rgb\.npy, got shape \(3, 6, 5, 3\)"
    with pytest.raises(ValueError, match=message):
        load_ood_file(OODFile("rgb", str(path)), SHAPE)
    np.save(path, np.full((3, 6, 5), 2.0, np.float32))  # floats outside [0, 1]
    with pytest.raises(ValueError, match=r"expected float images in \[0, 1\].*\(in .*rgb\.npy\)"):
        load_ood_file(OODFile("rgb", str(path)), SHAPE)
    with pytest.raises(
        ValueError, match=r"expected a run on images \(H, W, C\).*input shape \(64,\)"
    ):
        user_set("tokens", np.zeros((3, 64), np.uint8), input_shape=(64,))


def test_subsampling_is_seeded_sorted_and_without_replacement():
    images = _uint8(10)
    picks = {}
    for seed in (0, 0, 1):
        s = user_set("mine", images, input_shape=SHAPE, num=4, seed=seed)
        index = np.round(s.images[:, 0, 0, 0] * 255 / 10).astype(int)
        assert len(set(index)) == 4 and list(index) == sorted(index)
        picks.setdefault(seed, []).append(index.tolist())
    assert picks[0][0] == picks[0][1] and picks[0][0] != picks[1][0]
    assert len(user_set("mine", images, input_shape=SHAPE, num=20)) == 10
    labelled = user_set("c", images, "corruption", np.arange(10), input_shape=SHAPE, num=4)
    np.testing.assert_array_equal(labelled.labels, np.round(labelled.images[:, 0, 0, 0] * 25.5))
    with pytest.raises(ValueError, match="expected labels only on a 'corruption' set"):
        user_set("f", images, "far", np.arange(10), input_shape=SHAPE)


def test_check_user_sets_before_any_run(tmp_path):
    np.save(tmp_path / "x.npy", _uint8())
    present = OODFile("a", str(tmp_path / "x.npy"))
    check_user_sets([present, OODSet("b", np.zeros((1, *SHAPE)), "far")])
    with pytest.raises(ValueError, match="expected distinct OOD set names, got 'a' twice"):
        check_user_sets([present, OODSet("a", np.zeros((1, *SHAPE)), "far")])
    with pytest.raises(FileNotFoundError, match="expected an array file for OOD set 'm'"):
        check_user_sets([OODFile("m", str(tmp_path / "missing.npy"))])
    with pytest.raises(TypeError, match="expected OODSet or OODFile entries, got str"):
        check_user_sets(["a=x.npy"])


def test_resolve_reads_files_and_converts_sets(tmp_path):
    np.save(tmp_path / "x.npy", _uint8(8))
    sets = resolve_user_sets(
        [OODFile("file", str(tmp_path / "x.npy"), "near"), OODSet("mem", _uint8(3), "synthetic")],
        SHAPE,
        num=5,
    )
    assert [(s.name, s.kind, s.images.shape) for s in sets] == [
        ("file", "near", (5, *SHAPE)),
        ("mem", "synthetic", (3, *SHAPE)),
    ]
    assert sets[1].images.dtype == np.float32 and sets[1].images.max() == pytest.approx(20 / 255)


def test_add_user_sets_keeps_the_order_and_refuses_taken_names():
    a, b = (OODSet(n, np.zeros((1, *SHAPE)), "far") for n in "ab")
    assert [s.name for s in add_user_sets([a], [b])] == ["a", "b"]
    with pytest.raises(ValueError, match="distinct from the suite's, got 'a' in both"):
        add_user_sets([a, b], [a])


def test_docstring_examples():
    assert doctest.testmod(user_sets).failed == 0
