"""The interface every detector offers the engine, and the mapping of predictions back to original images."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from lightdet.models.ops.masks import boxes_to_original
from lightdet.models.preprocessor import DetPreprocessor
from lightdet.structures import DetBatch, Detections, ImageMeta, clip_boxes


class Detector(nn.Module, ABC):
    """Base of all detectors: ``loss(batch)`` for training, ``predict(batch)`` for inference.

    Subclasses compose already-built parts. They never branch on ``self.training`` to change what they
    return: ``loss`` always returns losses, ``predict`` always returns detections.
    """

    def __init__(self, preprocessor: DetPreprocessor) -> None:
        super().__init__()
        self.preprocessor = preprocessor

    def preprocess(self, batch: DetBatch) -> tuple[Tensor, list[tuple[int, int]]]:
        """``uint8`` batch -> normalised, padded ``float [B, 3, H, W]`` on the model's device, valid sizes."""
        return self.preprocessor(batch.images, [m.img_size for m in batch.metas])

    @abstractmethod
    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        """Named scalar losses (keys starting with ``loss``; other keys are logged metrics, not optimised)."""

    @abstractmethod
    def predict(self, batch: DetBatch) -> list[Detections]:
        """One :class:`Detections` per image, in the original image's pixels."""


def to_original(detections: Detections, meta: ImageMeta) -> Detections:
    """Maps detections from the model input (``meta.img_size``) to the original image (``meta.ori_size``).

    Undoes a horizontal flip, divides by ``meta.scale_factor`` per axis and clips to the original size.
    Masks, if any, must already be at ``meta.ori_size`` (mask heads paste them there directly, see
    :func:`lightdet.models.ops.masks.paste_in_original`); they are passed through.
    """
    boxes = clip_boxes(boxes_to_original(detections.boxes, meta), meta.ori_size)
    return Detections(boxes=boxes, scores=detections.scores, labels=detections.labels, masks=detections.masks)
