"""`RunDir`: what a run directory holds, in one place.

A run written by ``tac-jax train`` (`tac_jax.train.loop.train_and_evaluate`) holds its
config (``config.json``), checkpoints (``ckpt/``), the learning curve
(``metrics.jsonl``), the final metrics (``final_metrics.json``), the vocabulary of a
text run (``vocab.json``) and, once evaluated, ``report/`` with the fitted statistics
cache (``fitted.npz``). Evaluation, scoring and benchmarks read a run through this
object, not through the training code's file layout.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

CONFIG_FILE = "config.json"
CKPT_DIR = "ckpt"
METRICS_LOG = "metrics.jsonl"
FINAL_METRICS = "final_metrics.json"
VOCAB_FILE = "vocab.json"
REPORT_DIR = "report"
FITTED_FILE = "fitted.npz"


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

    def steps(self) -> list[int]:
        """The steps of the checkpoints present (readable or not), oldest first."""
        from tac_jax.train.checkpoint import Checkpointer

        if not os.path.isdir(self.checkpoints):
            return []
        with Checkpointer(self.checkpoints) as ckpt:
            return list(ckpt.all_steps())

    def load(self, step: int | None = None, mesh: Any = None) -> tuple[Any, int, Any]:
        """``(setup, step, state)`` of a checkpoint (default: the newest readable one),
        see `tac_jax.train.setup.load_run`.

        Raises:
          FileNotFoundError: if the directory holds no checkpoint.
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
