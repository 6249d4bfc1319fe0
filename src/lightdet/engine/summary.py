"""The run summary: per-epoch validation history, the best checkpoint, and ``summary.json``."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

logger = logging.getLogger(__name__)

__all__ = ["RunSummary", "write_json"]


def _floats(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key.startswith(prefix):
            v = float(value)
            out[key] = v if math.isfinite(v) else float("nan")
    return out


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` atomically (a crash never leaves half a file behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _log_skipped(image: dict[str, Any]) -> None:
    logger.warning("skipped image %s (id %s) of %s: %s (dataset.on_bad_image=skip)", image["file_name"],
                   image["image_id"], image["dataset"], image["reason"])


class RunSummary(Callback):
    """Records ``val/*`` metrics after every validation and writes ``summary.json`` when fitting ends.

    ``summary.json``::

        {"best": {"val/bbox_mAP": float, "epoch": int, "ckpt": str | None},
         "last": {"val/...": float, ...},
         "history": [{"epoch": int, "step": int, "minutes": float, "val/...": float, ...}, ...],
         "skipped_images": {"count": int, "images": [{"image_id", "file_name", "dataset", "reason"}, ...]},
         "output_dir": str}

    Images a dataset skipped (``dataset.on_bad_image=skip``) arrive in the batches' ``meta.skipped``; the
    ranks' lists are merged at the end of every training epoch, and rank 0 logs each image once, as a
    warning: its own when it sees them, the other ranks' at that merge.

    Args:
        output_dir: the run directory.
        monitor: the metric that defines "best" (higher is better).
    """

    def __init__(self, output_dir: str | Path, monitor: str = "val/bbox_mAP") -> None:
        self.output_dir = Path(output_dir)
        self.monitor = monitor
        self.history: list[dict[str, float]] = []
        self.skipped: dict[str, dict[str, Any]] = {}  # image file -> its SkippedImage as a dict
        self._t0 = time.monotonic()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = _floats(trainer.callback_metrics, "val/")
        if not metrics:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        row["minutes"] = round((time.monotonic() - self._t0) / 60.0, 3)
        self.history.append({**row, **metrics})
        self._write(trainer)  # after every validation, so an interrupted run keeps its summary

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._note_skipped(batch, trainer.is_global_zero)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._note_skipped(batch, trainer.is_global_zero)

    def _note_skipped(self, batch: Any, log: bool) -> None:
        for meta in getattr(batch, "metas", ()):
            for image in meta.skipped:
                if image.file_name not in self.skipped:
                    self.skipped[image.file_name] = asdict(image)
                    if log:
                        _log_skipped(self.skipped[image.file_name])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self.skipped)
            merged = {file: image for part in gathered for file, image in part.items()}
            if trainer.is_global_zero:
                for file in sorted(merged.keys() - self.skipped.keys()):
                    _log_skipped(merged[file])
            self.skipped = merged

    def best(self) -> dict[str, Any]:
        """The best history row by ``monitor`` (``{}`` when nothing was validated)."""
        rows = [r for r in self.history if self.monitor in r and not math.isnan(r[self.monitor])]
        return max(rows, key=lambda r: r[self.monitor]) if rows else {}

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint, so a resumed run keeps the epochs before the resume."""
        return {"history": self.history, "skipped_images": list(self.skipped.values())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))
        self.skipped = {image["file_name"]: image for image in state_dict.get("skipped_images", [])}

    def payload(self, trainer: L.Trainer) -> dict[str, Any]:
        best = self.best()
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor), None)
        best_ckpt = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        last_path = self.output_dir / "checkpoints" / "last.ckpt"
        last_ckpt = str(last_path) if last_path.is_file() else None
        last = {k: v for k, v in self.history[-1].items() if "/" in k} if self.history else {}
        return {
            "best": {self.monitor: best.get(self.monitor), "epoch": best.get("epoch"), "ckpt": best_ckpt},
            "last": {**last, "ckpt": last_ckpt},
            "history": self.history,
            "skipped_images": {"count": len(self.skipped), "images": sorted(self.skipped.values(),
                                                                            key=lambda i: i["file_name"])},
            "output_dir": str(self.output_dir),
        }

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    @rank_zero_only
    def _write(self, trainer: L.Trainer) -> None:
        write_json(self.output_dir / "summary.json", self.payload(trainer))
