"""What a run is: the config keys that define its model and its training.

A run directory records its identity (``run_identity.json``) when training first starts.
A later training in the same directory must have the same identity, or checkpoints of
one model would resume, or be skipped by, the training of another. The keys in
`RESUMABLE_KEYS` may change on resume without harm: how long to train (``steps``, to
extend a run; the schedule follows the new length), how often to log, evaluate and
checkpoint, evaluation-time settings, and where things are (the mesh, the data folder).
Every other key is identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import ml_collections

from tac_jax.atomic_write import write_atomic
from tac_jax.run import RunDir
from tac_jax.train.checkpoint import latest_step
from tac_jax.train.config import default_config

RESUMABLE_KEYS = frozenset(
    {
        "steps",  # extends (or shortens) a run
        "progress",
        "log_every",
        "ckpt_every",
        "keep",
        "eval_every",
        "eval_batch_size",
        "tac.score_deepest",  # TAC's scoring at evaluation, not its training
        "tac.fuse_weight",
        "mesh.data",  # a resumed run may land on another slice; restores reshard
        "mesh.model",
        "data.data_dir",  # where the named dataset's files are, not which data
    }
)


class IdentityChangedError(ValueError):
    """A run directory holds a run of another config."""


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def run_identity(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """The identity keys of a config, flattened (``"model.features"``), as JSON values.

    ``base_workdir`` is made absolute (a relative path means the folder it names now).

    >>> from tac_jax.train.config import default_config
    >>> identity = run_identity(default_config())
    >>> "steps" in identity, identity["model.features"]
    (False, [64, 64])
    """
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    values = json.loads(json.dumps(values))  # tuples become lists, as in config.json
    flat = {k: v for k, v in _flatten(values).items() if k not in RESUMABLE_KEYS}
    if flat.get("base_workdir"):
        flat["base_workdir"] = os.path.abspath(flat["base_workdir"])
    return flat


def identity_hash(identity: Mapping[str, Any]) -> str:
    """The sha256 of an identity's canonical JSON."""
    text = json.dumps(dict(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_keys(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The identity keys that differ, as ``"key: old -> new"``, sorted.

    A key the recorded run did not have (a field added to tac_jax since) is unchanged
    when it holds its default.

    >>> changed_keys({"seed": 0, "model.features": [8]}, {"seed": 0, "model.features": [4]})
    ['model.features: [8] -> [4]']
    """
    defaults = run_identity(default_config())
    missing = object()
    out = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, missing), current.get(key, missing)
        if old is missing and key in defaults and new == defaults[key]:
            continue
        if old != new:
            show = lambda v: "(absent)" if v is missing else json.dumps(v)  # noqa: E731
            out.append(f"{key}: {show(old)} -> {show(new)}")
    return out


def _has_training(run: RunDir) -> bool:
    """Whether the directory holds anything of a run that an identity protects."""
    return (
        latest_step(run.checkpoints) is not None
        or os.path.exists(run.final_metrics)
        or os.path.exists(run.metrics_log)
    )


def _recorded(run: RunDir) -> dict[str, Any] | None:
    """The recorded identity; for runs from before identities, their ``config.json``."""
    for path, read in (
        (run.identity_file, lambda d: d["identity"]),
        (run.config_file, run_identity),
    ):
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                identity = read(json.load(f))
            if not isinstance(identity, Mapping):
                raise TypeError(type(identity).__name__)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IdentityChangedError(
                f"expected a readable {os.path.basename(path)} in {run.path}, got "
                f"{type(e).__name__}: {e}; pass --fresh (fresh=True) to set the old run "
                "aside and start again"
            ) from None
        return dict(identity)
    return None


def claim_identity(run: RunDir, config: ml_collections.ConfigDict) -> None:
    """Checks that ``config`` is the run ``run`` holds, recording it if it holds none.

    Args:
      run: the run directory (it must exist).
      config: the config about to train there.

    Raises:
      IdentityChangedError: listing the changed keys, when the directory holds
        checkpoints or metrics of a run with another identity; or when ``config.steps``
        is below the step its checkpoints have reached (a run extends, it does not
        shrink: its final metrics would describe a later state).
    """
    current = run_identity(config)
    recorded = _recorded(run) if _has_training(run) else None
    if recorded is not None:
        changed = changed_keys(recorded, current)
        if changed:
            shown = "; ".join(changed[:6]) + (
                f"; and {len(changed) - 6} more" if changed[6:] else ""
            )
            raise IdentityChangedError(
                f"expected the config of the run in {run.path}, got changed keys: {shown}. "
                "Keep them, or pass --fresh (fresh=True) to set the old run aside into "
                "previous-<time>/ and start again"
            )
        reached = latest_step(run.checkpoints)
        if reached is not None and reached > int(config.steps):
            raise IdentityChangedError(
                f"expected config.steps >= {reached}, the step the run in {run.path} has "
                f"reached, got {config.steps}: train as long or longer, or pass --fresh "
                "(fresh=True) to set the old run aside and start again"
            )
        if os.path.exists(run.identity_file):
            return
    record = {
        "sha256": identity_hash(current),
        "identity": current,
        "resumable_keys": sorted(RESUMABLE_KEYS),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_atomic(run.identity_file, json.dumps(record, indent=2, sort_keys=True) + "\n")
