"""Loggers that continue a run's history when it resumes, instead of starting it again.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` whenever its directory already holds files, so a resumed run
loses every row logged before the interruption; TensorBoard keeps its old event files, but the steps between
the last checkpoint and the interruption then appear twice. Both loggers here take
:meth:`start_at` (called by :func:`lightdet.api.train` with the step training starts from: 0, or the resumed
checkpoint's global step) and drop exactly the history from that step on, which the run is about to log again.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger as _CSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as _TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities.rank_zero import rank_zero_only

__all__ = ["CSVLogger", "TensorBoardLogger", "truncate_metrics_csv"]


def truncate_metrics_csv(path: str, step: int) -> int:
    """Keeps the rows of the CSV at ``path`` whose ``step`` is below ``step``; returns how many were kept.

    Rows without a step (none are written by Lightning) are kept. A missing file is left missing.
    """
    if not os.path.isfile(path):
        return 0
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if not r.get("step") or float(r["step"]) < step]
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return len(rows)


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, without deleting the previous ``metrics.csv``: new rows are appended to it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])


class CSVLogger(_CSVLogger):
    """``metrics.csv`` that survives a resume: rows before the resumed step are kept, later ones replaced.

    Same arguments as Lightning's ``CSVLogger``.
    """

    @property
    def experiment(self) -> Any:
        if self._experiment is None and rank_zero_only.rank == 0:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return super().experiment

    @rank_zero_only
    def start_at(self, step: int) -> None:
        """Drops the rows logged at ``step`` and later (a fresh run, ``step`` 0, starts an empty file)."""
        path = os.path.join(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        if step <= 0 and os.path.isfile(path):
            os.remove(path)
        else:
            truncate_metrics_csv(path, step)
        if self._experiment is not None:
            self._experiment = None  # re-read the header of the truncated file


class TensorBoardLogger(_TensorBoardLogger):
    """TensorBoard logs whose events from the resumed step on are purged (``SummaryWriter(purge_step=...)``).

    Same arguments as Lightning's ``TensorBoardLogger``.
    """

    def start_at(self, step: int) -> None:
        """Hides the events at ``step`` and later that an interrupted run wrote (nothing to do at 0)."""
        if step > 0:
            self._kwargs["purge_step"] = step
            self._experiment = None
