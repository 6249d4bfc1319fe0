"""Predictions drawn on a few validation images, logged after every validation to the loggers that take images.

TensorBoard (``add_image``), Weights & Biases (``log_image``) and MLflow (``log_image``) receive them; the CSV
logger has no images and is skipped. Each image shows the ground truth (white) and the detections
scoring at least ``score_thr`` (coloured by class, with name and score), on the image the model saw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from lightdet.data.visualize import class_colours
from lightdet.structures import DetBatch, Detections

__all__ = ["ValidationImages", "draw_predictions", "log_images"]

log = logging.getLogger(__name__)


def _draw_detections(image: torch.Tensor, detections: Detections, class_names: Sequence[str]) -> torch.Tensor:
    """``uint8 [3, H, W]`` with ``detections`` (in its pixels) drawn in their class colours, named and scored."""
    if len(detections) == 0:
        return image
    colours = class_colours(len(class_names))
    labels = [f"{class_names[int(c)]} {float(s):.2f}" for c, s in zip(detections.labels, detections.scores)]
    return draw_bounding_boxes(image, detections.boxes, labels=labels, width=2,
                               colors=[colours[int(c)] for c in detections.labels])  # fmt: skip


def draw_predictions(
    batch: DetBatch, detections: Sequence[Detections], class_names: Sequence[str], *, score_thr: float = 0.3
) -> list[Image.Image]:
    """Each image of ``batch`` (its valid region) with its ground truth (white) and ``detections`` drawn.

    Detections are in original pixels; test pipelines do not flip, so they are only rescaled to the image the
    model saw by ``meta.scale_factor``.
    """
    drawn = []
    for i, (meta, det) in enumerate(zip(batch.metas, detections)):
        h, w = meta.img_size
        image = batch.images[i, :, :h, :w].cpu()
        if len(batch.boxes[i]):
            image = draw_bounding_boxes(image, batch.boxes[i].cpu(), colors="white", width=1)
        det = det.to("cpu")[det.scores.cpu() >= score_thr]
        sx, sy = meta.scale_factor
        scaled = Detections(boxes=det.boxes * det.boxes.new_tensor([sx, sy, sx, sy]), scores=det.scores,
                            labels=det.labels)  # fmt: skip
        drawn.append(Image.fromarray(_draw_detections(image, scaled, class_names).permute(1, 2, 0).numpy()))
    return drawn


def log_images(loggers: Sequence[Any], tag: str, images: Sequence[Image.Image], step: int) -> int:
    """Logs ``images`` as ``tag/<k>`` to every logger that takes images; returns how many loggers took them."""
    taken = 0
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard's SummaryWriter
            for k, image in enumerate(images):
                experiment.add_image(f"{tag}/{k}", np.asarray(image), step, dataformats="HWC")
        elif hasattr(logger, "log_image"):  # Weights & Biases
            logger.log_image(key=tag, images=list(images), step=step)
        elif hasattr(experiment, "log_image") and getattr(logger, "run_id", None):  # MLflow
            for k, image in enumerate(images):
                experiment.log_image(logger.run_id, image, key=f"{tag}/{k}", step=step)
        else:
            continue
        taken += 1
    return taken


class ValidationImages(Callback):
    """Logs the first ``num_images`` validation images with their predictions after every validation.

    Args:
        num_images: how many images of the first validation batches are drawn.
        score_thr: detections scoring below it are not drawn.
        save_dir: also write the drawings there as ``<k>.png`` (overwritten each validation); None: only log.
    """

    def __init__(self, num_images: int = 4, score_thr: float = 0.3, save_dir: str | Path | None = None) -> None:
        self.num_images = num_images
        self.score_thr = score_thr
        self.save_dir = None if save_dir is None else Path(save_dir)
        self._images: list[Image.Image] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images = []

    @rank_zero_only
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        missing = self.num_images - len(self._images)
        if trainer.sanity_checking or missing <= 0 or not isinstance(batch, DetBatch):
            return
        names = _class_names(pl_module)
        with torch.no_grad():
            detections = pl_module.detector.predict(batch)  # the model's own predict: one more pass on a few images
        self._images += draw_predictions(batch, detections, names, score_thr=self.score_thr)[:missing]

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._images:
            return
        if not log_images(trainer.loggers, "val_predictions", self._images, trainer.global_step) and not self.save_dir:
            log.debug("ValidationImages: no logger takes images and no save_dir is set")
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            for k, image in enumerate(self._images):
                image.save(self.save_dir / f"{k}.png")


def _class_names(pl_module: L.LightningModule) -> list[str]:
    """The evaluator's class names, else ``class <k>`` for as many labels as the model may predict."""
    evaluator = getattr(pl_module, "evaluator", None)
    if evaluator is not None:
        return list(evaluator.class_names)
    return [f"class {k}" for k in range(1000)]
