"""Metrics to ``metrics.jsonl`` and, when a TensorBoard writer is importable, to events.

One JSON object per line: ``{"step": ..., "split": "train" | "test" | ..., name: value}``.
TensorBoard support is optional: tensorboardX first, then TensorFlow's ``tf.summary``;
with neither installed only the JSON lines are written.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Mapping
from typing import Any

from tac_jax.run import METRICS_LOG as METRICS_FILE

TENSORBOARD_DIR = "tensorboard"


def _tensorboard(directory: str) -> Any:
    """A ``(scalar, flush, close)`` triple for the first TensorBoard backend found."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        pass
    else:
        writer = SummaryWriter(directory)
        return writer.add_scalar, writer.flush, writer.close
    # tf.summary only writes with the tensorboard package installed; checking first also
    # spares the seconds of importing TensorFlow when it could not write anyway.
    if importlib.util.find_spec("tensorboard") is None:
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    writer = tf.summary.create_file_writer(directory)

    def scalar(name: str, value: float, step: int) -> None:
        with writer.as_default():
            tf.summary.scalar(name, value, step=step)

    return scalar, writer.flush, writer.close


def _json_value(value: Any) -> Any:
    value = float(value) if not isinstance(value, bool | int | str) else value
    # JSON has no NaN or infinity; null keeps every line parseable by strict readers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Appends metrics of a run under ``workdir``.

    Args:
      workdir: the run's directory.
      enabled: write anything at all (only process 0 should).
      tensorboard: also write TensorBoard events when a backend is importable.

    >>> import tempfile
    >>> with MetricsWriter(tempfile.mkdtemp(), tensorboard=False) as w:
    ...     w.write(1, "train", {"loss": 0.5})
    """

    def __init__(
        self, workdir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True
    ):
        self.enabled = enabled
        self.path = os.path.join(os.fspath(workdir), METRICS_FILE)
        self._tb = None
        if enabled:
            os.makedirs(os.fspath(workdir), exist_ok=True)
            if tensorboard:
                self._tb = _tensorboard(os.path.join(os.fspath(workdir), TENSORBOARD_DIR))

    def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        """Appends one line (and one TensorBoard scalar per metric)."""
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _json_value(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            scalar, flush, _ = self._tb
            try:
                for name, value in record.items():
                    if isinstance(value, int | float) and name != "step":
                        scalar(f"{split}/{name}", float(value), int(step))
                flush()
            except Exception:  # noqa: BLE001 - TensorBoard is optional; the JSON lines are not
                self._tb = None

    def close(self) -> None:
        if self._tb is not None:
            self._tb[2]()
            self._tb = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def read_metrics(workdir: str | os.PathLike, split: str | None = None) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl``, optionally of one split only."""
    path = os.path.join(os.fspath(workdir), METRICS_FILE)
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if split is None or r.get("split") == split]
