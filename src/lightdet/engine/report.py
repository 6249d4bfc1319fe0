"""The run report: ``<run dir>/plots/`` written while a run trains, with no extra command.

* ``plots/results.png``: every training loss and the lr over steps, the validation metrics over epochs;
  redrawn after each validation (:func:`lightdet.analysis.training.plot_training_curves`).
* ``plots/analysis/``: at the end of training, the analysis of the last validation
  (:func:`lightdet.analysis.analyze`: PR and F1 curves, confusion matrix, TIDE, ... and ``report.html``),
  from the COCO results the evaluator writes (its ``outfile``) and its ground truth.

Only global rank 0 writes; every rank records the same history, so the callback's state (saved in
checkpoints) is the same on all of them. No progress bar or logger is needed: the history is read from
``trainer.callback_metrics`` at the loggers' cadence (``trainer.log_every_n_steps``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

__all__ = ["RunReport", "PLOTS_DIR", "RESULTS_PNG", "ANALYSIS_DIR"]

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"
RESULTS_PNG = "results.png"
ANALYSIS_DIR = "analysis"
_VAL_RESULTS = "val_results.json"


def _scalars(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """The finite ``prefix*`` scalars of ``metrics`` as floats."""
    out = {}
    for key, value in metrics.items():
        if key.startswith(prefix) and getattr(value, "numel", lambda: 1)() == 1:
            number = float(value)
            if math.isfinite(number):
                out[key] = number
    return out


def _gather_ids(ids: list[int]) -> list[int]:
    """The union of every rank's image ids (a collective in a process group; a no-op otherwise)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ids
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, ids)
    return [i for part in gathered for i in part]


class RunReport(Callback):
    """Writes ``plots/results.png`` after every validation and ``plots/analysis/`` when fitting ends.

    Args:
        output_dir: the run directory.
        analyze: analyse the last validation at the end of fitting (needs an evaluator with ``outfile``,
            i.e. :class:`~lightdet.evaluation.CocoEvaluator`; otherwise only ``results.png`` is written).
        gallery_size: the number of worst images the analysis draws.
    """

    def __init__(self, output_dir: str | Path, *, analyze: bool = True, gallery_size: int = 12) -> None:
        self.plots_dir = Path(output_dir) / PLOTS_DIR
        self.analyze = analyze
        self.gallery_size = gallery_size
        self.train_rows: list[dict[str, float]] = []
        self.val_rows: list[dict[str, float]] = []
        self._val_ids: list[int] = []
        self._evaluated_ids: list[int] = []
        self._outfile: tuple[Any, str | None] | None = None  # (evaluator, its own outfile) while fitting

    @property
    def analysis_dir(self) -> Path:
        return self.plots_dir / ANALYSIS_DIR

    # -- recording ------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        evaluator = getattr(pl_module, "evaluator", None)
        if stage != "fit" or not self.analyze or evaluator is None or not hasattr(evaluator, "outfile"):
            return
        self._outfile = (evaluator, evaluator.outfile)
        if evaluator.outfile is None:  # every validation writes its results; the last one is analysed
            evaluator.outfile = str(self.analysis_dir / _VAL_RESULTS)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            row = _scalars(trainer.callback_metrics, "train/")
            if row:
                self.train_rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch, **row})

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_ids = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        self._val_ids += [int(m.image_id) for m in getattr(batch, "metas", [])]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._evaluated_ids = sorted(set(_gather_ids(self._val_ids)))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = _scalars(trainer.callback_metrics, "val/")
        if row:
            self.val_rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch, **row})
        self._draw_curves()

    # -- writing --------------------------------------------------------------------------------------
    @rank_zero_only
    def _draw_curves(self) -> None:
        from lightdet.analysis.training import plot_training_curves

        plot_training_curves(self.train_rows, self.val_rows, self.plots_dir / RESULTS_PNG)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw_curves()
        if self._outfile is not None:
            evaluator, own = self._outfile
            results = Path(evaluator.outfile)
            evaluator.outfile, self._outfile = own, None  # lightdet-test after training writes its own
            self._analyse_last_validation(evaluator, results, trainer)

    @rank_zero_only
    def _analyse_last_validation(self, evaluator: Any, results: Path, trainer: L.Trainer) -> None:
        """``plots/analysis/`` from the last validation's results (nothing when no validation ran)."""
        from lightdet.analysis.report import AnalysisInputs, analyze

        self.analysis_dir.mkdir(parents=True, exist_ok=True)
        if not results.is_file() or not self.val_rows:
            log.info("run report: no validation results at %s, no analysis written", results)
            return
        ground_truth = self._ground_truth_file(evaluator)
        inputs = AnalysisInputs(
            results=str(results.resolve()), ground_truth=ground_truth, img_dir=_image_folder(trainer),
            cat_ids=_category_ids(evaluator, ground_truth), image_ids=self._evaluated_ids or None,
        )  # fmt: skip
        inputs.save(self.analysis_dir)
        report = analyze(
            inputs.results, inputs.ground_truth, self.analysis_dir, img_dir=inputs.img_dir,
            cat_ids=inputs.cat_ids, image_ids=inputs.image_ids, gallery_size=self.gallery_size,
        )  # fmt: skip
        log.info("run report: analysis of the last validation in %s (%.1f s)", report.html, report.seconds)

    def _ground_truth_file(self, evaluator: Any) -> str:
        """The evaluator's ground truth as a file: its path, or (a dict or a reader) written beside the analysis."""
        import json
        import os

        if isinstance(evaluator.ann_file, (str, os.PathLike)):
            return str(Path(evaluator.ann_file).resolve())
        from lightdet.evaluation.ground_truth import load_coco_ground_truth

        path = self.analysis_dir / "ground_truth.json"
        path.write_text(json.dumps(load_coco_ground_truth(evaluator.ann_file, "RunReport")), encoding="utf-8")
        return str(path.resolve())

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint, so a resumed run's plots keep the history before the resume."""
        return {"train_rows": self.train_rows, "val_rows": self.val_rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_rows = list(state_dict.get("train_rows", []))
        self.val_rows = list(state_dict.get("val_rows", []))


def _image_folder(trainer: L.Trainer) -> str | None:
    """The validation dataset's image folder (``img_dir`` of the COCO-format datasets), if it has one."""
    dataset = getattr(getattr(trainer, "datamodule", None), "val", None)
    folder = getattr(dataset, "img_dir", None)
    return None if folder is None else str(Path(folder).resolve())


def _category_ids(evaluator: Any, ground_truth: str) -> list[int] | None:
    """The ids of the evaluator's classes in ``ground_truth`` (matched by name) when it evaluates a chosen
    list of classes; None when it evaluates every category of the file."""
    from lightdet.analysis.coco import read_ground_truth

    if getattr(evaluator, "classes", None) is None:
        return None
    by_name = {str(c["name"]): int(c["id"]) for c in read_ground_truth(ground_truth)["categories"]}
    return sorted(by_name[name] for name in evaluator.class_names if name in by_name)
