"""The OOD sets a run is evaluated on: a suite by name (`SUITES`) or given sets, the
held-out classes of a run that kept a subset, and the user's own sets."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from tac_jax.evaluate.ood.suites import (
    TFDS_SUITES,
    Loader,
    OODSet,
    fmnist_suite,
    load_tfds_images,
    tfds_suite,
)
from tac_jax.evaluate.ood.text_suites import text_suite
from tac_jax.evaluate.ood.user_sets import add_user_sets

# The local suites, then the public benchmark pairs read through TFDS (`TFDS_SUITES`).
SUITES = ("fmnist", "text", "none", *TFDS_SUITES)


def held_out_set(
    data: ml_collections.ConfigDict, num: int, seed: int, split: str = "test"
) -> OODSet | None:
    """Near-OOD: the images of ``split`` (``"test"``, or ``"train"`` for a validation
    set the test split never sees) of the classes a run was trained without
    (``config.data.classes``), at most ``num`` of them; None when it kept every class."""
    from tac_jax.train.dataset import load_splits

    if not tuple(data.classes):
        return None
    everything = ml_collections.ConfigDict(data.to_dict())
    everything.classes = ()
    everything.validation_fraction = 0.0
    # Any label is in range: the point is to see the classes the run never saw.
    everything.num_classes = np.iinfo(np.int32).max
    test = load_splits(everything, seed)[split]
    held = ~np.isin(test["label"], np.asarray(tuple(data.classes)))
    index = np.flatnonzero(held)
    if not index.size:
        return None
    if index.size > num:
        index = np.sort(np.random.default_rng(seed).choice(index, num, replace=False))
    images = test["image"][index]
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / np.float32(255.0)
    return OODSet("held_out", images, "near", labels=None)


def build_suite(
    suite: str | Sequence[OODSet],
    test: dict[str, np.ndarray],
    data: ml_collections.ConfigDict,
    *,
    num_ood: int,
    seed: int,
    severities: Sequence[int],
    corruptions: Sequence[str] | None,
    vocab: Any = None,
    extra: Sequence[OODSet] = (),
    load: Loader | None = None,
) -> list[OODSet]:
    """The OOD sets: ``"fmnist"`` (`fmnist_suite` on the run's test split), a key of
    `TFDS_SUITES` (`tfds_suite`, for a run trained on that dataset), ``"text"``
    (`text_suite`, for a text run: pass its ``vocab``), ``"none"``, or given `OODSet`s;
    the image suites get the held-out classes too when the run kept a subset. Then the
    user's ``extra`` sets, whose names must differ from the suite's (`add_user_sets`).

    ``load(tfds_name, split)`` reads the TFDS sets; default `load_tfds_images` from the
    run's ``data_dir`` (a TFDS run's) or TFDS's own.
    """
    if not isinstance(suite, str):
        sets = list(suite)
        if not all(isinstance(s, OODSet) for s in sets):
            raise ValueError("expected a suite name or a sequence of OODSet, got other objects")
        return add_user_sets(sets, extra)
    if suite not in SUITES:
        raise ValueError(f"expected a suite in {SUITES} or a list of OODSet, got {suite!r}")
    if suite == "none":
        return add_user_sets([], extra)
    if suite == "text":
        if vocab is None:
            raise ValueError("expected the vocabulary of a text run for suite 'text', got None")
        sets = text_suite(data, vocab, test["image"], test["label"], num=num_ood, seed=seed)
        return add_user_sets(sets, extra)
    if suite in TFDS_SUITES:
        # The suite's sets are OOD for its dataset only; a run on local arrays may be
        # anything, so it is refused too.
        is_tfds = data.source == "tfds"
        if (data.name if is_tfds else data.source) != suite:
            field = f"name={data.name!r}" if is_tfds else f"source={data.source!r}"
            raise ValueError(
                f"expected a run trained on {suite!r} for suite {suite!r}, got config.data.{field}"
            )
        if load is None:
            data_dir = (data.data_dir or None) if data.source == "tfds" else None
            load = functools.partial(load_tfds_images, data_dir=data_dir)
        sets = tfds_suite(suite, load=load, num=num_ood)
    else:
        sets = fmnist_suite(
            test["image"],
            test["label"],
            num=num_ood,
            severities=severities,
            corruptions=corruptions,
            seed=seed,
        )
    held = held_out_set(data, num_ood, seed)
    return add_user_sets(([held] if held is not None else []) + sets, extra)
