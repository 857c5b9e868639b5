"""Atomic writes: the new content or the old, and no temporary file left behind."""

import doctest
import os

import numpy as np
import pytest

from tac_jax import atomic_write
from tac_jax.atomic_write import atomic_path, write_atomic


def test_doctests():
    assert doctest.testmod(atomic_write).failed == 0


def test_text_and_bytes_replace_the_file(tmp_path):
    path = tmp_path / "a.txt"
    assert write_atomic(path, "é\n") == str(path)
    assert path.read_text(encoding="utf-8") == "é\n"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["a.txt"]
    with pytest.raises(TypeError, match="expected str or bytes, got int"):
        write_atomic(path, 3)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.arange(2))
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.endswith(".npz") and os.path.dirname(tmp) == str(tmp_path)
        np.savez(tmp, a=np.arange(5))
        raise RuntimeError("interrupted")
    assert np.load(path)["a"].tolist() == [0, 1]
    assert os.listdir(tmp_path) == ["x.npz"]
