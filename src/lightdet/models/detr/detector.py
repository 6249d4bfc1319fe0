"""RT-DETR / RT-DETRv2 / D-FINE as a lightdet :class:`~lightdet.models.Detector`.

Backbone -> :class:`HybridEncoder` -> :class:`DETRDecoder`; :class:`DETRCriterion` in training. At the border
the contracts of ``structures.py`` hold: targets arrive as xyxy pixels and are normalised to cxcywh by the
(padded) input size inside; ``predict`` returns the top-k (query, class) pairs by sigmoid score, in original
pixels, with no NMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.detectors.base import Detector, to_original
from lightdet.models.detr.box_ops import cxcywh_to_xyxy, xyxy_to_cxcywh
from lightdet.models.detr.criterion import DETRCriterion
from lightdet.models.detr.decoder import DecoderOutput, DETRDecoder
from lightdet.models.detr.denoising import DenoisingQueries
from lightdet.models.preprocessor import DetPreprocessor
from lightdet.structures import DetBatch, Detections

if TYPE_CHECKING:
    from lightdet.export.graph import GraphHead


def normalised_targets(batch: DetBatch, size: tuple[int, int]) -> tuple[list[Tensor], list[Tensor]]:
    """Per image the labels and the normalised cxcywh boxes of the non-ignored targets; ``size = (H, W)``."""
    h, w = size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=batch.images.device)
    labels, boxes = [], []
    for lab, box, ign in zip(batch.labels, batch.boxes, batch.ignore):
        keep = ~ign
        labels.append(lab[keep])
        boxes.append(xyxy_to_cxcywh(box[keep] / scale))
    return labels, boxes


def topk_detections(logits: Tensor, boxes: Tensor, size: tuple[int, int], k: int) -> list[Detections]:
    """Sigmoid scores, the top ``k`` over queries x classes per image, boxes to xyxy pixels of ``size``.

    Shapes: ``logits [B, Q, K]``, ``boxes [B, Q, 4]`` normalised cxcywh -> ``B`` detections of ``min(k, Q*K)``.
    """
    b, q, num_classes = logits.shape
    h, w = size
    scores, index = logits.sigmoid().flatten(1).topk(min(k, q * num_classes), dim=1)
    labels = index % num_classes
    query = index // num_classes
    xyxy = cxcywh_to_xyxy(boxes) * boxes.new_tensor([w, h, w, h])
    picked = xyxy.gather(1, query[..., None].expand(-1, -1, 4))
    return [Detections(boxes=picked[i].float(), scores=scores[i].float(), labels=labels[i]) for i in range(b)]


class RTDETR(Detector):
    """A real-time DETR: backbone, hybrid encoder, transformer decoder, set criterion.

    Args:
        backbone: ``[B, 3, H, W]`` -> maps at strides 8/16/32 (e.g. :class:`~lightdet.models.PResNet`,
            :class:`~lightdet.models.HGNetv2`).
        encoder: :class:`~lightdet.models.detr.HybridEncoder`.
        decoder: :class:`~lightdet.models.detr.DETRDecoder` (D-FINE when it has an ``fdr`` part).
        criterion: :class:`~lightdet.models.detr.DETRCriterion`.
        preprocessor: ``uint8`` batch -> float input (RT-DETR/D-FINE: mean 0, std 255, i.e. ``x / 255``).
        num_top_queries: detections per image returned by ``predict`` (300 in the papers).
        train_scales: multi-scale batches (RT-DETR's ``BatchImageCollateFunction``): in training each batch is
            resized to one square side drawn from this list (480..800 for the 640 recipes); None keeps the size.
            They stop with the strong augmentation at the pipeline switch (:meth:`set_late_training`).

    Loss keys: see :mod:`lightdet.models.detr.criterion`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        encoder: nn.Module,
        decoder: DETRDecoder,
        criterion: DETRCriterion,
        preprocessor: DetPreprocessor,
        num_top_queries: int = 300,
        train_scales: Sequence[int] | None = None,
    ) -> None:
        super().__init__(preprocessor)
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.criterion = criterion
        self.num_top_queries = num_top_queries
        self.train_scales = [int(s) for s in train_scales] if train_scales else None
        self.late_training = False

    def forward_decoder(
        self, images: Tensor, labels: list[Tensor] | None = None, boxes: list[Tensor] | None = None,
        all_layers: bool | None = None,
    ) -> tuple[DecoderOutput, DenoisingQueries | None]:
        """Normalised images -> decoder outputs (with denoising queries when targets are given in training)."""
        feats = self.encoder(self.backbone(images))
        denoising = None
        if self.training and labels is not None and boxes is not None:
            denoising = self.decoder.denoising_queries(labels, boxes)
        return self.decoder(feats, denoising, all_layers), denoising

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        images, _ = self.preprocess(batch)
        labels, boxes = normalised_targets(batch, tuple(images.shape[-2:]))
        images = self.random_batch_scale(images)
        out, denoising = self.forward_decoder(images, labels, boxes, all_layers=True)
        return self.criterion(out, labels, boxes, denoising)

    def set_late_training(self, late: bool) -> None:
        """From the pipeline switch on (:class:`lightdet.engine.pipeline_switch.PipelineSwitch` calls this at
        every training epoch's start) batches keep the size the pipeline gave them: the multi-scale batches
        stop with the strong augmentation, as RT-DETRv2's and D-FINE's ``stop_epoch`` stops both."""
        self.late_training = late

    def random_batch_scale(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` -> ``[B, 3, S, S]``, ``S`` drawn from ``train_scales`` (bilinear, as the original
        collate function); normalised targets are unchanged by a resize of the whole batch. Late in training
        (:meth:`set_late_training`) the batch is returned as it is."""
        if not self.train_scales or self.late_training:
            return images
        side = self.train_scales[int(torch.randint(len(self.train_scales), ()))]
        return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)

    def export_head(self) -> GraphHead:
        """The export graph's head (:class:`lightdet.export.SupportsExport`): this model's modules, the
        post-processing of :meth:`predict` (see :mod:`lightdet.export.detr`)."""
        from lightdet.export.detr import DETRGraphHead

        return DETRGraphHead(self)

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[Detections]:
        images, _ = self.preprocess(batch)
        out, _ = self.forward_decoder(images, all_layers=False)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        detections = topk_detections(out.logits[-1], out.boxes[-1], size, self.num_top_queries)
        return [to_original(d, m) for d, m in zip(detections, batch.metas)]
