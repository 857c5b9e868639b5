"""Checkpoints of the training state, and a clean stop on SIGTERM.

`Checkpointer` wraps an orbax `CheckpointManager`: saves are asynchronous (the step
returns once arrays are copied off the devices), the newest ``keep`` steps are kept, and a
restore lands every array directly on the devices its abstract state names. Each step
directory holds two items, ``state`` (the pytree) and ``metadata`` (JSON: the caller's,
e.g. the config, plus the state's content checksums under ``CHECKSUMS_KEY``, see
`tac_jax.train.checksum`). A restore checks the arrays against those checksums; a
checkpoint saved before they existed restores unchecked.

Preemption follows the usual cluster contract: SIGTERM only raises a flag, the training
loop notices it between steps, saves with ``force=True``, waits and exits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from tac_jax.train.checksum import mismatched_leaves, tree_checksums

STATE_ITEM = "state"
METADATA_ITEM = "metadata"
# The state's checksums, beside the caller's metadata (`read_metadata` leaves them out).
CHECKSUMS_KEY = "_tac_jax_checksums"


class CorruptCheckpointError(ValueError):
    """A checkpoint restored, but its contents or metadata are not what was saved."""


logger = logging.getLogger(__name__)


def _as_path(directory: os.PathLike | str) -> epath.Path:
    directory = os.fspath(directory)
    # Orbax resolves relative paths against nothing in particular on remote workers.
    if "://" not in directory:
        directory = os.path.abspath(directory)
    return epath.Path(directory)


def _to_json(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if hasattr(metadata, "to_dict"):  # ml_collections.ConfigDict
        metadata = metadata.to_dict()
    if not isinstance(metadata, Mapping):
        raise TypeError(f"expected metadata to be a dict, got {type(metadata).__name__}.")
    if CHECKSUMS_KEY in metadata:
        raise TypeError(f"expected metadata without the reserved key {CHECKSUMS_KEY!r}.")
    try:
        # A round trip turns tuples into lists now rather than surprising a reader later.
        return json.loads(json.dumps(dict(metadata)))
    except (TypeError, ValueError) as e:
        raise TypeError(f"expected JSON-serialisable metadata, got {e}.") from e


def _abstract(tree: Any) -> Any:
    """Lets a concrete state stand in for its abstract shape and sharding."""

    def leaf(x: Any) -> Any:
        if isinstance(x, jax.Array):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x

    return jax.tree.map(leaf, tree)


class Checkpointer:
    """Saves and restores one run's training state under ``directory``.

    Every process of a multi-process run must make the same calls in the same order.

    Args:
      directory: Where the step directories go (local path or ``gs://``).
      keep: How many of the newest steps to keep.
      every_steps: `save` writes only on multiples of this, unless forced.
      async_save: Write in a background thread; `wait` or `close` before reading back.

    Example:
      >>> import jax.numpy as jnp, tempfile
      >>> with Checkpointer(tempfile.mkdtemp(), every_steps=10) as ckpt:
      ...     ckpt.save(10, {"w": jnp.ones(2)})
      ...     ckpt.wait()
      ...     step, state = ckpt.restore_latest({"w": jnp.zeros(2)})
      True
      >>> step, state["w"].tolist()
      (10, [1.0, 1.0])
    """

    def __init__(
        self,
        directory: os.PathLike | str,
        *,
        keep: int = 3,
        every_steps: int = 1000,
        async_save: bool = True,
    ) -> None:
        if keep < 1:
            raise ValueError(f"expected keep to be at least 1, got {keep}.")
        if every_steps < 1:
            raise ValueError(f"expected every_steps to be at least 1, got {every_steps}.")
        self.directory = _as_path(directory)
        self.every_steps = every_steps
        # Orbax's default policy also saves the first step of a fresh run whatever its
        # number; spelling the policy out keeps "multiples of every_steps" exact.
        policy = ocp.checkpoint_managers.AnySavePolicy(
            [
                ocp.checkpoint_managers.FixedIntervalPolicy(every_steps),
                ocp.checkpoint_managers.PreemptionCheckpointingPolicy(),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=every_steps,
            save_decision_policy=policy,
            enable_async_checkpointing=async_save,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(STATE_ITEM, METADATA_ITEM)
        )

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def all_steps(self) -> list[int]:
        """The steps on disk (or being written), oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest step on disk (or being written), or ``None``."""
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        state: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Saves ``state`` at ``step`` if it is due.

        A step is due when it is a multiple of ``every_steps``, when ``force`` is set, or, in
        a multi-process run, at the step the processes agreed to stop at after a SIGTERM.

        Args:
          step: The training step the state belongs to.
          state: Pytree of arrays (e.g. a flax `TrainState`).
          metadata: JSON-serialisable dict stored beside the state (e.g. the config).
          force: Save whatever the step.

        Returns:
          Whether a save started; ``False`` if not due or the step is already saved.
        """
        if step in self._manager.all_steps():
            # A forced save on preemption often lands on a step just saved periodically.
            return False
        if not (force or self._manager.should_save(step)):
            return False
        # Hashed now, from the very arrays handed to orbax: the caller may donate them
        # to its next step while the asynchronous write is still going.
        metadata = {**_to_json(metadata), CHECKSUMS_KEY: tree_checksums(state)}
        args = ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.StandardSave(state),
                METADATA_ITEM: ocp.args.JsonSave(metadata),
            }
        )
        return self._manager.save(step, args=args, force=True)

    def restore(self, step: int, abstract_state: Any) -> Any:
        """Restores the state saved at ``step``.

        Args:
          step: A step from `all_steps`.
          abstract_state: Pytree of `jax.ShapeDtypeStruct` (with shardings, e.g. from
            `tac_jax.parallel.abstract_sharded`) or of arrays shaped like the state.

        Returns:
          The state, each array placed with the sharding its abstract leaf names.

        Raises:
          CorruptCheckpointError: if the metadata is not a JSON object, or the arrays
            differ from the checksums saved with them (none are recorded in checkpoints
            written before they existed: those restore unchecked).
          Exception: whatever orbax raises on missing or unreadable files.
        """
        args = ocp.args.Composite(
            **{
                STATE_ITEM: ocp.args.StandardRestore(_abstract(abstract_state)),
                METADATA_ITEM: ocp.args.JsonRestore(),
            }
        )
        restored = self._manager.restore(step, args=args)
        state, metadata = restored[STATE_ITEM], restored[METADATA_ITEM]
        where = f"checkpoint step {step} in {self.directory}"
        if not isinstance(metadata, Mapping):
            raise CorruptCheckpointError(
                f"expected the metadata of {where} to be a JSON object, got {str(metadata)[:200]}"
            )
        if CHECKSUMS_KEY in metadata:
            bad = mismatched_leaves(state, metadata[CHECKSUMS_KEY])
            if bad:
                raise CorruptCheckpointError(
                    f"expected the arrays of {where} to match the checksums saved with them, "
                    f"got {len(bad)} differing: {', '.join(bad[:3])}"
                )
        return state

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
        """Restores the newest step that can be read, skipping damaged ones.

        A step that fails to restore (missing or corrupt files, unreadable metadata,
        arrays that differ from their checksums, or any other error) is reported with a
        warning and the next older step is tried. The damaged steps are renamed
        ``<step>.damaged`` (never deleted) so the resumed run can save those steps again;
        when none restores, all of them are.

        Args:
          abstract_state: As for `restore`.

        Returns:
          ``(step, state)``, or ``None`` if no step could be restored.
        """
        self.wait()
        # Another run (or a person) may have changed the directory since we listed it.
        self._manager.reload()
        damaged = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                state = self.restore(step, abstract_state)
            except Exception as e:  # noqa: BLE001 - any failure means "try an older step"
                message = (
                    f"Checkpoint step {step} in {self.directory} could not be restored "
                    f"({type(e).__name__}: {str(e)[:500]}); trying an earlier step."
                )
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning(message)
                damaged.append(step)
                continue
            for bad in damaged:
                self._set_aside(bad)
            return step, state
        if damaged:
            for bad in damaged:
                self._set_aside(bad)
            message = (
                f"None of the {len(damaged)} checkpoints in {self.directory} could be "
                "restored; they are set aside as <step>.damaged and training starts from "
                "scratch."
            )
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            logger.warning(message)
        return None

    def read_metadata(self, step: int | None = None) -> dict[str, Any] | None:
        """The metadata saved with ``step``, or by default with the newest step whose
        metadata reads (unreadable ones are skipped with a warning); ``None`` if there
        is none. The checksums stored beside it are left out.

        Raises:
          CorruptCheckpointError: if the given ``step``'s metadata is not a JSON object.
          Exception: whatever orbax raises when the given ``step``'s metadata is
            missing or unreadable.
        """
        self.wait()
        if step is not None:
            return self._read_metadata(step)
        for candidate in sorted(self._manager.all_steps(), reverse=True):
            try:
                return self._read_metadata(candidate)
            except Exception as e:  # noqa: BLE001 - an unreadable one: try an older step
                message = (
                    f"The metadata of checkpoint step {candidate} in {self.directory} could "
                    f"not be read ({type(e).__name__}: {str(e)[:300]}); trying an earlier step."
                )
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                logger.warning(message)
        return None

    def _read_metadata(self, step: int) -> dict[str, Any]:
        args = ocp.args.Composite(**{METADATA_ITEM: ocp.args.JsonRestore()})
        metadata = self._manager.restore(step, args=args)[METADATA_ITEM]
        if not isinstance(metadata, Mapping):
            raise CorruptCheckpointError(
                f"expected the metadata of checkpoint step {step} in {self.directory} to be a "
                f"JSON object, got {str(metadata)[:200]}"
            )
        return {k: v for k, v in metadata.items() if k != CHECKSUMS_KEY}

    def wait(self) -> None:
        """Blocks until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending saves and releases the manager's threads."""
        self._manager.close()

    def _set_aside(self, step: int) -> None:
        if jax.process_index() == 0:
            src = self.directory / str(step)
            dst = self.directory / f"{step}.damaged"
            n = 1
            while dst.exists():
                dst = self.directory / f"{step}.damaged{n}"
                n += 1
            if src.exists():
                src.rename(dst)
                logger.warning("Moved damaged checkpoint %s to %s.", src, dst)
        ocp.multihost.sync_global_processes(f"tac_jax_checkpoint_set_aside_{step}")
        self._manager.reload()


