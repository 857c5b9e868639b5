"""`RunDir`: what a run directory holds, in one place.

A run written by ``tac-jax train`` (`tac_jax.train.loop.train_and_evaluate`) holds its
config (``config.json``), what identifies it (``run_identity.json``), checkpoints
(``ckpt/``), the learning curve (``metrics.jsonl``), the final metrics
(``final_metrics.json``, written only when training ends), the vocabulary of a text run
(``vocab.json``), the training lock (``train.lock``) and, once evaluated, ``report/``
with the fitted statistics cache (``fitted.npz``). A fresh start moves the old files
into ``previous-<UTC time>/``. Evaluation, scoring and benchmarks read a run through
this object, not through the training code's file layout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

CONFIG_FILE = "config.json"
CKPT_DIR = "ckpt"
METRICS_LOG = "metrics.jsonl"
FINAL_METRICS = "final_metrics.json"
VOCAB_FILE = "vocab.json"
REPORT_DIR = "report"
FITTED_FILE = "fitted.npz"
RUN_IDENTITY = "run_identity.json"
LOCK_FILE = "train.lock"
TENSORBOARD_DIR = "tensorboard"
PREVIOUS_PREFIX = "previous-"
# What a fresh start moves aside: everything training and evaluation wrote, not the lock.
RUN_FILES = (
    CKPT_DIR, CONFIG_FILE, RUN_IDENTITY, METRICS_LOG, FINAL_METRICS, VOCAB_FILE,
    TENSORBOARD_DIR, REPORT_DIR,
)  # fmt: skip


class UnfinishedRunError(ValueError):
    """A run was asked for as trained while its training had not ended."""


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far a run's training got.

    Attributes:
      step: the newest checkpoint's step (readable or not), or None.
      steps: the steps its ``config.json`` trains, or None.
      final_step: the step of ``final_metrics.json``, or None.
    """

    step: int | None
    steps: int | None
    final_step: int | None

    @property
    def finished(self) -> bool:
        """Training ended: the final metrics and the newest checkpoint are both at the
        configured step count (a run extended with a larger ``steps`` is unfinished
        until it reaches the new count)."""
        return self.final_step is not None and self.final_step == self.steps == self.step

    def describe(self) -> str:
        """``"at step 12 of 20"``, or what is missing."""
        if self.step is None:
            return "with no checkpoint"
        if self.steps is None:
            return f"at step {self.step}, with no readable config.json"
        return f"at step {self.step} of {self.steps}"


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory's files.

    >>> run = RunDir("runs/demo")
    >>> run.checkpoints, run.fitted_file
    ('runs/demo/ckpt', 'runs/demo/report/fitted.npz')
    """

    path: str

    def __init__(self, path: str | os.PathLike):
        object.__setattr__(self, "path", os.fspath(path))

    def _join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    @property
    def config_file(self) -> str:
        return self._join(CONFIG_FILE)

    @property
    def checkpoints(self) -> str:
        return self._join(CKPT_DIR)

    @property
    def metrics_log(self) -> str:
        return self._join(METRICS_LOG)

    @property
    def final_metrics(self) -> str:
        return self._join(FINAL_METRICS)

    @property
    def vocab_file(self) -> str:
        return self._join(VOCAB_FILE)

    @property
    def report_dir(self) -> str:
        return self._join(REPORT_DIR)

    @property
    def fitted_file(self) -> str:
        return self._join(REPORT_DIR, FITTED_FILE)

    @property
    def identity_file(self) -> str:
        return self._join(RUN_IDENTITY)

    @property
    def lock_file(self) -> str:
        return self._join(LOCK_FILE)

    def progress(self) -> Progress:
        """How far training got, from ``config.json``, ``final_metrics.json`` and the
        checkpoints' step directories (nothing is restored)."""
        from tac_jax.train.checkpoint import latest_step

        config, final = _read_json(self.config_file), _read_json(self.final_metrics)
        steps = config.get("steps") if isinstance(config, dict) else None
        final_step = final.get("step") if isinstance(final, dict) else None
        return Progress(
            step=latest_step(self.checkpoints),
            steps=int(steps) if isinstance(steps, int) else None,
            final_step=int(final_step) if isinstance(final_step, int) else None,
        )

    def finished(self) -> bool:
        """Whether training ended (see `Progress.finished`)."""
        return self.progress().finished

    def require_finished(self) -> Progress:
        """The run's progress, checked to be finished.

        Raises:
          UnfinishedRunError: naming the step reached and the steps configured.
        """
        progress = self.progress()
        if not progress.finished:
            raise UnfinishedRunError(
                f"expected a finished run in {self.path}, got one {progress.describe()}: "
                "resume it by running the same tac-jax train command again"
            )
        return progress

    def set_aside(self) -> str | None:
        """Moves what training and evaluation wrote into ``previous-<UTC time>/`` inside
        the run directory (nothing is deleted); the lock file stays.

        Returns:
          The folder the files went to, or None when there was nothing to move.
        """
        present = [name for name in RUN_FILES if os.path.lexists(self._join(name))]
        if not present:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder, n = self._join(PREVIOUS_PREFIX + stamp), 1
        while os.path.lexists(folder):
            folder, n = self._join(f"{PREVIOUS_PREFIX}{stamp}-{n}"), n + 1
        os.makedirs(folder)
        for name in present:
            os.replace(self._join(name), os.path.join(folder, name))
        return folder

    def steps(self) -> list[int]:
        """The steps of the checkpoints present (readable or not), oldest first."""
        from tac_jax.train.checkpoint import Checkpointer

        if not os.path.isdir(self.checkpoints):
            return []
        with Checkpointer(self.checkpoints) as ckpt:
            return list(ckpt.all_steps())

    def load(self, step: int | None = None, mesh: Any = None) -> tuple[Any, int, Any]:
        """``(setup, step, state)`` of a checkpoint (default: the final one of a
        finished run), see `tac_jax.train.setup.load_run`.

        Raises:
          FileNotFoundError: if the directory holds no checkpoint.
          UnfinishedRunError: without ``step``, if training has not ended.
        """
        from tac_jax.train.setup import load_run

        return load_run(self.path, mesh, step)

    def vocab(self) -> Any:
        """A text run's vocabulary, or None."""
        from tac_jax.train.dataset import run_vocab

        return run_vocab(self.path)

    def splits(self, config: Any) -> dict[str, Any]:
        """The run's data splits (``train``, ``test``[, ``validation``]), as it was
        trained on them."""
        from tac_jax.train.dataset import load_splits

        return load_splits(config.data, config.seed, vocab=self.vocab())
