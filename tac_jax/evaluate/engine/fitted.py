"""The statistics the fitted scores read, and their cache.

Every score with a ``fit`` (`tac_jax.scores.entry.Score`) is fitted on in-distribution
*training* outputs: a random subset of at most ``max_fit`` examples (default 20,000),
chosen by ``seed``, so fitting stays cheap on large training sets. Scores with a
``fit_held`` (TAC's layer weights and fusion) are fitted afterwards on the run's
validation split. `Fitted` holds one nested dict of arrays per score; it is saved to
``WORKDIR/report/fitted.npz`` with what it was fitted from (the content of the
checkpoint's variables, `variables_hash`, and its step, subset size, seed, layers,
validation size), and a later call with the same fingerprint that needs no more scores
than were fitted reloads it instead of running the model over the training set again.
A run retrained in place at the same step has other variables, hence another
fingerprint: its statistics are fitted again. A cache that cannot be read is refitted
with a one-line warning; one that cannot be written (a read-only run) is only warned about.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tac_jax.atomic_write import atomic_path
from tac_jax.data.damaged import DAMAGED
from tac_jax.evaluate.engine.registry import SCORES, with_uses
from tac_jax.scores.entry import FitData, HeldData, Stats
from tac_jax.scores.feature import KNN_K
from tac_jax.train.checksum import tree_checksums

MAX_FIT = 20_000
_FORMAT = 7
_SEP = "|"
# What reading a cache cut short or of another layout raises (a literal_eval'ed meta
# value: SyntaxError).
_UNREADABLE = (*DAMAGED, OSError, KeyError, SyntaxError)

Log = Callable[[str], None]
_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Fitted:
    """Every fitted score's statistics.

    Attributes:
      stats: ``{score name: nested dict of arrays}`` (a Python ``int`` inside is a
        compile-time constant, e.g. KNN's ``k``).
      meta: the fingerprint (`fingerprint`) and ``train_examples``.
      failed: ``{score name: why}`` for the held-out fits that could not be made (e.g. a
        validation split without errors).
    """

    stats: dict[str, Stats] = dataclasses.field(default_factory=dict)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def knn_k(self) -> int | None:
        """KNN's neighbour rank, when KNN is fitted."""
        knn = self.stats.get("knn")
        return None if knn is None else int(knn["k"])


def subset_indices(n: int, max_fit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_fit`` of ``n`` examples, fixed by ``seed``.

    >>> subset_indices(5, 10, 0).tolist()
    [0, 1, 2, 3, 4]
    >>> len(subset_indices(100, 10, 0))
    10
    """
    if max_fit < 1:
        raise ValueError(f"expected max_fit >= 1, got {max_fit}")
    if n <= max_fit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_fit, replace=False))


def fit_statistics(
    outputs: Mapping[str, Any],
    labels: np.ndarray,
    num_classes: int,
    head: tuple[np.ndarray, np.ndarray] | None,
    *,
    names: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    knn_k: int = KNN_K,
) -> Fitted:
    """Fits every score of ``names`` (default: all) that has a ``fit`` on training outputs.

    Args:
      outputs: `tac_jax.evaluate.engine.collect.collect`'s outputs on training examples;
        a score whose fit finds nothing to read in them (no TAC activation, no SNGP
        features, no Purview pass) is left out.
      labels: ``(N,)`` training labels.
      num_classes: ``C``.
      head: the base head's ``(kernel, bias)``, or None (no ReAct/ViM).
      names: the scores to fit (and those they use).
      meta: the fingerprint to store.
      knn_k: the KNN neighbour rank, capped at ``N``.

    Returns:
      `Fitted`.
    """
    data = FitData(outputs, np.asarray(labels), int(num_classes), head, int(knn_k))
    out = Fitted(meta=dict(meta or {}))
    for name in with_uses(SCORES if names is None else names):
        fit = SCORES[name].fit
        if fit is not None:
            stats = fit(data)
            if stats is not None:
                out.stats[name] = stats
            elif names is not None:
                out.failed[name] = "the training outputs have nothing to fit it on"
    return out


def fit_held_out(
    fitted: Fitted,
    names: Sequence[str],
    held: HeldData,
    *,
    log: Log | None = None,
) -> Fitted:
    """Fits, in place, the scores of ``names`` (and those they use) that have a
    ``fit_held``, in dependency order; a fit the split cannot make (ValueError) is
    recorded in ``fitted.failed`` and leaves out the scores built on it."""
    for name in with_uses(names):
        entry = SCORES[name]
        if entry.fit_held is None:
            continue
        lacking = [u for u in entry.uses if SCORES[u].fitted and u not in fitted.stats]
        if lacking:
            fitted.failed[name] = f"no statistics for {lacking}"
            continue
        try:
            fitted.stats[name] = entry.fit_held(held)
        except ValueError as err:
            fitted.failed[name] = str(err)
            if log:
                log(f"{name} not fitted ({err}): it is left out")
    return fitted


def _flatten(tree: Mapping[str, Any], prefix: str, out: dict[str, np.ndarray]) -> None:
    for key, value in tree.items():
        if _SEP in str(key):
            raise ValueError(f"expected statistics keys without {_SEP!r}, got {key!r}")
        path = f"{prefix}{_SEP}{key}"
        if isinstance(value, Mapping):
            _flatten(value, path, out)
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            out[f"int{_SEP}{path}"] = np.int64(value)
        else:
            out[f"arr{_SEP}{path}"] = np.asarray(value)


def save_fitted(path: str | os.PathLike, fitted: Fitted) -> None:
    """Writes `Fitted` to an ``.npz`` (no pickles: names and meta are stored as strings)."""
    arrays: dict[str, np.ndarray] = {
        "format": np.int64(_FORMAT),
        "meta_keys": np.asarray(list(fitted.meta), dtype=str),
        "meta_values": np.asarray([repr(v) for v in fitted.meta.values()], dtype=str),
        "failed_keys": np.asarray(list(fitted.failed), dtype=str),
        "failed_values": np.asarray(list(fitted.failed.values()), dtype=str),
    }
    for name, stats in fitted.stats.items():
        _flatten(stats, name, arrays)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:  # a reader never sees half a cache
        np.savez(tmp, **arrays)


def load_fitted(path: str | os.PathLike) -> Fitted:
    """Reads what `save_fitted` wrote.

    Raises:
      ValueError: if the file is not a fitted-statistics cache of this format.
    """
    with np.load(path, allow_pickle=False) as data:
        a = {k: data[k] for k in data.files}
    if int(a.get("format", -1)) != _FORMAT:
        raise _FormatError(f"expected a fitted-statistics file of format {_FORMAT}, got {path}")
    stats: dict[str, Any] = {}
    for key, value in a.items():
        kind, _, path_text = key.partition(_SEP)
        if kind not in ("arr", "int"):
            continue
        *parents, leaf = path_text.split(_SEP)
        node = stats
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = int(value) if kind == "int" else value
    meta = {
        str(k): ast.literal_eval(str(v))
        for k, v in zip(a["meta_keys"], a["meta_values"], strict=True)
    }
    failed = {str(k): str(v) for k, v in zip(a["failed_keys"], a["failed_values"], strict=True)}
    return Fitted(stats=stats, meta=meta, failed=failed)


def fit_or_load(
    path: str | os.PathLike,
    meta: Mapping[str, Any],
    fit: Callable[[], Fitted],
    *,
    names: Sequence[str] = (),
    log: Log | None = None,
) -> Fitted:
    """The cached statistics at ``path`` if their fingerprint equals ``meta`` and they
    hold (or tried and failed to fit) every fitted score of ``names``, else ``fit()``
    (saved to ``path``, atomically).

    A cache that cannot be read (cut short, damaged) is refitted and rewritten, with a
    one-line warning (this module's logger); a cache that cannot be written (a
    read-only run directory) is warned about and the fitted statistics are returned.

    Args:
      path: the cache file.
      meta: the fingerprint the statistics must have been fitted with.
      fit: fits the statistics (running the model over training data).
      names: the scores that will be computed.
      log: optional progress callback.
    """
    meta = _normalise(meta)
    wanted = {n for n in with_uses(names) if SCORES[n].fitted}
    cached = _read_cache(path)
    if cached is not None:
        before = _normalise(cached.meta)
        stale = sorted(k for k in meta.keys() | before.keys() if meta.get(k) != before.get(k))
        if not stale and wanted <= set(cached.stats) | set(cached.failed):
            if log:
                log(f"reusing fitted statistics from {path}")
            return cached
        if stale and log:
            log(f"refitting: the statistics in {path} differ in {', '.join(stale)}")
    fitted = fit()
    fitted.meta = dict(meta)
    try:
        save_fitted(path, fitted)
    except OSError as error:
        _logger.warning(
            "could not save the fitted statistics to %s (%s); they are fitted again next time",
            path, error.strerror or error,
        )  # fmt: skip
        return fitted
    if log:
        log(f"saved fitted statistics to {path}")
    return fitted


def _read_cache(path: str | os.PathLike) -> Fitted | None:
    """The cache at ``path``; None when there is none, or it is of another format or
    unreadable (then with a one-line warning)."""
    if not os.path.exists(path):
        return None
    try:
        return load_fitted(path)
    except _FormatError:
        return None  # an older version's cache: refitted, as expected
    except _UNREADABLE as error:
        lines = str(error).strip().splitlines()
        why = lines[0] if lines else type(error).__name__
        _logger.warning("ignoring unreadable fitted statistics %s (%s); refitting", path, why)
        return None


class _FormatError(ValueError):
    """A cache written by another version of `save_fitted`."""


def _normalise(meta: Mapping[str, Any]) -> dict[str, Any]:
    # Tuples and lists compare equal once written and read back.
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in meta.items()}


def fingerprint(
    step: int,
    fit_examples: int,
    max_fit: int,
    seed: int,
    layers: Sequence[str],
    validation_examples: int = 0,
    weights: str = "",
) -> dict[str, Any]:
    """What fitted statistics depend on: a cache is reused only if all of it matches
    (``validation_examples``: the held-out examples the ``fit_held`` scores are fitted
    on; ``weights``: `variables_hash` of the variables the model ran with)."""
    return {
        "weights": str(weights),
        "validation_examples": int(validation_examples),
        "format": _FORMAT,
        "step": int(step),
        "fit_examples": int(fit_examples),
        "max_fit": int(max_fit),
        "seed": int(seed),
        "layers": [str(name) for name in layers],
    }


def variables_hash(variables: Any) -> str:
    """The SHA-256 of a pytree of arrays: of its per-leaf checksums
    (`tac_jax.train.checksum.tree_checksums`: path, dtype, shape and bytes, read on the
    host), in sorted path order.

    Two checkpoints with equal hashes hold the same numbers, whatever their step. The
    cost is SHA-256 over the bytes: about 2.5 ms for the demo's CNN with its TAC head
    (0.3 M parameters, 1.2 MB) on one CPU core, a fraction of a second for a WRN-28-10.

    >>> a = {"dense": {"kernel": np.ones((2, 2), np.float32), "bias": np.zeros(2, np.float32)}}
    >>> variables_hash(a) == variables_hash({"dense": dict(reversed(a["dense"].items()))})
    True
    >>> variables_hash(a) == variables_hash({"dense": {**a["dense"], "bias": np.ones(2)}})
    False
    """
    leaves = tree_checksums(variables)["leaves"]
    text = json.dumps(leaves, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
