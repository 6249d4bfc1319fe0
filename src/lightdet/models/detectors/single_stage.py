"""Single-stage detectors (RetinaNet, FCOS) composed from a backbone, a neck and a dense head."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from lightdet.models.detectors.base import Detector, to_original
from lightdet.models.preprocessor import DetPreprocessor
from lightdet.structures import DetBatch, Detections


class DenseHead(Protocol):
    """What :class:`SingleStageDetector` needs of its head (e.g. :class:`~lightdet.models.RetinaHead`)."""

    def loss(self, feats: list[Tensor], batch: DetBatch, padded_size: tuple[int, int]) -> dict[str, Tensor]:
        """Named losses of the batch."""

    def predict(self, feats: list[Tensor], batch: DetBatch, padded_size: tuple[int, int]) -> list[Detections]:
        """Per-image detections in the preprocessed input's pixels."""


class SingleStageDetector(Detector):
    """Backbone -> neck -> dense head, which predicts classes and boxes at every pyramid position.

    Args:
        backbone: ``[B, 3, H, W] -> list of feature maps``.
        neck: feature maps -> pyramid (e.g. :class:`~lightdet.models.FPN` with P6/P7); ``None`` uses the
            backbone's maps.
        bbox_head: a dense head module with ``loss`` and ``predict`` (:class:`DenseHead`), e.g.
            :class:`~lightdet.models.RetinaHead` or :class:`~lightdet.models.FCOSHead`.
        preprocessor: ``uint8`` batch -> normalised float tensor.

    Loss keys are the head's (``loss_cls``, ``loss_bbox``, and for FCOS ``loss_centerness``).
    """

    def __init__(
        self, backbone: nn.Module, neck: nn.Module | None, bbox_head: nn.Module, preprocessor: DetPreprocessor
    ) -> None:
        super().__init__(preprocessor)
        self.backbone = backbone
        self.neck = neck
        self.bbox_head = bbox_head

    def extract_feat(self, images: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> pyramid of ``[B, C, H_l, W_l]``."""
        feats = self.backbone(images)
        return list(self.neck(feats)) if self.neck is not None else list(feats)

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        images, _ = self.preprocess(batch)
        return self.bbox_head.loss(self.extract_feat(images), batch, tuple(images.shape[-2:]))

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[Detections]:
        images, _ = self.preprocess(batch)
        detections = self.bbox_head.predict(self.extract_feat(images), batch, tuple(images.shape[-2:]))
        return [to_original(d, m) for d, m in zip(detections, batch.metas)]
