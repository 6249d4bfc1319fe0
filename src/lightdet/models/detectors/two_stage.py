"""Two-stage detectors (Faster R-CNN and relatives) composed from a backbone, a neck and two heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightdet.models.dense_heads.rpn_head import Proposals, RPNHead
from lightdet.models.detectors.base import Detector, to_original
from lightdet.models.preprocessor import DetPreprocessor
from lightdet.models.roi_heads.cascade_roi_head import CascadeRoIHead
from lightdet.models.roi_heads.standard_roi_head import StandardRoIHead
from lightdet.structures import DetBatch, Detections


class TwoStageDetector(Detector):
    """Backbone -> neck -> RPN proposals -> RoI head.

    Args:
        backbone: ``[B, 3, H, W] -> list of feature maps`` (e.g. :class:`~lightdet.models.ResNet`).
        neck: feature maps -> pyramid (e.g. :class:`~lightdet.models.FPN`); ``None`` uses the backbone's maps.
        rpn_head: proposes boxes from the pyramid.
        roi_head: classifies and refines the proposals (:class:`StandardRoIHead`, optionally with a mask head,
            or :class:`CascadeRoIHead`); with a mask branch ``Detections.masks`` are ``bool [N, *ori_size]``.
        preprocessor: ``uint8`` batch -> normalised float tensor.

    Loss keys: ``loss_rpn_cls``, ``loss_rpn_bbox`` and the RoI head's (``loss_cls``, ``loss_bbox``, ``acc``,
    ``loss_mask``; a cascade suffixes them with its stage, ``loss_cls_s0`` ...).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module | None,
        rpn_head: RPNHead,
        roi_head: StandardRoIHead | CascadeRoIHead,
        preprocessor: DetPreprocessor,
    ) -> None:
        super().__init__(preprocessor)
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.roi_head = roi_head

    def extract_feat(self, images: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> pyramid of ``[B, C, H_l, W_l]``."""
        feats = self.backbone(images)
        return list(self.neck(feats)) if self.neck is not None else list(feats)

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        images, _ = self.preprocess(batch)
        feats = self.extract_feat(images)
        losses, proposals = self.rpn_head.loss(feats, batch, tuple(images.shape[-2:]))
        losses.update(self.roi_head.loss(feats, [p.boxes for p in proposals], batch))
        return losses

    def _proposals(self, batch: DetBatch) -> tuple[list[Tensor], list[Proposals]]:
        images, _ = self.preprocess(batch)
        feats = self.extract_feat(images)
        return feats, self.rpn_head.predict(feats, batch, tuple(images.shape[-2:]))

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[Detections]:
        feats, proposals = self._proposals(batch)
        # RoIAlign reads NCHW: channels-last maps (an optimised model) are converted once here, not in every
        # RoI pooling (boxes, masks, each cascade stage); NCHW maps pass unchanged
        feats = [f.contiguous() for f in feats]
        detections = self.roi_head.predict(feats, [p.boxes for p in proposals], batch)
        return [to_original(d, m) for d, m in zip(detections, batch.metas)]

    @torch.no_grad()
    def predict_proposals(self, batch: DetBatch) -> list[Detections]:
        """Test-time RPN proposals as class-agnostic detections (label 0, objectness), original pixels."""
        _, proposals = self._proposals(batch)
        zeros = [torch.zeros(len(p.boxes), dtype=torch.int64, device=p.boxes.device) for p in proposals]
        return [
            to_original(Detections(boxes=p.boxes, scores=p.scores, labels=z), m)
            for p, z, m in zip(proposals, zeros, batch.metas)
        ]