def latest_step(directory: os.PathLike | str) -> int | None:
    """The newest finished step under ``directory``, or ``None`` if there is none."""
    path = _as_path(directory)
    if not path.exists():
        return None
    steps = ocp.utils.checkpoint_steps(path)
    return max(steps) if steps else None


# Process-wide, like the signal it records.
_preempted = threading.Event()


def _on_sigterm(signum: int, frame: Any) -> None:
    # Only a flag: saving here would run arbitrary JAX and orbax code inside a signal
    # handler, interleaved with whatever the main thread was doing.
    del signum, frame
    _preempted.set()


def _jax_owns_sigterm() -> bool:
    """Whether jax.distributed's preemption service already listens for SIGTERM."""
    return jax.distributed.is_initialized() and bool(jax.config.jax_enable_preemption_service)


def install_sigterm_handler() -> bool:
    """Makes SIGTERM raise the preemption flag instead of killing the process.

    Call it from the main thread, after `tac_jax.parallel.initialize_distributed`. In a
    multi-process run JAX's preemption service already catches SIGTERM and agrees a stop
    step among the processes; replacing its handler would break that, so none is installed.

    Returns:
      Whether a handler was installed.
    """
    if _jax_owns_sigterm():
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


def preemption_requested(step: int | None = None) -> bool:
    """Whether the loop should save now and stop.

    Call it once per step on every process, with the same ``step``. Under jax.distributed
    every process answers ``True`` at the same step, so their forced saves line up.

    Args:
      step: The current step; needed under jax.distributed, ignored otherwise.

    Returns:
      Whether a SIGTERM has been received (by any process).
    """
    if _preempted.is_set():
        return True
    if step is not None and jax.distributed.is_initialized():
        from jax.experimental import multihost_utils

        try:
            return multihost_utils.reached_preemption_sync_point(step)
        except RuntimeError:
            return False
    return False


def clear_preemption() -> None:
    """Lowers the preemption flag (for tests, or a loop that decides to carry on)."""
    _preempted.clear()
