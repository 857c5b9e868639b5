"""Tests for tac_jax.train.checksum: per-leaf content hashes of a state."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tac_jax import parallel
from tac_jax.train import checksum
from tac_jax.train.checksum import mismatched_leaves, tree_checksums


def test_doctests():
    assert doctest.testmod(checksum).failed == 0


def test_one_flipped_bit_in_any_leaf_is_found():
    tree = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(3, jnp.bfloat16), "n": jnp.int32(7)}
    sums = tree_checksums(tree)
    assert sorted(sums["leaves"]) == ["['b']", "['n']", "['w']"]
    assert sums["leaves"]["['b']"]["dtype"] == "bfloat16"
    assert mismatched_leaves(tree, sums) == []
    w = np.asarray(tree["w"]).copy()
    w.view(np.uint32)[1, 2] ^= 1  # the lowest mantissa bit of one value
    assert mismatched_leaves({**tree, "w": jnp.asarray(w)}, sums) == ["['w']"]


def test_the_digest_is_of_the_value_not_of_the_layout():
    mesh = parallel.make_mesh()
    value = jnp.arange(8.0 * 3).reshape(8, 3)
    sharded = jax.device_put(value, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    assert tree_checksums({"w": sharded}) == tree_checksums({"w": np.asarray(value)})
    # A cast or reshape chosen by the caller is not damage; a same-shaped change is.
    sums = tree_checksums({"w": value})
    assert mismatched_leaves({"w": value.astype(jnp.bfloat16)}, sums) == []
    assert mismatched_leaves({"w": value.T}, sums) == []
    assert mismatched_leaves({"w": value + 1}, sums) == ["['w']"]


def test_random_keys_and_python_scalars_are_hashed():
    tree = {"key": jax.random.key(3), "lr": 0.1}
    sums = tree_checksums(tree)
    assert sorted(sums["leaves"]) == ["['key']", "['lr']"]
    assert mismatched_leaves({"key": jax.random.key(4), "lr": 0.1}, sums) == ["['key']"]


def test_unknown_schemes_are_not_compared_and_garbage_is_refused():
    assert mismatched_leaves({"w": jnp.ones(2)}, {"scheme": "md5", "leaves": {}}) == []
    with pytest.raises(ValueError, match="expected recorded checksums with 'leaves'"):
        mismatched_leaves({"w": jnp.ones(2)}, {"scheme": checksum.SCHEME})
