"""Tests for tac_jax.train.lock: one training per run directory."""

import doctest
import json
import os
import pathlib

import pytest

from tac_jax.train import lock
from tac_jax.train.lock import WorkdirLockedError, workdir_lock


def test_doctests():
    assert doctest.testmod(lock, optionflags=doctest.ELLIPSIS).failed == 0


def test_a_second_holder_is_refused_at_once_naming_the_first(tmp_path):
    with workdir_lock(tmp_path) as path:
        info = json.loads(pathlib.Path(path).read_text())
        assert info["pid"] == os.getpid() and info["host"] and info["since"].endswith("Z")
        with pytest.raises(WorkdirLockedError) as refused, workdir_lock(tmp_path):
            pass
        message = str(refused.value)
        assert message.startswith(f"expected no other training in {tmp_path}, got one (pid ")
        assert f"pid {os.getpid()} on {info['host']}, since {info['since']}" in message
        assert "\n" not in message and isinstance(refused.value, ValueError)
    # Released at the end of the block, and on an error inside it.
    with pytest.raises(KeyError), workdir_lock(tmp_path):
        raise KeyError("boom")
    with workdir_lock(tmp_path):
        pass
    assert (tmp_path / "train.lock").read_text() == ""
